"""The training loop: preference rows to a saved, resumable aligned model, on 🤗 Accelerate.

One optimizer step, top to bottom (`Trainer.step`):

1. this process takes its share of the effective batch (batch_size × grad_accum × processes),
   split into `grad_accum` micro-batches;
2. exact global batch (objectives that couple examples, accumulation or several processes):
   a pass computes every micro-batch's policy log-probs (no-grad, except the first micro-batch,
   whose graph is kept for its backward), they are all-gathered, and the objective is
   linearised once over the whole effective batch (`Objective.coefficients`); each micro-batch
   then backpropagates Σ c·log π — the sum is the full-batch gradient;
   local (or an objective that does not couple examples): each micro-batch backpropagates
   its own objective / grad_accum, as TRL and the papers' code do;
3. non-finite loss or gradient norm: the step is skipped and counted (abort after
   `max_bad_steps` in a row); otherwise clip, step, schedule.
Batches are collated in the plain layout (chosen rows, then rejected rows) or, with prefix
sharing (`--prefix-sharing`, `choose_prefix_sharing`), one row [prompt | chosen | rejected] per
pair, so the prompt is computed once; the log-probs are the same up to float rounding, and
every path (reference cache or live reference, exact global batch, LoRA, gradient
checkpointing, evaluation) reads either layout. WDPO's penalty and unpaired objectives keep the
plain layout.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import set_seed

from ..config import atomic_write_text, save_yaml, to_flat_dict
from ..data import ColumnMap, PreferenceData, batch_indices, load_rows, tokenize_pairs, tokenize_unpaired
from ..data.collate import collate_pairs, collate_shared_pairs, collate_unpaired
from ..modeling import (AdapterDisabledReference, CachedReference, FrozenReference, PairLogps,
                        ReferenceCache, apply_lora, build_reference_cache, load_model,
                        load_tokenizer, model_fingerprint, pair_logps, sequence_logps)
from ..modeling.logps import prefix_sharing_support
from ..objectives import Objective
from .config import TrainConfig
from .penalty import check_penalty_mode, penalized_backward, penalty_active
from .schedule import make_scheduler


class TrainingError(RuntimeError):
    """Training cannot go on; the message says why and what to do."""


@dataclass
class TrainerState:
    """Counters saved with every checkpoint (with the model, optimizer, scheduler, RNG and
    objective state, by Accelerate)."""

    step: int = 0
    skipped_steps: int = 0
    consecutive_bad: int = 0

    def state_dict(self):
        return dict(self.__dict__)

    def load_state_dict(self, state):
        self.__dict__.update(state)


@dataclass
class TrainResult:
    output_dir: Path
    steps: int
    status: str  # "completed" or "interrupted"
    metrics: dict = field(default_factory=dict)
    skipped_steps: int = 0


# ----------------------------------------------------------------------------- data
def columns_of(cfg: TrainConfig) -> ColumnMap:
    d = cfg.data
    return ColumnMap(prompt=d.prompt_column, chosen=d.chosen_column, rejected=d.rejected_column,
                     completion=d.completion_column, label=d.label_column, weight=d.weight_column,
                     group=d.group_column, source=d.source_column, target_prob=d.target_prob_column,
                     ratio=d.ratio_column)


def load_data(cfg: TrainConfig, tokenizer, unpaired: bool, log=print
              ) -> tuple[PreferenceData, PreferenceData | None]:
    """Training and (optional) held-out data, tokenized, with their reports printed."""
    d = cfg.data
    if not d.data:
        raise TrainingError("no training data: pass --data FILE (or `data:` in --config)")
    tokenize = tokenize_unpaired if unpaired else tokenize_pairs
    kwargs = dict(columns=columns_of(cfg), on_bad_row=d.on_bad_row, max_length=d.max_length,
                  max_prompt_length=d.max_prompt_length, truncation_side=d.truncation_side)
    if not unpaired:
        kwargs["format"] = None if d.format == "auto" else d.format
    elif d.format not in ("auto", "unpaired"):
        raise TrainingError(f"method needs unpaired rows (prompt, completion, label), got --format {d.format}")
    rows = load_rows(d.data, subset=d.data_subset, split=d.data_split)
    eval_rows = None
    if d.eval_data or d.eval_split:
        eval_rows = load_rows(d.eval_data or d.data, subset=d.data_subset,
                              split=d.eval_split or d.data_split)
    elif d.eval_fraction > 0:
        g = torch.Generator().manual_seed(cfg.optim.seed)
        perm = torch.randperm(len(rows), generator=g).tolist()
        n_eval = max(1, int(round(d.eval_fraction * len(rows))))
        eval_rows = [rows[i] for i in sorted(perm[:n_eval])]
        rows = [rows[i] for i in sorted(perm[n_eval:])]
    train = tokenize(rows, tokenizer, **kwargs)
    log(f"train data: {train.report.summary()}")
    held_out = None
    if eval_rows is not None:
        held_out = tokenize(eval_rows, tokenizer, groups=train.group_names,
                            sources=train.source_names, **kwargs)
        log(f"eval data: {held_out.report.summary()}")
    return train, held_out


def fit_ratios_inline(data: PreferenceData, tokenizer, model_name: str, target: list[str],
                      log=print) -> torch.Tensor:
    """DoRA's density ratios fitted now: cross-fitted P(target | x, y) on the start model's
    features, from each example's source (DESIGN §4)."""
    from ..ratio import fit_density_ratios

    missing = [e for e in data.examples if e.source < 0]
    if missing:
        raise TrainingError(f"{missing[0].file} row {missing[0].row}: no source for inline density ratios "
                            f"({len(missing)} rows lack one; see --source-column)")
    decode = lambda ids: tokenizer.decode(list(ids), skip_special_tokens=True)
    rows = [{"prompt": decode(e.prompt_ids), "chosen": decode(e.chosen_ids), "rejected": decode(e.rejected_ids),
             "source": data.source_names[e.source]} for e in data.examples]
    fit = fit_density_ratios(rows, target=set(target), model=load_model(model_name, dtype="float32"),
                             tokenizer=tokenizer)
    log(f"density ratios: {fit.summary()}")
    return torch.as_tensor(fit.weight, dtype=torch.float32)


