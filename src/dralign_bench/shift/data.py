"""The shift world's datasets per seed, and the held-out pairs: JSONL rows for `dralign train`.

Datasets (labelled by Bradley–Terry at temperature T on r(α₀) = α₀ r_a + (1−α₀) r_b unless said):

* ``mix`` — `train_pairs` pairs (the divergence scenario);
* ``labmix`` — the ``mix`` pairs labelled by a *mixture of labellers* (the mixture scenario):
  each pair by Bradley–Terry on r_a with probability α₀, else on r_b. A mixture of
  Bradley–Terry models is not Bradley–Terry on any one reward, so DPO's implicit reward cannot
  fit it exactly;
* ``labmix-aA`` — the ``labmix`` pairs labelled by the labeller mixture at α = A (DPO trained
  there is the reference of every method's regret at A);
* ``clean`` / ``flip`` — `flip_pairs` pairs (fewer, so the steps make several epochs and DPO
  can memorise noise), ``flip`` with ``round(flip_rate · n)`` labels swapped;
* ``unpaired`` — the ``mix`` pairs split into a desirable and an undesirable completion;
* ``repaired`` — the unpaired baseline: each desirable completion paired with an undesirable
  one drawn at random from another prompt (the pairing of the data is not used);
* ``sources`` — `train_pairs` pairs, a fraction `synthetic_fraction` of them from the synthetic
  generator (both responses) and labelled by a *judge* whose reward leans towards another
  objective (`judge`) just enough that its noise-free order agrees with the target's on a share
  `judge_agreement` of synthetic pairs (:func:`judge_weight`), the rest human and labelled on the
  target r(α₀); every row keeps its ``source``;
* ``human`` — the human rows of ``sources`` alone (the target labeller's data only);
* ``sources-oracle`` — the ``sources`` rows; the runner adds the *oracle* density ratio
  (:mod:`.oracle`), the upper reference of reweighting.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .. import world

if TYPE_CHECKING:
    from .scenarios import ShiftOptions

__all__ = ["DATASETS", "agreement", "build_dataset", "heldout_pairs", "judge_reward", "judge_weight", "target_reward",
           "write_jsonl"]

DATASETS = ("mix", "labmix", "clean", "flip", "unpaired", "repaired", "sources", "human", "sources-oracle")
#: the seed of the synthetic pairs on which the judge's weight is solved: none of the test or
#: validation seeds (a property of the judge, fixed before any run)
JUDGE_CALIBRATION_SEED = 987_654
JUDGE_CALIBRATION_PAIRS = 2000


def target_reward(opts: ShiftOptions):
    """The labeller's reward r(α₀) (linear mixture)."""
    return world.make_mixture_reward(opts.reward_a, opts.reward_b, opts.alpha0, "linear")


def _labelled(opts: ShiftOptions, n: int, seed: int, split: str = "train") -> list[dict]:
    prompts = world.generate_prompts(n, seed=seed, split=split)
    return world.label_rows(world.prompt_response_pairs(prompts, seed=seed), target_reward(opts),
                            opts.label_temperature, seed=seed)


def _labeller_mixture(opts: ShiftOptions, n: int, seed: int) -> list[dict]:
    """`n` pairs, each labelled by Bradley–Terry on r_a with probability α₀, else on r_b (the
    labeller drawn per pair from its own stream); rows carry ``labeller`` ("a"/"b")."""
    pairs = world.prompt_response_pairs(world.generate_prompts(n, seed=seed, split="train"), seed=seed)
    by_a = world.label_rows(pairs, world.GOLD_OBJECTIVES[opts.reward_a], opts.label_temperature, seed=seed)
    by_b = world.label_rows(pairs, world.GOLD_OBJECTIVES[opts.reward_b], opts.label_temperature, seed=seed + 1)
    pick_a = np.random.default_rng(seed + 2).random(n) < opts.alpha0
    return [{**(a if use_a else b), "labeller": "a" if use_a else "b"} for a, b, use_a in zip(by_a, by_b, pick_a)]


def agreement(reward_1, reward_2, rows: Sequence[dict]) -> float:
    """Share of pairs whose noise-free order under `reward_1` equals that under `reward_2` (pairs
    tied under either dropped)."""
    agree = total = 0
    for r in rows:
        d1 = reward_1(r["response_1"]) - reward_1(r["response_2"])
        d2 = reward_2(r["response_1"]) - reward_2(r["response_2"])
        if d1 != 0 and d2 != 0:
            total += 1
            agree += (d1 > 0) == (d2 > 0)
    return agree / total if total else float("nan")


