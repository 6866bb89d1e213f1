"""Robust aggregations of per-example losses ℓ_1..ℓ_n (the fourth choice).

Every aggregator is a *weight function of the detached losses*: the batch objective L has
gradient ∇L = Σ_i p_i ∇ℓ_i with p = weights(stop_grad(ℓ)). Each aggregator is a small value
with

- `weights(losses, *, ratio=None, group=None, state=None, mass=None) -> p` (shape [n]), and
- `value(losses, *, ratio=None, group=None, state=None, mass=None) -> L` (0-d),

both on detached losses, so a trainer can compute them over more examples than one
micro-batch (the exact global batch) and then backpropagate Σ p_i ℓ_i per micro-batch.

`mass` is an optional probability mass over the examples (m ≥ 0, Σ m = 1; default uniform
1/n): the aggregator then acts on the finite distribution Σ_i m_i δ_{ℓ_i}, exactly as on a
batch where example i is repeated in proportion m_i (the log-linear world's population, AOT's
transport coupling).

State is explicit (optax-style): `init_state(num_groups)` gives the initial state (a dict of
tensors, `{}` for stateless aggregators), `update(losses, group=..., state=...)` returns the
next one, and `weights`/`value` read the state they are given. Nothing is mutated.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .lazy import lazy_module
from .params import Component, Param, non_negative, positive

if TYPE_CHECKING:  # the real module for the checker; lazy at run time
    import torch
else:
    torch = lazy_module("torch", globals())  # imported on first use: `dralign train --help` needs no torch

XU = (
    "Xu et al. 2025, Robust LLM Alignment via Distributionally Robust Direct Preference Optimization (arXiv 2502.01930)"
)
ZHU = "Zhu et al. 2025, Leveraging Robust Optimization for LLM Alignment under Distribution Shifts (arXiv 2504.05831)"

TAU = positive("tau", 1.0, "tau, KLDPO temperature; smaller = more robust")
DRDPO_BETA = positive("drdpo_beta", 1.0, "beta' of Dr. DPO")
LAM = positive("lam", 1.0, "lambda of DoRA")
ETA = non_negative("eta", 0.01, "step size of group DRO's q")
CVAR_LEVEL = Param("cvar_level", 0.2, "fraction of worst losses for CVaR", lambda v: 0 < v <= 1, "in (0, 1]")
CHI2_RADIUS = non_negative("chi2_radius", 1.0, "radius of the chi-square ball")


def _log_mean_exp(x: torch.Tensor, mass: torch.Tensor | None) -> torch.Tensor:
    """log Σ_i m_i exp(x_i) (m uniform when None)."""
    if mass is None:
        return torch.logsumexp(x, dim=0) - math.log(x.numel())
    return torch.logsumexp(x + torch.log(mass), dim=0)


def _softmax(x: torch.Tensor, mass: torch.Tensor | None) -> torch.Tensor:
    """m_i exp(x_i) / Σ_j m_j exp(x_j) (m uniform when None)."""
    return torch.softmax(x if mass is None else x + torch.log(mass), dim=0)


def _uniform(x: torch.Tensor, mass: torch.Tensor | None) -> torch.Tensor:
    return torch.full_like(x, 1.0 / x.numel()) if mass is None else mass.to(x.dtype)


def _mean(x: torch.Tensor, mass: torch.Tensor | None) -> torch.Tensor:
    return x.mean() if mass is None else (mass.to(x.dtype) * x).sum()


def check_mass(mass: torch.Tensor | None, n: int) -> torch.Tensor | None:
    """`mass` detached, after checking it is a probability vector over n examples."""
    if mass is None:
        return None
    mass = mass.detach()
    if mass.shape != (n,) or not torch.isfinite(mass).all() or (mass < 0).any() or abs(float(mass.sum()) - 1.0) > 1e-4:
        raise ValueError(f"mass must be a probability vector of shape [{n}] (>= 0, summing to 1)")
    return mass


def _require_ratio(ratio, name):
    if ratio is None:
        raise ValueError(
            f"robust={name!r} needs density ratios h: pass `ratio` (a `ratio` or "
            "`target_prob` column, or `dralign ratio fit`)"
        )
    if not torch.isfinite(ratio).all() or (ratio < 0).any():
        raise ValueError(f"robust={name!r}: density ratios must be finite and ≥ 0")
    return ratio.detach().to(torch.result_type(ratio, torch.tensor(0.0)))


class Aggregator(Component):
    """Base class: the interface of the module docstring. Stateless by default."""

    uses_ratio = False
    uses_group = False
    stateful = False
    distribution = True  # p is a probability vector (≥ 0, Σ p = 1)
    couples_examples = True  # one example's weight depends on the others' losses

    def init_state(self, num_groups: int | None = None) -> dict:
        return {}

    def update(self, losses, *, group=None, state=None, mass=None) -> dict:
        """The state after one optimizer step on these losses (stateless: unchanged)."""
        return {} if state is None else state

    def weights(self, losses, *, ratio=None, group=None, state=None, mass=None):  # pragma: no cover
        raise NotImplementedError

    def value(self, losses, *, ratio=None, group=None, state=None, mass=None):  # pragma: no cover
        raise NotImplementedError


@dataclass(frozen=True)
class Mean(Aggregator):
    """Empirical risk, p_i = m_i (1/n)."""

    name = "mean"
    couples_examples = False
    formula = "L = mean(l)"
    paper = "empirical risk minimisation"

    def weights(self, losses, *, ratio=None, group=None, state=None, mass=None):
        return _uniform(losses.detach(), mass)

    def value(self, losses, *, ratio=None, group=None, state=None, mass=None):
        return _mean(losses.detach(), mass)


@dataclass(frozen=True)
class KL(Aggregator):
    """KL-ball DRO (KLDPO): the dual of sup over Q with KL(Q‖P̂) ≤ radius at the optimal
    temperature τ. τ → ∞ is ERM; smaller τ is more robust. Also DoRA's vanilla-DRO baseline."""

    tau: float = TAU.field()
    name = "kl"
    formula = "L = tau * log mean exp(l/tau);  p = softmax(l/tau)"
    paper = XU

    def weights(self, losses, *, ratio=None, group=None, state=None, mass=None):
        x = losses.detach()
        return _softmax((x - x.mean()) / self.tau, mass)

    def value(self, losses, *, ratio=None, group=None, state=None, mass=None):
        return self.tau * _log_mean_exp(losses.detach() / self.tau, mass)


