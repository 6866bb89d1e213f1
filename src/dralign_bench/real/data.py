"""The real data sets of `dralign bench real`: fixed train / held-out splits and the rows each
task trains on (see :mod:`dralign_bench.real.options` for the tasks).

Splits are a function of the data only (a permutation seeded with 0), never of the training
seed: every seed and method is scored on the same held-out pairs, so per-pair outcomes can be
averaged over seeds before bootstrapping over pairs.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .options import DATA_FILES, RealOptions

__all__ = ["SPLIT_SEED", "heldout_rows", "invalid_rows", "load_split", "task_rows", "valid_row", "write_jsonl"]

SPLIT_SEED = 0
KEEP = ("prompt", "chosen", "rejected", "group", "source", "meta")


def valid_row(row: dict) -> bool:
    """Prompt, chosen and rejected are non-empty strings (PandaLM has a few empty or boolean
    responses; they are dropped before the split and counted by :func:`invalid_rows`)."""
    return all(isinstance(row.get(k), str) and row[k].strip() for k in ("prompt", "chosen", "rejected"))


def _read_all(path: Path) -> list[dict]:
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} is missing: the real benchmark reads ../shared/data (see its README.md) or --data-dir"
        )
    with path.open() as f:
        return [{k: r[k] for k in KEEP if k in r} for r in map(json.loads, f) if r]


def _read(path: Path) -> list[dict]:
    return [r for r in _read_all(path) if valid_row(r)]


def invalid_rows(data_dir: str | Path, name: str) -> int:
    """How many rows of data set `name`'s files :func:`valid_row` drops."""
    return sum(not valid_row(r) for f in DATA_FILES[name] if f for r in _read_all(Path(data_dir) / f))


def _group_of(name: str, row: dict) -> str:
    """The group a row is scored (and, for group-dro, trained) under: HHH's category, one group
    for PandaLM (its 21 model pairs would leave ~2 held-out pairs each), TLDR's pair type."""
    if name == "hhh":
        return f"hhh:{row['group']}"
    if name == "pandalm":
        return "pandalm"
    return str(row.get("group", name))


def load_split(data_dir: str | Path, name: str) -> tuple[list[dict], list[dict]]:
    """(train, held-out) rows of data set `name`: the files' own split when there is one
    (UltraFeedback), else a seeded half / half split. Every row gets its `group`."""
    train_file, eval_file = DATA_FILES[name]
    rows = _read(Path(data_dir) / train_file)
    for r in rows:
        r["group"] = _group_of(name, r)
    if eval_file is not None:
        held = _read(Path(data_dir) / eval_file)
        for r in held:
            r["group"] = _group_of(name, r)
        return rows, held
    order = np.random.default_rng(SPLIT_SEED).permutation(len(rows))
    half = len(rows) // 2
    return [rows[i] for i in order[:half]], [rows[i] for i in order[half:]]


def _first(rows: list[dict], n: int) -> list[dict]:
    return rows if n == 0 else rows[:n]


def heldout_rows(opts: RealOptions, name: str) -> list[dict]:
    """The held-out pairs of `name` scored by every run (``eval_pairs`` of them; 0: all)."""
    return _first(load_split(opts.data_dir, name)[1], opts.eval_pairs)


def task_rows(opts: RealOptions, datasets: tuple[str, ...], n: int | None = None) -> list[dict]:
    """The training rows of a task: `n` (default ``train_pairs``) from each data set's train
    split (0: all), interleaved so that every batch mixes the data sets."""
    n = opts.train_pairs if n is None else n
    parts = [_first(load_split(opts.data_dir, name)[0], n) for name in datasets]
    out = []
    for i in range(max(map(len, parts))):
        out += [p[i] for p in parts if i < len(p)]
    return out


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in rows))
    tmp.rename(path)
    return path
