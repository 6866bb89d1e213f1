"""Sampling completions from a causal LM, and scoring given completions by teacher forcing.

Prompts are tokenized exactly as :mod:`dralign.data.tokenize` tokenizes the prompt of a
plain-text row — ``tokenizer(prompt, add_special_tokens=True)`` (so a BOS is added when the
tokenizer adds one) — so the model is evaluated on the inputs it was trained on. Prompts already
rendered with a chat template carry their special tokens: pass ``add_special_tokens=False``, as
training does for conversational rows.

End of sequence
---------------
Training appends the tokenizer's ``eos_token_id`` to every completion (``add_eos=True``), so that
token — and only it — ends a sampled completion; other stop tokens a model's generation config
may list are ordinary tokens here. ``Completions.token_ids`` stop *before* eos and
``Completions.finished[i]`` says whether completion i ended at eos (False: cut at
``max_new_tokens``). :func:`completion_log_likelihoods` scores a finished completion *with* its eos and a
cut one without, so log π(y|x) is the probability of exactly the sampled outcome:

    finished:   log π(y|x) = Σ_{t≤T} log π(y_t | x, y_<t) + log π(eos | x, y)
    cut:        log π(y|x) = Σ_{t≤T} log π(y_t | x, y_<t)      (the prefix event)

The outcomes "finished with y" and "cut with prefix y" partition the sample space, so with
temperature 1 and top_p 1 the mean of log π(y|x) − log π_start(y|x) over y ~ π is an unbiased
estimate of KL(π‖π_start) between the distributions of these (length-capped) outcomes — a
lower bound of the KL between the uncapped sequence distributions (data processing).

Sampling and seeding
--------------------
Each step draws the next token by the inverse CDF of the (temperature-scaled, top-p filtered)
next-token distribution, in float64, with one uniform u ∈ [0, 1):

    y_t = min{ k : Σ_{j≤k} p_j > u · Σ_j p_j }

The uniforms come from one NumPy PCG64 stream seeded with ``seed``, laid out as a matrix
[completion, step] in prompt-major order, so completion i uses the same uniforms whatever the
batch size, the batch order or the number of prompts after it. Sampling is therefore
deterministic per seed and independent of ``batch_size`` (up to float rounding of the logits
across batch shapes, which can only matter when u falls within ~1e-7 of a CDF boundary), and
two models sampled with the same seed share their random numbers (common random numbers,
which lowers the variance of win rates). Temperature 0 is greedy decoding.

Decoding uses left-padded batches (rows sorted by prompt length), position ids counted from the
first real token, and the model's KV cache. The model's generation config (repetition penalty,
bad words, extra stop tokens, …) is deliberately ignored: samples come from π itself.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..data.collate import collate_unpaired
from ..data.examples import UnpairedExample
from ..data.tokenize import pad_token_id_of
from ..modeling.logps import sequence_logps, supports_logits_mask
from ..modeling.wrappers import eval_mode

__all__ = ["Completions", "Sampling", "completion_log_likelihoods", "sample_completions", "tokenize_prompts"]


@dataclass(frozen=True)
class Sampling:
    """How completions are sampled (`sample_completions`, `generation_eval`): `num_samples` per
    prompt, at most `max_new_tokens` each, `temperature` (0 = greedy) and nucleus `top_p`, the
    `seed` of the uniforms, `batch_size` rows a forward, and how prompts are tokenised
    (`add_special_tokens`, `max_prompt_length`: see `tokenize_prompts`)."""

    num_samples: int = 1
    max_new_tokens: int = 48
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int = 0
    batch_size: int = 64
    add_special_tokens: bool = True
    max_prompt_length: int | None = None

    @classmethod
    def of(cls, sampling: Sampling | None, settings: Mapping[str, Any]) -> Sampling:
        """`sampling` (default: the defaults) with the fields named in `settings` replaced: the
        functions that take a `Sampling` also take its fields as keywords (TypeError for others)."""
        return dataclasses.replace(sampling or cls(), **settings)

    def check(self) -> None:
        """ValueError for a setting sampling cannot use."""
        _check_positive("num_samples", self.num_samples)
        _check_positive("max_new_tokens", self.max_new_tokens)
        _check_positive("batch_size", self.batch_size)
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"top_p must lie in (0, 1], got {self.top_p}")


@dataclass
class Completions:
    """Sampled completions, one entry per completion, prompt-major: completion k belongs to
    prompt ``k // num_samples``.

    ``prompts[k]`` is its prompt text, ``texts[k]`` the decoded completion (without the prompt,
    eos or padding; special tokens skipped), ``token_ids[k]`` its token ids up to but excluding
    eos, and ``finished[k]`` whether it ended at eos (None: unknown, treated as all True, the
    convention of training data, which always ends with eos).
    """

    prompts: list[str]
    texts: list[str]
    token_ids: list[list[int]]
    finished: list[bool] | None = None

    def __len__(self) -> int:
        return len(self.texts)

    @property
    def ended_at_eos(self) -> list[bool]:
        """``finished``, or all True when it is unknown."""
        return list(self.finished) if self.finished is not None else [True] * len(self.texts)


def _device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def _check_positive(name: str, value: int) -> None:
    if int(value) < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")


def tokenize_prompts(
    tokenizer, prompts: Sequence[str], *, add_special_tokens: bool = True, max_prompt_length: int | None = None
) -> list[list[int]]:
    """Token ids of each prompt, as :func:`dralign.data.tokenize_pairs` makes them.

    ``tokenizer(prompts, add_special_tokens=add_special_tokens)``; with `max_prompt_length`
    a longer prompt keeps its last `max_prompt_length` tokens (training's default
    ``truncation_side="left"``). Raises ValueError for a prompt of zero tokens (no logit
    would predict the first completion token).
    """
    if isinstance(prompts, str):
        raise TypeError("prompts must be a sequence of strings, not one string")
    prompts = list(prompts)
    for i, p in enumerate(prompts):
        if not isinstance(p, str):
            raise TypeError(f"prompt {i} is a {type(p).__name__}, not a string")
    if max_prompt_length is not None:
        _check_positive("max_prompt_length", max_prompt_length)
    ids = tokenizer(prompts, add_special_tokens=add_special_tokens)["input_ids"] if prompts else []
    out = []
    for i, x in enumerate(ids):
        x = list(x)
        if not x:
            raise ValueError(
                f"prompt {i} ({prompts[i]!r}) tokenizes to zero tokens; a prompt "
                "needs at least one token to condition on"
            )
        if max_prompt_length is not None and len(x) > max_prompt_length:
            x = x[len(x) - max_prompt_length :]
        out.append(x)
    return out


def sampling_uniforms(n: int, steps: int, seed: int) -> np.ndarray:
    """The [n, steps] float64 uniforms in [0, 1) that drive sampling: row i is completion i.

    One PCG64 stream filled row-major, so row i does not depend on n."""
    return np.random.default_rng(seed).random((n, steps))


def draw_tokens(logits: torch.Tensor, u: torch.Tensor, *, temperature: float = 1.0, top_p: float = 1.0) -> torch.Tensor:
    """Next tokens [B] from logits [B, V] by inverse-CDF sampling with uniforms u [B].

        p = softmax(logits / temperature)        (in float64)
        top-p: keep the most probable tokens, in decreasing order, while the mass *before*
               each is < top_p (so at least one), p ← p·keep
        y = min{ k : cumsum(p)_k > u · Σ p }

    ``temperature == 0`` is greedy: y = argmax(logits).
    """
    if temperature == 0:
        return logits.argmax(dim=-1)
    work = torch.float32 if logits.device.type == "mps" else torch.float64  # MPS has no float64
    p = torch.softmax(logits.to(work) / temperature, dim=-1)
    if top_p < 1.0:
        sorted_p, order = p.sort(dim=-1, descending=True, stable=True)
        keep_sorted = (sorted_p.cumsum(dim=-1) - sorted_p) < top_p
        keep = torch.zeros_like(keep_sorted).scatter(-1, order, keep_sorted)
        p = p * keep
    cdf = p.cumsum(dim=-1)
    target = (u.to(cdf) * cdf[:, -1]).unsqueeze(1)
    tokens = torch.searchsorted(cdf, target, right=True).squeeze(1)
    return tokens.clamp(max=logits.shape[-1] - 1)


def _cache_argument(model) -> str:
    """The name of the KV-cache argument of `model`'s forward: `cache` (transformers ≥ 5.x, where
    `past_key_values` is deprecated) or `past_key_values` (transformers 4.x)."""
    import inspect

    base = model.get_base_model() if hasattr(model, "get_base_model") else model  # PEFT: **kwargs
    return "cache" if "cache" in inspect.signature(base.forward).parameters else "past_key_values"


def _forward(model, input_ids, attention_mask, position_ids, past, keep_last: bool):
    kwargs = {
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "position_ids": position_ids,
        _cache_argument(model): past,
        "use_cache": True,
    }
    if keep_last:
        kwargs["logits_to_keep"] = 1
    out = model(**kwargs)
    # transformers 5 names the returned cache `cache` (its `past_key_values` logs a deprecation)
    cache = out["cache"] if "cache" in out else out.past_key_values
    return out.logits[:, -1, :], cache


def _sample_batch(
    model,
    prompt_ids: list[list[int]],
    uniforms: np.ndarray,
    *,
    eos: int,
    pad: int,
    temperature: float,
    top_p: float,
    max_new_tokens: int,
) -> list[tuple[list[int], bool]]:
    """(token ids before eos, ended at eos) of each left-padded row, decoded with a KV cache."""
    device = _device(model)
    b, width = len(prompt_ids), max(len(p) for p in prompt_ids)
    input_ids = torch.full((b, width), pad, dtype=torch.long)
    attention_mask = torch.zeros((b, width), dtype=torch.long)
    for i, p in enumerate(prompt_ids):
        input_ids[i, width - len(p) :] = torch.tensor(p, dtype=torch.long)
        attention_mask[i, width - len(p) :] = 1
    input_ids, attention_mask = input_ids.to(device), attention_mask.to(device)
    position_ids = (attention_mask.cumsum(dim=1) - 1).clamp(min=0)
    u = torch.from_numpy(uniforms).to(device, torch.float32 if device.type == "mps" else None)
    keep_last = supports_logits_mask(model)

    logits, past = _forward(model, input_ids, attention_mask, position_ids, None, keep_last)
    finished = torch.zeros(b, dtype=torch.bool, device=device)
    steps = []
    for t in range(max_new_tokens):
        token = draw_tokens(logits, u[:, t], temperature=temperature, top_p=top_p)
        token = torch.where(finished, torch.full_like(token, pad), token)
        steps.append(token)
        finished |= token == eos
        if bool(finished.all()) or t == max_new_tokens - 1:
            break
        input_ids = torch.cat([input_ids, token[:, None]], dim=1)
        attention_mask = torch.cat([attention_mask, attention_mask.new_ones(b, 1)], dim=1)
        position_ids = torch.cat([position_ids, position_ids[:, -1:] + 1], dim=1)
        if past is None:  # a model that keeps no cache: recompute the whole sequence
            logits, past = _forward(model, input_ids, attention_mask, position_ids, None, keep_last)
        else:
            logits, past = _forward(model, token[:, None], attention_mask, position_ids[:, -1:], past, keep_last)
    generated = torch.stack(steps, dim=1).tolist()
    out = []
    for row in generated:
        if eos in row:
            out.append((row[: row.index(eos)], True))
        else:
            out.append((row, False))
    return out


def _decode(tokenizer, prompt_ids: list[int], ids: list[int]) -> str:
    """The completion's text as it reads after the prompt: decode(prompt + ids) minus
    decode(prompt) (keeps a leading space that sentencepiece drops when decoding ids alone);
    decode(ids) when the prompt's text is not a prefix."""
    prompt_text = tokenizer.decode(prompt_ids, skip_special_tokens=True)
    full = tokenizer.decode([*prompt_ids, *ids], skip_special_tokens=True)
    if full.startswith(prompt_text):
        return full[len(prompt_text) :]
    return tokenizer.decode(ids, skip_special_tokens=True)


