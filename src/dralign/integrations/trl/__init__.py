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
  `target_prob` (DoRA's density ratio h, or P(target | x, y) turned into h = p / π_T with π_T
  the mean p over the training set, for training and eval rows alike) are kept through TRL's `remove_unused_columns`, stripped from the rows before
  TRL's collator runs, and added to the batch as `dralign_*` tensors that go to the objective,
  never to the model. Column names are arguments of `DPOTrainer`.
- Metadata semantics (group numbering, the target prior, h) are dralign's own, from
  `dralign.data.metadata`, so they match `dralign train`; so is the log-prob reduction
  (`dralign.modeling.completion_logps`) and the length normalisation (`PairLogps.reduce`).
- Semantics: the objective is computed per micro-batch on each process, as TRL computes its
  own losses. That is dralign's `local` mode: robust weights (KLDPO, DRO, DoRA, CVaR, ...),
  AOT's sorting and group statistics see `per_device_train_batch_size` rows, not the effective
  batch. For the exact effective-batch objective use `dralign train` (docs/design.md,
  "Global batch"). Group DRO's q
  advances once per micro-batch from the losses of every process's micro-batch, so all
  processes keep the same q; it is saved in each checkpoint (`dralign_objective.pt`) and
  restored on resume.
- TRL's own loss settings: with an objective given, `loss_type`, `loss_weights`,
  `f_divergence_type`/`f_alpha_divergence_coef` are ignored with a warning; `beta` is the
  objective's β (a preset name takes `args.beta` unless `objective_kwargs` sets it), and
  `label_smoothing` feeds the presets that have ε (cdpo, rdpo, aot). Without an objective,
  TRL's single `loss_type` is mapped to its dralign preset by the one translation
  `dralign.objectives.trl.trl_loss` (that of a DPOConfig YAML too; `TRL_LOSS_PRESETS`, with
  `f_divergence_type` mapped to the score), so the import alone changes nothing; loss types
  dralign does not have are refused.
- Logs: TRL's metrics (`rewards/chosen|rejected|margins|accuracies`, `logps/chosen|rejected`,
  `entropy`, `logits/*`, `mean_token_accuracy`, `num_tokens`) plus dralign's robust ones from
  the objective (`robust/ess`, `robust/weight_max`) and `ratio/mean` when ratios are used.

Refused, with the reason: unpaired objectives (`aot-unpaired`), WDPO's Wasserstein penalty,
TRL's `use_weighting` (WPO), per-row weights with sorting couplings, and a missing `group` /
`ratio` column for an objective that needs one.

Modules: `objective` (which dralign objective replaces TRL's loss, and what is refused),
`data` (the extra columns and the collator), `trainer` (the `DPOTrainer` subclass).
"""

from __future__ import annotations

from ...objectives.trl import TRL_DIVERGENCES, TRL_LOSS_PRESETS
from .data import META_KEYS, ObjectiveColumns, ObjectiveColumnsCollator, plan_columns
from .objective import (
    DralignDPOConfig,
    UnsupportedObjectiveError,
    check_supported,
    objective_from_trl_config,
    resolve_objective,
)
from .trainer import OBJECTIVE_STATE_FILE, DPOTrainer

__all__ = [
    "DPOTrainer",
    "DralignDPOConfig",
    "META_KEYS",
    "OBJECTIVE_STATE_FILE",
    "ObjectiveColumns",
    "ObjectiveColumnsCollator",
    "TRL_DIVERGENCES",
    "TRL_LOSS_PRESETS",
    "UnsupportedObjectiveError",
    "check_supported",
    "objective_from_trl_config",
    "plan_columns",
    "resolve_objective",
]
