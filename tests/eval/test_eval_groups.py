"""Held-out metrics per group and source (dralign.eval.groups), the reliability diagram and the
PNG beside the JSON (dralign.eval.plots)."""

from __future__ import annotations

import io
import json
import sys

import numpy as np
import pytest
from rich.console import Console

from dralign.eval.cli import EvalConfig, EvalDataOptions, EvalOptions, run_eval
from dralign.eval.evaluate import preference_metrics, symmetric_ece
from dralign.eval.groups import NO_GROUP, breakdown, worst_name
from dralign.stats import expected_calibration_error, reliability_bins
from helpers import preference_rows, write_jsonl


def test_reliability_bins_hand_values_and_ece():
    probs, labels = [0.05, 0.15, 0.18, 0.95, 0.92], [0, 1, 0, 1, 1]
    bins = reliability_bins(probs, labels, bins=10)
    assert [(b["low"], b["n"]) for b in bins] == [(0.0, 1), (0.1, 2), (0.9, 2)]
    assert bins[1]["confidence"] == pytest.approx(0.165) and bins[1]["accuracy"] == 0.5
    assert bins[2]["confidence"] == pytest.approx(0.935) and bins[2]["accuracy"] == 1.0
    ece = sum(b["n"] / 5 * abs(b["accuracy"] - b["confidence"]) for b in bins)
    assert ece == pytest.approx(expected_calibration_error(probs, labels))
    assert reliability_bins([1.0], [1], bins=4)[0]["low"] == 0.75  # the last bin is closed


def test_breakdown_splits_every_pair_into_one_bucket():
    chosen = np.array([1.0, 0.0, 2.0, -1.0, 0.5, 0.0, 3.0])
    rejected = np.array([0.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0])
    labels = ["b", "a", "b", "a", None, None, "c"]  # margins a: -1, -1; b: 1, 1; c: 3
    out = breakdown(chosen, rejected, labels, order=["b", "a"], seed=0)
    assert list(out["by"]) == ["b", "a", "c", NO_GROUP]  # the given order, then new names, then none
    assert [m["n"] for m in out["by"].values()] == [2, 2, 1, 2]
    assert out["without"] == 2
    assert out["by"]["a"]["accuracy"].mean == 0.0 and out["by"]["b"]["accuracy"].mean == 1.0
    assert out["by"][NO_GROUP]["accuracy"].mean == 0.75  # margins 0.5 and 0 (a tie counts ½)
    assert out["worst"] == "a"
    # each bucket's metrics are those of its pairs alone
    alone = preference_metrics(chosen[[1, 3]], rejected[[1, 3]], seed=0)
    assert out["by"]["a"]["margin"] == alone["margin"]
    assert out["by"]["a"]["ece"].mean == pytest.approx(symmetric_ece(1 / (1 + np.exp([1.0, 1.0]))))
    with pytest.raises(ValueError, match="labels"):
        breakdown(chosen, rejected, labels[:-1])


def test_the_worst_group_is_never_the_bucket_without_a_group():
    out = breakdown([0.0, 1.0], [1.0, 0.0], [None, "x"])
    assert out["worst"] == "x" and out["without"] == 1
    assert breakdown([1.0], [0.0], [None])["worst"] is None
    # ties in accuracy go to the lower mean margin
    metrics = breakdown([1.0, 2.0], [0.0, 0.0], ["p", "q"])["by"]
    assert worst_name(metrics) == "p"


@pytest.fixture(scope="module")
def grouped_file(tmp_path_factory):
    rows = preference_rows(12)
    for i, row in enumerate(rows):
        row["meta"] = {"topic": ["x", "y"][i % 2]} if i % 4 else {}  # 3 rows without a topic
        row.pop("group")
    return write_jsonl(tmp_path_factory.mktemp("grouped") / "pairs.jsonl", rows)


def run(model, reference, data, tmp_path, **data_options):
    console = Console(file=io.StringIO(), width=200)
    output = tmp_path / "eval.json"
    opts = EvalOptions(model=model, reference=reference, data=str(data), output=str(output), batch_size=4)
    results = run_eval(EvalConfig(eval=opts, data=EvalDataOptions(max_length=64, **data_options)), console=console)
    return results, json.loads(output.read_text()), console.file.getvalue(), output


def test_eval_reports_groups_worst_group_and_writes_the_png(tiny_model_dir, grouped_file, tmp_path):
    results, js, printed, output = run(
        tiny_model_dir("llama", seed=1), tiny_model_dir("llama"), grouped_file, tmp_path, group_column="meta.topic"
    )
    assert set(js["groups"]) == {"x", "y", NO_GROUP}
    assert js["rows_without_group"] == js["groups"][NO_GROUP]["n"] == 3
    assert sum(g["n"] for g in js["groups"].values()) == js["preference"]["n"] == 12
    assert js["worst_group"] in ("x", "y")
    for metrics in js["groups"].values():
        assert {"accuracy", "margin", "ece", "brier", "reliability", "n"} <= set(metrics)
        assert set(metrics["accuracy"]) == {"mean", "low", "high", "n", "level"}
    assert "sources" not in js  # no source column in the data
    assert f"worst group: {js['worst_group']}" in printed and "(worst)" in printed
    assert "3 pairs have no group" in printed
    png = output.with_suffix(".png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f"wrote {png}" in printed


def test_a_missing_group_column_is_an_error(tiny_model_dir, grouped_file, tmp_path):
    from dralign.data import DataError

    with pytest.raises(DataError, match="meta.nope"):
        run(tiny_model_dir("llama"), tiny_model_dir("llama"), grouped_file, tmp_path, group_column="meta.nope")


def test_without_matplotlib_the_png_is_skipped_with_one_line(tiny_model_dir, grouped_file, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)  # import fails as if not installed
    _, js, printed, output = run(tiny_model_dir("llama"), tiny_model_dir("llama"), grouped_file, tmp_path)
    assert not output.with_suffix(".png").exists() and js["preference"]["n"] == 12
    assert "pip install 'dralign[bench]'" in printed