@dataclass(frozen=True)
class KLOfficial(Aggregator):
    """KLDPO as in the authors' released code: unnormalised importance weights, clipped at
    `clip`, held fixed, so p_i = w_i/n need not sum to 1."""

    tau: float = TAU.field()
    clip: float = 10.0
    name = "kl_official"
    formula = "w = min(exp((l - mean l)/tau), 10);  L = mean(w*l)"
    paper = XU + ", official code"
    distribution = False

    def _w(self, losses, mass):
        x = losses.detach()
        return torch.exp((x - _mean(x, mass)) / self.tau).clamp(max=self.clip)

    def weights(self, losses, *, ratio=None, group=None, state=None, mass=None):
        return self._w(losses, mass) * _uniform(losses.detach(), mass)

    def value(self, losses, *, ratio=None, group=None, state=None, mass=None):
        return _mean(self._w(losses, mass) * losses.detach(), mass)


@dataclass(frozen=True)
class DrDPO(Aggregator):
    """Dr. DPO: down-weights the highest losses (likely flipped labels); β′ → ∞ is DPO."""

    drdpo_beta: float = DRDPO_BETA.field()
    name = "drdpo"
    formula = "L = -beta' * log mean exp(-l/beta');  p = softmax(-l/beta')"
    paper = (
        "Wu et al. 2025, Towards Robust Alignment of Language Models: Distributionally "
        "Robustifying Direct Preference Optimization (arXiv 2407.07880)"
    )

    def weights(self, losses, *, ratio=None, group=None, state=None, mass=None):
        x = losses.detach()
        return _softmax(-(x - x.mean()) / self.drdpo_beta, mass)

    def value(self, losses, *, ratio=None, group=None, state=None, mass=None):
        return -self.drdpo_beta * _log_mean_exp(-losses.detach() / self.drdpo_beta, mass)


@dataclass(frozen=True)
class DoRA(Aggregator):
    """DoRA, density-ratio calibrated DRO. h_i = dQ_target/dP_train estimated per example
    (`dralign ratio fit`). With every h_i = 1 it is vanilla KL-DRO (`kl` with τ = λ)."""

    lam: float = LAM.field()
    name = "dora"
    formula = "L = lam * log mean exp(h*l/lam);  p = h * softmax(h*l/lam)"
    paper = ZHU
    uses_ratio = True
    distribution = False

    def weights(self, losses, *, ratio=None, group=None, state=None, mass=None):
        h = _require_ratio(ratio, self.name)
        x = h * losses.detach()
        return h * _softmax((x - x.mean()) / self.lam, mass)

    def value(self, losses, *, ratio=None, group=None, state=None, mass=None):
        h = _require_ratio(ratio, self.name)
        return self.lam * _log_mean_exp(h * losses.detach() / self.lam, mass)


