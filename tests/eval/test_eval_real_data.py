"""`dralign eval` on the real held-out files of ../shared/data with the pretrained stories260K
(skipped where the folder is absent): groups, sources, long prompts, default options."""

from __future__ import annotations

import io
import json
from collections import Counter

import pytest
from rich.console import Console

from dralign.cli import main
from dralign.eval.cli import EvalConfig, EvalDataOptions, EvalOptions, run_eval
from helpers import STORIES


def read_jsonl(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.mark.slow
def test_hhh_by_group_with_the_model_as_its_own_reference(shared_data, tmp_path):
    """Every HHH group appears, every kept pair in exactly one; a model scored against itself
    has margin 0 everywhere, so accuracy is exactly ½ (ties count ½) in every group.
    (max_length 128 keeps the run short on CPU; pairs it makes identical are skipped, counted.)"""
    path = shared_data / "hhh-alignment" / "hhh_alignment.jsonl"
    counts = Counter(row["group"] for row in read_jsonl(path))
    output = tmp_path / "hhh.json"
    console = Console(file=io.StringIO(), width=200)
    run_eval(
        EvalConfig(
            eval=EvalOptions(
                model=str(STORIES), reference=str(STORIES), data=str(path), output=str(output), batch_size=8
            ),
            data=EvalDataOptions(max_length=128, on_bad_row="skip"),
        ),
        console=console,
    )
    js = json.loads(output.read_text())
    kept = js["data"]["kept"]
    assert js["data"]["rows_read"] == kept + js["data"]["skipped"] == sum(counts.values())
    assert set(js["groups"]) == set(counts) == {"honest", "helpful", "harmless", "other"}
    assert sum(g["n"] for g in js["groups"].values()) == kept == js["preference"]["n"]
    assert all(g["n"] <= counts[name] for name, g in js["groups"].items())
    assert js["rows_without_group"] == 0 and js["worst_group"] in counts
    for group in js["groups"].values():
        assert group["accuracy"]["mean"] == 0.5 and group["margin"]["mean"] == 0.0
    assert list(js["sources"]) == ["BIG-bench hhh_alignment (via prometheus-eval)"]
    assert js["worst_source"] == "BIG-bench hhh_alignment (via prometheus-eval)"
    printed = console.file.getvalue()
    assert "held-out pairs by group" in printed and f"worst group: {js['worst_group']}" in printed


@pytest.mark.slow
def test_long_real_prompts_are_cut_and_reported_without_prompt_options(shared_data, tmp_path, capsys):
    """UltraFeedback's held-out prompts run past --max-length for this tokenizer: eval cuts
    them as training does (no --max-prompt-length needed), skips the one pair whose responses
    are identical, scores the rest and says what it cut and skipped. (--max-length 128 keeps
    the run short on CPU; the default 512 cuts the same way, at 256 tokens.)"""
    path = shared_data / "ultrafeedback" / "eval200.jsonl"
    output = tmp_path / "uf.json"
    assert (
        main(
            [
                "eval",
                "--model",
                str(STORIES),
                "--reference",
                str(STORIES),
                "--data",
                str(path),
                "--max-length",
                "128",
                "--on-bad-row",
                "skip",
                "--batch-size",
                "8",
                "--output",
                str(output),
            ]
        )
        == 0
    )
    printed = " ".join(capsys.readouterr().out.split())  # the console wraps long paths: compare words
    data = json.loads(output.read_text())["data"]
    assert data["rows_read"] == 200 and data["kept"] + data["skipped"] == 200
    assert data["truncated_prompt"] > 0 and data["kept"] > 0
    assert data["skipped_by_reason"].get("chosen_equals_rejected", 0) >= 1
    assert "Read 200 rows" in printed and "prompts cut to 64 tokens" in printed
    assert "skipped: chosen_equals_rejected" in printed
    js = json.loads(output.read_text())
    assert js["preference"]["n"] == data["kept"]
    assert sum(g["n"] for g in js["groups"].values()) == data["kept"]
    assert sum(s["n"] for s in js["sources"].values()) == data["kept"]
