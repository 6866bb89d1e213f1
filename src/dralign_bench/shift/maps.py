"""Maps: *where* does each method help? (`dralign bench shift --maps`)

A map is a grid over the size of a scenario's shift; in each cell the method's gain over its
best baseline, per seed

    gain_s = y(method, s) − max(F_s(x(method, s)), y(baseline_k, s) for every other baseline k),

F_s DPO's envelope on that seed (:func:`.claims.frontier_y`: the upper concave hull of DPO's runs
on every frontier dataset of the scenario, and the start model where measured, never extrapolated:
a seed outside DPO's range gives no gain), with a paired t interval over the cell's seeds and the
scenario's positive control computed in the same cell (a cell whose control fails is shown,
marked, never hidden):

* ``dora`` — human fraction {0.05, 0.15, 0.3} × synthetic judge agreement {0.45, 0.6, 0.75, 0.9};
  target reward r(α₀) at matched KL; baselines DPO on all rows and on the human rows (their
  one envelope), reweighting by the estimated ratios, KL-DRO; control :func:`.controls.sources_control`.
* ``rdpo`` — flip rate {0.1, 0.2, 0.3, 0.4}; rDPO at ε = the true rate; accuracy against the
  noise-free order at matched KL; baseline DPO's envelope; control :func:`.controls.flip_control`.

The maps tune nothing: robust parameters (DoRA's λ, KL-DRO's τ) are those the full profile chose on
its validation seeds when the output folder holds its results.json (its ``selection``), else each
grid's first value (:func:`map_parameters`; the record says which). The maps go to ``results["maps"]`` (of the output folder's results.json, created if absent)
and to one PNG heatmap per map.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from dralign.stats import paired_t

from .claims import X_DIRECTION, frontier_y
from .controls import flip_control, sources_control
from .scenarios import SCENARIOS, RunSpec, ShiftOptions, default_choices, frontier_runs

__all__ = [
    "MAPS",
    "MapSpec",
    "cell_gain",
    "in_turn",
    "map_cells",
    "map_names",
    "map_parameters",
    "map_runs",
    "measure_cell",
    "plot_map",
    "run_maps",
    "seed_list",
    "summarise_map",
]


@dataclass(frozen=True)
class MapSpec:
    name: str
    scenario: str
    rows: tuple[str, tuple[float, ...]]  # (axis, values); axis an option name or "human_fraction"
    cols: tuple[str, tuple[float, ...]] | None
    metric: str
    x: str
    question: str


MAPS = {
    m.name: m
    for m in (
        MapSpec(
            "dora",
            "sources",
            ("human_fraction", (0.05, 0.15, 0.3)),
            ("judge_agreement", (0.45, 0.6, 0.75, 0.9)),
            "r0",
            "kl",
            "DoRA's gain in target reward r(α₀) over its best baseline (DPO on all rows or on the human "
            "rows at matched KL, reweighting, KL-DRO)",
        ),
        MapSpec(
            "rdpo",
            "flips",
            ("flip_rate", (0.1, 0.2, 0.3, 0.4)),
            None,
            "acc",
            "kl",
            "rDPO's (ε = the true rate) gain in held-out accuracy over DPO's envelope at matched KL",
        ),
    )
}


def cell_options(opts: ShiftOptions, spec: MapSpec, coords: dict[str, float]) -> ShiftOptions:
    """The options of one cell: the map's axes set, only its scenario run."""
    values = {"scenarios": [spec.scenario]}
    for axis, v in coords.items():
        if axis == "human_fraction":
            values["synthetic_fraction"] = 1.0 - v
        else:
            values[axis] = v
    return replace(opts, **values)


def map_parameters(opts: ShiftOptions, spec: MapSpec) -> tuple[dict[tuple[str, str], float], str]:
    """(the map's tuned parameters {(dataset, method): value}, where they come from): the
    validation selection recorded in output_dir/results.json by a full run, where it chose them;
    else each grid's first value."""
    chosen = default_choices(replace(opts, scenarios=[spec.scenario]))
    path = Path(opts.output_dir) / "results.json"
    selection = json.loads(path.read_text()).get("selection", {}) if path.exists() else {}
    picked = {tuple(k.split("/", 1)): rec["chosen"] for k, rec in selection.items()}
    found = {key: picked[key] for key in chosen if key in picked}
    if not chosen or len(found) < len(chosen):
        return chosen, "each grid's first value (no validation selection in the output folder)"
    seeds = json.loads(path.read_text()).get("options", {}).get("validation_seed_values")
    return found, f"chosen on validation seeds {seeds} by the full run in {path}"


