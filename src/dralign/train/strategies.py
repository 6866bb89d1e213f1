"""Gradient strategies: how one optimizer step's micro-batches become gradients.

Chosen once at setup (`choose_strategy`); every strategy has one method,
`backward(micro, state) -> StepOutput`, which leaves the summed gradient of the effective batch in the
parameters' `.grad` and returns the loss and metric tensors to log.

- `LocalStep`: each micro-batch backpropagates its own objective / grad_accum (as TRL and the
  papers' code do). Exact for objectives that do not couple examples.
- `ExactStep`: the exact global batch (docs/design.md, "Global batch"): a statistics pass
  computes every micro-batch's policy values, they are all-gathered, the objective is
  linearised once over the effective batch (`Objective.coefficients`), and each micro-batch
  backpropagates Σ c·value. k micro-batches of b give the update of one batch of k·b.
- `PenalizedStep`: WDPO's gradient penalty (train/penalty.py) on top of either; a
  prefix-shared scorer means the shared-prompt penalty (`--penalty-layout shared`).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import torch

from ..objectives import Objective
from .penalty import grad_sq, penalized_backward
from .scorers import DataSide, PairedScorer, Scorer


@dataclass
class StepOutput:
    """The step's loss and metric tensors (global means) and the objective's state after it
    (group DRO's q advanced once over the effective batch; unchanged for stateless objectives)."""

    loss: torch.Tensor
    metrics: dict[str, torch.Tensor]
    state: dict


@dataclass
class StepContext:
    """What every strategy reads: the prepared model, its accelerator, the objective, the
    scorer and the training side (data, reference, ratios)."""

    accelerator: Any  # accelerate.Accelerator (or a test double); accelerate ships no stubs
    model: torch.nn.Module
    objective: Objective
    scorer: Scorer
    side: DataSide

    def sync(self, last: bool):
        """Skip DDP's gradient all-reduce on all but the last micro-batch."""
        return contextlib.nullcontext() if last else self.accelerator.no_sync(self.model)

    def policy_values(self, batch: dict):
        with self.accelerator.autocast():
            return self.scorer.policy_values(self.model, batch)

    def global_mean(self, loss, metrics, state):
        """Log the global batch's values, not process 0's."""
        acc = self.accelerator
        if acc.num_processes > 1:
            loss = acc.reduce(torch.as_tensor(loss), reduction="mean")
            metrics = {k: acc.reduce(v, reduction="mean") for k, v in metrics.items()}
        return StepOutput(loss, metrics, state)


class LocalStep:
    """Each micro-batch on its own objective, scaled by 1/grad_accum."""

    def __init__(self, ctx: StepContext):
        self.ctx = ctx

    def backward(self, micro: list[dict], state: dict) -> StepOutput:
        ctx, k = self.ctx, len(micro)
        loss: float | torch.Tensor = 0.0
        metrics: dict[str, torch.Tensor] = {}
        for i, batch in enumerate(micro):
            with ctx.sync(i == k - 1):
                rows = ctx.scorer.rows(ctx.policy_values(batch), batch, ctx.side)
                args, meta = ctx.scorer.arguments(rows)
                out = ctx.objective(*args, **meta, state=state)
                ctx.accelerator.backward(out.loss / k)
            state = out.state  # stateful objectives reach here with one micro-batch only (recipe)
            loss += out.loss.detach().float() / k
            for name, v in out.metric_tensors.items():
                metrics[name] = metrics.get(name, 0.0) + v.float() / k
        return ctx.global_mean(loss, metrics, state)


def statistics_pass(ctx: StepContext, micro: list[dict], keep_first: bool):
    """Every micro-batch's rows without gradients (the first one's graph kept when
    `keep_first`, to be backpropagated once the coefficients are known: it is not computed
    twice), gathered over processes. Returns (local rows, gathered rows, first values)."""
    rows, retained = [], None
    for i, batch in enumerate(micro):
        keep = keep_first and i == 0
        with ctx.sync(len(micro) == 1) if keep else torch.no_grad():
            values = ctx.policy_values(batch)
        if keep:
            retained = values
        detached = tuple(v.detach().float() for v in values)
        rows.append(ctx.scorer.rows(detached, batch, ctx.side))
    local = {k: torch.cat([r[k] for r in rows]) for k in rows[0]}
    full = {k: ctx.accelerator.gather(v) for k, v in local.items()}
    return local, full, retained


def my_share(ctx: StepContext, tensors: list[torch.Tensor], n_local: int) -> list[torch.Tensor]:
    """This process's slice of effective-batch tensors, times the number of processes
    (DDP averages gradients over processes; the coefficients are of the sum)."""
    acc = ctx.accelerator
    start = acc.process_index * n_local
    return [t[start : start + n_local] * acc.num_processes for t in tensors]


class ExactStep:
    """The exact global batch: statistics over the effective batch, then Σ c·value per
    micro-batch. Memory stays one micro-batch's graph."""

    def __init__(self, ctx: StepContext):
        self.ctx = ctx

    def backward(self, micro: list[dict], state: dict) -> StepOutput:
        ctx = self.ctx
        local, full, retained = statistics_pass(ctx, micro, keep_first=True)
        out, coefs = ctx.scorer.coefficients(ctx.objective, full, state=state)
        n_local = next(iter(local.values())).shape[0]
        coefs = my_share(ctx, coefs, n_local)
        offset = 0
        for i, batch in enumerate(micro):
            with ctx.sync(i == len(micro) - 1):
                values = retained if i == 0 else ctx.policy_values(batch)
                n = values[0].shape[0]
                surrogate = sum((c[offset : offset + n] * v.float()).sum() for c, v in zip(coefs, values))
                ctx.accelerator.backward(surrogate)
            offset += n
        return StepOutput(out.loss.float(), {k: v.float() for k, v in out.metric_tensors.items()}, out.state)


class PenalizedStep:
    """WDPO: each micro-batch's forward/backward passes with the gradient penalty
    (train/penalty.py). With `exact`, the robust weights p come from a statistics pass over the
    effective batch; otherwise each micro-batch weighs its own pairs."""

    def __init__(self, ctx: StepContext, exact: bool):
        self.ctx, self.exact = ctx, exact

    @property
    def scorer(self) -> PairedScorer:
        """The run's scorer: paired, as the gradient penalty is of paired objectives."""
        scorer = self.ctx.scorer
        assert isinstance(scorer, PairedScorer), "the gradient penalty needs a paired scorer"
        return scorer

    def _penalized(self, batch: dict, **kwargs):
        ctx = self.ctx
        rc, rr = self.scorer.reference_values(ctx.side, batch)
        return penalized_backward(ctx.model, batch, rc, rr, ctx.objective, ctx=ctx, **kwargs)

    def backward(self, micro: list[dict], state: dict) -> StepOutput:
        return self._exact(micro, state) if self.exact else self._local(micro, state)

    def _effective_grad_sq(self, micro: list[dict], own_weights: torch.Tensor) -> torch.Tensor:
        """S = Σ_i p_i ‖∇_{z_i} ℓ_i‖² over the effective batch (all micro-batches and processes):
        sqrt_mean's penalty ρ·√S is of the whole batch, not of each micro-batch."""
        ctx, offset = self.ctx, 0
        total: float | torch.Tensor = 0.0
        for batch in micro:
            n = batch["index"].shape[0]
            rc, rr = self.scorer.reference_values(ctx.side, batch)
            total = total + grad_sq(
                ctx.model,
                batch,
                rc,
                rr,
                ctx.objective,
                weights=own_weights[offset : offset + n],
                autocast=ctx.accelerator.autocast,
                shared_prompt=getattr(ctx.scorer, "prefix_sharing", False),
            )
            offset += n
        return ctx.accelerator.reduce(torch.as_tensor(total), reduction="sum")

    def _local(self, micro: list[dict], state: dict) -> StepOutput:
        ctx, k = self.ctx, len(micro)
        loss: float | torch.Tensor = 0.0
        metrics: dict[str, torch.Tensor] = {}
        for i, batch in enumerate(micro):
            with ctx.sync(i == k - 1):
                result = self._penalized(batch, meta=self.scorer.metadata(batch, ctx.side), scale=1.0 / k, state=state)
            state = result.output.state
            loss += torch.as_tensor(result.loss).detach().float() / k
            for name, v in result.metrics.items():
                metrics[name] = metrics.get(name, 0.0) + torch.as_tensor(v).float() / k
        return ctx.global_mean(loss, metrics, state)

    def _exact(self, micro: list[dict], state: dict) -> StepOutput:
        ctx = self.ctx
        acc = ctx.accelerator
        local, full, _ = statistics_pass(ctx, micro, keep_first=False)
        out, _ = ctx.scorer.coefficients(ctx.objective, full, state=state)
        n_local = next(iter(local.values())).shape[0]
        own = out.weights[acc.process_index * n_local : (acc.process_index + 1) * n_local]
        weights = own * acc.num_processes  # DDP averages gradients over processes
        total_sq = self._effective_grad_sq(micro, own) if ctx.objective.penalty.penalty_form == "sqrt_mean" else None
        offset, penalty = 0, []
        for i, batch in enumerate(micro):
            n = batch["index"].shape[0]
            with ctx.sync(i == len(micro) - 1):
                result = self._penalized(batch, weights=weights[offset : offset + n], penalty_total=total_sq)
            penalty.append(result.penalty.float())
            offset += n
        total = acc.reduce(sum(penalty), reduction="sum") / acc.num_processes
        return StepOutput(
            out.loss.float() + total,
            {**{k: v.float() for k, v in out.metric_tensors.items()}, "penalty/wasserstein": total},
            out.state,
        )


Strategy = LocalStep | ExactStep | PenalizedStep


def choose_strategy(ctx: StepContext, *, exact: bool, penalized: bool) -> Strategy:
    """The step for this run: chosen once, never a flag tested on every step."""
    if penalized:
        return PenalizedStep(ctx, exact)
    return ExactStep(ctx) if exact else LocalStep(ctx)
