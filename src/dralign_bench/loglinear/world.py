"""The log-linear world and its closed forms; preference data, sampled and population (the
theory is in :mod:`dralign_bench.loglinear`)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

DTYPE = torch.float64

# =============================================================================================
# The world and its closed forms
# =============================================================================================


@dataclass(frozen=True)
class LoglinearWorld:
    """features ψ [S, A, d], theta_ref θ_ref [d], phi (φ_1, φ_2) [2, d]; all float64.
    `residual` [2, S, A] (or None): the part of each reward outside the feature span — the
    misspecified variant, where no θ represents r_α and the closed forms do not hold."""

    features: torch.Tensor
    theta_ref: torch.Tensor
    phi: torch.Tensor
    residual: torch.Tensor | None = None

    @property
    def realisable(self) -> bool:
        return self.residual is None

    @property
    def states(self) -> int:
        return self.features.shape[0]

    @property
    def actions(self) -> int:
        return self.features.shape[1]


def make_world(
    seed: int,
    states: int = 20,
    actions: int = 8,
    dim: int = 6,
    ref_scale: float = 1.0,
    reward_scale: float = 1.0,
    reward_cosine: float = -0.5,
    misspecification: float = 0.0,
) -> LoglinearWorld:
    """A world drawn with `numpy.random.default_rng(seed)`: ψ ~ N(0, 1) entries;
    θ_ref = ref_scale·v (v uniform on the sphere); with e_1 ⟂ e_2 random orthonormal,
    φ_1 = reward_scale·e_1, φ_2 = reward_scale·(c·e_1 + √(1 − c²)·e_2), c = reward_cosine.

    misspecification ζ > 0 adds ζ·η_k(s,a) to r_k, η_k with i.i.d. N(0, 1) entries drawn after
    everything else (so ζ = 0 gives exactly the realisable world of the same seed): r_α is then
    not θᵀψ for any θ and the policy class cannot represent the KL-regularised optimum."""
    rng = np.random.default_rng(seed)
    features = rng.standard_normal((states, actions, dim))
    v = rng.standard_normal(dim)
    e, _ = np.linalg.qr(rng.standard_normal((dim, 2)))
    phi1 = reward_scale * e[:, 0]
    phi2 = reward_scale * (reward_cosine * e[:, 0] + math.sqrt(1 - reward_cosine**2) * e[:, 1])
    residual = None
    if misspecification > 0:
        residual = torch.tensor(misspecification * rng.standard_normal((2, states, actions)), dtype=DTYPE)
    return LoglinearWorld(
        torch.tensor(features, dtype=DTYPE),
        torch.tensor(ref_scale * v / np.linalg.norm(v), dtype=DTYPE),
        torch.tensor(np.stack([phi1, phi2]), dtype=DTYPE),
        residual,
    )


def mixture_phi(world: LoglinearWorld, alpha: float) -> torch.Tensor:
    """φ(α) = α φ_1 + (1 − α) φ_2  [d]."""
    return alpha * world.phi[0] + (1 - alpha) * world.phi[1]


def rewards(world: LoglinearWorld, alpha: float) -> torch.Tensor:
    """r_α(s,a) = φ(α)ᵀψ(s,a) [+ α η_1(s,a) + (1 − α) η_2(s,a) when misspecified]  [S, A]."""
    r = world.features @ mixture_phi(world, alpha)
    if world.residual is not None:
        r = r + alpha * world.residual[0] + (1 - alpha) * world.residual[1]
    return r


def log_policy(world: LoglinearWorld, theta: torch.Tensor) -> torch.Tensor:
    """log πθ(a|s) = θᵀψ(s,a) − logsumexp_b θᵀψ(s,b)  [S, A] (rows normalise exactly)."""
    return torch.log_softmax(world.features @ theta, dim=-1)


def optimum(world: LoglinearWorld, alpha: float, beta: float) -> torch.Tensor:
    """θ*(α) = θ_ref + φ(α)/β: the argmax of E_π r_α − β KL(π ‖ π_ref), π*(a|s) ∝ π_ref e^{r_α/β}."""
    return world.theta_ref + mixture_phi(world, alpha) / beta


def kl_dro_optimum(world: LoglinearWorld, alpha: float, beta: float, tau: float) -> torch.Tensor:
    """KLDPO's population optimum under Bradley–Terry labels at α, realisable reward:

        θ_KL = θ_ref + τ/(1+τ)·φ(α)/β = θ*_DPO(β′),   β′ = β(1+τ)/τ.

    Derivation. DPO's population optimum at any β′ is θ_ref + φ/β′ (its margin βm equals the
    reward gap Δ, the BT log-odds). KLDPO minimises τ·log E_q exp(ℓ/τ); at a stationary point
    Σ q·e^{ℓ/τ}·∇ℓ = 0, i.e. the logistic loss under the tilted mass q̃ ∝ q·σ(βm)^{−1/τ}.
    Try θ = θ_ref + κφ/β, so βm = κΔ on every pair. A pair (c, r) and its mirror (r, c) have
    masses ∝ σ(Δ) and σ(−Δ); the logistic gradient of the pair is stationary when
    q̃(c,r)·σ(−κΔ) = q̃(r,c)·σ(κΔ), i.e. σ(Δ)σ(−κΔ)σ(κΔ)^{−1/τ} = σ(−Δ)σ(κΔ)σ(−κΔ)^{−1/τ},
    i.e. e^Δ = e^{κΔ(1+1/τ)} for every Δ: κ = τ/(1+τ). The objective is convex in θ (log-sum-exp
    of convex losses), so the stationary point is the minimiser. Hence KLDPO ≡ DPO at
    β(1+τ)/τ: a pure change of regularisation strength. Not valid when the world is
    misspecified (`residual` set)."""
    if world.residual is not None:
        raise ValueError("the KLDPO closed form needs a realisable reward (misspecification = 0)")
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


LABELS = ("bt", "labeller_mixture")
"""How a pair at α is labelled: ``bt`` — Bradley–Terry on the mixed reward r_α; ``labeller_mixture``
— by labeller 1 (BT on r_1) with probability α, else by labeller 2 (BT on r_2). The second is a
mixture of Bradley–Terry models, which is not Bradley–Terry: no reward, linear or not, gives its
preference probabilities, so DPO's implicit reward cannot equal it."""


