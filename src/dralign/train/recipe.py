"""The training recipe: preference rows to a saved, resumable aligned model, on 🤗 Accelerate.

Setup builds each component once from the config, in order (`_setup_*`); what varies between
runs (paired or unpaired data, local or exact global batch, with or without WDPO's penalty) is
an object chosen there — a scorer (train/scorers.py) and a gradient strategy
(train/strategies.py) — never a flag tested on every step. One optimizer step:

    micro-batches = this process's share of the effective batch        (train/batching.py)
    strategy.backward(micro)                                           (.grad = effective-batch gradient)
    non-finite loss or gradient → skip and count (abort after --max-bad-steps in a row)
    else clip, optimizer step, schedule step
"""

from __future__ import annotations

from ..errors import RunFailedError
import json
import math
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed

from ..config import save_yaml, to_flat_dict
from ..data import density_ratios, has_weights, require_groups
from ..data.collate import padding_fraction
from ..modeling import apply_lora, load_model, load_tokenizer
from ..objectives import Objective
from . import checkpoint as ckpt
from .batching import BatchPlan
from .card import model_card
from .config import TrainConfig
from .inputs import load_data
from .penalty import check_penalty_mode, penalty_active
from .progress import Progress
from .references import cached_references, live_reference
from .run_dir import RunFolder, check_resumable, truncate_metrics
from .schedule import make_scheduler
from .scorers import DataSide, evaluate_rows, make_scorer
from .strategies import StepContext, choose_strategy
from .watch import Watch


class TrainingError(RunFailedError):
    """Training cannot go on; the message says why and what to do."""


@dataclass
class TrainerState:
    """Counters saved with every checkpoint."""

    step: int = 0
    skipped_steps: int = 0
    consecutive_bad: int = 0


@dataclass
class TrainResult:
    """What `train` returns: the output folder, the steps taken, how the run ended, the final
    metrics and the count of skipped (non-finite) steps."""

    output_dir: Path
    steps: int
    status: str  # "completed" or "interrupted"
    metrics: dict = field(default_factory=dict)
    skipped_steps: int = 0


StepHook = Callable[[int, dict], None]          # (step, record) after each step
BackwardHook = Callable[[int, torch.nn.Module], None]  # (step, model) after the backward, before the update