def _judge_of(opts: ShiftOptions, weight: float):
    target, other = target_reward(opts), world.GOLD_OBJECTIVES[opts.judge]
    return lambda text: (1.0 - weight) * target(text) + weight * other(text)


_WEIGHTS: dict[tuple, float] = {}


def judge_weight(opts: ShiftOptions) -> float:
    """The weight w of `opts.judge` in the judge's reward (1 − w)·r(α₀) + w·r_judge at which the
    judge's noise-free order agrees with the target's on `opts.judge_agreement` of synthetic pairs
    (bisection on :data:`JUDGE_CALIBRATION_PAIRS` synthetic pairs of a fixed seed; agreement falls
    as w grows, from 1 at w = 0). Agreement below the judge objective's own (w = 1) is refused."""
    key = (opts.reward_a, opts.reward_b, opts.alpha0, opts.judge, opts.judge_agreement)
    if key not in _WEIGHTS:
        prompts = world.generate_prompts(JUDGE_CALIBRATION_PAIRS, seed=JUDGE_CALIBRATION_SEED, split="train")
        rows = world.prompt_response_pairs(prompts, seed=JUDGE_CALIBRATION_SEED, source="synthetic")
        t, o = ([[f(r[k]) for r in rows] for k in ("response_1", "response_2")]
                for f in (target_reward(opts), world.GOLD_OBJECTIVES[opts.judge]))
        dt, do = np.subtract(*t), np.subtract(*o)  # the target's and the judge objective's gaps

        def at(w: float) -> float:  # agreement of the judge at weight w (vectorised `agreement`)
            dj = (1.0 - w) * dt + w * do
            keep = (dt != 0) & (dj != 0)
            return float(np.mean((dt[keep] > 0) == (dj[keep] > 0)))
        if at(1.0) > opts.judge_agreement:
            raise ValueError(f"judge_agreement={opts.judge_agreement}: a judge on {opts.judge} alone agrees with the "
                             f"target on {at(1.0):.2f} of synthetic pairs; ask for at least that")
        lo, hi = 0.0, 1.0
        for _ in range(30):  # agreement is a step function of w: bisection to 1e-9
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if at(mid) >= opts.judge_agreement else (lo, mid)
        _WEIGHTS[key] = lo
    return _WEIGHTS[key]


def judge_reward(opts: ShiftOptions):
    """The synthetic judge's reward (1 − w)·r(α₀) + w·r_judge, w = :func:`judge_weight`: a judge
    that agrees with the target on `opts.judge_agreement` of synthetic pairs (noise-free order)."""
    return _judge_of(opts, judge_weight(opts))


def _sources(opts: ShiftOptions, seed: int) -> list[dict]:
    rows = world.assign_sources(world.generate_prompts(opts.train_pairs, seed=seed, split="train"),
                                opts.synthetic_fraction, seed=seed)
    human = world.label_rows([r for r in rows if r["source"] == "human"], target_reward(opts),
                             opts.label_temperature, seed=seed)
    judged = world.label_rows([r for r in rows if r["source"] != "human"], judge_reward(opts),
                              opts.label_temperature, seed=seed + 1)
    by_source = {"human": iter(human), "synthetic": iter(judged)}
    return [next(by_source[r["source"]]) for r in rows]  # the original row order


def human_rows(opts: ShiftOptions) -> int:
    """Rows of the ``human`` dataset (as :func:`world.assign_sources` splits the sources)."""
    return opts.train_pairs - int(round(opts.synthetic_fraction * opts.train_pairs))


def build_dataset(opts: ShiftOptions, dataset: str, seed: int) -> list[dict]:
    """Training rows of `dataset` for one seed (see the module docstring)."""
    if dataset in ("sources", "human", "sources-oracle"):
        rows = _sources(opts, seed)
        return rows if dataset != "human" else [r for r in rows if r["source"] == "human"]
    if dataset == "labmix":
        return _labeller_mixture(opts, opts.train_pairs, seed)
    if dataset.startswith("labmix-a"):  # the same pairs, labelled by the labeller mixture at another α
        return _labeller_mixture(replace(opts, alpha0=float(dataset[len("labmix-a"):])), opts.train_pairs, seed)
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
