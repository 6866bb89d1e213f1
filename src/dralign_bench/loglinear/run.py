"""`dralign bench loglinear`: options, the runner over seeds, the report and the plot (the
theory is in :mod:`dralign_bench.loglinear`)."""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from dralign.config import atomic_write_text, option
from dralign.objectives import Objective

from ..plotting import require_matplotlib
from .fit import fit, method_objective
from .report import COLUMNS, markdown_report, plot_results, table_rows
from .world import (
    LABELS,
    LoglinearWorld,
    expected_reward,
    kl_dro_optimum,
    kl_to_reference,
    make_world,
    optimum,
    pair_distribution,
    sample_pairs,
)

# =============================================================================================
# Options
# =============================================================================================


@dataclass
class LoglinearOptions:
    """The exact log-linear world benchmark: theory checks for every objective."""

    seeds: list[int] = option(
        [0, 1, 2, 3, 4, 5, 6, 7], "seeds: each draws its own world (features, reference, rewards) and data"
    )
    n_grid: list[int] = option(
        [250, 500, 1000, 2000, 4000, 8000],
        "training-set sizes n (pairs) for the error-vs-n slopes; the largest also trains the policies of the shift evaluation",
    )
    states: int = option(20, "number of states S (uniform)")
    actions: int = option(8, "number of actions A per state")
    dim: int = option(6, "feature dimension d (psi(s,a) ~ N(0, I_d))")
    ref_scale: float = option(1.0, "norm of the reference parameter theta_ref")
    reward_scale: float = option(1.0, "norm of each reward vector phi_1, phi_2 (rewards have about unit spread)")
    reward_cosine: float = option(-0.5, "cosine between phi_1 and phi_2 (negative: the two rewards conflict)")
    beta: float = option(0.5, "beta, the KL-regularisation strength (here KL(pi* || pi_ref) is 0.3-1 nat at alpha0)")
    alpha0: float = option(0.2, "training mixture: labels by Bradley-Terry on alpha0*r_1 + (1-alpha0)*r_2")
    labels: Literal["bt", "labeller_mixture"] = option(
        "bt",
        "bt: Bradley-Terry on the mixed reward; labeller_mixture: each pair labelled by r_1 with probability alpha0, else by r_2 (not Bradley-Terry)",
    )
    alphas: list[float] = option([round(0.1 * i, 1) for i in range(11)], "evaluation mixtures alpha in [0, 1]")
    methods: list[str] = option(
        ["dpo", "kldpo", "wdpo"],
        "presets of the paired family to train (dpo, ipo, cdpo, rdpo, fdpo-*, kldpo, wdpo, dro, drdpo, cvar, hinge)",
    )
    tau: float = option(1.0, "tau, KLDPO temperature, smaller = more robust (the library's default)")
    rho: float = option(0.01, "rho, WDPO penalty strength (the library's default)")
    penalty_form: Literal["squared", "sqrt_mean"] = option(
        "squared", "WDPO penalty form: squared (rho*S) or sqrt_mean (rho*sqrt(S))"
    )
    max_iter: int = option(500, "L-BFGS iterations per fit (full batch)")
    misspecification: float = option(
        0.0, "zeta: add zeta*N(0,1) per (s,a) to each reward, outside the feature span (0 = realisable)"
    )
    frontier_betas: list[float] = option(
        [0.25, 0.35, 0.5, 0.7, 1.0, 1.4, 2.0, 2.8, 4.0, 5.6, 8.0],
        "DPO's beta-frontier: multiples of beta at which DPO's population optimum is found",
    )
    output_dir: str = option("outputs/bench-loglinear", "where results.json, loglinear.png and report.md go")


@dataclass
class LoglinearConfig:
    loglinear: LoglinearOptions


