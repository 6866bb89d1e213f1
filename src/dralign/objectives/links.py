"""Links ℓ(m): per-comparison losses of a margin m (the third choice).

All use β, the KL-regularisation strength, and are computed with softplus so that
−log σ(x) = softplus(−x) never overflows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from .lazy import lazy_module
from .params import Component, Param, positive

if TYPE_CHECKING:  # the real modules for the checker; lazy at run time
    import torch
    import torch.nn.functional as F
else:
    torch = lazy_module("torch", globals())  # imported on first use: `dralign train --help` needs no torch
    F = lazy_module("torch.nn.functional", globals(), "F")

BETA = positive("beta", 0.1, "beta, the KL-regularisation strength of every pairwise link")
LABEL_SMOOTHING = Param(
    "label_smoothing", 0.0, "eps, the assumed label-flip rate (cDPO, rDPO, AOT)", lambda v: 0 <= v < 0.5, "in [0, 0.5)"
)


class Link(Component):
    """ℓ(m) elementwise; every link has β."""

    beta: float  # declared by each (dataclass) link; here for the checker only

    def __call__(self, m: torch.Tensor) -> torch.Tensor:  # pragma: no cover - interface
        raise NotImplementedError


@dataclass(frozen=True)
class Sigmoid(Link):
    """DPO's logistic loss with conservative label smoothing ε (cDPO, Mitchell 2023, *A note on
    DPO with noisy preferences*); ε = 0 is DPO."""

    beta: float = BETA.field()
    label_smoothing: float = LABEL_SMOOTHING.field()
    name = "sigmoid"
    formula = "l = (1-eps)*(-log sigmoid(beta*m)) + eps*(-log sigmoid(-beta*m))"
    paper = "Rafailov et al. 2023, Direct Preference Optimization (arXiv 2305.18290)"

    def __call__(self, m):
        x = self.beta * m
        eps = self.label_smoothing
        return (1.0 - eps) * F.softplus(-x) + eps * F.softplus(x)


@dataclass(frozen=True)
class Robust(Link):
    """rDPO's unbiased loss under label flips with rate ε < ½."""

    beta: float = BETA.field()
    label_smoothing: float = LABEL_SMOOTHING.field()
    name = "robust"
    formula = "l = [(1-eps)*(-log sigmoid(beta*m)) - eps*(-log sigmoid(-beta*m))] / (1-2*eps)"
    paper = "Chowdhury et al. 2024, Provably Robust DPO (arXiv 2403.00409)"

    def __post_init__(self):
        if not 0 <= self.label_smoothing < 0.5:  # say why, not only the range
            raise ValueError(
                f"label_smoothing must be in [0, 0.5) (rDPO divides by 1 - 2*eps), got {self.label_smoothing}"
            )
        super().__post_init__()

    def __call__(self, m):
        x = self.beta * m
        eps = self.label_smoothing
        return ((1.0 - eps) * F.softplus(-x) - eps * F.softplus(x)) / (1.0 - 2.0 * eps)


@dataclass(frozen=True)
class Hinge(Link):
    """SLiC's hinge loss."""

    beta: float = BETA.field()
    name = "hinge"
    formula = "l = max(0, 1 - beta*m)"
    paper = "Zhao et al. 2023, SLiC-HF (arXiv 2305.10425)"

    def __call__(self, m):
        return torch.relu(1.0 - self.beta * m)


@dataclass(frozen=True)
class IPO(Link):
    """IPO's squared loss."""

    beta: float = BETA.field()
    name = "ipo"
    formula = "l = (m - 1/(2*beta))^2"
    paper = (
        "Azar et al. 2023, A General Theoretical Paradigm to Understand Learning from Human "
        "Preferences (arXiv 2310.12036)"
    )

    def __call__(self, m):
        return (m - 1.0 / (2.0 * self.beta)) ** 2


LINKS = {c.name: c for c in (Sigmoid, Robust, Hinge, IPO)}
