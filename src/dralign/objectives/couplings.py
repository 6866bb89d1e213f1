"""Couplings: which quantities a preference loss compares (the second choice).

A coupling turns per-example log-probs into margins m_k, one per comparison:

- `paired`: m_i = s(u_i⁺) − s(u_i⁻), one comparison per preference pair (DPO and f-DPO).
- `aot`: AOT paired (Melnyk et al. 2024, *Distributional Preference Alignment of LLMs via
  Optimal Transport*, arXiv 2406.05882). Sort a_i = log πθ(y_i⁺) − log πθ(y_i⁻) and
  b_i = log π_ref(y_i⁺) − log π_ref(y_i⁻) separately over the batch; m_(k) = a_(k) − b_(k).
  The sorted comparison is the one-dimensional optimal-transport coupling: it asks the policy's
  margin distribution to dominate the reference's (first-order stochastic dominance).
- `aot_unpaired`: AOT unpaired. Sort s(u⁺) over the chosen set and s(u⁻) over the rejected set
  separately and compare equal quantiles: m_(k) = s⁺_(k) − s⁻_(k). The sets may come from
  different prompts and differ in size; see `quantile_match`.

A coupling that sorts compares quantiles, not examples: its comparisons carry no example
identity, so per-example metadata (weights, groups, density ratios) cannot apply to them.
"""

from __future__ import annotations

from typing import Callable

import torch

Score = Callable[[torch.Tensor], torch.Tensor]


def paired(policy_chosen: torch.Tensor, policy_rejected: torch.Tensor, ref_chosen: torch.Tensor,
           ref_rejected: torch.Tensor, score: Score) -> torch.Tensor:
    """m_i = s(u_i⁺) − s(u_i⁻), with u = log πθ − log π_ref.  Shapes [B] → [B]."""
    return score(policy_chosen - ref_chosen) - score(policy_rejected - ref_rejected)


def aot(policy_chosen: torch.Tensor, policy_rejected: torch.Tensor, ref_chosen: torch.Tensor,
        ref_rejected: torch.Tensor, score: Score) -> torch.Tensor:
    """AOT paired: m_(k) = sort(a)_(k) − sort(b)_(k), a = πθ margins, b = π_ref margins.

    Only defined for the reverse-KL score (the caller checks); `score` is unused. [B] → [B].
    """
    a = torch.sort(policy_chosen - policy_rejected).values
    b = torch.sort(ref_chosen - ref_rejected).values
    return a - b


def quantile_match(n_chosen: int, n_rejected: int, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Index pairs (i_k, j_k), k = 0..K−1 with K = max(n⁺, n⁻), matching equal quantiles.

    Comparison k sits at quantile level q_k = (k + ½)/K; it takes the ⌊q_k·n⌋-th order statistic
    of each sorted set. With n⁺ = n⁻ = n this is (k, k): plain sorting.
    """
    k = max(n_chosen, n_rejected)
    levels = (torch.arange(k, device=device, dtype=torch.float64) + 0.5) / k
    chosen = torch.floor(levels * n_chosen).long().clamp(max=n_chosen - 1)
    rejected = torch.floor(levels * n_rejected).long().clamp(max=n_rejected - 1)
    return chosen, rejected


def aot_unpaired(policy_chosen: torch.Tensor, policy_rejected: torch.Tensor, ref_chosen: torch.Tensor,
                 ref_rejected: torch.Tensor, score: Score) -> torch.Tensor:
    """AOT unpaired: m_(k) = s⁺_(k) − s⁻_(k) over quantile-matched order statistics.

    Chosen tensors have shape [n⁺], rejected [n⁻] (n⁺ ≠ n⁻ allowed); output [max(n⁺, n⁻)].
    """
    s_chosen = torch.sort(score(policy_chosen - ref_chosen)).values
    s_rejected = torch.sort(score(policy_rejected - ref_rejected)).values
    i, j = quantile_match(s_chosen.numel(), s_rejected.numel(), device=s_chosen.device)
    return s_chosen[i] - s_rejected[j]


COUPLINGS = {"paired": paired, "aot": aot, "aot_unpaired": aot_unpaired}

SORTING_COUPLINGS = frozenset({"aot", "aot_unpaired"})

COUPLING_FORMULAS = {
    "paired": "m_i = s(u+_i) - s(u-_i)",
    "aot": "m_(k) = sort_k[logpi(y+) - logpi(y-)] - sort_k[logref(y+) - logref(y-)]",
    "aot_unpaired": "m_(k) = sort_k[s(u+)] - sort_k[s(u-)]  (quantile-matched)",
}