def _check_options(o: LoglinearOptions) -> None:
    """Raise ValueError naming the first bad option."""
    if not o.seeds:
        raise ValueError("seeds: give at least one seed")
    if len(set(o.n_grid)) < 2 or min(o.n_grid) < 2:
        raise ValueError(f"n_grid: give at least two distinct sizes >= 2 (a slope needs two), got {o.n_grid}")
    if o.states < 1:
        raise ValueError(f"states must be >= 1, got {o.states}")
    if o.actions < 2:
        raise ValueError(f"actions must be >= 2 (a pair needs two distinct actions), got {o.actions}")
    if o.dim < 2:
        raise ValueError(f"dim must be >= 2 (two reward vectors at a given angle), got {o.dim}")
    for name in ("ref_scale", "reward_scale"):
        if getattr(o, name) < 0:
            raise ValueError(f"{name} must be >= 0, got {getattr(o, name)}")
    if not -1 <= o.reward_cosine <= 1:
        raise ValueError(f"reward_cosine must lie in [-1, 1], got {o.reward_cosine}")
    if not o.beta > 0:
        raise ValueError(f"beta must be > 0, got {o.beta}")
    if not 0 <= o.alpha0 <= 1:
        raise ValueError(f"alpha0 must lie in [0, 1], got {o.alpha0}")
    if not o.alphas or not all(0 <= a <= 1 for a in o.alphas):
        raise ValueError(f"alphas: give mixtures in [0, 1], got {o.alphas}")
    if o.labels not in LABELS:
        raise ValueError(f"labels must be one of {', '.join(LABELS)}, got {o.labels!r}")
    if not o.methods:
        raise ValueError("methods: give at least one preset")
    if o.max_iter < 1:
        raise ValueError(f"max_iter must be >= 1, got {o.max_iter}")


# =============================================================================================
# The benchmark
# =============================================================================================


def loglog_slope(n: list[int], errors: list[list[float]]) -> dict:
    """Least-squares fit log err = a + b·log n over every (n, seed) point; errors[i] are the
    seeds' errors at n[i]. Returns slope b, its standard error (NaN with only two points) and
    the intercept a."""
    x = np.repeat(np.log(np.asarray(n, dtype=float)), [len(e) for e in errors])
    y = np.log(np.concatenate([np.asarray(e, dtype=float) for e in errors]))
    b, a = np.polyfit(x, y, 1)
    resid = y - (a + b * x)
    dof = len(x) - 2
    stderr = math.sqrt(resid @ resid / dof / ((x - x.mean()) ** 2).sum()) if dof > 0 else math.nan
    return {"slope": float(b), "stderr": stderr, "intercept": float(a)}


def _world_of(o: LoglinearOptions, seed: int) -> LoglinearWorld:
    return make_world(
        seed, o.states, o.actions, o.dim, o.ref_scale, o.reward_scale, o.reward_cosine, o.misspecification
    )


def _frontier(o: LoglinearOptions, world: LoglinearWorld, support, mass, curve) -> list[dict]:
    """DPO's population optimum at every β′ = m·β of the grid: (β′, R(α₀), worst case, KL)."""
    i0 = int(np.argmin([abs(a - o.alpha0) for a in o.alphas]))
    out = []
    for mult in o.frontier_betas:
        b = mult * o.beta
        theta, _ = fit(
            method_objective("dpo", b), world, support, mass, start=optimum(world, o.alpha0, b), max_iter=o.max_iter
        )
        c = curve(theta)
        out.append({"beta": b, "r0": c[i0], "worst": min(c), "kl": kl_to_reference(world, theta)})
    return out


def frontier_worst_at(frontier: list[dict], r0: float) -> float:
    """DPO's worst-case reward at matched R(α₀): linear interpolation over the β′ grid, clamped."""
    pts = sorted(frontier, key=lambda p: p["r0"])
    return float(np.interp(r0, [p["r0"] for p in pts], [p["worst"] for p in pts]))


def _closed_form_holds(o: LoglinearOptions, world: LoglinearWorld) -> bool:
    """θ* = θ_ref + φ(α₀)/β is DPO's population optimum: a realisable reward and BT labels."""
    return world.realisable and o.labels == "bt"


def _dpo_at_each_alpha(o: LoglinearOptions, world: LoglinearWorld) -> list[float]:
    """R(θ_DPO(α), α) for every α of the grid, θ_DPO(α) DPO's population optimum on data labelled
    at α (the same labelling kind): the reference of each method's regret at α."""
    out = []
    for a in o.alphas:
        support, mass = pair_distribution(world, a, o.labels)
        theta, _ = fit(
            method_objective("dpo", o.beta), world, support, mass, start=optimum(world, a, o.beta), max_iter=o.max_iter
        )
        out.append(expected_reward(world, theta, a))
    return out


