"""The sections of `dralign bench speed` (see `dralign_bench.speed` for what each measures):
"trl" (`compare_with_trl`), "objectives" (`time_objectives`) and "compile" (`time_compile`),
and the worker processes they run (`run_child`, `dralign_bench.speed_worker`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from dralign.errors import RunFailedError

from .speed_data import REAL_WORKLOADS, VOCAB_WORKLOADS
from .speed_report import SHARED_WDPO

if TYPE_CHECKING:
    from .speed import SpeedOptions

__all__ = [
    "OBJECTIVE_VARIANTS",
    "SpeedBenchError",
    "compare_with_trl",
    "load_average",
    "median_and_range",
    "run_child",
    "time_compile",
    "time_objectives",
]


# ----------------------------------------------------------------------------- children
def _child_env(threads: int, root: Path, wait_policy: str = "passive", cpu: bool = True) -> dict:
    env = dict(os.environ)
    env.update(
        {
            "OMP_NUM_THREADS": str(threads),
            "MKL_NUM_THREADS": str(threads),
            "OMP_WAIT_POLICY": wait_policy.upper(),
            "TOKENIZERS_PARALLELISM": "false",
            "HF_HUB_OFFLINE": "1",
            "HF_DATASETS_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "HF_DATASETS_CACHE": str(root / "hf_datasets"),
            "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
            "TQDM_DISABLE": "1",
            "WANDB_DISABLED": "true",
            "PYTHONWARNINGS": "ignore",
        }
    )
    if cpu:
        env["ACCELERATE_USE_CPU"] = "true"
    return env


class SpeedBenchError(RunFailedError):
    """A benchmark child process failed; the message carries the end of its output."""


def run_child(
    side: str, jobs: list[dict], o: SpeedOptions, root: Path, tag: str, matmul_n: int | None = None, cpu: bool = True
) -> list[dict]:
    """Run `dralign_bench.speed_worker` for `jobs` in a fresh process; its results per job.
    `cpu=False` lets the child use a GPU (`dralign_bench.gpu`)."""
    spec, result = root / f"{tag}.spec.json", root / f"{tag}.result.json"
    spec.write_text(
        json.dumps(
            {"side": side, "threads": o.threads, "jobs": jobs, "matmul_n": matmul_n or (256 if o.quick else 1024)}
        )
    )
    proc = subprocess.run(
        [sys.executable, "-m", "dralign_bench.speed_worker", str(spec), str(result)],
        env=_child_env(o.threads, root, o.omp_wait_policy, cpu),
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-25:])
        raise SpeedBenchError(f"speed worker {tag} ({side}) failed with exit code {proc.returncode}:\n{tail}")
    return json.loads(result.read_text())["results"]


def _job(o: SpeedOptions, world: dict, workload: str, root: Path, tag: str, **extra) -> dict:
    job = {
        "workload": workload,
        "model": world["models"][workload]["path"],
        "data": world["files"][workload],
        "output_dir": str(root / "runs" / tag),
        "batch_size": o.batch_size,
        "max_length": o.max_length,
        "lr": o.lr,
        "seed": o.seed,
        "warmup": o.warmup,
        "steps": o.vocab_steps if workload in VOCAB_WORKLOADS else o.steps,
        "ref_cache_dir": str(root / "ref_cache" / tag),
    }
    if workload in REAL_WORKLOADS:  # LoRA on a real model: the same adapter on both sides
        job.update(
            batch_size=o.real_batch_size,
            max_length=o.real_max_length,
            steps=o.real_steps,
            lora_r=o.real_lora_r,
            lr=1e-4,
            train_options={"lora_r": o.real_lora_r},
        )
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
            loads[workload] = {"before": load_average()}
            for r in range(o.rounds):
                for side in ("trl", "dralign") if r % 2 == 0 else ("dralign", "trl"):
                    tag = f"{side}-{workload}-{r}"
                    log(f"  {workload}: round {r + 1}/{o.rounds}, {side}")
                    job = _job(o, world, workload, root, tag, seed=o.seed + r)
                    runs.setdefault((side, workload), []).extend(run_child(side, [job], o, root, tag))
            loads[workload]["after"] = load_average()
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
            "per_round": {
                "dralign_pairs_per_s": [batch * p["timed_steps"] / p["wall_s"] for p in dra],
                "trl_pairs_per_s": [batch * p["timed_steps"] / p["wall_s"] for p in trl],
            },
            "model": {k: v for k, v in world["models"][workload].items() if k != "path"},
            **world["stats"][workload],
        }
        # round r of dralign against round r of TRL (they ran back to back, in alternating order)
        round_ratios = [
            d / t
            for d, t in zip(
                entry["per_round"]["dralign_pairs_per_s"], entry["per_round"]["trl_pairs_per_s"], strict=True
            )
        ]
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
    variants = {
        name: ({**v, "batch_size": micro} if "grad_accum" in v else dict(v)) for name, v in OBJECTIVE_VARIANTS.items()
    }
    rounds = []
    for r in range(o.objective_rounds):
        job = _job(
            o, world, "balanced", root, f"objectives-{r}", steps=o.objective_steps, variants=variants, seed=o.seed + r
        )
        rounds.append(run_child("objectives", [job], o, root, f"objectives-{r}")[0])
    per_round = [_objective_ratios(result) for result in rounds]
    ratios, ranges = {}, {}
    for name in per_round[0]["wall"]:
        ratios[name], ranges[name] = median_and_range([p["wall"][name] for p in per_round])
    cpu_ratios = {name: median_and_range([p["cpu"][name] for p in per_round])[0] for name in per_round[0]["cpu"]}
    result = rounds[0]  # layout facts and FLOPs are the same in every round
    t = {name: median_and_range([r["step_s"][name] for r in rounds])[0] for name in result["step_s"]}
    return {
        "step_s": t,
        "ratio_vs_dpo": ratios,
        "ratio_range_vs_dpo": ranges,
        "cpu_ratio": cpu_ratios,
        "per_round_ratio_vs_dpo": [p["wall"] for p in per_round],
        "model_flops_per_step": result["model_flops_per_step"],
        "prefix_sharing": result["prefix_sharing"],
        "exact": result["exact"],
        "peak_rss_mb": max(r["peak_rss_mb"] for r in rounds),
        "micro_batch_of_accum_variants": micro,
    }


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
    wall["wdpo finite difference FLOP floor (2 x plain / prefix-shared dpo)"] = (
        2 * flops["dpo plain layout"] / flops["dpo"]
    )
    wall["exact vs local (kldpo, accum 4)"] = t["kldpo accum 4 exact"] / t["kldpo accum 4 local"]
    cpu = {
        "wdpo finite difference vs dpo plain layout": c["wdpo finite difference"] / c["dpo plain layout"],
        "exact vs local (kldpo, accum 4)": c["kldpo accum 4 exact"] / c["kldpo accum 4 local"],
        **{
            name: c[name] / c["dpo"]
            for name in ("kldpo", "dora", "aot", "group-dro", "wdpo finite difference", SHARED_WDPO)
        },
    }
    return {"wall": wall, "cpu": cpu}


def time_compile(o: SpeedOptions, world: dict, root: Path) -> dict:
    """Section "compile": per workload, dpo with `--compile` against dpo without, alternating
    steps on the same batches in one process (an in-process A/B: load hits both alike).
    `compile_s` is the extra wall time of the compiled variant's warm-up steps, which compile."""
    variants = {"dpo": {"method": "dpo"}, "dpo compiled": {"method": "dpo", "compile": True}}
    out = {}
    workloads = [w for w in o.workloads if w not in world["skipped"]]
    for workload in workloads[:1] if o.quick else workloads:  # --quick: one compilation
        job = _job(
            o,
            world,
            workload,
            root,
            f"compile-{workload}",
            steps=o.compile_steps,
            warmup=o.compile_warmup,
            variants=variants,
        )
        (result,) = run_child("objectives", [job], o, root, f"compile-{workload}")
        t, warm = result["step_s"], result["warmup_s"]
        out[workload] = {
            "step_s": t,
            "speedup": t["dpo"] / t["dpo compiled"],
            "compile_s": warm["dpo compiled"] - warm["dpo"],
            "warmup_steps": o.compile_warmup,
            "timed_steps": o.compile_steps,
            "peak_rss_mb": result["peak_rss_mb"],
        }
    return out


def load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None
