"""Robust aggregations of per-example losses ℓ_1..ℓ_n (the fourth choice).

Every aggregator is a *weight function of the detached losses*: the batch objective L has
gradient ∇L = Σ_i p_i ∇ℓ_i with p = weights(stop_grad(ℓ)). Each class exposes

- `weights(losses, ratio=None, group=None) -> p` (shape [n]), and
- `value(losses, ratio=None, group=None) -> L` (a 0-d tensor, the objective's own value),

both on detached losses, so a trainer can compute them over more examples than one
micro-batch (the exact global batch) and then backpropagate Σ p_i ℓ_i per micro-batch.
Stateful aggregators (group DRO) also have `update`, `state_dict` and `load_state_dict`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch


def _log_mean_exp(x: torch.Tensor) -> torch.Tensor:
    return torch.logsumexp(x, dim=0) - math.log(x.numel())


def _require_ratio(ratio, name):
    if ratio is None:
        raise ValueError(f"robust={name!r} needs density ratios h: pass `ratio` (a `ratio` or "
                         "`target_prob` column, or `dralign ratio fit`)")
    if not torch.isfinite(ratio).all() or (ratio < 0).any():
        raise ValueError(f"robust={name!r}: density ratios must be finite and ≥ 0")
    return ratio.detach().to(torch.result_type(ratio, torch.tensor(0.0)))


class Aggregator:
    """Base class: the uniform interface described in the module docstring."""

    name = "base"
    uses_ratio = False
    uses_group = False
    stateful = False
    formula = ""

    def weights(self, losses, ratio=None, group=None):  # pragma: no cover - interface
        raise NotImplementedError

    def value(self, losses, ratio=None, group=None):  # pragma: no cover - interface
        raise NotImplementedError

    def update(self, losses, group=None) -> None:
        """Advance persistent state once per optimizer step (no-op unless stateful)."""

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


class Mean(Aggregator):
    """Empirical risk: L = (1/n) Σ ℓ_i, p_i = 1/n."""

    name = "mean"
    formula = "L = mean(l)"

    def weights(self, losses, ratio=None, group=None):
        return torch.full_like(losses.detach(), 1.0 / losses.numel())

    def value(self, losses, ratio=None, group=None):
        return losses.detach().mean()


@dataclass
class KL(Aggregator):
    """KL-ball DRO (KLDPO; Xu et al. 2025, *Robust LLM Alignment via Distributionally Robust
    Direct Preference Optimization*, arXiv 2502.01930):

        L = τ·log mean_i exp(ℓ_i/τ),   p = softmax((ℓ − mean ℓ)/τ)

    the dual of sup over Q with KL(Q‖P̂) ≤ radius at the optimal temperature τ. τ → ∞ is ERM;
    smaller τ is more robust. Also DoRA's vanilla-DRO baseline.
    """

    tau: float = 1.0
    name = "kl"
    formula = "L = tau * log mean exp(l/tau);  p = softmax(l/tau)"

    def weights(self, losses, ratio=None, group=None):
        x = losses.detach()
        return torch.softmax((x - x.mean()) / self.tau, dim=0)

    def value(self, losses, ratio=None, group=None):
        return self.tau * _log_mean_exp(losses.detach() / self.tau)


@dataclass
class KLOfficial(Aggregator):
    """KLDPO as in the authors' released code: unnormalised importance weights
    w_i = min(exp((ℓ_i − mean ℓ)/τ), clip), L = (1/n) Σ w_i ℓ_i with w held fixed,
    so p_i = w_i/n (they need not sum to 1). Xu et al. 2025 (arXiv 2502.01930), official code.
    """

    tau: float = 1.0
    clip: float = 10.0
    name = "kl_official"
    formula = "w = min(exp((l - mean l)/tau), 10);  L = mean(w*l)"

    def _w(self, losses):
        x = losses.detach()
        return torch.exp((x - x.mean()) / self.tau).clamp(max=self.clip)

    def weights(self, losses, ratio=None, group=None):
        return self._w(losses) / losses.numel()

    def value(self, losses, ratio=None, group=None):
        return (self._w(losses) * losses.detach()).mean()


@dataclass
class DrDPO(Aggregator):
    """Dr. DPO (Wu et al. 2025, *Towards Robust Alignment of Language Models: Distributionally
    Robustifying Direct Preference Optimization*, arXiv 2407.07880):

        L = −β′·log mean_i exp(−ℓ_i/β′),   p = softmax(−ℓ/β′)

    down-weights the highest losses (likely flipped labels); β′ → ∞ is DPO.
    """

    drdpo_beta: float = 1.0
    name = "drdpo"
    formula = "L = -beta' * log mean exp(-l/beta');  p = softmax(-l/beta')"

    def weights(self, losses, ratio=None, group=None):
        x = losses.detach()
        return torch.softmax(-(x - x.mean()) / self.drdpo_beta, dim=0)

    def value(self, losses, ratio=None, group=None):
        return -self.drdpo_beta * _log_mean_exp(-losses.detach() / self.drdpo_beta)


@dataclass
class DoRA(Aggregator):
    """DoRA, density-ratio calibrated DRO (Zhu et al. 2025, *Leveraging Robust Optimization for
    LLM Alignment under Distribution Shifts*, arXiv 2504.05831):

        L = λ·log mean_i exp(h_i ℓ_i/λ),   p_i = h_i · softmax(h ℓ/λ)_i

    h_i = dQ_target/dP_train estimated per example (`dralign ratio fit`). With every h_i = 1 it
    is vanilla KL-DRO (`kl` with τ = λ).
    """

    lam: float = 1.0
    name = "dora"
    uses_ratio = True
    formula = "L = lam * log mean exp(h*l/lam);  p = h * softmax(h*l/lam)"

    def weights(self, losses, ratio=None, group=None):
        h = _require_ratio(ratio, self.name)
        x = h * losses.detach()
        return h * torch.softmax((x - x.mean()) / self.lam, dim=0)

    def value(self, losses, ratio=None, group=None):
        h = _require_ratio(ratio, self.name)
        return self.lam * _log_mean_exp(h * losses.detach() / self.lam)


class Reweight(Aggregator):
    """Importance reweighting, DoRA's second baseline (Zhu et al. 2025):
    L = (1/n) Σ h_i ℓ_i, p_i = h_i/n."""

    name = "reweight"
    uses_ratio = True
    formula = "L = mean(h*l);  p = h/n"

    def weights(self, losses, ratio=None, group=None):
        return _require_ratio(ratio, self.name) / losses.numel()

    def value(self, losses, ratio=None, group=None):
        return (_require_ratio(ratio, self.name) * losses.detach()).mean()


@dataclass
class GroupDRO(Aggregator):
    """Group DRO over a persistent simplex weight q (Ramesh et al. 2024, *Group Robust Preference
    Optimization in Reward-free RLHF*, arXiv 2405.20304; Sagawa et al. 2020):

        L_g = mean of ℓ_i over the batch's examples of group g
        q_g ← q_g·exp(η·L_g) for the groups present, then q ← q / Σ q     (once per step)
        L = Σ_{g present} q_g L_g / Σ_{g present} q_g,   p_i = q_g(i) / (n_g(i) Σ_{present} q)

    q starts uniform over `num_groups` groups; it is state, saved with checkpoints.
    """

    eta: float = 0.01
    num_groups: int | None = None
    q: torch.Tensor | None = field(default=None, repr=False)
    name = "group"
    uses_group = True
    stateful = True
    formula = "q_g <- q_g*exp(eta*L_g), renormalised;  L = sum_g q_g L_g"

    def _check(self, losses, group):
        if group is None:
            raise ValueError("robust='group' needs a group id per example: pass `group` "
                             "(a `group` column)")
        if (group < 0).any():
            raise ValueError("robust='group': every example needs a group id ≥ 0 "
                             "(some rows have no group)")
        if self.q is None:
            self.num_groups = self.num_groups or int(group.max()) + 1
            self.q = torch.full((self.num_groups,), 1.0 / self.num_groups, dtype=torch.float64)
        if int(group.max()) >= self.q.numel():
            raise ValueError(f"robust='group': group id {int(group.max())} ≥ num_groups="
                             f"{self.q.numel()}; pass num_groups")

    def group_losses(self, losses, group):
        """(L_g for every group [G], present mask [G]) from per-example losses."""
        g = self.q.numel()
        x = losses.detach().double()
        sums = torch.zeros(g, dtype=torch.float64, device=x.device).index_add_(0, group, x)
        counts = torch.bincount(group, minlength=g).to(x.device)
        present = counts > 0
        return sums / counts.clamp(min=1), present

    def update(self, losses, group=None):
        self._check(losses, group)
        means, present = self.group_losses(losses, group)
        q = self.q.to(means.device) * torch.where(present, torch.exp(self.eta * means),
                                                  torch.ones_like(means))
        self.q = (q / q.sum()).cpu()

    def weights(self, losses, ratio=None, group=None):
        self._check(losses, group)
        counts = torch.bincount(group, minlength=self.q.numel()).to(losses.device)
        q = self.q.to(losses.device)
        mass = q[counts > 0].sum()
        return (q[group] / (counts[group] * mass)).to(losses.dtype)

    def value(self, losses, ratio=None, group=None):
        return (self.weights(losses, group=group) * losses.detach()).sum()

    def state_dict(self):
        return {"q": None if self.q is None else self.q.clone()}

    def load_state_dict(self, state):
        self.q = None if state.get("q") is None else state["q"].clone().double()
        if self.q is not None:
            self.num_groups = self.q.numel()


@dataclass
class CVaR(Aggregator):
    """Conditional value at risk at level a: the mean of the worst ⌈a·n⌉ losses
    (Rockafellar & Uryasev 2000; as DRO: Duchi & Namkoong 2021). p_i = 1/k on those k."""

    cvar_level: float = 0.2
    name = "cvar"
    formula = "L = mean of the worst ceil(a*n) losses"

    def _top(self, losses):
        k = max(1, math.ceil(self.cvar_level * losses.numel() - 1e-9))
        return torch.topk(losses.detach(), k).indices, k

    def weights(self, losses, ratio=None, group=None):
        idx, k = self._top(losses)
        p = torch.zeros_like(losses.detach())
        p[idx] = 1.0 / k
        return p

    def value(self, losses, ratio=None, group=None):
        idx, _ = self._top(losses)
        return losses.detach()[idx].mean()


@dataclass
class Chi2(Aggregator):
    """χ²-ball DRO (Duchi & Namkoong 2021; Levy et al. 2020):

        L = max_p Σ p_i ℓ_i  over the simplex with (1/n) Σ (n p_i − 1)²/2 ≤ r

    The maximiser is p_i ∝ (ℓ_i − η)₊ with η set so the constraint is tight (closed form while
    every weight stays positive, bisection beyond); r = `chi2_radius`. For small r,
    L ≈ mean ℓ + sqrt(2r·var ℓ).
    """

    chi2_radius: float = 1.0
    name = "chi2"
    formula = "L = max { sum p*l : (1/n) sum (n p - 1)^2 / 2 <= r }"

    def weights(self, losses, ratio=None, group=None):
        x = losses.detach().double()
        n = x.numel()
        r = self.chi2_radius
        var = x.var(unbiased=False)
        if n == 1 or var <= 1e-30 or r == 0:
            return torch.full_like(losses.detach(), 1.0 / n)
        if r >= (n - 1) / 2:  # the ball reaches the vertex: all mass on the worst loss(es)
            top = (x == x.max()).double()
            return (top / top.sum()).to(losses.dtype)

        def probs(eta):
            w = (x - eta).clamp(min=0)
            return w / w.sum()

        def divergence(eta):
            return ((n * probs(eta) - 1) ** 2).mean() / 2

        eta = x.mean() - torch.sqrt(var / (2 * r))  # tight with all weights positive
        if eta >= x.min():
            lo, hi = x.min(), x.max()  # D(eta) increases on [min, max): bisect
            for _ in range(100):
                eta = (lo + hi) / 2
                lo, hi = (eta, hi) if divergence(eta) < r else (lo, eta)
            eta = lo
        return probs(eta).to(losses.dtype)

    def value(self, losses, ratio=None, group=None):
        return (self.weights(losses) * losses.detach()).sum()


AGGREGATORS = {
    "mean": Mean,
    "kl": KL,
    "kl_official": KLOfficial,
    "drdpo": DrDPO,
    "dora": DoRA,
    "reweight": Reweight,
    "group": GroupDRO,
    "cvar": CVaR,
    "chi2": Chi2,
}
