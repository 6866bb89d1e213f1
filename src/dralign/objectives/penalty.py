"""WDPO's Wasserstein penalty: settings and the pure math (the model passes live in
`dralign.train.penalty`).

Per pair i the objective gets ρ·‖g_i‖², g_i = ∇_{z_i} ℓ_i with z the input-embedding outputs of
the pair's chosen and rejected rows. With robust weights p (∇L = Σ p_i ∇ℓ_i) and

    S = Σ_i p_i ‖g_i‖²     over the EFFECTIVE batch (all micro-batches, all processes)

the penalised objective is L + ρ·S (`squared`, the official code) or L + ρ·√S (`sqrt_mean`,
the paper's Algorithm 1), with gradient ∇L + k·∇S, k = ρ or ρ/(2√S) (S held fixed).

`squared` is additive over examples: each micro-batch can add ρ·∇S_micro on its own.
`sqrt_mean` is not: k needs the effective batch's S, so it couples examples and the trainer
must measure S_total first (see `dralign.train.penalty.penalty_total`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from .lazy import lazy_module
from .params import Component, Param, non_negative

if TYPE_CHECKING:  # the real module for the checker; lazy at run time
    import torch
else:
    torch = lazy_module("torch", globals())  # imported on first use: `dralign train --help` needs no torch

RHO = non_negative("rho", 0.01, "rho of WDPO's gradient penalty")
PENALTY_FORM = Param(
    "penalty_form",
    "squared",
    "WDPO penalty: per-example squared norm (official code) or sqrt of the mean (paper's Algorithm 1)",
    choices=("squared", "sqrt_mean"),
)
PENALTY_MODE = Param(
    "penalty_mode", "finite_difference", "how to differentiate WDPO's penalty", choices=("finite_difference", "exact")
)


@dataclass(frozen=True)
class Wasserstein(Component):
    """Wasserstein DRO through a gradient penalty on the input embeddings z."""

    rho: float = RHO.field()
    penalty_form: str = PENALTY_FORM.field()
    penalty_mode: str = PENALTY_MODE.field()
    name = "wasserstein"
    formula = "+ rho * sum_i p_i ||grad_z l_i||^2  (sqrt_mean: + rho * sqrt(sum_i p_i ||grad_z l_i||^2))"
    paper = (
        "Xu et al. 2025, Robust LLM Alignment via Distributionally Robust Direct Preference "
        "Optimization (arXiv 2502.01930)"
    )

    @property
    def active(self) -> bool:
        return self.rho > 0

    @property
    def couples_examples(self) -> bool:
        """sqrt_mean's coefficient ρ/(2√S) depends on the whole effective batch."""
        return self.penalty_form == "sqrt_mean" and self.active

    def describe(self) -> str:
        return (
            "+ rho * ||grad_z l_i||^2 on input embeddings z"
            if self.penalty_form == "squared"
            else "+ rho * sqrt(mean ||grad_z l_i||^2)"
        )

    def value(self, s: torch.Tensor) -> torch.Tensor:
        """ρ·S or ρ·√S."""
        return self.rho * (s if self.penalty_form == "squared" else torch.sqrt(s.clamp(min=0)))

    def coefficient(self, s_local: torch.Tensor, s_total=None):
        """(k, this part's penalty value): the penalty's gradient is k·∇S_local.

        squared:   k = ρ, value ρ·S_local (sums over parts to ρ·S).
        sqrt_mean: k = ρ/(2√S_total), value ρ·S_local/√S_total (sums to ρ·√S_total);
                   S_total defaults to S_local (one part: the whole batch).
        """
        s_local = s_local.detach()
        if self.penalty_form == "squared":
            return self.rho, self.rho * s_local
        total = s_local if s_total is None else torch.as_tensor(s_total, dtype=s_local.dtype, device=s_local.device)
        root = torch.sqrt(total.clamp(min=0))
        if not float(root) > 0:
            return 0.0, s_local.new_zeros(())
        return self.rho / (2 * root), self.rho * s_local / root


PENALTIES = {"wasserstein": Wasserstein}
