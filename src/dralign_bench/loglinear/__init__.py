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

from .fit import (
    POPULATION_AGGREGATORS,
    action_logps,
    fit,
    method_objective,
    objective_loss,
    population_value,
    wasserstein_penalty,
)
from .run import LoglinearConfig, LoglinearOptions, loglog_slope, run_loglinear
from .world import (
    LoglinearWorld,
    Pairs,
    expected_reward,
    kl_dro_optimum,
    kl_to_reference,
    log_policy,
    make_world,
    optimal_value,
    optimum,
    pair_distribution,
    regularised_value,
    rewards,
    sample_pairs,
)

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
