"""`Objective`: one point in the grid score × coupling × link × robust aggregation [+ penalty].

    u± = log πθ(y±|x) − log π_ref(y±|x)
    m  = coupling(s(u⁺), s(u⁻))                   (score s, e.g. paired: s(u⁺) − s(u⁻))
    ℓ  = link(m; β, ε)                            per comparison
    L  = aggregate(ℓ; weight, ratio, group, state)    with ∇L = Σ p_i ∇ℓ_i

The penalty (WDPO's gradient penalty) needs the model's input embeddings and is computed by
`dralign.train.penalty`; the objective carries it as a `Wasserstein` value.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NamedTuple

from .aggregators import Aggregator, check_mass
from .couplings import Coupling
from .lazy import lazy_module
from .links import Link
from .params import params_of, values_of
from .penalty import Wasserstein
from .presets import TABLES, resolve_preset
from .scores import Score

if TYPE_CHECKING:  # the real module for the checker; lazy at run time
    import torch
else:
    torch = lazy_module("torch", globals())  # imported on first use: `dralign train --help` needs no torch


def preference_accuracy(chosen, rejected):
    """Per comparison 1 when `chosen` > `rejected`, ½ on a tie, else 0: the one tie rule of
    every accuracy dralign reports (training metrics, `dralign eval`, the benchmarks); a tie,
    e.g. every pair at step 0 when the policy is the reference, is no preference either way."""
    return (chosen > rejected).float() + 0.5 * (chosen == rejected).float()


@dataclass
class ObjectiveOutput:
    """What an `Objective` returns for a batch.

    loss:    0-d differentiable tensor; its value is the objective's own value L and its
             gradient is Σ p_i ∇ℓ_i.
    losses:  per-comparison ℓ_i, shape [K] (K = B for paired couplings).
    weights: p_i, shape [K], detached; they sum to 1 unless ratios or data weights scale them.
    margins: m_i, shape [K], detached.
    state:   the objective's state after this call (advanced when `update_state`; `{}` when
             stateless).
    metric_tensors: {name: 0-d detached tensor}, TRL's names where the concept is the same.
    metrics: the same as floats.
    """

    loss: torch.Tensor
    losses: torch.Tensor
    weights: torch.Tensor
    margins: torch.Tensor
    state: dict = field(default_factory=dict)
    metric_tensors: dict = field(repr=False, default_factory=dict)

    @property
    def metrics(self) -> dict[str, float]:
        return {k: float(v) for k, v in self.metric_tensors.items()}


class Components(NamedTuple):
    score: Score
    coupling: Coupling
    link: Link
    aggregator: Aggregator
    penalty: Wasserstein | None


def _build(kind, choice, params: dict, used: set):
    """A component from a name (its parameters taken from `params`) or a component value."""
    if choice is None or choice == "none":
        if kind == "penalty":
            return None
    if not isinstance(choice, str):
        return choice
    table = TABLES[kind]
    if choice not in table:
        raise ValueError(
            f"unknown {kind} {choice!r}; choose one of "
            f"{', '.join((['none'] if kind == 'penalty' else []) + list(table))}"
        )
    cls = table[choice]
    kwargs = {p.name: params[p.name] for p in params_of(cls) if p.name in params}
    used.update(kwargs)
    return cls(**kwargs)


class Objective:
    """A preference objective named by its four choices (see docs/design.md, "The objective
    algebra", and `dralign methods`).

    Each choice is a name (its parameters given as keywords: beta, label_smoothing, alpha, tau,
    drdpo_beta, lam, eta, cvar_level, chi2_radius, rho, penalty_form, penalty_mode) or a
    component value (e.g. `robust=KL(tau=0.5)`). A keyword no chosen component uses is
    refused. `length_normalize=True` asks the trainer for mean instead of summed completion
    log-probs.
    """

    def __init__(
        self,
        divergence="reverse_kl",
        coupling="paired",
        link="sigmoid",
        robust="mean",
        penalty=None,
        *,
        length_normalize: bool = False,
        _context: str = "",
        **params,
    ):
        used: set = set()
        self.components = Components(
            *(
                _build(kind, choice, params, used)
                for kind, choice in (
                    ("divergence", divergence),
                    ("coupling", coupling),
                    ("link", link),
                    ("robust", robust),
                    ("penalty", penalty),
                )
            )
        )
        unused = [k for k in params if k not in used]
        if unused:
            uses = ", ".join(self.parameters()) or "none"
            raise ValueError(
                f"parameter(s) {', '.join(unused)} not used by {_context or 'this objective'} "
                f"({self.divergence} / {self.coupling} / {self.link} / {self.robust}"
                f"{' + ' + self.penalty.name if self.penalty else ''}); its parameters: {uses}"
            )
        self.length_normalize = length_normalize
        c = self.components
        if c.coupling.linear_score_only and c.score.name != "reverse_kl":
            raise ValueError(
                f"coupling={c.coupling.name!r} (AOT paired) sorts the policy and "
                "reference log-ratio margins separately, which equals sorting score "
                "differences only for the linear reverse-KL score; divergence="
                f"{c.score.name!r} is not defined there. Use divergence='reverse_kl', "
                "or coupling='aot_unpaired'"
            )
        if c.coupling.sorts and (c.aggregator.uses_ratio or c.aggregator.uses_group):
            raise ValueError(
                f"coupling={c.coupling.name!r} compares sorted quantiles, not examples, "
                f"so robust={c.aggregator.name!r} has no per-example ratio or group to use"
            )

    # ------------------------------------------------------------------ construction helpers
    @classmethod
    def from_preset(cls, name: str, **params) -> Objective:
        """The objective of a named preset; `params` (and choice keywords) override its
        defaults. A parameter that the resolved objective does not use is refused."""
        preset = resolve_preset(name)
        choices = {
            **preset.choices,
            **{k: params.pop(k) for k in list(params) if k in TABLES or k == "length_normalize"},
        }
        probe = cls(**choices)  # which parameters this objective's components take
        defaults = {k: v for k, v in preset.defaults.items() if k in probe.parameters()}
        return cls(**choices, **{**defaults, **params}, _context=f"preset {name!r}")

    # ------------------------------------------------------------------ what it is
    divergence = property(lambda self: self.components.score.name)
    coupling = property(lambda self: self.components.coupling.name)
    link = property(lambda self: self.components.link.name)
    robust = property(lambda self: self.components.aggregator.name)
    score = property(lambda self: self.components.score)
    aggregator = property(lambda self: self.components.aggregator)
    penalty = property(lambda self: self.components.penalty, doc="`Wasserstein` or None")
    beta = property(lambda self: self.components.link.beta, doc="β of the link (every link has one)")
    uses_ratio = property(lambda self: self.aggregator.uses_ratio)
    uses_group = property(lambda self: self.aggregator.uses_group)
    unpaired = property(lambda self: self.coupling == "aot_unpaired")

    @property
    def couples_examples(self) -> bool:
        """True when one example's loss, weight or gradient depends on the others in the batch,
        so that splitting a batch into micro-batches changes the method (docs/design.md,
        "Global batch"): sorting couplings, robust aggregators, WDPO's sqrt_mean penalty."""
        return (
            self.components.coupling.sorts
            or self.aggregator.couples_examples
            or (self.penalty is not None and self.penalty.couples_examples)
        )

    def parameters(self) -> dict:
        """{name: value} of the parameters this objective uses, and only those."""
        out = {}
        for comp in self.components:
            if comp is not None:
                out.update(values_of(comp))
        return out

    def describe(self) -> str:
        """The objective's formula in plain text."""
        c = self.components
        eps = getattr(c.link, "label_smoothing", 0.0)
        parts = [
            c.score.formula,
            c.coupling.formula,
            c.link.formula + f"  (beta={c.link.beta}{f', eps={eps}' if eps else ''})",
            c.aggregator.formula,
        ]
        if c.penalty is not None:
            parts.append(c.penalty.describe())
        return ";  ".join(parts)

    def init_state(self, num_groups: int | None = None) -> dict:
        """The initial state ({} when stateless): group DRO's uniform q over `num_groups`.
        A dict of tensors, saved without pickle (safetensors/JSON)."""
        return self.aggregator.init_state(num_groups) if self.aggregator.stateful else {}

    # ------------------------------------------------------------------ the computation
    def margins(self, policy_chosen, policy_rejected, ref_chosen, ref_rejected) -> torch.Tensor:
        """m_k of the coupling (differentiable)."""
        return self.comparisons(policy_chosen, policy_rejected, ref_chosen, ref_rejected)[0]

    def comparisons(self, policy_chosen, policy_rejected, ref_chosen, ref_rejected):
        """(m_k differentiable, the comparisons' mass or None for uniform)."""
        return self.components.coupling(policy_chosen, policy_rejected, ref_chosen, ref_rejected, self.components.score)

    def losses(self, margins: torch.Tensor) -> torch.Tensor:
        """ℓ_k = link(m_k) (differentiable)."""
        return self.components.link(margins)

    def __call__(
        self,
        policy_chosen_logps,
        policy_rejected_logps,
        ref_chosen_logps,
        ref_rejected_logps,
        weight=None,
        group=None,
        ratio=None,
        *,
        state: dict | None = None,
        update_state: bool = True,
    ) -> ObjectiveOutput:
        """The batch objective. Log-prob inputs have shape [B] (for `aot_unpaired`: chosen [n⁺],
        rejected [n⁻]); any float dtype, computed in float32 (float64 stays float64).

        weight: optional per-example data weights w ≥ 0: ℓ_i enters aggregation as w_i·ℓ_i.
        group:  LongTensor of group ids (robust='group').
        ratio:  density ratios h (robust='dora' / 'reweight').
        state:  the objective's state (`init_state`; None: the initial one, q uniform over the
                groups seen). update_state: advance it on this batch (once per optimizer step)
                before computing the weights; `out.state` is the result.
        """
        dtype = torch.float64 if policy_chosen_logps.dtype == torch.float64 else torch.float32
        pc, pr, rc, rr = (
            t.to(dtype) for t in (policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps)
        )
        rc, rr = rc.detach(), rr.detach()
        sorts = self.components.coupling.sorts
        if not self.unpaired and not (pc.shape == pr.shape == rc.shape == rr.shape):
            raise ValueError(
                f"chosen and rejected log-probs must have the same shape [B] for coupling={self.coupling!r}"
            )
        if sorts and (weight is not None or group is not None or ratio is not None):
            raise ValueError(
                f"coupling={self.coupling!r} compares sorted quantiles: per-example weight/group/ratio cannot apply"
            )
        if ratio is not None and not self.uses_ratio:
            raise ValueError(
                f"density ratios were given but robust={self.robust!r} does not use "
                "them; use robust='dora' or 'reweight'"
            )
        ratio = None if ratio is None else ratio.to(dtype)

        m, mass = self.comparisons(pc, pr, rc, rr)
        mass = check_mass(mass, m.numel())
        losses = self.losses(m)
        scale = None if weight is None else weight.to(dtype).detach()
        if scale is not None and (not torch.isfinite(scale).all() or (scale < 0).any()):
            raise ValueError("data weights must be finite and >= 0")
        scaled = losses.detach() if scale is None else scale * losses.detach()

        agg = self.aggregator
        state = {} if state is None else state
        if update_state and agg.stateful:
            state = agg.update(scaled, group=group, state=state, mass=mass)
        kw = dict(ratio=ratio, group=group, state=state, mass=mass)
        p = agg.weights(scaled, **kw)
        value = agg.value(scaled, **kw)
        if scale is not None:
            p = p * scale
        loss = value.to(dtype) + (p * (losses - losses.detach())).sum()
        return ObjectiveOutput(
            loss=loss,
            losses=losses.detach(),
            weights=p,
            margins=m.detach(),
            state=state,
            metric_tensors=self._metrics(pc, pr, rc, rr, m, p),
        )

    def _metrics(self, pc, pr, rc, rr, m, p) -> dict:
        with torch.no_grad():
            chosen, rejected = self.beta * (pc - rc), self.beta * (pr - rr)
            out = {
                "rewards/chosen": chosen.mean(),
                "rewards/rejected": rejected.mean(),
                "rewards/margins": chosen.mean() - rejected.mean(),
                "rewards/accuracies": (
                    preference_accuracy(chosen, rejected).mean()
                    if chosen.shape == rejected.shape
                    else preference_accuracy(m, torch.zeros_like(m)).mean()
                ),
                "logps/chosen": pc.mean(),
                "logps/rejected": pr.mean(),
            }
            if self.robust != "mean":
                n = p.numel()
                out["robust/ess"] = p.sum() ** 2 / (n * (p**2).sum()).clamp(min=1e-30)
                out["robust/weight_max"] = p.max() * n
            return {k: v.detach() for k, v in out.items()}

    def coefficients(
        self,
        policy_chosen_logps,
        policy_rejected_logps,
        ref_chosen_logps,
        ref_rejected_logps,
        weight=None,
        group=None,
        ratio=None,
        *,
        state: dict | None = None,
        update_state: bool = True,
    ):
        """Linearise the objective at detached log-probs: (output, ∂L/∂log πθ(y⁺), ∂L/∂log πθ(y⁻)).

        For the exact global batch: computed once over the effective batch, the gradient of the
        full objective is Σ_i c⁺_i ∇log πθ(y_i⁺) + c⁻_i ∇log πθ(y_i⁻), so each micro-batch can
        backpropagate its share Σ_{i in micro} c·log π and the sum over micro-batches (and
        processes) equals the full-batch gradient exactly, for every coupling and aggregator.
        `output.state` is the advanced state.
        """
        pc = policy_chosen_logps.detach().clone().requires_grad_(True)
        pr = policy_rejected_logps.detach().clone().requires_grad_(True)
        out = self(
            pc,
            pr,
            ref_chosen_logps,
            ref_rejected_logps,
            weight=weight,
            group=group,
            ratio=ratio,
            state=state,
            update_state=update_state,
        )
        grad_c, grad_r = torch.autograd.grad(out.loss, (pc, pr), allow_unused=True)
        grad_c = torch.zeros_like(pc) if grad_c is None else grad_c
        grad_r = torch.zeros_like(pr) if grad_r is None else grad_r
        out.loss = out.loss.detach()
        return out, grad_c.detach(), grad_r.detach()


def preset_summary(name: str) -> tuple[str, str, str]:
    """(choices, formula, parameters) of preset `name` as `dralign methods` and the docs' method
    table print them: "divergence / coupling / link / robust [+ penalty]", the objective's
    formula, and "name=value, ..." of its parameters."""
    obj = Objective.from_preset(name)
    choices = f"{obj.divergence} / {obj.coupling} / {obj.link} / {obj.robust}"
    if obj.penalty is not None:
        choices += f" + {obj.penalty.name}"
    return choices, obj.describe(), ", ".join(f"{k}={v}" for k, v in obj.parameters().items())