def sample_completions(
    model, tokenizer, prompts: Sequence[str], *, sampling: Sampling | None = None, **settings: Any
) -> Completions:
    """`num_samples` completions of each prompt from `model`, deterministic per `seed`.

    sampling: a `Sampling`; settings: its fields by keyword instead (or on top of it), e.g.
    ``sample_completions(model, tok, prompts, num_samples=4, seed=1)``.

    Completion k = i·num_samples + s is sample s of prompt i; it is drawn with row k of
    :func:`sampling_uniforms` (see the module docstring), so the result does not depend on
    `batch_size`. Decoding stops at the tokenizer's eos or after `max_new_tokens` tokens. The
    model runs in eval mode without gradients on its own device; its train/eval mode is restored.
    """
    s = Sampling.of(sampling, settings)
    s.check()
    num_samples, max_new_tokens, batch_size = s.num_samples, s.max_new_tokens, s.batch_size
    eos = tokenizer.eos_token_id
    if eos is None:
        raise ValueError("the tokenizer has no eos token; sampling needs one to end completions")
    pad = pad_token_id_of(tokenizer)
    unique_ids = tokenize_prompts(
        tokenizer, prompts, add_special_tokens=s.add_special_tokens, max_prompt_length=s.max_prompt_length
    )
    rows = [i for i in range(len(unique_ids)) for _ in range(num_samples)]  # prompt of each row
    uniforms = sampling_uniforms(len(rows), max_new_tokens, s.seed)
    order = sorted(range(len(rows)), key=lambda k: len(unique_ids[rows[k]]))
    results: list[tuple[list[int], bool] | None] = [None] * len(rows)
    with torch.inference_mode(), eval_mode(model):
        for start in range(0, len(order), batch_size):
            ks = order[start : start + batch_size]
            batch = _sample_batch(
                model,
                [unique_ids[rows[k]] for k in ks],
                uniforms[ks],
                eos=eos,
                pad=pad,
                temperature=s.temperature,
                top_p=s.top_p,
                max_new_tokens=max_new_tokens,
            )
            for k, result in zip(ks, batch):
                results[k] = result
    prompts = list(prompts)
    done_rows = [r for r in results if r is not None]
    assert len(done_rows) == len(results)  # every row was sampled above
    return Completions(
        prompts=[prompts[i] for i in rows],
        texts=[_decode(tokenizer, unique_ids[i], ids) for i, (ids, _) in zip(rows, done_rows)],
        token_ids=[ids for ids, _ in done_rows],
        finished=[done for _, done in done_rows],
    )