def preference_probability(world: LoglinearWorld, alpha: float, labels: str = "bt") -> torch.Tensor:
    """P(a ≻ a′ | s) [S, A, A]: σ(r_α(s,a) − r_α(s,a′)) (``bt``), or
    α·σ(r_1(s,a) − r_1(s,a′)) + (1 − α)·σ(r_2(s,a) − r_2(s,a′)) (``labeller_mixture``)."""
    if labels not in LABELS:
        raise ValueError(f"labels must be one of {', '.join(LABELS)}, got {labels!r}")
    gap = lambda r: torch.sigmoid(r[:, :, None] - r[:, None, :])  # noqa: E731
    if labels == "bt":
        return gap(rewards(world, alpha))
    return alpha * gap(rewards(world, 1.0)) + (1 - alpha) * gap(rewards(world, 0.0))


def pair_distribution(world: LoglinearWorld, alpha: float, labels: str = "bt") -> tuple[Pairs, torch.Tensor]:
    """The population of labelled pairs: every (s, c, r) with c ≠ r and its mass
    q = (2/S)·P(c, r | s)·P(c ≻ r | s) (Σ q = 1; the preference as `labels` says, see
    :data:`LABELS`)."""
    S, A = world.states, world.actions
    s, c, r = torch.meshgrid(torch.arange(S), torch.arange(A), torch.arange(A), indexing="ij")
    keep = c != r
    s, c, r = s[keep], c[keep], r[keep]
    mass = 2.0 / S * _pair_table(world)[s, c, r] * preference_probability(world, alpha, labels)[s, c, r]
    return Pairs(s, c, r), mass


def sample_pairs(world: LoglinearWorld, n: int, alpha: float, seed, labels: str = "bt") -> Pairs:
    """n pairs drawn with `numpy.random.default_rng(seed)`: s uniform, (a, a′) ~ P(·,·|s)
    (distinct, from π_ref), the first preferred with probability P(a ≻ a′ | s) (`labels`)."""
    rng = np.random.default_rng(seed)
    S, A = world.states, world.actions
    cdf = np.cumsum(_pair_table(world).reshape(S, A * A).numpy(), axis=1)
    s = rng.integers(S, size=n)
    flat = np.minimum((cdf[s] < rng.random(n)[:, None]).sum(1), A * A - 1)
    a, b = flat // A, flat % A
    first = rng.random(n) < preference_probability(world, alpha, labels).numpy()[s, a, b]
    chosen, rejected = np.where(first, a, b), np.where(first, b, a)
    return Pairs(*(torch.as_tensor(x, dtype=torch.long) for x in (s, chosen, rejected)))
