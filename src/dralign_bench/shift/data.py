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
  generator (both responses), each at a distance ``shift`` from the human style drawn from
  :data:`SHIFT_LEVELS`, and labelled by a *judge* that leans towards another objective (`judge`)
  the more, the further the text is from the human style — just enough that its noise-free order
  agrees with the target's on a share `judge_agreement` of synthetic pairs (:func:`judge_slope`);
  the rest human and labelled on the target r(α₀); every row keeps its ``source`` and ``shift``.
  So the synthetic rows are useful where they look human and misleading where they do not: the
  shift DoRA's density ratios are meant to correct;
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

__all__ = [
    "DATASETS",
    "SHIFT_LEVELS",
    "agreement",
    "build_dataset",
    "heldout_pairs",
    "judge_reward",
    "judge_slope",
    "target_reward",
    "write_jsonl",
]

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
    return world.label_rows(
        world.prompt_response_pairs(prompts, seed=seed), target_reward(opts), opts.label_temperature, seed=seed
    )


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


#: The synthetic rows' distances from the human style (each row draws one uniformly): synthetic
#: text ranges from near-human (0.2) to the full synthetic style (1.0), so a density-ratio
#: classifier can tell how synthetic a row looks, not only which source it came from.
SHIFT_LEVELS = (0.2, 0.4, 0.6, 0.8, 1.0)


def _judge_at(opts: ShiftOptions, slope: float, shift: float):
    """The judge on text at distance `shift` from the human style: (1 − w)·r(α₀) + w·r_judge with
    w = min(1, slope · shift) — a judge that is reliable on human-like text and leans further
    towards `opts.judge` the further the text drifts from the style it knows."""
    target, other = target_reward(opts), world.GOLD_OBJECTIVES[opts.judge]
    w = min(1.0, slope * shift)
    return lambda text: (1.0 - w) * target(text) + w * other(text)


def _shift_levels(n: int, seed: int) -> list[float]:
    """Each of `n` rows' synthetic distance, drawn uniformly from :data:`SHIFT_LEVELS` (its own stream)."""
    return [SHIFT_LEVELS[i] for i in np.random.default_rng([seed, 31]).integers(len(SHIFT_LEVELS), size=n)]


def _synthetic_rows(n: int, seed: int) -> list[dict]:
    """`n` synthetic pairs, each row at its own drawn distance (``shift``)."""
    shifts = _shift_levels(n, seed)
    rows = world.assign_sources(world.generate_prompts(n, seed=seed, split="train"), 1.0, seed=seed, shift=shifts)
    return [{**r, "shift": s} for r, s in zip(rows, shifts)]


_SLOPES: dict[tuple, float] = {}


def judge_slope(opts: ShiftOptions) -> float:
    """The slope of the judge's lean (:func:`_judge_at`) at which its noise-free order agrees with
    the target's on `opts.judge_agreement` of synthetic pairs, over the shift levels (bisection on
    :data:`JUDGE_CALIBRATION_PAIRS` synthetic pairs of a fixed seed; agreement falls as the slope
    grows, from 1 at slope 0 to the judge objective's own at slope 1/min(level)). An agreement
    below the judge objective's own is refused."""
    key = (opts.reward_a, opts.reward_b, opts.alpha0, opts.judge, opts.judge_agreement)
    if key not in _SLOPES:
        rows = _synthetic_rows(JUDGE_CALIBRATION_PAIRS, JUDGE_CALIBRATION_SEED)
        t, o = (
            [[f(r[k]) for r in rows] for k in ("response_1", "response_2")]
            for f in (target_reward(opts), world.GOLD_OBJECTIVES[opts.judge])
        )
        dt, do = np.subtract(*t), np.subtract(*o)  # the target's and the judge objective's gaps
        shift = np.array([r["shift"] for r in rows])
        top = 1.0 / min(SHIFT_LEVELS)

        def at(slope: float) -> float:  # agreement of the judge at this slope (vectorised `agreement`)
            w = np.minimum(1.0, slope * shift)
            dj = (1.0 - w) * dt + w * do
            keep = (dt != 0) & (dj != 0)
            return float(np.mean((dt[keep] > 0) == (dj[keep] > 0)))

        if at(top) > opts.judge_agreement:
            raise ValueError(
                f"judge_agreement={opts.judge_agreement}: a judge on {opts.judge} alone agrees with the "
                f"target on {at(top):.2f} of synthetic pairs; ask for at least that"
            )
        lo, hi = 0.0, top
        for _ in range(30):  # agreement is a step function of the slope: bisection to ~1e-9
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if at(mid) >= opts.judge_agreement else (lo, mid)
        _SLOPES[key] = lo
    return _SLOPES[key]


def judge_reward(opts: ShiftOptions, shift: float):
    """The synthetic judge's reward on text at distance `shift` (:func:`_judge_at` at
    :func:`judge_slope`): over the shift levels it agrees with the target on
    `opts.judge_agreement` of synthetic pairs (noise-free order)."""
    return _judge_at(opts, judge_slope(opts), shift)


def _sources(opts: ShiftOptions, seed: int) -> list[dict]:
    prompts = world.generate_prompts(opts.train_pairs, seed=seed, split="train")
    shifts = _shift_levels(len(prompts), seed)
    rows = [
        {**r, "shift": s if r["source"] == "synthetic" else 0.0}
        for r, s in zip(world.assign_sources(prompts, opts.synthetic_fraction, seed=seed, shift=shifts), shifts)
    ]
    human = world.label_rows(
        [r for r in rows if r["source"] == "human"], target_reward(opts), opts.label_temperature, seed=seed
    )
    judged = {}  # each shift level's rows labelled by the judge at that level (its own label stream)
    for j, level in enumerate(SHIFT_LEVELS):
        at_level = [r for r in rows if r["source"] == "synthetic" and r["shift"] == level]
        judged[level] = iter(
            world.label_rows(at_level, judge_reward(opts, level), opts.label_temperature, seed=seed + 1 + j)
        )
    by_human = iter(human)
    return [next(by_human) if r["source"] == "human" else next(judged[r["shift"]]) for r in rows]  # row order kept


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
        return _labeller_mixture(replace(opts, alpha0=float(dataset[len("labmix-a") :])), opts.train_pairs, seed)
    if dataset in ("clean", "flip"):
        rows = _labelled(opts, opts.flip_pairs, seed)
        return rows if dataset == "clean" else world.flip_labels(rows, opts.flip_rate, seed=seed)
    rows = _labelled(opts, opts.train_pairs, seed)
    if dataset == "mix":
        return rows
    if dataset == "unpaired":
        return [
            {"prompt": r["prompt"], "completion": r[k], "label": k == "chosen"}
            for r in rows
            for k in ("chosen", "rejected")
        ]
    if dataset == "repaired":
        rng = np.random.default_rng(seed + 7_919)
        perm = rng.permutation(len(rows))
        for i in range(len(rows)):  # a derangement: never the pair's own rejected completion
            if perm[i] == i:
                j = (i + 1) % len(rows)
                perm[i], perm[j] = perm[j], perm[i]
        return [
            {"prompt": r["prompt"], "chosen": r["chosen"], "rejected": rows[int(perm[i])]["rejected"]}
            for i, r in enumerate(rows)
        ]
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
