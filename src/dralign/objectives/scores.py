"""Scores s(u) of f-DPO: the first of the four choices.

Wang et al. 2024, *Beyond Reverse KL: Generalizing DPO with Diverse Divergence Constraints*
(arXiv 2309.16240). For an f-divergence regulariser the DPO reward becomes β·f′(π/π_ref), so a
pair is compared through s(u) = f′(eᵘ) of its log-ratio u = log πθ(y|x) − log π_ref(y|x).
Additive constants of f′ cancel in s(u⁺) − s(u⁻) and are dropped.

All scores are elementwise, finite for any finite u, and have finite gradients: exponentials go
through `capped_exp`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

EXP_CAP = 30.0
"""Exponent above which `capped_exp` continues linearly (e³⁰ ≈ 1.1e13, far beyond any
log-ratio met in practice, far below float32 overflow)."""


def capped_exp(x: torch.Tensor, cap: float = EXP_CAP) -> torch.Tensor:
    """eˣ for x ≤ cap, continued above the cap by its tangent line e^cap·(1 + x − cap).

    Value and first derivative are continuous at the cap, so the score keeps a finite, non-zero
    gradient where a hard clamp would silently stop learning; nothing overflows in float32.
    """
    below = torch.exp(x.clamp(max=cap))
    above = math.exp(cap) * (1.0 + (x - cap))
    return torch.where(x <= cap, below, above)


def reverse_kl(u: torch.Tensor) -> torch.Tensor:
    """Reverse KL (standard DPO): f(t) = t log t, f′(t) = log t + 1, so s(u) = u."""
    return u


def forward_kl(u: torch.Tensor) -> torch.Tensor:
    """Forward KL: f(t) = −log t, f′(t) = −1/t, so s(u) = −e^(−u)."""
    return -capped_exp(-u)


def js(u: torch.Tensor) -> torch.Tensor:
    """Jensen–Shannon: f(t) = t log t − (t+1) log((t+1)/2), f′(t) = log(2t/(1+t)),
    so s(u) = log 2 − softplus(−u)  (= log 2 + log σ(u))."""
    return math.log(2.0) - F.softplus(-u)


def alpha_divergence(u: torch.Tensor, alpha: float) -> torch.Tensor:
    """α-divergence, paper convention, α ∈ (0, 1): f′(t) = (1 − t^(−α))/α, so
    s(u) = (1 − e^(−αu))/α.  α → 0 gives reverse KL (s → u), α → 1 forward KL (1 − e^(−u)).

    TRL (≥ 0.29) writes the same score as (e^((c−1)u) − 1)/(c − 1) with
    c = `f_alpha_divergence_coef`; the two agree when c = 1 − α.
    """
    return (1.0 - capped_exp(-alpha * u)) / alpha


SCORES = {
    "reverse_kl": reverse_kl,
    "forward_kl": forward_kl,
    "js": js,
    "alpha": alpha_divergence,
}

SCORE_FORMULAS = {
    "reverse_kl": "s(u) = u",
    "forward_kl": "s(u) = -exp(-u)",
    "js": "s(u) = log 2 - softplus(-u)",
    "alpha": "s(u) = (1 - exp(-alpha*u)) / alpha",
}


def trl_alpha_coef(alpha: float) -> float:
    """TRL's `f_alpha_divergence_coef` for the paper's α: c = 1 − α."""
    return 1.0 - alpha
