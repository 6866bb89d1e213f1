"""Links ℓ(m): per-comparison losses of a margin m (the third choice).

All use β, the KL-regularisation strength, and are computed with softplus so that
−log σ(x) = softplus(−x) never overflows.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def sigmoid(m: torch.Tensor, beta: float, label_smoothing: float = 0.0) -> torch.Tensor:
    """DPO's logistic loss with conservative label smoothing ε (cDPO, Mitchell 2023):

        ℓ = (1 − ε)·(−log σ(βm)) + ε·(−log σ(−βm))

    Rafailov et al. 2023, *Direct Preference Optimization* (arXiv 2305.18290); ε = 0 is DPO.
    """
    x = beta * m
    return (1.0 - label_smoothing) * F.softplus(-x) + label_smoothing * F.softplus(x)


def robust(m: torch.Tensor, beta: float, label_smoothing: float) -> torch.Tensor:
    """rDPO's unbiased loss under label flips with rate ε < ½ (Chowdhury et al. 2024,
    *Provably Robust DPO*, arXiv 2403.00409):

        ℓ = [(1 − ε)·(−log σ(βm)) − ε·(−log σ(−βm))] / (1 − 2ε)
    """
    x = beta * m
    return ((1.0 - label_smoothing) * F.softplus(-x) - label_smoothing * F.softplus(x)) / (
        1.0 - 2.0 * label_smoothing)


def hinge(m: torch.Tensor, beta: float, label_smoothing: float = 0.0) -> torch.Tensor:
    """SLiC's hinge loss (Zhao et al. 2023, arXiv 2305.10425): ℓ = max(0, 1 − βm)."""
    return torch.relu(1.0 - beta * m)


def ipo(m: torch.Tensor, beta: float, label_smoothing: float = 0.0) -> torch.Tensor:
    """IPO's squared loss (Azar et al. 2023, *A General Theoretical Paradigm to Understand
    Learning from Human Preferences*, arXiv 2310.12036): ℓ = (m − 1/(2β))²."""
    return (m - 1.0 / (2.0 * beta)) ** 2


LINKS = {"sigmoid": sigmoid, "robust": robust, "hinge": hinge, "ipo": ipo}

SMOOTHABLE_LINKS = frozenset({"sigmoid", "robust"})

LINK_FORMULAS = {
    "sigmoid": "l = (1-eps)*(-log sigmoid(beta*m)) + eps*(-log sigmoid(-beta*m))",
    "robust": "l = [(1-eps)*(-log sigmoid(beta*m)) - eps*(-log sigmoid(-beta*m))] / (1-2*eps)",
    "hinge": "l = max(0, 1 - beta*m)",
    "ipo": "l = (m - 1/(2*beta))^2",
}
