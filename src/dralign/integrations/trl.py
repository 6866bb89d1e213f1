"""Any paired dralign objective inside TRL's `DPOTrainer` (tested against TRL 1.16).

A TRL script switches by changing one import and naming a method::

    from dralign.integrations.trl import DPOTrainer          # instead of: from trl import DPOTrainer
    trainer = DPOTrainer(model, args=DPOConfig(...), train_dataset=ds, processing_class=tok,
                         objective="kldpo", objective_kwargs={"tau": 0.5})
    trainer.train()

Everything else is TRL's: tokenisation, collation, the policy forward with TRL's fused LM head,
the reference model (a separate model, the PEFT base with adapters disabled, or
`precompute_ref_log_probs=True`), gradient accumulation, logging, checkpoints, `evaluate()`.

How it maps to TRL
------------------
- Override point: `DPOTrainer._compute_loss`, the one TRL method that turns a collated batch
  into the loss (TRL 1.16 has no smaller hook: its losses are an inline if/elif). The override
  computes summed completion log-probs exactly as TRL does (same forward, same `ld_alpha`
  weighting), takes the reference log-probs from TRL (`compute_ref_log_probs`, or the
  precomputed `ref_chosen_logps`/`ref_rejected_logps` columns) and hands the four tensors to
  the `dralign.Objective`. With the `dpo` objective the loss equals TRL's `sigmoid` loss.
- Length normalisation: objectives with `length_normalize=True` (the `ipo` preset) divide the
  policy and reference log-probs by the number of completion tokens, which is what TRL's `ipo`
  loss does to the log-ratios.
- Extra columns: `weight` (data weights), `group` (group DRO; names or integer ids), `ratio` or
  `target_prob` (DoRA's density ratio h, or P(target | x, y) turned into h = p / mean p over the
  training set) are kept through TRL's `remove_unused_columns`, stripped from the rows before
  TRL's collator runs, and added to the batch as `dralign_*` tensors that go to the objective,
  never to the model. Column names are arguments of `DPOTrainer`.
- Semantics: the objective is computed per micro-batch on each process, as TRL computes its
  own losses. That is dralign's `local` mode: robust weights (KLDPO, DRO, DoRA, CVaR, ...),
  AOT's sorting and group statistics see `per_device_train_batch_size` rows, not the effective
  batch. For the exact effective-batch objective use `dralign train` (DESIGN §1). Group DRO's q
  advances once per micro-batch from the losses of every process's micro-batch, so all
  processes keep the same q; it is saved in each checkpoint (`dralign_objective.pt`) and
  restored on resume.
- TRL's own loss settings: with an objective given, `loss_type`, `loss_weights`,
  `f_divergence_type`/`f_alpha_divergence_coef` are ignored with a warning; `beta` is the
  objective's β (a preset name takes `args.beta` unless `objective_kwargs` sets it), and
  `label_smoothing` feeds the presets that have ε (cdpo, rdpo, aot). Without an objective,
  TRL's single `loss_type` is mapped to its dralign preset (`TRL_LOSS_PRESETS`, with
  `f_divergence_type` mapped to the score), so the import alone changes nothing; loss types
  dralign does not have are refused.
- Logs: TRL's metrics (`rewards/chosen|rejected|margins|accuracies`, `logps/chosen|rejected`,
  `entropy`, `logits/*`, `mean_token_accuracy`, `num_tokens`) plus dralign's robust ones from
  the objective (`robust/ess`, `robust/weight_max`) and `ratio/mean` when ratios are used.

Refused, with the reason: unpaired objectives (`aot-unpaired`), WDPO's Wasserstein penalty,
TRL's `use_weighting` (WPO), per-row weights with sorting couplings, and a missing `group` /
`ratio` column for an objective that needs one.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import os
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import torch

from ..objectives import PRESETS, Objective, trl_alpha_coef

try:
    import datasets
    from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR
    from trl import DPOConfig
    from trl import DPOTrainer as _TRLDPOTrainer
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("dralign.integrations.trl needs TRL: pip install 'dralign[trl]'") from exc

__all__ = ["DPOTrainer", "DralignDPOConfig", "ObjectiveColumns", "ObjectiveColumnsCollator",
           "check_supported", "plan_columns",
           "TRL_LOSS_PRESETS", "UnsupportedObjectiveError", "objective_from_trl_config",
           "resolve_objective", "sequence_logps"]

TRL_LOSS_PRESETS = {"sigmoid": "dpo", "hinge": "hinge", "ipo": "ipo", "robust": "rdpo", "aot": "aot"}
"""TRL `loss_type` → the dralign preset computing the same loss (when no objective is given)."""

TRL_DIVERGENCES = {"reverse_kl": "reverse_kl", "forward_kl": "forward_kl",
                   "js_divergence": "js", "alpha_divergence": "alpha"}
"""TRL `f_divergence_type` → dralign divergence (α = 1 − `f_alpha_divergence_coef`)."""

META_KEYS = {"dralign_weight": "weight", "dralign_group": "group", "dralign_ratio": "ratio"}
"""Batch keys the collator adds → the `Objective` keyword they feed."""

OBJECTIVE_STATE_FILE = "dralign_objective.pt"

_TRL_NON_MODEL_KEYS = ("completion_mask", "ref_chosen_logps", "ref_rejected_logps")
_TRL_METRICS = ("rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies",
                "logps/chosen", "logps/rejected")


class UnsupportedObjectiveError(ValueError):
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
        metadata={"help": "dralign preset replacing TRL's loss (dpo, ipo, kldpo, dora, ...; see "
                          "`dralign methods`). None: TRL's `loss_type`, mapped to its preset."})
    objective_kwargs: dict[str, Any] | str | None = field(
        default=None,
        metadata={"help": "parameters of the preset, e.g. '{\"tau\": 0.5}' (beta defaults to "
                          "`beta`)."})


def _setting(args, name: str):
    """`args.name`, or `DPOConfig`'s default when no config was given (TRL then builds one)."""
    if args is not None:
        return getattr(args, name)
    spec = DPOConfig.__dataclass_fields__[name]
    return spec.default_factory() if spec.default is dataclasses.MISSING else spec.default


