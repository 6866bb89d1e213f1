"""Calibration after a fitted temperature, so that the link's scale cannot decide it.

A method's own link gives p̂ = σ(β·Δs) (f-DPO, Wang et al. 2024). At a small β, p̂ ≈ ½ whatever
the model learned, so mean |p̂ − p| would rank the *scale* of β·Δs, not what the model knows.
Before measuring, each run's logits z = logit(p̂) are rescaled by one temperature t > 0, fitted
on the run's *fitting* pairs (every other held-out pair: 0, 2, 4, …) by minimising the
cross-entropy against the known preference probability p; the error is then measured on the
other pairs (1, 3, 5, …), which the fit never saw. t preserves the order of p̂, so accuracy is
unchanged; what remains is the *shape* of the method's link.
"""

from __future__ import annotations

import numpy as np

__all__ = ["fit_temperature", "tempered_calibration_error"]

_LOG_T = (-12.0, 12.0)  # bracket of log t: scales from e^-12 to e^12


def _cross_entropy(z: np.ndarray, p: np.ndarray, log_t: float) -> float:
    x = np.exp(log_t) * z
    # −[p log σ(x) + (1 − p) log σ(−x)], stably
    return float(np.mean(np.logaddexp(0.0, -x) * p + np.logaddexp(0.0, x) * (1.0 - p)))


def fit_temperature(z: np.ndarray, p: np.ndarray, iters: int = 100) -> float:
    """The scale t > 0 minimising the mean cross-entropy of σ(t·z) against p (golden-section
    search on log t; the loss is convex in t). 1.0 when every z is 0 (nothing to scale)."""
    z, p = np.asarray(z, dtype=float), np.asarray(p, dtype=float)
    if not np.any(z):
        return 1.0
    g = (np.sqrt(5.0) - 1.0) / 2.0
    lo, hi = _LOG_T
    a, b = hi - g * (hi - lo), lo + g * (hi - lo)
    fa, fb = _cross_entropy(z, p, a), _cross_entropy(z, p, b)
    for _ in range(iters):
        if fa <= fb:
            hi, b, fb = b, a, fa
            a = hi - g * (hi - lo)
            fa = _cross_entropy(z, p, a)
        else:
            lo, a, fa = a, b, fb
            b = lo + g * (hi - lo)
            fb = _cross_entropy(z, p, b)
    return float(np.exp((lo + hi) / 2.0))


def tempered_calibration_error(p_hat: np.ndarray, p: np.ndarray) -> float:
    """mean |σ(t·logit p̂) − p| over the odd-indexed pairs, t fitted on the even-indexed ones
    (:func:`fit_temperature`). With a single pair it is fitted and measured on that pair."""
    p_hat, p = np.asarray(p_hat, dtype=float), np.asarray(p, dtype=float)
    eps = 1e-12
    z = np.log(np.clip(p_hat, eps, 1 - eps)) - np.log(np.clip(1 - p_hat, eps, 1 - eps))
    fit_idx, eval_idx = np.arange(0, len(z), 2), np.arange(1, len(z), 2)
    if eval_idx.size == 0:
        eval_idx = fit_idx
    t = fit_temperature(z[fit_idx], p[fit_idx])
    return float(np.mean(np.abs(1.0 / (1.0 + np.exp(-t * z[eval_idx])) - p[eval_idx])))
