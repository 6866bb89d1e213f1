"""dralign.data: loading every source type, formats, validation and bad-row reporting."""

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
    split_implicit_conversation,
    split_implicit_prompt,
    tokenize_pairs,
    tokenize_unpaired,
    validate_pairs,
    validate_unpaired,
)
from dralign.modeling.tiny import tiny_tokenizer
from helpers import SHARED_DATA

HH = SHARED_DATA / "hh-rlhf" / "harmless-base_test.jsonl.gz"
ULTRAFEEDBACK = SHARED_DATA / "ultrafeedback" / "train1000.jsonl"
PANDALM = SHARED_DATA / "pandalm" / "testset_majority.jsonl"
STORIES = SHARED_DATA / "models" / "stories260K"

RECORDS = [
    {"prompt": "Say hi.", "chosen": "Hi there!", "rejected": "No.", "weight": 0.5, "group": "a"},
    {"prompt": "Count.", "chosen": "1 2 3", "rejected": "3 2 1", "weight": 2.0, "group": "b"},
    {"prompt": "Name a fruit.", "chosen": "Apple", "rejected": "Rock", "weight": 1.0, "group": "a"},
]


def _need(path: Path):
    if not path.exists():
        pytest.skip(f"shared real data not present: {path}")


# --------------------------------------------------------------------------- loading


def _write(path: Path, kind: str, records: list[dict]) -> Path:
    import pyarrow as pa
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    compressed = path.name.endswith(".gz")
    plain = path.with_name(path.name[:-3]) if compressed else path
    if kind == "jsonl":
        plain.write_text("".join(json.dumps(r) + "\n" for r in records))
    elif kind == "json":
        plain.write_text(json.dumps(records))
    elif kind == "json-data":
        plain.write_text(json.dumps({"data": records}))
    elif kind == "json-rows":
        plain.write_text(json.dumps({"rows": records}))
    elif kind == "parquet":
        pq.write_table(pa.Table.from_pylist(records), plain)
    elif kind == "csv":
        pcsv.write_csv(pa.Table.from_pylist(records), plain)
    if compressed:
        path.write_bytes(gzip.compress(plain.read_bytes()))
        plain.unlink()
    return path


@pytest.mark.parametrize(
    "kind,name",
    [
        ("jsonl", "d.jsonl"),
        ("jsonl", "d.jsonl.gz"),
        ("json", "d.json"),
        ("json", "d.json.gz"),
        ("json-data", "d.json"),
        ("json-rows", "d.json"),
        ("parquet", "d.parquet"),
        ("parquet", "d.parquet.gz"),
        ("csv", "d.csv"),
        ("csv", "d.csv.gz"),
    ],
)
def test_every_file_format_round_trips(tmp_path, kind, name):
    path = _write(tmp_path / name, kind, RECORDS)
    rows = load_rows(path)
    assert [dict(r.data) for r in rows] == RECORDS
    assert [r.index for r in rows] == [0, 1, 2]
    assert all(r.file == str(path) and r.error is None for r in rows)
    assert [r.line for r in rows] == ([1, 2, 3] if kind == "jsonl" else [None] * 3)


def test_save_to_disk_dataset_and_datasetdict(tmp_path):
    import datasets

    datasets.Dataset.from_list(RECORDS).save_to_disk(str(tmp_path / "one"))
    rows = load_rows(tmp_path / "one")
    assert [dict(r.data) for r in rows] == RECORDS and rows[2].index == 2
    datasets.DatasetDict(
        {"train": datasets.Dataset.from_list(RECORDS[:2]), "test": datasets.Dataset.from_list(RECORDS[2:])}
    ).save_to_disk(str(tmp_path / "dd"))
    test_rows = load_rows(tmp_path / "dd", split="test")
    assert [r.data["prompt"] for r in test_rows] == ["Name a fruit."]
    assert test_rows[0].file.endswith("[test]")
    with pytest.raises(DataError, match=r"no split 'validation'; available: train, test"):
        load_rows(tmp_path / "dd", split="validation")


