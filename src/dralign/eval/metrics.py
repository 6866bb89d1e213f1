"""Evaluation metrics: small pure functions, each documented with its formula.

Every function accepts Python sequences, NumPy arrays or (CPU or GPU, any float dtype) torch
tensors, computes in float64 NumPy, and returns plain Python floats (or tuples/dicts of them),
so the results can go straight into a JSON report.

Conventions
-----------
* A *margin* is m = r(x, y⁺) − r(x, y⁻) for a pair whose first element is the one labelled
  "chosen"; for DPO-style models the implicit reward margin is β·[(log π − log π_ref)(y⁺) −
  (log π − log π_ref)(y⁻)].
* Calibration metrics take probabilities p_i = P(chosen ≻ rejected) — for an implicit reward
  model p_i = σ(β·m_i), see :func:`preference_probs` — and labels y_i = 1 when the chosen
  response really is preferred (0 otherwise).
* Ties count ½ wherever something is "won".
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any, Callable, Hashable, Iterable, Mapping

import numpy as np

__all__ = [
    "MeanCI",
    "bootstrap_ci",
    "brier_score",
    "distinct_n",
    "expected_calibration_error",
    "mean_length",
    "preference_accuracy",
    "preference_probs",
    "reward_margin_stats",
    "sequence_kl_estimate",
    "token_entropy",
    "win_rate",
    "worst_case",
    "roc_auc",
]


def _as_array(x: Any, name: str = "values") -> np.ndarray:
    """A float64 1-D NumPy copy of `x` (list, array or torch tensor)."""
    if hasattr(x, "detach"):  # torch tensor, without importing torch
        x = x.detach().to("cpu").double().numpy()
    arr = np.asarray(x, dtype=np.float64).reshape(-1)
    return arr


def _require_nonempty(arr: np.ndarray, name: str) -> None:
    if arr.size == 0:
        raise ValueError(f"{name} is empty")


# ---------------------------------------------------------------------------------------------
# Preference / reward-model metrics
# ---------------------------------------------------------------------------------------------

def preference_accuracy(margins: Any) -> float:
    """Fraction of pairs ranked correctly, ties counting ½.

        acc = (1/n) Σ_i [ 1(m_i > 0) + ½·1(m_i = 0) ]

    `margins` are chosen-minus-rejected rewards (TRL's `rewards/accuracies` counts ties as 0;
    here a tie is a coin flip, so a constant model scores exactly 0.5).
    """
    m = _as_array(margins)
    _require_nonempty(m, "margins")
    return float(np.mean((m > 0) + 0.5 * (m == 0)))


def reward_margin_stats(margins: Any) -> dict[str, float]:
    """Summary of reward margins m_i = r(y⁺) − r(y⁻).

    Returns ``{"mean", "std", "median", "min", "max", "accuracy", "n"}`` where std is the
    population standard deviation sqrt((1/n) Σ (m_i − m̄)²) and accuracy is
    :func:`preference_accuracy`.
    """
    m = _as_array(margins)
    _require_nonempty(m, "margins")
    return {
        "mean": float(m.mean()),
        "std": float(m.std()),
        "median": float(np.median(m)),
        "min": float(m.min()),
        "max": float(m.max()),
        "accuracy": preference_accuracy(m),
        "n": float(m.size),
    }


def preference_probs(margins: Any, beta: float = 1.0) -> np.ndarray:
    """Bradley–Terry probabilities p_i = σ(β·m_i) = 1 / (1 + exp(−β·m_i)), computed stably.

    Returns a float64 NumPy array (the input to :func:`expected_calibration_error` and
    :func:`brier_score`).
    """
    z = beta * _as_array(margins)
    out = np.empty_like(z)
    pos = z >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-z[pos]))
    ez = np.exp(z[~pos])
    out[~pos] = ez / (1.0 + ez)
    return out


def _check_probs_labels(probs: Any, labels: Any) -> tuple[np.ndarray, np.ndarray]:
    p = _as_array(probs, "probs")
    y = _as_array(labels, "labels")
    if p.shape != y.shape:
        raise ValueError(f"probs and labels differ in length: {p.size} vs {y.size}")
    _require_nonempty(p, "probs")
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
        ranks[order[i:j + 1]] = 0.5 * (i + j) + 1.0
        i = j + 1
    return ranks


def roc_auc(scores, labels) -> float:
    """Area under the ROC curve, by the Mann–Whitney statistic.

    AUC = P(s⁺ > s⁻) + ½ P(s⁺ = s⁻) over all (positive, negative) pairs, computed from midranks:
    AUC = (R⁺ − n⁺(n⁺+1)/2) / (n⁺ n⁻), with R⁺ the sum of the positives' midranks.
    Raises ValueError when a class is absent (the AUC is undefined).
    """
    s, y = _as_array(scores, "scores"), _as_array(labels, "labels")
    if s.shape != y.shape:
        raise ValueError(f"scores and labels differ in length: {s.size} vs {y.size}")
    _require_nonempty(s, "scores")
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


def brier_score(probs: Any, labels: Any) -> float:
    """Brier score: mean squared error of the probabilities, (1/n) Σ_i (p_i − y_i)²."""
    p, y = _check_probs_labels(probs, labels)
    return float(np.mean((p - y) ** 2))


def win_rate(rewards_a: Any, rewards_b: Any, paired: bool = True) -> float:
    """How often A beats B, ties counting ½.

    paired (default; same length, e.g. two policies' completions of the same prompts):
        (1/n) Σ_i [ 1(a_i > b_i) + ½·1(a_i = b_i) ]
    unpaired (`paired=False`, any lengths; every a against every b, the Mann–Whitney U/(n·m)):
        (1/(n·m)) Σ_i Σ_j [ 1(a_i > b_j) + ½·1(a_i = b_j) ]
    """
    a = _as_array(rewards_a, "rewards_a")
    b = _as_array(rewards_b, "rewards_b")
    _require_nonempty(a, "rewards_a")
    _require_nonempty(b, "rewards_b")
    if paired:
        if a.shape != b.shape:
            raise ValueError(f"paired win_rate needs equal lengths, got {a.size} and {b.size}; "
                             "pass paired=False to compare every a with every b")
        return float(np.mean((a > b) + 0.5 * (a == b)))
    diff = a[:, None] - b[None, :]
    return float(np.mean((diff > 0) + 0.5 * (diff == 0)))


def sequence_kl_estimate(policy_logps: Any, start_logps: Any) -> float:
    """Monte-Carlo estimate of the sequence-level KL(π ‖ π_start).

        KL̂ = (1/n) Σ_i [ log π(y_i|x_i) − log π_start(y_i|x_i) ],   y_i ~ π(·|x_i)

    `policy_logps` and `start_logps` are summed completion log-probabilities of the *same*
    completions, which must have been sampled from the policy π (not from π_start, and not
    from a dataset). This is the standard unbiased estimator (the "k1" estimator): its
    expectation is the KL, but a single estimate can be negative when n is small.
    """
    lp = _as_array(policy_logps, "policy_logps")
    ls = _as_array(start_logps, "start_logps")
    if lp.shape != ls.shape:
        raise ValueError(f"policy_logps and start_logps differ in length: {lp.size} vs {ls.size}")
    _require_nonempty(lp, "policy_logps")
    return float(np.mean(lp - ls))


# ---------------------------------------------------------------------------------------------
# Diversity
# ---------------------------------------------------------------------------------------------

def _as_token_lists(seqs: Iterable[Any]) -> list[list[Hashable]]:
    """Token lists: strings are split on whitespace; tensors/arrays become lists of ints."""
    out: list[list[Hashable]] = []
    for s in seqs:
        if isinstance(s, str):
            out.append(s.split())
        elif hasattr(s, "tolist"):
            out.append(list(np.asarray(s.detach().cpu() if hasattr(s, "detach") else s)
                            .reshape(-1).tolist()))
        else:
            out.append(list(s))
    return out


def token_entropy(token_id_lists: Iterable[Any]) -> float:
    """Entropy, in nats, of the unigram distribution over all generated tokens.

        H = − Σ_t p_t log p_t,   p_t = count(t) / Σ_t' count(t')

    Counts are pooled over all sequences (corpus level). Strings are split on whitespace
    (word-level entropy); token-id lists / tensors are used as they are. No tokens → 0.0.
    """
    counts = Counter()
    for toks in _as_token_lists(token_id_lists):
        counts.update(toks)
    total = sum(counts.values())
    if total == 0:
        return 0.0
    p = np.fromiter(counts.values(), dtype=np.float64) / total
    return float(-(p * np.log(p)).sum())


def distinct_n(seqs: Iterable[Any], n: int = 2) -> float:
    """Corpus-level distinct-n: unique n-grams / total n-grams over all sequences.

        distinct-n = |{ n-grams of all sequences }| / Σ_i max(0, len_i − n + 1)

    n-grams never cross sequence boundaries. `seqs` are token-id lists (or tensors) or strings
    (split on whitespace). No n-grams at all → 0.0.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    unique: set[tuple] = set()
    total = 0
    for toks in _as_token_lists(seqs):
        grams = [tuple(toks[i:i + n]) for i in range(len(toks) - n + 1)]
        total += len(grams)
        unique.update(grams)
    return float(len(unique) / total) if total else 0.0


