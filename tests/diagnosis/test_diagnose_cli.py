"""`dralign diagnose` end to end: the cut counts against what `dralign train` cuts on the same
file and settings, the tokenised-data cache shared with train, --model's label signal on a
tiny model, the real data sets, and the shipped evidence table against docs/shift/results.json."""

from __future__ import annotations

import json
import re

import pytest

from dralign.cli import main
from helpers import REPO_ROOT, SHARED_DATA, STORIES, write_jsonl

KEYS = {"rows", "duplicates", "leakage", "lengths", "groups", "sources", "label_signal", "advice"}


def long_rows(n: int = 24) -> list[dict]:
    """Pairs whose prompts and responses vary in length, so a small --max-length cuts some."""
    rows = []
    for i in range(n):
        prompt = "Human: " + "please tell me a story about the weather " * (1 + i % 5) + "? Assistant:"
        rows.append(
            {
                "prompt": prompt,
                "chosen": " a good happy answer" * (1 + i % 4),
                "rejected": " a bad sad answer" * (1 + (i + 2) % 4),
                "group": "ab"[i % 2],
            }
        )
    return rows


def cuts_in(text: str, label: str) -> tuple[int, int]:
    """(prompts cut, completions cut) from the loader's summary line printed as `label data:`."""
    found = re.search(
        rf"{label} data: .*?Truncated: (\d+) prompts cut .*?completions cut in (\d+) rows", " ".join(text.split())
    )
    assert found, text
    return int(found[1]), int(found[2])


@pytest.mark.slow
def test_cut_counts_are_what_train_cuts(tiny_model_dir, tmp_path, capsys):
    model = tiny_model_dir("llama")
    data = write_jsonl(tmp_path / "pairs.jsonl", long_rows())
    settings = ["--max-length", "40", "--max-prompt-length", "24"]
    assert (
        main(
            [
                "train",
                "--model",
                model,
                "--data",
                str(data),
                *settings,
                "--max-steps",
                "1",
                "--batch-size",
                "4",
                "--no-progress",
                "--output-dir",
                str(tmp_path / "run"),
            ]
        )
        == 0
    )
    trained = cuts_in(capsys.readouterr().out, "train")
    assert trained[0] > 0 and trained[1] > 0  # the file and settings do cut both
    out = tmp_path / "d.json"
    assert (
        main(
            [
                "diagnose",
                "--data",
                str(data),
                "--model",
                model,
                *settings,
                "--max-rows",
                "8",
                "--json",
                str(out),
                "--no-progress",
            ]
        )
        == 0
    )
    report = json.loads(out.read_text())
    assert (report["lengths"]["prompts_cut"], report["lengths"]["completions_cut"]) == trained
    assert report["lengths"]["unit"] == "tokens" and report["lengths"]["max_length"] == 40
    # the label signal of --model: 8 sampled pairs, overall, per group, with intervals
    signal = report["label_signal"]
    assert signal["pairs_scored"] == 8 and signal["pairs"] == 24
    assert (
        0
        <= signal["prefers_chosen"]["low"]
        <= signal["prefers_chosen"]["mean"]
        <= signal["prefers_chosen"]["high"]
        <= 1
    )
    assert sum(g["prefers_chosen"]["n"] for g in signal["by_group"].values()) == 8
    assert KEYS <= set(report) and (tmp_path / "d.png").is_file()


@pytest.mark.slow
def test_diagnose_reads_the_tokenised_data_train_cached(tiny_model_dir, tmp_path, capsys):
    model = tiny_model_dir("llama")
    data = write_jsonl(tmp_path / "pairs.jsonl", long_rows(12))
    run = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "--model",
                model,
                "--data",
                str(data),
                "--max-length",
                "40",
                "--max-steps",
                "1",
                "--batch-size",
                "4",
                "--no-progress",
                "--output-dir",
                str(run),
            ]
        )
        == 0
    )
    capsys.readouterr()
    # train's settings (its --on-bad-row is error, diagnose's skip): the entry's key is the same
    assert (
        main(
            [
                "diagnose",
                "--data",
                str(data),
                "--tokenizer",
                model,
                "--max-length",
                "40",
                "--on-bad-row",
                "error",
                "--cache-dir",
                str(run / "ref_cache" / "data"),
                "--no-progress",
            ]
        )
        == 0
    )
    assert "tokenised data read from" in capsys.readouterr().out