def density_ratios(data: PreferenceData) -> torch.Tensor:
    """h per example: the `ratio` column, else target_prob / π_T with π_T estimated as the mean
    target probability (a calibrated classifier's mean equals the target prior)."""
    ratio = [e.ratio for e in data.examples]
    if all(r is not None for r in ratio):
        return torch.tensor(ratio, dtype=torch.float32)
    probs = [e.target_prob for e in data.examples]
    if all(p is not None for p in probs):
        p = torch.tensor(probs, dtype=torch.float32)
        return p / p.mean()
    missing = next(e for e, r, p in zip(data.examples, ratio, probs) if r is None and p is None)
    raise TrainingError(f"{missing.file} row {missing.row}: the method needs a density ratio per row "
                        "(`ratio` or `target_prob` column; see `dralign ratio fit`)")


# ----------------------------------------------------------------------------- log-probs
def batch_logps(model, batch: dict, unpaired: bool) -> PairLogps:
    """Policy log-probs of a batch: pairs in one forward over [chosen; rejected]; unpaired
    completions split by label."""
    if not unpaired:
        return pair_logps(model, batch)
    seq = sequence_logps(model, batch["input_ids"], batch["attention_mask"], batch["completion_mask"])
    label = batch["label"]
    return PairLogps(seq.sum[label], seq.sum[~label], seq.count[label], seq.count[~label])


def reduce_logps(lp: PairLogps, length_normalize: bool) -> tuple[torch.Tensor, torch.Tensor]:
    if length_normalize:
        return lp.chosen_sum / lp.chosen_count.clamp(min=1), lp.rejected_sum / lp.rejected_count.clamp(min=1)
    return lp.chosen_sum, lp.rejected_sum


# ----------------------------------------------------------------------------- prefix sharing
# `auto` turns prefix sharing on when its estimated forward cost is at most this fraction of
# the plain layout's (measured: ≈ 8 % fewer token positions already gave ≈ 6 % on a tiny llama).
PREFIX_SHARING_MAX_COST = 0.95


def prefix_sharing_cost_ratio(model, data: PreferenceData) -> float:
    """Estimated forward FLOPs of the prefix-shared layout over the plain one (padding ignored).

    Per pair with prompt P and completions C, R: linear layers cost 2·N per token (N the
    parameters of the transformer blocks) over P+C+R tokens shared vs 2P+C+R plain; attention
    costs 4·h per (query, key) pair and layer over a dense (P+C+R)² shared vs (P+C)² + (P+R)²
    plain (masked pairs are computed too). The LM head is the same in both layouts.
    """
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    config = base.config.get_text_config() if hasattr(base.config, "get_text_config") else base.config
    hidden = getattr(config, "hidden_size", None) or getattr(config, "n_embd", None) or 0
    layers = getattr(config, "num_hidden_layers", None) or getattr(config, "n_layer", None) or 0
    head = {id(p) for m in (base.get_input_embeddings(), base.get_output_embeddings()) if m is not None
            for p in m.parameters()}
    body = sum(p.numel() for p in base.parameters() if id(p) not in head)
    shared = plain = 0.0
    for e in data.examples:
        p, c, r = len(e.prompt_ids), len(e.chosen_ids), len(e.rejected_ids)
        shared += 2 * body * (p + c + r) + 4 * hidden * layers * (p + c + r) ** 2
        plain += 2 * body * (2 * p + c + r) + 4 * hidden * layers * ((p + c) ** 2 + (p + r) ** 2)
    return shared / plain if plain else 1.0


