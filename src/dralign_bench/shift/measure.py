"""One policy on one seed: samples on held-out prompts, gold reward over the α grid, wins
against the start model, KL, diversity, and preference metrics on held-out pairs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import numpy as np

from dralign.eval.mixtures import mixture_fn

from .. import world

if TYPE_CHECKING:
    from .scenarios import ShiftOptions

__all__ = ["SeedEval", "evaluate_policy", "gold_grid", "sample"]


@dataclass
class SeedEval:
    """Per-prompt measurements of one policy on one seed (the raw material of every interval);
    the samples of a prompt are averaged, so a prompt is one bootstrap unit."""

    rewards: np.ndarray          # [prompts, len(alphas)] gold reward r(α) of the samples
    wins: np.ndarray             # [prompts, len(alphas)] 1 / ½ / 0 against the start's sample (same uniforms)
    kl: np.ndarray               # [prompts] log π(y|x) − log π_start(y|x), y ∼ π
    length: np.ndarray           # [prompts] completion tokens
    token_entropy: float
    distinct_1: float
    distinct_2: float
    accuracy: float = float("nan")
    ece: float = float("nan")
    brier: float = float("nan")
    train_seconds: float = 0.0


def gold_grid(opts: ShiftOptions, texts: Sequence[str], mixture: str) -> np.ndarray:
    """r(α) of every text at every α of the grid, [n, len(alphas)]."""
    mix = mixture_fn(mixture)
    ra = np.array([world.GOLD_OBJECTIVES[opts.reward_a](t) for t in texts])
    rb = np.array([world.GOLD_OBJECTIVES[opts.reward_b](t) for t in texts])
    return np.stack([mix(ra, rb, a) for a in opts.alphas], axis=1)


def sample(model, tokenizer, opts: ShiftOptions, prompts: Sequence[str], seed: int):
    from dralign.eval.generate import sample_completions

    return sample_completions(model, tokenizer, prompts, num_samples=opts.samples_per_prompt,
                              max_new_tokens=opts.max_new_tokens, temperature=1.0, seed=seed)


def evaluate_policy(policy, start, tokenizer, opts: ShiftOptions, prompts: Sequence[str],
                    start_rewards: np.ndarray, heldout, mixture: str, seed: int) -> SeedEval:
    """Sample `policy` on the held-out prompts and measure it (see :class:`SeedEval`);
    `start_rewards` are the start model's samples' gold rewards on the same grid, [n, len(alphas)]."""
    from dralign.eval.evaluate import preference_eval
    from dralign.eval.generate import completion_logps
    from dralign.eval.metrics import distinct_n, token_entropy

    comp = sample(policy, tokenizer, opts, prompts, seed)
    rewards = gold_grid(opts, comp.texts, mixture)
    wins = (rewards > start_rewards) + 0.5 * (rewards == start_rewards)
    kl = (completion_logps(policy, tokenizer, comp.prompts, comp.token_ids, append_eos=comp.ended_at_eos)
          - completion_logps(start, tokenizer, comp.prompts, comp.token_ids, append_eos=comp.ended_at_eos))
    length = np.array([len(t) for t in comp.token_ids], dtype=np.float64)

    def per_prompt(x: np.ndarray) -> np.ndarray:  # samples of one prompt are one unit
        return x.reshape(len(prompts), -1, *x.shape[1:]).mean(axis=1)

    out = SeedEval(rewards=per_prompt(rewards), wins=per_prompt(wins), kl=per_prompt(kl), length=per_prompt(length),
                   token_entropy=token_entropy(comp.token_ids), distinct_1=distinct_n(comp.token_ids, 1),
                   distinct_2=distinct_n(comp.token_ids, 2))
    if heldout is not None:
        pref = preference_eval(policy, start, heldout, beta=opts.beta, seed=seed)
        out.accuracy, out.ece, out.brier = (pref[k].mean for k in ("accuracy", "ece", "brier"))
    return out
