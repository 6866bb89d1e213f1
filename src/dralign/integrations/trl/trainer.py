"""`DPOTrainer`: TRL's trainer with its loss replaced by a dralign objective."""

from __future__ import annotations

import inspect
import os
import warnings
from collections.abc import Mapping

import torch

from ...modeling import SequenceLogps, completion_logps, split_pairs
from ...objectives import Objective, preference_accuracy
from .data import ObjectiveColumns, ObjectiveColumnsCollator, plan_columns, split_meta
from .objective import check_supported, resolve_objective

try:
    from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR
    from trl import DPOTrainer as _TRLDPOTrainer
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("dralign.integrations.trl needs TRL: pip install 'dralign[trl]'") from exc

OBJECTIVE_STATE_FILE = "dralign_objective.pt"

_TRL_NON_MODEL_KEYS = ("completion_mask", "ref_chosen_logps", "ref_rejected_logps")
_TRL_METRICS = (
    "rewards/chosen",
    "rewards/rejected",
    "rewards/margins",
    "rewards/accuracies",
    "logps/chosen",
    "logps/rejected",
)
_TRL_INTERNALS = (
    "ld_alpha",
    "precompute_ref_logps",
    "ref_model",
    "aux_loss_enabled",
    "router_aux_loss_coef",
    "_metrics",
    "_total_train_tokens",
    "_tp_size",
    "compute_ref_log_probs",
    "_compute_loss",
)


def _check_trl_internals(trainer) -> None:
    """The override reads these attributes of TRL 1.16's DPOTrainer; say so if a TRL lacks one."""
    missing = [name for name in _TRL_INTERNALS if not hasattr(trainer, name)]
    if missing:
        import trl

        raise RuntimeError(
            f"dralign.integrations.trl was written against TRL 1.16; TRL "
            f"{trl.__version__}'s DPOTrainer lacks {', '.join(missing)}"
        )


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

    def __init__(
        self,
        *args,
        objective: Objective | str | None = None,
        objective_kwargs: Mapping | None = None,
        weight_column: str | None = "weight",
        group_column: str | None = "group",
        ratio_column: str | None = "ratio",
        target_prob_column: str | None = "target_prob",
        **kwargs,
    ):
        bound = inspect.signature(_TRLDPOTrainer.__init__).bind(self, *args, **kwargs).arguments
        config = bound.get("args")
        self.dralign_objective = resolve_objective(objective, objective_kwargs, config)
        check_supported(self.dralign_objective, config)
        train_dataset, eval_dataset = bound.get("train_dataset"), bound.get("eval_dataset")
        self.objective_columns = ObjectiveColumns()
        if train_dataset is not None:  # else TRL raises its own error
            evals = (
                list(eval_dataset.values())
                if isinstance(eval_dataset, Mapping)
                else []
                if eval_dataset is None
                else [eval_dataset]
            )
            self.objective_columns = plan_columns(
                self.dralign_objective,
                train_dataset,
                evals,
                weight_column=weight_column,
                group_column=group_column,
                ratio_column=ratio_column,
                target_prob_column=target_prob_column,
            )
        super().__init__(*args, **kwargs)
        _check_trl_internals(self)
        self.beta = self.dralign_objective.beta
        groups = self.objective_columns.num_groups  # explicit objective state (group DRO's q)
        self.dralign_state = self.dralign_objective.init_state(groups) if groups else {}
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
                UserWarning,
                stacklevel=3,
            )

    # -- columns: keep the objective's through TRL's `remove_unused_columns`
    def _set_signature_columns_if_needed(self):
        super()._set_signature_columns_if_needed()
        extra = [c for c in self.objective_columns.names if c not in self._signature_columns]
        self._signature_columns = list(self._signature_columns) + extra

    def compute_ref_log_probs(self, model, inputs):
        """TRL's reference log-probs, with the `dralign_*` entries kept away from the model."""
        return super().compute_ref_log_probs(model, split_meta(inputs)[0])

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
        inputs, meta = split_meta(inputs)
        forward = {k: v for k, v in inputs.items() if k not in _TRL_NON_MODEL_KEYS}
        forward["use_cache"] = False
        if self.aux_loss_enabled:
            forward["output_router_logits"] = True
        completion_mask = inputs["completion_mask"]
        scored = completion_mask[:, 1:]  # the tokens whose log-prob the model predicts
        labels = inputs["input_ids"].masked_fill(completion_mask == 0, -100)
        outputs = model(**forward, labels=labels, fused_lm_head=True)
        # TRL's summed log-probs (its fused head, its `ld_alpha`), reduced as dralign reduces them
        policy = completion_logps(outputs.log_probs[:, -scored.size(1) :], scored, ld_alpha=self.ld_alpha)
        reference = SequenceLogps(self._reference_logps(inputs).to(policy.sum.dtype), policy.count)
        ln = self.dralign_objective.length_normalize  # the `ipo` preset, like TRL's ipo loss
        pc, pr = split_pairs(policy).reduce(ln)
        rc, rr = split_pairs(reference).reduce(ln)

        if mode == "train" and self.dralign_objective.aggregator.stateful:
            self._advance_objective_state(pc, pr, rc, rr, meta)
        out = self.dralign_objective(pc, pr, rc, rr, state=self.dralign_state, update_state=False, **meta)
        loss = out.loss
        if self.aux_loss_enabled:
            loss = loss + self.router_aux_loss_coef * outputs.aux_loss
            self._metrics[mode]["aux_loss"].append(
                self.accelerator.gather(outputs.aux_loss.detach().reshape(1)).mean().item()
            )
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
            probe = self.dralign_objective(
                pc.detach(), pr.detach(), rc, rr, state=self.dralign_state, update_state=False, **meta
            )
            losses = probe.losses
            if "weight" in meta:
                losses = losses * meta["weight"].to(losses.dtype)
            group = meta.get("group")
            if self.accelerator.num_processes > 1:
                losses = self.accelerator.gather(losses)
                group = None if group is None else self.accelerator.gather(group)
            self.dralign_state = self.dralign_objective.aggregator.update(losses, group=group, state=self.dralign_state)

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
        record["rewards/accuracies"].append(preference_accuracy(chosen, rejected).mean().item())
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
            folder = os.path.join(
                self._get_output_dir(trial=trial), f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
            )
            path = os.path.join(folder, OBJECTIVE_STATE_FILE)
            torch.save(state, path + ".tmp")
            os.replace(path + ".tmp", path)

    def _load_optimizer_and_scheduler(self, checkpoint):
        super()._load_optimizer_and_scheduler(checkpoint)
        path = None if checkpoint is None else os.path.join(checkpoint, OBJECTIVE_STATE_FILE)
        if path is not None and os.path.exists(path):
            self.dralign_state = dict(torch.load(path, weights_only=True))