def completion_log_likelihoods(
    model,
    tokenizer,
    prompts: Sequence[str],
    token_ids: Sequence[Sequence[int]],
    *,
    batch_size: int = 64,
    append_eos: bool | Sequence[bool] = True,
    add_special_tokens: bool = True,
    max_prompt_length: int | None = None,
) -> np.ndarray:
    """Summed log π(y|x) of given completions by teacher forcing: float64 [N].

        log π(y|x) = Σ_t log softmax(logits_{t−1})[y_t]   (:func:`dralign.modeling.sequence_logps`)

    Completion i is ``token_ids[i]`` followed by the tokenizer's eos when ``append_eos`` (a bool
    for all, or one per completion) is True for it. For sampled completions pass
    ``append_eos=completions.ended_at_eos`` (see the module docstring); the default True matches
    training data, where every completion ends with eos. Prompts are tokenized as in
    :func:`sample_completions`. Rows are batched by length; the model runs in eval mode
    without gradients.
    """
    _check_positive("batch_size", batch_size)
    prompts = list(prompts)
    if len(prompts) != len(token_ids):
        raise ValueError(f"{len(prompts)} prompts but {len(token_ids)} completions")
    ends = (
        [bool(append_eos)] * len(prompts) if isinstance(append_eos, (bool, np.bool_)) else [bool(e) for e in append_eos]
    )
    if len(ends) != len(prompts):
        raise ValueError(f"append_eos has {len(ends)} entries for {len(prompts)} completions")
    eos = tokenizer.eos_token_id
    if any(ends) and eos is None:
        raise ValueError("append_eos needs a tokenizer with an eos token")
    prompt_ids = tokenize_prompts(
        tokenizer, prompts, add_special_tokens=add_special_tokens, max_prompt_length=max_prompt_length
    )
    examples = [
        UnpairedExample(i, tuple(p), (*map(int, ids), *([eos] if end else [])), True)
        for i, (p, ids, end) in enumerate(zip(prompt_ids, token_ids, ends))
    ]
    order = sorted(range(len(examples)), key=lambda i: len(examples[i].prompt_ids) + len(examples[i].completion_ids))
    out = np.zeros(len(examples), dtype=np.float64)
    pad = pad_token_id_of(tokenizer)
    device = _device(model)
    with torch.inference_mode(), eval_mode(model):
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            batch = collate_unpaired([examples[i] for i in idx], pad)
            logps = sequence_logps(
                model,
                batch["input_ids"].to(device),
                batch["attention_mask"].to(device),
                batch["completion_mask"].to(device),
            )
            out[idx] = logps.sum.double().cpu().numpy()
    return out