def mean_length(seqs: Iterable[Any]) -> float:
    """Mean sequence length (1/n) Σ_i len_i; strings count whitespace-separated words."""
    lists = _as_token_lists(seqs)
    if not lists:
        raise ValueError("no sequences")
    return float(np.mean([len(t) for t in lists]))


# ---------------------------------------------------------------------------------------------
# Uncertainty and aggregation over shifts
# ---------------------------------------------------------------------------------------------

def bootstrap_ci(values: Any, stat: Callable[[np.ndarray], float] = np.mean,
                 level: float = 0.95, n_resamples: int = 1000,
                 seed: int = 0) -> tuple[float, float, float]:
    """Percentile-bootstrap confidence interval: returns ``(estimate, low, high)``.

    estimate = stat(values). Draw `n_resamples` resamples of size n with replacement
    (NumPy PCG64 generator seeded with `seed`, so the result is deterministic), compute the
    statistic on each, and take the (1 − level)/2 and (1 + level)/2 quantiles of those
    replicates (linear interpolation). A single value gives a zero-width interval.
    `stat` maps a 1-D float array to a number; `np.mean` (default) is vectorised.
    """
    v = _as_array(values)
    _require_nonempty(v, "values")
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
    def from_values(cls, values: Any, level: float = 0.95, n_resamples: int = 1000,
                    seed: int = 0) -> "MeanCI":
        """Mean of `values` with :func:`bootstrap_ci` (stat = mean) bounds."""
        v = _as_array(values)
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


def worst_case(values_by_alpha: Mapping[float, float],
               higher_is_better: bool = True) -> tuple[float, float]:
    """The worst point of a shift sweep: ``(alpha, value)``.

        α* = argmin_α v(α)   (argmax when `higher_is_better=False`, e.g. for a loss)

    Ties go to the smallest α. NaN values are refused (a missing point must not look best).
    """
    if not values_by_alpha:
        raise ValueError("values_by_alpha is empty")
    items = sorted((float(a), float(v)) for a, v in values_by_alpha.items())
    for a, v in items:
        if math.isnan(v):
            raise ValueError(f"value at alpha={a} is NaN")
    sign = 1.0 if higher_is_better else -1.0
    best = items[0]
    for a, v in items[1:]:
        if sign * v < sign * best[1]:
            best = (a, v)
    return best
