"""Which dralign objective replaces TRL's loss inside `DPOTrainer`, and what is refused."""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ...errors import UnsupportedError
from ...objectives import PRESETS, Objective
from ...objectives.trl import (  # the one translation, shared with a DPOConfig YAML
    LOSS_FIELDS,
    UNPAIRED_REASON,
    trl_loss,
)

try:
    from trl import DPOConfig
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("dralign.integrations.trl needs TRL: pip install 'dralign[trl]'") from exc


class UnsupportedObjectiveError(UnsupportedError):
    """The objective (or a TRL setting) cannot run inside TRL's DPOTrainer; the message says why."""


# ---------------------------------------------------------------------------- configuration
@dataclass
class DralignDPOConfig(DPOConfig):
    """`trl.DPOConfig` plus the dralign objective, for scripts that parse their configuration
    (`TrlParser`, `HfArgumentParser`): `--objective kldpo --objective_kwargs '{"tau": 0.5}'`.

    The `objective=` / `objective_kwargs=` arguments of `DPOTrainer` win over these fields.
    """

    _VALID_DICT_FIELDS = DPOConfig._VALID_DICT_FIELDS + ["objective_kwargs"]

    objective: str | None = field(
        default=None,
        metadata={
            "help": "dralign preset replacing TRL's loss (dpo, ipo, kldpo, dora, ...; see "
            "`dralign methods`). None: TRL's `loss_type`, mapped to its preset."
        },
    )
    objective_kwargs: dict[str, Any] | str | None = field(
        default=None, metadata={"help": "parameters of the preset, e.g. '{\"tau\": 0.5}' (beta defaults to `beta`)."}
    )


def _setting(args, name: str):
    """`args.name`, or `DPOConfig`'s default when no config was given (TRL then builds one)."""
    if args is not None:
        return getattr(args, name)
    spec = DPOConfig.__dataclass_fields__[name]
    if spec.default is not dataclasses.MISSING:
        return spec.default
    assert spec.default_factory is not dataclasses.MISSING, f"DPOConfig.{name} has a default"
    return spec.default_factory()


def objective_from_trl_config(args=None) -> Objective:
    """The dralign objective equal to TRL's loss for `args` (one loss type only), by the one
    translation `dralign.objectives.trl.trl_loss` (the rules and the α convention are there).

    TRL 1.16's sigmoid loss ignores `label_smoothing`, and so does the mapping.
    """
    loss = trl_loss({name: _setting(args, name) for name in LOSS_FIELDS})
    if loss.refusals:
        raise UnsupportedObjectiveError(
            "; ".join(loss.refusals) + ". Pass objective=<a dralign preset>, or use trl.DPOTrainer for this loss"
        )
    assert loss.preset is not None, "a translation without refusals names its preset"
    return Objective.from_preset(loss.preset, beta=_setting(args, "beta"), **loss.parameters)


def resolve_objective(objective=None, objective_kwargs: Mapping | None = None, args=None) -> Objective:
    """The `Objective` a `DPOTrainer` runs.

    objective: an `Objective`, a preset name, or None (then `args.objective` of a
    `DralignDPOConfig`, else TRL's `loss_type` mapped by `objective_from_trl_config`).
    objective_kwargs: preset parameters (merged over `args.objective_kwargs`). A preset name
    takes β from `args.beta` and ε from a non-zero `args.label_smoothing` when the preset has ε,
    unless the kwargs set them. TRL loss settings that an objective overrides are ignored with a
    warning.
    """
    kwargs = dict(getattr(args, "objective_kwargs", None) or {})
    kwargs.update(objective_kwargs or {})
    if objective is None:
        objective = getattr(args, "objective", None)
    if objective is None:
        if kwargs:
            raise ValueError("objective_kwargs were given without an objective; name a preset")
        return objective_from_trl_config(args)

    beta, smoothing = _setting(args, "beta"), _setting(args, "label_smoothing")
    if isinstance(objective, Objective):
        if kwargs:
            raise ValueError(
                "objective_kwargs apply to a preset name, not to an Objective instance "
                "(set the parameters when building it)"
            )
        if beta != objective.beta:
            warnings.warn(
                f"the objective's beta={objective.beta} is used; DPOConfig.beta={beta} is ignored",
                UserWarning,
                stacklevel=3,
            )
        uses_smoothing = True
        eps = objective.parameters().get("label_smoothing", 0.0)
        if smoothing and smoothing != eps:
            warnings.warn(
                f"the objective's label_smoothing={eps} is used; DPOConfig.label_smoothing={smoothing} is ignored",
                UserWarning,
                stacklevel=3,
            )
        resolved = objective
    elif isinstance(objective, str):
        if objective not in PRESETS:
            raise ValueError(f"unknown dralign preset {objective!r}; valid: {', '.join(PRESETS)}")
        kwargs.setdefault("beta", beta)
        uses_smoothing = "label_smoothing" in Objective.from_preset(objective).parameters()
        if uses_smoothing and smoothing:
            kwargs.setdefault("label_smoothing", smoothing)
        resolved = Objective.from_preset(objective, **kwargs)
    else:
        raise TypeError(f"objective must be a dralign.Objective, a preset name or None, got {type(objective).__name__}")

    ignored = []
    if list(_setting(args, "loss_type")) != ["sigmoid"]:
        ignored.append(f"loss_type={list(_setting(args, 'loss_type'))}")
    if _setting(args, "loss_weights") is not None:
        ignored.append(f"loss_weights={_setting(args, 'loss_weights')}")
    if _setting(args, "f_divergence_type") != "reverse_kl":
        ignored.append(
            f"f_divergence_type={_setting(args, 'f_divergence_type')!r} (set the objective's divergence instead)"
        )
    if smoothing and not uses_smoothing:
        ignored.append(f"label_smoothing={smoothing} (this preset has no epsilon)")
    if ignored:
        warnings.warn(
            "the dralign objective replaces TRL's loss; ignored DPOConfig settings: " + "; ".join(ignored),
            UserWarning,
            stacklevel=3,
        )
    return resolved


def check_supported(objective: Objective, args=None) -> None:
    """Refuse what TRL's DPOTrainer step cannot compute, saying why."""
    if objective.unpaired:
        raise UnsupportedObjectiveError(f"not supported inside TRL's DPOTrainer: {UNPAIRED_REASON}")
    if objective.penalty is not None:
        raise UnsupportedObjectiveError(
            f"penalty={objective.penalty.name!r} (WDPO) is not supported inside TRL's DPOTrainer: the "
            "Wasserstein penalty needs the gradient of each loss with respect to the input "
            "embeddings, i.e. an extra backward (or finite-difference) pass per micro-batch that "
            "TRL's training step does not make. Use `dralign train --method wdpo`, or the same "
            "objective without the penalty (e.g. objective='dpo' or 'kldpo')"
        )
    if _setting(args, "use_weighting"):
        raise UnsupportedObjectiveError(
            "DPOConfig.use_weighting=True (WPO weighting) is not supported with a dralign "
            "objective: it multiplies TRL's per-pair losses, which the objective replaces. Set "
            "use_weighting=False, or give per-row weights in a `weight` column"
        )
