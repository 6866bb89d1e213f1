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

import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed

from ..config import save_yaml
from ..console import set_log_every
from ..data import density_ratios, has_weights, require_groups
from ..data.collate import padding_fraction
from ..errors import RunFailedError
from ..lengths import held_out_length_metrics
from ..modeling import apply_lora, check_same_tokenizer, choose_gradient_checkpointing, load_model, load_tokenizer
from ..modeling.compiling import compile_blocks, compile_refusal
from ..objectives import Objective
from . import checkpoint as ckpt
from .batching import BatchPlan
from .card import model_card, weights_form
from .config import TrainConfig, tracker_config
from .inputs import load_data
from .penalty import check_penalty_mode, penalty_active
from .progress import Progress
from .references import cached_references, live_reference
from .run_dir import RunFolder, check_resumable, input_fingerprints, truncate_metrics
from .schedule import make_scheduler
from .scorers import DataSide, evaluate_rows, make_scorer
from .sharding import check_sharding, full_optimizer_state, full_value, load_optimizer_state, shard
from .signals import Stopped, StopSignals
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
    """What `train` returns: folder, steps, "completed"/"interrupted", final metrics, skipped steps."""

    output_dir: Path
    steps: int
    status: str  # "completed" or "interrupted"
    metrics: dict = field(default_factory=dict)
    skipped_steps: int = 0
    model_saved: bool = False  # an interruption during the final evaluation comes after the save


StepHook = Callable[[int, dict], None]  # (step, record) after each step
BackwardHook = Callable[[int, torch.nn.Module], None]  # (step, model) after the backward, before the update