def objective_from_trl_config(args=None) -> Objective:
    """The dralign objective equal to TRL's loss for `args.loss_type` (one loss type only).

    sigmoid → dpo, hinge → hinge, ipo → ipo (length-normalised), robust → rdpo (ε =
    `label_smoothing`), aot → aot (ε = `label_smoothing`); `f_divergence_type` selects the score
    (alpha: α = 1 − `f_alpha_divergence_coef`; coefficient 1 is reverse KL, as in TRL). TRL 1.16's
    sigmoid loss ignores `label_smoothing`, and so does the mapping.
    """
    loss_types = list(_setting(args, "loss_type"))
    if len(loss_types) != 1:
        raise UnsupportedObjectiveError(
            f"loss_type={loss_types} combines several TRL losses (with loss_weights); dralign has "
            "no such objective. Pass objective=<a dralign preset>, or use trl.DPOTrainer")
    loss_type = loss_types[0]
    if loss_type == "aot_unpaired":
        raise UnsupportedObjectiveError(_UNPAIRED_REASON)
    if loss_type not in TRL_LOSS_PRESETS:
        raise UnsupportedObjectiveError(
            f"TRL's loss_type={loss_type!r} has no dralign equivalent (mapped: "
            f"{', '.join(f'{k} -> {v}' for k, v in TRL_LOSS_PRESETS.items())}). Pass "
            "objective=<a dralign preset>, or use trl.DPOTrainer for this loss")
    params = {"beta": _setting(args, "beta")}
    if loss_type in ("robust", "aot"):
        params["label_smoothing"] = _setting(args, "label_smoothing")
    divergence = _setting(args, "f_divergence_type")
    if divergence not in TRL_DIVERGENCES:
        raise UnsupportedObjectiveError(f"unknown f_divergence_type {divergence!r}")
    if divergence == "alpha_divergence":
        coef = _setting(args, "f_alpha_divergence_coef")
        if abs(coef - 1.0) < 1e-6:
            divergence = "reverse_kl"
        else:
            params["alpha"] = trl_alpha_coef(coef)  # c = 1 − α, so α = 1 − c
    if divergence != "reverse_kl":
        if loss_type == "ipo":
            raise UnsupportedObjectiveError(
                "loss_type='ipo' with a non-reverse-KL f_divergence_type: TRL length-normalises the "
                "f-scores, dralign the log-probs, which differ for a nonlinear score. Pass an "
                "explicit objective, e.g. objective=dralign.Objective(divergence='js', link='ipo', "
                "length_normalize=True)")
        params["divergence"] = TRL_DIVERGENCES[divergence]
    return Objective.from_preset(TRL_LOSS_PRESETS[loss_type], **params)


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
            raise ValueError("objective_kwargs apply to a preset name, not to an Objective instance "
                             "(set the parameters when building it)")
        if beta != objective.beta:
            warnings.warn(f"the objective's beta={objective.beta} is used; DPOConfig.beta={beta} is "
                          "ignored", UserWarning, stacklevel=3)
        uses_smoothing = True
        eps = objective.parameters().get("label_smoothing", 0.0)
        if smoothing and smoothing != eps:
            warnings.warn(f"the objective's label_smoothing={eps} is used; "
                          f"DPOConfig.label_smoothing={smoothing} is ignored", UserWarning, stacklevel=3)
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
        raise TypeError(f"objective must be a dralign.Objective, a preset name or None, got "
                        f"{type(objective).__name__}")

    ignored = []
    if list(_setting(args, "loss_type")) != ["sigmoid"]:
        ignored.append(f"loss_type={list(_setting(args, 'loss_type'))}")
    if _setting(args, "loss_weights") is not None:
        ignored.append(f"loss_weights={_setting(args, 'loss_weights')}")
    if _setting(args, "f_divergence_type") != "reverse_kl":
        ignored.append(f"f_divergence_type={_setting(args, 'f_divergence_type')!r} (set the "
                       "objective's divergence instead)")
    if smoothing and not uses_smoothing:
        ignored.append(f"label_smoothing={smoothing} (this preset has no epsilon)")
    if ignored:
        warnings.warn("the dralign objective replaces TRL's loss; ignored DPOConfig settings: "
                      + "; ".join(ignored), UserWarning, stacklevel=3)
    return resolved