def _run_seed(o: LoglinearOptions, seed: int, objectives: dict, advance) -> dict:
    """One world: θ*, every method's θ_∞ and θ̂_n on the n grid; errors and reward curves."""
    world = _world_of(o, seed)
    support, mass = pair_distribution(world, o.alpha0, o.labels)
    star = optimum(world, o.alpha0, o.beta)
    if not _closed_form_holds(o, world):  # θ* is not DPO's optimum: DPO's own population optimum is the target
        star, _ = fit(method_objective("dpo", o.beta), world, support, mass, start=star, max_iter=o.max_iter)
    curve = lambda th: [expected_reward(world, th, a) for a in o.alphas]  # noqa: E731
    i0 = int(np.argmin([abs(a - o.alpha0) for a in o.alphas]))
    frontier = _frontier(o, world, support, mass, curve)
    out = {
        "reference": curve(world.theta_ref),
        "oracle": curve(star),
        "methods": {},
        "frontier": frontier,
        "dpo_at_alpha": _dpo_at_each_alpha(o, world),
    }
    data = {n: sample_pairs(world, n, o.alpha0, [seed, n], o.labels) for n in o.n_grid}
    for name, obj in objectives.items():
        pop, pop_grad = fit(obj, world, support, mass, start=star, max_iter=o.max_iter)
        rec = {
            "bias": float((pop - star).norm()),
            "population_reward": curve(pop),
            "grad_norms": [pop_grad],
            "to_optimum": [],
            "to_own_optimum": [],
        }
        pr = rec["population_reward"]
        rec["frontier_gain_population"] = min(pr) - frontier_worst_at(frontier, pr[i0])
        if _is_kldpo(obj) and _closed_form_holds(o, world):
            rec["theory_bias"] = float((kl_dro_optimum(world, o.alpha0, o.beta, obj.aggregator.tau) - star).norm())
        for n in o.n_grid:
            theta, g = fit(obj, world, data[n], max_iter=o.max_iter)
            rec["grad_norms"].append(g)
            rec["to_optimum"].append(float((theta - star).norm()))
            rec["to_own_optimum"].append(float((theta - pop).norm()))
            if n == max(o.n_grid):
                rec["reward"], rec["kl"] = curve(theta), kl_to_reference(world, theta)
                rec["frontier_gain"] = min(rec["reward"]) - frontier_worst_at(frontier, rec["reward"][i0])
                rec["regret"] = [d - r for d, r in zip(out["dpo_at_alpha"], rec["reward"])]
            advance()
        out["methods"][name] = rec
    return out


def _is_kldpo(obj: Objective) -> bool:
    """DPO's logistic loss under KL-ball aggregation, without smoothing or penalty: the objectives
    `kl_dro_optimum` solves in closed form."""
    return (
        obj.divergence == "reverse_kl"
        and obj.coupling == "paired"
        and obj.link == "sigmoid"
        and obj.parameters().get("label_smoothing", 0) == 0
        and obj.robust == "kl"
        and obj.penalty is None
    )


def _summary(values) -> dict:
    v = np.asarray(values, dtype=float)
    return {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if v.size > 1 else 0.0}


