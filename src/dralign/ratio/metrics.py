"""Held-out quality metrics of a probabilistic classifier: ROC AUC, calibration error, Brier.

All take 1-D scores/probabilities and 0/1 labels (tensors, arrays or lists) and return floats.
"""

from __future__ import annotations

import numpy as np


def _as_1d(x, name: str) -> np.ndarray:
    try:
        import torch

        if isinstance(x, torch.Tensor):
            x = x.detach().cpu().double().numpy()
    except ImportError:  # pragma: no cover
        pass
    a = np.asarray(x, dtype=np.float64).reshape(-1)
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} contains non-finite values")
    return a


def _check(scores, labels, name="scores"):
    s = _as_1d(scores, name)
    y = _as_1d(labels, "labels")
    if s.shape != y.shape:
        raise ValueError(f"{name} and labels differ in length: {s.size} vs {y.size}")
    if s.size == 0:
        raise ValueError(f"{name} is empty")
    if not np.all((y == 0) | (y == 1)):
        raise ValueError("labels must be 0/1 (or booleans)")
    return s, y


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
    s, y = _check(scores, labels)
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        raise ValueError(f"AUC needs both classes; got {n_pos} positive and {n_neg} negative")
    ranks = _midranks(s)
    r_pos = ranks[y == 1].sum()
    return float((r_pos - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def expected_calibration_error(probs, labels, bins: int = 10) -> float:
    """ECE with `bins` equal-width bins on [0, 1]: Σ_b (n_b/N)·|mean(y_b) − mean(p_b)|.

    Bin b holds p ∈ [b/B, (b+1)/B); p = 1 falls in the last bin. Empty bins contribute 0.
    """
    p, y = _check(probs, labels, "probs")
    if bins < 1:
        raise ValueError("bins must be >= 1")
    if np.any((p < 0) | (p > 1)):
        raise ValueError("probs must lie in [0, 1]")
    idx = np.minimum((p * bins).astype(np.int64), bins - 1)
    ece = 0.0
    for b in range(bins):
        m = idx == b
        if m.any():
            ece += m.sum() / p.size * abs(y[m].mean() - p[m].mean())
    return float(ece)


def brier_score(probs, labels) -> float:
    """Mean squared error of the probabilities: mean((p − y)²)."""
    p, y = _check(probs, labels, "probs")
    return float(np.mean((p - y) ** 2))
