"""Evaluation: metrics, sampling, rewards, preference and generation metrics, shift sweeps.

    from dralign.eval import generation_eval, load_reward, preference_eval, shift_sweep

See :mod:`dralign.eval.metrics` (pure metric functions), :mod:`dralign.eval.generate`
(seeded sampling and teacher-forced log-probs), :mod:`dralign.eval.rewards` (reward specs),
:mod:`dralign.eval.registry` (``SCHEME:BODY`` reward and prompt specs that packages register),
:mod:`dralign.eval.mixtures` (r(α) of two rewards), :mod:`dralign.eval.evaluate` (the
evaluations, with 95 % bootstrap intervals of :class:`dralign.stats.MeanCI`),
:mod:`dralign.eval.groups` (held-out metrics per group and source, the worst group) and
:mod:`dralign.eval.plots` (the PNG beside the JSON; matplotlib from the ``bench`` extra).
"""

from .evaluate import (generation_eval, pair_rewards, preference_eval, preference_metrics,
                       shift_sweep, symmetric_ece, to_jsonable)
from .groups import breakdown, preference_report
from .generate import Completions, completion_logps, sample_completions, tokenize_prompts
from .registry import register_prompts, register_reward
from .rewards import RewardFn, hf_reward, load_reward, text_reward

__all__ = [
    "Completions", "RewardFn", "breakdown", "completion_logps", "generation_eval", "hf_reward",
    "load_reward", "pair_rewards", "preference_eval", "preference_metrics", "preference_report",
    "register_prompts", "register_reward", "sample_completions",
    "shift_sweep", "symmetric_ece",
    "text_reward", "to_jsonable", "tokenize_prompts",
]
