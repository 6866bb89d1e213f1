"""Positive controls: each scenario must create the condition its paper targets, shown in the
same run; a claim whose control fails is an *invalid test*, never a refutation.

Every control returns ``{"name", "value", "threshold", "passed", "detail"}``. ``metrics`` maps
a run id to its per-test-seed :class:`~.measure.SeedMetrics` (same seeds, same order).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from dralign.stats import paired_t

__all__ = ["conflict_control", "flip_control", "frontier_overlap_control", "sources_control", "unpaired_control"]


def _control(name: str, value: float, threshold: float, passed: bool, detail: str) -> dict:
    return {"name": name, "value": float(value), "threshold": float(threshold), "passed": bool(passed),
            "detail": detail}


def conflict_control(dpo: Sequence, threshold: float = 0.05) -> dict:
    """Mixture: DPO trained at α₀ loses gold reward away from α₀.

        value = mean over seeds of [r(α₀) − min_α r(α)]   of DPO at the default β;  passes if ≥ threshold.
    """
    gaps = np.array([m.r0 - m.worst for m in dpo])
    return _control("DPO's loss from r(α₀) to its worst α", gaps.mean(), threshold, gaps.mean() >= threshold,
                    f"per seed: {', '.join(f'{g:.3f}' for g in gaps)}")


def flip_control(clean: Sequence, flipped: Sequence, threshold: float = 0.02) -> dict:
    """Flips: DPO memorises the flipped labels — its accuracy against the noise-free ordering on
    held-out pairs is lower when trained on flipped labels than on the same pairs clean.

        value = mean over seeds of acc(DPO, clean) − acc(DPO, flipped); passes if ≥ threshold
        and the paired t interval over seeds lies above 0.
    """
    test = paired_t([c.acc - f.acc for c, f in zip(clean, flipped)])
    passed = test.diff >= threshold and (test.n < 2 or test.low > 0)
    return _control("DPO's accuracy drop from clean to flipped labels", test.diff, threshold, passed,
                    f"95% CI [{test.low:.3f}, {test.high:.3f}] over {test.n} seeds")


def sources_control(dpo_all: Sequence, dpo_human: Sequence, aucs: Sequence[float], threshold: float = 0.01,
                    auc_range: tuple[float, float] = (0.7, 0.9)) -> dict:
    """Sources (DoRA): the synthetic judge hurts the target, and the sources are separable but
    not trivially.

        value = mean over seeds of r(α₀)(DPO, human rows only) − r(α₀)(DPO, all rows);
        passes if ≥ threshold with the paired t interval above 0, and the mean held-out AUC of
        the density-ratio classifier lies in `auc_range` (a classifier near 1 would make DoRA
        "drop the synthetic rows"; near ½, no ratio to calibrate).
    """
    test = paired_t([h.r0 - a.r0 for a, h in zip(dpo_all, dpo_human)])
    auc = float(np.mean(aucs)) if len(aucs) else float("nan")
    auc_ok = auc_range[0] <= auc <= auc_range[1]
    passed = test.diff >= threshold and (test.n < 2 or test.low > 0) and auc_ok
    return _control("DPO's target reward lost by adding the judged synthetic rows (and ratio AUC in range)",
                    test.diff, threshold, passed,
                    f"95% CI [{test.low:.3f}, {test.high:.3f}] over {test.n} seeds; held-out ratio AUC {auc:.3f} "
                    f"(range {auc_range[0]}–{auc_range[1]}; per seed {', '.join(f'{a:.3f}' for a in aucs)})")


def frontier_overlap_control(points_x: Sequence[float], frontier_x: Sequence[Sequence[float]],
                             threshold: float = 0.5) -> dict:
    """Frontier claims: a matched comparison needs the method inside DPO's range.

        value = share of (method, seed) points whose x lies within [min, max] of that seed's DPO
        β-grid x values; passes if ≥ threshold.
    """
    inside = [min(f) <= x <= max(f) for x, f in zip(points_x, frontier_x)]
    share = float(np.mean(inside)) if inside else 0.0
    return _control("share of points inside DPO's β-frontier (matched comparison possible)", share, threshold,
                    share >= threshold, f"{sum(inside)} of {len(inside)} points")


def unpaired_control(paired_completions: int, unpaired_completions: int, sorted_values: int,
                     minimum: int = 64) -> dict:
    """Unpaired: AOT-unpaired sees the same completions per step as the paired baseline and
    sorts over at least `minimum` values. value = the values sorted per step."""
    ok = paired_completions == unpaired_completions and sorted_values >= minimum
    return _control("values sorted per step (completions per step equal)", sorted_values, minimum, ok,
                    f"paired baseline {paired_completions}, AOT-unpaired {unpaired_completions} completions per step")