_UNPAIRED_REASON = (
    "unpaired objectives (aot-unpaired, coupling='aot_unpaired') are not supported inside TRL's "
    "DPOTrainer: it reads paired rows (prompt, chosen, rejected) only, so the unpaired data the "
    "method is for (separate sets of desirable and undesirable responses, of different sizes and "
    "prompts) cannot reach the objective. Use `dralign train --method aot-unpaired`, or "
    "objective='aot' for paired data")


def check_supported(objective: Objective, args=None) -> None:
    """Refuse what TRL's DPOTrainer step cannot compute, saying why."""
    if objective.unpaired:
        raise UnsupportedObjectiveError(_UNPAIRED_REASON)
    if objective.penalty is not None:
        raise UnsupportedObjectiveError(
            f"penalty={objective.penalty.name!r} (WDPO) is not supported inside TRL's DPOTrainer: the "
            "Wasserstein penalty needs the gradient of each loss with respect to the input "
            "embeddings, i.e. an extra backward (or finite-difference) pass per micro-batch that "
            "TRL's training step does not make. Use `dralign train --method wdpo`, or the same "
            "objective without the penalty (e.g. objective='dpo' or 'kldpo')")
    if _setting(args, "use_weighting"):
        raise UnsupportedObjectiveError(
            "DPOConfig.use_weighting=True (WPO weighting) is not supported with a dralign "
            "objective: it multiplies TRL's per-pair losses, which the objective replaces. Set "
            "use_weighting=False, or give per-row weights in a `weight` column")


