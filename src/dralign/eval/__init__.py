"""Evaluation: metrics, sampling, rewards, preference and generation metrics, shift sweeps.

    from dralign.eval import generation_eval, load_reward, preference_eval, shift_sweep

See :mod:`dralign.eval.metrics` (pure metric functions), :mod:`dralign.eval.generate`
(seeded sampling and teacher-forced log-probs), :mod:`dralign.eval.rewards` (reward specs),
:mod:`dralign.eval.registry` (``SCHEME:BODY`` reward and prompt specs that packages register),
:mod:`dralign.eval.mixtures` (r(α) of two rewards), :mod:`dralign.eval.evaluate` (the
evaluations, with 95 % bootstrap intervals of :class:`dralign.stats.MeanCI`),
:mod:`dralign.eval.groups` (held-out metrics per group and source, the worst group, each
with the length controls of :mod:`dralign.lengths`: the pick-the-longer baseline, accuracy on
length-matched pairs and with the chosen response longer / shorter), :mod:`dralign.eval.pairs`
(one JSON line per pair), :mod:`dralign.eval.refcache` (reading a reference cache) and
:mod:`dralign.eval.plots` (the PNG beside the JSON; matplotlib from the ``bench`` extra).
"""

from ..lengths import LENGTH_TOLERANCE, length_matched, length_report, longer_wins
from .evaluate import (
    PairScores,
    generation_eval,
    pair_rewards,
    preference_eval,
    preference_metrics,
    score_pairs,
    shift_sweep,
    symmetric_ece,
    to_jsonable,
)
from .generate import Completions, Sampling, completion_log_likelihoods, sample_completions, tokenize_prompts
from .groups import breakdown, preference_report, report_scores
from .pairs import per_pair_records, write_per_pair
from .registry import register_prompts, register_reward
from .rewards import RewardFn, hf_reward, load_reward, text_reward

__all__ = [
    "LENGTH_TOLERANCE",
    "PairScores",
    "length_matched",
    "length_report",
    "longer_wins",
    "per_pair_records",
    "report_scores",
    "score_pairs",
    "write_per_pair",
    "Completions",
    "RewardFn",
    "Sampling",
    "breakdown",
    "completion_log_likelihoods",
    "generation_eval",
    "hf_reward",
    "load_reward",
    "pair_rewards",
    "preference_eval",
    "preference_metrics",
    "preference_report",
    "register_prompts",
    "register_reward",
    "sample_completions",
    "shift_sweep",
    "symmetric_ece",
    "text_reward",
    "to_jsonable",
    "tokenize_prompts",
]
