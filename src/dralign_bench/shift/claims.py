"""The papers' claims, judged against DPO's upper envelope with paired tests and Holm's correction.

A comparison is a per-seed difference d_s, oriented so that d_s > 0 is the claim's direction:

* ``frontier``: d_s = sign · (y(method, s) − F_s(x(method, s))), F_s DPO's envelope on seed s
  (:func:`envelope_at`): the concave hull of DPO's runs and the start model in the (x, y)
  plane — what mixing two policies reaches — read in the direction the metric needs (reward at
  matched KL: the best DPO value at KL ≤ the method's; worst case at matched r(α₀): the best
  at r(α₀) ≥ the method's; plain interpolation where DPO itself is the claimant). Never
  extrapolated: a seed whose method lies outside DPO's x range gives no d_s, and a claim whose
  method is inside on fewer than 80 % of the seeds is an *invalid test* (its overlap control);
* ``direct``: d_s = sign · (y(a, s) − y(b, s)).

Every d_s pairs prompts and sampling uniforms (common random numbers); the test over seeds
(:func:`dralign.stats.paired_t`) carries training and evaluation noise. The p-values are
Holm-adjusted within each claim (``p_holm``) and over every comparison of the report as one
family (``p_holm_report``, :func:`holm_report`); verdicts read the report-wide one.

Verdicts (also defined in the report): **invalid test** — the scenario's control or the claim's
overlap control failed; **reproduced** — every comparison significantly in the claimed
direction; **partly reproduced** — some, not all, and none significantly against;
**contradicted** — at least one significantly against (whatever the others); **not
significant** — none significant though the claim's MDE is within its declared effect of
interest; **underpowered** — none significant and the MDE exceeds the effect of interest (the
run could not have seen the effect the claim is about).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from dralign.stats import holm, paired_t

__all__ = [
    "ClaimSpec",
    "Comparison",
    "OVERLAP_THRESHOLD",
    "compare",
    "envelope_at",
    "frontier_y",
    "holm_report",
    "judge",
    "upper_hull",
    "verdict",
]

ALPHA_LEVEL = 0.05
OVERLAP_THRESHOLD = 0.8  # share of test seeds a method must lie inside DPO's x range on
F = "dpo-frontier"

#: Which side of the method's x the DPO reference may sit on: "below" — the best DPO value at
#: x ≤ the method's (KL is a cost); "above" — at x ≥ the method's (r(α₀) is a requirement).
X_DIRECTION = {"kl": "below", "r0": "above"}


def upper_hull(points: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """Vertices of the upper concave hull of `points`, sorted by x (Andrew's monotone chain;
    at equal x only the highest point counts)."""
    best: dict[float, float] = {}
    for x, y in points:
        best[x] = max(y, best.get(x, -np.inf))
    hull: list[tuple[float, float]] = []
    for p in sorted(best.items()):
        # drop the last vertex while it lies on or below the chord from its predecessor to p
        while (
            len(hull) >= 2
            and (
                (hull[-1][0] - hull[-2][0]) * (p[1] - hull[-2][1]) - (hull[-1][1] - hull[-2][1]) * (p[0] - hull[-2][0])
            )
            >= 0
        ):
            hull.pop()
        hull.append(p)
    return hull


def envelope_at(
    xs: Sequence[float], ys: Sequence[float], x0: float, direction: str = "at", better: float = 1.0
) -> float:
    """DPO's envelope at x0: the hull of the (x, y) points (upper if `better` > 0, lower if < 0:
    a lower-is-better y), interpolated between vertices; with `direction` "below" the best hull
    value over x ≤ x0, "above" over x ≥ x0, "at" the hull at x0. NaN if x0 lies outside the
    points' x range (never extrapolated) or no point is finite."""
    pts = [(float(x), better * float(y)) for x, y in zip(xs, ys) if np.isfinite(x) and np.isfinite(y)]
    if not pts or not np.isfinite(x0):
        return float("nan")
    hull = upper_hull(pts)
    hx, hy = np.array([p[0] for p in hull]), np.array([p[1] for p in hull])
    if not hx[0] <= x0 <= hx[-1]:
        return float("nan")
    value = float(np.interp(x0, hx, hy))
    side = {"below": hx <= x0, "above": hx >= x0, "at": np.zeros_like(hx, dtype=bool)}[direction]
    return better * max([value, *hy[side]])


