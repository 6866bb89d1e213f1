"""The training recipe: preference rows to a saved, resumable aligned model, on 🤗 Accelerate.

Setup builds each component once from the config, in order (`_setup_*`); what varies between
runs (paired or unpaired data, local or exact global batch, with or without WDPO's penalty) is
an object chosen there — a scorer (train/scorers.py) and a gradient strategy
(train/strategies.py) — never a flag tested on every step. The steps, evaluation, checkpoints and the run itself are
`TrainingLoop` (train/loop.py). One optimizer step:

    micro-batches = this process's share of the effective batch        (train/batching.py)
    strategy.backward(micro)                                           (.grad = effective-batch gradient)
    non-finite loss or gradient → skip and count (abort after --max-bad-steps in a row)
    else clip, optimizer step, schedule step
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed

from ..console import set_log_every
from ..data import density_ratios, has_weights, require_groups
from ..modeling import apply_lora, check_same_tokenizer, choose_gradient_checkpointing, load_model, load_tokenizer
from ..modeling.compiling import compile_blocks, compile_refusal
from . import checkpoint as ckpt
from .batching import BatchPlan
from .config import TrainConfig
from .inputs import load_data
from .loop import BackwardHook, StepHook, TrainerState, TrainingError, TrainingLoop, TrainResult
from .penalty import check_penalty_mode, penalty_active
from .references import cached_references, live_reference
from .run_dir import RunFolder, check_resumable, input_fingerprints
from .schedule import make_scheduler
from .scorers import DataSide, make_scorer
from .sharding import check_sharding, shard
from .signals import StopSignals
from .strategies import StepContext, choose_strategy
from .watch import Watch

__all__ = ["BackwardHook", "Recipe", "StepHook", "TrainResult", "TrainerState", "TrainingError", "train"]


class Recipe(TrainingLoop):
    """Builds the run's components (`_setup_*`); `run()` (train/loop.py) trains, checkpoints and saves.

    inputs: more paths the run reads (its --config file), never deleted by --overwrite;
    prepare: f(cfg) -> cfg run once the folder is claimed (e.g. fitting density ratios into it)."""

    def __init__(
        self,
        cfg: TrainConfig,
        callbacks: Sequence[StepHook] = (),
        after_backward: Sequence[BackwardHook] = (),
        inputs: Sequence[str] = (),
        prepare: Callable[[TrainConfig], TrainConfig] | None = None,
    ):
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
        self.accelerator = Accelerator(
            mixed_precision=o.mixed_precision,
            log_with=None if lg.report_to == "none" else lg.report_to,
            project_dir=o.output_dir,
        )
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
                raise TrainingError(
                    f"--resume: no checkpoint under {self.out / 'checkpoints'} that is complete and intact"
                )
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
            check_same_tokenizer(
                self.tokenizer, load_tokenizer(cfg.model.ref_model), cfg.model.model, cfg.model.ref_model
            )
        if self.accelerator.is_main_process:  # on --resume: refuse inputs changed under the same path
            self.folder.check_fingerprints(input_fingerprints(self.given, self.tokenizer))
        self.show_progress = cfg.logging.progress and self.accelerator.is_main_process
        # tokenised data is cached beside the reference log-probs: keyed by content, kept on --overwrite
        data_cache_dir = cfg.cache_dir() / "data"
        self.train_data, self.eval_data = load_data(
            cfg,
            self.tokenizer,
            self.objective.unpaired,
            self.log,
            cache_dir=data_cache_dir,
            progress=self.show_progress,
        )
        self.ratio = self.eval_ratio = None
        if self.objective.uses_ratio:
            self.ratio, prior = density_ratios(self.train_data.examples, column=cfg.data.ratio_column)
            if self.eval_data is not None:  # held-out rows are divided by the training prior
                self.eval_ratio, _ = density_ratios(self.eval_data.examples, prior)
        self.weighted = has_weights(self.train_data.examples)
        if self.weighted and self.objective.coupling != "paired":
            raise TrainingError(
                f"the data has per-row weights, but coupling {self.objective.coupling!r} "
                "compares sorted quantiles, not rows"
            )
        self.objective_state = self.objective.init_state(
            num_groups=len(self.train_data.group_names) if self.objective.uses_group else None
        )
        if self.objective.uses_group:
            require_groups(
                self.train_data.examples,
                self.train_data.group_names,
                column=cfg.data.group_column,
                method=cfg.method.method,
            )

    def _setup_batches(self):
        """The batch order, the number of steps and the gradient semantics (local or exact)."""
        cfg = self.cfg
        o, world = cfg.optim, self.accelerator.num_processes
        self.plan = BatchPlan(
            self.train_data,
            batch_size=o.batch_size,
            grad_accum=o.grad_accum,
            processes=world,
            seed=o.seed,
            group_by_length=cfg.data.group_by_length,
        )
        if self.plan.steps_per_epoch == 0:
            raise TrainingError(
                f"{cfg.data.data}: {len(self.train_data)} training examples are fewer than one effective batch "
                f"(--batch-size {o.batch_size} x --grad-accum {o.grad_accum} x {world} processes)"
            )
        if self.plan.left_out_per_epoch:
            self.log(
                f"note: each epoch trains {self.plan.steps_per_epoch * self.plan.effective} of "
                f"{len(self.train_data)} rows: {self.plan.left_out_per_epoch} do not fill an effective "
                f"batch of {self.plan.effective} (a different remainder every epoch)"
            )
        self.total_steps = o.max_steps or max(1, math.ceil(o.epochs * self.plan.steps_per_epoch))
        couples, split = self.objective.couples_examples, o.grad_accum > 1 or world > 1
        self.exact = o.global_batch in ("auto", "exact") and couples and split
        if o.global_batch == "exact" and not couples:
            self.log("note: --global-batch exact has nothing to do: the objective does not couple examples")
        if o.global_batch == "local" and split and self.objective_state:
            raise TrainingError(
                f"{cfg.method.method} keeps state across steps (group DRO's q), which "
                "advances once per optimizer step from the whole effective batch; "
                "--global-batch local would advance it per micro-batch and process. "
                "Use --global-batch exact (the default)"
            )

    def _setup_model(self):
        m = self.cfg.model
        if m.save_adapter is not None and m.lora_r == 0:
            raise TrainingError(
                f"--{'' if m.save_adapter else 'no-'}save-adapter is about a LoRA adapter: "
                "pass --lora-r N, or drop the flag"
            )
        t0 = time.perf_counter()
        checkpointing, why = choose_gradient_checkpointing(
            m.gradient_checkpointing,
            lora=m.lora_r > 0,
            compiled=m.compile,
            device=self.accelerator.device,
            penalized=self.penalized,
        )
        self.model = load_model(
            m.model, dtype=m.dtype, attn_implementation=m.attn_implementation, gradient_checkpointing=checkpointing
        )
        if m.lora_r > 0:
            self.model = apply_lora(
                self.model, r=m.lora_r, alpha=m.lora_alpha, dropout=m.lora_dropout, target_modules=m.lora_target_modules
            )
        self.model.to(self.accelerator.device)
        self.log(
            f"model loaded in {time.perf_counter() - t0:.1f} s" + (f"; {why}" if why else "")
        )  # a log shows each phase end
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
            self.scorer = make_scorer(
                cfg, self.objective, self.model, self.train_data, exact=self.exact, weighted=self.weighted, log=self.log
            )
        except ValueError as e:  # an explicit layout setting this run cannot honour
            raise TrainingError(str(e)) from None
        self.prefix_sharing = getattr(self.scorer, "prefix_sharing", False)  # unpaired: plain rows
        self.packing = getattr(self.scorer, "packing", False)
        self.padding = []  # padding fraction of every micro-batch trained on
        if cfg.model.ref_cache:
            with ckpt.writing(cfg.cache_dir()):
                train_ref, eval_ref = cached_references(
                    cfg,
                    self.model,
                    [self.train_data, self.eval_data],
                    self.accelerator,
                    self.scorer.collate,
                    self.log,
                    progress=self.show_progress,
                )
        else:
            train_ref = eval_ref = live_reference(cfg, self.model, self.accelerator.device, self.objective.unpaired)
        self.train_side = DataSide(self.train_data, train_ref, self.ratio)
        self.eval_side = None if self.eval_data is None else DataSide(self.eval_data, eval_ref, self.eval_ratio)

    def _setup_optimizer(self):
        o = self.cfg.optim
        if self.sharded:  # after the reference cache (full weights), before the optimizer (sharded parameters)
            self.model = shard(self.model, self.accelerator.device, self.log)
        params = [p for p in self.model.parameters() if p.requires_grad]
        optimizer = (
            torch.optim.AdamW(params, lr=o.lr, weight_decay=o.weight_decay)
            if o.optimizer == "adamw"
            else torch.optim.SGD(params, lr=o.lr)
        )
        scheduler = make_scheduler(
            optimizer, warmup_steps=o.warmup_steps, total_steps=self.total_steps, kind=o.scheduler
        )
        # the scheduler stays ours: Accelerate's wrapper steps it once per process at every step
        self.scheduler = scheduler
        if self.sharded:  # FSDP2 owns the model: no DDP wrapper
            self.optimizer = self.accelerator.prepare(optimizer)
        else:
            self.model, self.optimizer = self.accelerator.prepare(self.model, optimizer)
        self.state = TrainerState()
        ctx = StepContext(self.accelerator, self.model, self.objective, self.scorer, self.train_side)
        self.strategy = choose_strategy(ctx, exact=self.exact, penalized=self.penalized)


def train(
    cfg: TrainConfig,
    callbacks: Sequence[StepHook] = (),
    after_backward: Sequence[BackwardHook] = (),
    inputs: Sequence[str] = (),
    prepare: Callable[[TrainConfig], TrainConfig] | None = None,
) -> TrainResult:
    """Train per `cfg` (see `dralign train --help`); returns where the model went and the metrics.

    callbacks: f(step, record) after every step; after_backward: f(step, model) after each step's
    backward, before the update (e.g. to alter gradients in a test); inputs, prepare: see `Recipe`."""
    return Recipe(cfg, callbacks, after_backward, inputs, prepare).run()
