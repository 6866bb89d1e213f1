"""The passes of one penalised micro-batch (`dralign.train.penalty.penalized_backward`, whose
module docstring derives them): `exact` (g with create_graph, one double backward) or
`finite_difference` (`_first_pass`, `_step_size`, `_second_pass`; pass 1 alone when ρ = 0)."""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch

from dralign.modeling.wrappers import unwrap  # keep_peft: the adapters must see the perturbed embeddings
from dralign.objectives.objective import Objective, ObjectiveOutput

from .penalty_geometry import (
    RNGState,
    default_step,
    input_embeddings,
    n_pairs,
    pair_index,
    pair_sq_norms,
    policy_logps,
)

if TYPE_CHECKING:
    from .penalty import PenaltyOptions

__all__ = ["MicroBatch", "PenaltyResult", "exact", "finite_difference", "penalty_active"]


@dataclass
class PenaltyResult:
    """What `penalized_backward` did for one micro-batch (all tensors detached, unscaled).

    loss:      objective value + penalty value (what to log as the loss).
    objective: the objective's value without the penalty (the micro-batch Σ_i p_i ℓ_i when
               `weights` were given).
    penalty:   the penalty's value: ρ·S (squared) or ρ·√S (sqrt_mean; with `penalty_total`,
               this micro-batch's share ρ·S/√S_total, which sums to ρ·√S_total). 0 without a
               penalty.
    grad_sq:   S = Σ_i p_i ‖∇_{z_i} ℓ_i‖² of this micro-batch (NaN when not computed).
    output:    the `ObjectiveOutput` of pass 1 (None when `weights` were given).
    fd_eps:    the finite-difference step ε (NaN in exact mode or without a penalty).
    metrics:   the objective's metrics plus `penalty/wasserstein`, `penalty/grad_sq`
               (and `penalty/fd_eps`).
    """

    loss: torch.Tensor
    objective: torch.Tensor
    penalty: torch.Tensor
    grad_sq: torch.Tensor
    output: ObjectiveOutput | None
    fd_eps: float = math.nan
    metrics: dict = field(default_factory=dict)


def penalty_active(objective: Objective) -> bool:
    """Whether the objective carries a Wasserstein penalty with ρ > 0."""
    return objective.penalty is not None and objective.penalty.active


@dataclass
class MicroBatch:
    """One micro-batch's penalised step: what each of its passes reads."""

    model: torch.nn.Module
    batch: dict
    ref_chosen: torch.Tensor
    ref_rejected: torch.Tensor
    objective: Objective
    o: PenaltyOptions
    fixed_p: torch.Tensor | None = None  # p of pass 1, held fixed in pass 2

    def policy_logps(self, z):
        ln = self.objective.length_normalize if self.o.length_normalize is None else self.o.length_normalize
        return policy_logps(self.model, self.batch, z, ln, self.o.shared_prompt)

    def example_losses(self, pc, pr):
        """Differentiable ℓ_i [B] (the objective's own computation, no aggregation)."""
        d = torch.float64 if pc.dtype == torch.float64 else torch.float32
        m = self.objective.margins(pc.to(d), pr.to(d), self.ref_chosen.to(d).detach(), self.ref_rejected.to(d).detach())
        return self.objective.losses(m)

    def pass_loss(self, pc, pr, first: bool):
        """(surrogate with gradient Σ p_i ∇ℓ_i, value, p, differentiable ℓ, output)."""
        if self.o.weights is None and first:
            out = self.objective(pc, pr, self.ref_chosen, self.ref_rejected, state=self.o.state, **(self.o.meta or {}))
            return out.loss, out.loss.detach(), out.weights.detach(), None, out
        losses = self.example_losses(pc, pr)
        p = self.o.weights if self.o.weights is not None else self.fixed_p
        assert p is not None, "pass 2 reads pass 1's p (fixed_p)"
        p = p.to(losses.dtype)
        surrogate = (p * losses).sum()
        return surrogate, surrogate.detach(), p, losses, None

    def embeddings(self) -> torch.Tensor:
        return input_embeddings(unwrap(self.model, keep_peft=True).get_input_embeddings(), self.batch["input_ids"])

    def coefficient(self, s_local, penalty_total):
        """(k, penalty value) of the penalty at S (ρ = 0 and no penalty alike: 0, 0)."""
        if self.objective.penalty is None:
            return 0.0, s_local.new_zeros(())
        return self.objective.penalty.coefficient(s_local, penalty_total)