def test_hub_name_goes_through_load_dataset(monkeypatch):
    import datasets

    calls = []

    def fake_load_dataset(name, subset, split):
        calls.append((name, subset, split))
        return datasets.Dataset.from_list(RECORDS)

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    rows = load_rows("someone/prefs", subset="clean", split="test")
    assert calls == [("someone/prefs", "clean", "test")]
    assert len(rows) == 3 and rows[0].file == "someone/prefs/clean[test]"


def test_hub_failure_is_a_data_error(monkeypatch):
    import datasets

    def offline(*args, **kwargs):
        raise ConnectionError("no network")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(DataError, match=r"'someone/prefs' is neither.*no network"):
        load_rows("someone/prefs")


def test_whole_source_errors(tmp_path):
    with pytest.raises(DataError, match="data file not found: .*missing.jsonl"):
        load_rows(tmp_path / "missing.jsonl")
    (tmp_path / "d.txt").write_text("x")
    with pytest.raises(DataError, match=r"d.txt: unsupported file type"):
        load_rows(tmp_path / "d.txt")
    (tmp_path / "bad.json").write_text('[{"a": 1},\n {"a": }]')
    with pytest.raises(DataError, match=r"bad.json: invalid JSON at line 2"):
        load_rows(tmp_path / "bad.json")
    (tmp_path / "obj.json").write_text('{"items": []}')
    with pytest.raises(DataError, match=r"'data' or 'rows' list; found keys \['items'\]"):
        load_rows(tmp_path / "obj.json")
    (tmp_path / "plain").mkdir()
    with pytest.raises(DataError, match="save_to_disk"):
        load_rows(tmp_path / "plain")


def test_invalid_json_line_is_a_bad_row_with_its_line(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps(RECORDS[0]) + "\n\n{not json}\n[1, 2]\n" + json.dumps(RECORDS[1]))
    rows = load_rows(path)
    assert [(r.index, r.line) for r in rows] == [(0, 1), (1, 3), (2, 4), (3, 5)]
    assert rows[1].data is None and rows[1].error.startswith("invalid JSON")
    fmt, records, bad = validate_pairs(rows)
    assert fmt == "explicit" and [r.row for r in records] == [0, 3]
    assert [(b.row, b.line, b.reason) for b in bad] == [(1, 3, "invalid_json"), (2, 4, "not_an_object")]
    assert str(bad[0]).startswith(f"{path}: row 1 (line 3), whole row: invalid JSON")


