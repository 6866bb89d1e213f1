"""`dralign bench shift --jobs N`: every scenario as a worker process (one thread each), the
parts merged and judged together (:func:`.merge.merge_results`), one provenance record.

The world LM is trained (or read from the cache) once before the workers start; each worker
runs one scenario with the same options into ``OUTPUT_DIR/jobs/SCENARIO/`` (its results.json
and log.txt are kept there as the record of the part), the longest scenarios first (longest
processing time first: the wall time is the largest worker's sum).
"""

from __future__ import annotations

import json
import os
import sys
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import replace
from multiprocessing import get_context
from pathlib import Path

from dralign.errors import RunFailedError

from . import provenance
from .scenarios import ShiftOptions, plan, scenarios_of

__all__ = ["THREAD_VARS", "job_cost", "one_thread", "run_parallel"]

THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def job_cost(opts: ShiftOptions) -> float:
    """A scenario's work in training runs of `opts.steps` steps: test runs × test seeds +
    validation runs × validation seeds, each run weighted by its steps (mixture's train 2×)."""
    from .scenarios import default_choices, steps_of

    def runs(specs) -> float:
        return sum(steps_of(opts, r) / opts.steps for r in specs)

    return runs(plan(opts, default_choices(opts))) * opts.seeds + runs(plan(opts)) * opts.validation_seeds


def one_thread() -> None:
    """Worker initializer: one thread (OMP_NUM_THREADS is inherited; torch is told as well)."""
    import torch

    torch.set_num_threads(1)


def _worker(opts: ShiftOptions, command: str) -> dict:
    """One scenario's part, its console written to log.txt beside its results.json."""
    from rich.console import Console

    from .run import execute

    root = Path(opts.output_dir)
    root.mkdir(parents=True, exist_ok=True)
    with open(root / "log.txt", "w") as log:
        os.dup2(log.fileno(), 1)  # everything the worker prints (training included) goes to its log
        os.dup2(log.fileno(), 2)
        results = execute(opts, Console(file=sys.stdout, width=120), command)
    (root / "results.json").write_text(json.dumps(results, indent=2))
    return results


def run_parallel(opts: ShiftOptions, console, command: str) -> dict:
    """Run every scenario of resolved `opts` on `opts.jobs` workers; the merged results."""
    from ..world_lm import DEFAULT_CACHE_DIR, WorldLMSpec, world_lm
    from .merge import merge_results

    prov = provenance.start()
    world_lm(WorldLMSpec(steps=opts.lm_steps or WorldLMSpec.steps), opts.cache_dir or DEFAULT_CACHE_DIR, console)
    parts_opts = [
        replace(opts, scenarios=[sc.name], jobs=1, output_dir=str(Path(opts.output_dir) / "jobs" / sc.name))
        for sc in scenarios_of(opts)
    ]
    parts_opts.sort(key=job_cost, reverse=True)
    for var in THREAD_VARS:  # inherited by the spawned workers before they import torch
        os.environ[var] = "1"
    console.rule(f"[bold]{len(parts_opts)} scenarios on {opts.jobs} workers (logs: {opts.output_dir}/jobs/*/log.txt)")
    parts: dict[str, dict] = {}
    with ProcessPoolExecutor(max_workers=opts.jobs, mp_context=get_context("spawn"), initializer=one_thread) as pool:
        futures = {
            pool.submit(_worker, p, f"{command}  # worker: scenario {p.scenarios[0]}"): p.scenarios[0]
            for p in parts_opts
        }
        for fut in as_completed(futures):
            name = futures[fut]
            try:
                parts[name] = fut.result()
            except Exception as e:  # a failed worker fails the run: no report from a subset
                pool.shutdown(wait=False, cancel_futures=True)  # the scenarios not started never start
                raise RunFailedError(
                    f"scenario {name} failed in its worker: {e} (see {opts.output_dir}/jobs/{name}/log.txt)"
                ) from e
            console.print(f"{name}: done in {parts[name]['seconds'] / 60:.1f} min")
    ordered = [parts[sc.name] for sc in scenarios_of(opts)]
    results = merge_results(ordered, command)
    results["options"].update(scenarios=opts.scenarios, jobs=opts.jobs, output_dir=opts.output_dir)
    results["provenance"] = {**provenance.finish(prov), "workers": opts.jobs}
    results["seconds"] = results["provenance"]["wall_seconds"]
    return results