def test_bad_option_is_one_line(tmp_path, capsys):
    data = write_jsonl(tmp_path / "p.jsonl", [{"prompt": "p", "chosen": " a", "rejected": " b"}])
    assert main(["diagnose", "--data", str(data), "--target", "human"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no source column" in err


def test_without_the_plotting_extra_the_png_is_skipped_with_one_line(tmp_path, monkeypatch, capsys):
    import sys

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` raises ImportError
    monkeypatch.delitem(sys.modules, "dralign.diagnosis.plots", raising=False)
    data = write_jsonl(
        tmp_path / "p.jsonl", [{"prompt": f"p{i}", "chosen": " yes", "rejected": " no"} for i in range(3)]
    )
    out = tmp_path / "d.json"
    assert main(["diagnose", "--data", str(data), "--json", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert out.is_file() and not (tmp_path / "d.png").exists()
    assert [line for line in printed.splitlines() if line.startswith("no plot")] == [
        f"no plot: matplotlib is not installed (pip install 'dralign[bench]' to get {tmp_path / 'd.png'})"
    ]


REAL = [
    "hh-rlhf/harmless-base_test.jsonl.gz",
    "ultrafeedback/train1000.jsonl",
    "summarize-from-feedback/tldr_batch18.jsonl",
    "pandalm/testset_majority.jsonl",
    "hhh-alignment/hhh_alignment.jsonl",
]


@pytest.mark.slow
@pytest.mark.parametrize("name", REAL)
def test_real_sets_with_defaults(name, tmp_path, capsys):
    path = SHARED_DATA / name
    if not path.is_file():
        pytest.skip(f"{path} is absent (the shared real data)")
    out = tmp_path / "d.json"
    assert main(["diagnose", "--data", str(path), "--json", str(out), "--no-progress"]) == 0
    report = json.loads(out.read_text())
    assert KEYS <= set(report)
    assert set(report["duplicates"]) == {"exact", "contradictory"}
    assert {"chosen_longer_fraction", "longer_baseline_accuracy", "prompts_cut", "completions_cut"} <= set(
        report["lengths"]
    )
    rows = report["rows"]
    assert rows["kept"] + rows["skipped"] == rows["rows_read"] > 0
    assert all(
        isinstance(a["evidence"], (str, list)) and a["finding"] and a["recommendation"] for a in report["advice"]
    )
    assert "advice" in capsys.readouterr().out


@pytest.mark.slow
def test_real_model_and_real_data_with_eval_and_target(tmp_path):
    data, held = SHARED_DATA / "ultrafeedback/train1000.jsonl", SHARED_DATA / "ultrafeedback/eval200.jsonl"
    tldr = SHARED_DATA / "summarize-from-feedback/tldr_batch18.jsonl"
    if not (data.is_file() and held.is_file() and tldr.is_file() and STORIES.is_dir()):
        pytest.skip("the shared real data or stories260K is absent")
    out = tmp_path / "uf.json"
    assert (
        main(
            [
                "diagnose",
                "--data",
                str(data),
                "--eval",
                str(held),
                "--model",
                str(STORIES),
                "--max-rows",
                "64",
                "--max-length",
                "256",
                "--json",
                str(out),
                "--no-progress",
            ]
        )
        == 0
    )
    report = json.loads(out.read_text())
    assert report["leakage"]["eval_rows"] == report["eval_rows"]["kept"]
    assert report["label_signal"]["pairs_scored"] == 64
    assert report["lengths"]["prompts_cut"] is not None
    out = tmp_path / "tldr.json"
    assert (
        main(
            [
                "diagnose",
                "--data",
                str(tldr),
                "--source-column",
                "group",
                "--target",
                "tldr:human_vs_model",
                "--json",
                str(out),
                "--no-progress",
            ]
        )
        == 0
    )
    sources = json.loads(out.read_text())["sources"]
    assert 0.5 < sources["auc"] <= 1 and 0 < sources["ess"] <= 1


def test_shipped_evidence_table_is_fresh():
    from dralign.diagnosis.evidence import (
        RESULTS,
        TABLE,
        claims_from_results,
        render_table,
    )

    if not RESULTS.is_file():
        pytest.skip("docs/shift/results.json is absent (an installed package)")
    expected = render_table(claims_from_results(json.loads(RESULTS.read_text())))
    assert TABLE.read_text() == expected, (
        "stale: run `python -m dralign.diagnosis.evidence` after changing docs/shift/results.json"
    )
    assert RESULTS.parent.parent.parent == REPO_ROOT
