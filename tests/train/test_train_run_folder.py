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