# ---------------------------------------------------------------------------- extra columns
@dataclass
class ObjectiveColumns:
    """The dataset columns that reach the objective and how a list of rows becomes tensors.

    weight:      per-row data weight w ≥ 0 (ℓ_i enters aggregation as w_i·ℓ_i).
    group:       group DRO's group; integer ids, or names mapped through `group_ids`.
    ratio:       DoRA's density ratio h per row.
    target_prob: P(target | x, y) per row, used when there is no `ratio`: h = p / target_prior.
    """

    weight: str | None = None
    group: str | None = None
    ratio: str | None = None
    target_prob: str | None = None
    target_prior: float | None = None
    group_ids: dict[str, int] | None = None
    num_groups: int | None = None  # group DRO's initial state (q uniform over these groups)

    @property
    def names(self) -> list[str]:
        return [c for c in (self.weight, self.group, self.ratio, self.target_prob) if c]

    def tensors(self, rows: Sequence[Mapping]) -> dict[str, torch.Tensor]:
        """The `dralign_*` batch entries for `rows`."""
        out = {}
        if self.weight:
            out["dralign_weight"] = torch.tensor([self._number(r, self.weight) for r in rows])
        if self.group:
            out["dralign_group"] = torch.tensor([self._group(r) for r in rows], dtype=torch.long)
        if self.ratio:
            out["dralign_ratio"] = torch.tensor([self._number(r, self.ratio) for r in rows])
        elif self.target_prob:
            probs = torch.tensor([self._number(r, self.target_prob) for r in rows])
            if ((probs < 0) | (probs > 1)).any():
                raise ValueError(f"column {self.target_prob!r}: a value is not in [0, 1]")
            out["dralign_ratio"] = probs / self.target_prior
        return out

    @staticmethod
    def _number(row, column) -> float:
        value = row.get(column)
        try:
            x = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"column {column!r}: a row has {value!r}, not a number; every row "
                             "needs one for this objective") from None
        if not math.isfinite(x):
            raise ValueError(f"column {column!r}: a row has the non-finite value {value!r}")
        return x

    def _group(self, row) -> int:
        value = row.get(self.group)
        if self.group_ids is None:
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"column {self.group!r}: a row has {value!r}, not a group id >= 0")
            return value
        if str(value) not in self.group_ids:
            raise ValueError(f"column {self.group!r}: group {value!r} is not one of the training "
                             f"data's groups ({', '.join(self.group_ids)})")
        return self.group_ids[str(value)]


def _column_names(dataset) -> list[str]:
    names = getattr(dataset, "column_names", None)
    return list(names) if names is not None else list(next(iter(dataset)).keys())


def _column_values(dataset, column) -> list | None:
    """All values of a column of a map-style dataset (None for an iterable one)."""
    return list(dataset[column]) if isinstance(dataset, datasets.Dataset) else None


def plan_columns(objective: Objective, train_dataset, eval_datasets: Sequence = (), *,
                 weight_column: str | None = "weight", group_column: str | None = "group",
                 ratio_column: str | None = "ratio",
                 target_prob_column: str | None = "target_prob") -> ObjectiveColumns:
    """Which columns the objective reads, checked against the datasets before TRL tokenises.

    `weight` is used whenever the training data has it; `group` and `ratio`/`target_prob` only
    for objectives that use them, and then every dataset must have them. String groups are
    numbered in sorted order over the training data, which also sets group DRO's `num_groups`.
    """
    columns = ObjectiveColumns()
    names = _column_names(train_dataset)
    label = f"objective (coupling={objective.coupling!r}, robust={objective.robust!r})"
    if weight_column and weight_column in names:
        if objective.components.coupling.sorts:
            raise UnsupportedObjectiveError(
                f"the training data has a {weight_column!r} column, but coupling="
                f"{objective.coupling!r} compares sorted quantiles, not rows, so per-row weights "
                "cannot apply. Drop the column, or pass weight_column=None to ignore it")
        columns.weight = weight_column
    if objective.uses_group:
        if not group_column or group_column not in names:
            raise UnsupportedObjectiveError(
                f"{label} needs a group per row: the training data has no {group_column!r} column "
                "(pass group_column=<its name>)")
        columns.group = group_column
        values = _column_values(train_dataset, group_column)
        if values is not None:
            if not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
                columns.group_ids = {g: i for i, g in enumerate(sorted({str(v) for v in values}))}
                count = len(columns.group_ids)
            else:
                count = max(values) + 1
            columns.num_groups = count
    if objective.uses_ratio:
        if ratio_column and ratio_column in names:
            columns.ratio = ratio_column
        elif target_prob_column and target_prob_column in names:
            values = _column_values(train_dataset, target_prob_column)
            if values is None:
                raise UnsupportedObjectiveError(
                    f"{label}: a {target_prob_column!r} column needs the training set's mean as the "
                    "target prior, which an IterableDataset cannot give; add a `ratio` column")
            columns.target_prob = target_prob_column
            columns.target_prior = sum(ObjectiveColumns._number({"p": v}, "p") for v in values) / len(values)
            if not columns.target_prior > 0:
                raise ValueError(f"column {target_prob_column!r} averages to 0: no target rows")
        else:
            raise UnsupportedObjectiveError(
                f"{label} needs a density ratio per row: the training data has neither a "
                f"{ratio_column!r} nor a {target_prob_column!r} column (see `dralign ratio fit`)")
    required = [c for c in (columns.group, columns.ratio or columns.target_prob) if c]
    for dataset in eval_datasets:
        missing = [c for c in required if c not in _column_names(dataset)]
        if missing:
            raise UnsupportedObjectiveError(f"{label}: an eval dataset lacks the column(s) "
                                            f"{', '.join(map(repr, missing))}")
    return columns


