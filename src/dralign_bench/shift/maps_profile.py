"""`dralign bench shift --maps`: the maps profile — every map cell measured in turn, or on
``--jobs N`` worker processes (one thread each, each its own scratch folder and log in
``OUTPUT_DIR/jobs/maps-<pid>/``), then summarised by :mod:`.maps`."""

from __future__ import annotations

import os
import shutil
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

from dralign.errors import RunFailedError

from . import provenance
from .maps import Cell, Measured, in_turn, measure_cell, run_maps
from .parallel import THREAD_VARS, one_thread
from .run import cell_trainer, maps_results, world_models
from .scenarios import ShiftOptions

__all__ = ["measure_cells_in_workers", "run_maps_profile"]

_CELL_TRAINER: list = []  # a map worker's train_cell, built once per process


def _map_worker(opts: ShiftOptions, cell: Cell) -> Measured:
    """One map cell in a worker: the world models loaded once per process, scratch files and the
    console in the worker's own folder."""
    from rich.console import Console

    if not _CELL_TRAINER:
        root = Path(opts.output_dir) / "jobs" / f"maps-{os.getpid()}"
        root.mkdir(parents=True, exist_ok=True)
        console = Console(file=open(root / "log.txt", "a", buffering=1), width=120)  # noqa: SIM115 (the worker's life)
        _CELL_TRAINER.append(cell_trainer(*world_models(opts, console), root, console))
    return measure_cell(opts, cell, _CELL_TRAINER[0])


def measure_cells_in_workers(opts: ShiftOptions, console):
    """The maps' `measure(cells)` on `opts.jobs` worker processes, results in the cells' order; a
    failed cell fails the run. The workers' scratch folders go at the end, their logs stay."""

    def measure(cells: list[Cell]) -> list[Measured]:
        for var in THREAD_VARS:  # inherited by the spawned workers before they import torch
            os.environ[var] = "1"
        console.rule(
            f"[bold]{len(cells)} map cells on {opts.jobs} workers (logs: {opts.output_dir}/jobs/maps-*/log.txt)"
        )
        out = []
        with ProcessPoolExecutor(
            max_workers=opts.jobs, mp_context=get_context("spawn"), initializer=one_thread
        ) as pool:
            futures = [pool.submit(_map_worker, opts, cell) for cell in cells]
            for cell, fut in zip(cells, futures):
                try:
                    out.append(fut.result())
                except Exception as e:
                    pool.shutdown(wait=False, cancel_futures=True)
                    raise RunFailedError(
                        f"map {cell[0]} cell {cell[1]} failed in its worker: {e} "
                        f"(see {opts.output_dir}/jobs/maps-*/log.txt)"
                    ) from e
                console.print(f"map {cell[0]} cell {cell[1]}: {opts.seeds} seeds done")
        for scratch in Path(opts.output_dir).glob("jobs/maps-*/*"):
            if scratch.is_dir():
                shutil.rmtree(scratch, ignore_errors=True)
        return out

    return measure


def run_maps_profile(opts: ShiftOptions, console, command: str) -> dict:
    """The maps of resolved `opts` (in turn, or on `opts.jobs` workers): the results document."""
    prov = provenance.start()
    lm, tokenizer, start = world_models(opts, console)
    root = Path(opts.output_dir)
    measure = (
        measure_cells_in_workers(opts, console)
        if opts.jobs > 1
        else in_turn(opts, cell_trainer(lm, tokenizer, start, root, console), console)
    )
    return maps_results(opts, run_maps(opts, measure), root, provenance.finish(prov), lm, command)
