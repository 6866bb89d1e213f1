"""One policy on one seed: gold reward over the α grid, KL to the start, diversity, and, on
held-out pairs, accuracy against the noise-free ordering and calibration with the method's
own link.

Common random numbers: every policy of a seed is sampled on the same prompts with the same
sampling uniforms (:func:`dralign.eval.generate.sample_completions` with the seed), and scored
on the same held-out pairs, so differences between methods are paired by prompt and seed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from dralign.eval.mixtures import mixture_fn

from .. import world

if TYPE_CHECKING:
    from .scenarios import ShiftOptions

__all__ = [
    "HeldoutPairs",
    "SeedMetrics",
    "calibration_error",
    "clean_accuracy",
    "evaluate_policy",
    "evaluation_noise",
    "gold_grid",
    "own_link_probs",
]


@dataclass
class SeedMetrics:
    """Scalars of one run on one seed (each averaged over the seed's prompts or pairs)."""

    curve: list[float]  # mean gold reward r(α) at every α of the grid
    r0: float  # r(α₀)
    worst: float  # min over α of the curve
    kl: float  # mean over prompts of log π(y|x) − log π_start(y|x), y ∼ π
    entropy: float  # token entropy of the completions
    distinct2: float
    acc: float  # accuracy against the noise-free ordering on held-out pairs
    calib: float  # mean |p̂ − p| with the method's own link
    seconds: float = 0.0
    # the same metrics on each half of the prompts (and of the pairs): |a − b|/2 estimates the
    # evaluation noise of the full mean (its SE), measured rather than guessed
    halves: dict[str, list[float]] = field(default_factory=dict)

    def get(self, name: str) -> float:
        return float(getattr(self, name))


def gold_grid(opts: ShiftOptions, texts: Sequence[str]) -> np.ndarray:
    """r(α) of every text at every α of the grid (linear mixture), [n, len(alphas)]."""
    mix = mixture_fn("linear")
    ra = np.array([world.GOLD_OBJECTIVES[opts.reward_a](t) for t in texts])
    rb = np.array([world.GOLD_OBJECTIVES[opts.reward_b](t) for t in texts])
    return np.stack([mix(ra, rb, a) for a in opts.alphas], axis=1)


def own_link_probs(u1: np.ndarray, u2: np.ndarray, divergence: str, beta: float) -> np.ndarray:
    """p̂(1 ≻ 2) = σ(β·(s(u₁) − s(u₂))) with the method's own score s (f-DPO, Wang et al. 2024):
    the Bradley–Terry model its loss fits, u = log π(y|x) − log π_start(y|x)."""
    import torch

    from dralign.objectives.scores import SCORES

    s = SCORES[divergence]()
    m = s(torch.as_tensor(u1, dtype=torch.float64)) - s(torch.as_tensor(u2, dtype=torch.float64))
    return torch.sigmoid(beta * m).numpy()


def calibration_error(p_hat: np.ndarray, r1: np.ndarray, r2: np.ndarray, temperature: float) -> float:
    """mean |p̂ − p| against the known preference probability p = σ((r₁ − r₂)/T) (no binning),
    after a temperature on p̂'s logit fitted on other pairs of the run (:mod:`.calibration`: the
    link's scale must not decide calibration)."""
    from .calibration import tempered_calibration_error

    p = 1.0 / (1.0 + np.exp(-(np.asarray(r1) - np.asarray(r2)) / temperature))
    return tempered_calibration_error(p_hat, p)


def clean_accuracy(u1: np.ndarray, u2: np.ndarray, r1: np.ndarray, r2: np.ndarray) -> float:
    """Share of pairs whose implicit-reward order (u₁ vs u₂) matches the gold order (r₁ vs r₂),
    ties in gold dropped, ties in u counted ½. Every f-DPO score is increasing, so the order of
    s(u) is the order of u: the accuracy needs no link."""
    keep = np.asarray(r1) != np.asarray(r2)
    gold = (np.asarray(r1) > np.asarray(r2))[keep]
    d = (np.asarray(u1) - np.asarray(u2))[keep]
    return float(np.mean(np.where(d == 0, 0.5, (d > 0) == gold)))


@dataclass
class HeldoutPairs:
    """The seed's held-out pairs with the start model's log-probs (computed once)."""

    prompts: list[str]
    ids_1: list[list[int]]
    ids_2: list[list[int]]
    r_1: np.ndarray
    r_2: np.ndarray
    start_1: np.ndarray
    start_2: np.ndarray

    @classmethod
    def build(cls, rows: list[dict], tokenizer, start) -> HeldoutPairs:
        from dralign.eval.generate import completion_log_likelihoods

        enc = lambda key: tokenizer([r[key] for r in rows], add_special_tokens=False)["input_ids"]  # noqa: E731
        prompts = [r["prompt"] for r in rows]
        ids_1, ids_2 = enc("response_1"), enc("response_2")
        return cls(
            prompts,
            ids_1,
            ids_2,
            np.array([r["r_1"] for r in rows]),
            np.array([r["r_2"] for r in rows]),
            completion_log_likelihoods(start, tokenizer, prompts, ids_1),
            completion_log_likelihoods(start, tokenizer, prompts, ids_2),
        )


def evaluate_policy(
    policy,
    start,
    tokenizer,
    opts: ShiftOptions,
    prompts: Sequence[str],
    seed: int,
    start_logps_of,
    pairs: HeldoutPairs | None,
    divergence: str,
    beta: float,
) -> SeedMetrics:
    """Measure `policy` on one seed (see :class:`SeedMetrics`). `start_logps_of(comp)` gives the
    start model's log-probs of completions (the start model, or a cache)."""
    from dralign.eval.generate import completion_log_likelihoods, sample_completions
    from dralign.eval.metrics import distinct_n, token_entropy

    comp = sample_completions(
        policy, tokenizer, prompts, num_samples=1, max_new_tokens=opts.max_new_tokens, temperature=1.0, seed=seed
    )
    grid = gold_grid(opts, comp.texts)
    curve = grid.mean(axis=0)
    a0 = int(np.argmin(np.abs(np.asarray(opts.alphas) - opts.alpha0)))
    kl = completion_log_likelihoods(
        policy, tokenizer, comp.prompts, comp.token_ids, append_eos=comp.ended_at_eos
    ) - start_logps_of(comp)
    halves = {k: [] for k in ("r0", "worst", "kl", "entropy")}
    for part in _halves(len(comp.texts)):
        halves["r0"].append(float(grid[part, a0].mean()))
        halves["worst"].append(float(grid[part].mean(axis=0).min()))
        halves["kl"].append(float(kl[part].mean()))
        halves["entropy"].append(float(token_entropy([comp.token_ids[i] for i in part])))
    acc = calib = math.nan
    if pairs is not None:
        u1 = completion_log_likelihoods(policy, tokenizer, pairs.prompts, pairs.ids_1) - pairs.start_1
        u2 = completion_log_likelihoods(policy, tokenizer, pairs.prompts, pairs.ids_2) - pairs.start_2
        p_hat = own_link_probs(u1, u2, divergence, beta)
        acc = clean_accuracy(u1, u2, pairs.r_1, pairs.r_2)
        calib = calibration_error(p_hat, pairs.r_1, pairs.r_2, opts.label_temperature)
        halves["acc"] = [clean_accuracy(u1[h], u2[h], pairs.r_1[h], pairs.r_2[h]) for h in _halves(len(u1))]
        halves["calib"] = [
            calibration_error(p_hat[h], pairs.r_1[h], pairs.r_2[h], opts.label_temperature) for h in _halves(len(u1))
        ]
    return SeedMetrics(
        curve=curve.tolist(),
        r0=float(curve[a0]),
        worst=float(curve.min()),
        kl=float(kl.mean()),
        entropy=float(token_entropy(comp.token_ids)),
        distinct2=float(distinct_n(comp.token_ids, 2)),
        acc=acc,
        calib=calib,
        halves=halves,
    )


def _halves(n: int) -> list[np.ndarray]:
    """Index arrays of the first and second half of n items (the halves of a seed's prompts or pairs)."""
    return [np.arange(0, n // 2), np.arange(n // 2, n)] if n >= 2 else []


def evaluation_noise(runs: dict[str, list[SeedMetrics]], metric: str) -> float:
    """The evaluation noise of one run's mean of `metric` on a seed, measured: the root mean
    square over runs and seeds of (a − b)/2, a and b the means on the two halves (the SE of the
    full mean when the halves are independent). NaN where no run stored halves of `metric`."""
    d = [
        (h[0] - h[1]) / 2
        for ms in runs.values()
        for m in ms
        for h in [m.halves.get(metric) if isinstance(m, SeedMetrics) else m.get("halves", {}).get(metric)]
        if h and len(h) == 2 and np.isfinite(h[0]) and np.isfinite(h[1])
    ]
    return float(np.sqrt(np.mean(np.square(d)))) if d else float("nan")