class ObjectiveColumnsCollator:
    """Wraps TRL's (or the user's) collator: strips the objective's columns from each row,
    collates the rest with the wrapped collator, then adds them as `dralign_*` tensors, which
    `DPOTrainer` hands to the objective and never to the model."""

    def __init__(self, collator: Callable, columns: ObjectiveColumns):
        self.collator, self.columns = collator, columns

    def __call__(self, rows: list[dict]) -> dict:
        extra = self.columns.tensors(rows)
        strip = set(self.columns.names)
        if strip:
            rows = [{k: v for k, v in row.items() if k not in strip} for row in rows]
        batch = self.collator(rows)
        batch.update(extra)
        return batch


def _split_meta(inputs: Mapping) -> tuple[dict, dict]:
    """(TRL's batch without `dralign_*` keys, {objective keyword: tensor})."""
    meta = {name: inputs[key] for key, name in META_KEYS.items() if key in inputs}
    return {k: v for k, v in inputs.items() if k not in META_KEYS}, meta


# ---------------------------------------------------------------------------- log-probs
def sequence_logps(per_token_logps: torch.Tensor, mask: torch.Tensor,
                   ld_alpha: float | None = None) -> torch.Tensor:
    """Completion log-prob per sequence, as TRL defines it: the sum over completion tokens.

    per_token_logps, mask: [2B, T] for the batch [chosen; rejected]. With `ld_alpha` (LD-DPO),
    tokens past the shorter completion of each pair count `ld_alpha` times.
    """
    mask = mask.to(per_token_logps.dtype)
    if ld_alpha is None:
        return (per_token_logps * mask).sum(dim=1)
    position = mask.cumsum(dim=1)
    lengths = mask.sum(dim=1)
    chosen, rejected = lengths.chunk(2)
    shared = torch.minimum(chosen, rejected).repeat(2).unsqueeze(1)
    token_weight = torch.where(position > shared, ld_alpha, 1.0) * mask
    return (per_token_logps * token_weight).sum(dim=1)


# ---------------------------------------------------------------------------- the trainer
_TRL_INTERNALS = ("ld_alpha", "precompute_ref_logps", "ref_model", "aux_loss_enabled",
                  "router_aux_loss_coef", "_metrics", "_total_train_tokens", "_tp_size",
                  "compute_ref_log_probs", "_compute_loss")


def _check_trl_internals(trainer) -> None:
    """The override reads these attributes of TRL 1.16's DPOTrainer; say so if a TRL lacks one."""
    missing = [name for name in _TRL_INTERNALS if not hasattr(trainer, name)]
    if missing:
        import trl

        raise RuntimeError(f"dralign.integrations.trl was written against TRL 1.16; TRL "
                           f"{trl.__version__}'s DPOTrainer lacks {', '.join(missing)}")


