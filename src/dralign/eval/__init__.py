"""Evaluation: metrics, sampling, rewards, preference and generation metrics, shift sweeps.

    from dralign.eval import generation_eval, load_reward, preference_eval, shift_sweep

See :mod:`dralign.eval.metrics` (pure metric functions), :mod:`dralign.eval.generate`
(seeded sampling and teacher-forced log-probs), :mod:`dralign.eval.rewards` (reward specs) and
:mod:`dralign.eval.evaluate` (the evaluations, with 95 % bootstrap intervals).
"""

from .evaluate import generation_eval, preference_eval, shift_sweep, symmetric_ece, to_jsonable
from .generate import Completions, completion_logps, sample_completions, tokenize_prompts
from .metrics import MeanCI
from .rewards import RewardFn, hf_reward, load_reward, text_reward

__all__ = [
    "Completions", "MeanCI", "RewardFn", "completion_logps", "generation_eval", "hf_reward",
    "load_reward", "preference_eval", "sample_completions", "shift_sweep", "symmetric_ece",
    "text_reward", "to_jsonable", "tokenize_prompts",
]
