"""Rewards for evaluation: batched functions ``(prompts, responses) -> float64 [N]``.

:func:`load_reward` turns a spec string into a :data:`RewardFn`:

=========================================  ===================================================
spec                                       reward
=========================================  ===================================================
``SCHEME:BODY``                             a reward a package registered under SCHEME (see
                                           :mod:`dralign.eval.registry`), e.g. the shift
                                           world's ``world:sentiment`` or
                                           ``world:mix:sentiment,formality,0.7``
``package.module:function``                 a Python callable, imported; see below
a folder or Hugging Face model name         a sequence-classification reward model, see
                                           :func:`hf_reward`
=========================================  ===================================================

A Python callable is used *per text* when it takes one required positional argument —
``fn(response: str) -> float``, scoring the response only (like the gold objectives) — and
*batched* when it takes two or more — ``fn(prompts: list[str], responses: list[str]) ->
array-like [N]``. A function may declare itself with an attribute ``fn.batched = True/False``,
which wins over its signature.

Every reward returned here checks its output: one finite float per response, else ValueError
naming the reward.
"""

from __future__ import annotations

import importlib
import inspect
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from .registry import REWARDS

__all__ = ["RewardFn", "batched_reward", "hf_reward", "load_reward", "text_reward"]

#: A batched reward: (prompts, responses) → float64 array [N].
RewardFn = Callable[[Sequence[str], Sequence[str]], np.ndarray]

_BUILTIN_HELP = (
    "package.module:function (a callable str -> float, or batched "
    "(prompts, responses) -> array), or the folder or Hugging Face name of a "
    "sequence-classification reward model"
)

_CALLABLE_RE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


def _spec_error(spec: str, why: str) -> ValueError:
    accepted = ", ".join([*REWARDS.helps(), _BUILTIN_HELP])
    return ValueError(f"reward {spec!r}: {why}. A reward is one of: {accepted}")


def _checked(fn: Callable[[list[str], list[str]], object], name: str) -> RewardFn:
    """Wrap a batched reward so it returns float64 [N] and refuses a wrong length or a
    non-finite value."""

    def reward(prompts: Sequence[str], responses: Sequence[str]) -> np.ndarray:
        prompts, responses = list(prompts), list(responses)
        if len(prompts) != len(responses):
            raise ValueError(f"reward {name}: {len(prompts)} prompts but {len(responses)} responses")
        out = fn(prompts, responses)
        try:
            values = np.asarray(out, dtype=np.float64).reshape(-1)
        except (TypeError, ValueError) as err:
            raise ValueError(f"reward {name}: did not return numbers: {err}") from None
        if values.size != len(responses):
            raise ValueError(f"reward {name}: returned {values.size} values for {len(responses)} responses")
        bad = np.flatnonzero(~np.isfinite(values))
        if bad.size:
            i = int(bad[0])
            raise ValueError(f"reward {name}: non-finite value {values[i]} for response {i} ({responses[i][:60]!r})")
        return values

    reward.__name__ = name
    return reward


def text_reward(fn: Callable[[str], float], name: str | None = None) -> RewardFn:
    """A batched reward that scores each response text alone: r_i = fn(responses[i])."""
    return _checked(lambda prompts, responses: [float(fn(r)) for r in responses], name or _name_of(fn, "text_reward"))


def batched_reward(fn: Callable[[list[str], list[str]], object], name: str | None = None) -> RewardFn:
    """A checked batched reward from ``fn(prompts, responses) -> array-like [N]``."""
    return _checked(fn, name or _name_of(fn, "reward"))


def _name_of(fn: Callable, default: str) -> str:
    """`fn.__name__`, or `default` for a callable without one."""
    return getattr(fn, "__name__", default)