def choose_prefix_sharing(setting: str, model, objective: Objective, data: PreferenceData,
                          penalized: bool) -> tuple[bool, str]:
    """(use prefix sharing?, why) for `--prefix-sharing` auto/on/off; raises TrainingError when
    `on` cannot be honoured exactly."""
    if setting == "off":
        return False, "off"
    if objective.unpaired:
        return False, "unpaired data has no chosen/rejected pair to share a prompt between"
    if penalized:
        reason = ("WDPO's penalty sums ||grad_z l_i||^2 over the chosen and the rejected row, each "
                  "with its own copy of the prompt's embeddings; a shared prefix has one copy, whose "
                  "gradient is the sum of the two, so the per-example penalty would change")
        if setting == "on":
            raise TrainingError(f"--prefix-sharing on is refused for the Wasserstein penalty: {reason}. "
                                "Use --prefix-sharing auto or off")
        return False, reason
    unsupported = prefix_sharing_support(model)
    if unsupported is not None:
        if setting == "on":
            raise TrainingError(f"--prefix-sharing on: {unsupported}. Use --prefix-sharing off, "
                                "or --attn-implementation sdpa/eager")
        return False, unsupported
    if setting == "on":
        return True, "on"
    ratio = prefix_sharing_cost_ratio(model, data)
    if ratio <= PREFIX_SHARING_MAX_COST:
        return True, f"auto: estimated forward cost {ratio:.2f}x the plain layout's"
    return False, f"auto: prompts too short to pay (estimated cost {ratio:.2f}x the plain layout's)"


