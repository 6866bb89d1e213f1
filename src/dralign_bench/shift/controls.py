"""Positive controls: each scenario must create the condition its paper targets, shown in the
same run; a claim whose control fails is an *invalid test*, never a refutation.

Every control returns ``{"name", "value", "threshold", "passed", "detail"}``. ``metrics`` maps
a run id to its per-test-seed :class:`~.measure.SeedMetrics` (same seeds, same order).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from dralign.stats import paired_t

__all__ = ["conflict_control", "flip_control", "learning_control", "sources_control", "unpaired_control"]


def _control(name: str, value: float, threshold: float, passed: bool, detail: str) -> dict:
    return {
        "name": name,
        "value": float(value),
        "threshold": float(threshold),
        "passed": bool(passed),
        "detail": detail,
    }


def conflict_control(dpo: Sequence, start: Sequence, threshold: float = 0.03) -> dict:
    """Mixture: DPO trained at α₀ ends *below the start model's* worst-case reward over the α
    grid — a real loss to protect against (a drop from its own r(α₀), which is mostly its gain at
    α₀, is not one).

        value = mean over seeds of [worst(start) − worst(DPO at the default β)];
        passes if ≥ threshold and the paired t interval over seeds lies above 0.
    """
    test = paired_t([s.worst - d.worst for d, s in zip(dpo, start)])
    passed = test.diff >= threshold and (test.n < 2 or test.low > 0)
    return _control(
        "the start model's worst-case reward minus DPO's",
        test.diff,
        threshold,
        passed,
        f"95% CI [{test.low:.3f}, {test.high:.3f}] over {test.n} seeds",
    )


def flip_control(clean: Sequence, flipped: Sequence, threshold: float = 0.02) -> dict:
    """Flips: DPO memorises the flipped labels — its accuracy against the noise-free ordering on
    held-out pairs is lower when trained on flipped labels than on the same pairs clean.

        value = mean over seeds of acc(DPO, clean) − acc(DPO, flipped); passes if ≥ threshold
        and the paired t interval over seeds lies above 0.
    """
    test = paired_t([c.acc - f.acc for c, f in zip(clean, flipped)])
    passed = test.diff >= threshold and (test.n < 2 or test.low > 0)
    return _control(
        "DPO's accuracy drop from clean to flipped labels",
        test.diff,
        threshold,
        passed,
        f"95% CI [{test.low:.3f}, {test.high:.3f}] over {test.n} seeds",
    )


def sources_control(
    dpo_all: Sequence,
    dpo_human: Sequence,
    dpo_oracle: Sequence,
    aucs: Sequence[float],
    threshold: float = 0.01,
    max_auc: float = 0.9,
) -> dict:
    """Sources (DoRA), two-sided: the synthetic rows are *useful* and *shifted*, and the sources
    overlap.

        useful  = mean over seeds of r(α₀)(DPO, all rows) − r(α₀)(DPO, human rows only);
        shifted = mean over seeds of r(α₀)(DPO weighted by the oracle ratios) − r(α₀)(DPO, all rows);
        value = min(useful, shifted); passes if each is ≥ threshold with its paired t interval above
        0, and the mean held-out AUC of the density-ratio classifier is ≤ `max_auc` (well below 1:
        near 1 the oracle ratio is "drop the synthetic rows"). All three DPO runs at the same β.
    """
    useful = paired_t([a.r0 - h.r0 for a, h in zip(dpo_all, dpo_human)])
    shifted = paired_t([o.r0 - a.r0 for a, o in zip(dpo_all, dpo_oracle)])
    auc = float(np.mean(aucs)) if len(aucs) else float("nan")
    ok = lambda t: t.diff >= threshold and (t.n < 2 or t.low > 0)  # noqa: E731
    passed = ok(useful) and ok(shifted) and auc <= max_auc
    return _control(
        "min(synthetic rows useful, shift costs) in target reward; ratio AUC ≤ max",
        min(useful.diff, shifted.diff),
        threshold,
        passed,
        f"useful: DPO all − DPO human {useful.diff:+.3f} [{useful.low:.3f}, {useful.high:.3f}]; "
        f"shifted: DPO oracle-weighted − DPO all {shifted.diff:+.3f} [{shifted.low:.3f}, {shifted.high:.3f}] "
        f"over {useful.n} seeds; held-out ratio AUC {auc:.3f} (≤ {max_auc}; per seed "
        f"{', '.join(f'{a:.3f}' for a in aucs)})",
    )


def learning_control(dpo: Sequence, start: Sequence, threshold: float = 0.02) -> dict:
    """Divergence (f-DPO): the preference is learnable in this world — DPO at the default β
    raises the target reward above the start model's, so reward differences at matched KL
    compare real movement, not noise. (Whether each method lies inside DPO's KL range is the
    per-claim overlap control, :func:`.claims.overlap_control`.)

        value = mean over seeds of r(α₀)(DPO) − r(α₀)(start); passes if ≥ threshold and the
        paired t interval over seeds lies above 0.
    """
    test = paired_t([d.r0 - s.r0 for d, s in zip(dpo, start)])
    passed = test.diff >= threshold and (test.n < 2 or test.low > 0)
    return _control(
        "DPO's target-reward gain over the start model",
        test.diff,
        threshold,
        passed,
        f"95% CI [{test.low:.3f}, {test.high:.3f}] over {test.n} seeds",
    )


def unpaired_control(aot_seen: Sequence[int], baseline_seen: Sequence[int], minimum: int = 64) -> dict:
    """Unpaired: AOT-unpaired and the re-paired baseline saw the same number of completions at
    every optimizer step, and AOT sorted at least `minimum` values per step. The counts are what
    the trainers reported per step (:func:`.seen.completions_per_step`), one list per run, all
    steps of all seeds concatenated.

        value = the fewest completions AOT saw in a step; passes if every step's count equals
        the baseline's at that step and value ≥ `minimum`.
    """
    aot, base = list(aot_seen), list(baseline_seen)
    same = len(aot) == len(base) and len(aot) > 0 and all(a == b for a, b in zip(aot, base))
    fewest = min(aot) if aot else 0
    return _control(
        "completions AOT sorted per step (equal to the baseline's at every step)",
        fewest,
        minimum,
        same and fewest >= minimum,
        f"{len(aot)} AOT steps ({min(aot, default=0)}–{max(aot, default=0)} completions), {len(base)} "
        f"baseline steps ({min(base, default=0)}–{max(base, default=0)})",
    )
