"""WDPO's gradient penalty (Xu et al. 2025, arXiv 2502.01930): forward(s) and backward(s) of one
micro-batch of preference pairs.

Per pair i the objective gets ρ·‖g_i‖², g_i = ∇_{z_i} ℓ_i, where z are the input-embedding
outputs (`model.get_input_embeddings()(input_ids)`, every position, prompt included) of the
pair's chosen and rejected rows; the squared norm sums positions, width, chosen and rejected
(the official code). With robust weights p (∇L = Σ p_i ∇ℓ_i, p a function of the detached
losses) the penalised objective is

    squared    (default):          L + ρ·S,        S = Σ_i p_i ‖g_i‖²   (mean: ρ·mean_i ‖g_i‖²)
    sqrt_mean  (paper, Alg. 1):    L + ρ·√S

and both have gradient ∇L + k·∇S with k = ρ (squared) or ρ/(2√S) (sqrt_mean, S held fixed).

Per-example gradients from one backward: with a paired coupling ℓ_i depends only on pair i's
rows, so ∇_z L restricted to pair i's rows is exactly p_i·g_i: g_i = G_i / p_i (pairs with
p_i = 0 contribute nothing and are not perturbed).

Two ways to get ∇θ S (`Objective.penalty.penalty_mode`):

- ``exact``: g = autograd.grad(Σ_i ℓ_i, z, create_graph=True), then one backward of L + k·S
  (double backward). Needs an attention kernel with a double backward: eager only; SDPA and
  flash have none (`check_penalty_mode` says so before training).
- ``finite_difference`` (default), any kernel:
  ∇θ S ≈ (2/ε)[∇θ L_p(z + ε·g) − ∇θ L_p(z)],  L_p(z) = Σ_i p_i ℓ_i(z), p and g held fixed,
  so the total gradient is c1·∇θL_p(z) + c2·∇θL_p(z + εg) with c2 = 2k/ε, c1 = 1 − c2.
  Scheme (two forward/backward passes, no third forward):
    pass 1: forward at z = embed(ids), ordinary backward; a hook on z captures G = ∇_z L.
            The trainable parameters' existing `.grad` (earlier micro-batches) is set aside
            first, so that after the backward `.grad` holds this pass's gradient alone; it is
            scaled in place by c1 (known only now, from g) and the set-aside gradient added
            back. No gradient copy is made; while pass 1 runs, the set-aside gradients and the
            new ones coexist (one extra gradient buffer, only when accumulating).
    pass 2: forward at z + ε·g (z recomputed from the embedding so the embedding matrix gets
            its share of the penalty gradient; g detached), backward of c2·L_p.
  c1 is applied by scaling, never divided by, so c1 ≈ 0 or c1 < 0 is harmless.
  ε = ε₀·‖z‖/‖g‖ (norms over the micro-batch, z over attended positions): the perturbation has
  norm ε₀·‖z‖. ε₀ defaults to √(machine epsilon) of the lowest precision in use (the
  embeddings' dtype or the autocast dtype, float32 at best since models run norms in float32
  even in float64), capped at 1e-2: 3.5e-4 in float32 and float64, 1e-2 under bfloat16 or
  float16 (autocast or weights). Measured on tiny llama/gpt2, penalty gradient (total minus
  ρ = 0) against the exact one: float32/float64 relative error ≈ 2e-3, cosine > 0.99999 (the
  error is O(ε₀), forward difference, down to ε₀ ≈ 1e-4, rounding below); bfloat16 autocast
  relative error ≈ 0.1, cosine ≈ 0.994 — a coarse but usable regulariser gradient. Dropout sees the same
  masks in both passes: the RNG state is restored for pass 2 (and left as after pass 1).

Gradients are multiplied by `scale` (e.g. 1/grad_accum). `backward` (e.g. Accelerate's
`accelerator.backward`) may multiply the loss by a constant of its own (fp16 loss scaling); the
constant is read from a hook on the loss, so g is recovered correctly. Under DDP pass `no_sync`
(e.g. ``lambda: accelerator.no_sync(model)``): pass 1 runs inside it, pass 2 in the caller's
context, so gradients are all-reduced once. Parameters' `.grad` must be ordinary tensors (DDP
without `gradient_as_bucket_view`; not DeepSpeed ZeRO / FSDP sharded gradients) for the
finite-difference mode.

Sorting couplings (`aot`, `aot_unpaired`) are refused: their comparisons are quantiles over
the batch and need the sort ranks (and, for exact global batches, partner values) to map a
comparison's weight onto example rows; not implemented.

Two penalty layouts (`shared_prompt`, the trainer's `--penalty-layout`):

- ``per_sequence`` (default, the authors' code): the plain layout, chosen row [x | y⁺] and
  rejected row [x | y⁻], each with its own copy z^c, z^r of the prompt's embeddings:

      ‖g_i‖² = ‖∇_{z^c} ℓ_i‖² + ‖∇_{z^r} ℓ_i‖²      (prompt counted once in each row)

  A prefix-shared batch cannot give it: its one prompt copy receives the sum of the two rows'
  gradients (‖a + b‖² ≠ ‖a‖² + ‖b‖²), and the finite difference could not perturb two copies
  differently. Cost: two passes over 2P + C + R tokens per pair (P, C, R: prompt, chosen and
  rejected lengths), ≈ 2·(2P+C+R)/(P+C+R) times a prefix-shared dpo step (8/3 ≈ 2.7 when
  P = C = R), whatever the implementation.
- ``shared`` (prefix-shared batches, `dralign.data.collate.collate_shared_pairs`): one row
  [x | y⁺ | y⁻] per pair, one copy z_x of the prompt's embeddings perturbed once for the pair
  (the pair, not each sequence, is the sample whose input moves inside the Wasserstein ball):

      ‖g_i‖² = ‖∇_{z_x} ℓ_i‖² + ‖∇_{z_{y⁺}} ℓ_i‖² + ‖∇_{z_{y⁻}} ℓ_i‖²,
      ∇_{z_x} ℓ_i = ∇_{z^c_x} ℓ_i + ∇_{z^r_x} ℓ_i

  i.e. the per-sequence penalty plus the cross term 2⟨∇_{z^c_x} ℓ_i, ∇_{z^r_x} ℓ_i⟩ on the
  prompt. Everything else (weights, forms, modes, ε) is unchanged; it costs two passes of the
  prefix-shared layout, ≈ 2× a dpo step.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable
from contextlib import AbstractContextManager as ContextManager
from dataclasses import dataclass

import torch

from dralign.modeling.loading import attention_supports_double_backward
from dralign.modeling.wrappers import unwrap  # keep_peft: the adapters must see the perturbed embeddings
from dralign.objectives.objective import Objective

from .penalty_geometry import (
    RNGState,
    check_layout,
    input_embeddings,
    n_pairs,
    pair_index,
    pair_sq_norms,
    policy_logps,
)
from .penalty_passes import MicroBatch, PenaltyResult, exact, finite_difference, penalty_active

# PenaltyResult and penalty_active live in train/penalty_passes.py (the passes of one micro-batch)
__all__ = ["PenaltyOptions", "PenaltyResult", "check_penalty_mode", "grad_sq", "penalized_backward", "penalty_active"]


def check_penalty_mode(model: torch.nn.Module, objective: Objective) -> None:
    """Raise ValueError, before any training, when the objective's penalty cannot run on `model`:
    exact mode on an attention kernel without a double backward, or a sorting coupling."""
    if objective.penalty is None:
        return
    if objective.components.coupling.sorts:
        raise ValueError(
            f"the Wasserstein penalty (WDPO) is not implemented for coupling={objective.coupling!r}: "
            "a sorting coupling compares batch quantiles, not examples, so the per-example "
            "gradient penalty ||grad_z l_i||^2 has no per-example loss to differentiate. "
            "Use coupling='paired', or penalty='none'"
        )
    if objective.penalty.penalty_mode == "exact" and not attention_supports_double_backward(
        unwrap(model, keep_peft=True)
    ):
        impl = getattr(getattr(unwrap(model, keep_peft=True), "config", None), "_attn_implementation", None)
        raise ValueError(
            f"penalty_mode='exact' needs a double backward through attention, which the model's "
            f"attention kernel ({impl!r}) does not have (SDPA and flash attention have none). "
            "Load the model with attn_implementation='eager', or use "
            "penalty_mode='finite_difference' (the default; any kernel)"
        )


@dataclass(frozen=True)
class PenaltyOptions:
    """The keyword options of `penalized_backward` (see there), gathered into one value.

    backward, no_sync and autocast are the accelerator's hooks; a trainer passes its
    `StepContext` (``ctx=``) instead, and they come from its accelerator."""

    meta: dict | None = None
    weights: torch.Tensor | None = None
    scale: float = 1.0
    length_normalize: bool | None = None
    penalty_total: float | torch.Tensor | None = None
    fd_step: float | None = None
    state: dict | None = None
    backward: Callable[[torch.Tensor], None] | None = None
    no_sync: Callable[[], ContextManager] | None = None
    autocast: Callable[[], ContextManager] | None = None
    shared_prompt: bool = False

    def with_context(self, ctx) -> PenaltyOptions:
        """These options with the hooks of `ctx` (a `dralign.train.strategies.StepContext`):
        its accelerator's backward, autocast and no_sync, and its scorer's layout."""
        acc = ctx.accelerator
        return dataclasses.replace(
            self,
            backward=acc.backward,
            autocast=acc.autocast,
            no_sync=lambda: acc.no_sync(ctx.model),
            shared_prompt=getattr(ctx.scorer, "prefix_sharing", False),
        )


def penalized_backward(
    model: torch.nn.Module,
    batch: dict,
    ref_chosen: torch.Tensor,
    ref_rejected: torch.Tensor,
    objective: Objective,
    *,
    ctx=None,
    **options,
) -> PenaltyResult:
    """Forward(s) and backward(s) of one micro-batch of B pairs with WDPO's penalty.

    batch: `input_ids`, `attention_mask`, `completion_mask` [2B, L] (chosen rows, then
        rejected), or with `shared_prompt` a prefix-shared batch [B, L] (the shared-prompt
        penalty, see the module doc).
    ref_chosen, ref_rejected: reference log-probs [B] in the objective's units (summed, or
        mean when length-normalised).
    objective: the `Objective`; its `penalty` (a `Wasserstein` value: rho, penalty_form,
        penalty_mode) picks the penalty. With ρ = 0 (or no penalty) pass 1 alone runs: an
        ordinary forward/backward, S still measured.
    ctx: the trainer's `StepContext`: the accelerator's backward, autocast and no_sync, and the
        scorer's layout (`shared_prompt`), instead of passing them one by one.
    options (`PenaltyOptions`):
      meta: keyword metadata for the objective (`weight`, `group`, `ratio`) when `weights` is None.
      weights: p [B] fixed from outside (exact global batch: p computed over the effective
        batch, data weights included). Then the micro-batch loss is Σ_i p_i ℓ_i, ℓ from
        `objective.losses(objective.margins(...))`, the objective is not called (no state
        update) and `output` is None.
      scale: every gradient is multiplied by it (e.g. 1/grad_accum); reported values are not.
      length_normalize: mean instead of summed completion log-probs (None: the objective's).
      penalty_total: S_total, the effective batch's S = Σ_i p_i ‖g_i‖² over every micro-batch
        and process (from `grad_sq`), so that sqrt_mean's gradient is ρ/(2√S_total)·∇S_micro
        and the parts add up to the big batch's (default: this micro-batch's S, right only
        when it is the whole effective batch). Unused by the squared form.
      state: the objective's state (group DRO's q) when `weights` is None; the advanced state
        is `result.output.state`.
      fd_step: ε₀ of the finite difference (relative step, see the module doc).
      backward: callable that backpropagates a scalar (default `Tensor.backward`).
      no_sync: context-manager factory for the finite difference's first pass (DDP).
      autocast: context-manager factory wrapping the forwards.
      shared_prompt: the batch is prefix-shared and the penalty the shared-prompt one.
    """
    o = PenaltyOptions(**options)
    if ctx is not None:
        o = o.with_context(ctx)
    o = dataclasses.replace(
        o, backward=o.backward or (lambda t: t.backward()), autocast=o.autocast or contextlib.nullcontext
    )
    if "label" in batch:
        raise ValueError(
            "penalized_backward takes paired batches (chosen rows then rejected); "
            "unpaired batches use a sorting coupling, which the penalty does not support"
        )
    check_layout(batch, o.shared_prompt)
    if objective.penalty is not None:
        check_penalty_mode(model, objective)
    if o.weights is not None:
        if objective.components.coupling.sorts:
            raise ValueError("fixed per-example weights cannot apply to a sorting coupling")
        o = dataclasses.replace(o, weights=o.weights.detach())
    mb = MicroBatch(model, batch, ref_chosen, ref_rejected, objective, o)
    if objective.penalty is not None and objective.penalty.penalty_mode == "exact" and penalty_active(objective):
        return exact(mb)
    return finite_difference(mb)


def grad_sq(
    model: torch.nn.Module,
    batch: dict,
    ref_chosen: torch.Tensor,
    ref_rejected: torch.Tensor,
    objective: Objective,
    *,
    weights: torch.Tensor,
    length_normalize: bool | None = None,
    autocast: Callable[[], ContextManager] | None = None,
    shared_prompt: bool = False,
) -> torch.Tensor:
    """S_micro = Σ_i p_i ‖g_i‖², g_i = ∇_{z_i} ℓ_i, of one micro-batch (detached, no parameter
    gradient: one forward and a backward to z only).

    sqrt_mean needs S over the EFFECTIVE batch: its gradient is ρ/(2√S)·∇S with

        S_total = Σ_{processes} Σ_{micro-batches} Σ_{i in micro} p_i ‖g_i‖²

    where p are the effective batch's weights (Σ p = 1 over all micro-batches and processes,
    from the statistics pass). The trainer, per optimizer step:
      1. p = objective over the effective batch (`Objective.coefficients(...)[0].weights`);
      2. S_total = all-reduce-sum over processes of Σ_micro `grad_sq(model, micro, rc, rr,
         objective, weights=p[micro])` (p unscaled: not multiplied by the number of processes);
      3. for each micro-batch `penalized_backward(..., weights=p[micro] * W, penalty_total=S_total)`
         (W = number of processes, so DDP's average gives Σ; each part's penalty value is
         ρ·S_micro/√S_total, which sums to ρ·√S_total once divided by W).
    Then k micro-batches of b and N processes give the update of one batch of k·b·N. The squared
    form is additive and needs none of this. The RNG state is restored afterwards, so measuring
    S does not move the training's random stream (dropout masks may differ from the training
    pass's for the second and later micro-batches).
    """
    autocast = autocast or contextlib.nullcontext
    ln = objective.length_normalize if length_normalize is None else length_normalize
    check_layout(batch, shared_prompt)
    ids = batch["input_ids"]
    count = n_pairs(batch, shared_prompt)
    rng = RNGState(ids.device)
    try:
        with torch.enable_grad(), autocast():
            z = input_embeddings(unwrap(model, keep_peft=True).get_input_embeddings(), ids)
            pc, pr = policy_logps(model, batch, z, ln, shared_prompt)
            d = torch.float64 if pc.dtype == torch.float64 else torch.float32
            pc, pr = pc.to(d), pr.to(d)
            losses = objective.losses(objective.margins(pc, pr, ref_chosen.to(d).detach(), ref_rejected.to(d).detach()))
            (g,) = torch.autograd.grad(losses.sum(), z)
    finally:
        rng.restore()
    sq = pair_sq_norms(g.detach(), pair_index(batch, shared_prompt), count)
    return (weights.detach().to(sq.dtype) * sq).sum()
