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
import shutil
import sys
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import replace
from multiprocessing import get_context
from pathlib import Path

from dralign.errors import RunFailedError

from . import provenance
from .scenarios import ShiftOptions, plan, scenarios_of

__all__ = ["job_cost", "measure_cells_in_workers", "run_parallel"]

_THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def job_cost(opts: ShiftOptions) -> float:
    """A scenario's work in training runs of `opts.steps` steps: test runs × test seeds +
    validation runs × validation seeds, each run weighted by its steps (mixture's train 2×)."""
    from .scenarios import default_choices, steps_of

    def runs(specs) -> float:
        return sum(steps_of(opts, r) / opts.steps for r in specs)

    return runs(plan(opts, default_choices(opts))) * opts.seeds + runs(plan(opts)) * opts.validation_seeds


def _one_thread() -> None:
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
    parts_opts = [replace(opts, scenarios=[sc.name], jobs=1, output_dir=str(Path(opts.output_dir) / "jobs" / sc.name))
                  for sc in scenarios_of(opts)]
    parts_opts.sort(key=job_cost, reverse=True)
    for var in _THREAD_VARS:  # inherited by the spawned workers before they import torch
        os.environ[var] = "1"
    console.rule(f"[bold]{len(parts_opts)} scenarios on {opts.jobs} workers (logs: {opts.output_dir}/jobs/*/log.txt)")
    parts: dict[str, dict] = {}
    with ProcessPoolExecutor(max_workers=opts.jobs, mp_context=get_context("spawn"), initializer=_one_thread) as pool:
        futures = {pool.submit(_worker, p, f"{command}  # worker: scenario {p.scenarios[0]}"): p.scenarios[0]
                   for p in parts_opts}
        for fut in as_completed(futures):
            name = futures[fut]
            try:
                parts[name] = fut.result()
            except Exception as e:  # a failed worker fails the run: no report from a subset
                pool.shutdown(wait=False, cancel_futures=True)  # the scenarios not started never start
                raise RunFailedError(f"scenario {name} failed in its worker: {e} "
                                     f"(see {opts.output_dir}/jobs/{name}/log.txt)") from e
            console.print(f"{name}: done in {parts[name]['seconds'] / 60:.1f} min")
    ordered = [parts[sc.name] for sc in scenarios_of(opts)]
    results = merge_results(ordered, command)
    results["options"].update(scenarios=opts.scenarios, jobs=opts.jobs, output_dir=opts.output_dir)
    results["provenance"] = {**provenance.finish(prov), "workers": opts.jobs}
    results["seconds"] = results["provenance"]["wall_seconds"]
    return results


_CELL_TRAINER: list = []  # a map worker's train_cell, built once per process


def _map_worker(opts: ShiftOptions, cell) -> tuple[dict, list[float]]:
    """One map cell in a worker: the world models loaded once per process, scratch files and the
    console in the worker's own folder ``OUTPUT_DIR/jobs/maps-<pid>/`` (log.txt)."""
    from rich.console import Console

    from .maps import measure_cell
    from .run import cell_trainer, world_models

    if not _CELL_TRAINER:
        root = Path(opts.output_dir) / "jobs" / f"maps-{os.getpid()}"
        root.mkdir(parents=True, exist_ok=True)
        console = Console(file=open(root / "log.txt", "a", buffering=1), width=120)  # noqa: SIM115 (the worker's life)
        _CELL_TRAINER.append(cell_trainer(*world_models(opts, console), root, console))
    return measure_cell(opts, cell, _CELL_TRAINER[0])


def measure_cells_in_workers(opts: ShiftOptions, console):
    """The maps' `measure(cells)` on `opts.jobs` worker processes (one thread each), the cells
    in order of the map grid; a failed cell fails the run."""
    def measure(cells: list) -> list:
        for var in _THREAD_VARS:
            os.environ[var] = "1"
        console.rule(f"[bold]{len(cells)} map cells on {opts.jobs} workers (logs: {opts.output_dir}/jobs/maps-*/log.txt)")
        with ProcessPoolExecutor(max_workers=opts.jobs, mp_context=get_context("spawn"), initializer=_one_thread) as pool:
            futures = [pool.submit(_map_worker, opts, cell) for cell in cells]
            out = []
            for cell, fut in zip(cells, futures):
                try:
                    out.append(fut.result())
                except Exception as e:
                    pool.shutdown(wait=False, cancel_futures=True)
                    raise RunFailedError(f"map {cell[0]} cell {cell[1]} failed in its worker: {e} "
                                         f"(see {opts.output_dir}/jobs/maps-*/log.txt)") from e
                console.print(f"map {cell[0]} cell {cell[1]}: {opts.seeds} seeds done")
        for scratch in Path(opts.output_dir).glob("jobs/maps-*/*"):  # the workers' scratch goes; their logs stay
            if scratch.is_dir():
                shutil.rmtree(scratch, ignore_errors=True)
        return out
    return measure
