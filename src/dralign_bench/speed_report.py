"""`dralign bench speed`'s goals and tables: each goal's target against the measured value, and
the console tables of the three sections (see :mod:`dralign_bench.speed`)."""

from __future__ import annotations

from .speed_data import REAL_WORKLOADS, VOCAB_WORKLOADS

__all__ = ["GOALS", "SHARED_WDPO", "goals", "print_results"]

# WDPO with the shared-prompt penalty (one prompt copy per pair, prefix-shared; dralign.train.penalty)
SHARED_WDPO = "wdpo finite difference, shared layout"

# the goals of issue 14 (docs: docs/benchmarks/speed.md)
GOALS = {
    "ratio_vs_trl_prompt_heavy": (">=", 3.5),
    "ratio_vs_trl_balanced": (">=", 3.0),
    "ratio_vs_trl_vocab": (">=", 2.0),
    "ratio_vs_trl_real": (">=", 2.0),
    "peak_rss_vs_trl_real": ("<=", 0.5),
    "objective_step_vs_dpo": ("<=", 1.05),
    "wdpo_fd_vs_dpo": ("<=", 2.2),
    "exact_vs_local": ("<=", 1.3),
    "peak_rss_vs_trl": ("<=", 1.0),
    "peak_rss_vs_trl_vocab": ("<=", 0.5),
}


def goals(results: dict) -> list[dict]:
    """Each goal with its target, the measured value and whether it is met."""
    rows = []

    def add(name, value, what, reported_only=False):
        op, target = GOALS[name]
        met = None if reported_only else bool(value >= target if op == ">=" else value <= target)
        rows.append({"goal": name, "what": what, "target": f"{op} {target}", "measured": round(value, 3), "met": met})

    trl = results.get("trl", {})
    for workload, entry in trl.items():
        kind = "_vocab" if workload in VOCAB_WORKLOADS else "_real" if workload in REAL_WORKLOADS else ""
        add(
            f"ratio_vs_trl{kind}" if kind else f"ratio_vs_trl_{workload}",
            entry["ratio_vs_trl"],
            f"dralign / TRL pairs/s, {workload}",
        )
        add(
            f"peak_rss_vs_trl{kind}",
            entry["dralign_peak_rss_mb"] / entry["trl_peak_rss_mb"],
            f"dralign / TRL peak RSS, {workload}",
        )
    ratios = results.get("objectives", {}).get("ratio_vs_dpo", {})
    for name in ("kldpo", "dora", "aot", "group-dro"):
        if name in ratios:
            add("objective_step_vs_dpo", ratios[name], f"{name} step / dpo step")
    if ratios:
        add("wdpo_fd_vs_dpo", ratios["wdpo finite difference"], "wdpo (FD, SDPA) step / dpo step")
        add(
            "wdpo_fd_vs_dpo",
            ratios["wdpo finite difference vs dpo plain layout"],
            "wdpo (FD, SDPA) step / dpo step, both in the plain layout",
        )
        if SHARED_WDPO in ratios:  # the goal is the default layout's; this one is reported
            add(
                "wdpo_fd_vs_dpo",
                ratios[SHARED_WDPO],
                "wdpo (FD, SDPA, --penalty-layout shared) step / dpo step (reported only)",
                reported_only=True,
            )
        add("exact_vs_local", ratios["exact vs local (kldpo, accum 4)"], "kldpo accum 4: exact / local step")
    return rows


def print_results(results: dict, console) -> None:
    from rich.table import Table

    trl = results.get("trl")
    if trl:
        table = Table(
            title="dralign vs TRL DPOTrainer (same model, data, batch, optimizer; "
            "reference log-probs precomputed; steady-state steps)"
        )
        for col in (
            "workload",
            "vocab",
            "prompt/resp tokens",
            "dralign pairs/s",
            "TRL pairs/s",
            "ratio (median, range)",
            "CPU ratio",
            "dralign RSS MB",
            "TRL RSS MB",
            "dralign GFLOP/s",
            "% of peak",
            "TRL % of peak",
        ):
            table.add_column(col, justify="right")
        peak = results["matmul_peak_flops_per_s"]
        for workload, e in trl.items():
            table.add_row(
                workload,
                f"{e['model']['vocab_size']}",
                f"{e['mean_prompt_tokens']:.0f}/{e['mean_response_tokens']:.0f}",
                f"{e['dralign_pairs_per_s']:.2f}",
                f"{e['trl_pairs_per_s']:.2f}",
                f"{e['ratio_vs_trl']:.2f}x [{e['ratio_range'][0]:.2f}, {e['ratio_range'][1]:.2f}]",
                f"{e['cpu_ratio_vs_trl']:.2f}x",
                f"{e['dralign_peak_rss_mb']:.0f}",
                f"{e['trl_peak_rss_mb']:.0f}",
                f"{e['dralign_model_flops_per_s'] / 1e9:.1f}",
                f"{100 * e['dralign_model_flops_per_s'] / peak:.0f}%",
                f"{100 * e['trl_model_flops_per_s'] / peak:.0f}%",
            )
        console.print(table)
    objectives = results.get("objectives")
    if objectives:
        table = Table(title="dralign step time per objective (median, alternating on the same batches)")
        for col in ("variant", "s/step", "prefix sharing", "exact"):
            table.add_column(col, justify="right")
        for name, t in objectives["step_s"].items():
            table.add_row(name, f"{t:.3f}", str(objectives["prefix_sharing"][name]), str(objectives["exact"][name]))
        console.print(table)
    compiled = results.get("compile")
    if compiled:
        table = Table(title="--compile: dpo step time with compiled blocks against without (median, alternating)")
        for col in ("workload", "eager s/step", "compiled s/step", "speedup", "compile s"):
            table.add_column(col, justify="right")
        for workload, e in compiled.items():
            table.add_row(
                workload,
                f"{e['step_s']['dpo']:.3f}",
                f"{e['step_s']['dpo compiled']:.3f}",
                f"{e['speedup']:.2f}x",
                f"{e['compile_s']:.0f}",
            )
        console.print(table)
    table = Table(title="goals")
    for col in ("goal", "target", "measured", "met"):
        table.add_column(col)
    for g in results["goals"]:
        met = "reported" if g["met"] is None else "yes" if g["met"] else "NO"
        table.add_row(g["what"], g["target"], f"{g['measured']:.3f}", met)
    console.print(table)
