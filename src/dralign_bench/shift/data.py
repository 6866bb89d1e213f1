"""The shift world's datasets per seed: Bradley–Terry labelled pairs on a mixture, human and
synthetic sources, unpaired, flipped labels; JSONL files for `dralign train`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

from .. import world

if TYPE_CHECKING:  # options only annotate here; scenarios imports this module
    from .scenarios import ShiftOptions

__all__ = ["DATASETS", "build_dataset", "mixture_of", "write_jsonl"]

DATASETS = ("mix-linear", "mix-geometric", "sources", "unpaired", "flip-20", "flip-40")


def mixture_of(dataset: str) -> str:
    """The mixture family a dataset is labelled with (and evaluated on)."""
    return "geometric" if dataset == "mix-geometric" else "linear"


def _target_reward(opts: ShiftOptions, mixture: str, alpha: float) -> Callable[[str], float]:
    return world.make_mixture_reward(opts.reward_a, opts.reward_b, alpha, mixture)


def _pairs(seed: int, split: str, n: int) -> list[dict]:
    prompts = world.generate_prompts(n, seed=seed, split=split)
    return world.prompt_response_pairs(prompts, seed=seed)


def build_dataset(opts: ShiftOptions, dataset: str, seed: int, split: str = "train") -> list[dict]:
    """Rows of `dataset` for one seed. `split="heldout"` gives clean held-out pairs labelled
    like the training set (no flips; the sources set's held-out pairs are human, the target)."""
    n = opts.train_pairs if split == "train" else opts.eval_pairs
    T = opts.label_temperature
    if dataset == "sources":
        if split == "train":
            rows = world.assign_sources(world.generate_prompts(n, seed=seed, split="train"),
                                        opts.synthetic_fraction, seed=seed)
        else:
            rows = _pairs(seed, split, n)
        human = _target_reward(opts, "linear", opts.alpha0)
        judge = _target_reward(opts, "linear", opts.alpha_judge)
        labelled = {
            "human": iter(world.label_rows([r for r in rows if r["source"] == "human"], human, T, seed=seed)),
            "synthetic": iter(world.label_rows([r for r in rows if r["source"] == "synthetic"], judge, T,
                                               seed=seed + 10_000)),
        }
        return [next(labelled[r["source"]]) for r in rows]
    mixture = mixture_of(dataset)
    rows = world.label_rows(_pairs(seed, split, n), _target_reward(opts, mixture, opts.alpha0), T, seed=seed)
    if split != "train" or dataset in ("mix-linear", "mix-geometric"):
        return rows
    if dataset.startswith("flip-"):
        return world.flip_labels(rows, int(dataset.split("-")[1]) / 100, seed=seed)
    if dataset == "unpaired":
        return [{"prompt": r["prompt"], "completion": r[k], "label": k == "chosen"}
                for r in rows for k in ("chosen", "rejected")]
    raise ValueError(f"unknown dataset {dataset!r}; choose from {', '.join(DATASETS)}")


def write_jsonl(path: Path, rows: Sequence[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        for row in rows:
            fh.write(json.dumps(row) + "\n")
    return path
