"""Large data: JSONL read a block at a time, tokenisation in chunks, progress bars, and the
tokenised-data cache (keyed by source content, tokenizer and settings)."""

from __future__ import annotations

import dataclasses
import gzip
import json
import random

import pytest

from dralign.data import cache, load_preference_data, load_rows, loading, tokenize_pairs
from dralign.data import options as options_module
from dralign.data import tokenize as tokenize_module
from helpers import preference_rows, unpaired_rows, write_jsonl


def _messy_bytes(seed: int) -> bytes:
    """JSONL with every line ending, blank lines, a BOM, bad JSON and bad UTF-8."""
    rng = random.Random(seed)
    parts = [loading.UTF8_BOM]
    for i in range(60):
        kind = rng.random()
        body = (
            b"{not json"
            if kind < 0.1
            else b"\xff\xfe"
            if kind < 0.15
            else b"   "
            if kind < 0.25
            else json.dumps({"i": i, "text": "x" * rng.randint(0, 20)}).encode()
        )
        parts.append(body + rng.choice([b"\n", b"\r\n", b"\r"]))
    if seed % 2:
        parts.append(b'{"last": 1}')  # no final line end
    return b"".join(parts)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("block", [1, 2, 5, 64])
def test_block_reading_splits_lines_as_splitlines(tmp_path, monkeypatch, seed, block):
    raw = _messy_bytes(seed)
    path = tmp_path / "rows.jsonl"
    path.write_bytes(raw)
    expected = loading._parse_jsonl(raw[len(loading.UTF8_BOM) :].splitlines(), str(path))
    monkeypatch.setattr(loading, "BLOCK", block)
    assert load_rows(path) == expected
    gz = tmp_path / "rows.jsonl.gz"
    gz.write_bytes(gzip.compress(raw))
    got = load_rows(gz)
    assert [(r.data, r.index, r.line, r.error_reason) for r in got] == [
        (r.data, r.index, r.line, r.error_reason) for r in expected
    ]


def test_progress_bars_do_not_change_the_result(tmp_path, tok, monkeypatch):
    path = write_jsonl(tmp_path / "pairs.jsonl", preference_rows(40))
    plain = load_preference_data(path, tok, max_length=64)
    monkeypatch.setattr(loading, "PROGRESS_BYTES", 0)
    monkeypatch.setattr(tokenize_module, "CHUNK", 7)  # several chunks, so the bar shows
    shown = load_preference_data(path, tok, max_length=64, progress=True)
    assert shown.examples == plain.examples and shown.report == plain.report


class CountingTokenizer:
    """Wraps a tokenizer, recording the size of every batch it is called with."""

    def __init__(self, tok):
        self.tok, self.calls = tok, []

    def __call__(self, texts, **kwargs):
        self.calls.append(len(texts))
        return self.tok(texts, **kwargs)

    def __getattr__(self, name):
        return getattr(self.tok, name)


def test_tokenisation_in_chunks_gives_the_same_data_and_bad_rows(tok, monkeypatch):
    rows = preference_rows(50)
    rows[3]["chosen"] = rows[3]["rejected"]  # a bad row before the chunk boundary
    rows[12]["prompt"] = 7  # a validation error
    rows[30]["rejected"] = rows[30]["chosen"]
    whole = tokenize_pairs(rows, tok, max_length=64, on_bad_row="skip")
    monkeypatch.setattr(tokenize_module, "CHUNK", 8)
    counting = CountingTokenizer(tok)
    chunked = tokenize_pairs(rows, counting, max_length=64, on_bad_row="skip")
    assert max(counting.calls) <= 8  # the tokenizer never sees the whole set at once
    assert chunked.examples == whole.examples
    assert chunked.report == whole.report and chunked.report.n_skipped == 3
    assert chunked.group_names == whole.group_names
    with pytest.raises(Exception) as err:
        tokenize_pairs(rows, tok, max_length=64)
    assert "row 3" in str(err.value) and "row 30" in str(err.value)