# ----------------------------------------------------------------------------- the trainer
class Trainer:
    """Holds the run's pieces; `run()` trains, checkpoints and saves."""

    def __init__(self, cfg: TrainConfig, callbacks: list[Callable[[int, dict], None]] = ()):
        self.cfg = cfg
        self.callbacks = list(callbacks)
        o = cfg.optim
        self.accelerator = Accelerator(mixed_precision=o.mixed_precision,
                                       log_with=None if cfg.logging.report_to == "none" else cfg.logging.report_to,
                                       project_dir=o.output_dir)
        self.out = Path(o.output_dir)
        self.log = self.accelerator.print
        set_seed(o.seed)

        if not cfg.model.model:
            raise TrainingError("no model: pass --model PATH_OR_NAME (or `model:` in --config)")
        for name in (cfg.model.model, cfg.model.ref_model):
            if name and name.startswith((".", "/", "~")) and not Path(name).expanduser().exists():
                raise TrainingError(f"model folder {name} does not exist")
        self.objective = Objective.from_preset(cfg.method.method, **cfg.method.objective_kwargs())
        self.unpaired = self.objective.unpaired
        self.tokenizer = load_tokenizer(cfg.model.model)
        self.train_data, self.eval_data = load_data(cfg, self.tokenizer, self.unpaired, self.log)
        self.ratio = self.eval_ratio = None
        if self.objective.uses_ratio and cfg.data.ratio_target:
            self.ratio = fit_ratios_inline(self.train_data, self.tokenizer, cfg.model.model,
                                           cfg.data.ratio_target, self.log)
            if self.eval_data is not None:
                self.eval_ratio = fit_ratios_inline(self.eval_data, self.tokenizer, cfg.model.model,
                                                    cfg.data.ratio_target, self.log)
        elif self.objective.uses_ratio:
            self.ratio = density_ratios(self.train_data)
            self.eval_ratio = None if self.eval_data is None else density_ratios(self.eval_data)
        self.weighted = any(e.weight != 1.0 for e in self.train_data.examples)
        if self.objective.uses_group:
            if any(e.group < 0 for e in self.train_data.examples):
                bad = next(e for e in self.train_data.examples if e.group < 0)
                raise TrainingError(f"{bad.file} row {bad.row}: field '{cfg.data.group_column}': "
                                    f"method {cfg.method.method} needs a group for every row")
            self.objective.aggregator.num_groups = len(self.train_data.group_names)
        if self.weighted and self.objective.coupling != "paired":
            raise TrainingError(f"the data has per-row weights, but coupling "
                                f"{self.objective.coupling!r} compares sorted quantiles, not rows")

        world = self.accelerator.num_processes
        self.effective = o.batch_size * o.grad_accum * world
        self.steps_per_epoch = len(self.train_data) // self.effective
        if self.steps_per_epoch == 0:
            raise TrainingError(f"{len(self.train_data)} training examples are fewer than one effective "
                                f"batch ({o.batch_size} x {o.grad_accum} accumulation x {world} processes)")
        self.total_steps = o.max_steps or max(1, math.ceil(o.epochs * self.steps_per_epoch))
        couples = self.objective.couples_examples
        self.exact = (o.global_batch in ("auto", "exact") and couples and (o.grad_accum > 1 or world > 1))
        if o.global_batch == "exact" and not couples:
            self.log("note: --global-batch exact has nothing to do: the objective does not couple examples")

        self.model = load_model(cfg.model.model, dtype=cfg.model.dtype,
                                attn_implementation=cfg.model.attn_implementation,
                                gradient_checkpointing=cfg.model.gradient_checkpointing)
        if cfg.model.lora_r > 0:
            self.model = apply_lora(self.model, r=cfg.model.lora_r, alpha=cfg.model.lora_alpha,
                                    dropout=cfg.model.lora_dropout,
                                    target_modules=cfg.model.lora_target_modules)
        self.model.to(self.accelerator.device)
        self.penalized = penalty_active(self.objective)
        if self.penalized:
            check_penalty_mode(self.model, self.objective)
        self.prefix_sharing, why = choose_prefix_sharing(
            cfg.data.prefix_sharing, self.model, self.objective, self.train_data,
            self.penalized or self.objective.penalty == "wasserstein")
        if cfg.data.prefix_sharing != "off":
            self.log(f"prefix sharing {'on' if self.prefix_sharing else 'off'} ({why})")
        self.reference, self.eval_reference = self._references()

        params = [p for p in self.model.parameters() if p.requires_grad]
        if o.optimizer == "adamw":
            optimizer = torch.optim.AdamW(params, lr=o.lr, weight_decay=o.weight_decay)
        else:
            optimizer = torch.optim.SGD(params, lr=o.lr)
        scheduler = make_scheduler(optimizer, warmup_steps=o.warmup_steps,
                                   total_steps=self.total_steps, kind=o.scheduler)
        self.model, self.optimizer, self.scheduler = self.accelerator.prepare(self.model, optimizer, scheduler)
        self.state = TrainerState()
        self.accelerator.register_for_checkpointing(self.state, self.objective)
        self._stop_signal = None

    # ------------------------------------------------------------------ references
    def _references(self):
        """(training reference, eval reference): cached log-probs, or live models."""
        cfg, device = self.cfg, self.accelerator.device
        if cfg.model.ref_cache:
            ref_source = cfg.model.ref_model or cfg.model.model
            cache_dir = Path(cfg.model.ref_cache_dir or self.out / "ref_cache")
            ref_fp = model_fingerprint(ref_source)
            ref_model = None
            caches = []
            for data in (self.train_data, self.eval_data):
                if data is None:
                    caches.append(None)
                    continue
                # the values also depend on the dtype the reference is loaded in (and its kernel);
                # not on the batch layout: with or without prefix sharing they agree to float rounding
                fp = json.dumps({"reference": ref_fp, "data": data.fingerprint(),
                                 "length_normalize": False, "dtype": cfg.model.dtype,
                                 "attn_implementation": cfg.model.attn_implementation})
                cache = None
                if self.accelerator.is_main_process:
                    cache = ReferenceCache.load(cache_dir, fp)
                    if cache is None:
                        if ref_model is None:  # the start weights are the policy before training
                            ref_model = (load_model(cfg.model.ref_model, dtype=cfg.model.dtype).to(device)
                                         if cfg.model.ref_model else self.model)
                        cache = build_reference_cache(ref_model, data, self._collate, cache_dir, fp,
                                                      batch_size=cfg.optim.batch_size * 2,
                                                      device=device, log=self.log)
                    else:
                        self.log(f"reference log-probs read from {ReferenceCache.file_for(cache_dir, fp)}")
                self.accelerator.wait_for_everyone()
                cache = cache or ReferenceCache.load(cache_dir, fp)
                caches.append(cache)
            return tuple(None if c is None else CachedReference(c) for c in caches)
        if self.unpaired:
            raise TrainingError("aot-unpaired reads reference log-probs from the cache: drop --no-ref-cache")
        if cfg.model.ref_model:
            ref = FrozenReference(load_model(cfg.model.ref_model, dtype=cfg.model.dtype).to(device))
        elif cfg.model.lora_r > 0:
            ref = AdapterDisabledReference(self.model)
        else:
            ref = FrozenReference.from_policy(self.model)
        return ref, ref

    # ------------------------------------------------------------------ one step
    def _collate(self, data: PreferenceData, indices: list[int]) -> dict:
        """The batch of `indices`: prefix-shared pairs when prefix sharing is on, else the plain
        layout (see dralign.data.collate)."""
        examples = [data.examples[i] for i in indices]
        if data.kind != "pairs":
            return collate_unpaired(examples, data.pad_token_id)
        collate = collate_shared_pairs if self.prefix_sharing else collate_pairs
        return collate(examples, data.pad_token_id)

    def _epoch_order(self, epoch: int) -> list[list[int]]:
        """The epoch's effective batches (deterministic in seed and epoch), computed once per epoch
        rather than on every step; with --group-by-length, of similar lengths."""
        if getattr(self, "_order_cache", (None,))[0] != epoch:
            # grouped by prompt + longest completion in either layout, so that turning prefix
            # sharing on or off never changes which examples form a batch
            lengths = self.train_data.lengths() if self.cfg.data.group_by_length else None
            self._order_cache = (epoch, batch_indices(len(self.train_data), self.effective,
                                                      seed=self.cfg.optim.seed, epoch=epoch,
                                                      shuffle=True, drop_last=True,
                                                      group_by_length=lengths))
        return self._order_cache[1]

    def _micro_batches(self, step: int) -> list[dict]:
        o, acc = self.cfg.optim, self.accelerator
        epoch, position = divmod(step, self.steps_per_epoch)
        order = self._epoch_order(epoch)[position]
        if self.unpaired:  # AOT-unpaired needs both labels in every batch it sorts
            order = self._label_balanced(epoch)[position * self.effective:(position + 1) * self.effective]
        share = o.batch_size * o.grad_accum
        mine = order[acc.process_index * share:(acc.process_index + 1) * share]
        micro = [{k: v.to(acc.device) for k, v in self._collate(self.train_data, mine[i:i + o.batch_size]).items()}
                 for i in range(0, share, o.batch_size)]
        if self.unpaired:
            labels = [self.train_data[i].label for i in order]
            sorted_sets = ([labels] if self.exact else
                           [labels[i:i + o.batch_size] for i in range(0, len(labels), o.batch_size)])
            if any(all(part) or not any(part) for part in sorted_sets):
                raise TrainingError(
                    f"step {step + 1}: a {'batch' if self.exact else 'micro-batch'} holds only "
                    f"{'desirable' if all(sorted_sets[0]) else 'undesirable'} completions, but "
                    f"{self.cfg.method.method} compares the two sets: the data needs both labels, "
                    "and a larger --batch-size (or --global-batch exact) when one label is rare")
        return micro

    def _label_balanced(self, epoch: int) -> list[int]:
        """The epoch's shuffled order with each label spread evenly over it (a stable merge by
        position within its label), so every batch of unpaired data holds both labels."""
        if getattr(self, "_balanced", (None,))[0] != epoch:
            perm = np.random.default_rng([self.cfg.optim.seed, epoch]).permutation(len(self.train_data))
            rank, seen = [], {True: 0, False: 0}
            n = {lab: sum(e.label == lab for e in self.train_data.examples) for lab in (True, False)}
            for i in perm.tolist():
                lab = self.train_data[i].label
                rank.append(((seen[lab] + 0.5) / n[lab], i))
                seen[lab] += 1
            self._balanced = (epoch, [i for _, i in sorted(rank)])
        return self._balanced[1]

    def _metadata(self, batch: dict, ratio: torch.Tensor | None) -> dict:
        meta = {}
        if self.weighted:
            meta["weight"] = batch["weight"]
        if self.objective.uses_group:
            meta["group"] = batch["group"]
        if self.objective.uses_ratio:
            meta["ratio"] = ratio[batch["index"].cpu()].to(batch["index"].device)
        return meta

    def _logps(self, batch: dict):
        """(policy chosen, policy rejected, ref chosen, ref rejected) in the objective's units."""
        ln = self.objective.length_normalize
        with self.accelerator.autocast():
            pc, pr = reduce_logps(batch_logps(self.model, batch, self.unpaired), ln)
        rc, rr = reduce_logps(self.reference.logps(batch), ln)
        return pc, pr, rc, rr

    def _backward_local(self, micro: list[dict]):
        """Each micro-batch on its own objective (local semantics, or non-coupling objectives)."""
        metrics, loss = {}, 0.0
        for i, batch in enumerate(micro):
            with self._sync(i == len(micro) - 1):
                if self.penalized:
                    rc, rr = reduce_logps(self.reference.logps(batch), self.objective.length_normalize)
                    result = self._penalized(batch, rc, rr, meta=self._metadata(batch, self.ratio),
                                             scale=1.0 / len(micro))
                    out_loss, tensors = result.loss, result.metrics
                else:
                    pc, pr, rc, rr = self._logps(batch)
                    out = self.objective(pc, pr, rc, rr, **self._metadata(batch, self.ratio))
                    self.accelerator.backward(out.loss / len(micro))
                    out_loss, tensors = out.loss, out._metric_tensors
            loss += torch.as_tensor(out_loss).detach().float() / len(micro)
            for k, v in tensors.items():
                metrics[k] = metrics.get(k, 0.0) + torch.as_tensor(v).float() / len(micro)
        if self.accelerator.num_processes > 1:  # log the global batch's values, not process 0's
            loss = self.accelerator.reduce(torch.as_tensor(loss), reduction="mean")
            metrics = {k: self.accelerator.reduce(v, reduction="mean") for k, v in metrics.items()}
        return loss, metrics

    def _penalized(self, batch, rc, rr, **kwargs):
        """One micro-batch's forward/backward with WDPO's gradient penalty (train/penalty.py)."""
        acc = self.accelerator
        return penalized_backward(self.model, batch, rc, rr, self.objective,
                                  length_normalize=self.objective.length_normalize,
                                  backward=acc.backward, autocast=acc.autocast,
                                  no_sync=lambda: acc.no_sync(self.model), **kwargs)

    def _backward_exact(self, micro: list[dict]):
        """Statistics over the effective batch, then Σ c·log π per micro-batch.

        The statistics pass is no-grad, except for the first micro-batch (without a penalty,
        whose passes are its own): its graph is kept and backpropagated once the coefficients
        are known, so it is not computed twice. Memory stays one micro-batch's graph."""
        acc, ln = self.accelerator, self.objective.length_normalize
        rows, retained = [], None
        for i, batch in enumerate(micro):
            keep = i == 0 and not self.penalized
            with (self._sync(len(micro) == 1) if keep else torch.no_grad()):
                values, row = self._row_logps(batch)
            if keep:
                retained = values
            rows.append(row)
        local = {k: torch.cat([r[k] for r in rows]) for k in rows[0]}
        full = {k: acc.gather(v) for k, v in local.items()}
        if self.unpaired:
            label = full["label"]
            out, c_chosen, c_rejected = self.objective.coefficients(
                full["policy"][label], full["policy"][~label], full["ref"][label], full["ref"][~label])
            coef = torch.zeros_like(full["policy"])
            coef[label], coef[~label] = c_chosen, c_rejected
            coefs = [coef]
        else:
            meta = {k: full[k] for k in ("weight", "group", "ratio") if k in full}
            out, c_chosen, c_rejected = self.objective.coefficients(
                full["policy_chosen"], full["policy_rejected"], full["ref_chosen"], full["ref_rejected"], **meta)
            coefs = [c_chosen, c_rejected]
        n_local = next(iter(local.values())).shape[0]
        start = acc.process_index * n_local
        coefs = [c[start:start + n_local] * acc.num_processes for c in coefs]  # DDP averages
        if self.penalized:  # paired only (check_penalty_mode): weights p from the statistics pass
            weights = out.weights[start:start + n_local] * acc.num_processes
            offset, penalty = 0, []
            for i, batch in enumerate(micro):
                n = batch["index"].shape[0]
                with self._sync(i == len(micro) - 1):
                    rc, rr = reduce_logps(self.reference.logps(batch), ln)
                    result = self._penalized(batch, rc, rr, weights=weights[offset:offset + n])
                penalty.append(result.penalty.float())
                offset += n
            total = self.accelerator.reduce(sum(penalty), reduction="sum") / acc.num_processes
            return out.loss.float() + total, {**{k: v.float() for k, v in out._metric_tensors.items()},
                                              "penalty/wasserstein": total}
        offset = 0
        for i, batch in enumerate(micro):
            with self._sync(i == len(micro) - 1):
                values = retained if i == 0 else self._policy_values(batch)
                n = values[0].shape[0]
                surrogate = sum((c[offset:offset + n] * v.float()).sum() for c, v in zip(coefs, values))
                acc.backward(surrogate)
            offset += n
        return out.loss.float(), {k: v.float() for k, v in out._metric_tensors.items()}

    def _policy_values(self, batch: dict) -> tuple[torch.Tensor, ...]:
        """The policy's log-probs in the objective's units, as the exact mode's coefficients
        index them: (values [N],) for unpaired data, (chosen [B], rejected [B]) for pairs."""
        ln = self.objective.length_normalize
        with self.accelerator.autocast():
            if self.unpaired:
                seq = sequence_logps(self.model, batch["input_ids"], batch["attention_mask"],
                                     batch["completion_mask"])
                return (seq.sum / seq.count.clamp(min=1) if ln else seq.sum,)
            return reduce_logps(pair_logps(self.model, batch), ln)

    def _row_logps(self, batch: dict) -> tuple[tuple[torch.Tensor, ...], dict]:
        """(policy values as `_policy_values`, per-row detached values for the statistics pass)
        of one micro-batch."""
        ln = self.objective.length_normalize
        values = self._policy_values(batch)
        if self.unpaired:
            ref = self.reference.cache.lookup(batch["index"].cpu())
            policy = values[0].detach()
            ref_v = ref.chosen_sum / ref.chosen_count.clamp(min=1) if ln else ref.chosen_sum
            return values, {"policy": policy.float(), "ref": ref_v.float().to(policy.device),
                            "label": batch["label"]}
        rc, rr = reduce_logps(self.reference.logps(batch), ln)
        row = {"policy_chosen": values[0].detach().float(), "policy_rejected": values[1].detach().float(),
               "ref_chosen": rc.float(), "ref_rejected": rr.float()}
        row.update(self._metadata(batch, self.ratio))
        return values, row

    def _sync(self, last: bool):
        """Skip DDP's gradient all-reduce on all but the last micro-batch."""
        import contextlib
        return contextlib.nullcontext() if last else self.accelerator.no_sync(self.model)

    def step(self, step: int) -> dict:
        o = self.cfg.optim
        objective_state = {k: (v.clone() if torch.is_tensor(v) else v)
                           for k, v in self.objective.state_dict().items()}
        micro = self._micro_batches(step)
        loss, metrics = (self._backward_exact if self.exact else self._backward_local)(micro)
        params = [p for p in self.model.parameters() if p.requires_grad]
        if o.max_grad_norm > 0:
            grad_norm = self.accelerator.clip_grad_norm_(params, o.max_grad_norm)
        else:
            grads = [p.grad.norm() for p in params if p.grad is not None]
            grad_norm = torch.linalg.vector_norm(torch.stack(grads)) if grads else torch.tensor(0.0)
        finite = bool(torch.isfinite(loss)) and bool(torch.isfinite(torch.as_tensor(grad_norm)))
        if finite:
            self.optimizer.step()
            self.state.consecutive_bad = 0
        else:
            self.objective.load_state_dict(objective_state)
            self.state.skipped_steps += 1
            self.state.consecutive_bad += 1
            self.log(f"step {step + 1}: non-finite loss or gradient; step skipped "
                     f"({self.state.consecutive_bad} in a row)")
            if self.state.consecutive_bad >= o.max_bad_steps:
                raise TrainingError(f"{self.state.consecutive_bad} consecutive steps had a non-finite "
                                    f"loss or gradient (last at step {step + 1}); lower --lr, check the "
                                    "data, or use --mixed-precision no")
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        record = {"loss": float(loss), "grad_norm": float(grad_norm),
                  "lr": self.scheduler.get_last_lr()[0], "skipped": not finite}
        record.update({k: float(v) for k, v in metrics.items()})
        return record

    # ------------------------------------------------------------------ evaluation
    @torch.no_grad()
    def evaluate(self) -> dict:
        """The objective and TRL-style reward metrics over the whole held-out set."""
        if self.eval_data is None:
            return {}
        was_training = self.model.training
        self.model.eval()
        parts = []
        bs = self.cfg.optim.batch_size * 2
        for start in range(0, len(self.eval_data), bs):
            idx = list(range(start, min(start + bs, len(self.eval_data))))
            batch = {k: v.to(self.accelerator.device) for k, v in self._collate(self.eval_data, idx).items()}
            ln = self.objective.length_normalize
            with self.accelerator.autocast():
                pc, pr = reduce_logps(batch_logps(self.model, batch, self.unpaired), ln)
            rc, rr = reduce_logps(self.eval_reference.logps(batch), ln)
            meta = {}
            if self.objective.uses_group:
                meta["group"] = batch["group"]
            if self.objective.uses_ratio:
                meta["ratio"] = self.eval_ratio[batch["index"].cpu()]
            parts.append((pc.float().cpu(), pr.float().cpu(), rc.float().cpu(), rr.float().cpu(),
                          {k: v.cpu() for k, v in meta.items()}))
        self.model.train(was_training)
        cat = [torch.cat([p[i] for p in parts]) for i in range(4)]
        meta = {k: torch.cat([p[4][k] for p in parts]) for k in parts[0][4]}
        if "group" in meta and (meta["group"] < 0).any():
            meta.pop("group")
            return {}
        out = self.objective(*cat, update_state=False, **meta)
        return {"eval/loss": float(out.loss), **{f"eval/{k}": v for k, v in out.metrics.items()}}

    # ------------------------------------------------------------------ checkpoints
    def checkpoint_dir(self) -> Path:
        return self.out / "checkpoints"

    def save_checkpoint(self) -> Path:
        """Atomically: write into a temporary folder, then rename it to checkpoints/step-N."""
        acc = self.accelerator
        final = self.checkpoint_dir() / f"step-{self.state.step:08d}"
        tmp = self.checkpoint_dir() / f".tmp-step-{self.state.step:08d}"
        if acc.is_main_process and tmp.exists():
            shutil.rmtree(tmp)
        acc.wait_for_everyone()
        acc.save_state(str(tmp), safe_serialization=True)
        if acc.is_main_process:
            save_yaml(self.cfg, tmp / "config.yaml")
            if final.exists():
                shutil.rmtree(final)
            os.replace(tmp, final)
            for old in sorted(self.checkpoint_dir().glob("step-*"))[:-2]:
                shutil.rmtree(old)
        acc.wait_for_everyone()
        return final

    def latest_checkpoint(self) -> Path | None:
        found = sorted(self.checkpoint_dir().glob("step-*")) if self.checkpoint_dir().exists() else []
        return found[-1] if found else None

    # ------------------------------------------------------------------ the run
    def _on_signal(self, signum, frame):
        self._stop_signal = signum

    def run(self) -> TrainResult:
        cfg, acc = self.cfg, self.accelerator
        self.out.mkdir(parents=True, exist_ok=True)
        metrics_file = self.out / "metrics.jsonl"
        if cfg.logging.resume:
            ckpt = self.latest_checkpoint()
            if ckpt is None:
                raise TrainingError(f"--resume: no checkpoint under {self.checkpoint_dir()}")
            acc.load_state(str(ckpt))
            self.log(f"resumed from {ckpt} at step {self.state.step}")
            if acc.is_main_process and metrics_file.exists():
                kept = [line for line in metrics_file.read_text().splitlines()
                        if line and json.loads(line).get("step", 0) <= self.state.step]
                atomic_write_text(metrics_file, "".join(line + "\n" for line in kept))
        elif acc.is_main_process and metrics_file.exists():
            metrics_file.unlink()
        if acc.is_main_process:
            save_yaml(cfg, self.out / "config.yaml")
        if cfg.logging.report_to != "none":
            acc.init_trackers("dralign", config=to_flat_dict(cfg))

        previous = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        status, last = "completed", {}
        progress = _Progress(self.total_steps, self.state.step,
                             enabled=cfg.logging.progress and acc.is_main_process)
        try:
            with progress:
                while self.state.step < self.total_steps:
                    t0 = time.perf_counter()
                    record = self.step(self.state.step)
                    self.state.step += 1
                    record["step"] = self.state.step
                    record["pairs_per_s"] = self.effective / (time.perf_counter() - t0)
                    ev, sv = cfg.logging.eval_every, cfg.logging.save_every
                    if ev and self.state.step % ev == 0 and self.state.step < self.total_steps:
                        record.update(self.evaluate())
                    last = record
                    if acc.is_main_process and self.state.step % cfg.logging.log_every == 0:
                        with open(metrics_file, "a") as fh:
                            fh.write(json.dumps(record) + "\n")
                        if cfg.logging.report_to != "none":
                            acc.log({k: v for k, v in record.items() if isinstance(v, (int, float))},
                                    step=self.state.step)
                    progress.update(record)
                    for callback in self.callbacks:
                        callback(self.state.step, record)
                    if self._stop_signal is not None:
                        path = self.save_checkpoint()
                        self.log(f"stopped by signal {signal.Signals(self._stop_signal).name} after step "
                                 f"{self.state.step}; checkpoint {path}; continue with --resume")
                        status = "interrupted"
                        break
                    if sv and self.state.step % sv == 0:
                        self.save_checkpoint()
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
        if status == "completed":
            final_eval = self.evaluate()
            last = {**last, **final_eval}
            self.save_checkpoint()
            self.save_final(last)
        if cfg.logging.report_to != "none":
            acc.end_training()
        return TrainResult(self.out, self.state.step, status, last, self.state.skipped_steps)

    def save_final(self, metrics: dict) -> None:
        """The model and tokenizer (save_pretrained), the resolved config and a model card."""
        acc = self.accelerator
        acc.wait_for_everyone()
        if not acc.is_main_process:
            return
        model = acc.unwrap_model(self.model)
        model.save_pretrained(self.out, safe_serialization=True)
        self.tokenizer.save_pretrained(self.out)
        save_yaml(self.cfg, self.out / "config.yaml")
        atomic_write_text(self.out / "README.md", model_card(self.cfg, self.objective, self.train_data, metrics,
                                                             self.state))


