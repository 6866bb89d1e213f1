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
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .lazy import lazy_module
from .params import Component, Param

if TYPE_CHECKING:
    import torch
    import torch.nn.functional as F
else:
    torch = lazy_module("torch", globals())  # imported on first use: `dralign train --help` needs no torch
    F = lazy_module("torch.nn.functional", globals(), "F")

EXP_CAP = 30.0
"""Exponent above which `capped_exp` continues linearly (e³⁰ ≈ 1.1e13, far beyond any
log-ratio met in practice, far below float32 overflow)."""

WANG = "Wang et al. 2024, Beyond Reverse KL: Generalizing DPO with Diverse Divergence Constraints (arXiv 2309.16240)"


def capped_exp(x: torch.Tensor, cap: float = EXP_CAP) -> torch.Tensor:
    """eˣ for x ≤ cap, continued above the cap by its tangent line e^cap·(1 + x − cap).

    Value and first derivative are continuous at the cap, so the score keeps a finite, non-zero
    gradient where a hard clamp would silently stop learning; nothing overflows in float32.
    """
    below = torch.exp(x.clamp(max=cap))
    above = math.exp(cap) * (1.0 + (x - cap))
    return torch.where(x <= cap, below, above)


class Score(Component):
    """s(u), elementwise."""

    def __call__(self, u: torch.Tensor) -> torch.Tensor:  # pragma: no cover - interface
        raise NotImplementedError


@dataclass(frozen=True)
class ReverseKL(Score):
    """Reverse KL (standard DPO): f(t) = t log t, f′(t) = log t + 1."""

    name = "reverse_kl"
    formula = "s(u) = u"
    paper = "Rafailov et al. 2023, Direct Preference Optimization (arXiv 2305.18290)"

    def __call__(self, u):
        return u


@dataclass(frozen=True)
class ForwardKL(Score):
    """Forward KL: f(t) = −log t, f′(t) = −1/t."""

    name = "forward_kl"
    formula = "s(u) = -exp(-u)"
    paper = WANG

    def __call__(self, u):
        return -capped_exp(-u)


@dataclass(frozen=True)
class JS(Score):
    """Jensen–Shannon: f(t) = t log t − (t+1) log((t+1)/2), f′(t) = log(2t/(1+t)),
    i.e. log 2 + log σ(u)."""

    name = "js"
    formula = "s(u) = log 2 - softplus(-u)"
    paper = WANG

    def __call__(self, u):
        return math.log(2.0) - F.softplus(-u)


ALPHA = Param(
    "alpha",
    0.5,
    "alpha of the alpha-divergence, paper convention (0 -> reverse KL, 1 -> forward KL)",
    lambda v: 0 < v < 1,
    "in (0, 1)",
)


@dataclass(frozen=True)
class Alpha(Score):
    """α-divergence, paper convention, α ∈ (0, 1): f′(t) = (1 − t^(−α))/α.
    α → 0 gives reverse KL (s → u), α → 1 forward KL (1 − e^(−u)).

    TRL (≥ 0.29) writes the same score as (e^((c−1)u) − 1)/(c − 1) with
    c = `f_alpha_divergence_coef`; the two agree when c = 1 − α (`trl_alpha_coef`).
    """

    alpha: float = ALPHA.field()
    name = "alpha"
    formula = "s(u) = (1 - exp(-alpha*u)) / alpha"
    paper = WANG

    def __call__(self, u):
        return (1.0 - capped_exp(-self.alpha * u)) / self.alpha


SCORES = {c.name: c for c in (ReverseKL, ForwardKL, JS, Alpha)}


def trl_alpha_coef(alpha: float) -> float:
    """TRL's `f_alpha_divergence_coef` c for the paper's α, c = 1 − α; the map is its own
    inverse, so the same function gives α = 1 − c (the convention, named once: `objectives.trl`)."""
    return 1.0 - alpha