def frontier_y(
    metrics: dict, frontier_ids: Sequence[str], s: int, x: str, y: str, x0: float, direction: str, better: float = 1.0
) -> float:
    """DPO's envelope of seed `s` at x0: its frontier runs and, where measured, the start model."""
    runs = [f for f in frontier_ids if f in metrics] + (["start"] if len(metrics.get("start", [])) > s else [])
    return envelope_at(
        [metrics[r][s].get(x) for r in runs], [metrics[r][s].get(y) for r in runs], x0, direction, better
    )


@dataclass(frozen=True)
class Comparison:
    a: str  # a run id, or "dpo-frontier"
    b: str  # a run id, or "dpo-frontier"
    metric: str  # y
    x: str | None = None  # matched on x (frontier comparisons)
    sign: float = 1.0  # +1: larger a is the claim; −1: smaller a is the claim (e.g. calibration error)


@dataclass(frozen=True)
class ClaimSpec:
    scenario: str
    paper: str
    claim: str
    comparisons: tuple[Comparison, ...]
    effect_of_interest: float  # the smallest difference (metric's units) the claim is about, declared before the run


def _seed_diffs(metrics: dict, frontier_ids: Sequence[str], c: Comparison) -> np.ndarray:
    """Per-seed oriented differences; NaN where the method lies outside DPO's x range."""

    def y_of(run: str, s: int, other: str) -> float:
        if run != F:
            return metrics[run][s].get(c.metric)
        # DPO as the claimant gets the hull at the method's x, not the best over a side (no help to the claim)
        direction = "at" if run == c.a else X_DIRECTION.get(c.x, "at")
        return frontier_y(metrics, frontier_ids, s, c.x, c.metric, metrics[other][s].get(c.x), direction, c.sign)

    n = len(metrics[c.a if c.a != F else c.b])
    return np.array([c.sign * (y_of(c.a, s, c.b) - y_of(c.b, s, c.a)) for s in range(n)])


def compare(metrics: dict, frontier_ids: Sequence[str], c: Comparison) -> dict:
    """One comparison's paired test (before Holm) over the seeds that give a difference;
    ``inside``: the share of seeds that do (1 for a direct comparison)."""
    d = _seed_diffs(metrics, frontier_ids, c)
    ok = d[np.isfinite(d)]
    label = c.metric + (f" at matched {c.x}" if c.x else "") + (" (lower is better)" if c.sign < 0 else "")
    row = {"a": c.a, "b": c.b, "metric": label, "inside": float(ok.size / d.size) if d.size else 0.0}
    if ok.size == 0:
        nan = float("nan")
        return {**row, "diff": nan, "se": nan, "ci": [nan, nan], "p": nan, "mde": nan, "seeds": 0}
    t = paired_t(ok)
    return {**row, "diff": t.diff, "se": t.se, "ci": [t.low, t.high], "p": t.p, "mde": t.mde, "seeds": t.n}


def overlap_control(spec: ClaimSpec, rows: Sequence[dict]) -> dict | None:
    """The claim's overlap control: every frontier comparison's method inside DPO's x range on
    ≥ OVERLAP_THRESHOLD of the test seeds (value: the least share); None without a frontier comparison."""
    shares = [
        (f"{r['b'] if r['a'] == F else r['a']}: {r['inside']:.0%}", r["inside"])
        for c, r in zip(spec.comparisons, rows)
        if c.x
    ]
    if not shares:
        return None
    value = min(v for _, v in shares)
    return {
        "name": "share of test seeds with the method inside DPO's range (least over the claim's comparisons)",
        "value": value,
        "threshold": OVERLAP_THRESHOLD,
        "passed": bool(value >= OVERLAP_THRESHOLD),
        "detail": "; ".join(t for t, _ in shares),
    }


