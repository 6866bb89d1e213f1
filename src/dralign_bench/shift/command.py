"""`dralign bench shift`: resolve the options, run the scenarios (in this process, or as
parallel workers with ``--jobs``), write the docs-ready output (results.json, plots,
report.md, command.txt)."""

from __future__ import annotations

from pathlib import Path

from dralign.errors import BadOptionError

from .outputs import write_outputs
from .run import execute, seed_values
from .scenarios import ShiftConfig, ShiftOptions, resolve, scenarios_of

__all__ = ["run_shift"]


def run_shift(cfg: ShiftConfig | ShiftOptions, console=None, command: str = "dralign bench shift") -> dict:
    """Run the benchmark of `cfg`; write results.json, the plots, report.md and command.txt;
    return the results. With ``jobs`` > 1 the scenarios run as parallel worker processes
    (:mod:`.parallel`), merged and judged together.

    `command` is recorded in the report as the command that made it."""
    from rich.console import Console

    from ..plotting import require_matplotlib

    opts = resolve(cfg.shift if isinstance(cfg, ShiftConfig) else cfg)
    seed_values(opts)  # refuse overlapping seeds before any work
    if opts.jobs < 1:
        raise BadOptionError(f"--jobs {opts.jobs}: must be >= 1")
    require_matplotlib()  # before the runs, not after them
    console = console or Console()
    if opts.maps:  # the second profile: maps only, their cells in turn or on --jobs workers
        from .maps_profile import run_maps_profile

        results = run_maps_profile(opts, console, command)
    elif opts.jobs > 1 and len(scenarios_of(opts)) > 1:
        from .parallel import run_parallel

        results = run_parallel(opts, console, command)
    else:
        results = execute(opts, console, command)
    return write_outputs(results, Path(opts.output_dir), console)
