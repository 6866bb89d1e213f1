"""The exact log-linear world (`dralign bench loglinear`): every objective checked against theory.

**World** (one per seed). S states s (uniform), A actions a, fixed features ψ(s,a) ∈ R^d with
i.i.d. N(0, 1) entries, and the policy class

    log πθ(a|s) = θᵀψ(s,a) − log Σ_b exp(θᵀψ(s,b)),

computed exactly in float64. The reference is π_ref = π_{θ_ref}, ‖θ_ref‖ = `ref_scale`. Two
reward vectors φ_1, φ_2 (‖φ_k‖ = `reward_scale`, cos(φ_1, φ_2) = `reward_cosine`, negative by
default: the rewards conflict) give r_k(s,a) = φ_kᵀψ(s,a) and the mixture

    r_α = α r_1 + (1 − α) r_2 = φ(α)ᵀψ,    φ(α) = α φ_1 + (1 − α) φ_2.

**Closed forms.** The KL-regularised optimum max_π E_s[E_{π(·|s)} r_α − β KL(π(·|s) ‖ π_ref(·|s))]
is π*(a|s) ∝ π_ref(a|s)·exp(r_α(s,a)/β) (per state, the Gibbs variational principle), which is
in the class:

    θ*(α) = θ_ref + φ(α)/β,    optimal value  V*(α) = β·E_s log Σ_a π_ref(a|s) exp(r_α(s,a)/β).

Expected rewards R(θ, α) = E_s Σ_a πθ(a|s) r_α(s,a) and KL(πθ ‖ π_ref) are finite sums. R is
linear in α, so the worst case over an α grid lies at one of its ends.

**Data.** A pair draws s uniformly and two *distinct* actions a ≠ a′ from π_ref(·|s)
(P(a, a′ | s) = π_ref(a|s) π_ref(a′|s) / (1 − Σ_b π_ref(b|s)²)); it is labelled by
Bradley–Terry at the training mixture α₀, P(a ≻ a′) = σ(r_α₀(s,a) − r_α₀(s,a′)). The population
of (state, chosen c, rejected r) has the finite support c ≠ r with mass

    q(s, c, r) = (2/S)·π_ref(c|s) π_ref(r|s) / (1 − Σ_b π_ref(b|s)²) · σ(r_α₀(s,c) − r_α₀(s,r)).

**Training.** Every method is an `Objective` preset fed the exact log-probs above (policy and
reference); θ̂_n minimises the objective on n sampled pairs, full batch, by L-BFGS (strong Wolfe
line search) from θ_ref. Each method's *population optimum* θ_∞ minimises the same per-pair
losses ℓ = link(coupling(score(u⁺), score(u⁻))) — the `Objective`'s own — aggregated exactly over
q (`population_value`). DPO's is θ*(α₀): with BT labels and a linear reward the population
logistic loss is minimised where β(θ − θ_ref)ᵀ(ψ(s,c) − ψ(s,r)) = r(s,c) − r(s,r). KLDPO's
(τ·log E exp(ℓ/τ)) is also closed-form, `kl_dro_optimum`: θ_ref + τ/(1+τ)·φ(α₀)/β, i.e. DPO at
β(1 + 1/τ). The tilted weight of a pair is ∝ q·e^{ℓ/τ} = q·σ(βm)^{−1/τ}; with βm = κΔ,
Δ = r(s,c) − r(s,r), the two orientations of a pair balance,
σ(Δ)·σ(−κΔ)·σ(κΔ)^{−1/τ} = σ(−Δ)·σ(κΔ)·σ(−κΔ)^{−1/τ}, exactly when e^Δ = e^{κΔ(1 + 1/τ)}, i.e.
κ = τ/(1+τ) (and the objective is convex): the KL ball's robustness here is pure shrinkage
towards π_ref.

**WDPO's penalty** (Xu et al. 2025): ρ·‖∇_z ℓ_i‖², z_i = the feature vectors "fed" for pair i's
chosen and rejected action — the input embeddings of this world. A row's log-prob is the model's
function of its own fed vector, which enters both its logit and its state's normaliser:
log πθ(a|s; z) = θᵀz − log(e^{θᵀz} + Σ_{b≠a} e^{θᵀψ(s,b)}), so ∇_z log πθ = (1 − πθ(a|s))·θ.
For DPO ‖∇_z ℓ_i‖² = β² σ(−βm_i)² ‖θ‖² [(1 − πθ(c|s))² + (1 − πθ(r|s))²]: a data-dependent ridge
on ‖θ‖, shrinking towards the uniform policy θ = 0 (not towards π_ref) — the linear-model face
of Wasserstein DRO (a Lipschitz / dual-norm penalty). It is computed exactly by double backward
(create_graph) and weighted as in `dralign.train.penalty`: S = Σ_i p_i ‖g_i‖² with the
objective's detached weights p, plus ρ·S (`squared`) or ρ·√S (`sqrt_mean`).

**Outputs.** Parameter errors ‖θ̂_n − θ*‖ and ‖θ̂_n − θ_∞‖ on an n grid over seeds with their
log-log slopes (theory: −1/2 towards the own optimum; towards θ* a robust method levels off at
its bias ‖θ_∞ − θ*‖), and expected reward under r_α for α on a grid, trained at α₀: the mean
and worst case over the grid, against DPO per seed.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from dralign.config import atomic_write_text, option
from dralign.objectives import PRESETS, Objective
from dralign.objectives.couplings import SORTING_COUPLINGS

from .plotting import pyplot, require_matplotlib

__all__ = [
    "LoglinearConfig",
    "LoglinearOptions",
    "LoglinearWorld",
    "POPULATION_AGGREGATORS",
    "Pairs",
    "action_logps",
    "expected_reward",
    "fit",
    "kl_dro_optimum",
    "kl_to_reference",
    "log_policy",
    "loglog_slope",
    "make_world",
    "method_objective",
    "objective_loss",
    "optimal_value",
    "optimum",
    "pair_distribution",
    "population_value",
    "regularised_value",
    "rewards",
    "run_loglinear",
    "sample_pairs",
    "wasserstein_penalty",
]

DTYPE = torch.float64
POPULATION_AGGREGATORS = ("mean", "kl", "drdpo", "cvar")
"""Robust aggregations with an exact population form in `population_value`."""


# =============================================================================================
# Options
# =============================================================================================

@dataclass
class LoglinearOptions:
    """The exact log-linear world benchmark: theory checks for every objective."""

    seeds: list[int] = option([0, 1, 2, 3, 4, 5, 6, 7], "seeds: each draws its own world (features, reference, rewards) and data")
    n_grid: list[int] = option([250, 500, 1000, 2000, 4000, 8000], "training-set sizes n (pairs) for the error-vs-n slopes; the largest also trains the policies of the shift evaluation")
    states: int = option(20, "number of states S (uniform)")
    actions: int = option(8, "number of actions A per state")
    dim: int = option(6, "feature dimension d (psi(s,a) ~ N(0, I_d))")
    ref_scale: float = option(1.0, "norm of the reference parameter theta_ref")
    reward_scale: float = option(1.0, "norm of each reward vector phi_1, phi_2 (rewards have about unit spread)")
    reward_cosine: float = option(-0.5, "cosine between phi_1 and phi_2 (negative: the two rewards conflict)")
    beta: float = option(0.5, "beta, the KL-regularisation strength (here KL(pi* || pi_ref) is 0.3-1 nat at alpha0)")
    alpha0: float = option(0.2, "training mixture: labels by Bradley-Terry on alpha0*r_1 + (1-alpha0)*r_2")
    alphas: list[float] = option([round(0.1 * i, 1) for i in range(11)], "evaluation mixtures alpha in [0, 1]")
    methods: list[str] = option(["dpo", "kldpo", "wdpo"], "presets of the paired family to train (dpo, ipo, cdpo, rdpo, fdpo-*, kldpo, wdpo, dro, drdpo, cvar, hinge)")
    tau: float = option(1.0, "tau, KLDPO temperature, smaller = more robust (the library's default)")
    rho: float = option(0.01, "rho, WDPO penalty strength (the library's default)")
    penalty_form: Literal["squared", "sqrt_mean"] = option("squared", "WDPO penalty form: squared (rho*S) or sqrt_mean (rho*sqrt(S))")
    max_iter: int = option(500, "L-BFGS iterations per fit (full batch)")
    output_dir: str = option("outputs/bench-loglinear", "where results.json, loglinear.png and report.md go")


@dataclass
class LoglinearConfig:
    loglinear: LoglinearOptions


def _check_options(o: LoglinearOptions) -> None:
    """Raise ValueError naming the first bad option."""
    if not o.seeds:
        raise ValueError("seeds: give at least one seed")
    if len(set(o.n_grid)) < 2 or min(o.n_grid) < 2:
        raise ValueError(f"n_grid: give at least two distinct sizes >= 2 (a slope needs two), got {o.n_grid}")
    if o.states < 1:
        raise ValueError(f"states must be >= 1, got {o.states}")
    if o.actions < 2:
        raise ValueError(f"actions must be >= 2 (a pair needs two distinct actions), got {o.actions}")
    if o.dim < 2:
        raise ValueError(f"dim must be >= 2 (two reward vectors at a given angle), got {o.dim}")
    for name in ("ref_scale", "reward_scale"):
        if getattr(o, name) < 0:
            raise ValueError(f"{name} must be >= 0, got {getattr(o, name)}")
    if not -1 <= o.reward_cosine <= 1:
        raise ValueError(f"reward_cosine must lie in [-1, 1], got {o.reward_cosine}")
    if not o.beta > 0:
        raise ValueError(f"beta must be > 0, got {o.beta}")
    if not 0 <= o.alpha0 <= 1:
        raise ValueError(f"alpha0 must lie in [0, 1], got {o.alpha0}")
    if not o.alphas or not all(0 <= a <= 1 for a in o.alphas):
        raise ValueError(f"alphas: give mixtures in [0, 1], got {o.alphas}")
    if not o.methods:
        raise ValueError("methods: give at least one preset")
    if o.max_iter < 1:
        raise ValueError(f"max_iter must be >= 1, got {o.max_iter}")


# =============================================================================================
# The world and its closed forms
# =============================================================================================

@dataclass(frozen=True)
class LoglinearWorld:
    """features ψ [S, A, d], theta_ref θ_ref [d], phi (φ_1, φ_2) [2, d]; all float64."""

    features: torch.Tensor
    theta_ref: torch.Tensor
    phi: torch.Tensor

    @property
    def states(self) -> int:
        return self.features.shape[0]

    @property
    def actions(self) -> int:
        return self.features.shape[1]


def make_world(seed: int, states: int = 20, actions: int = 8, dim: int = 6, ref_scale: float = 1.0,
               reward_scale: float = 1.0, reward_cosine: float = -0.5) -> LoglinearWorld:
    """A world drawn with `numpy.random.default_rng(seed)`: ψ ~ N(0, 1) entries;
    θ_ref = ref_scale·v (v uniform on the sphere); with e_1 ⟂ e_2 random orthonormal,
    φ_1 = reward_scale·e_1, φ_2 = reward_scale·(c·e_1 + √(1 − c²)·e_2), c = reward_cosine."""
    rng = np.random.default_rng(seed)
    features = rng.standard_normal((states, actions, dim))
    v = rng.standard_normal(dim)
    e, _ = np.linalg.qr(rng.standard_normal((dim, 2)))
    phi1 = reward_scale * e[:, 0]
    phi2 = reward_scale * (reward_cosine * e[:, 0] + math.sqrt(1 - reward_cosine ** 2) * e[:, 1])
    return LoglinearWorld(torch.tensor(features, dtype=DTYPE),
                          torch.tensor(ref_scale * v / np.linalg.norm(v), dtype=DTYPE),
                          torch.tensor(np.stack([phi1, phi2]), dtype=DTYPE))


def mixture_phi(world: LoglinearWorld, alpha: float) -> torch.Tensor:
    """φ(α) = α φ_1 + (1 − α) φ_2  [d]."""
    return alpha * world.phi[0] + (1 - alpha) * world.phi[1]


def rewards(world: LoglinearWorld, alpha: float) -> torch.Tensor:
    """r_α(s,a) = φ(α)ᵀψ(s,a)  [S, A]."""
    return world.features @ mixture_phi(world, alpha)


def log_policy(world: LoglinearWorld, theta: torch.Tensor) -> torch.Tensor:
    """log πθ(a|s) = θᵀψ(s,a) − logsumexp_b θᵀψ(s,b)  [S, A] (rows normalise exactly)."""
    return torch.log_softmax(world.features @ theta, dim=-1)


def optimum(world: LoglinearWorld, alpha: float, beta: float) -> torch.Tensor:
    """θ*(α) = θ_ref + φ(α)/β: the argmax of E_π r_α − β KL(π ‖ π_ref), π*(a|s) ∝ π_ref e^{r_α/β}."""
    return world.theta_ref + mixture_phi(world, alpha) / beta


def kl_dro_optimum(world: LoglinearWorld, alpha: float, beta: float, tau: float) -> torch.Tensor:
    """KLDPO's population optimum under Bradley–Terry labels at α (module doc):
    θ_ref + τ/(1+τ)·φ(α)/β, the DPO optimum at β(1 + 1/τ)."""
    return world.theta_ref + tau / (1 + tau) * mixture_phi(world, alpha) / beta


def expected_reward(world: LoglinearWorld, theta: torch.Tensor, alpha: float) -> float:
    """R(θ, α) = (1/S) Σ_s Σ_a πθ(a|s) r_α(s,a), an exact finite sum."""
    return float((log_policy(world, theta).exp() * rewards(world, alpha)).sum(-1).mean())


def kl_to_reference(world: LoglinearWorld, theta: torch.Tensor) -> float:
    """E_s KL(πθ(·|s) ‖ π_ref(·|s)) = (1/S) Σ_s Σ_a πθ (log πθ − log π_ref)."""
    logp, logr = log_policy(world, theta), log_policy(world, world.theta_ref)
    return float((logp.exp() * (logp - logr)).sum(-1).mean())


def regularised_value(world: LoglinearWorld, theta: torch.Tensor, alpha: float, beta: float) -> float:
    """J(θ) = R(θ, α) − β·E_s KL(πθ ‖ π_ref), the objective θ*(α) maximises."""
    return expected_reward(world, theta, alpha) - beta * kl_to_reference(world, theta)


def optimal_value(world: LoglinearWorld, alpha: float, beta: float) -> float:
    """V*(α) = max_π J = β·(1/S) Σ_s log Σ_a π_ref(a|s) exp(r_α(s,a)/β)."""
    logr = log_policy(world, world.theta_ref)
    return float(beta * torch.logsumexp(logr + rewards(world, alpha) / beta, dim=-1).mean())


# =============================================================================================
# Preference data: sampled and population
# =============================================================================================

@dataclass(frozen=True)
class Pairs:
    """Preference pairs: state, chosen and rejected action indices, each a LongTensor [n]."""

    state: torch.Tensor
    chosen: torch.Tensor
    rejected: torch.Tensor

    def __len__(self) -> int:
        return self.state.numel()


def _pair_table(world: LoglinearWorld) -> torch.Tensor:
    """P(a, a′ | s) = π_ref(a|s) π_ref(a′|s)·[a ≠ a′] / (1 − Σ_b π_ref(b|s)²)  [S, A, A]."""
    p = log_policy(world, world.theta_ref).exp()
    table = p[:, :, None] * p[:, None, :] * (1 - torch.eye(world.actions, dtype=DTYPE))
    return table / table.sum((1, 2), keepdim=True)


def pair_distribution(world: LoglinearWorld, alpha: float) -> tuple[Pairs, torch.Tensor]:
    """The population of labelled pairs: every (s, c, r) with c ≠ r and its mass
    q = (2/S)·P(c, r | s)·σ(r_α(s,c) − r_α(s,r)) (Σ q = 1)."""
    S, A = world.states, world.actions
    s, c, r = torch.meshgrid(torch.arange(S), torch.arange(A), torch.arange(A), indexing="ij")
    keep = c != r
    s, c, r = s[keep], c[keep], r[keep]
    rew = rewards(world, alpha)
    mass = 2.0 / S * _pair_table(world)[s, c, r] * torch.sigmoid(rew[s, c] - rew[s, r])
    return Pairs(s, c, r), mass


def sample_pairs(world: LoglinearWorld, n: int, alpha: float, seed) -> Pairs:
    """n pairs drawn with `numpy.random.default_rng(seed)`: s uniform, (a, a′) ~ P(·,·|s)
    (distinct, from π_ref), the first preferred with probability σ(r_α(s,a) − r_α(s,a′))."""
    rng = np.random.default_rng(seed)
    S, A = world.states, world.actions
    cdf = np.cumsum(_pair_table(world).reshape(S, A * A).numpy(), axis=1)
    s = rng.integers(S, size=n)
    flat = np.minimum((cdf[s] < rng.random(n)[:, None]).sum(1), A * A - 1)
    a, b = flat // A, flat % A
    rew = rewards(world, alpha).numpy()
    first = rng.random(n) < 1 / (1 + np.exp(-(rew[s, a] - rew[s, b])))
    chosen, rejected = np.where(first, a, b), np.where(first, b, a)
    return Pairs(*(torch.as_tensor(x, dtype=torch.long) for x in (s, chosen, rejected)))


# =============================================================================================
# Objectives on exact log-probs
# =============================================================================================

def action_logps(world: LoglinearWorld, theta: torch.Tensor, state: torch.Tensor,
                 action: torch.Tensor, z: torch.Tensor | None = None) -> torch.Tensor:
    """log πθ(a_i|s_i) [n]. With fed features z [n, d] (WDPO's inputs) the row's own feature
    ψ(s_i, a_i) is replaced by z_i in its logit and its normaliser:
    θᵀz_i − log(e^{θᵀz_i} + Σ_{b≠a_i} e^{θᵀψ(s_i,b)}); z = ψ(s, a) gives log πθ(a|s)."""
    if z is None:
        return log_policy(world, theta)[state, action]
    own = F.one_hot(action, world.actions).bool()[..., None]
    x = torch.where(own, z[:, None, :], world.features[state])
    logits = x @ theta
    return (z @ theta) - torch.logsumexp(logits, dim=-1)


def method_objective(method: str, beta: float, tau: float = 1.0, rho: float = 0.01,
                     penalty_form: str = "squared") -> Objective:
    """The `Objective` of preset `method` with these parameters; ValueError for a preset this world
    cannot train exactly (sorting couplings, density ratios, groups, or an aggregation with no
    population form)."""
    if method not in PRESETS:
        raise ValueError(f"unknown method {method!r}; valid presets: {', '.join(PRESETS)}")
    obj = Objective.from_preset(method, beta=beta, tau=tau, rho=rho, penalty_form=penalty_form,
                                penalty_mode="exact")
    why = None
    if obj.coupling in SORTING_COUPLINGS:
        why = f"its coupling {obj.coupling!r} compares sorted batch quantiles, not pairs"
    elif obj.uses_ratio or obj.uses_group:
        why = "it needs density ratios or groups, which this world does not have"
    elif obj.robust not in POPULATION_AGGREGATORS:
        why = f"its aggregation {obj.robust!r} has no exact population form here"
    if why:
        ok = [p for p in PRESETS if _trainable(p)]
        raise ValueError(f"method {method!r} cannot run in the log-linear world: {why}. "
                         f"Use one of {', '.join(ok)}")
    return obj


def _trainable(method: str) -> bool:
    obj = Objective.from_preset(method)
    return (obj.coupling not in SORTING_COUPLINGS and not obj.uses_ratio and not obj.uses_group
            and obj.robust in POPULATION_AGGREGATORS)


def population_value(obj: Objective, losses: torch.Tensor, mass: torch.Tensor) -> torch.Tensor:
    """The objective's aggregation of per-pair losses ℓ_k under a finite distribution q (Σ q = 1),
    differentiable in ℓ; with q uniform over a sample it is the `Objective`'s own value.

        mean   Σ_k q_k ℓ_k
        kl     τ·log Σ_k q_k exp(ℓ_k/τ)                     (KLDPO: τ·log E exp(ℓ/τ))
        drdpo  −β′·log Σ_k q_k exp(−ℓ_k/β′)
        cvar   (1/a)·Σ_k w_k ℓ_k, w_k = the part of q_k inside the top mass a of ℓ (the upper
               a-tail mean, Rockafellar–Uryasev)
    """
    if obj.robust == "mean":
        return (mass * losses).sum()
    if obj.robust == "kl":
        return obj.tau * torch.logsumexp(losses / obj.tau + mass.log(), dim=0)
    if obj.robust == "drdpo":
        return -obj.drdpo_beta * torch.logsumexp(-losses / obj.drdpo_beta + mass.log(), dim=0)
    if obj.robust == "cvar":
        order = torch.argsort(losses.detach(), descending=True)
        q = mass[order]
        before = torch.cumsum(q, 0) - q
        w = torch.minimum(q, (obj.cvar_level - before).clamp(min=0)) / obj.cvar_level
        return (w * losses[order]).sum()
    raise ValueError(f"robust={obj.robust!r} has no population form; one of {', '.join(POPULATION_AGGREGATORS)}")


def wasserstein_penalty(obj: Objective, losses: torch.Tensor, z: tuple[torch.Tensor, ...],
                        weights: torch.Tensor) -> torch.Tensor:
    """WDPO's penalty, exact (double backward): g_i = ∇_{z_i} ℓ_i over the fed chosen and rejected
    features (ℓ_i depends on pair i's rows only, so the gradient of Σ ℓ is per-pair),
    S = Σ_i p_i (‖g_i⁺‖² + ‖g_i⁻‖²) with p detached; returns ρ·S (squared) or ρ·√S (sqrt_mean)."""
    grads = torch.autograd.grad(losses.sum(), z, create_graph=True)
    sq = sum(g.pow(2).sum(-1) for g in grads)
    s = (weights.detach() * sq).sum()
    return obj.rho * (s if obj.penalty_form == "squared" else torch.sqrt(s))


def objective_loss(obj: Objective, world: LoglinearWorld, theta: torch.Tensor, pairs: Pairs,
                   mass: torch.Tensor | None = None) -> torch.Tensor:
    """The objective at θ on `pairs`: the `Objective`'s batch loss (mass None), or its population
    value under q = `mass`; plus WDPO's penalty when the objective has one (ρ > 0), weighted by the
    objective's p (batch: `out.weights`; population: ∂value/∂ℓ)."""
    penalised = obj.penalty == "wasserstein" and obj.rho > 0
    zc = zr = None
    if penalised:
        zc, zr = (world.features[pairs.state, a].clone().requires_grad_(True)
                  for a in (pairs.chosen, pairs.rejected))
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


def fit(obj: Objective, world: LoglinearWorld, pairs: Pairs, mass: torch.Tensor | None = None,
        start: torch.Tensor | None = None, max_iter: int = 500) -> tuple[torch.Tensor, float]:
    """argmin_θ `objective_loss` by full-batch L-BFGS (strong Wolfe) from `start` (θ_ref);
    returns (θ̂, ‖∇‖ at θ̂) — the gradient norm certifies convergence."""
    theta = (world.theta_ref if start is None else start).clone().requires_grad_(True)
    opt = torch.optim.LBFGS([theta], lr=1.0, max_iter=max_iter, history_size=20,
                            tolerance_grad=1e-10, tolerance_change=1e-14,
                            line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = objective_loss(obj, world, theta, pairs, mass)
        loss.backward()
        return loss

    opt.step(closure)
    closure()
    return theta.detach(), float(theta.grad.norm())


# =============================================================================================
# The benchmark
# =============================================================================================

def loglog_slope(n: list[int], errors: list[list[float]]) -> dict:
    """Least-squares fit log err = a + b·log n over every (n, seed) point; errors[i] are the
    seeds' errors at n[i]. Returns slope b, its standard error (NaN with only two points) and
    the intercept a."""
    x = np.repeat(np.log(np.asarray(n, dtype=float)), [len(e) for e in errors])
    y = np.log(np.concatenate([np.asarray(e, dtype=float) for e in errors]))
    b, a = np.polyfit(x, y, 1)
    resid = y - (a + b * x)
    dof = len(x) - 2
    stderr = math.sqrt(resid @ resid / dof / ((x - x.mean()) ** 2).sum()) if dof > 0 else math.nan
    return {"slope": float(b), "stderr": stderr, "intercept": float(a)}


def _world_of(o: LoglinearOptions, seed: int) -> LoglinearWorld:
    return make_world(seed, o.states, o.actions, o.dim, o.ref_scale, o.reward_scale, o.reward_cosine)


def _run_seed(o: LoglinearOptions, seed: int, objectives: dict, advance) -> dict:
    """One world: θ*, every method's θ_∞ and θ̂_n on the n grid; errors and reward curves."""
    world = _world_of(o, seed)
    star = optimum(world, o.alpha0, o.beta)
    support, mass = pair_distribution(world, o.alpha0)
    curve = lambda th: [expected_reward(world, th, a) for a in o.alphas]  # noqa: E731
    out = {"reference": curve(world.theta_ref), "oracle": curve(star), "methods": {}}
    data = {n: sample_pairs(world, n, o.alpha0, [seed, n]) for n in o.n_grid}
    for name, obj in objectives.items():
        pop, pop_grad = fit(obj, world, support, mass, start=star, max_iter=o.max_iter)
        rec = {"bias": float((pop - star).norm()), "population_reward": curve(pop),
               "grad_norms": [pop_grad], "to_optimum": [], "to_own_optimum": []}
        if _is_kldpo(obj):
            rec["theory_bias"] = float((kl_dro_optimum(world, o.alpha0, o.beta, obj.tau) - star).norm())
        for n in o.n_grid:
            theta, g = fit(obj, world, data[n], max_iter=o.max_iter)
            rec["grad_norms"].append(g)
            rec["to_optimum"].append(float((theta - star).norm()))
            rec["to_own_optimum"].append(float((theta - pop).norm()))
            if n == max(o.n_grid):
                rec["reward"], rec["kl"] = curve(theta), kl_to_reference(world, theta)
            advance()
        out["methods"][name] = rec
    return out


def _is_kldpo(obj: Objective) -> bool:
    """DPO's logistic loss under KL-ball aggregation, without smoothing or penalty: the objectives
    `kl_dro_optimum` solves in closed form."""
    return (obj.divergence == "reverse_kl" and obj.coupling == "paired" and obj.link == "sigmoid"
            and obj.label_smoothing == 0 and obj.robust == "kl" and obj.penalty == "none")


def _summary(values) -> dict:
    v = np.asarray(values, dtype=float)
    return {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if v.size > 1 else 0.0}


def _aggregate(o: LoglinearOptions, per_seed: list[dict], objectives: dict) -> dict:
    """Across seeds: slopes, biases, reward curves, worst cases and the paired comparison to DPO."""
    i0 = int(np.argmin([abs(a - o.alpha0) for a in o.alphas]))
    methods = {}
    for name, obj in objectives.items():
        recs = [r["methods"][name] for r in per_seed]
        errors = {k: [[rec[k][j] for rec in recs] for j in range(len(o.n_grid))]
                  for k in ("to_optimum", "to_own_optimum")}
        rewards_ = np.array([rec["reward"] for rec in recs])
        population = np.array([rec["population_reward"] for rec in recs])
        methods[name] = {
            "objective": obj.describe(),
            "errors": errors,
            "slopes": {k: loglog_slope(o.n_grid, v) for k, v in errors.items()},
            "bias": _summary([rec["bias"] for rec in recs]),
            **({"theory_bias": _summary([rec["theory_bias"] for rec in recs])} if _is_kldpo(obj) else {}),
            "reward": rewards_.tolist(),
            "reward_at_alpha0": _summary(rewards_[:, i0]),
            "worst_case": _summary(rewards_.min(1)),
            "population_reward": population.tolist(),
            "population_worst_case": _summary(population.min(1)),
            "kl": _summary([rec["kl"] for rec in recs]),
            "max_grad_norm": max(max(rec["grad_norms"]) for rec in recs),
        }
    comparison = {}
    if "dpo" in methods:
        dpo, dpo_pop = np.array(methods["dpo"]["reward"]), np.array(methods["dpo"]["population_reward"])
        for name in methods:
            if name == "dpo":
                continue
            r, r_pop = np.array(methods[name]["reward"]), np.array(methods[name]["population_reward"])
            gain = r.min(1) - dpo.min(1)
            comparison[name] = {"worst_case_gain": _summary(gain), "wins": int((gain > 0).sum()),
                                "seeds": len(gain), "beats_dpo": bool(gain.mean() > 0),
                                "population_worst_case_gain": _summary(r_pop.min(1) - dpo_pop.min(1)),
                                "alpha0_gain": _summary(r[:, i0] - dpo[:, i0])}
    return {
        "n_grid": list(o.n_grid), "alphas": list(o.alphas), "alpha0_index": i0,
        "methods": methods, "comparison": comparison,
        "reference": {"reward": [r["reference"] for r in per_seed],
                      "worst_case": _summary([min(r["reference"]) for r in per_seed])},
        "oracle": {"reward": [r["oracle"] for r in per_seed],
                   "worst_case": _summary([min(r["oracle"]) for r in per_seed])},
    }


def _plot(results: dict, path: Path) -> None:
    """Two panels: geometric-mean error vs n (log-log; solid to own optimum θ_∞, dashed to θ*),
    and expected reward vs α (mean ± 1 sd over seeds; reference and θ*(α₀) for context)."""
    plt = pyplot()
    from matplotlib.ticker import NullFormatter

    n, alphas = np.array(results["n_grid"]), np.array(results["alphas"])
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.8))
    for k, (name, rec) in enumerate(results["methods"].items()):
        color = f"C{k}"
        for key, style, label in (("to_own_optimum", "-o", "θ∞"), ("to_optimum", "--s", "θ*")):
            gm = np.exp(np.log(np.array(rec["errors"][key])).mean(1))
            ax1.plot(n, gm, style, color=color, ms=4,
                     label=f"{name} → {label}: slope {rec['slopes'][key]['slope']:+.2f}")
        r = np.array(rec["reward"])
        ax2.plot(alphas, r.mean(0), "-", color=color, label=name)
        ax2.fill_between(alphas, r.mean(0) - r.std(0), r.mean(0) + r.std(0), color=color, alpha=0.15)
    for key, style, label in (("reference", ":", "π_ref"), ("oracle", "-.", "θ*(α₀)")):
        ax2.plot(alphas, np.array(results[key]["reward"]).mean(0), style, color="gray", label=label)
    alpha0 = results["alphas"][results["alpha0_index"]]
    ax2.axvline(alpha0, color="k", lw=0.8, alpha=0.5)
    ax1.set(xscale="log", yscale="log", xlabel="pairs n", ylabel="‖θ̂_n − θ‖ (geometric mean over seeds)",
            title="parameter error vs sample size")
    ax1.set_xticks(n, [str(v) for v in n])
    ax1.xaxis.set_minor_formatter(NullFormatter())
    ax2.set(xlabel="evaluation mixture α  (r = α r₁ + (1−α) r₂)", ylabel="expected reward",
            title=f"trained at α₀ = {alpha0:g}, n = {n.max()}")
    ax1.legend(fontsize=7)
    ax2.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _fmt(s: dict, digits: int = 3) -> str:
    return f"{s['mean']:.{digits}f} ± {s['std']:.{digits}f}"


def _rows(results: dict) -> list[list[str]]:
    """One row per method: slopes, bias, error at the largest n, rewards, worst case vs DPO."""
    rows = []
    for name, rec in results["methods"].items():
        cmp = results["comparison"].get(name)
        rows.append([
            name,
            f"{rec['slopes']['to_own_optimum']['slope']:+.3f}",
            f"{rec['slopes']['to_optimum']['slope']:+.3f}",
            _fmt(rec["bias"]),
            f"{np.exp(np.log(rec['errors']['to_own_optimum'][-1]).mean()):.3f}",
            _fmt(rec["reward_at_alpha0"]),
            _fmt(rec["worst_case"]),
            "—" if cmp is None else f"{_fmt(cmp['worst_case_gain'])} ({cmp['wins']}/{cmp['seeds']})",
        ])
    return rows


COLUMNS = ("method", "slope → θ∞", "slope → θ*", "‖θ∞ − θ*‖", "err → θ∞ @ n_max",
           "R(α₀)", "worst-case R", "Δ worst vs dpo (wins)")


def _report(results: dict, o: LoglinearOptions) -> str:
    """The Markdown summary."""
    lines = [
        "# The exact log-linear world",
        "",
        f"πθ(a|s) ∝ exp(θᵀψ(s,a)); S = {o.states} states, A = {o.actions} actions, d = {o.dim}; "
        f"‖θ_ref‖ = {o.ref_scale}, ‖φ_k‖ = {o.reward_scale}, cos(φ₁, φ₂) = {o.reward_cosine}; "
        f"β = {o.beta}, τ = {o.tau}, ρ = {o.rho} ({o.penalty_form}); labels by Bradley–Terry at "
        f"α₀ = {o.alpha0}; seeds {o.seeds} (each its own world); n ∈ {o.n_grid}. "
        f"θ* = θ_ref + φ(α₀)/β (closed form); θ∞ = each method's exact population optimum. "
        "Rewards: policies trained on the largest n, evaluated exactly on α ∈ "
        f"{o.alphas}; worst case = min over that grid. ± = 1 sd over seeds.",
        "",
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "---|" * len(COLUMNS),
    ]
    lines += ["| " + " | ".join(row) + " |" for row in _rows(results)]
    lines += ["", f"Reference π_ref worst case: {_fmt(results['reference']['worst_case'])}; "
              f"θ*(α₀) worst case: {_fmt(results['oracle']['worst_case'])}.", ""]
    for name, cmp in results["comparison"].items():
        verdict = "beats" if cmp["beats_dpo"] else "does not beat"
        lines.append(f"- **{name}** {verdict} DPO in worst-case expected reward: mean gain "
                     f"{_fmt(cmp['worst_case_gain'], 4)} at n = {max(o.n_grid)} ({cmp['wins']} of "
                     f"{cmp['seeds']} seeds); at the population optima the gain is "
                     f"{_fmt(cmp['population_worst_case_gain'], 4)}. Its reward at α₀ differs from "
                     f"DPO's by {_fmt(cmp['alpha0_gain'], 4)}.")
    for name, rec in results["methods"].items():
        if "theory_bias" in rec:
            lines.append(f"- **{name}**: closed-form population optimum θ_ref + τ/(1+τ)·φ(α₀)/β "
                         f"(DPO at β(1 + 1/τ)), bias {_fmt(rec['theory_bias'], 4)}; found "
                         f"numerically {_fmt(rec['bias'], 4)}.")
    lines += ["", "Slopes: least squares of log error on log n over all (seed, n); theory −1/2 "
              "towards the own optimum θ∞. Towards θ* a method with bias ‖θ∞ − θ*‖ > 0 levels off.",
              f"Largest final L-BFGS gradient norm: "
              f"{max(r['max_grad_norm'] for r in results['methods'].values()):.1e}.",
              "", "![log-linear world](loglinear.png)", ""]
    return "\n".join(lines)


def run_loglinear(cfg: LoglinearConfig, console=None) -> dict:
    """Run the benchmark of `cfg.loglinear`; write results.json, loglinear.png and report.md to
    its output_dir, print a table on `console` (a rich Console), return the results dict."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.table import Table

    _check_options(cfg.loglinear)
    require_matplotlib()  # before the fits, not after them
    o = replace(cfg.loglinear, n_grid=sorted(set(cfg.loglinear.n_grid)))
    objectives = {m: method_objective(m, o.beta, o.tau, o.rho, o.penalty_form) for m in o.methods}
    console = console or Console()
    t0 = time.perf_counter()
    total = len(o.seeds) * len(objectives) * len(o.n_grid)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tensors of a few thousand numbers: intra-op threads only add overhead
    try:
        with Progress(TextColumn("log-linear world"), BarColumn(), MofNCompleteColumn(),
                      TimeElapsedColumn(), console=console, transient=True) as progress:
            task = progress.add_task("fits", total=total)
            per_seed = [_run_seed(o, seed, objectives, lambda: progress.advance(task)) for seed in o.seeds]
    finally:
        torch.set_num_threads(threads)
    results = {"options": asdict(o), **_aggregate(o, per_seed, objectives),
               "wall_time_s": time.perf_counter() - t0}
    out = Path(o.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "results.json", json.dumps(results, indent=2))
    _plot(results, out / "loglinear.png")
    atomic_write_text(out / "report.md", _report(results, o))
    table = Table(title=f"log-linear world: trained at α₀ = {o.alpha0}, {len(o.seeds)} seeds, "
                        f"{results['wall_time_s']:.1f}s")
    for col in COLUMNS:
        table.add_column(col, justify="left" if col == "method" else "right")
    for row in _rows(results):
        table.add_row(*row)
    console.print(table)
    console.print(f"results.json, loglinear.png and report.md in {out}")
    return results
