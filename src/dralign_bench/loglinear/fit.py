"""Every `Objective` on the log-linear world's exact log-probs: its loss on pairs or on the
population, WDPO's exact penalty, and the L-BFGS fit (the theory is in
:mod:`dralign_bench.loglinear`)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from dralign.objectives import PRESETS, Objective

from .world import LoglinearWorld, Pairs, log_policy

POPULATION_AGGREGATORS = ("mean", "kl", "drdpo", "cvar")
"""Robust aggregations with an exact population form in `population_value`."""

# =============================================================================================
# Objectives on exact log-probs
# =============================================================================================


def action_logps(
    world: LoglinearWorld, theta: torch.Tensor, state: torch.Tensor, action: torch.Tensor, z: torch.Tensor | None = None
) -> torch.Tensor:
    """log πθ(a_i|s_i) [n]. With fed features z [n, d] (WDPO's inputs) the row's own feature
    ψ(s_i, a_i) is replaced by z_i in its logit and its normaliser:
    θᵀz_i − log(e^{θᵀz_i} + Σ_{b≠a_i} e^{θᵀψ(s_i,b)}); z = ψ(s, a) gives log πθ(a|s)."""
    if z is None:
        return log_policy(world, theta)[state, action]
    own = F.one_hot(action, world.actions).bool()[..., None]
    x = torch.where(own, z[:, None, :], world.features[state])
    logits = x @ theta
    return (z @ theta) - torch.logsumexp(logits, dim=-1)


def method_objective(
    method: str, beta: float, tau: float = 1.0, rho: float = 0.01, penalty_form: str = "squared"
) -> Objective:
    """The `Objective` of preset `method` with these parameters; ValueError for a preset this world
    cannot train exactly (sorting couplings, density ratios, groups, or an aggregation with no
    population form)."""
    if method not in PRESETS:
        raise ValueError(f"unknown method {method!r}; valid presets: {', '.join(PRESETS)}")
    wanted = dict(beta=beta, tau=tau, rho=rho, penalty_form=penalty_form, penalty_mode="exact")
    uses = Objective.from_preset(method).parameters()
    obj = Objective.from_preset(method, **{k: v for k, v in wanted.items() if k in uses})
    why = None
    if obj.components.coupling.sorts:
        why = f"its coupling {obj.coupling!r} compares sorted batch quantiles, not pairs"
    elif obj.uses_ratio or obj.uses_group:
        why = "it needs density ratios or groups, which this world does not have"
    elif obj.robust not in POPULATION_AGGREGATORS:
        why = f"its aggregation {obj.robust!r} has no exact population form here"
    if why:
        ok = [p for p in PRESETS if _trainable(p)]
        raise ValueError(f"method {method!r} cannot run in the log-linear world: {why}. Use one of {', '.join(ok)}")
    return obj


def _trainable(method: str) -> bool:
    obj = Objective.from_preset(method)
    return (
        not obj.components.coupling.sorts
        and not obj.uses_ratio
        and not obj.uses_group
        and obj.robust in POPULATION_AGGREGATORS
    )


def population_value(obj: Objective, losses: torch.Tensor, mass: torch.Tensor) -> torch.Tensor:
    """The objective's aggregation of per-pair losses ℓ_k under a finite distribution q (Σ q = 1),
    by the objective's own aggregator given the probability mass q: its value, with gradient
    Σ_k p_k ∇ℓ_k (p its weights under q). With q uniform over a sample it is the batch objective."""
    if obj.robust not in POPULATION_AGGREGATORS:
        raise ValueError(f"robust={obj.robust!r} has no population form; one of {', '.join(POPULATION_AGGREGATORS)}")
    detached = losses.detach()
    value = obj.aggregator.value(detached, mass=mass)
    weights = obj.aggregator.weights(detached, mass=mass)
    return value.to(losses.dtype) + (weights.to(losses.dtype) * (losses - detached)).sum()


def wasserstein_penalty(
    obj: Objective, losses: torch.Tensor, z: tuple[torch.Tensor, ...], weights: torch.Tensor
) -> torch.Tensor:
    """WDPO's penalty, exact (double backward): g_i = ∇_{z_i} ℓ_i over the fed chosen and rejected
    features (ℓ_i depends on pair i's rows only, so the gradient of Σ ℓ is per-pair),
    S = Σ_i p_i (‖g_i⁺‖² + ‖g_i⁻‖²) with p detached; returns ρ·S (squared) or ρ·√S (sqrt_mean)."""
    grads = torch.autograd.grad(losses.sum(), z, create_graph=True)
    sq = sum(g.pow(2).sum(-1) for g in grads)
    s = (weights.detach() * sq).sum()
    return obj.penalty.value(s)


def objective_loss(
    obj: Objective, world: LoglinearWorld, theta: torch.Tensor, pairs: Pairs, mass: torch.Tensor | None = None
) -> torch.Tensor:
    """The objective at θ on `pairs`: the `Objective`'s batch loss (mass None), or its population
    value under q = `mass`; plus WDPO's penalty when the objective has one (ρ > 0), weighted by the
    objective's p (batch: `out.weights`; population: ∂value/∂ℓ)."""
    penalised = obj.penalty is not None and obj.penalty.active
    zc = zr = None
    if penalised:
        zc, zr = (world.features[pairs.state, a].clone().requires_grad_(True) for a in (pairs.chosen, pairs.rejected))
    pc = action_logps(world, theta, pairs.state, pairs.chosen, zc)
    pr = action_logps(world, theta, pairs.state, pairs.rejected, zr)
    with torch.no_grad():
        rc = action_logps(world, world.theta_ref, pairs.state, pairs.chosen)
        rr = action_logps(world, world.theta_ref, pairs.state, pairs.rejected)
    if mass is None:
        out = obj(pc, pr, rc, rr)
        if not penalised:
            return out.loss
        value, weights = out.loss, out.weights
        losses = obj.losses(obj.margins(pc, pr, rc, rr))
    else:
        losses = obj.losses(obj.margins(pc, pr, rc, rr))
        value = population_value(obj, losses, mass)
        if not penalised:
            return value
        (weights,) = torch.autograd.grad(value, losses, retain_graph=True)
    return value + wasserstein_penalty(obj, losses, (zc, zr), weights)


def fit(
    obj: Objective,
    world: LoglinearWorld,
    pairs: Pairs,
    mass: torch.Tensor | None = None,
    start: torch.Tensor | None = None,
    max_iter: int = 500,
) -> tuple[torch.Tensor, float]:
    """argmin_θ `objective_loss` by full-batch L-BFGS (strong Wolfe) from `start` (θ_ref);
    returns (θ̂, ‖∇‖ at θ̂) — the gradient norm certifies convergence."""
    theta = (world.theta_ref if start is None else start).clone().requires_grad_(True)
    opt = torch.optim.LBFGS(
        [theta],
        lr=1.0,
        max_iter=max_iter,
        history_size=20,
        tolerance_grad=1e-10,
        tolerance_change=1e-14,
        line_search_fn="strong_wolfe",
    )

    def closure():
        opt.zero_grad()
        loss = objective_loss(obj, world, theta, pairs, mass)
        loss.backward()
        return loss

    opt.step(closure)
    closure()
    return theta.detach(), float(theta.grad.norm())
