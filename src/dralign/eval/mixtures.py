"""Mixtures of two rewards, r(α) from r_a and r_b, for shift sweeps over α ∈ [0, 1]."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = ["DEFAULT_ALPHAS", "MIXTURES", "check_alpha", "geometric_mixture", "linear_mixture", "mixture_fn"]

#: The default grid of mixture weights α for shift sweeps.
DEFAULT_ALPHAS = tuple(round(0.1 * i, 1) for i in range(11))


def check_alpha(alpha: float) -> None:
    """Refuse α outside [0, 1] (ValueError)."""
    if not 0.0 <= float(alpha) <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1], got {alpha}")


def _scalar_or_array(x: np.ndarray, *inputs: Any) -> Any:
    return float(x) if all(np.ndim(i) == 0 for i in inputs) else x


def linear_mixture(r_a: Any, r_b: Any, alpha: float) -> Any:
    """r(α) = α·r_a + (1 − α)·r_b, for α ∈ [0, 1]. Floats in → float out; arrays broadcast."""
    check_alpha(alpha)
    out = alpha * np.asarray(r_a, dtype=np.float64) + (1.0 - alpha) * np.asarray(r_b, np.float64)
    return _scalar_or_array(out, r_a, r_b)


def geometric_mixture(r_a: Any, r_b: Any, alpha: float) -> Any:
    """r(α) = r_a^α · r_b^(1−α), for α ∈ [0, 1] and rewards ≥ 0, with 0^0 := 1.

    So α = 1 gives exactly r_a and α = 0 exactly r_b even where the other reward is 0; for
    0 < α < 1 a zero in either reward gives 0 (the geometric mixture demands both objectives).
    Floats in → float out; arrays broadcast.
    """
    check_alpha(alpha)
    a = np.asarray(r_a, dtype=np.float64)
    b = np.asarray(r_b, dtype=np.float64)
    if np.any(a < 0) or np.any(b < 0):
        raise ValueError("geometric_mixture needs non-negative rewards")
    with np.errstate(divide="ignore", invalid="ignore"):
        pa = np.ones_like(a) if alpha == 0 else np.power(a, alpha)
        pb = np.ones_like(b) if alpha == 1 else np.power(b, 1.0 - alpha)
    return _scalar_or_array(pa * pb, r_a, r_b)


#: The mixtures by name: ``(r_a, r_b, alpha) -> r(alpha)``.
MIXTURES: dict[str, Callable[[Any, Any, float], Any]] = {"linear": linear_mixture, "geometric": geometric_mixture}


def mixture_fn(kind: str) -> Callable[[Any, Any, float], Any]:
    """The mixture named `kind` ("linear" or "geometric"); ValueError for any other name."""
    if kind not in MIXTURES:
        raise ValueError(f"unknown mixture kind {kind!r}; use 'linear' or 'geometric'")
    return MIXTURES[kind]