def _aggregate(o: LoglinearOptions, per_seed: list[dict], objectives: dict) -> dict:
    """Across seeds: slopes, biases, reward curves, worst cases and the paired comparison to DPO."""
    i0 = int(np.argmin([abs(a - o.alpha0) for a in o.alphas]))
    methods = {}
    for name, obj in objectives.items():
        recs = [r["methods"][name] for r in per_seed]
        errors = {
            k: [[rec[k][j] for rec in recs] for j in range(len(o.n_grid))] for k in ("to_optimum", "to_own_optimum")
        }
        rewards_ = np.array([rec["reward"] for rec in recs])
        population = np.array([rec["population_reward"] for rec in recs])
        methods[name] = {
            "objective": obj.describe(),
            "errors": errors,
            "slopes": {k: loglog_slope(o.n_grid, v) for k, v in errors.items()},
            "bias": _summary([rec["bias"] for rec in recs]),
            **({"theory_bias": _summary([rec["theory_bias"] for rec in recs])} if "theory_bias" in recs[0] else {}),
            "frontier_gain": _summary([rec["frontier_gain"] for rec in recs]),
            "frontier_gain_population": _summary([rec["frontier_gain_population"] for rec in recs]),
            "reward": rewards_.tolist(),
            "reward_at_alpha0": _summary(rewards_[:, i0]),
            "worst_case": _summary(rewards_.min(1)),
            "population_reward": population.tolist(),
            "population_worst_case": _summary(population.min(1)),
            "kl": _summary([rec["kl"] for rec in recs]),
            "regret": np.array([rec["regret"] for rec in recs]).mean(0).tolist(),
            "max_regret": _summary([max(rec["regret"]) for rec in recs]),
            "max_grad_norm": max(max(rec["grad_norms"]) for rec in recs),
        }
    comparison = {}
    if "dpo" in methods:
        dpo, dpo_pop = np.array(methods["dpo"]["reward"]), np.array(methods["dpo"]["population_reward"])
        for name in methods:
            if name == "dpo":
                continue
            r, r_pop = np.array(methods[name]["reward"]), np.array(methods[name]["population_reward"])
            gain = r.min(1) - dpo.min(1)
            comparison[name] = {
                "worst_case_gain": _summary(gain),
                "wins": int((gain > 0).sum()),
                "seeds": len(gain),
                "beats_dpo": bool(gain.mean() > 0),
                "population_worst_case_gain": _summary(r_pop.min(1) - dpo_pop.min(1)),
                "alpha0_gain": _summary(r[:, i0] - dpo[:, i0]),
            }
    return {
        "control": _start_control(per_seed),
        "frontier": [r["frontier"] for r in per_seed],
        "n_grid": list(o.n_grid),
        "alphas": list(o.alphas),
        "alpha0_index": i0,
        "methods": methods,
        "comparison": comparison,
        "reference": {
            "reward": [r["reference"] for r in per_seed],
            "worst_case": _summary([min(r["reference"]) for r in per_seed]),
        },
        "oracle": {
            "reward": [r["oracle"] for r in per_seed],
            "worst_case": _summary([min(r["oracle"]) for r in per_seed]),
        },
    }


def _start_control(per_seed: list[dict], threshold: float = 0.03) -> dict | None:
    """The mixture premise: DPO trained at α₀ (n_max) ends below the reference's worst case over
    the α grid by ≥ `threshold` (mean over seeds), so there is a real loss to protect against."""
    if "dpo" not in per_seed[0]["methods"]:
        return None
    gaps = [min(r["reference"]) - min(r["methods"]["dpo"]["reward"]) for r in per_seed]
    return {
        "name": "reference worst case − DPO's worst case",
        "value": float(np.mean(gaps)),
        "threshold": threshold,
        "passed": bool(np.mean(gaps) >= threshold),
        "per_seed": gaps,
    }


def run_loglinear(cfg: LoglinearConfig, console=None) -> dict:
    """Run the benchmark of `cfg.loglinear`; write results.json, loglinear.png and report.md to
    its output_dir, print a table on `console` (a rich Console), return the results dict."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.table import Table

    _check_options(cfg.loglinear)
    require_matplotlib()  # before the fits, not after them
    o = replace(cfg.loglinear, n_grid=sorted(set(cfg.loglinear.n_grid)))
    objectives = {m: method_objective(m, o.beta, o.tau, o.rho, o.penalty_form) for m in o.methods}
    console = console or Console()
    t0 = time.perf_counter()
    total = len(o.seeds) * len(objectives) * len(o.n_grid)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tensors of a few thousand numbers: intra-op threads only add overhead
    try:
        with Progress(
            TextColumn("log-linear world"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        ) as progress:
            task = progress.add_task("fits", total=total)
            per_seed = [_run_seed(o, seed, objectives, lambda: progress.advance(task)) for seed in o.seeds]
    finally:
        torch.set_num_threads(threads)
    results = {"options": asdict(o), **_aggregate(o, per_seed, objectives), "wall_time_s": time.perf_counter() - t0}
    out = Path(o.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "results.json", json.dumps(results, indent=2))
    plot_results(results, out / "loglinear.png")
    atomic_write_text(out / "report.md", markdown_report(results, o))
    table = Table(
        title=f"log-linear world: trained at α₀ = {o.alpha0}, {len(o.seeds)} seeds, {results['wall_time_s']:.1f}s"
    )
    for col in COLUMNS:
        table.add_column(col, justify="left" if col == "method" else "right")
    for row in table_rows(results):
        table.add_row(*row)
    console.print(table)
    console.print(f"results.json, loglinear.png and report.md in {out}")
    return results
