"""Ground-floor statistics: ROC AUC, calibration (ECE, Brier), bootstrap intervals (plain,
and hierarchical over seeds and units), the paired t-test and Holm's step-down correction.

Used by ``dralign.ratio`` (the density-ratio classifier's diagnostics), ``dralign.eval`` (every
reported mean) and the benchmarks; imports nothing else of dralign (docs/design.md, "Layers").
Inputs may be Python sequences, NumPy arrays or torch tensors (any device and float dtype);
everything is computed in float64 NumPy, and scalars come back as plain Python floats.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

__all__ = [
    "MeanCI",
    "PairedTest",
    "as_array",
    "bootstrap_ci",
    "brier_score",
    "expected_calibration_error",
    "hierarchical_ci",
    "holm",
    "paired_t",
    "reliability_bins",
    "require_nonempty",
    "roc_auc",
    "student_t_cdf",
    "student_t_quantile",
]


def as_array(x: Any, name: str = "values") -> np.ndarray:
    """A float64 1-D NumPy copy of `x` (list, array or torch tensor)."""
    if hasattr(x, "detach"):  # torch tensor, without importing torch
        x = x.detach().to("cpu").double().numpy()
    arr = np.asarray(x, dtype=np.float64).reshape(-1)
    return arr


def require_nonempty(arr: np.ndarray, name: str) -> None:
    """Refuse an empty array: ValueError "`name` is empty"."""
    if arr.size == 0:
        raise ValueError(f"{name} is empty")


def _check_probs_labels(probs: Any, labels: Any) -> tuple[np.ndarray, np.ndarray]:
    p = as_array(probs, "probs")
    y = as_array(labels, "labels")
    if p.shape != y.shape:
        raise ValueError(f"probs and labels differ in length: {p.size} vs {y.size}")
    require_nonempty(p, "probs")
    if np.any((p < 0) | (p > 1)) or not np.all(np.isfinite(p)):
        raise ValueError("probs must be finite and lie in [0, 1]")
    if not np.all((y == 0) | (y == 1)):
        raise ValueError("labels must be 0/1 (or booleans)")
    return p, y


def _midranks(a: np.ndarray) -> np.ndarray:
    """1-based ranks of `a`, tied values sharing the mean of their ranks."""
    order = np.argsort(a, kind="mergesort")
    sorted_a = a[order]
    ranks = np.empty(a.size, dtype=np.float64)
    i = 0
    n = a.size
    while i < n:
        j = i
        while j + 1 < n and sorted_a[j + 1] == sorted_a[i]:
            j += 1
        ranks[order[i : j + 1]] = 0.5 * (i + j) + 1.0
        i = j + 1
    return ranks


def roc_auc(scores, labels) -> float:
    """Area under the ROC curve, by the Mann–Whitney statistic.

    AUC = P(s⁺ > s⁻) + ½ P(s⁺ = s⁻) over all (positive, negative) pairs, computed from midranks:
    AUC = (R⁺ − n⁺(n⁺+1)/2) / (n⁺ n⁻), with R⁺ the sum of the positives' midranks.
    Raises ValueError when a class is absent (the AUC is undefined).
    """
    s, y = as_array(scores, "scores"), as_array(labels, "labels")
    if s.shape != y.shape:
        raise ValueError(f"scores and labels differ in length: {s.size} vs {y.size}")
    require_nonempty(s, "scores")
    if not np.all(np.isfinite(s)):
        raise ValueError("scores contains non-finite values")
    if not np.all((y == 0) | (y == 1)):
        raise ValueError("labels must be 0/1 (or booleans)")
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        raise ValueError(f"AUC needs both classes; got {n_pos} positive and {n_neg} negative")
    ranks = _midranks(s)
    r_pos = ranks[y == 1].sum()
    return float((r_pos - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def expected_calibration_error(probs: Any, labels: Any, bins: int = 10) -> float:
    """Expected calibration error with `bins` equal-width bins on [0, 1].

        ECE = Σ_b (n_b / n) · | mean_{i∈b} y_i − mean_{i∈b} p_i |

    Bin b = 0..B−1 holds p ∈ [b/B, (b+1)/B); the last bin is closed, [1 − 1/B, 1]. Empty bins
    contribute nothing. `probs` are predicted P(label = 1) (e.g. σ(β·margin), see
    :func:`preference_probs`), `labels` are 0/1 (or soft targets in [0, 1]).
    """
    p, y = _check_probs_labels(probs, labels)
    if bins < 1:
        raise ValueError(f"bins must be >= 1, got {bins}")
    idx = np.minimum((p * bins).astype(np.int64), bins - 1)
    n = p.size
    ece = 0.0
    for b in range(bins):
        mask = idx == b
        nb = int(mask.sum())
        if nb:
            ece += nb / n * abs(float(y[mask].mean()) - float(p[mask].mean()))
    return float(ece)


def reliability_bins(probs: Any, labels: Any, bins: int = 10) -> list[dict[str, float]]:
    """The points of a reliability diagram, in the bins of :func:`expected_calibration_error`.

    One dict per non-empty bin b: ``low``/``high`` (its edges b/B, (b+1)/B), ``n`` (its size),
    ``confidence`` = mean_{i∈b} p_i and ``accuracy`` = mean_{i∈b} y_i. A calibrated predictor
    has accuracy ≈ confidence in every bin, and
    ECE = Σ_b (n_b / n) · |accuracy_b − confidence_b|.
    """
    p, y = _check_probs_labels(probs, labels)
    if bins < 1:
        raise ValueError(f"bins must be >= 1, got {bins}")
    idx = np.minimum((p * bins).astype(np.int64), bins - 1)
    out = []
    for b in range(bins):
        mask = idx == b
        if mask.any():
            out.append(
                {
                    "low": b / bins,
                    "high": (b + 1) / bins,
                    "n": int(mask.sum()),
                    "confidence": float(p[mask].mean()),
                    "accuracy": float(y[mask].mean()),
                }
            )
    return out


def brier_score(probs: Any, labels: Any) -> float:
    """Brier score: mean squared error of the probabilities, (1/n) Σ_i (p_i − y_i)²."""
    p, y = _check_probs_labels(probs, labels)
    return float(np.mean((p - y) ** 2))


def bootstrap_ci(
    values: Any,
    stat: Callable[[np.ndarray], float] = np.mean,
    level: float = 0.95,
    n_resamples: int = 1000,
    seed: int = 0,
) -> tuple[float, float, float]:
    """Percentile-bootstrap confidence interval: returns ``(estimate, low, high)``.

    estimate = stat(values). Draw `n_resamples` resamples of size n with replacement
    (NumPy PCG64 generator seeded with `seed`, so the result is deterministic), compute the
    statistic on each, and take the (1 − level)/2 and (1 + level)/2 quantiles of those
    replicates (linear interpolation). A single value gives a zero-width interval.
    `stat` maps a 1-D float array to a number; `np.mean` (default) is vectorised.
    """
    v = as_array(values)
    require_nonempty(v, "values")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be >= 1, got {n_resamples}")
    estimate = float(stat(v))
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, v.size, size=(n_resamples, v.size))
    samples = v[idx]
    if stat is np.mean:
        reps = samples.mean(axis=1)
    else:
        reps = np.array([float(stat(row)) for row in samples])
    lo, hi = np.quantile(reps, [(1.0 - level) / 2.0, (1.0 + level) / 2.0])
    return estimate, float(lo), float(hi)


@dataclass(frozen=True)
class MeanCI:
    """A mean with a percentile-bootstrap confidence interval, for tables and JSON reports."""

    mean: float
    low: float
    high: float
    n: int
    level: float = 0.95

    @classmethod
    def from_values(cls, values: Any, level: float = 0.95, n_resamples: int = 1000, seed: int = 0) -> MeanCI:
        """Mean of `values` with :func:`bootstrap_ci` (stat = mean) bounds."""
        v = as_array(values)
        est, lo, hi = bootstrap_ci(v, np.mean, level=level, n_resamples=n_resamples, seed=seed)
        return cls(mean=est, low=lo, high=hi, n=int(v.size), level=level)

    @property
    def half_width(self) -> float:
        """(high − low) / 2."""
        return (self.high - self.low) / 2.0

    def as_dict(self) -> dict[str, float]:
        return asdict(self)

    def __str__(self) -> str:
        return f"{self.mean:.4g} [{self.low:.4g}, {self.high:.4g}]"


def _replicates(groups: Sequence[np.ndarray], picks: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Bootstrap replicates of the seed-averaged mean, [R, k].

    `groups[s]` holds seed s's per-unit values [n_s, k]; replicate r takes the seeds
    `picks[r]` (drawn with replacement) and, within each, n_s units with replacement.
    """
    R = picks.shape[0]
    boot = np.stack([g[rng.integers(0, len(g), size=(R, len(g)))].mean(axis=1) for g in groups])  # [S, R, k]
    return boot[picks, np.arange(R)[:, None]].mean(axis=1)