def exact(mb: MicroBatch) -> PenaltyResult:
    """The exact penalty: g with create_graph, then one (double) backward of L + k·S."""
    o, count = mb.o, n_pairs(mb.batch, mb.o.shared_prompt)
    assert o.autocast is not None and o.backward is not None, "set by penalized_backward"
    with o.autocast():
        z = mb.embeddings()
        pc, pr = mb.policy_logps(z)
        surrogate, value, p, losses, out = mb.pass_loss(pc, pr, True)
        if losses is None:
            losses = mb.example_losses(pc, pr)
        (g,) = torch.autograd.grad(losses.sum(), z, create_graph=True)
        sq = pair_sq_norms(g, pair_index(mb.batch, o.shared_prompt), count)
        s_local = (p.to(sq.dtype) * sq).sum()
    k, pen_value = mb.coefficient(s_local.detach(), o.penalty_total)
    o.backward((surrogate + k * s_local.to(surrogate.dtype)) * o.scale)
    return _result(value, pen_value, s_local.detach(), out, math.nan, mb.objective)


def finite_difference(mb: MicroBatch) -> PenaltyResult:
    """Pass 1 (ordinary backward, G captured, `.grad` rescaled by c1), then, when the penalty
    is active, pass 2 at z + ε·g (see the module doc)."""
    ids = mb.batch["input_ids"]
    fd = penalty_active(mb.objective)  # ρ = 0 or no penalty: pass 1 only (S is still measured)
    params = [q for q in mb.model.parameters() if q.requires_grad]
    rng = RNGState(ids.device)
    saved = [q.grad for q in params] if fd else []  # read only when fd
    if fd:
        for q in params:
            q.grad = None
    first = _first_pass(mb, fd)
    if not fd:
        return _result(first.value, first.pen_value, first.s_local, first.out, math.nan, mb.objective)
    eps, c2 = _step_size(first)
    _rescale_grads(params, saved, 1.0 - c2)
    _second_pass(mb, first.g, eps, c2, rng)
    return _result(first.value, first.pen_value, first.s_local, first.out, eps, mb.objective)


@dataclass
class _FirstPass:
    """What pass 1 leaves for the rest of the step."""

    value: torch.Tensor  # the objective's value
    out: ObjectiveOutput | None
    g: torch.Tensor  # g_i at every position [rows, L, width]
    s_local: torch.Tensor  # S of this micro-batch
    k: float | torch.Tensor  # the penalty's gradient coefficient
    pen_value: torch.Tensor
    z_norm: float
    step: float  # ε₀


