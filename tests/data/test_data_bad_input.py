"""Hostile and broken input: each case is a bad row (skippable) or a bad-file error naming the
file, row/line and field, never a traceback and never a silent drop (issue 11 item 5, issue 13
item 5's nested and missing column names, issue 11 item 9's CLI wording)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from dralign.data import (
    ColumnMap,
    DataError,
    detect_format,
    load_rows,
    rows_from_records,
    tokenize_pairs,
    tokenize_unpaired,
    validate_pairs,
)
from dralign.data.formats import MAX_WEIGHT, column_value
from dralign.modeling.tiny import tiny_tokenizer
from helpers import preference_rows, write_jsonl

GOOD = {"prompt": "p", "chosen": "a", "rejected": "b"}
GOOD_LINE = json.dumps(GOOD).encode()


def _bad_rows_and_skip(rows, tok, **kwargs):
    """The DataError under on_bad_row='error' and the report under 'skip'."""
    with pytest.raises(DataError) as info:
        tokenize_pairs(rows, tok, **kwargs)
    data = tokenize_pairs(rows, tok, on_bad_row="skip", **kwargs)
    return info.value, data


# --------------------------------------------------------------------------- bytes


@pytest.mark.parametrize("name", ["d.jsonl", "d.jsonl.gz"])
def test_invalid_utf8_in_a_jsonl_line_is_a_skippable_bad_row(tmp_path, tok, name):
    raw = GOOD_LINE + b'\n{"prompt": "caf\xff", "chosen": "a", "rejected": "b"}\n' + GOOD_LINE
    path = tmp_path / name
    path.write_bytes(gzip.compress(raw) if name.endswith(".gz") else raw)
    rows = load_rows(path)
    assert [(r.index, r.line, r.error_reason) for r in rows] == [(0, 1, None), (1, 2, "invalid_utf8"), (2, 3, None)]
    err, data = _bad_rows_and_skip(rows, tok)
    assert (f"{path}: row 1 (line 2), whole row: not valid UTF-8: byte 0xff at byte 16 of the line") in str(err)
    assert "--on-bad-row skip" in str(err)
    assert (data.report.rows_read, data.report.kept, data.report.skipped) == (3, 2, {"invalid_utf8": 1})


@pytest.mark.parametrize("name", ["d.json", "d.csv", "d.csv.gz"])
def test_invalid_utf8_in_a_json_or_csv_file_names_file_offset_and_line(tmp_path, name):
    if name.startswith("d.json"):
        raw = b'[{"prompt": "p", "chosen": "a", "rejected": "b"},\n {"prompt": "\xff"}]'
        offset = raw.index(b"\xff")
    else:  # pyarrow alone would read the column as bytes and every cell would be "wrong type"
        raw = b"prompt,chosen,rejected\np,a,b\nq\xfe,c,d\n"
        offset = raw.index(b"\xfe")
    path = tmp_path / name
    path.write_bytes(gzip.compress(raw) if name.endswith(".gz") else raw)
    with pytest.raises(DataError) as info:
        load_rows(path)
    message = str(info.value)
    assert message.startswith(f"{path}: not valid UTF-8: byte 0x")
    line = 2 if name.startswith("d.json") else 3
    assert f"at byte offset {offset}" in message and f"(line {line})" in message
    assert ("of the decompressed data" in message) == name.endswith(".gz")


@pytest.mark.parametrize("name", ["d.jsonl", "d.csv", "d.json"])
def test_a_utf8_byte_order_mark_is_ignored(tmp_path, name):
    path = tmp_path / name
    body = {
        "d.jsonl": GOOD_LINE + b"\n",
        "d.csv": b"prompt,chosen,rejected\np,a,b\n",
        "d.json": b"[" + GOOD_LINE + b"]",
    }[name]
    path.write_bytes(b"\xef\xbb\xbf" + body)
    [row] = load_rows(path)
    assert row.data == GOOD


def test_hostile_json_lines_are_bad_rows(tmp_path, tok):
    path = tmp_path / "d.jsonl"
    path.write_bytes(
        GOOD_LINE + b"\n" + b"[" * 100_000 + b"\n" + b'{"weight": ' + b"9" * 5000 + b"}\n" + GOOD_LINE + b"\n"
    )
    rows = load_rows(path)
    assert [r.error_reason for r in rows] == [None, "invalid_json", "invalid_json", None]
    assert "recursion" in rows[1].error and "4300 digits" in rows[2].error
    data = tokenize_pairs(rows, tok, on_bad_row="skip")
    assert (data.report.kept, data.report.skipped) == (2, {"invalid_json": 2})


def test_lines_split_only_at_line_ends_not_at_unicode_separators(tmp_path):
    path = tmp_path / "d.jsonl"  # ensure_ascii=False writes U+2028 raw: still one line
    path.write_text(
        json.dumps({**GOOD, "prompt": "a\u2028b"}, ensure_ascii=False) + "\n" + json.dumps(GOOD) + "\n",
        encoding="utf-8",
    )
    rows = load_rows(path)
    assert [(r.line, r.data["prompt"]) for r in rows] == [(1, "a\u2028b"), (2, "p")]


# --------------------------------------------------------------------------- whole files


def _gzip_cases(plain: bytes) -> dict[str, bytes]:
    packed = gzip.compress(plain)
    corrupt = bytearray(packed)
    corrupt[-6] ^= 0xFF  # inside the CRC
    return {"truncated": packed[:-12], "not gzip": plain, "crc": bytes(corrupt)}


@pytest.mark.parametrize(
    "kind,expected",
    [
        ("truncated", "the gzip data is truncated"),
        ("not gzip", "cannot decompress: Not a gzipped"),
        ("crc", "cannot decompress: CRC check failed"),
    ],
)
@pytest.mark.parametrize("name", ["d.jsonl.gz", "d.json.gz", "d.csv.gz", "d.parquet.gz"])
def test_broken_gzip_is_one_error_naming_the_file(tmp_path, name, kind, expected):
    plain = b"\n".join([GOOD_LINE] * 200) + b"\n"
    path = tmp_path / name
    path.write_bytes(_gzip_cases(plain)[kind])
    with pytest.raises(DataError) as info:
        load_rows(path)
    assert str(info.value).startswith(f"{path}: {expected}")


@pytest.mark.parametrize("content", [b"PAR1x", b"\x00" * 100, b"PAR1" + b"\x01" * 60 + b"PAR1"])
def test_unreadable_parquet_names_the_file(tmp_path, content):
    path = tmp_path / "d.parquet"
    path.write_bytes(content)
    with pytest.raises(DataError, match=rf"^{path}: cannot read Parquet: "):
        load_rows(path)


def test_damaged_saved_dataset_names_the_folder(tmp_path):
    import datasets

    folder = tmp_path / "saved"
    datasets.Dataset.from_list([GOOD] * 50).save_to_disk(str(folder))
    [arrow] = folder.glob("*.arrow")
    arrow.write_bytes(arrow.read_bytes()[:200])
    with pytest.raises(DataError, match=rf"^{folder}: cannot read the saved dataset: "):
        load_rows(folder)


def test_json_too_deep_is_a_bad_file_error(tmp_path):
    path = tmp_path / "d.json"
    path.write_text("[" * 100_000)
    with pytest.raises(DataError, match=rf"^{path}: invalid JSON: maximum recursion"):
        load_rows(path)


# --------------------------------------------------------------------------- text

SURROGATE = "a\ud800b"  # json.loads('"a\\ud800b"'): valid JSON, not valid Unicode


@pytest.mark.parametrize("field", ["prompt", "chosen", "rejected", "group", "source"])
def test_lone_surrogate_is_a_bad_row_naming_the_field(tmp_path, tok, field):
    path = tmp_path / "d.jsonl"
    path.write_text("\n".join([json.dumps(GOOD), json.dumps({**GOOD, field: SURROGATE}), json.dumps(GOOD)]) + "\n")
    rows = load_rows(path)
    assert rows[1].data[field] == SURROGATE
    err, data = _bad_rows_and_skip(rows, tok)
    assert (
        f"{path}: row 1 (line 2), field {field!r}: not valid Unicode: lone surrogate '\\ud800' at character 1"
    ) in str(err)
    assert data.report.skipped == {"invalid_text": 1} and data.report.kept == 2


def test_lone_surrogate_in_a_message_is_a_bad_row(tok):
    user = {"role": "user", "content": "hi"}
    rows = [
        {
            "prompt": [user],
            "chosen": [{"role": "assistant", "content": "a"}],
            "rejected": [{"role": "assistant", "content": SURROGATE}],
        },
        {
            "prompt": [{"role": "us\udfffer", "content": "hi"}],
            "chosen": [{"role": "assistant", "content": "a"}],
            "rejected": [{"role": "assistant", "content": "b"}],
        },
    ]
    fmt, records, bad = validate_pairs(rows)
    assert fmt == "conversational" and records == []
    assert [(b.field, b.reason) for b in bad] == [("rejected", "invalid_text"), ("prompt", "invalid_text")]
    assert bad[0].detail.startswith("message 0 'content' is not valid Unicode")
    assert bad[1].detail.startswith("message 0 'role' is not valid Unicode")


def test_unpaired_lone_surrogate(tok):
    rows = [
        {"prompt": "p", "completion": SURROGATE, "label": True},
        {"prompt": "p", "completion": "fine", "label": False},
    ]
    data = tokenize_unpaired(rows, tok, on_bad_row="skip")
    assert data.report.skipped == {"invalid_text": 1}
    assert str(data.report.bad_rows[0]).startswith("<memory>: row 0, field 'completion'")


# --------------------------------------------------------------------------- numbers

BAD_NUMBERS = [  # (field, value, reason, detail)
    ("weight", 1e300, "out_of_range", "weight 1e+300 is above the maximum 1e+06"),
    ("weight", "1e300", "out_of_range", "weight 1e+300 is above the maximum 1e+06"),
    ("weight", MAX_WEIGHT * 1.5, "out_of_range", "weight 1.5e+06 is above the maximum 1e+06"),
    ("weight", 10**400, "non_finite", "number too large: 1000"),
    ("weight", "-inf", "non_finite", "non-finite value -inf"),
    ("ratio", 1e300, "out_of_range", "ratio 1e+300 is above the maximum 1e+06"),
    ("ratio", float("inf"), "non_finite", "non-finite value inf"),
    ("ratio", -1e-9, "out_of_range", "ratio -1e-09 is negative"),
    ("target_prob", 1e300, "out_of_range", "target_prob 1e+300 is outside [0, 1]"),
    ("target_prob", -0.5, "out_of_range", "target_prob -0.5 is outside [0, 1]"),
    ("target_prob", float("nan"), "non_finite", "non-finite value nan"),
]


@pytest.mark.parametrize("field,value,reason,detail", BAD_NUMBERS)
def test_out_of_range_numbers_are_bad_rows_at_validation(tmp_path, tok, field, value, reason, detail):
    path = tmp_path / "d.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in [GOOD, {**GOOD, field: value}]) + "\n")
    err, data = _bad_rows_and_skip(load_rows(path), tok)
    assert f"{path}: row 1 (line 2), field '{field}': {detail}" in str(err)
    assert data.report.skipped == {reason: 1} and data.report.kept == 1


def test_numbers_at_the_bounds_are_kept(tok):
    rows = [
        {**GOOD, "weight": MAX_WEIGHT, "ratio": 0, "target_prob": 0.0},
        {**GOOD, "weight": 0, "ratio": MAX_WEIGHT, "target_prob": 1},
    ]
    data = tokenize_pairs(rows, tok)
    assert [(e.weight, e.ratio, e.target_prob) for e in data.examples] == [
        (MAX_WEIGHT, 0.0, 0.0),
        (0.0, MAX_WEIGHT, 1.0),
    ]


# --------------------------------------------------------------------------- chat templates

STRICT = (
    "{% for m in messages %}{% if m['role'] not in ['system', 'user', 'assistant'] %}"
    "{{ raise_exception('Unknown role: ' + m['role']) }}{% endif %}"
    "<|{{ m['role'] }}|>{{ m['content'] }}{{ eos_token }}{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
USER = {"role": "user", "content": "hi"}
ROBOT = {"role": "robot", "content": "beep"}


def _say(text: str) -> dict:
    return {"role": "assistant", "content": text}


def test_unknown_role_under_a_strict_template_is_a_bad_row_naming_the_field():
    tok = tiny_tokenizer()
    tok.chat_template = STRICT
    rows = [
        {"prompt": [USER], "chosen": [_say("a")], "rejected": [_say("b")]},
        {"prompt": [ROBOT, USER], "chosen": [_say("a")], "rejected": [_say("b")]},
        {"prompt": [USER], "chosen": [_say("a")], "rejected": [_say("b"), ROBOT]},
        {"chosen": [ROBOT, USER, _say("a")], "rejected": [ROBOT, USER, _say("b")]},
    ]
    err, data = _bad_rows_and_skip(rows, tok)
    assert [(b.row, b.field, b.reason) for b in err.bad_rows] == [
        (1, "prompt", "chat_template_error"),
        (2, "rejected", "chat_template_error"),
        (3, "chosen", "chat_template_error"),
    ]  # an implicit prompt comes from `chosen`
    assert (
        "<memory>: row 1, field 'prompt': the chat template refuses the prompt messages: Unknown role: robot"
    ) in str(err)
    assert data.report.skipped == {"chat_template_error": 3} and data.report.kept == 1


def test_a_template_that_does_not_compile_is_one_error_not_a_bad_row_each():
    tok = tiny_tokenizer()
    tok.chat_template = "{% for m in messages %}"
    rows = [{"prompt": [USER], "chosen": [_say("a")], "rejected": [_say("b")]}] * 3
    with pytest.raises(DataError, match="the chat template of tokenizer .* does not compile"):
        tokenize_pairs(rows, tok, on_bad_row="skip")


# --------------------------------------------------------------------------- wording


def test_messages_name_cli_flags_not_python_spellings(tok):
    with pytest.raises(DataError) as info:
        tokenize_pairs([GOOD, {**GOOD, "weight": -1}], tok)
    assert "rerun with --on-bad-row skip" in str(info.value)
    assert "on_bad_row=" not in str(info.value)
    with pytest.raises(DataError) as info:
        detect_format(rows_from_records([{"question": "q", "answer": "a"}]))
    message = str(info.value)
    for flag in ("--prompt-column", "--chosen-column", "--rejected-column", "--format"):
        assert flag in message
    assert "ColumnMap" not in message and "columns=" not in message


# --------------------------------------------------------------------------- column names

NESTED = [
    {"q": {"text": "Q1"}, "pair": {"good": "yes", "bad": "no"}, "meta": {"scenario_group": "g1", "w": 2}},
    {"q": {"text": "Q2"}, "pair": {"good": "ok", "bad": "ko"}, "meta": {"scenario_group": 7}},
    {"q": {"text": "Q3"}, "pair": {"good": "fine", "bad": "bad"}, "meta": {}},
]


def test_dotted_column_names_read_nested_values(tok):
    cols = ColumnMap(
        prompt="q.text", chosen="pair.good", rejected="pair.bad", group="meta.scenario_group", weight="meta.w"
    )
    assert detect_format(rows_from_records(NESTED), cols) == "explicit"
    data = tokenize_pairs(NESTED, tok, columns=cols)
    assert data.group_names == ["7", "g1"]
    assert [(e.group, e.weight) for e in data.examples] == [(1, 2.0), (0, 1.0), (-1, 1.0)]
    # a key that itself holds a dot wins over the path
    assert column_value({"a.b": 1, "a": {"b": 2}}, "a.b") == 1
    assert column_value({"a": {"b": None}}, "a.b", "absent") is None
    assert column_value({"a": "text"}, "a.b", "absent") == "absent"


@pytest.mark.parametrize(
    "field,column",
    [
        ("group", "meta.scenario"),
        ("group", "grp"),
        ("weight", "w"),
        ("source", "src"),
        ("ratio", "h"),
        ("target_prob", "meta.p"),
        ("prompt", "question"),
    ],
)
def test_a_named_column_in_no_row_is_an_error(tok, field, column):
    rows = [{**GOOD, "meta": {"scenario_group": "a"}}, GOOD]
    with pytest.raises(DataError) as info:
        tokenize_pairs(rows, tok, columns={field: column}, on_bad_row="skip")
    flag = "--" + field.replace("_", "-") + "-column"
    assert f"<memory>: no row has the column {column!r}" in str(info.value)
    assert flag in str(info.value) and "'meta', 'prompt'" in str(info.value)


def test_a_required_column_in_no_row_is_an_error_not_a_bad_row_each(tok):
    rows = [{"chosen": "a", "rejected": "b"}] * 3
    with pytest.raises(
        DataError,
        match=r"no row has the column 'prompt' \(explicit format's "
        r"prompt, named with --prompt-column\)",
    ):
        tokenize_pairs(rows, tok, format="explicit", on_bad_row="skip")
    with pytest.raises(DataError, match="no row has the column 'good'"):
        tokenize_unpaired([{"prompt": "p", "completion": "c", "label": 1}], tok, columns={"completion": "good"})


def test_a_named_column_in_some_rows_is_fine(tok):
    rows = [{**GOOD, "w": 2.0}, GOOD]
    data = tokenize_pairs(rows, tok, columns={"weight": "w"})
    assert [e.weight for e in data.examples] == [2.0, 1.0]


# --------------------------------------------------------------------------- the CLI


def _train(model: str, data: Path, out: Path, *extra: str) -> int:
    from dralign.cli import main

    return main(
        [
            "train",
            "--no-progress",
            "--max-length",
            "64",
            "--batch-size",
            "4",
            "--model",
            model,
            "--data",
            str(data),
            "--max-steps",
            "1",
            "--output-dir",
            str(out),
            *extra,
        ]
    )


def test_cli_reports_broken_files_and_rows_without_a_traceback(tiny_model_dir, tmp_path, capsys):
    model = tiny_model_dir("llama")
    rows = preference_rows(16)
    plain = write_jsonl(tmp_path / "p.jsonl", rows).read_bytes()
    truncated = tmp_path / "t.jsonl.gz"
    truncated.write_bytes(gzip.compress(plain)[:-12])
    assert _train(model, truncated, tmp_path / "o1") == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and f"{truncated}: the gzip data is truncated" in err

    rows[3] = {**rows[3], "weight": 1e300}
    huge = write_jsonl(tmp_path / "w.jsonl", rows)
    assert _train(model, huge, tmp_path / "o2") == 2
    err = capsys.readouterr().err
    assert f"{huge}: row 3 (line 4), field 'weight': weight 1e+300 is above" in err
    assert "rerun with --on-bad-row skip" in err
    assert _train(model, huge, tmp_path / "o3", "--on-bad-row", "skip") == 0
    assert "kept 15, skipped 1 (out_of_range: 1)" in capsys.readouterr().out


def test_cli_nested_group_column(tiny_model_dir, tmp_path, capsys):
    rows = [
        {**{k: v for k, v in r.items() if k != "group"}, "meta": {"scenario": r["group"]}} for r in preference_rows(16)
    ]
    data = write_jsonl(tmp_path / "n.jsonl", rows)
    model = tiny_model_dir("llama")
    assert _train(model, data, tmp_path / "o1", "--method", "group-dro", "--group-column", "meta.scenario") == 0, (
        capsys.readouterr().err
    )
    capsys.readouterr()
    assert _train(model, data, tmp_path / "o2", "--method", "group-dro", "--group-column", "meta.scenari") == 2
    err = capsys.readouterr().err
    assert "no row has the column 'meta.scenari'" in err and "--group-column" in err