@dataclass(frozen=True)
class Reweight(Aggregator):
    """Importance reweighting by density ratios, DoRA's second baseline."""

    name = "reweight"
    couples_examples = False
    formula = "L = mean(h*l);  p = h/n"
    paper = ZHU
    uses_ratio = True
    distribution = False

    def weights(self, losses, *, ratio=None, group=None, state=None, mass=None):
        return _require_ratio(ratio, self.name) * _uniform(losses.detach(), mass)

    def value(self, losses, *, ratio=None, group=None, state=None, mass=None):
        return _mean(_require_ratio(ratio, self.name) * losses.detach(), mass)


@dataclass(frozen=True)
class GroupDRO(Aggregator):
    """Group DRO over a simplex weight q, the state: L_g is the (mass-weighted) mean loss of
    the batch's examples of group g; once per optimizer step, q_g ← q_g·exp(η·L_g) for the
    groups present, then q ← q/Σq; L = Σ_{g present} q_g L_g / Σ_{g present} q_g and
    p_i = q_g(i)·m_i / (M_g(i)·Σ_{present} q), M_g the mass of group g (n_g uniformly).
    State: {"q": float64 [G]}, uniform from `init_state(num_groups)` (Sagawa et al. 2020)."""

    eta: float = ETA.field()
    name = "group"
    formula = "q_g <- q_g*exp(eta*L_g), renormalised;  L = sum_g q_g L_g"
    paper = "Ramesh et al. 2024, Group Robust Preference Optimization in Reward-free RLHF (arXiv 2405.20304)"
    uses_group = True
    stateful = True

    def init_state(self, num_groups: int | None = None) -> dict:
        if not num_groups or num_groups < 1:
            raise ValueError("robust='group' needs num_groups >= 1 for its initial state")
        return {"q": torch.full((num_groups,), 1.0 / num_groups, dtype=torch.float64)}

    def _q(self, group, state) -> torch.Tensor:
        if group is None:
            raise ValueError("robust='group' needs a group id per example: pass `group` (a `group` column)")
        if (group < 0).any():
            raise ValueError("robust='group': every example needs a group id ≥ 0 (some rows have no group)")
        q = (state or {}).get("q")
        if q is None:  # no state given: uniform over the groups seen
            q = self.init_state(int(group.max()) + 1)["q"]
        if int(group.max()) >= q.numel():
            raise ValueError(
                f"robust='group': group id {int(group.max())} ≥ num_groups={q.numel()}; pass num_groups to init_state"
            )
        return q.to(group.device)

    @staticmethod
    def _group_mass(losses, group, g, mass):
        """(m per example (counts-scaled: 1 each without a mass), M_g [G])."""
        m = torch.ones_like(losses, dtype=torch.float64) if mass is None else mass.double()
        total = torch.zeros(g, dtype=torch.float64, device=losses.device).index_add_(0, group, m)
        return m, total

    def group_losses(self, losses, group, state=None, mass=None):
        """(L_g for every group [G], present mask [G])."""
        q = self._q(group, state)
        x = losses.detach().double()
        m, total = self._group_mass(x, group, q.numel(), mass)
        sums = torch.zeros_like(total).index_add_(0, group, m * x)
        present = total > 0
        return sums / torch.where(present, total, torch.ones_like(total)), present

    def update(self, losses, *, group=None, state=None, mass=None) -> dict:
        q = self._q(group, state)
        means, present = self.group_losses(losses, group, {"q": q}, mass)
        # q·exp(η L_g) renormalised, in log space: exp(η L_g) alone overflows for η L_g > 709
        step = torch.where(present, self.eta * means, torch.zeros_like(means))
        return {"q": torch.softmax(torch.log(q) + step, dim=0).cpu()}

    def weights(self, losses, *, ratio=None, group=None, state=None, mass=None):
        q = self._q(group, state).to(losses.device)
        m, total = self._group_mass(losses.detach(), group, q.numel(), mass)
        present_mass = q[total > 0].sum()
        return (q[group] * m / (total[group] * present_mass)).to(losses.dtype)

    def value(self, losses, *, ratio=None, group=None, state=None, mass=None):
        return (self.weights(losses, group=group, state=state, mass=mass) * losses.detach()).sum()


def _share_ties(p: torch.Tensor, x: torch.Tensor, mass: torch.Tensor | None) -> torch.Tensor:
    """p with each set of tied losses sharing its total weight in proportion to mass (equally
    without one): the symmetric subgradient, so weights do not depend on the batch order
    (e.g. all losses equal at step 0, policy = reference)."""
    _, tie = torch.unique(x, return_inverse=True)
    m = torch.ones_like(p) if mass is None else mass.to(p.dtype)
    total = torch.zeros(int(tie.max()) + 1, dtype=p.dtype, device=p.device).index_add_(0, tie, p)
    tie_mass = torch.zeros_like(total).index_add_(0, tie, m)
    return total[tie] * m / torch.where(tie_mass > 0, tie_mass, torch.ones_like(tie_mass))[tie]


