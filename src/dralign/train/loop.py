"""The run of a set-up `Recipe` (train/recipe.py): one optimizer step, the held-out evaluation,
checkpoints, the training loop and the final save.

`TrainingLoop` is the recipe's second half: it reads the components that the recipe's
`_setup_*` methods built (declared below) and never builds one itself."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator

from ..config import save_yaml
from ..data import PreferenceData
from ..data.collate import padding_fraction
from ..errors import RunFailedError
from ..lengths import held_out_length_metrics
from ..objectives import Objective
from . import checkpoint as ckpt
from .batching import BatchPlan
from .card import model_card, weights_form
from .config import TrainConfig, tracker_config
from .progress import Progress
from .run_dir import RunFolder, truncate_metrics
from .scorers import DataSide, Scorer, evaluate_rows
from .sharding import full_optimizer_state, full_value, load_optimizer_state
from .signals import Stopped, StopSignals
from .strategies import Strategy


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


class TrainingLoop:
    """Steps, evaluation, checkpoints and the run of a recipe whose components are set up."""

    # set up by Recipe (train/recipe.py), in the order of its _setup_* methods
    cfg: TrainConfig
    callbacks: list[StepHook]
    after_backward: list[BackwardHook]
    signals: StopSignals
    accelerator: Accelerator
    log: Callable[..., None]
    out: Path
    folder: RunFolder
    resume_from: Path | None
    objective: Objective
    sharded: bool
    tokenizer: Any
    show_progress: bool
    train_data: PreferenceData
    eval_data: PreferenceData | None
    objective_state: Any
    plan: BatchPlan
    total_steps: int
    exact: bool
    model: Any  # the policy: a transformers model, PEFT-wrapped, prepared or sharded
    scorer: Scorer
    packing: bool
    padding: list[float]
    eval_side: DataSide | None
    optimizer: Any  # Accelerate's wrapped optimizer
    scheduler: Any
    state: TrainerState
    strategy: Strategy

    # ------------------------------------------------------------------ one step
    def micro_batches(self, step: int) -> list[dict]:
        """This process's micro-batches of optimizer step `step` (0-based), on the device."""
        acc = self.accelerator
        indices = self.plan.micro_batches(step, acc.process_index)
        self.scorer.check_batch(self.train_data, [self.plan.effective_batch(step)] if self.exact else indices, step)
        return [{k: v.to(acc.device) for k, v in self.scorer.collate(self.train_data, idx).items()} for idx in indices]

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
        record = {
            "loss": float(result.loss),
            "grad_norm": float(grad_norm),
            "lr": self.scheduler.get_last_lr()[0],
            "skipped": not finite,
            "padding_fraction": padding,
        }
        record.update({k: float(v) for k, v in result.metrics.items()})
        return record

    def _skip(self, step: int):
        o = self.cfg.optim
        self.state.skipped_steps += 1
        self.state.consecutive_bad += 1
        self.log(f"step {step + 1}: non-finite loss or gradient; step skipped ({self.state.consecutive_bad} in a row)")
        if self.state.consecutive_bad >= o.max_bad_steps:
            advice = (
                "float16 weights cannot hold AdamW's updates: load in --dtype bfloat16 or float32 "
                "(with --mixed-precision fp16/bf16 for speed)"
                if self.cfg.model.dtype == "float16"
                else "lower --lr or check the data"
            )
            raise TrainingError(
                f"{self.state.consecutive_bad} consecutive steps had a non-finite loss or "
                f"gradient (last at step {step + 1}); {advice}"
            )

    # ------------------------------------------------------------------ evaluation
    def evaluate(self, progress: bool = False) -> dict:
        """The objective and TRL-style reward metrics over the whole held-out set (the robust
        state is read, never advanced). progress: a bar (not inside the training bar: rich
        shows one live display at a time)."""
        if self.eval_side is None:
            return {}
        rows = evaluate_rows(
            self.scorer,
            self.model,
            self.eval_side,
            self.cfg.optim.batch_size * 2,
            self.accelerator.device,
            self.accelerator.autocast,
            progress=progress,
        )
        args, meta = self.scorer.arguments(rows)
        lengths = held_out_length_metrics(
            rows, self.eval_data, tolerance=self.cfg.logging.length_tolerance, seed=self.cfg.optim.seed
        )
        if "group" in meta and (meta["group"] < 0).any():
            # rows without a group (held-out groups may be missing): the group-robust value is
            # undefined there, so score the objective without groups and count them
            meta.pop("group")
            missing = int((rows["group"] < 0).sum())
            out = Objective.from_preset("dpo", beta=self.objective.beta)(*args, **meta)
            return {
                "eval/loss_without_groups": float(out.loss),
                "eval/rows_without_group": missing,
                **{f"eval/{k}": v for k, v in out.metrics.items()},
                **lengths,
            }
        out = self.objective(*args, **meta, state=self.objective_state)
        return {"eval/loss": float(out.loss), **{f"eval/{k}": v for k, v in out.metrics.items()}, **lengths}

    # ------------------------------------------------------------------ checkpoints
    def save_checkpoint(self) -> Path:
        return ckpt.save_run(
            self.accelerator,
            self.model,
            self.out / "checkpoints",
            self.cfg,
            {
                "optimizer": (
                    full_optimizer_state(self.model, self.optimizer) if self.sharded else self.optimizer.state_dict()
                ),
                "scheduler": self.scheduler.state_dict(),
                "objective": self.objective_state,
                "trainer": vars(self.state),
            },
            self.state.step,
        )

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
        progress = Progress(
            self.total_steps, self.state.step, enabled=cfg.logging.progress and self.accelerator.is_main_process
        )
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
                    self.log(
                        f"stopped by signal {self.signals.name} after step {self.state.step}; "
                        f"checkpoint {path}; continue with --resume"
                    )
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
                self.log(
                    f"padding: {100 * last['padding_fraction']:.1f}% of token positions "
                    f"({'packed' if self.packing else 'not packed'})"
                )
            self.save_checkpoint()
        else:  # a --resume with no step left: the earlier session's metrics stand
            last = {**self.folder.final_metrics(), **last}
        self.save_final(last)
        if self.signals.received is not None:
            self.log(
                f"stopped by signal {self.signals.name} before the final evaluation; the model "
                f"and the checkpoint of step {self.state.step} are saved; --resume evaluates"
            )
            return "interrupted", last
        try:
            with self.signals.during("the final evaluation"):
                final = self.evaluate(progress=self.show_progress)
        except Stopped as stop:
            self.log(f"{stop}; the model and the checkpoint of step {self.state.step} are saved; --resume evaluates")
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
        card = model_card(
            self.cfg,
            self.objective,
            self.train_data,
            metrics,
            self.state.step,
            self.state.skipped_steps,
            acc.num_processes,
        )
        with ckpt.writing(self.out / ".final-tmp"):
            if metrics_only:
                self.folder.save_metrics(metrics, card)
            else:
                self.folder.save_final(
                    acc.unwrap_model(self.model),
                    self.tokenizer,
                    self.cfg,
                    metrics,
                    card,
                    full,
                    merge=weights_form(self.cfg) == "merged",
                )  # what the card says
