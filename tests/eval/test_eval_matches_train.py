"""`dralign eval` reads held-out data exactly as the trainer does and gives the numbers of the
trainer's final held-out evaluation on the same model, reference, data and beta."""

from __future__ import annotations

import io
import json
import re

import pytest
from rich.console import Console

from dralign.cli import main
from dralign.eval.cli import EvalConfig, EvalDataOptions, EvalOptions, run_eval
from helpers import preference_rows, write_jsonl

# every option with which the trainer reads data differently from the defaults
DATA_FLAGS = {
    "prompt_column": "question",
    "group_column": "meta.g",
    "source_column": "origin",
    "max_length": 64,
    "max_prompt_length": 32,
    "on_bad_row": "skip",
}


def held_out_rows() -> list:
    """Pairs under other column names, a nested group (missing on some rows), long prompts
    that are cut, a third of the labels reversed, and bad rows that are skipped."""
    rows = []
    for i, row in enumerate(preference_rows(40, seed=3)):
        prompt = row["prompt"] + (" and tell me more" * 6 if i % 5 == 0 else "")
        meta = {"g": row["group"]} if i % 7 else {}
        chosen, rejected = row["chosen"], row["rejected"]
        if i % 3 == 0:  # against what training teaches: accuracy strictly between 0 and 1
            chosen, rejected = rejected, chosen
        rows.append(
            {
                "question": prompt,
                "chosen": chosen,
                "rejected": rejected,
                "meta": meta,
                "origin": "s1" if i < 25 else "s2",
            }
        )
    rows.append({"question": "q?", "chosen": "", "rejected": " no."})  # empty: skipped
    rows.append("{broken json")  # unreadable: skipped
    return rows


@pytest.mark.slow
def test_eval_gives_the_trainers_final_held_out_numbers(tiny_model_dir, pref_jsonl, tmp_path, capsys):
    start = tiny_model_dir("llama")
    held_out = write_jsonl(tmp_path / "heldout.jsonl", held_out_rows())
    train_file = write_jsonl(
        tmp_path / "train.jsonl",
        [
            {
                "question": r["prompt"],
                "chosen": r["chosen"],
                "rejected": r["rejected"],
                "meta": {"g": r["group"]},
                "origin": "s1",
            }
            for r in preference_rows(32)
        ],
    )
    out, beta = tmp_path / "run", 0.3
    flags = [x for k, v in DATA_FLAGS.items() for x in (f"--{k.replace('_', '-')}", str(v))]
    rc = main(
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
            "2e-3",
            "--beta",
            str(beta),
            "--output-dir",
            str(out),
            *flags,
        ]
    )
    printed = capsys.readouterr().out
    assert rc == 0, printed
    final = json.loads((out / "final_metrics.json").read_text())
    trainer_report = re.search(r"eval data: (.*)", printed).group(1)

    console = Console(file=io.StringIO(), width=100_000)  # one line per message
    results = run_eval(
        EvalConfig(
            eval=EvalOptions(model=str(out), reference=start, data=str(held_out), beta=beta, batch_size=5),
            data=EvalDataOptions(**DATA_FLAGS),
        ),
        console=console,
    )
    # the same rows kept, skipped and cut, in the same words; the same batch layout
    assert f"eval data: {trainer_report}" in console.file.getvalue()
    assert "prefix sharing on" in printed and "prefix sharing on" in console.file.getvalue()
    assert results["data"]["skipped"] == 2 and results["data"]["truncated_prompt"] == 8
    pref = results["preference"]
    assert pref["n"] == results["data"]["kept"] == 40
    # the trainer counts a tie as a loss, eval as ½: equal when no margin is exactly 0
    assert pref["accuracy"].mean == pytest.approx(final["eval/rewards/accuracies"], abs=1e-6)
    assert pref["margin"].mean == pytest.approx(final["eval/rewards/margins"], abs=1e-6)
    assert pref["reward_chosen"].mean == pytest.approx(final["eval/rewards/chosen"], abs=1e-6)
    assert 0.5 < pref["accuracy"].mean < 1  # the model moved, and not every pair agrees
    # the nested group column was read; rows without one counted, never dropped
    assert set(results["groups"]) == {"a", "b", "(none)"}
    assert results["rows_without_group"] == results["groups"]["(none)"]["n"] == 6
    assert sum(g["n"] for g in results["groups"].values()) == 40
    assert set(results["sources"]) == {"s1", "s2"} and results["rows_without_source"] == 0