class DPOTrainer(_TRLDPOTrainer):
    """`trl.DPOTrainer` with its loss replaced by a dralign objective.

    Takes every argument of `trl.DPOTrainer`, plus (keyword only):
        objective:        a `dralign.Objective`, a preset name ("kldpo", "dora", ...), or None for
                          TRL's `loss_type` mapped to its preset (see the module docstring).
        objective_kwargs: preset parameters, e.g. {"tau": 0.5}; β defaults to `args.beta`.
        weight_column, group_column, ratio_column, target_prob_column: dataset columns carrying
                          per-row weights, groups and density ratios (None disables one).

    The objective runs per micro-batch on each process (dralign's `local` mode, TRL's own
    semantics). The objective is `trainer.dralign_objective`; its state (group DRO's q) is saved
    with each checkpoint and restored by `train(resume_from_checkpoint=...)`.
    """

    def __init__(self, *args, objective: Objective | str | None = None,
                 objective_kwargs: Mapping | None = None, weight_column: str | None = "weight",
                 group_column: str | None = "group", ratio_column: str | None = "ratio",
                 target_prob_column: str | None = "target_prob", **kwargs):
        bound = inspect.signature(_TRLDPOTrainer.__init__).bind(self, *args, **kwargs).arguments
        config = bound.get("args")
        self.dralign_objective = resolve_objective(objective, objective_kwargs, config)
        check_supported(self.dralign_objective, config)
        train_dataset, eval_dataset = bound.get("train_dataset"), bound.get("eval_dataset")
        self.objective_columns = ObjectiveColumns()
        if train_dataset is not None:  # else TRL raises its own error
            evals = (list(eval_dataset.values()) if isinstance(eval_dataset, Mapping)
                     else [] if eval_dataset is None else [eval_dataset])
            self.objective_columns = plan_columns(
                self.dralign_objective, train_dataset, evals, weight_column=weight_column,
                group_column=group_column, ratio_column=ratio_column,
                target_prob_column=target_prob_column)
        super().__init__(*args, **kwargs)
        _check_trl_internals(self)
        self.beta = self.dralign_objective.beta
        self.dralign_state = self.dralign_objective.init_state(self.objective_columns.num_groups) \
            if self.objective_columns.num_groups else {}  # explicit objective state (group DRO's q)
        self.data_collator = ObjectiveColumnsCollator(self.data_collator, self.objective_columns)
        self._warn_local_semantics()

    def _warn_local_semantics(self) -> None:
        args = self.args
        effective = args.per_device_train_batch_size * args.gradient_accumulation_steps * args.world_size
        if self.dralign_objective.couples_examples and effective > args.per_device_train_batch_size:
            warnings.warn(
                f"the objective (coupling={self.dralign_objective.coupling!r}, robust="
                f"{self.dralign_objective.robust!r}) couples the examples of a batch; inside TRL's "
                f"DPOTrainer it is computed per micro-batch of {args.per_device_train_batch_size} "
                f"rows on each process (dralign's `local` mode), not over the effective batch of "
                f"{effective}. For the exact effective-batch objective use `dralign train`.",
                UserWarning, stacklevel=3)

    # -- columns: keep the objective's through TRL's `remove_unused_columns`
    def _set_signature_columns_if_needed(self):
        super()._set_signature_columns_if_needed()
        extra = [c for c in self.objective_columns.names if c not in self._signature_columns]
        self._signature_columns = list(self._signature_columns) + extra

    def compute_ref_log_probs(self, model, inputs):
        """TRL's reference log-probs, with the `dralign_*` entries kept away from the model."""
        return super().compute_ref_log_probs(model, _split_meta(inputs)[0])

    # -- the loss
    def _reference_logps(self, inputs) -> torch.Tensor:
        """[ref chosen; ref rejected] summed log-probs, from TRL's precomputed columns or its
        reference (a separate model, or the PEFT base with the adapter disabled)."""
        if self.precompute_ref_logps:
            ref = torch.cat([inputs["ref_chosen_logps"], inputs["ref_rejected_logps"]])
        else:
            model = self.ref_model if self.ref_model is not None else self.model
            ref = torch.cat(self.compute_ref_log_probs(model, inputs))
        return ref.to(self.accelerator.device).detach()

    def _compute_loss(self, model, inputs, return_outputs):
        mode = "train" if self.model.training else "eval"
        inputs, meta = _split_meta(inputs)
        forward = {k: v for k, v in inputs.items() if k not in _TRL_NON_MODEL_KEYS}
        forward["use_cache"] = False
        if self.aux_loss_enabled:
            forward["output_router_logits"] = True
        completion_mask = inputs["completion_mask"]
        scored = completion_mask[:, 1:]  # the tokens whose log-prob the model predicts
        labels = inputs["input_ids"].masked_fill(completion_mask == 0, -100)
        outputs = model(**forward, labels=labels, fused_lm_head=True)
        logps = sequence_logps(outputs.log_probs[:, -scored.size(1):], scored, self.ld_alpha)
        ref = self._reference_logps(inputs).to(logps.dtype)
        if self.dralign_objective.length_normalize:
            tokens = scored.sum(dim=1).clamp(min=1).to(logps.dtype)
            logps, ref = logps / tokens, ref / tokens
        pc, pr = logps.chunk(2)
        rc, rr = ref.chunk(2)

        if mode == "train" and self.dralign_objective.aggregator.stateful:
            self._advance_objective_state(pc, pr, rc, rr, meta)
        out = self.dralign_objective(pc, pr, rc, rr, state=self.dralign_state, update_state=False,
                                     **meta)
        loss = out.loss
        if self.aux_loss_enabled:
            loss = loss + self.router_aux_loss_coef * outputs.aux_loss
            self._metrics[mode]["aux_loss"].append(
                self.accelerator.gather(outputs.aux_loss.detach().reshape(1)).mean().item())
        self._record_metrics(mode, inputs, outputs, scored, (pc, pr, rc, rr), out, meta)

        if return_outputs:  # logits for `compute_metrics`: the fused head does not build them
            with torch.no_grad():
                outputs = model(**forward)
            return loss, outputs
        return loss

    def _advance_objective_state(self, pc, pr, rc, rr, meta) -> None:
        """Advance a stateful aggregator (group DRO's q) from this micro-batch's losses on all
        processes, so that every process keeps the same state."""
        with torch.no_grad():
            probe = self.dralign_objective(pc.detach(), pr.detach(), rc, rr, state=self.dralign_state,
                                           update_state=False, **meta)
            losses = probe.losses
            if "weight" in meta:
                losses = losses * meta["weight"].to(losses.dtype)
            group = meta.get("group")
            if self.accelerator.num_processes > 1:
                losses = self.accelerator.gather(losses)
                group = None if group is None else self.accelerator.gather(group)
            self.dralign_state = self.dralign_objective.aggregator.update(
                losses, group=group, state=self.dralign_state)

    def _record_metrics(self, mode, inputs, outputs, scored, logps, out, meta) -> None:
        """TRL's metric names (gathered over processes like TRL), then the objective's own."""
        acc, record = self.accelerator, self._metrics[mode]
        pc, pr, rc, rr = (t.detach() for t in logps)

        def pooled(total, count) -> float:  # Σ total / Σ count over processes
            both = acc.gather(torch.stack([total.float(), count.float()]).reshape(1, 2)).sum(dim=0)
            return (both[0] / both[1]).item() if both[1] > 0 else 0.0

        length = scored.size(1)
        chosen_mask, rejected_mask = scored.bool().chunk(2)
        if outputs.entropy is not None:
            record["entropy"].append(pooled((outputs.entropy[:, -length:] * scored).sum(), scored.sum()))
        if mode == "train":
            tokens = acc.gather(inputs["attention_mask"].sum().reshape(1)).sum().item()
            self._total_train_tokens += tokens // self._tp_size
        record["num_tokens"] = [self._total_train_tokens]
        if outputs.mean_logits is not None:
            chosen_logits, rejected_logits = outputs.mean_logits[:, -length:].chunk(2)
            record["logits/chosen"].append(pooled(chosen_logits[chosen_mask].sum(), chosen_mask.sum()))
            record["logits/rejected"].append(pooled(rejected_logits[rejected_mask].sum(), rejected_mask.sum()))
        if outputs.is_top1 is not None:
            top1 = outputs.is_top1[:, -length:].chunk(2)[0]
            record["mean_token_accuracy"].append(pooled((top1 & chosen_mask).sum(), chosen_mask.sum()))

        beta = self.dralign_objective.beta
        chosen, rejected = acc.gather(beta * (pc - rc)), acc.gather(beta * (pr - rr))
        record["rewards/chosen"].append(chosen.mean().item())
        record["rewards/rejected"].append(rejected.mean().item())
        record["rewards/margins"].append((chosen - rejected).mean().item())
        record["rewards/accuracies"].append((chosen > rejected).float().mean().item())
        record["logps/chosen"].append(acc.gather(pc).mean().item())
        record["logps/rejected"].append(acc.gather(pr).mean().item())
        for name, value in out.metric_tensors.items():
            if name not in _TRL_METRICS:
                record[name].append(acc.gather(torch.as_tensor(value).float().reshape(1)).mean().item())
        if "ratio" in meta:
            record["ratio/mean"].append(acc.gather(meta["ratio"].float()).mean().item())

    # -- the objective's state in checkpoints
    def _save_checkpoint(self, model, trial):
        super()._save_checkpoint(model, trial)
        state = self.dralign_state
        if state and self.args.should_save:
            folder = os.path.join(self._get_output_dir(trial=trial),
                                  f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}")
            path = os.path.join(folder, OBJECTIVE_STATE_FILE)
            torch.save(state, path + ".tmp")
            os.replace(path + ".tmp", path)

    def _load_optimizer_and_scheduler(self, checkpoint):
        super()._load_optimizer_and_scheduler(checkpoint)
        path = None if checkpoint is None else os.path.join(checkpoint, OBJECTIVE_STATE_FILE)
        if path is not None and os.path.exists(path):
            self.dralign_state = dict(torch.load(path, weights_only=True))
