"""`dralign eval --data` after a training run: the length controls overall and per group, the
per-pair file, and the reference read from the run's cache (or --ref-cache-dir) instead of
scoring the reference again."""

from __future__ import annotations

import io
import json
import math

import pytest
from rich.console import Console

import dralign.eval.cli as eval_cli
from dralign.cli import main
from dralign.eval.cli import EvalConfig, EvalDataOptions, EvalOptions, run_eval
from helpers import preference_rows, write_jsonl


@pytest.fixture(scope="module")
def trained(tiny_model_dir, tmp_path_factory):
    """(start model, a 2-step run with held-out data, the held-out file)."""
    root = tmp_path_factory.mktemp("run")
    start = tiny_model_dir("llama")
    train_file = write_jsonl(root / "train.jsonl", preference_rows(16))
    held_out = write_jsonl(root / "heldout.jsonl", preference_rows(12, seed=5))
    out = root / "run"
    assert (
        main(
            [
                "train",
                "--no-progress",
                "--model",
                start,
                "--data",
                str(train_file),
                "--eval-data",
                str(held_out),
                "--max-steps",
                "2",
                "--batch-size",
                "8",
                "--lr",
                "1e-3",
                "--max-length",
                "64",
                "--output-dir",
                str(out),
            ]
        )
        == 0
    )
    return start, out, held_out


def evaluate(start, out, held_out, monkeypatch, **kw):
    """run_eval as the command line would, counting the models it loads; (results, log, loads)."""
    loaded = []
    real_load = eval_cli._load
    monkeypatch.setattr(
        eval_cli, "_load", lambda opts, name, device: loaded.append(name) or real_load(opts, name, device)
    )
    console = Console(file=io.StringIO(), width=100_000)
    results = run_eval(
        EvalConfig(
            eval=EvalOptions(model=str(out), reference=start, data=str(held_out), batch_size=5, **kw),
            data=EvalDataOptions(max_length=64),
        ),
        console=console,
    )
    return results, console.file.getvalue(), loaded


def test_eval_reads_the_training_runs_reference_cache(trained, monkeypatch, tmp_path):
    start, out, held_out = trained
    cached, log, loaded = evaluate(start, out, held_out, monkeypatch)
    assert f"reference log-probs read from {out / 'ref_cache'}" in log
    assert loaded == [str(out)]  # the reference model was never loaded nor run
    # elsewhere: scored once with the reference model into --ref-cache-dir, then read from it
    fresh, log, loaded = evaluate(start, out, held_out, monkeypatch, ref_cache_dir=str(tmp_path / "c"))
    assert f"computing reference log-probs for 12 examples -> {tmp_path / 'c'}" in log
    again, log, loaded = evaluate(start, out, held_out, monkeypatch, ref_cache_dir=str(tmp_path / "c"))
    assert "reference log-probs read from" in log and loaded == [str(out)]
    for other in (fresh, again):
        assert other["preference"]["margin"].mean == pytest.approx(cached["preference"]["margin"].mean, abs=1e-5)


def test_a_cache_of_other_pairs_is_not_read(trained, monkeypatch, tmp_path):
    start, out, _ = trained
    other = write_jsonl(tmp_path / "other.jsonl", preference_rows(6, seed=9))
    _, log, loaded = evaluate(start, out, other, monkeypatch)
    assert "no reference cache of these pairs" in log and loaded == [str(out), start]


def test_length_controls_and_the_per_pair_file(trained, monkeypatch, tmp_path, capsys):
    start, out, held_out = trained
    per_pair = tmp_path / "pairs.jsonl"
    results, log, _ = evaluate(start, out, held_out, monkeypatch, per_pair=str(per_pair), length_tolerance=0.5)
    # stdout is not a terminal here: the scoring's progress is a plain line (3 batches of 5)
    assert "held-out pairs 3/3 · " in capsys.readouterr().out
    lines = [json.loads(line) for line in per_pair.read_text().splitlines()]
    assert len(lines) == results["preference"]["n"] == 12
    assert [x["row"] for x in lines] == sorted(x["row"] for x in lines)
    for x in lines:
        assert x["file"] == str(held_out) and x["group"] in ("a", "b")
        assert x["margin"] == pytest.approx(
            0.1 * ((x["policy_chosen"] - x["ref_chosen"]) - (x["policy_rejected"] - x["ref_rejected"]))
        )
        assert 0 < x["p_chosen"] < 1 and min(x["prompt_tokens"], x["chosen_tokens"]) > 0
    # the summary's length block is the per-pair file's, recomputed by hand
    length = results["preference"]["length"]
    longer = [
        1.0 if x["chosen_tokens"] > x["rejected_tokens"] else 0.5 if x["chosen_tokens"] == x["rejected_tokens"] else 0.0
        for x in lines
    ]
    assert length["longer_baseline"].mean == pytest.approx(sum(longer) / len(longer))
    matched = [
        x
        for x in lines
        if abs(x["chosen_tokens"] - x["rejected_tokens"]) <= 0.5 * max(x["chosen_tokens"], x["rejected_tokens"])
    ]
    assert length["tolerance"] == 0.5 and length["length_matched"]["n"] == len(matched)
    assert set(results["groups"]["a"]["length"]) >= {
        "longer_baseline",
        "length_matched",
        "chosen_longer",
        "chosen_shorter",
    }
    assert "pick-the-longer baseline" in log and "length-matched" in log
    # the trainer's held-out evaluation reports the same controls (at its default 10 %)
    final = json.loads((out / "final_metrics.json").read_text())
    assert final["eval/length/longer_baseline"] == pytest.approx(length["longer_baseline"].mean)
    at_ten = evaluate(start, out, held_out, monkeypatch)[0]
    at_ten, groups = at_ten["preference"]["length"], at_ten["groups"]
    for prefix, block in (("", at_ten), ("group/a/", groups["a"]["length"]), ("group/b/", groups["b"]["length"])):
        for key in ("length_matched", "chosen_longer", "chosen_shorter"):
            assert final[f"eval/length/{prefix}{key}_n"] == block[key]["n"]
            got, want = final[f"eval/length/{prefix}{key}_accuracy"], block[key]["accuracy"]
            assert (math.isnan(got) and want is None) or got == pytest.approx(want.mean)