class Recipe:
    """Holds the run's components; `run()` trains, checkpoints and saves."""

    def __init__(self, cfg: TrainConfig, callbacks: list[StepHook] = (),
                 after_backward: list[BackwardHook] = ()):
        self.cfg, self.callbacks, self.after_backward = cfg, list(callbacks), list(after_backward)
        self._setup_accelerator()
        self._setup_objective()
        self._setup_data()
        self._setup_batches()
        self._setup_model()
        self._setup_scoring()
        self._setup_optimizer()
        self.callbacks.append(Watch(self.total_steps, self.objective.beta, cfg.optim.lr, self.log))
        self._stop_signal = None

    # ------------------------------------------------------------------ setup
    def _setup_accelerator(self):
        o, lg = self.cfg.optim, self.cfg.logging
        self.accelerator = Accelerator(mixed_precision=o.mixed_precision,
                                       log_with=None if lg.report_to == "none" else lg.report_to,
                                       project_dir=o.output_dir)
        self.log = self.accelerator.print
        ckpt.check_launch(self.accelerator)
        self.out = Path(o.output_dir)
        self.folder = RunFolder(self.out)
        set_seed(o.seed)

    def _setup_objective(self):
        m = self.cfg.method
        self.objective = Objective.from_preset(m.method, **m.objective_kwargs())
        self.penalized = penalty_active(self.objective)

    def _setup_data(self):
        cfg = self.cfg
        if not cfg.model.model:
            raise TrainingError("no model: pass --model PATH_OR_NAME (or `model:` in --config)")
        for name in (cfg.model.model, cfg.model.ref_model):
            if name and name.startswith((".", "/", "~")) and not Path(name).expanduser().exists():
                raise TrainingError(f"model folder {name} does not exist")
        self.tokenizer = load_tokenizer(cfg.model.model)
        self.show_progress = cfg.logging.progress and self.accelerator.is_main_process
        # tokenised data is cached beside the reference log-probs: keyed by content, kept on --overwrite
        data_cache_dir = Path(cfg.model.ref_cache_dir or self.out / "ref_cache") / "data"
        self.train_data, self.eval_data = load_data(cfg, self.tokenizer, self.objective.unpaired, self.log,
                                                    cache_dir=data_cache_dir, progress=self.show_progress)
        self.ratio = self.eval_ratio = None
        if self.objective.uses_ratio:
            self.ratio, prior = density_ratios(self.train_data.examples)
            if self.eval_data is not None:  # held-out rows are divided by the training prior
                self.eval_ratio, _ = density_ratios(self.eval_data.examples, prior)
        self.weighted = has_weights(self.train_data.examples)
        if self.weighted and self.objective.coupling != "paired":
            raise TrainingError(f"the data has per-row weights, but coupling {self.objective.coupling!r} "
                                "compares sorted quantiles, not rows")
        self.objective_state = self.objective.init_state(
            num_groups=len(self.train_data.group_names) if self.objective.uses_group else None)
        if self.objective.uses_group:
            require_groups(self.train_data.examples, self.train_data.group_names,
                           column=cfg.data.group_column, method=cfg.method.method)

    def _setup_batches(self):
        """The batch order, the number of steps and the gradient semantics (local or exact)."""
        cfg = self.cfg
        o, world = cfg.optim, self.accelerator.num_processes
        self.plan = BatchPlan(self.train_data, batch_size=o.batch_size, grad_accum=o.grad_accum,
                              processes=world, seed=o.seed, group_by_length=cfg.data.group_by_length)
        if self.plan.steps_per_epoch == 0:
            raise TrainingError(f"{len(self.train_data)} training examples are fewer than one effective batch "
                                f"({o.batch_size} x {o.grad_accum} accumulation x {world} processes)")
        if self.plan.left_out_per_epoch:
            self.log(f"note: each epoch trains {self.plan.steps_per_epoch * self.plan.effective} of "
                     f"{len(self.train_data)} rows: {self.plan.left_out_per_epoch} do not fill an effective "
                     f"batch of {self.plan.effective} (a different remainder every epoch)")
        self.total_steps = o.max_steps or max(1, math.ceil(o.epochs * self.plan.steps_per_epoch))
        couples, split = self.objective.couples_examples, o.grad_accum > 1 or world > 1
        self.exact = o.global_batch in ("auto", "exact") and couples and split
        if o.global_batch == "exact" and not couples:
            self.log("note: --global-batch exact has nothing to do: the objective does not couple examples")
        if o.global_batch == "local" and split and self.objective_state:
            raise TrainingError(f"{cfg.method.method} keeps state across steps (group DRO's q), which "
                                "advances once per optimizer step from the whole effective batch; "
                                "--global-batch local would advance it per micro-batch and process. "
                                "Use --global-batch exact (the default)")

    def _setup_model(self):
        m = self.cfg.model
        self.model = load_model(m.model, dtype=m.dtype, attn_implementation=m.attn_implementation,
                                gradient_checkpointing=m.gradient_checkpointing)
        if m.lora_r > 0:
            self.model = apply_lora(self.model, r=m.lora_r, alpha=m.lora_alpha, dropout=m.lora_dropout,
                                    target_modules=m.lora_target_modules)
        self.model.to(self.accelerator.device)
        if self.objective.penalty is not None:
            check_penalty_mode(self.model, self.objective)

    def _setup_scoring(self):
        cfg = self.cfg
        try:
            self.scorer = make_scorer(cfg, self.objective, self.model, self.train_data, exact=self.exact,
                                      weighted=self.weighted, log=self.log)
        except ValueError as e:  # an explicit layout setting this run cannot honour
            raise TrainingError(str(e)) from None
        self.prefix_sharing = getattr(self.scorer, "prefix_sharing", False)  # unpaired: plain rows
        self.packing = getattr(self.scorer, "packing", False)
        self.padding = []  # padding fraction of every micro-batch trained on
        if cfg.model.ref_cache:
            with ckpt.writing(Path(cfg.model.ref_cache_dir or self.out / "ref_cache")):
                train_ref, eval_ref = cached_references(cfg, self.model, [self.train_data, self.eval_data],
                                                        self.accelerator, self.scorer.collate, self.log,
                                                        progress=self.show_progress)
        else:
            train_ref = eval_ref = live_reference(cfg, self.model, self.accelerator.device,
                                                  self.objective.unpaired)
        self.train_side = DataSide(self.train_data, train_ref, self.ratio)
        self.eval_side = None if self.eval_data is None else DataSide(self.eval_data, eval_ref, self.eval_ratio)

    def _setup_optimizer(self):
        o = self.cfg.optim
        params = [p for p in self.model.parameters() if p.requires_grad]
        optimizer = (torch.optim.AdamW(params, lr=o.lr, weight_decay=o.weight_decay) if o.optimizer == "adamw"
                     else torch.optim.SGD(params, lr=o.lr))
        scheduler = make_scheduler(optimizer, warmup_steps=o.warmup_steps, total_steps=self.total_steps,
                                   kind=o.scheduler)
        self.model, self.optimizer, self.scheduler = self.accelerator.prepare(self.model, optimizer, scheduler)
        self.state = TrainerState()
        ctx = StepContext(self.accelerator, self.model, self.objective, self.scorer, self.train_side)
        self.strategy = choose_strategy(ctx, exact=self.exact, penalized=self.penalized)

    # ------------------------------------------------------------------ one step
    def micro_batches(self, step: int) -> list[dict]:
        """This process's micro-batches of optimizer step `step` (0-based), on the device."""
        acc = self.accelerator
        indices = self.plan.micro_batches(step, acc.process_index)
        self.scorer.check_batch(self.train_data, [self.plan.effective_batch(step)] if self.exact else indices, step)
        return [{k: v.to(acc.device) for k, v in self.scorer.collate(self.train_data, idx).items()}
                for idx in indices]

    def step(self, step: int) -> dict:
        o = self.cfg.optim
        micro = self.micro_batches(step)
        padding = sum(padding_fraction(b) for b in micro) / len(micro)
        self.padding.append(padding)
        result = self.strategy.backward(micro, self.objective_state)
        for hook in self.after_backward:
            hook(step, self.model)
        params = [p for p in self.model.parameters() if p.requires_grad]
        if o.max_grad_norm > 0:
            grad_norm = self.accelerator.clip_grad_norm_(params, o.max_grad_norm)
        else:
            grads = [p.grad.norm() for p in params if p.grad is not None]
            grad_norm = torch.linalg.vector_norm(torch.stack(grads)) if grads else torch.tensor(0.0)
        finite = bool(torch.isfinite(result.loss)) and bool(torch.isfinite(torch.as_tensor(grad_norm)))
        if finite:
            self.optimizer.step()
            self.objective_state = result.state  # a skipped step leaves the robust state as it was
            self.state.consecutive_bad = 0
        else:
            self._skip(step)
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        record = {"loss": float(result.loss), "grad_norm": float(grad_norm),
                  "lr": self.scheduler.get_last_lr()[0], "skipped": not finite, "padding_fraction": padding}
        record.update({k: float(v) for k, v in result.metrics.items()})
        return record

    def _skip(self, step: int):
        o = self.cfg.optim
        self.state.skipped_steps += 1
        self.state.consecutive_bad += 1
        self.log(f"step {step + 1}: non-finite loss or gradient; step skipped ({self.state.consecutive_bad} in a row)")
        if self.state.consecutive_bad >= o.max_bad_steps:
            advice = ("float16 weights cannot hold AdamW's updates: load in --dtype bfloat16 or float32 "
                      "(with --mixed-precision fp16/bf16 for speed)" if self.cfg.model.dtype == "float16"
                      else "lower --lr or check the data")
            raise TrainingError(f"{self.state.consecutive_bad} consecutive steps had a non-finite loss or "
                                f"gradient (last at step {step + 1}); {advice}")

    # ------------------------------------------------------------------ evaluation
    def evaluate(self, progress: bool = False) -> dict:
        """The objective and TRL-style reward metrics over the whole held-out set (the robust
        state is read, never advanced). progress: a bar (not inside the training bar: rich
        shows one live display at a time)."""
        if self.eval_side is None:
            return {}
        rows = evaluate_rows(self.scorer, self.model, self.eval_side, self.cfg.optim.batch_size * 2,
                             self.accelerator.device, self.accelerator.autocast, progress=progress)
        args, meta = self.scorer.arguments(rows)
        if "group" in meta and (meta["group"] < 0).any():
            # rows without a group (held-out groups may be missing): the group-robust value is
            # undefined there, so score the objective without groups and count them
            meta.pop("group")
            missing = int((rows["group"] < 0).sum())
            out = Objective.from_preset("dpo", beta=self.objective.beta)(*args, **meta)
            return {"eval/loss_without_groups": float(out.loss), "eval/rows_without_group": missing,
                    **{f"eval/{k}": v for k, v in out.metrics.items()}}
        out = self.objective(*args, **meta, state=self.objective_state)
        return {"eval/loss": float(out.loss), **{f"eval/{k}": v for k, v in out.metrics.items()}}

    # ------------------------------------------------------------------ checkpoints
    def save_checkpoint(self) -> Path:
        return ckpt.save_run(self.accelerator, self.model, self.out / "checkpoints", self.cfg, {
            "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
            "objective": self.objective_state, "trainer": vars(self.state)}, self.state.step)

    def load_checkpoint(self, folder: Path) -> None:
        parts = ckpt.load_run(self.accelerator, self.model, folder)
        self.optimizer.load_state_dict(parts["optimizer"])
        self.scheduler.load_state_dict(parts["scheduler"])
        self.objective_state = parts["objective"]
        self.state = TrainerState(**parts["trainer"])

    # ------------------------------------------------------------------ the run
    def _on_signal(self, signum, frame):
        self._stop_signal = signum

    def _start(self) -> Path:
        """Claim the output folder; on --resume, load the newest valid checkpoint."""
        cfg, acc = self.cfg, self.accelerator
        metrics_file = self.out / "metrics.jsonl"
        if acc.is_main_process:
            self.folder.claim(cfg, resume=cfg.logging.resume, overwrite=cfg.logging.overwrite)
        acc.wait_for_everyone()
        if cfg.logging.resume:
            folder = ckpt.newest_valid(self.out / "checkpoints", self.log)
            if folder is None:
                raise TrainingError(f"--resume: no checkpoint under {self.out / 'checkpoints'} that is complete and intact")
            from ..config import load_yaml
            check_resumable(load_yaml(folder / "config.yaml"), cfg)
            self.load_checkpoint(folder)
            self.log(f"resumed from {folder} at step {self.state.step}")
            if acc.is_main_process and metrics_file.exists():  # drop steps after the checkpoint
                truncate_metrics(metrics_file, self.state.step, self.log)
        if acc.is_main_process:
            self.folder.mark(cfg, "running")
            save_yaml(cfg, self.out / "config.yaml")
        return metrics_file

    def run(self) -> TrainResult:
        try:
            return self._run()
        except BaseException:
            if self.folder.claimed:
                self.folder.mark(self.cfg, "failed")  # never looks complete
            raise
        finally:
            self.folder.release()

    def _run(self) -> TrainResult:
        cfg, acc = self.cfg, self.accelerator
        metrics_file = self._start()
        if cfg.logging.report_to != "none":
            acc.init_trackers("dralign", config=tracker_config(cfg))
        previous = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        status, last = "completed", {}
        progress = Progress(self.total_steps, self.state.step, enabled=cfg.logging.progress and acc.is_main_process)
        try:
            with progress:
                while self.state.step < self.total_steps:
                    t0 = time.perf_counter()
                    record = self.step(self.state.step)
                    self.state.step += 1
                    record["step"] = self.state.step
                    record["pairs_per_s"] = self.plan.effective / (time.perf_counter() - t0)
                    ev, sv = cfg.logging.eval_every, cfg.logging.save_every
                    if ev and self.state.step % ev == 0 and self.state.step < self.total_steps:
                        record.update(self.evaluate())
                    last = record
                    if self.state.step % cfg.logging.log_every == 0:
                        self._log_record(metrics_file, record)
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
            final = self.evaluate(progress=self.show_progress)  # written to final_metrics.json with the last step's values
            if final:
                self.log("final evaluation: " + ", ".join(f"{k}={v:.4g}" for k, v in final.items()))
            last = {**last, **final}
            if self.padding:  # the run summary: how much compute went to padding
                last["padding_fraction"] = sum(self.padding) / len(self.padding)
                self.log(f"padding: {100 * last['padding_fraction']:.1f}% of token positions "
                         f"({'packed' if self.packing else 'not packed'})")
            self.save_checkpoint()
            self.save_final(last)
        if cfg.logging.report_to != "none":
            acc.end_training()
        return TrainResult(self.out, self.state.step, status, last, self.state.skipped_steps)

    def _log_record(self, metrics_file: Path, record: dict) -> None:
        acc = self.accelerator
        if not acc.is_main_process:
            return
        with open(metrics_file, "a") as fh:
            fh.write(json.dumps(record) + "\n")
        if self.cfg.logging.report_to != "none":
            acc.log({k: v for k, v in record.items() if isinstance(v, (int, float))},
                    step=self.state.step)

    def save_final(self, metrics: dict) -> None:
        """The model and tokenizer (save_pretrained), the resolved config, a model card and the
        final metrics, written into a staging folder and then renamed into place."""
        acc = self.accelerator
        acc.wait_for_everyone()
        full = ckpt.sharded_state(acc, self.model)  # a collective: every process takes part
        if not acc.is_main_process:
            return
        card = model_card(self.cfg, self.objective, self.train_data, metrics, self.state.step,
                          self.state.skipped_steps, acc.num_processes)
        with ckpt.writing(self.out / ".final-tmp"):
            self.folder.save_final(acc.unwrap_model(self.model), self.tokenizer, self.cfg, metrics, card, full)

def tracker_config(cfg: TrainConfig) -> dict:
    """The resolved options as one flat mapping of scalars (`section/option`): TensorBoard's
    hparams take int, float, str or bool only (a list or None made `--report-to tensorboard` fail)."""
    flat = {}
    for section, options in to_flat_dict(cfg).items():
        for name, value in options.items():
            scalar = isinstance(value, (int, float, str, bool))
            flat[f"{section}/{name}"] = value if scalar else ("" if value is None else str(value))
    return flat


def train(cfg: TrainConfig, callbacks: list[StepHook] = (), after_backward: list[BackwardHook] = ()) -> TrainResult:
    """Train per `cfg` (see `dralign train --help`); returns where the model went and the metrics.

    callbacks: called as f(step, record) after every step; after_backward: f(step, model) after
    each step's backward and before the update (e.g. to inspect or alter gradients in a test)."""
    return Recipe(cfg, callbacks, after_backward).run()