def claim_mde(rows: Sequence[dict]) -> float:
    """The claim's MDE: the largest of its comparisons' (80 % power, two-sided 5 %); NaN if any is."""
    mdes = [r["mde"] for r in rows]
    return float("nan") if not mdes or any(not np.isfinite(v) for v in mdes) else float(max(mdes))


def verdict(rows: Sequence[dict], control_passed: bool, underpowered: bool = False) -> str:
    """The claim's verdict from its report-wide Holm p-values (see the module docstring)."""
    if not control_passed or not rows:
        return "invalid test"
    sig = [r for r in rows if r["p_holm_report"] == r["p_holm_report"] and r["p_holm_report"] < ALPHA_LEVEL]
    pos = sum(r["diff"] > 0 for r in sig)
    neg = len(sig) - pos
    if neg:
        return "contradicted"
    if pos == len(rows):
        return "reproduced"
    if pos:
        return "partly reproduced"
    return "underpowered" if underpowered else "not significant"


def _judged(claim: dict) -> str:
    passed = claim["control"]["passed"] and (claim["overlap"] is None or claim["overlap"]["passed"])
    underpowered = not claim["mde"] <= claim["effect_of_interest"]  # a NaN MDE is underpowered too
    return verdict(claim["comparisons"], passed, underpowered)


def judge(spec: ClaimSpec, metrics: dict, frontier_ids: Sequence[str], control: dict) -> dict:
    """The claim's record: comparisons with Holm-adjusted p (within the claim, and report-wide
    as if the claim were the whole report until :func:`holm_report` runs), the scenario's
    control, the overlap control, the MDE beside the effect of interest, the verdict."""
    pairs = [
        (c, compare(metrics, frontier_ids, c))
        for c in spec.comparisons
        if all(r == F or r in metrics for r in (c.a, c.b))
    ]
    rows = [r for _, r in pairs]
    for r, p in zip(rows, holm([r["p"] for r in rows])):
        r["p_holm"] = r["p_holm_report"] = p
    claim = {
        "scenario": spec.scenario,
        "paper": spec.paper,
        "claim": spec.claim,
        "effect_of_interest": spec.effect_of_interest,
        "mde": claim_mde(rows),
        "control": control,
        "overlap": overlap_control(
            ClaimSpec(spec.scenario, spec.paper, spec.claim, tuple(c for c, _ in pairs), spec.effect_of_interest), rows
        ),
        "comparisons": rows,
    }
    claim["verdict"] = _judged(claim)
    return claim


def holm_report(claims: list[dict]) -> list[dict]:
    """Holm over every comparison of the report as one family: sets each comparison's
    ``p_holm_report`` and each claim's verdict from it (in place; returns `claims`)."""
    rows = [r for c in claims for r in c["comparisons"]]
    for r, p in zip(rows, holm([r["p"] for r in rows])):
        r["p_holm_report"] = p
    m = sum(1 for r in rows if np.isfinite(r["p"]))
    for r in rows:  # what Holm's first step (level α/m) could see: the MDE is stated unadjusted
        r["mde_report"] = _mde_at(r, ALPHA_LEVEL / max(m, 1))
    for c in claims:
        c["mde_report"] = max((r["mde_report"] for r in c["comparisons"]), default=float("nan"))
        c["verdict"] = _judged(c)
    return claims


def _mde_at(row: dict, level: float) -> float:
    """MDE = (t_{n−1, 1−level/2} + t_{n−1, 0.8})·SE: 80 % power at a two-sided `level`."""
    from dralign.stats import student_t_quantile

    n, se = row.get("seeds", 0), row.get("se", float("nan"))
    if n < 2 or not np.isfinite(se):
        return float("nan")
    return float((student_t_quantile(1 - level / 2, n - 1) + student_t_quantile(0.8, n - 1)) * se)