def test_csv_empty_numeric_cell_is_absent(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("prompt,chosen,rejected,weight\np,a,b,\np,c,d,0.25\n")
    data = tokenize_pairs(load_rows(path), tiny_tokenizer())
    assert [e.weight for e in data.examples] == [1.0, 0.25]


# --------------------------------------------------------------------------- bad rows

GOOD = {"prompt": "p", "chosen": "a", "rejected": "b"}

BAD_PAIRS = [  # (row, field, reason, words in the detail)
    ({"prompt": "p", "chosen": "a"}, "rejected", "missing_field", "missing"),
    ({**GOOD, "chosen": None}, "chosen", "missing_field", "missing"),
    ({**GOOD, "chosen": 5}, "chosen", "wrong_type", "expected a string, got int 5"),
    ({**GOOD, "prompt": ["p"]}, "prompt", "wrong_type", "got list"),
    ({**GOOD, "rejected": "  \n"}, "rejected", "empty", "empty or whitespace-only"),
    ({**GOOD, "prompt": ""}, "prompt", "empty", "empty"),
    ({**GOOD, "weight": float("nan")}, "weight", "non_finite", "non-finite value nan"),
    ({**GOOD, "weight": "inf"}, "weight", "non_finite", "non-finite value inf"),
    ({**GOOD, "weight": -1}, "weight", "out_of_range", "weight -1.0 is negative"),
    ({**GOOD, "weight": True}, "weight", "wrong_type", "expected a number, got bool"),
    ({**GOOD, "weight": "heavy"}, "weight", "wrong_type", "expected a number, got 'heavy'"),
    ({**GOOD, "target_prob": -0.1}, "target_prob", "out_of_range", "outside [0, 1]"),
    ({**GOOD, "target_prob": 1.5}, "target_prob", "out_of_range", "outside [0, 1]"),
    ({**GOOD, "ratio": -0.1}, "ratio", "out_of_range", "ratio -0.1 is negative"),
    ({**GOOD, "ratio": float("inf")}, "ratio", "non_finite", "non-finite"),
    ({**GOOD, "group": True}, "group", "wrong_type", "a string or an integer, got bool"),
    ({**GOOD, "source": 3}, "source", "wrong_type", "expected a string, got int"),
    ({**GOOD, "chosen": "same", "rejected": "same"}, "rejected", "chosen_equals_rejected", "identical"),
]


@pytest.mark.parametrize("row,field,reason,detail", BAD_PAIRS)
def test_each_bad_pair_class_names_file_row_field_and_reason(tmp_path, tok, row, field, reason, detail):
    path = tmp_path / "d.jsonl"
    path.write_text("\n".join(json.dumps(r, allow_nan=True) for r in [GOOD, row, GOOD]) + "\n")
    with pytest.raises(DataError) as info:
        tokenize_pairs(load_rows(path), tok, format="explicit")
    message = str(info.value)
    assert f"{path}: row 1 (line 2), field '{field}': " in message
    assert detail in message
    assert message.startswith(f"1 bad row(s) out of 3 read from {path} ({reason}: 1)")
    [bad] = info.value.bad_rows
    assert (bad.file, bad.row, bad.line, bad.field, bad.reason) == (str(path), 1, 2, field, reason)
    data = tokenize_pairs(load_rows(path), tok, format="explicit", on_bad_row="skip")
    assert data.report.skipped == {reason: 1}
    assert (data.report.rows_read, data.report.kept) == (3, 2)
    assert [e.row for e in data.examples] == [0, 2] and [e.index for e in data.examples] == [0, 1]


def test_bad_unpaired_label_and_conversational_message():
    rows = [{"prompt": "p", "completion": "c", "label": lab} for lab in (True, 0, 1.0, "false", "TRUE", 2, "yes", None)]
    records, bad = validate_unpaired(rows)
    assert [r.label for r in records] == [True, False, True, False, True]
    assert [(b.row, b.field, b.reason) for b in bad] == [
        (5, "label", "bad_label"),
        (6, "label", "bad_label"),
        (7, "label", "missing_field"),
    ]
    assert "label must be boolean-like (true/false or 0/1), got int 2" in str(bad[0])

    user = {"role": "user", "content": "hi"}
    conv = [
        {"prompt": [user], "chosen": [{"role": "assistant"}], "rejected": [{"role": "assistant", "content": "b"}]},
        {
            "prompt": [{"content": "hi"}],
            "chosen": [{"role": "assistant", "content": "a"}],
            "rejected": [{"role": "assistant", "content": "b"}],
        },
        {"prompt": [user], "chosen": ["a"], "rejected": [{"role": "assistant", "content": "b"}]},
        {"prompt": [user], "chosen": "a", "rejected": [{"role": "assistant", "content": "b"}]},
        {
            "prompt": [user],
            "chosen": [{"role": "assistant", "content": " "}],
            "rejected": [{"role": "assistant", "content": "b"}],
        },
    ]
    fmt, records, bad = validate_pairs(conv)
    assert fmt == "conversational" and records == []
    assert [(b.field, b.reason) for b in bad] == [
        ("chosen", "bad_message"),
        ("prompt", "bad_message"),
        ("chosen", "bad_message"),
        ("chosen", "wrong_type"),
        ("chosen", "empty"),
    ]
    assert "message 0 has no 'content'" in bad[0].detail
    assert "message 0 has no 'role'" in bad[1].detail
    assert "message 0 is not an object (got str)" in bad[2].detail


def test_error_lists_ten_rows_and_the_total(tok):
    rows = [GOOD] + [{**GOOD, "weight": -i} for i in range(1, 13)]
    with pytest.raises(DataError) as info:
        tokenize_pairs(rows, tok)
    message = str(info.value)
    assert message.startswith("12 bad row(s) out of 13 read from <memory> (out_of_range: 12)")
    assert "<memory>: row 10, field 'weight': weight -10.0" in message
    assert "row 11," not in message and "... and 2 more" in message
    assert len(info.value.bad_rows) == 12


def test_skip_report_counts_by_reason_and_summary(tok):
    rows = [GOOD, {**GOOD, "weight": -1}, {**GOOD, "chosen": ""}, {**GOOD, "rejected": ""}, {"prompt": "p"}, GOOD]
    data = tokenize_pairs(rows, tok, on_bad_row="skip")
    report = data.report
    assert report.skipped == {"empty": 2, "missing_field": 1, "out_of_range": 1}
    assert report.kept + report.n_skipped == report.rows_read == 6
    summary = report.summary()
    assert summary.startswith(
        "Read 6 rows from <memory> (format explicit); kept 2, skipped 4 (empty: 2, missing_field: 1, out_of_range: 1)."
    )
    assert "<memory>: row 1, field 'weight'" in summary and "and 1 more" in summary
    with pytest.raises(ValueError, match="on_bad_row must be one of"):
        tokenize_pairs(rows, tok, on_bad_row="drop")


def test_undetectable_format_is_a_clear_error():
    with pytest.raises(
        DataError,
        match=r"<memory>: cannot detect the data format from columns "
        r"\['answer', 'question'\]",
    ):
        validate_pairs([{"question": "q", "answer": "a"}])


def test_column_map_and_optional_fields(tok):
    rows = [
        {"q": "Q1", "good": "yes", "bad": "no", "w": 2, "g": 10, "src": "human"},
        {"q": "Q2", "good": "ok", "bad": "ko", "g": 2, "src": "synthetic", "tp": 0.25},
        {"q": "Q3", "good": "fine", "bad": "", "g": 2},
    ]
    cols = ColumnMap(prompt="q", chosen="good", rejected="bad", weight="w", group="g", source="src", target_prob="tp")
    assert detect_format(rows_from_records(rows), cols) == "explicit"
    data = tokenize_pairs(rows, tok, columns=cols, on_bad_row="skip")
    assert data.group_names == ["2", "10"]  # integer names sort numerically
    assert data.source_names == ["human", "synthetic"]
    assert [(e.weight, e.group, e.source, e.target_prob, e.ratio) for e in data.examples] == [
        (2.0, 1, 0, None, None),
        (1.0, 0, 1, 0.25, None),
    ]
    assert str(data.report.bad_rows[0]) == ("<memory>: row 2, field 'bad': empty or whitespace-only string")
    fixed = tokenize_pairs(rows[:2], tok, columns=cols, groups=["10", "7"])
    # given the training groups (held-out data), an unseen group is "no group" (-1), not a new id
    assert fixed.group_names == ["10", "7"] and [e.group for e in fixed.examples] == [0, -1]
    with pytest.raises(ValueError, match="unknown fields in column map: \\['answer'\\]"):
        tokenize_pairs(rows, tok, columns={"answer": "good"})


# --------------------------------------------------------------------------- implicit prompts

HH_PROMPT = "\n\nHuman: Hi\n\nAssistant: Hello! How can I help?\n\nHuman: Tell me a joke\n\nAssistant:"


def test_implicit_prompt_is_cut_at_the_last_shared_assistant_marker():
    chosen = HH_PROMPT + " Sure. Why did the chicken cross the road?"
    rejected = HH_PROMPT + " Sure, no."
    assert split_implicit_prompt(chosen, rejected) == (
        HH_PROMPT,
        " Sure. Why did the chicken cross the road?",
        " Sure, no.",
    )
    # texts without the marker: the whole longest common prefix
    assert split_implicit_prompt("Q: 2+2? A: 4", "Q: 2+2? A: 5") == ("Q: 2+2? A: ", "4", "5")
    # no common prefix, or HH texts that diverge before any shared marker
    assert split_implicit_prompt("abc", "xyz") is None
    assert split_implicit_prompt("\n\nHuman: Hi\n\nAssistant: a", "\n\nHuman: Yo\n\nAssistant: b") is None


def test_implicit_rows_validate_and_report_no_shared_prompt(tok):
    rows = [
        {"chosen": HH_PROMPT + " Yes.", "rejected": HH_PROMPT + " No."},
        {"chosen": "abc", "rejected": "xyz"},
        {"chosen": HH_PROMPT + " ", "rejected": HH_PROMPT + " No."},
    ]
    fmt, records, bad = validate_pairs(rows)
    assert fmt == "implicit"
    assert [(r.prompt, r.chosen, r.rejected) for r in records] == [(HH_PROMPT, " Yes.", " No.")]
    assert [(b.row, b.field, b.reason) for b in bad] == [(1, "chosen", "no_shared_prompt"), (2, "chosen", "empty")]
    assert "share no usable prompt prefix" in bad[0].detail
    assert "empty completion after removing the shared prompt" in bad[1].detail


def test_implicit_conversation_split():
    u1, a1 = {"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}
    u2 = {"role": "user", "content": "joke?"}
    good, bad = {"role": "assistant", "content": "ha"}, {"role": "assistant", "content": "no"}
    assert split_implicit_conversation([u1, a1, u2, good], [u1, a1, u2, bad]) == ([u1, a1, u2], [good], [bad])
    # a shared first assistant message is part of the completion, not of the prompt
    same = {"role": "assistant", "content": "Sure"}
    assert split_implicit_conversation([u1, same, u2], [u1, same, good]) == ([u1], [same, u2], [same, good])
    assert split_implicit_conversation([u1, good], [u2, bad]) is None


def test_real_hh_all_rows_accounted_for(tok):
    _need(HH)
    rows = load_rows(HH)
    assert len(rows) == 2312
    fmt, records, bad = validate_pairs(rows)
    assert fmt == "implicit" and len(records) == 2308
    # the 4 rows whose chosen text is only the shared dialogue (the prompt plus a space)
    assert [(b.row, b.line, b.field, b.reason) for b in bad] == [
        (86, 87, "chosen", "empty"),
        (516, 517, "chosen", "empty"),
        (925, 926, "chosen", "empty"),
        (1103, 1104, "chosen", "empty"),
    ]
    assert all(r.prompt.endswith("\n\nAssistant:") and r.prompt.startswith("\n\nHuman:") for r in records)
    with pytest.raises(DataError) as info:
        tokenize_pairs(rows, tok, max_length=8192)
    message = str(info.value)
    assert message.startswith(f"4 bad row(s) out of 2312 read from {HH} (empty: 4)")
    for row in (86, 516, 925, 1103):
        assert f"row {row} (line {row + 1}), field 'chosen': empty completion" in message
    data = tokenize_pairs(rows, tok, max_length=8192, on_bad_row="skip")
    assert (data.report.rows_read, data.report.kept, data.report.skipped) == (2312, 2308, {"empty": 4})


def test_real_ultrafeedback_loads_as_explicit():
    _need(ULTRAFEEDBACK)
    rows = load_rows(ULTRAFEEDBACK)
    fmt, records, bad = validate_pairs(rows)
    assert (fmt, len(rows), len(records)) == ("explicit", 1000, 994)
    assert [(b.row, b.field, b.reason) for b in bad] == [
        (306, "rejected", "chosen_equals_rejected"),
        (478, "rejected", "empty"),
        (655, "rejected", "chosen_equals_rejected"),
        (833, "chosen", "empty"),
        (910, "rejected", "chosen_equals_rejected"),
        (997, "rejected", "chosen_equals_rejected"),
    ]
    assert {r.extras.group for r in records} == {"ultrafeedback"}
    assert {r.extras.source for r in records} == {"trl-lib/ultrafeedback_binarized"}


def test_real_pandalm_wrong_types_reported():
    _need(PANDALM)
    fmt, records, bad = validate_pairs(load_rows(PANDALM))
    wrong = [b for b in bad if b.reason == "wrong_type"]
    assert (fmt, len(records), len(bad), len(wrong)) == ("explicit", 836, 58, 6)
    assert wrong[0].row == 139 and "expected a string, got bool True" in wrong[0].detail


# --------------------------------------------------------------------------- conversational


def test_conversational_rendered_with_chat_template(tok):
    user = {"role": "user", "content": "hi"}
    rows = [
        {
            "prompt": [user],
            "chosen": [{"role": "assistant", "content": "hello"}],
            "rejected": [{"role": "assistant", "content": "go away"}],
        },
        {
            "chosen": [user, {"role": "assistant", "content": "hello"}],
            "rejected": [user, {"role": "assistant", "content": "go away"}],
        },
    ]
    data = tokenize_pairs(rows, tok)
    prompt_text = "<|user|>hi<|endoftext|><|assistant|>"
    for e in data.examples:
        assert list(e.prompt_ids) == tok(prompt_text, add_special_tokens=False)["input_ids"]
        assert tok.decode(e.chosen_ids) == "hello<|endoftext|>"
        assert tok.decode(e.rejected_ids) == "go away<|endoftext|>"
        assert e.chosen_ids.count(tok.eos_token_id) == 1


def test_conversational_without_chat_template_is_a_clear_error():
    _need(STORIES)
    from transformers import AutoTokenizer

    stories = AutoTokenizer.from_pretrained(str(STORIES))
    user = {"role": "user", "content": "hi"}
    rows = [
        {
            "prompt": [user],
            "chosen": [{"role": "assistant", "content": "a"}],
            "rejected": [{"role": "assistant", "content": "b"}],
        }
    ]
    with pytest.raises(
        DataError,
        match=r"<memory>: conversational rows .* need a tokenizer with "
        r"a chat template, and tokenizer '.*stories260K' has none",
    ):
        tokenize_pairs(rows, stories)
    # plain text rows are fine with it; pad falls back as the tokenizer defines it
    data = tokenize_pairs([{"prompt": "Once upon a time", "chosen": " a cat", "rejected": " a"}], stories)
    assert data.examples[0].prompt_ids[0] == stories.bos_token_id
    assert data.examples[0].chosen_ids[-1] == stories.eos_token_id


def test_unpaired_tokenize(tok):
    rows = [
        {"prompt": "Q", "completion": "good answer", "label": True},
        {"prompt": "Q", "completion": "bad answer", "label": 0, "group": "x"},
        {"prompt": "Q", "completion": "meh", "label": "maybe"},
    ]
    data = tokenize_unpaired(rows, tok, on_bad_row="skip")
    assert data.kind == "unpaired" and [e.label for e in data.examples] == [True, False]
    assert data.report.skipped == {"bad_label": 1} and data.report.format == "unpaired"
    assert [e.group for e in data.examples] == [-1, 0] and data.group_names == ["x"]
    with pytest.raises(ValueError, match="use tokenize_unpaired"):
        tokenize_pairs(rows, tok)
    assert [e.weight for e in data.examples] == [1.0, 1.0]