@pytest.mark.parametrize("unpaired", [False, True])
def test_cache_round_trip_is_exact(tmp_path, tok, unpaired):
    rows = unpaired_rows(30) if unpaired else preference_rows(30)
    rows[5]["weight"] = 2.5
    rows[6]["target_prob"] = 0.25
    rows[7]["prompt"] = None  # a bad row, kept in the report
    path = write_jsonl(tmp_path / "rows.jsonl", rows)
    data = load_preference_data(path, tok, unpaired=unpaired, max_length=64, on_bad_row="skip")
    key = cache.fingerprint(path, tok, {"max_length": 64})
    cache.save(data, tmp_path / "cache", key)
    back = cache.load(tmp_path / "cache", key)
    assert back is not None
    for f in dataclasses.fields(data):
        assert getattr(back, f.name) == getattr(data, f.name), f.name
    assert back.fingerprint() == data.fingerprint()
    assert back.report.summary() == data.report.summary()


def test_cache_key_follows_content_tokenizer_and_settings(tmp_path, tok, world_tok):
    path = write_jsonl(tmp_path / "rows.jsonl", preference_rows(10))
    key = cache.fingerprint(path, tok, {"max_length": 64})
    assert key == cache.fingerprint(path, tok, {"max_length": 64})
    assert key != cache.fingerprint(path, tok, {"max_length": 65})
    assert key != cache.fingerprint(path, world_tok, {"max_length": 64})
    write_jsonl(path, preference_rows(10, seed=1))
    assert key != cache.fingerprint(path, tok, {"max_length": 64})
    assert cache.fingerprint("some/hub-name", tok, {}) is None  # not a local file: not cached


def test_load_preference_data_reads_the_cache_the_second_time(tmp_path, tok, monkeypatch):
    path = write_jsonl(tmp_path / "rows.jsonl", preference_rows(20))
    first = load_preference_data(path, tok, max_length=64, cache_dir=tmp_path / "c")
    assert len(list((tmp_path / "c").iterdir())) == 1

    def no_reading(*args, **kwargs):
        raise AssertionError("the rows were read again")

    monkeypatch.setattr(options_module, "load_rows", no_reading)
    second = load_preference_data(path, tok, max_length=64, cache_dir=tmp_path / "c")
    assert second.examples == first.examples
    with pytest.raises(AssertionError, match="read again"):  # other settings: another entry
        load_preference_data(path, tok, max_length=32, cache_dir=tmp_path / "c")


def test_a_damaged_entry_is_rebuilt(tmp_path, tok):
    path = write_jsonl(tmp_path / "rows.jsonl", preference_rows(10))
    data = load_preference_data(path, tok, max_length=64, cache_dir=tmp_path / "c")
    (entry,) = (tmp_path / "c").iterdir()
    (entry / "arrays.npz").write_bytes(b"garbage")
    key = cache.fingerprint(path, tok, {"max_length": 64, "subset": None, "split": "train", "unpaired": False})
    assert cache.load(tmp_path / "c", key) is None
    again = load_preference_data(path, tok, max_length=64, cache_dir=tmp_path / "c")
    assert again.examples == data.examples


def test_bad_rows_still_name_file_line_and_field_with_a_cache(tmp_path, tok):
    path = write_jsonl(tmp_path / "rows.jsonl", [*preference_rows(5), "{broken", {"prompt": "p"}])
    for _ in range(2):  # built, then read back: the same report
        data = load_preference_data(path, tok, max_length=64, on_bad_row="skip", cache_dir=tmp_path / "c")
        lines = [str(b) for b in data.report.bad_rows]
        assert lines[0].startswith(f"{path}: row 5 (line 6), whole row: invalid JSON")
        assert lines[1].startswith(f"{path}: row 6 (line 7), field 'chosen'")


@pytest.mark.slow
def test_train_caches_tokenised_data_beside_the_reference(tiny_model_dir, pref_jsonl, tmp_path, capsys):
    from dralign.cli import main

    args = [
        "train",
        "--no-progress",
        "--max-length",
        "64",
        "--batch-size",
        "8",
        "--max-steps",
        "1",
        "--model",
        tiny_model_dir("llama"),
        "--data",
        str(pref_jsonl),
        "--eval-fraction",
        "0.25",
        "--output-dir",
        str(tmp_path / "out"),
    ]
    assert main(args) == 0
    first = capsys.readouterr().out
    assert "tokenised data read from" not in first
    assert len(list((tmp_path / "out" / "ref_cache" / "data").glob("data-*"))) == 2  # train, eval
    assert main([*args, "--overwrite"]) == 0
    second = capsys.readouterr().out
    assert "tokenised data read from" in second
    summary = [line for line in first.splitlines() if line.startswith(("train data:", "eval data:"))]
    assert summary and summary == [
        line for line in second.splitlines() if line.startswith(("train data:", "eval data:"))
    ]
