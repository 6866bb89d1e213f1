"""Evaluation of a trained policy: preference metrics on held-out pairs, generation metrics
against the start model, and shift sweeps over a reward mixture.

Every mean comes with a 95 % percentile-bootstrap interval (:class:`~dralign.stats.MeanCI`,
1,000 resamples, NumPy PCG64 seeded with ``seed``: deterministic). Results are plain dicts of
MeanCI and floats; :func:`to_jsonable` turns them into JSON-ready dicts.

Bootstrap units. Preference metrics resample pairs. Generation metrics resample *prompts*: with
``num_samples`` completions per prompt, the per-completion values of a prompt are averaged first
(a cluster bootstrap — samples of one prompt are correlated), so ``MeanCI.n`` counts prompts.
The point estimate is still the mean over all completions.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..stats import MeanCI, bootstrap_ci, expected_calibration_error, reliability_bins
from . import metrics as M
from .generate import Completions, Sampling, completion_log_likelihoods, sample_completions
from .mixtures import MIXTURES
from .rewards import RewardFn

if TYPE_CHECKING:  # annotations only: evaluation imports torch where it scores
    import torch

__all__ = [
    "PairScores",
    "generation_eval",
    "pair_rewards",
    "preference_eval",
    "preference_metrics",
    "score_pairs",
    "shift_sweep",
    "symmetric_ece",
    "to_jsonable",
]

N_RESAMPLES = 1000
LEVEL = 0.95

# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------


def _ci(values: Any, seed: int, cluster: int = 1) -> MeanCI:
    """MeanCI of `values`, bootstrapping clusters of `cluster` consecutive values (their means).

    With equal cluster sizes the mean of the cluster means is the overall mean."""
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    if cluster > 1:
        if v.size % cluster:
            raise ValueError(f"{v.size} values do not split into clusters of {cluster}")
        v = v.reshape(-1, cluster).mean(axis=1)
    return MeanCI.from_values(v, level=LEVEL, n_resamples=N_RESAMPLES, seed=seed)


def _won(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-pair win indicator 1(a > b) + ½·1(a = b) (its mean is :func:`metrics.win_rate`): the
    tie rule of `dralign.objectives.preference_accuracy`, on arrays."""
    return (a > b) + 0.5 * (a == b)


def _score(reward: RewardFn, name: str, prompts: Sequence[str], responses: Sequence[str]) -> np.ndarray:
    values = np.asarray(reward(list(prompts), list(responses)), dtype=np.float64).reshape(-1)
    if values.size != len(responses):
        raise ValueError(f"reward {name}: returned {values.size} values for {len(responses)} responses")
    if not np.all(np.isfinite(values)):
        raise ValueError(f"reward {name}: returned non-finite values")
    return values


def to_jsonable(obj: Any) -> Any:
    """A JSON-ready copy of nested results: MeanCI → its dict, mapping keys → str, tuples and
    arrays → lists, NumPy scalars → Python numbers, NaN/±inf → None."""
    if isinstance(obj, MeanCI):
        return to_jsonable(obj.as_dict())
    if isinstance(obj, Mapping):
        return {(k if isinstance(k, str) else str(k)): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, np.ndarray):
        return [to_jsonable(v) for v in obj.tolist()]
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


# ---------------------------------------------------------------------------------------------
# Preference metrics on held-out pairs
# ---------------------------------------------------------------------------------------------


def symmetric_ece(probs: Any, bins: int = 10) -> float:
    """ECE of P(chosen ≻ rejected) = p_i over pairs whose label is always "chosen", counting
    each pair in both orders:

        ECE = expected_calibration_error([p_1..p_n, 1−p_1..1−p_n], [1,..,1, 0,..,0], bins)

    (as if each pair were shown in a random order). Without the mirrored half every label is 1
    and the ECE collapses to 1 − mean p, which only measures confidence. With it, a bin around
    q holds the pairs the model gives probability q, and its accuracy is how often those
    chosen responses really are preferred.
    """
    p = np.asarray(probs, dtype=np.float64).reshape(-1)
    return expected_calibration_error(
        np.concatenate([p, 1.0 - p]), np.concatenate([np.ones_like(p), np.zeros_like(p)]), bins
    )