def hierarchical_ci(
    groups: Sequence[Any],
    stat: Callable[[np.ndarray], Any] = lambda m: m,
    other: Sequence[Any] | None = None,
    n_resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Estimate and percentile-bootstrap interval of stat(mean over seeds of per-seed means).

        m = (1/S) Σ_s mean_i x_{s,i}   (x_{s,i} ∈ R^k: unit i of seed s),  estimate = stat(m)

    Each replicate resamples the seeds with replacement, then the units within each chosen seed,
    so one seed gives an interval over units (prompts) and several seeds also carry the
    seed-to-seed (data and training) variance. With `other` (the same seeds of a second
    method), the statistic is stat(m) − stat(m_other), both replicates sharing the seed draws:
    a paired comparison. `stat` maps [..., k] → [...] (vectorised over replicates). Returns
    NumPy arrays (estimate, low, high) of stat's output shape (scalars for scalar units).
    """
    scalar_units = np.ndim(groups[0]) <= 1  # units are scalars: return scalars, not [1] arrays

    def as2d(gs):
        return [np.asarray(g, dtype=np.float64).reshape(len(g), -1) for g in gs]

    groups = as2d(groups)
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(groups), size=(n_resamples, len(groups)))
    est = np.asarray(stat(np.mean([g.mean(axis=0) for g in groups], axis=0)))
    reps = np.asarray(stat(_replicates(groups, picks, rng)))
    if other is not None:
        other = as2d(other)
        if len(other) != len(groups):
            raise ValueError("a paired comparison needs the same seeds for both methods")
        est = est - np.asarray(stat(np.mean([g.mean(axis=0) for g in other], axis=0)))
        reps = reps - np.asarray(stat(_replicates(other, picks, rng)))
    lo, hi = np.quantile(reps, [(1 - level) / 2, (1 + level) / 2], axis=0)
    if scalar_units and est.ndim == 1 and est.shape[0] == 1:
        return est[0], lo[0], hi[0]
    return est, lo, hi


# =============================================================================================
# Paired t-test and Holm's correction
# =============================================================================================


def student_t_cdf(t: float, df: int) -> float:
    """P(T ≤ t) for Student's t with `df` degrees of freedom.

    F(t) = ½ + sign(t)·∫₀^|t| f(x) dx,  f(x) = Γ((ν+1)/2) / (√(νπ) Γ(ν/2)) · (1 + x²/ν)^(−(ν+1)/2),
    integrated by Simpson's rule on 4,001 points (|error| < 1e-9 for ν ≥ 1 and |t| ≤ 50;
    beyond 50 the tail mass is taken as 0 — it is below 3e-4 only for ν = 1)."""
    import math

    if df < 1:
        raise ValueError(f"df must be >= 1, got {df}")
    x = min(abs(float(t)), 50.0)
    if x == 0.0:
        return 0.5
    c = math.exp(math.lgamma((df + 1) / 2) - math.lgamma(df / 2)) / math.sqrt(df * math.pi)
    grid = np.linspace(0.0, x, 4001)
    f = c * (1.0 + grid**2 / df) ** (-(df + 1) / 2)
    h = x / 4000
    area = h / 3 * (f[0] + f[-1] + 4 * f[1:-1:2].sum() + 2 * f[2:-1:2].sum())
    return float(0.5 + math.copysign(area, t))


def student_t_quantile(q: float, df: int) -> float:
    """The q-quantile of Student's t with `df` degrees of freedom (bisection on the CDF)."""
    if not 0.0 < q < 1.0:
        raise ValueError(f"q must lie in (0, 1), got {q}")
    lo, hi = -60.0, 60.0
    for _ in range(80):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if student_t_cdf(mid, df) < q else (lo, mid)
    return 0.5 * (lo + hi)