def map_runs(opts: ShiftOptions, spec: MapSpec) -> tuple[list[RunSpec], RunSpec, list[RunSpec], list[RunSpec]]:
    """(every run of a cell, the method, its non-frontier baselines, the control's extra runs)."""
    sc = SCENARIOS[spec.scenario]
    chosen = map_parameters(opts, spec)[0]
    tuned = lambda m: next(
        RunSpec(t.dataset, t.method, ((t.param, chosen[(t.dataset, t.method)]),))  # noqa: E731
        for t in sc.tuned
        if t.method == m
    )
    if spec.name == "dora":
        method, baselines = tuned("dora"), [RunSpec("sources", "dora-reweight"), tuned("dro")]
        controls = [RunSpec("sources-oracle", "dora-reweight")]
    else:
        method, baselines = RunSpec("flip", "rdpo", (("label_smoothing", opts.flip_rate),)), []
        controls = [RunSpec("clean", "dpo")]
    runs = list(dict.fromkeys([*frontier_runs(opts, sc), method, *baselines, *controls]))
    return runs, method, baselines, controls


def cell_gain(metrics: dict, spec: MapSpec, method: str, baselines: list[str], frontier: list[str]) -> np.ndarray:
    """gain_s per seed (module docstring) from a cell's metrics {run id: [SeedMetrics per seed]};
    NaN where the method lies outside DPO's range (sources: one envelope over all rows and human rows)."""
    out = []
    for s, m in enumerate(metrics[method]):
        front = frontier_y(metrics, frontier, s, spec.x, spec.metric, m.get(spec.x), X_DIRECTION.get(spec.x, "at"))
        best = max([front] + [metrics[b][s].get(spec.metric) for b in baselines])
        out.append(m.get(spec.metric) - best if np.isfinite(front) else float("nan"))
    return np.array(out)


def _control(opts: ShiftOptions, spec: MapSpec, metrics: dict, aucs: list[float]) -> dict:
    dpo = lambda d: metrics[RunSpec(d, "dpo", (("beta", opts.beta),)).id]  # noqa: E731
    if spec.name == "dora":
        return sources_control(
            dpo("sources"), dpo("human"), metrics[RunSpec("sources-oracle", "dora-reweight").id], aucs
        )
    return flip_control(metrics[RunSpec("clean", "dpo").id], dpo("flip"))


def summarise_map(opts: ShiftOptions, spec: MapSpec, cells: list[tuple[dict, dict, list[float]]]) -> dict:
    """The map's record from its cells' (coords, metrics, ratio AUCs): per cell the gain's mean,
    95% interval, seeds (those inside DPO's range) and the control; also in the report's form
    (title, rows/cols {name, values}, cells' row, col, diff, control_passed: :mod:`.report`)."""
    out = []
    for coords, metrics, aucs in cells:
        o = cell_options(opts, spec, coords)
        _, method, baselines, _ = map_runs(o, spec)
        frontier = [r.id for r in frontier_runs(o, SCENARIOS[spec.scenario])]
        gains = cell_gain(metrics, spec, method.id, [b.id for b in baselines], frontier)
        ok = gains[np.isfinite(gains)]
        t = paired_t(ok) if ok.size else None  # no seed inside DPO's range: no value, never extrapolated
        diff, ci = (t.diff, [t.low, t.high]) if t else (float("nan"), [float("nan")] * 2)
        control = _control(o, spec, metrics, aucs)
        out.append(
            {
                "coords": coords,
                "method": method.id,
                "gain": diff,
                "ci": ci,
                "seeds": int(ok.size),
                "inside": float(np.isfinite(gains).mean()) if gains.size else 0.0,
                "control": control,
                "row": coords[spec.rows[0]],
                "col": coords.get(spec.cols[0]) if spec.cols else None,
                "diff": diff,
                "control_passed": control["passed"],
            }
        )
    axes = {spec.rows[0]: list(spec.rows[1]), **({spec.cols[0]: list(spec.cols[1])} if spec.cols else {})}
    return {
        "question": spec.question,
        "metric": spec.metric,
        "matched_on": spec.x,
        "axes": axes,
        "cells": out,
        "title": spec.question,
        "rows": {"name": spec.rows[0], "values": list(spec.rows[1])},
        "cols": {"name": spec.cols[0], "values": list(spec.cols[1])} if spec.cols else None,
    }


