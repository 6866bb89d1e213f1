"""`Objective`: one point in the grid score × coupling × link × robust aggregation [+ penalty].

    u± = log πθ(y±|x) − log π_ref(y±|x)
    m  = coupling(s(u⁺), s(u⁻))                   (score s, e.g. paired: s(u⁺) − s(u⁻))
    ℓ  = link(m; β, ε)                            per comparison
    L  = aggregate(ℓ; weight, ratio, group)       with ∇L = Σ p_i ∇ℓ_i

The penalty (WDPO's gradient penalty) needs the model's input embeddings and is computed by the
trainer; the objective carries its settings.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial

import torch

from . import aggregators as agg
from .couplings import COUPLING_FORMULAS, COUPLINGS, SORTING_COUPLINGS
from .links import LINK_FORMULAS, LINKS, SMOOTHABLE_LINKS
from .scores import SCORE_FORMULAS, SCORES, alpha_divergence

PENALTIES = ("none", "wasserstein")
PENALTY_FORMS = ("squared", "sqrt_mean")
PENALTY_MODES = ("finite_difference", "exact")


@dataclass
class ObjectiveOutput:
    """What an `Objective` returns for a batch.

    loss:    0-d differentiable tensor; its value is the objective's own value L and its
             gradient is Σ p_i ∇ℓ_i.
    losses:  per-comparison ℓ_i, shape [K] (K = B for paired couplings).
    weights: p_i, shape [K], detached; they sum to 1 unless ratios or data weights scale them.
    margins: m_i, shape [K], detached.
    metrics: dict[str, float] with TRL's names where the concept is the same.
    """

    loss: torch.Tensor
    losses: torch.Tensor
    weights: torch.Tensor
    margins: torch.Tensor
    _metric_tensors: dict = field(repr=False, default_factory=dict)

    @property
    def metrics(self) -> dict[str, float]:
        return {k: float(v) for k, v in self._metric_tensors.items()}


def _positive(name, value):
    if not value > 0:
        raise ValueError(f"{name} must be > 0, got {value}")


class Objective:
    """A preference objective named by its four choices (see DESIGN §1 and `dralign methods`).

    Parameters keep one name everywhere (Python keyword, YAML key, --flag): beta,
    label_smoothing, alpha, tau, drdpo_beta, lam, eta, cvar_level, chi2_radius, rho.
    `length_normalize=True` asks the trainer for mean instead of summed completion log-probs.
    """

    def __init__(self, divergence: str = "reverse_kl", coupling: str = "paired",
                 link: str = "sigmoid", robust: str = "mean", *, beta: float = 0.1,
                 label_smoothing: float = 0.0, alpha: float = 0.5, tau: float = 1.0,
                 drdpo_beta: float = 1.0, lam: float = 1.0, eta: float = 0.01,
                 cvar_level: float = 0.2, chi2_radius: float = 1.0, num_groups: int | None = None,
                 penalty: str = "none", rho: float = 0.01, penalty_form: str = "squared",
                 penalty_mode: str = "finite_difference", length_normalize: bool = False):
        for kind, name, table in (("divergence", divergence, SCORES), ("coupling", coupling, COUPLINGS),
                                  ("link", link, LINKS), ("robust", robust, agg.AGGREGATORS)):
            if name not in table:
                raise ValueError(f"unknown {kind} {name!r}; choose one of {', '.join(table)}")
        for kind, name, options in (("penalty", penalty, PENALTIES),
                                    ("penalty_form", penalty_form, PENALTY_FORMS),
                                    ("penalty_mode", penalty_mode, PENALTY_MODES)):
            if name not in options:
                raise ValueError(f"unknown {kind} {name!r}; choose one of {', '.join(options)}")
        _positive("beta", beta)
        if divergence == "alpha" and not 0 < alpha < 1:
            raise ValueError(f"alpha must lie in (0, 1) (paper convention: alpha -> 0 is reverse KL, "
                             f"alpha -> 1 forward KL), got {alpha}")
        if coupling == "aot" and divergence != "reverse_kl":
            raise ValueError("coupling='aot' (AOT paired) sorts the policy and reference log-ratio "
                             "margins separately, which equals sorting score differences only for "
                             f"the linear reverse-KL score; divergence={divergence!r} is not "
                             "defined there. Use divergence='reverse_kl', or coupling='aot_unpaired'")
        if not 0 <= label_smoothing < 0.5:
            raise ValueError(f"label_smoothing must lie in [0, 0.5), got {label_smoothing}"
                             + (" (rDPO divides by 1 - 2*eps)" if link == "robust" else ""))
        if label_smoothing and link not in SMOOTHABLE_LINKS:
            raise ValueError(f"label_smoothing applies to the sigmoid and robust links only, not "
                             f"link={link!r}")
        if robust in ("kl", "kl_official"):
            _positive("tau", tau)
        if robust == "drdpo":
            _positive("drdpo_beta", drdpo_beta)
        if robust == "dora":
            _positive("lam", lam)
        if eta < 0:
            raise ValueError(f"eta must be >= 0, got {eta}")
        if not 0 < cvar_level <= 1:
            raise ValueError(f"cvar_level must lie in (0, 1], got {cvar_level}")
        if chi2_radius < 0:
            raise ValueError(f"chi2_radius must be >= 0, got {chi2_radius}")
        if rho < 0:
            raise ValueError(f"rho must be >= 0, got {rho}")
        aggregator_cls = agg.AGGREGATORS[robust]
        if coupling in SORTING_COUPLINGS and (aggregator_cls.uses_ratio or aggregator_cls.uses_group):
            raise ValueError(f"coupling={coupling!r} compares sorted quantiles, not examples, so "
                             f"robust={robust!r} has no per-example ratio or group to use")

        self.divergence, self.coupling, self.link, self.robust = divergence, coupling, link, robust
        self.beta, self.label_smoothing, self.alpha = beta, label_smoothing, alpha
        self.tau, self.drdpo_beta, self.lam, self.eta = tau, drdpo_beta, lam, eta
        self.cvar_level, self.chi2_radius = cvar_level, chi2_radius
        self.penalty, self.rho, self.penalty_form, self.penalty_mode = penalty, rho, penalty_form, penalty_mode
        self.length_normalize = length_normalize

        self.score = partial(alpha_divergence, alpha=alpha) if divergence == "alpha" else SCORES[divergence]
        self.aggregator = {
            "mean": lambda: agg.Mean(),
            "kl": lambda: agg.KL(tau=tau),
            "kl_official": lambda: agg.KLOfficial(tau=tau),
            "drdpo": lambda: agg.DrDPO(drdpo_beta=drdpo_beta),
            "dora": lambda: agg.DoRA(lam=lam),
            "reweight": lambda: agg.Reweight(),
            "group": lambda: agg.GroupDRO(eta=eta, num_groups=num_groups),
            "cvar": lambda: agg.CVaR(cvar_level=cvar_level),
            "chi2": lambda: agg.Chi2(chi2_radius=chi2_radius),
        }[robust]()

    # ------------------------------------------------------------------ construction helpers
    @classmethod
    def from_preset(cls, name: str, **params) -> "Objective":
        """The objective of a named preset, with parameters overriding the preset's defaults."""
        from .presets import preset_kwargs

        return cls(**preset_kwargs(name, **params))

    @property
    def uses_ratio(self) -> bool:
        return self.aggregator.uses_ratio

    @property
    def uses_group(self) -> bool:
        return self.aggregator.uses_group

    @property
    def couples_examples(self) -> bool:
        """True when one example's loss or weight depends on the others in the batch, so that
        splitting a batch into micro-batches changes the method (DESIGN §1, global batch)."""
        return self.coupling in SORTING_COUPLINGS or self.robust not in ("mean", "reweight")

    @property
    def unpaired(self) -> bool:
        return self.coupling == "aot_unpaired"

    def describe(self) -> str:
        """The objective's formula in plain text."""
        eps = f", eps={self.label_smoothing}" if self.label_smoothing else ""
        parts = [SCORE_FORMULAS[self.divergence], COUPLING_FORMULAS[self.coupling],
                 LINK_FORMULAS[self.link] + f"  (beta={self.beta}{eps})",
                 self.aggregator.formula]
        if self.penalty == "wasserstein":
            parts.append("+ rho * ||grad_z l_i||^2 on input embeddings z" if self.penalty_form == "squared"
                         else "+ rho * sqrt(mean ||grad_z l_i||^2)")
        return ";  ".join(parts)

    def state_dict(self) -> dict:
        return self.aggregator.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.aggregator.load_state_dict(state)

    # ------------------------------------------------------------------ the computation
    def margins(self, policy_chosen, policy_rejected, ref_chosen, ref_rejected) -> torch.Tensor:
        """m_k of the coupling (differentiable)."""
        return COUPLINGS[self.coupling](policy_chosen, policy_rejected, ref_chosen, ref_rejected,
                                        self.score)

    def losses(self, margins: torch.Tensor) -> torch.Tensor:
        """ℓ_k = link(m_k) (differentiable)."""
        return LINKS[self.link](margins, self.beta, self.label_smoothing)

    def __call__(self, policy_chosen_logps, policy_rejected_logps, ref_chosen_logps,
                 ref_rejected_logps, weight=None, group=None, ratio=None, *,
                 update_state: bool = True) -> ObjectiveOutput:
        """The batch objective. Log-prob inputs have shape [B] (for `aot_unpaired`: chosen [n⁺],
        rejected [n⁻]); any float dtype, computed in float32 (float64 stays float64).

        weight: optional per-example data weights w ≥ 0: ℓ_i enters aggregation as w_i·ℓ_i.
        group:  LongTensor of group ids (robust='group').
        ratio:  density ratios h (robust='dora' / 'reweight').
        update_state: advance stateful aggregators (group DRO's q) — once per optimizer step.
        """
        dtype = torch.float64 if policy_chosen_logps.dtype == torch.float64 else torch.float32
        pc, pr, rc, rr = (t.to(dtype) for t in (policy_chosen_logps, policy_rejected_logps,
                                                ref_chosen_logps, ref_rejected_logps))
        rc, rr = rc.detach(), rr.detach()
        if self.coupling != "aot_unpaired" and not (pc.shape == pr.shape == rc.shape == rr.shape):
            raise ValueError("chosen and rejected log-probs must have the same shape [B] for "
                             f"coupling={self.coupling!r}")
        per_example = self.coupling not in SORTING_COUPLINGS
        if not per_example and (weight is not None or group is not None or ratio is not None):
            raise ValueError(f"coupling={self.coupling!r} compares sorted quantiles: per-example "
                             "weight/group/ratio cannot apply")
        if ratio is not None and not self.uses_ratio:
            raise ValueError(f"density ratios were given but robust={self.robust!r} does not use "
                             "them; use robust='dora' or 'reweight'")
        ratio = None if ratio is None else ratio.to(dtype)

        m = self.margins(pc, pr, rc, rr)
        losses = self.losses(m)
        scale = None if weight is None else weight.to(dtype).detach()
        if scale is not None and (not torch.isfinite(scale).all() or (scale < 0).any()):
            raise ValueError("data weights must be finite and >= 0")
        scaled = losses.detach() if scale is None else scale * losses.detach()

        if update_state and self.aggregator.stateful:
            self.aggregator.update(scaled, group=group)
        p = self.aggregator.weights(scaled, ratio=ratio, group=group)
        value = self.aggregator.value(scaled, ratio=ratio, group=group)
        if scale is not None:
            p = p * scale
        loss = value.to(dtype) + (p * (losses - losses.detach())).sum()
        return ObjectiveOutput(loss=loss, losses=losses.detach(), weights=p, margins=m.detach(),
                               _metric_tensors=self._metrics(pc, pr, rc, rr, m, p))

    def _metrics(self, pc, pr, rc, rr, m, p) -> dict:
        with torch.no_grad():
            chosen, rejected = self.beta * (pc - rc), self.beta * (pr - rr)
            out = {
                "rewards/chosen": chosen.mean(),
                "rewards/rejected": rejected.mean(),
                "rewards/margins": chosen.mean() - rejected.mean(),
                "rewards/accuracies": ((chosen > rejected).float().mean() if chosen.shape == rejected.shape
                                       else (m > 0).float().mean()),
                "logps/chosen": pc.mean(),
                "logps/rejected": pr.mean(),
            }
            if self.robust != "mean":
                n = p.numel()
                out["robust/ess"] = p.sum() ** 2 / (n * (p ** 2).sum()).clamp(min=1e-30)
                out["robust/weight_max"] = p.max() * n
            return {k: v.detach() for k, v in out.items()}

    def coefficients(self, policy_chosen_logps, policy_rejected_logps, ref_chosen_logps,
                     ref_rejected_logps, weight=None, group=None, ratio=None, *,
                     update_state: bool = True):
        """Linearise the objective at detached log-probs: (output, ∂L/∂log πθ(y⁺), ∂L/∂log πθ(y⁻)).

        For the exact global batch: computed once over the effective batch, the gradient of the
        full objective is Σ_i c⁺_i ∇log πθ(y_i⁺) + c⁻_i ∇log πθ(y_i⁻), so each micro-batch can
        backpropagate its share Σ_{i in micro} c·log π and the sum over micro-batches (and
        processes) equals the full-batch gradient exactly, for every coupling and aggregator.
        """
        pc = policy_chosen_logps.detach().clone().requires_grad_(True)
        pr = policy_rejected_logps.detach().clone().requires_grad_(True)
        out = self(pc, pr, ref_chosen_logps, ref_rejected_logps, weight=weight, group=group,
                   ratio=ratio, update_state=update_state)
        grad_c, grad_r = torch.autograd.grad(out.loss, (pc, pr), allow_unused=True)
        grad_c = torch.zeros_like(pc) if grad_c is None else grad_c
        grad_r = torch.zeros_like(pr) if grad_r is None else grad_r
        out.loss = out.loss.detach()
        return out, grad_c.detach(), grad_r.detach()

