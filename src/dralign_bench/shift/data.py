"""The shift world's datasets per seed, and the held-out pairs: JSONL rows for `dralign train`.

Datasets (all labelled by Bradley–Terry at temperature T on r(α₀) = α₀ r_a + (1−α₀) r_b):

* ``mix`` — `train_pairs` pairs (the mixture and divergence scenarios);
* ``clean`` / ``flip`` — `flip_pairs` pairs (fewer, so the steps make several epochs and DPO
  can memorise noise), ``flip`` with ``round(flip_rate · n)`` labels swapped;
* ``unpaired`` — the ``mix`` pairs split into a desirable and an undesirable completion;
* ``repaired`` — the unpaired baseline: each desirable completion paired with an undesirable
  one drawn at random from another prompt (the pairing of the data is not used);
* ``sources`` — `train_pairs` pairs, a fraction `synthetic_fraction` of them from the synthetic
  generator (both responses) and labelled by a *judge* on another objective (`judge`),
  the rest human and labelled on the target r(α₀); every row keeps its ``source``;
* ``human`` — the human rows of ``sources`` alone (the target labeller's data only).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from .. import world

if TYPE_CHECKING:
    from .scenarios import ShiftOptions

__all__ = ["DATASETS", "build_dataset", "heldout_pairs", "target_reward", "write_jsonl"]

DATASETS = ("mix", "clean", "flip", "unpaired", "repaired", "sources", "human")


def target_reward(opts: ShiftOptions):
    """The labeller's reward r(α₀) (linear mixture)."""
    return world.make_mixture_reward(opts.reward_a, opts.reward_b, opts.alpha0, "linear")


def _labelled(opts: ShiftOptions, n: int, seed: int, split: str = "train") -> list[dict]:
    prompts = world.generate_prompts(n, seed=seed, split=split)
    return world.label_rows(world.prompt_response_pairs(prompts, seed=seed), target_reward(opts),
                            opts.label_temperature, seed=seed)


def judge_reward(opts: ShiftOptions):
    """The synthetic judge's reward: one gold objective (`opts.judge`) that conflicts with the
    target on synthetic pairs. Measured on 1,400 synthetic pairs: conciseness agrees with the
    target's order on 38% (a judge on sentiment alone still agrees on 59%)."""
    return world.GOLD_OBJECTIVES[opts.judge]


def _sources(opts: ShiftOptions, seed: int) -> list[dict]:
    rows = world.assign_sources(world.generate_prompts(opts.train_pairs, seed=seed, split="train"),
                                opts.synthetic_fraction, seed=seed)
    human = world.label_rows([r for r in rows if r["source"] == "human"], target_reward(opts),
                             opts.label_temperature, seed=seed)
    judged = world.label_rows([r for r in rows if r["source"] != "human"], judge_reward(opts),
                              opts.label_temperature, seed=seed + 1)
    by_source = {"human": iter(human), "synthetic": iter(judged)}
    return [next(by_source[r["source"]]) for r in rows]  # the original row order


def build_dataset(opts: ShiftOptions, dataset: str, seed: int) -> list[dict]:
    """Training rows of `dataset` for one seed (see the module docstring)."""
    if dataset in ("sources", "human"):
        rows = _sources(opts, seed)
        return rows if dataset == "sources" else [r for r in rows if r["source"] == "human"]
    if dataset in ("clean", "flip"):
        rows = _labelled(opts, opts.flip_pairs, seed)
        return rows if dataset == "clean" else world.flip_labels(rows, opts.flip_rate, seed=seed)
    rows = _labelled(opts, opts.train_pairs, seed)
    if dataset == "mix":
        return rows
    if dataset == "unpaired":
        return [{"prompt": r["prompt"], "completion": r[k], "label": k == "chosen"}
                for r in rows for k in ("chosen", "rejected")]
    if dataset == "repaired":
        rng = np.random.default_rng(seed + 7_919)
        perm = rng.permutation(len(rows))
        for i in range(len(rows)):  # a derangement: never the pair's own rejected completion
            if perm[i] == i:
                j = (i + 1) % len(rows)
                perm[i], perm[j] = perm[j], perm[i]
        return [{"prompt": r["prompt"], "chosen": r["chosen"], "rejected": rows[int(perm[i])]["rejected"]}
                for i, r in enumerate(rows)]
    raise ValueError(f"unknown dataset {dataset!r}; choose from {', '.join(DATASETS)}")


def training_prompts(opts: ShiftOptions, seed: int) -> set[str]:
    """Every prompt any dataset of this seed trains on (validation prompts avoid them)."""
    return set(world.generate_prompts(max(opts.train_pairs, opts.flip_pairs), seed=seed, split="train"))


def heldout_pairs(opts: ShiftOptions, seed: int, n: int) -> list[dict]:
    """`n` unlabelled held-out pairs ``{prompt, response_1, response_2, r_1, r_2}`` with the gold
    r(α₀) of each response: the noise-free ordering and the known preference probability
    p = σ((r_1 − r_2)/T) of every pair come from them."""
    reward = target_reward(opts)
    rows = world.prompt_response_pairs(world.generate_prompts(n, seed=seed + 50_000, split="heldout"), seed=seed)
    return [{**r, "r_1": reward(r["response_1"]), "r_2": reward(r["response_2"])} for r in rows]


def write_jsonl(path: Path, rows: Sequence[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        for row in rows:
            fh.write(json.dumps(row) + "\n")
    return path