@dataclass(frozen=True)
class PairedTest:
    """A paired comparison: mean difference, its standard error, the two-sided t interval,
    the p-value of H0: mean = 0, and the minimum detectable effect (80 % power, two-sided 5 %)."""

    diff: float
    se: float
    low: float
    high: float
    p: float
    mde: float
    n: int


def paired_t(differences: Any, level: float = 0.95) -> PairedTest:
    """Paired t-test on per-unit differences dᵢ = aᵢ − bᵢ (units: seeds, each already averaged
    over its prompts with common random numbers, so dᵢ carries training and evaluation noise).

        d̄ = mean(d),  SE = sd(d, ddof=1)/√n,  t = d̄/SE,  p = 2·(1 − F_{n−1}(|t|)),
        CI = d̄ ± t_{n−1,(1+level)/2}·SE,   MDE = (t_{n−1,0.975} + t_{n−1,0.8})·SE.

    n = 1 gives SE = nan (no interval: a single seed cannot carry training variance)."""
    d = as_array(differences, "differences")
    require_nonempty(d, "differences")
    n = d.size
    mean = float(d.mean())
    if n < 2:
        nan = float("nan")
        return PairedTest(mean, nan, nan, nan, nan, nan, n)
    se = float(d.std(ddof=1) / np.sqrt(n))
    if se == 0.0:
        p = 1.0 if mean == 0.0 else 0.0
        return PairedTest(mean, 0.0, mean, mean, p, 0.0, n)
    crit = student_t_quantile((1 + level) / 2, n - 1)
    p = 2.0 * (1.0 - student_t_cdf(abs(mean) / se, n - 1))
    mde = (student_t_quantile(0.975, n - 1) + student_t_quantile(0.8, n - 1)) * se
    return PairedTest(mean, se, mean - crit * se, mean + crit * se, min(1.0, max(0.0, p)), mde, n)


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (family-wise error control, any dependence).

    Sort p ascending, p₍₁₎ ≤ … ≤ p₍ₘ₎; adjusted p₍ₖ₎ = max_{j ≤ k} min(1, (m − j + 1)·p₍ⱼ₎);
    returned in the input order. NaN p-values are kept as NaN and do not count in m."""
    p = np.asarray(list(p_values), dtype=np.float64)
    out = np.full(p.shape, np.nan)
    idx = [i for i in np.argsort(p, kind="stable") if not np.isnan(p[i])]
    m, running = len(idx), 0.0
    for k, i in enumerate(idx):
        running = max(running, min(1.0, (m - k) * p[i]))
        out[i] = running
    return out.tolist()