def _is_batched(fn: Callable) -> bool:
    """Declared ``fn.batched``, else True iff fn takes ≥ 2 required positional arguments."""
    declared = getattr(fn, "batched", None)
    if isinstance(declared, bool):
        return declared
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):  # builtins without a signature: treat as per text
        return False
    required = [p for p in params if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(required) >= 2


def _registered_reward(spec: str) -> RewardFn | None:
    """The reward of a registered ``SCHEME:BODY`` spec, or None when SCHEME is not registered."""
    scheme, _, body = spec.partition(":")
    factory = REWARDS.get(scheme) if scheme.isidentifier() else None
    if factory is None:
        return None
    try:
        fn = factory(body)
    except ValueError as err:
        raise _spec_error(spec, str(err)) from None
    return _as_reward(fn, spec)


def _callable_reward(spec: str) -> RewardFn:
    module_name, attr_path = spec.split(":", 1)
    try:
        obj = importlib.import_module(module_name)
    except ImportError as err:
        raise _spec_error(spec, f"cannot import module {module_name!r} ({err})") from None
    for attr in attr_path.split("."):
        if not hasattr(obj, attr):
            raise _spec_error(spec, f"module {module_name!r} has no attribute {attr_path!r}")
        obj = getattr(obj, attr)
    if not callable(obj):
        raise _spec_error(spec, f"{attr_path!r} is a {type(obj).__name__}, not a callable")
    return _as_reward(obj, spec)


def _as_reward(fn: Callable, name: str) -> RewardFn:
    """A checked batched reward from a per-text or batched callable (see the module docstring)."""
    return batched_reward(fn, name=name) if _is_batched(fn) else text_reward(fn, name=name)


def hf_reward(
    name_or_path: str, *, device: str | None = None, batch_size: int = 32, max_length: int = 1024, dtype: str = "auto"
) -> RewardFn:
    """A Hugging Face sequence-classification model as a reward.

    Each (prompt, response) is scored as the single text ``prompt + response``, tokenized with
    the model's tokenizer (special tokens added, truncated on the left to `max_length` tokens —
    or the tokenizer's ``model_max_length`` when smaller — so the end of the response is kept).
    The reward is the head's logit when it has one label, and ``logit[1] − logit[0]`` (the
    log-odds of label 1, "good") when it has two. Other heads are refused, and so is a
    checkpoint without trained head weights (e.g. a causal LM, which would get a randomly
    initialised head). Padding uses the tokenizer's pad token (eos when it has none), which is
    also set as the model's ``pad_token_id`` so that decoder models pool the last real token.
    `device`: default CUDA when available, else CPU.
    """
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from ..modeling.loading import resolve_dtype

    try:
        tokenizer = AutoTokenizer.from_pretrained(name_or_path)
        model, info = AutoModelForSequenceClassification.from_pretrained(
            name_or_path, dtype=resolve_dtype(dtype), output_loading_info=True
        )
    except (OSError, ValueError, KeyError) as err:
        raise _spec_error(
            name_or_path,
            f"could not load it as a Hugging Face sequence-classification model ({str(err).splitlines()[0]})",
        ) from None
    if info.get("missing_keys"):
        missing = sorted(info["missing_keys"])
        raise _spec_error(
            name_or_path,
            "its checkpoint lacks trained weights of the "
            f"classification head ({', '.join(missing[:3])}): it is not a trained "
            "sequence-classification reward model",
        )
    labels = int(model.config.num_labels)
    if labels not in (1, 2):
        raise _spec_error(
            name_or_path,
            f"its classification head has {labels} labels; a reward "
            "model needs 1 (the reward) or 2 (reward = logit[1] - logit[0])",
        )
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise _spec_error(name_or_path, "its tokenizer has neither a pad nor an eos token")
        tokenizer.pad_token = tokenizer.eos_token
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    tokenizer.truncation_side = "left"
    if 0 < getattr(tokenizer, "model_max_length", 0) < max_length:
        max_length = int(tokenizer.model_max_length)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    model = model.to(device).eval()

    def score(prompts: list[str], responses: list[str]) -> np.ndarray:
        texts = [p + r for p, r in zip(prompts, responses)]
        out = np.zeros(len(texts), dtype=np.float64)
        with torch.inference_mode():
            for start in range(0, len(texts), batch_size):
                enc = tokenizer(
                    texts[start : start + batch_size],
                    return_tensors="pt",
                    padding=True,
                    truncation=True,
                    max_length=max_length,
                )
                logits = model(**{k: v.to(device) for k, v in enc.items()}).logits.double()
                r = logits[:, 0] if labels == 1 else logits[:, 1] - logits[:, 0]
                out[start : start + batch_size] = r.cpu().numpy()
        return out

    return _checked(score, name_or_path)


def _looks_like_local_path(spec: str) -> bool:
    """Meant as a local path: starts with ., / or ~, or has a folder part that exists here
    (a Hub name ``owner/name`` normally has none)."""
    return spec.startswith((".", "/", "~")) or (os.sep in spec and Path(spec).parent.exists())


def load_reward(spec: str, *, device: str | None = None, batch_size: int = 32, max_length: int = 1024) -> RewardFn:
    """The reward named by `spec` (see the module docstring for the forms).

    `device`, `batch_size` and `max_length` apply to Hugging Face reward models only. A bad
    spec raises ValueError naming it and listing the accepted forms.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise _spec_error(str(spec), "it is empty")
    spec = spec.strip()
    registered = _registered_reward(spec) if ":" in spec else None
    if registered is not None:
        return registered
    if Path(spec).expanduser().is_dir():
        return hf_reward(str(Path(spec).expanduser()), device=device, batch_size=batch_size, max_length=max_length)
    if _CALLABLE_RE.match(spec):
        return _callable_reward(spec)
    if ":" in spec:
        schemes = " / ".join(f"{s}:..." for s in REWARDS.schemes())
        raise _spec_error(spec, f"it is neither {schemes or 'a registered SCHEME:...'} nor package.module:function")
    if Path(spec).expanduser().exists():
        raise _spec_error(spec, "it is a file, not a model folder")
    if _looks_like_local_path(spec):
        raise _spec_error(spec, "no such model folder")
    return hf_reward(spec, device=device, batch_size=batch_size, max_length=max_length)