def plot_map(record: dict, path: Path) -> str:
    """A heatmap of the gains (rows: the first axis, columns: the second), each cell annotated with
    its gain, interval and control (✓ passed, ✗ failed: the cell is no valid test)."""
    from ..plotting import pyplot

    plt = pyplot()
    (ra, rv), *rest = record["axes"].items()
    ca, cv = rest[0] if rest else ("", [None])
    grid = np.full((len(rv), len(cv)), np.nan)
    fig, ax = plt.subplots(figsize=(2.2 * len(cv) + 2, 1.2 * len(rv) + 1.5))
    for c in record["cells"]:
        i, j = rv.index(c["coords"][ra]), cv.index(c["coords"].get(ca)) if ca else 0
        grid[i, j] = c["gain"]
        mark = "✓" if c["control"]["passed"] else "✗ control"
        ax.text(
            j,
            i,
            f"{c['gain']:+.3f}\n[{c['ci'][0]:+.3f}, {c['ci'][1]:+.3f}]\n{mark}",
            ha="center",
            va="center",
            fontsize=8,
        )
    lim = np.nanmax(np.abs(grid)) if np.isfinite(grid).any() else 1.0
    im = ax.imshow(grid, cmap="RdBu", vmin=-lim, vmax=lim, aspect="auto")
    ax.set_yticks(range(len(rv)), [f"{v:g}" for v in rv])
    ax.set_xticks(range(len(cv)), [f"{v:g}" if v is not None else "" for v in cv])
    ax.set(ylabel=ra, xlabel=ca, title=record["question"][:90])
    fig.colorbar(im, ax=ax, label=f"gain in {record['metric']}")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return str(path)


def _coords(spec: MapSpec) -> list[dict[str, float]]:
    cols = [(spec.cols[0], v) for v in spec.cols[1]] if spec.cols else [None]
    return [{spec.rows[0]: r, **({c[0]: c[1]} if c else {})} for r in spec.rows[1] for c in cols]


TrainCell = Callable[[ShiftOptions, list[RunSpec], int], tuple[dict, list[float]]]
Cell = tuple[str, dict[str, float]]  # (map name, coords)
Measured = tuple[dict, list[float]]  # ({run id: [SeedMetrics per seed]}, ratio AUCs)


def map_names(opts: ShiftOptions) -> list[str]:
    """The maps of `opts`: those whose scenario is among `opts.scenarios` (default: every map)."""
    return [n for n, spec in MAPS.items() if opts.scenarios is None or spec.scenario in opts.scenarios]


def map_cells(opts: ShiftOptions) -> list[Cell]:
    """Every cell of every map of `opts`, in order."""
    return [(name, coords) for name in map_names(opts) for coords in _coords(MAPS[name])]


def seed_list(opts: ShiftOptions) -> list[int]:
    """The maps' test seeds: ``seed_offset, seed_offset + 1, …`` (``opts.seeds`` of them)."""
    return list(range(opts.seed_offset, opts.seed_offset + opts.seeds))


def measure_cell(opts: ShiftOptions, cell: Cell, train_cell: TrainCell) -> Measured:
    """One cell: `train_cell(cell options, runs, seed)` trains and measures the cell's runs on
    each seed and returns ({run id: SeedMetrics}, ratio AUCs); gathered over the seeds."""
    name, coords = cell
    o = cell_options(opts, MAPS[name], coords)
    runs = map_runs(o, MAPS[name])[0]
    metrics: dict[str, list] = {}
    aucs: list[float] = []
    for seed in seed_list(opts):
        got, seed_aucs = train_cell(o, runs, seed)
        aucs += seed_aucs
        for rid, m in got.items():
            metrics.setdefault(rid, []).append(m)
    return metrics, aucs


def in_turn(opts: ShiftOptions, train_cell: TrainCell, console=None) -> Callable[[list[Cell]], list[Measured]]:
    """Measure cells one after another in this process (the parallel twin is
    :func:`.maps_profile.measure_cells_in_workers`)."""

    def measure(cells: list[Cell]) -> list[Measured]:
        out = []
        for cell in cells:
            out.append(measure_cell(opts, cell, train_cell))
            if console is not None:
                console.print(f"map {cell[0]} cell {cell[1]}: {opts.seeds} seeds done")
        return out

    return measure


def run_maps(opts: ShiftOptions, measure: Callable[[list[Cell]], list[Measured]]) -> dict:
    """Every map of `opts` (:func:`map_names`): `measure(cells)` measures every cell (:func:`in_turn`,
    or in worker processes); each map is summarised with its seeds (``seed_values``). Writes
    ``maps`` into output_dir/results.json and a PNG per map."""
    root = Path(opts.output_dir)
    cells = map_cells(opts)
    measured = dict(zip(((n, tuple(c.items())) for n, c in cells), measure(cells)))
    maps = {}
    for name in map_names(opts):
        spec = MAPS[name]
        rows = [(coords, *measured[(name, tuple(coords.items()))]) for coords in _coords(spec)]
        chosen, source = map_parameters(opts, spec)
        parameters = {"/".join(k): v for k, v in chosen.items()}
        maps[name] = {
            **summarise_map(opts, spec, rows),
            "seed_values": seed_list(opts),
            "parameters": {"values": parameters, "source": source},
        }
        maps[name]["png"] = maps[name]["plot"] = plot_map(maps[name], root / f"map-{name}.png")
    path = root / "results.json"
    results = json.loads(path.read_text()) if path.exists() else {"options": {"maps_only": True}}
    results["maps"] = maps  # the one place the maps enter results.json
    path.write_text(json.dumps(results, indent=2))
    return maps