def _pair_logps(scorer, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """(chosen, rejected) summed log-probs [B] in float64 from a model or a
    :class:`dralign.modeling.Reference`, without gradients (either batch layout)."""
    from ..modeling import Reference, model_logps

    out = scorer.logps(batch) if isinstance(scorer, Reference) else model_logps(scorer, batch)
    return out.chosen_sum.double(), out.rejected_sum.double()


@dataclass(frozen=True)
class PairScores:
    """Summed completion log-probs of every held-out pair, float64 [n] in the order of
    ``data.examples``, of the policy and the reference, and the β of the implicit reward."""

    policy_chosen: np.ndarray
    policy_rejected: np.ndarray
    ref_chosen: np.ndarray
    ref_rejected: np.ndarray
    beta: float

    @property
    def reward_chosen(self) -> np.ndarray:
        """β u⁺ = β (log π(y⁺|x) − log π_ref(y⁺|x))."""
        return self.beta * (self.policy_chosen - self.ref_chosen)

    @property
    def reward_rejected(self) -> np.ndarray:
        """β u⁻ = β (log π(y⁻|x) − log π_ref(y⁻|x))."""
        return self.beta * (self.policy_rejected - self.ref_rejected)


def score_pairs(
    model, reference, data, *, beta: float, batch_size: int = 32, prefix_sharing: bool = False, progress: bool = False
) -> PairScores:
    """The policy's and the reference's log-probs of every held-out pair (:class:`PairScores`).

    `reference` is a model or a :class:`dralign.modeling.Reference` (e.g. a cached one).
    Models run in eval mode without gradients. `prefix_sharing`: score each pair as one row
    [prompt | chosen | rejected] (the trainer's layout when it shares prefixes; the same values
    up to float rounding, and exactly the trainer's when it did). `progress`: a bar on a
    terminal, plain lines in a log (:func:`dralign.console.track`).
    """
    if reference is None:
        raise ValueError("preference_eval needs a reference model: the implicit reward is beta * (log pi - log pi_ref)")
    if getattr(data, "kind", None) != "pairs":
        raise ValueError(
            "preference_eval needs paired data (prompt, chosen, rejected); got "
            f"{getattr(data, 'kind', type(data).__name__)!r} data"
        )
    if len(data) == 0:
        raise ValueError("preference_eval: the data has no pairs")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    from ..data import collate_shared_pairs
    from ..modeling import score_rows

    def batch_of(indices: list[int]) -> dict:
        return (
            collate_shared_pairs([data.examples[i] for i in indices], data.pad_token_id)
            if prefix_sharing
            else data.collate(indices)
        )

    def score(batch: dict) -> dict:
        (pc, pr), (rc, rr) = _pair_logps(model, batch), _pair_logps(reference, batch)
        return {"pc": pc, "pr": pr, "rc": rc, "rr": rr}

    scored = score_rows(
        len(data), batch_of, score, batch_size=batch_size, model=model, progress=progress, description="held-out pairs"
    )
    pc, pr, rc, rr = (scored[k].numpy() for k in ("pc", "pr", "rc", "rr"))
    return PairScores(pc, pr, rc, rr, float(beta))


def pair_rewards(
    model, reference, data, *, beta: float, batch_size: int = 32, prefix_sharing: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """The implicit rewards (β u⁺, β u⁻) of every held-out pair, float64 arrays [n] in the
    order of ``data.examples``:

        u_i^± = log π(y_i^±|x_i) − log π_ref(y_i^±|x_i)

    (:func:`score_pairs`, whose arguments these are.)
    """
    s = score_pairs(model, reference, data, beta=beta, batch_size=batch_size, prefix_sharing=prefix_sharing)
    return s.reward_chosen, s.reward_rejected


def preference_metrics(reward_chosen: Any, reward_rejected: Any, *, seed: int = 0, ece_bins: int = 10) -> dict:
    """Metrics of implicit rewards on pairs whose chosen response is the preferred one.

        margin_i = r_i⁺ − r_i⁻,   p_i = σ(margin_i)

    Returns ``accuracy`` (1(m>0) + ½·1(m=0)), ``margin``, ``reward_chosen``,
    ``reward_rejected`` and ``brier`` = (1 − p_i)² as MeanCI over pairs; ``ece`` =
    :func:`symmetric_ece` with `ece_bins` bins, as a MeanCI whose ``mean`` is the ECE and whose
    bounds bootstrap it over pairs; ``reliability``: the reliability diagram of the same
    mirrored probabilities (:func:`dralign.stats.reliability_bins`); and ``n`` pairs.
    """
    reward_chosen = np.asarray(reward_chosen, dtype=np.float64).reshape(-1)
    reward_rejected = np.asarray(reward_rejected, dtype=np.float64).reshape(-1)
    margins = reward_chosen - reward_rejected
    probs = M.preference_probs(margins)  # σ(margin): β is already inside the margin
    ece, ece_low, ece_high = bootstrap_ci(
        probs, lambda p: symmetric_ece(p, ece_bins), level=LEVEL, n_resamples=N_RESAMPLES, seed=seed
    )
    mirrored = (np.concatenate([probs, 1.0 - probs]), np.concatenate([np.ones_like(probs), np.zeros_like(probs)]))
    return {
        "accuracy": _ci(_won(margins, np.zeros_like(margins)), seed),
        "margin": _ci(margins, seed),
        "reward_chosen": _ci(reward_chosen, seed),
        "reward_rejected": _ci(reward_rejected, seed),
        "ece": MeanCI(mean=ece, low=ece_low, high=ece_high, n=int(probs.size), level=LEVEL),
        "brier": _ci((1.0 - probs) ** 2, seed),
        "reliability": reliability_bins(*mirrored, bins=ece_bins),
        "n": int(margins.size),
    }


def preference_eval(
    model,
    reference,
    data,
    *,
    beta: float,
    batch_size: int = 32,
    seed: int = 0,
    ece_bins: int = 10,
    prefix_sharing: bool = False,
) -> dict:
    """Implicit-reward metrics of `model` on held-out pairs (a paired
    :class:`dralign.data.PreferenceData`; the chosen response is the preferred one):
    :func:`pair_rewards` then :func:`preference_metrics`, plus ``beta``.

        u_i^± = log π(y_i^±|x_i) − log π_ref(y_i^±|x_i)
        margin_i = β (u_i⁺ − u_i⁻),   p_i = σ(margin_i)

    ``reward_chosen`` is β u⁺ and ``reward_rejected`` β u⁻. Per group and per source:
    :func:`dralign.eval.groups.breakdown` of the same rewards.
    """
    chosen, rejected = pair_rewards(
        model, reference, data, beta=beta, batch_size=batch_size, prefix_sharing=prefix_sharing
    )
    return {**preference_metrics(chosen, rejected, seed=seed, ece_bins=ece_bins), "beta": float(beta)}


# ---------------------------------------------------------------------------------------------
# Generation metrics against the start model
# ---------------------------------------------------------------------------------------------


def _diversity(c: Completions, seed: int, cluster: int) -> dict:
    """token_entropy, distinct_1, distinct_2 (floats, over completion token ids), length
    (MeanCI of completion tokens, eos excluded) and eos_rate (share that ended at eos)."""
    return {
        "token_entropy": M.token_entropy(c.token_ids),
        "distinct_1": M.distinct_n(c.token_ids, 1),
        "distinct_2": M.distinct_n(c.token_ids, 2),
        "length": _ci([len(t) for t in c.token_ids], seed, cluster),
        "eos_rate": float(np.mean(c.ended_at_eos)),
    }


def _check_completions(c: Completions, prompts: list[str], num_samples: int, which: str) -> None:
    expected = [p for p in prompts for _ in range(num_samples)]
    if not len(c.prompts) == len(c.texts) == len(c.token_ids):
        raise ValueError(f"{which}: prompts, texts and token_ids differ in length")
    if c.finished is not None and len(c.finished) != len(c.texts):
        raise ValueError(f"{which}: finished has {len(c.finished)} entries for {len(c.texts)} completions")
    if list(c.prompts) != expected:
        raise ValueError(
            f"{which}: expected {num_samples} completion(s) of each of the "
            f"{len(prompts)} prompts, in prompt-major order"
        )


def generation_eval(
    policy,
    start,
    tokenizer,
    prompts: Sequence[str],
    *,
    rewards: Mapping[str, RewardFn],
    policy_completions: Completions | None = None,
    start_completions: Completions | None = None,
    sampling: Sampling | None = None,
    **settings: Any,
) -> dict:
    """Sample from the policy and the start model (or reuse given completions) and compare.

    sampling: a `dralign.eval.Sampling` (num_samples, max_new_tokens, temperature, top_p, seed,
    batch_size, prompt tokenisation); settings: its fields by keyword instead (or on top of it).

    Both are sampled with the same `seed`, hence the same uniforms (common random numbers;
    identical models give identical completions). Returns

    * ``rewards[name]``: ``policy`` and ``start`` mean reward (MeanCI) and ``win_rate`` of the
      policy over the start (MeanCI of 1(r_π,k > r_start,k) + ½·1(=), completion k of the policy
      against completion k of the start: same prompt, same sample index);
    * ``kl``: MeanCI of log π(y|x) − log π_start(y|x) over the policy's completions y ~ π —
      an unbiased estimate of KL(π‖π_start) at temperature 1, top_p 1 (see
      :mod:`dralign.eval.generate` for eos and length capping); otherwise it is the same mean
      under the tempered sampler, not a KL;
    * the policy's ``token_entropy``, ``distinct_1``, ``distinct_2`` (floats, over token ids),
      ``length`` (MeanCI, completion tokens without eos) and ``eos_rate``, and the same
      under ``start`` for comparison;
    * ``n_prompts``, ``num_samples`` and ``sampling`` (the sampling settings).

    Without a start model (``start=None`` and no `start_completions`) the start-side values
    are None, and so is ``kl`` (it also needs the policy model). Intervals bootstrap prompts.
    """
    prompts = list(prompts)
    s = Sampling.of(sampling, settings)
    num_samples, seed = s.num_samples, s.seed
    if not prompts:
        raise ValueError("generation_eval needs at least one prompt")
    if num_samples < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples}")
    if policy_completions is None:
        if policy is None:
            raise ValueError("generation_eval needs a policy model or policy_completions")
        policy_completions = sample_completions(policy, tokenizer, prompts, sampling=s)
    _check_completions(policy_completions, prompts, num_samples, "policy_completions")
    if start_completions is None and start is not None:
        start_completions = sample_completions(start, tokenizer, prompts, sampling=s)
    if start_completions is not None:
        _check_completions(start_completions, prompts, num_samples, "start_completions")

    pc, sc = policy_completions, start_completions
    by_reward = {name: _reward_comparison(reward, name, pc, sc, seed, num_samples) for name, reward in rewards.items()}
    kl = None
    if policy is not None and start is not None:
        logp_kwargs: dict[str, Any] = dict(
            batch_size=s.batch_size,
            append_eos=pc.ended_at_eos,
            add_special_tokens=s.add_special_tokens,
            max_prompt_length=s.max_prompt_length,
        )
        lp_policy = completion_log_likelihoods(policy, tokenizer, pc.prompts, pc.token_ids, **logp_kwargs)
        lp_start = completion_log_likelihoods(start, tokenizer, pc.prompts, pc.token_ids, **logp_kwargs)
        kl = _ci(lp_policy - lp_start, seed, num_samples)

    return {
        "rewards": by_reward,
        "kl": kl,
        **_diversity(pc, seed, num_samples),
        "start": _diversity(sc, seed, num_samples) if sc is not None else None,
        "n_prompts": len(prompts),
        "num_samples": int(num_samples),
        "sampling": {
            "temperature": float(s.temperature),
            "top_p": float(s.top_p),
            "max_new_tokens": int(s.max_new_tokens),
            "seed": int(seed),
        },
    }


def _reward_comparison(
    reward: RewardFn, name: str, pc: Completions, sc: Completions | None, seed: int, num_samples: int
) -> dict:
    """`generation_eval`'s ``rewards[name]``: the policy's and the start's mean and the win rate."""
    r_policy = _score(reward, name, pc.prompts, pc.texts)
    r_start = _score(reward, name, sc.prompts, sc.texts) if sc is not None else None
    return {
        "policy": _ci(r_policy, seed, num_samples),
        "start": _ci(r_start, seed, num_samples) if r_start is not None else None,
        "win_rate": (_ci(_won(r_policy, r_start), seed, num_samples) if r_start is not None else None),
    }


# ---------------------------------------------------------------------------------------------
# Shift sweep over a reward mixture
# ---------------------------------------------------------------------------------------------


def shift_sweep(
    prompts: Sequence[str],
    responses: Sequence[str],
    reward_a: RewardFn,
    reward_b: RewardFn,
    alphas: Sequence[float],
    *,
    mixture: str = "linear",
    baseline_responses: Sequence[str] | None = None,
    seed: int = 0,
    num_samples: int = 1,
) -> dict:
    """Gold reward of `responses` under every mixture r(α) of two rewards, and its worst case.

        linear:     r_i(α) = α·r_a,i + (1−α)·r_b,i
        geometric:  r_i(α) = r_a,i^α · r_b,i^(1−α)      (rewards ≥ 0; 0^0 = 1)

    r_a and r_b are computed once (and once for the baseline) and mixed per α. Returns
    ``reward[α]`` (MeanCI of r_i(α)); ``average`` (MeanCI of the per-response grid mean
    (1/|A|) Σ_α r_i(α)); ``worst`` = ``{"alpha": α*, "reward": reward[α*]}`` with
    α* = argmin_α mean r(α) (:func:`metrics.worst_case`, ties to the smallest α); with
    `baseline_responses` (e.g. the start model's completions of the same prompts, paired by
    index) also ``win_rate[α]`` (MeanCI of 1(r_i(α) > b_i(α)) + ½·1(=)) and ``worst_win_rate``
    (its minimum over α, same form); and ``alphas``, ``mixture``. `num_samples` consecutive
    responses share a prompt (bootstrap clusters, as in :func:`generation_eval`).
    """
    if mixture not in MIXTURES:
        raise ValueError(f"unknown mixture {mixture!r}; use one of {', '.join(MIXTURES)}")
    alphas = [float(a) for a in alphas]
    if not alphas:
        raise ValueError("shift_sweep needs at least one alpha")
    for a in alphas:
        if not 0.0 <= a <= 1.0:
            raise ValueError(f"alpha must lie in [0, 1], got {a}")
    if len(set(alphas)) != len(alphas):
        raise ValueError(f"alphas contain duplicates: {alphas}")
    prompts, responses = list(prompts), list(responses)
    if len(prompts) != len(responses):
        raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses")
    if not responses:
        raise ValueError("shift_sweep needs at least one response")
    mix = MIXTURES[mixture]
    r_a = _score(reward_a, "reward_a", prompts, responses)
    r_b = _score(reward_b, "reward_b", prompts, responses)
    mixed = {a: np.asarray(mix(r_a, r_b, a), dtype=np.float64) for a in alphas}
    reward = {a: _ci(mixed[a], seed, num_samples) for a in alphas}
    worst_alpha, _ = M.worst_case({a: ci.mean for a, ci in reward.items()})
    out: dict[str, Any] = {
        "alphas": alphas,
        "mixture": mixture,
        "reward": reward,
        "average": _ci(np.mean([mixed[a] for a in alphas], axis=0), seed, num_samples),
        "worst": {"alpha": worst_alpha, "reward": reward[worst_alpha]},
    }
    if baseline_responses is not None:
        baseline = list(baseline_responses)
        if len(baseline) != len(responses):
            raise ValueError(f"{len(baseline)} baseline responses for {len(responses)} responses")
        b_a = _score(reward_a, "reward_a", prompts, baseline)
        b_b = _score(reward_b, "reward_b", prompts, baseline)
        win = {
            a: _ci(_won(mixed[a], np.asarray(mix(b_a, b_b, a), dtype=np.float64)), seed, num_samples) for a in alphas
        }
        worst_win_alpha, _ = M.worst_case({a: ci.mean for a, ci in win.items()})
        out["win_rate"] = win
        out["worst_win_rate"] = {"alpha": worst_win_alpha, "win_rate": win[worst_win_alpha]}
    return out
