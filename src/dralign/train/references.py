"""The reference policy of a run: precomputed log-probs read from a cache (the default), or a
live model (a frozen copy, a separate reference model, or the base under a disabled adapter)."""

from __future__ import annotations

import json

from ..data import PreferenceData
from ..errors import UnsupportedError
from ..modeling import (
    AdapterDisabledReference,
    CachedReference,
    FrozenReference,
    ReferenceCache,
    build_reference_cache,
    load_model,
    model_fingerprint,
)
from .config import TrainConfig


class ReferenceModelError(UnsupportedError):
    """The reference cannot be set up as asked; the message says what to do."""


def reference_fingerprint(model_fp: str, data: PreferenceData, dtype: str, attn_implementation: str | None) -> str:
    """The reference cache key of `data` scored by the model whose `model_fingerprint` is
    `model_fp`, loaded in `dtype`: the one definition, shared by training and `dralign eval`. The values
    also depend on the dtype and the attention kernel; not on the batch layout (with or without
    prefix sharing they agree to float rounding)."""
    return json.dumps(
        {
            "reference": model_fp,
            "data": data.fingerprint(),
            "length_normalize": False,
            "dtype": dtype,
            "attn_implementation": attn_implementation,
        }
    )


def cached_references(
    cfg: TrainConfig,
    policy,
    datasets: list[PreferenceData | None],
    accelerator,
    collate,
    log=print,
    progress: bool = False,
) -> list:
    """One reference per dataset, read from (or first written to) the cache. The start weights
    of the policy are the reference unless --ref-model names another model. progress: a bar
    while computing (only the main process computes)."""
    device = accelerator.device
    cache_dir = cfg.cache_dir()
    start = cfg.model.ref_model or cfg.model.model
    assert start is not None  # the recipe refused a run without --model
    ref_fp = model_fingerprint(start)
    ref_model = None
    references: list[CachedReference | None] = []
    for data in datasets:
        if data is None:
            references.append(None)
            continue
        fp = reference_fingerprint(ref_fp, data, cfg.model.dtype, cfg.model.attn_implementation)
        cache = None
        if accelerator.is_main_process:
            cache = ReferenceCache.load(cache_dir, fp)
            if cache is None:
                if ref_model is None:  # the start weights are the policy before training
                    ref_model = (
                        load_model(cfg.model.ref_model, dtype=cfg.model.dtype).to(device)
                        if cfg.model.ref_model
                        else policy
                    )
                cache = build_reference_cache(
                    ref_model,
                    data,
                    collate,
                    cache_dir,
                    fp,
                    batch_size=cfg.optim.batch_size * 2,
                    device=device,
                    log=log,
                    progress=progress,
                )
            else:
                log(f"reference log-probs read from {ReferenceCache.file_for(cache_dir, fp)}")
        accelerator.wait_for_everyone()
        cache = cache or ReferenceCache.load(cache_dir, fp)
        assert cache is not None, "the main process wrote it before wait_for_everyone"
        references.append(CachedReference(cache))
    return references


def live_reference(cfg: TrainConfig, policy, device, unpaired: bool):
    """A reference model held during training (--no-ref-cache)."""
    if unpaired:
        raise ReferenceModelError("aot-unpaired reads reference log-probs from the cache: drop --no-ref-cache")
    if cfg.model.ref_model:
        return FrozenReference(load_model(cfg.model.ref_model, dtype=cfg.model.dtype).to(device))
    if cfg.model.lora_r > 0:
        return AdapterDisabledReference(policy)
    return FrozenReference.from_policy(policy)