@dataclass(frozen=True)
class CVaR(Aggregator):
    """Conditional value at risk at level a (as DRO: Duchi & Namkoong 2021). Uniform: the mean
    of the worst ⌈a·n⌉ losses, p_i = 1/k on those k. With a mass: the exact upper-a-tail mean,
    the boundary example taking the part of its mass inside the tail. Tied losses share their
    weight (in proportion to mass), so p does not depend on the batch order."""

    cvar_level: float = CVAR_LEVEL.field()
    name = "cvar"
    formula = "L = mean of the worst ceil(a*n) losses"
    paper = "Rockafellar & Uryasev 2000; Duchi & Namkoong 2021 (CVaR DRO)"

    def weights(self, losses, *, ratio=None, group=None, state=None, mass=None):
        x = losses.detach()
        if mass is None:
            k = max(1, math.ceil(self.cvar_level * x.numel() - 1e-9))
            p = torch.zeros_like(x)
            p[torch.topk(x, k).indices] = 1.0 / k
            return _share_ties(p, x, None)
        order = torch.argsort(x, descending=True)
        q = mass.to(x.dtype)[order]
        before = torch.cumsum(q, 0) - q
        w = torch.minimum(q, (self.cvar_level - before).clamp(min=0)) / self.cvar_level
        return _share_ties(torch.zeros_like(x).index_copy_(0, order, w), x, mass)

    def value(self, losses, *, ratio=None, group=None, state=None, mass=None):
        return (self.weights(losses, mass=mass) * losses.detach()).sum()


@dataclass(frozen=True)
class Chi2(Aggregator):
    """χ²-ball DRO (Duchi & Namkoong 2021; Levy et al. 2020): the maximiser is
    p_i ∝ m_i (ℓ_i − η)₊ with η set so the constraint χ²(p‖m) = Σ m (p/m − 1)²/2 ≤ r is tight
    (closed form while every weight stays positive, bisection beyond); r = `chi2_radius`.
    For small r, L ≈ mean ℓ + sqrt(2r·var ℓ)."""

    chi2_radius: float = CHI2_RADIUS.field()
    name = "chi2"
    formula = "L = max { sum p*l : (1/n) sum (n p - 1)^2 / 2 <= r }"
    paper = "Duchi & Namkoong 2021; Levy et al. 2020 (chi-square DRO)"

    def weights(self, losses, *, ratio=None, group=None, state=None, mass=None):
        x = losses.detach().double()
        n = x.numel()
        m = torch.full_like(x, 1.0 / n) if mass is None else mass.double()
        r = self.chi2_radius
        var = (m * (x - (m * x).sum()) ** 2).sum()
        if n == 1 or var <= 1e-30 or r == 0:
            return m.to(losses.dtype)
        top = (x == x.max()).double() * m
        if r >= (1.0 / top.sum() - 1) / 2:  # the ball reaches the vertex: all on the worst loss(es)
            return (top / top.sum()).to(losses.dtype)

        def probs(eta):
            w = m * (x - eta).clamp(min=0)
            return w / w.sum()

        def divergence(eta):
            ratio_ = torch.where(m > 0, probs(eta) / m.clamp(min=1e-300), torch.ones_like(m))
            return (m * (ratio_ - 1) ** 2).sum() / 2

        # tight with all weights positive: eta = mean - sqrt(var/2r), i.e. p = m(1 + (x - mean)
        # sqrt(2r/var)), written without eta, which overflows to -inf for a tiny r
        closed = m * (1 + (x - (m * x).sum()) * torch.sqrt(2 * r / var))
        if (closed[m > 0] > 0).all():
            return (closed / closed.sum()).to(losses.dtype)
        lo, hi = x.min(), x.max()  # D(eta) increases on [min, max): bisect
        for _ in range(100):
            eta = (lo + hi) / 2
            lo, hi = (eta, hi) if divergence(eta) < r else (lo, eta)
        return probs(lo).to(losses.dtype)

    def value(self, losses, *, ratio=None, group=None, state=None, mass=None):
        return (self.weights(losses, mass=mass) * losses.detach()).sum()


AGGREGATORS = {c.name: c for c in (Mean, KL, KLOfficial, DrDPO, DoRA, Reweight, GroupDRO, CVaR, Chi2)}
