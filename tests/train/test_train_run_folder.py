"""Reliability, round 3 (issue 18, the run-folder part): a run never loses its steps or the
user's files, `--resume` notices changed inputs, a model is never paired with a reference of
another tokenizer, and the caches heal themselves. Each test reproduces one item of the issue
on tiny models built from configs."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys

import pytest

from dralign.cli import main
from helpers import REPO_ROOT, preference_rows, write_jsonl

FAST = ["--no-progress", "--max-length", "64", "--batch-size", "8", "--lr", "1e-3"]


def run(*args) -> int:
    return main(["train", *FAST, *map(str, args)])


@pytest.fixture
def base(tiny_model_dir, pref_jsonl):
    return ["--model", tiny_model_dir("llama"), "--data", pref_jsonl]


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    return err


# ----------------------------------------------------------------------------- held-out groups
def test_a_held_out_group_unseen_in_training_is_no_group(tiny_model_dir, tmp_path):
    """Issue 18 item 1: group DRO trained on groups a, b and evaluated on rows of a group c
    finishes (model, checkpoint), counting the c rows as without a group."""
    held_out = preference_rows(8, seed=1)
    for row in held_out[:3]:
        row["group"] = "c"
    data = write_jsonl(tmp_path / "t.jsonl", preference_rows(32))
    eval_data = write_jsonl(tmp_path / "e.jsonl", held_out)
    out = tmp_path / "o"
    assert run("--model", tiny_model_dir("llama"), "--data", data, "--eval-data", eval_data,
               "--method", "group-dro", "--max-steps", 1, "--output-dir", out) == 0
    final = json.loads((out / "final_metrics.json").read_text())
    assert final["eval/rows_without_group"] == 3
    assert (out / "model.safetensors").is_file() and list((out / "checkpoints").iterdir())


# ----------------------------------------------------------------------------- caches
def test_a_flipped_byte_in_the_data_cache_is_detected_and_rebuilt(base, tmp_path, capsys, caplog):
    """Issue 18 item 12 (README: "a truncated or altered cache is rebuilt, with a message"): one
    flipped byte in `ref_cache/data/*/arrays.npz` is one warning line and a rebuild, also
    under --overwrite; before, a BadZipFile traceback on every later run."""
    out = tmp_path / "o"
    assert run(*base, "--max-steps", 1, "--output-dir", out) == 0
    (arrays,) = (out / "ref_cache" / "data").glob("*/arrays.npz")
    raw = bytearray(arrays.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    arrays.write_bytes(bytes(raw))
    capsys.readouterr()
    assert run(*base, "--max-steps", 1, "--output-dir", out, "--overwrite") == 0
    warnings = [r.getMessage() for r in caplog.records if "damaged" in r.getMessage()]
    assert len(warnings) == 1 and "will be rebuilt" in warnings[0], caplog.text
    assert "Traceback" not in capsys.readouterr().err
    caplog.clear()
    assert run(*base, "--max-steps", 1, "--output-dir", out, "--overwrite") == 0  # healed
    assert "tokenised data read from" in capsys.readouterr().out and "damaged" not in caplog.text