def model_card(cfg: TrainConfig, objective: Objective, data: PreferenceData, metrics: dict,
               state: TrainerState) -> str:
    from accelerate import PartialState

    from ..objectives.presets import PRESETS

    preset = PRESETS[cfg.method.method]
    params = {k: v for k, v in vars(objective).items()
              if isinstance(v, (int, float, str, bool)) and not k.startswith("_")}
    lines = [
        f"# {Path(cfg.optim.output_dir).name}: {cfg.method.method}",
        "",
        f"Aligned with [dralign](https://pypi.org/project/dralign/) from `{cfg.model.model}` on "
        f"`{cfg.data.data}`.",
        "",
        f"- method: `{cfg.method.method}` — {preset.summary}; {preset.paper}",
        f"- objective: {objective.describe()}",
        "- parameters: " + ", ".join(f"{k}={v}" for k, v in sorted(params.items())),
        f"- data: {data.report.summary()}",
        f"- steps: {state.step} ({state.skipped_steps} skipped as non-finite); effective batch "
        f"{cfg.optim.batch_size} x {cfg.optim.grad_accum} accumulation x {PartialState().num_processes} processes; "
        f"lr {cfg.optim.lr}",
        "" if cfg.model.lora_r == 0 else f"- LoRA adapter r={cfg.model.lora_r}: load with PEFT on the base model",
        "",
        "## Final metrics",
        "",
        "| metric | value |",
        "|---|---|",
        *[f"| {k} | {v:.6g} |" for k, v in metrics.items() if isinstance(v, float)],
        "",
        "The full configuration is in `config.yaml`; per-step metrics in `metrics.jsonl`.",
    ]
    return "\n".join(lines) + "\n"


class _Progress:
    """A rich progress bar with live loss, margin, accuracy and pairs/s."""

    def __init__(self, total: int, completed: int, enabled: bool):
        self.enabled = enabled
        if enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
            self.bar = Progress(TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(),
                                TimeRemainingColumn(), TextColumn("{task.fields[stats]}"))
            self.task = self.bar.add_task("train", total=total, completed=completed, stats="")

    def __enter__(self):
        if self.enabled:
            self.bar.__enter__()
        return self

    def __exit__(self, *exc):
        if self.enabled:
            self.bar.__exit__(*exc)

    def update(self, r: dict):
        if self.enabled:
            stats = (f"loss {r['loss']:.4f}  margin {r.get('rewards/margins', 0):.3f}  "
                     f"acc {r.get('rewards/accuracies', 0):.2f}  {r['pairs_per_s']:.1f} pairs/s")
            self.bar.update(self.task, advance=1, stats=stats)


def train(cfg: TrainConfig, callbacks: list[Callable[[int, dict], None]] = ()) -> TrainResult:
    """Train per `cfg` (see `dralign train --help`); returns where the model went and the metrics."""
    return Trainer(cfg, callbacks).run()
