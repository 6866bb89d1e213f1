"""The papers' claims, judged against DPO's β-frontier with paired tests and Holm's correction.

A comparison is a per-seed difference d_s, oriented so that d_s > 0 is the claim's direction:

* ``frontier``: d_s = sign · (y(method, s) − F_s(x(method, s))), F_s the piecewise-linear
  interpolation of DPO's (x, y) points over the β grid on seed s (clamped at the ends), e.g.
  worst-case reward at matched r(α₀), reward at matched KL;
* ``direct``: d_s = sign · (y(a, s) − y(b, s)).

Every d_s pairs prompts and sampling uniforms (common random numbers); the test over seeds
(:func:`dralign.stats.paired_t`) carries training and evaluation noise. Within a claim the
p-values are Holm-adjusted (:func:`dralign.stats.holm`).

Verdicts (also defined in the report): **invalid test** — the scenario's control failed;
**reproduced** — every comparison significantly in the claimed direction (Holm p < 0.05);
**partly reproduced** — some, not all, and none significantly against; **contradicted** — at
least one significantly against (whatever the others); **not significant** — none significant.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from dralign.stats import holm, paired_t

__all__ = ["ClaimSpec", "Comparison", "compare", "frontier_at", "judge", "verdict"]

ALPHA_LEVEL = 0.05


def frontier_at(xs: Sequence[float], ys: Sequence[float], x0: float) -> float:
    """DPO's frontier value at x0: linear interpolation of the (x, y) points sorted by x,
    clamped to the end values outside their range (no extrapolation)."""
    order = np.argsort(xs)
    return float(np.interp(x0, np.asarray(xs, dtype=float)[order], np.asarray(ys, dtype=float)[order]))


@dataclass(frozen=True)
class Comparison:
    a: str              # a run id, or "dpo-frontier"
    b: str              # a run id, or "dpo-frontier"
    metric: str         # y
    x: str | None = None  # matched on x (frontier comparisons)
    sign: float = 1.0   # +1: larger a is the claim; −1: smaller a is the claim (e.g. calibration error)


@dataclass(frozen=True)
class ClaimSpec:
    scenario: str
    paper: str
    claim: str
    comparisons: tuple[Comparison, ...]
    effect_of_interest: float  # the smallest difference (metric's units) the claim is about, declared before the run


def _seed_diffs(metrics: dict, frontier_ids: Sequence[str], c: Comparison) -> np.ndarray:
    def y_of(run: str, s: int, other: str) -> float:
        if run != "dpo-frontier":
            return metrics[run][s].get(c.metric)
        x0 = metrics[other][s].get(c.x)
        return frontier_at([metrics[f][s].get(c.x) for f in frontier_ids],
                           [metrics[f][s].get(c.metric) for f in frontier_ids], x0)

    n = len(metrics[c.a if c.a != "dpo-frontier" else c.b])
    return np.array([c.sign * (y_of(c.a, s, c.b) - y_of(c.b, s, c.a)) for s in range(n)])


def compare(metrics: dict, frontier_ids: Sequence[str], c: Comparison) -> dict:
    """One comparison's paired test (before Holm)."""
    t = paired_t(_seed_diffs(metrics, frontier_ids, c))
    label = c.metric + (f" at matched {c.x}" if c.x else "") + (" (lower is better)" if c.sign < 0 else "")
    return {"a": c.a, "b": c.b, "metric": label, "diff": t.diff, "se": t.se, "ci": [t.low, t.high],
            "p": t.p, "mde": t.mde, "seeds": t.n}


def verdict(rows: Sequence[dict], control_passed: bool) -> str:
    """The claim's verdict from its Holm-adjusted comparisons (see the module docstring)."""
    if not control_passed:
        return "invalid test"
    sig = [r for r in rows if r["p_holm"] == r["p_holm"] and r["p_holm"] < ALPHA_LEVEL]
    pos = sum(r["diff"] > 0 for r in sig)
    neg = len(sig) - pos
    if neg:
        return "contradicted"
    if pos == len(rows):
        return "reproduced"
    return "partly reproduced" if pos else "not significant"


def judge(spec: ClaimSpec, metrics: dict, frontier_ids: Sequence[str], control: dict) -> dict:
    """The claim's record: comparisons with Holm-adjusted p, the control, the verdict."""
    rows = [compare(metrics, frontier_ids, c) for c in spec.comparisons
            if all(r == "dpo-frontier" or r in metrics for r in (c.a, c.b))]
    for r, p in zip(rows, holm([r["p"] for r in rows])):
        r["p_holm"] = p
    return {"scenario": spec.scenario, "paper": spec.paper, "claim": spec.claim,
            "verdict": verdict(rows, control["passed"]) if rows else "invalid test",
            "control": control, "comparisons": rows}
