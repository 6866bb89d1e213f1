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

ROC AUC, ECE, Brier and bootstrap intervals live in :mod:`dralign.stats` (ratio uses them too).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Hashable, Iterable, Mapping
from typing import Any

import numpy as np

from ..stats import as_array, require_nonempty

__all__ = [
    "distinct_n",
    "mean_length",
    "preference_accuracy",
    "preference_probs",
    "reward_margin_stats",
    "sequence_kl_estimate",
    "token_entropy",
    "win_rate",
    "worst_case",
]


# ---------------------------------------------------------------------------------------------
# Preference / reward-model metrics
# ---------------------------------------------------------------------------------------------


def preference_accuracy(margins: Any) -> float:
    """Fraction of pairs ranked correctly, ties counting ½.

        acc = (1/n) Σ_i [ 1(m_i > 0) + ½·1(m_i = 0) ]

    `margins` are chosen-minus-rejected rewards (TRL's `rewards/accuracies` counts ties as 0;
    here a tie is a coin flip, so a constant model scores exactly 0.5).
    """
    m = as_array(margins)
    require_nonempty(m, "margins")
    return float(np.mean((m > 0) + 0.5 * (m == 0)))


def reward_margin_stats(margins: Any) -> dict[str, float]:
    """Summary of reward margins m_i = r(y⁺) − r(y⁻).

    Returns ``{"mean", "std", "median", "min", "max", "accuracy", "n"}`` where std is the
    population standard deviation sqrt((1/n) Σ (m_i − m̄)²) and accuracy is
    :func:`preference_accuracy`.
    """
    m = as_array(margins)
    require_nonempty(m, "margins")
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

    Returns a float64 NumPy array (the input to
    :func:`dralign.stats.expected_calibration_error` and :func:`dralign.stats.brier_score`).
    """
    z = beta * as_array(margins)
    out = np.empty_like(z)
    pos = z >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-z[pos]))
    ez = np.exp(z[~pos])
    out[~pos] = ez / (1.0 + ez)
    return out


def win_rate(rewards_a: Any, rewards_b: Any, paired: bool = True) -> float:
    """How often A beats B, ties counting ½.

    paired (default; same length, e.g. two policies' completions of the same prompts):
        (1/n) Σ_i [ 1(a_i > b_i) + ½·1(a_i = b_i) ]
    unpaired (`paired=False`, any lengths; every a against every b, the Mann–Whitney U/(n·m)):
        (1/(n·m)) Σ_i Σ_j [ 1(a_i > b_j) + ½·1(a_i = b_j) ]
    """
    a = as_array(rewards_a, "rewards_a")
    b = as_array(rewards_b, "rewards_b")
    require_nonempty(a, "rewards_a")
    require_nonempty(b, "rewards_b")
    if paired:
        if a.shape != b.shape:
            raise ValueError(
                f"paired win_rate needs equal lengths, got {a.size} and {b.size}; "
                "pass paired=False to compare every a with every b"
            )
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
    lp = as_array(policy_logps, "policy_logps")
    ls = as_array(start_logps, "start_logps")
    if lp.shape != ls.shape:
        raise ValueError(f"policy_logps and start_logps differ in length: {lp.size} vs {ls.size}")
    require_nonempty(lp, "policy_logps")
    return float(np.mean(lp - ls))


# ---------------------------------------------------------------------------------------------
# Diversity
# ---------------------------------------------------------------------------------------------


def _as_token_lists(seqs: Iterable[Any]) -> list[list[Hashable]]:
    """Token lists: strings are split on whitespace; tensors/arrays become lists of ints."""
    out: list[list[Hashable]] = []
    for s in seqs:
        if isinstance(s, str):
            out.append(list(s.split()))  # list[Hashable], for the checker (lists are invariant)
        elif hasattr(s, "tolist"):
            out.append(list(np.asarray(s.detach().cpu() if hasattr(s, "detach") else s).reshape(-1).tolist()))
        else:
            out.append(list(s))
    return out


def token_entropy(token_id_lists: Iterable[Any]) -> float:
    """Entropy, in nats, of the unigram distribution over all generated tokens.

        H = − Σ_t p_t log p_t,   p_t = count(t) / Σ_t' count(t')

    Counts are pooled over all sequences (corpus level). Strings are split on whitespace
    (word-level entropy); token-id lists / tensors are used as they are. No tokens → 0.0.
    """
    counts: Counter[Hashable] = Counter()
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
        grams = [tuple(toks[i : i + n]) for i in range(len(toks) - n + 1)]
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
# Aggregation over shifts
# ---------------------------------------------------------------------------------------------


def worst_case(values_by_alpha: Mapping[float, float], higher_is_better: bool = True) -> tuple[float, float]:
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