def _first_pass(mb: MicroBatch, fd: bool) -> _FirstPass:
    """Forward at z = embed(ids) and an ordinary backward; g_i = G_i / (c·p_i) from the
    gradient G captured at z."""
    o, am = mb.o, mb.batch["attention_mask"]
    assert o.autocast is not None and o.backward is not None, "set by penalized_backward"
    captured: dict[str, torch.Tensor] = {}
    with o.no_sync() if (fd and o.no_sync is not None) else contextlib.nullcontext():
        with o.autocast():
            z = mb.embeddings()
            z.register_hook(lambda grad: captured.__setitem__("G", grad.detach()))
            pc, pr = mb.policy_logps(z)
            surrogate, value, p, _, out = mb.pass_loss(pc, pr, True)
            surrogate.register_hook(lambda grad: captured.__setitem__("c", grad.detach()))
            z_norm = z.detach().float()[am.bool()].norm()
            step = default_step(z) if o.fd_step is None else o.fd_step  # autocast is on here
        o.backward(surrogate * o.scale)
    mb.fixed_p = p
    c_total = captured["c"].double().item()  # = scale × whatever `backward` multiplied by
    G = captured.get("G")
    work = torch.float64 if z.dtype == torch.float64 else torch.float32
    pairs = pair_index(mb.batch, o.shared_prompt)  # [rows, L]
    p_pos = torch.where(pairs >= 0, p.to(work)[pairs.clamp(min=0)], 0.0)
    if G is None or c_total == 0:
        g = torch.zeros_like(z, dtype=work)
    else:
        inv = torch.where(p_pos > 0, 1.0 / (c_total * p_pos), torch.zeros_like(p_pos))
        g = G.to(work) * inv[..., None]
    sq = pair_sq_norms(g, pairs, n_pairs(mb.batch, o.shared_prompt))
    s_local = (p.to(sq.dtype) * sq).sum()
    k, pen_value = mb.coefficient(s_local, o.penalty_total)
    return _FirstPass(value, out, g, s_local, k, pen_value, float(z_norm), step)


def _step_size(first: _FirstPass) -> tuple[float, float]:
    """(ε, c2): ε = ε₀·‖z‖/‖g‖ and pass 2's coefficient 2k/ε; (0, 0) when there is no
    gradient to perturb along (or it is not finite: the caller's check skips the step)."""
    g_norm = first.g.norm()
    finite = bool(torch.isfinite(first.s_local)) and bool(torch.isfinite(g_norm))
    if finite and float(g_norm) > 0 and first.z_norm > 0:
        eps = first.step * first.z_norm / float(g_norm)
        return eps, 2.0 * float(first.k) / eps
    return 0.0, 0.0


def _rescale_grads(params: list, saved: list, c1: float) -> None:
    """`.grad` (pass 1's alone) scaled by c1 in place, the set-aside gradient added back."""
    with torch.no_grad():
        for q, old in zip(params, saved):
            if q.grad is None:
                q.grad = old
                continue
            if c1 != 1.0:
                q.grad.mul_(c1)
            if old is not None:
                q.grad.add_(old)


def _second_pass(mb: MicroBatch, g: torch.Tensor, eps: float, c2: float, rng: RNGState) -> None:
    """Forward at z + ε·g with pass 1's dropout masks and p, backward of c2·L_p."""
    o = mb.o
    assert o.autocast is not None and o.backward is not None, "set by penalized_backward"
    after = RNGState(mb.batch["input_ids"].device)
    rng.restore()  # same dropout masks as pass 1
    try:
        with o.autocast():
            z2 = mb.embeddings()
            z2 = z2 + (eps * g).to(z2.dtype)
            pc2, pr2 = mb.policy_logps(z2)
            surrogate2, *_ = mb.pass_loss(pc2, pr2, False)
        o.backward(surrogate2 * (c2 * o.scale))
    finally:
        after.restore()


def _result(value, pen_value, s_local, out, eps, objective) -> PenaltyResult:
    value = value.detach()
    pen_value = torch.as_tensor(pen_value, dtype=value.dtype, device=value.device).detach()
    s_local = torch.as_tensor(s_local, device=value.device).detach()
    metrics = dict(out.metrics) if out is not None else {}
    if objective.penalty is not None:
        metrics["penalty/wasserstein"] = float(pen_value)
        metrics["penalty/grad_sq"] = float(s_local)
        if objective.penalty.penalty_mode == "finite_difference":
            metrics["penalty/fd_eps"] = float(eps)
    return PenaltyResult(
        loss=value + pen_value,
        objective=value,
        penalty=pen_value,
        grad_sq=s_local,
        output=out,
        fd_eps=float(eps),
        metrics=metrics,
    )