class Recipe:
    """Holds the run's components; `run()` trains, checkpoints and saves.

    inputs: more paths the run reads (its --config file), never deleted by --overwrite;
    prepare: f(cfg) -> cfg run once the folder is claimed (e.g. fitting density ratios into it)."""

    def __init__(self, cfg: TrainConfig, callbacks: list[StepHook] = (),
                 after_backward: list[BackwardHook] = (), inputs: Sequence[str] = (),
                 prepare: Callable[[TrainConfig], TrainConfig] | None = None):
        self.cfg, self.callbacks, self.after_backward = cfg, list(callbacks), list(after_backward)
        self.signals = StopSignals()  # a signal during set-up stops it at once (nothing to lose)
        with self.signals.installed("set-up"):
            try:
                self._setup_accelerator()
                self._claim(inputs)  # the lock and run.json before any work
                self.given = self.cfg  # as given: its inputs are fingerprinted
                self.cfg = prepare(self.cfg) if prepare is not None else self.cfg
                self._check_resume()
                self._setup_objective()
                self._setup_data()
                self._setup_batches()
                self._setup_model()
                self._setup_scoring()
                self._setup_optimizer()
            except BaseException:
                if hasattr(self, "folder"):
                    self.folder.abandon()  # a failed start removes what it created
                raise
        self.callbacks.append(Watch(self.total_steps, self.objective.beta, self.cfg.optim.lr, self.log))

    # ------------------------------------------------------------------ setup
    def _setup_accelerator(self):
        o, lg = self.cfg.optim, self.cfg.logging
        self.accelerator = Accelerator(mixed_precision=o.mixed_precision,
                                       log_with=None if lg.report_to == "none" else lg.report_to,
                                       project_dir=o.output_dir)
        self.log = self.accelerator.print
        set_log_every(lg.progress_every)  # progress lines in a log: every phase from here on
        ckpt.check_launch(self.accelerator)
        self.out = Path(o.output_dir)
        self.folder = RunFolder(self.out)
        set_seed(o.seed)

    def _claim(self, inputs: Sequence[str]):
        """Claim the output folder (main process) and, on --resume, find the checkpoint to
        continue and check its configuration: all before any work."""
        cfg, acc = self.cfg, self.accelerator
        d, m = cfg.data, cfg.model
        reads = [p for p in (d.data, d.eval_data, m.model, m.ref_model, *inputs) if p]
        if acc.is_main_process:
            self.folder.claim(cfg, resume=cfg.logging.resume, overwrite=cfg.logging.overwrite, inputs=reads)
        acc.wait_for_everyone()

    def _check_resume(self):
        """On --resume: the checkpoint to continue, written under a compatible configuration."""
        self.resume_from = None
        if self.cfg.logging.resume:
            self.resume_from = ckpt.newest_valid(self.out / "checkpoints", self.log)
            if self.resume_from is None:
                raise TrainingError(f"--resume: no checkpoint under {self.out / 'checkpoints'} that is complete and intact")
            from ..config import load_yaml
            check_resumable(load_yaml(self.resume_from / "config.yaml"), self.cfg)

    def _setup_objective(self):
        self.objective = self.cfg.method.objective()
        self.penalized = penalty_active(self.objective)
        self.sharded = check_sharding(self.accelerator, self.cfg, self.penalized)

    def _setup_data(self):
        cfg = self.cfg
        if not cfg.model.model:
            raise TrainingError("no model: pass --model PATH_OR_NAME (or `model:` in --config)")
        for name in (cfg.model.model, cfg.model.ref_model):
            if name and name.startswith((".", "/", "~")) and not Path(name).expanduser().exists():
                raise TrainingError(f"model folder {name} does not exist")
        self.tokenizer = load_tokenizer(cfg.model.model)
        if cfg.model.ref_model:  # refused before any work: log-probs of other ids are of other texts
            check_same_tokenizer(self.tokenizer, load_tokenizer(cfg.model.ref_model), cfg.model.model,
                                 cfg.model.ref_model)
        if self.accelerator.is_main_process:  # on --resume: refuse inputs changed under the same path
            self.folder.check_fingerprints(input_fingerprints(self.given, self.tokenizer))
        self.show_progress = cfg.logging.progress and self.accelerator.is_main_process
        # tokenised data is cached beside the reference log-probs: keyed by content, kept on --overwrite
        data_cache_dir = cfg.cache_dir() / "data"
        self.train_data, self.eval_data = load_data(cfg, self.tokenizer, self.objective.unpaired, self.log,
                                                    cache_dir=data_cache_dir, progress=self.show_progress)
        self.ratio = self.eval_ratio = None
        if self.objective.uses_ratio:
            self.ratio, prior = density_ratios(self.train_data.examples, column=cfg.data.ratio_column)
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
            raise TrainingError(f"{cfg.data.data}: {len(self.train_data)} training examples are fewer than one effective batch "
                                f"(--batch-size {o.batch_size} x --grad-accum {o.grad_accum} x {world} processes)")
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
        if m.save_adapter is not None and m.lora_r == 0:
            raise TrainingError(f"--{'' if m.save_adapter else 'no-'}save-adapter is about a LoRA adapter: "
                                "pass --lora-r N, or drop the flag")
        t0 = time.perf_counter()
        checkpointing, why = choose_gradient_checkpointing(m.gradient_checkpointing, lora=m.lora_r > 0, compiled=m.compile,
                                                           device=self.accelerator.device, penalized=self.penalized)
        self.model = load_model(m.model, dtype=m.dtype, attn_implementation=m.attn_implementation,
                                gradient_checkpointing=checkpointing)
        if m.lora_r > 0:
            self.model = apply_lora(self.model, r=m.lora_r, alpha=m.lora_alpha, dropout=m.lora_dropout,
                                    target_modules=m.lora_target_modules)
        self.model.to(self.accelerator.device)
        self.log(f"model loaded in {time.perf_counter() - t0:.1f} s" + (f"; {why}" if why else ""))
        if self.objective.penalty is not None:
            check_penalty_mode(self.model, self.objective)
        if m.compile:
            exact_penalty = self.objective.penalty is not None and self.objective.penalty.penalty_mode == "exact"
            refusal = compile_refusal(self.accelerator.device, double_backward=exact_penalty)
            if refusal:
                raise TrainingError(refusal)
            self.log(f"compiling {compile_blocks(self.model)} transformer blocks (the first steps are slower)")

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
            with ckpt.writing(cfg.cache_dir()):
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
        if self.sharded:  # after the reference cache (full weights), before the optimizer (sharded parameters)
            self.model = shard(self.model, self.accelerator.device, self.log)
        params = [p for p in self.model.parameters() if p.requires_grad]
        optimizer = (torch.optim.AdamW(params, lr=o.lr, weight_decay=o.weight_decay) if o.optimizer == "adamw"
                     else torch.optim.SGD(params, lr=o.lr))
        scheduler = make_scheduler(optimizer, warmup_steps=o.warmup_steps, total_steps=self.total_steps,
                                   kind=o.scheduler)
        # the scheduler stays ours: Accelerate's wrapper steps it once per process at every step
        self.scheduler = scheduler
        if self.sharded:  # FSDP2 owns the model: no DDP wrapper
            self.optimizer = self.accelerator.prepare(optimizer)
        else:
            self.model, self.optimizer = self.accelerator.prepare(self.model, optimizer)
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
            grads = [p.grad for p in params if p.grad is not None]
            grad_norm = torch.nn.utils.get_total_norm(grads) if grads else torch.tensor(0.0)
        grad_norm = full_value(grad_norm)  # a DTensor when the parameters are sharded
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
        lengths = held_out_length_metrics(rows, self.eval_data, tolerance=self.cfg.logging.length_tolerance,
                                          seed=self.cfg.optim.seed)
        if "group" in meta and (meta["group"] < 0).any():
            # rows without a group (held-out groups may be missing): the group-robust value is
            # undefined there, so score the objective without groups and count them
            meta.pop("group")
            missing = int((rows["group"] < 0).sum())
            out = Objective.from_preset("dpo", beta=self.objective.beta)(*args, **meta)
            return {"eval/loss_without_groups": float(out.loss), "eval/rows_without_group": missing,
                    **{f"eval/{k}": v for k, v in out.metrics.items()}, **lengths}
        out = self.objective(*args, **meta, state=self.objective_state)
        return {"eval/loss": float(out.loss), **{f"eval/{k}": v for k, v in out.metrics.items()}, **lengths}

    # ------------------------------------------------------------------ checkpoints
    def save_checkpoint(self) -> Path:
        return ckpt.save_run(self.accelerator, self.model, self.out / "checkpoints", self.cfg, {
            "optimizer": (full_optimizer_state(self.model, self.optimizer) if self.sharded
                          else self.optimizer.state_dict()), "scheduler": self.scheduler.state_dict(),
            "objective": self.objective_state, "trainer": vars(self.state)}, self.state.step)

    def load_checkpoint(self, folder: Path) -> None:
        parts = ckpt.load_run(self.accelerator, self.model, folder)
        if self.sharded:
            load_optimizer_state(self.model, self.optimizer, parts["optimizer"])
        else:
            self.optimizer.load_state_dict(parts["optimizer"])
        self.scheduler.load_state_dict(parts["scheduler"])
        self.objective_state = parts["objective"]
        self.state = TrainerState(**parts["trainer"])

    # ------------------------------------------------------------------ the run
    def _start(self) -> Path:
        """On --resume, load the checkpoint found at set-up; mark the run started."""
        cfg, acc = self.cfg, self.accelerator
        metrics_file = self.out / "metrics.jsonl"
        if self.resume_from is not None:
            self.load_checkpoint(self.resume_from)
            self.log(f"resumed from {self.resume_from} at step {self.state.step}")
            if acc.is_main_process and metrics_file.exists():  # drop steps after the checkpoint
                truncate_metrics(metrics_file, self.state.step, self.log)
        if acc.is_main_process:
            self.folder.mark(cfg, "running")
            save_yaml(cfg, self.out / "config.yaml")
        return metrics_file

    def run(self) -> TrainResult:
        """Train, checkpoint, save, evaluate; SIGINT/SIGTERM are handled until the final save."""
        try:
            with self.signals.installed(None):  # during steps and saves: recorded, acted on after
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
        first = self.state.step
        status, last = self._train(metrics_file)
        saved = False
        if status == "completed":
            status, last = self._finish(last, trained=self.state.step > first)
            saved = True
        if acc.is_main_process:
            self.folder.mark(cfg, status)
        if cfg.logging.report_to != "none":
            acc.end_training()
        return TrainResult(self.out, self.state.step, status, last, self.state.skipped_steps, saved)

    def _train(self, metrics_file: Path) -> tuple[str, dict]:
        """The training loop: ("completed" or "interrupted", the last step's record)."""
        cfg, last = self.cfg, {}
        progress = Progress(self.total_steps, self.state.step,
                            enabled=cfg.logging.progress and self.accelerator.is_main_process)
        with progress:
            while self.state.step < self.total_steps:
                t0 = time.perf_counter()
                record = self.step(self.state.step)
                self.state.step += 1
                record["step"] = self.state.step
                seconds = time.perf_counter() - t0
                record["pairs_per_s"] = self.plan.effective / seconds
                record.update(progress.timing(seconds))  # step_seconds, eta_seconds
                ev, sv = cfg.logging.eval_every, cfg.logging.save_every
                if ev and self.state.step % ev == 0 and self.state.step < self.total_steps:
                    record.update(self.evaluate())
                last = record
                if self.state.step % cfg.logging.log_every == 0:
                    self._log_record(metrics_file, record)
                progress.update(record)
                for callback in self.callbacks:
                    callback(self.state.step, record)
                if self.signals.received is not None:
                    path = self.save_checkpoint()
                    self.log(f"stopped by signal {self.signals.name} after step {self.state.step}; "
                             f"checkpoint {path}; continue with --resume")
                    return "interrupted", last
                if sv and self.state.step % sv == 0:
                    self.save_checkpoint()
        return "completed", last

    def _finish(self, last: dict, trained: bool) -> tuple[str, dict]:
        """The final checkpoint and model first, then the final evaluation (a signal there
        loses nothing), then final_metrics.json and the card with its results."""
        if trained:
            if self.padding:  # the run summary: how much compute went to padding
                last["padding_fraction"] = sum(self.padding) / len(self.padding)
                self.log(f"padding: {100 * last['padding_fraction']:.1f}% of token positions "
                         f"({'packed' if self.packing else 'not packed'})")
            self.save_checkpoint()
        else:  # a --resume with no step left: the earlier session's metrics stand
            last = {**self.folder.final_metrics(), **last}
        self.save_final(last)
        if self.signals.received is not None:
            self.log(f"stopped by signal {self.signals.name} before the final evaluation; the model "
                     f"and the checkpoint of step {self.state.step} are saved; --resume evaluates")
            return "interrupted", last
        try:
            with self.signals.during("the final evaluation"):
                final = self.evaluate(progress=self.show_progress)
        except Stopped as stop:
            self.log(f"{stop}; the model and the checkpoint of step {self.state.step} are saved; "
                     "--resume evaluates")
            return "interrupted", last
        if final:  # written to final_metrics.json with the last step's values
            self.log("final evaluation: " + ", ".join(f"{k}={v:.4g}" for k, v in final.items()))
            last = {**last, **final}
            self.save_final(last, metrics_only=True)
        return "completed", last

    def _log_record(self, metrics_file: Path, record: dict) -> None:
        acc = self.accelerator
        if not acc.is_main_process:
            return
        with open(metrics_file, "a") as fh:
            fh.write(json.dumps(record) + "\n")
        if self.cfg.logging.report_to != "none":
            acc.log({k: v for k, v in record.items() if isinstance(v, (int, float))}, step=self.state.step)

    def save_final(self, metrics: dict, metrics_only: bool = False) -> None:
        """The model and tokenizer (save_pretrained), the resolved config, a model card and the
        final metrics, written into a staging folder and then renamed into place (metrics_only:
        the card and final_metrics.json alone)."""
        acc = self.accelerator
        acc.wait_for_everyone()
        full = None if metrics_only else ckpt.sharded_state(acc, self.model)  # a collective
        if not acc.is_main_process:
            return
        card = model_card(self.cfg, self.objective, self.train_data, metrics, self.state.step,
                          self.state.skipped_steps, acc.num_processes)
        with ckpt.writing(self.out / ".final-tmp"):
            if metrics_only:
                self.folder.save_metrics(metrics, card)
            else:
                self.folder.save_final(acc.unwrap_model(self.model), self.tokenizer, self.cfg, metrics, card, full,
                                       merge=weights_form(self.cfg) == "merged")  # what the card says


def train(cfg: TrainConfig, callbacks: list[StepHook] = (), after_backward: list[BackwardHook] = (),
          inputs: Sequence[str] = (), prepare: Callable[[TrainConfig], TrainConfig] | None = None) -> TrainResult:
    """Train per `cfg` (see `dralign train --help`); returns where the model went and the metrics.

    callbacks: f(step, record) after every step; after_backward: f(step, model) after each step's
    backward, before the update (e.g. to alter gradients in a test); inputs, prepare: see `Recipe`."""
    return Recipe(cfg, callbacks, after_backward, inputs, prepare).run()
