"""Couplings: which quantities a preference loss compares (the second choice).

A coupling turns per-example log-probs into margins m_k, one per comparison, and the mass
each comparison carries (None: uniform over the comparisons). A coupling that sorts compares
quantiles, not examples: its comparisons carry no example identity, so per-example metadata
(weights, groups, density ratios) cannot apply to them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .lazy import lazy_module
from .params import Component

if TYPE_CHECKING:  # the real module for the checker; lazy at run time
    import torch
else:
    torch = lazy_module("torch", globals())  # imported on first use: `dralign train --help` needs no torch

Score = Callable[["torch.Tensor"], "torch.Tensor"]
MELNYK = "Melnyk et al. 2024, Distributional Preference Alignment of LLMs via Optimal Transport (arXiv 2406.05882)"


class Coupling(Component):
    """(policy chosen, policy rejected, ref chosen, ref rejected, score) → (margins [K], mass)."""

    sorts = False  # compares batch quantiles rather than examples
    linear_score_only = False  # defined for the reverse-KL score only

    def __call__(
        self, policy_chosen, policy_rejected, ref_chosen, ref_rejected, score: Score
    ) -> tuple[torch.Tensor, torch.Tensor | None]:  # pragma: no cover
        raise NotImplementedError


@dataclass(frozen=True)
class Paired(Coupling):
    """One comparison per preference pair (DPO and f-DPO), u = log πθ − log π_ref. [B] → [B]."""

    name = "paired"
    formula = "m_i = s(u+_i) - s(u-_i)"
    paper = "Rafailov et al. 2023, Direct Preference Optimization (arXiv 2305.18290)"

    def __call__(self, policy_chosen, policy_rejected, ref_chosen, ref_rejected, score):
        return score(policy_chosen - ref_chosen) - score(policy_rejected - ref_rejected), None


@dataclass(frozen=True)
class AOT(Coupling):
    """AOT paired: sort a_i = log πθ(y_i⁺) − log πθ(y_i⁻) and b_i = log π_ref(y_i⁺) −
    log π_ref(y_i⁻) separately over the batch and compare equal ranks. The sorted comparison is
    the one-dimensional optimal-transport coupling: it asks the policy's margin distribution to
    dominate the reference's (first-order stochastic dominance). Only defined for the
    reverse-KL score (`score` is unused). [B] → [B]."""

    name = "aot"
    formula = "m_(k) = sort_k[logpi(y+) - logpi(y-)] - sort_k[logref(y+) - logref(y-)]"
    paper = MELNYK
    sorts = True
    linear_score_only = True

    def __call__(self, policy_chosen, policy_rejected, ref_chosen, ref_rejected, score):
        a = torch.sort(policy_chosen - policy_rejected).values
        b = torch.sort(ref_chosen - ref_rejected).values
        return a - b, None


def monotone_transport(n_chosen: int, n_rejected: int, device=None):
    """The exact one-dimensional monotone (optimal-transport) coupling of two empirical
    distributions with n⁺ and n⁻ equally weighted atoms, both sorted ascending.

    Merge the breakpoints of the two CDFs, {i/n⁺} ∪ {j/n⁻}; on each interval (t_{k−1}, t_k]
    of quantile levels both quantile functions are constant, at order statistics i_k and j_k,
    so comparison k is (i_k, j_k) with mass t_k − t_{k−1}. Computed in integers on the common
    grid 1/(n⁺n⁻). Returns (i [K], j [K], mass [K] float64), K ≤ n⁺ + n⁻ − 1; with
    n⁺ = n⁻ = n it is (k, k, 1/n): plain sorting.
    """
    grid = n_chosen * n_rejected
    cuts = torch.unique(
        torch.cat([torch.arange(0, grid + 1, n_rejected), torch.arange(0, grid + 1, n_chosen)])
    )  # sorted, from 0 to grid
    left, right = cuts[:-1], cuts[1:]
    i, j = left // n_rejected, left // n_chosen  # the quantile functions on (left, right]
    mass = (right - left).double() / grid
    return i.to(device), j.to(device), mass.to(device)


@dataclass(frozen=True)
class AOTUnpaired(Coupling):
    """AOT unpaired: sort s(u⁺) over the chosen set and s(u⁻) over the rejected set separately
    and compare them along the monotone transport coupling (`monotone_transport`): equal
    ranks when n⁺ = n⁻, otherwise each matched pair carries its transport mass, so that
    L = Σ_k mass_k ℓ(s⁺_(i_k) − s⁻_(j_k)). The sets may come from different prompts.
    Chosen tensors have shape [n⁺], rejected [n⁻]; output [K]."""

    name = "aot_unpaired"
    formula = "m_k = s+_(i_k) - s-_(j_k) along the monotone transport of the sorted sets, mass_k"
    paper = MELNYK
    sorts = True

    def __call__(self, policy_chosen, policy_rejected, ref_chosen, ref_rejected, score):
        s_chosen = torch.sort(score(policy_chosen - ref_chosen)).values
        s_rejected = torch.sort(score(policy_rejected - ref_rejected)).values
        n_c, n_r = s_chosen.numel(), s_rejected.numel()
        if n_c == n_r:  # the transport is the identity on ranks, with uniform mass
            return s_chosen - s_rejected, None
        i, j, mass = monotone_transport(n_c, n_r, device=s_chosen.device)
        return s_chosen[i] - s_rejected[j], mass.to(s_chosen.dtype)


COUPLINGS = {c.name: c for c in (Paired, AOT, AOTUnpaired)}
