"""The reference policy of a run: precomputed log-probs read from a cache (the default), or a
live model (a frozen copy, a separate reference model, or the base under a disabled adapter)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import torch

from ..data import PreferenceData
from ..modeling import (AdapterDisabledReference, CachedReference, FrozenReference, PairLogps,
                        ReferenceCache, load_model, model_fingerprint, pair_logps, sequence_logps)
from .config import TrainConfig


class ReferenceError(RuntimeError):
    """The reference cannot be set up as asked; the message says what to do."""


def build_reference_cache(model, data: PreferenceData, path: Path, fingerprint: str,
                          batch_size: int, device, collate: Callable[[PreferenceData, list[int]], dict],
                          log=print) -> ReferenceCache:
    """Score every example with `model` (no grad, dropout off) and save the cache atomically.
    Unpaired completions are stored in the chosen slots."""
    log(f"computing reference log-probs for {len(data)} examples -> {path}")
    indices, parts = [], []
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for start in range(0, len(data), batch_size):
                idx = list(range(start, min(start + batch_size, len(data))))
                batch = {k: v.to(device) for k, v in collate(data, idx).items()}
                if data.kind == "pairs":
                    lp = pair_logps(model, batch)
                else:
                    seq = sequence_logps(model, batch["input_ids"], batch["attention_mask"],
                                         batch["completion_mask"])
                    lp = PairLogps(seq.sum, torch.zeros_like(seq.sum), seq.count, torch.zeros_like(seq.count))
                indices.append(batch["index"].cpu())
                parts.append([t.float().cpu() if t.is_floating_point() else t.cpu() for t in lp])
    finally:
        model.train(was_training)
    values = PairLogps(*(torch.cat(c) for c in zip(*parts)))
    cache = ReferenceCache.from_values(fingerprint, torch.cat(indices), values)
    cache.save(path)
    return cache


def cached_references(cfg: TrainConfig, policy, datasets: list[PreferenceData | None], accelerator,
                      collate, log=print) -> list:
    """One reference per dataset, read from (or first written to) the cache. The start weights
    of the policy are the reference unless --ref-model names another model."""
    device = accelerator.device
    cache_dir = Path(cfg.model.ref_cache_dir or Path(cfg.optim.output_dir) / "ref_cache")
    ref_source = cfg.model.ref_model or cfg.model.model
    ref_fp = model_fingerprint(ref_source)
    ref_model, references = None, []
    for data in datasets:
        if data is None:
            references.append(None)
            continue
        # the values also depend on the dtype the reference is loaded in (and its kernel); not
        # on the batch layout: with or without prefix sharing they agree to float rounding
        fp = json.dumps({"reference": ref_fp, "data": data.fingerprint(), "length_normalize": False,
                         "dtype": cfg.model.dtype, "attn_implementation": cfg.model.attn_implementation})
        cache = None
        if accelerator.is_main_process:
            cache = ReferenceCache.load(cache_dir, fp)
            if cache is None:
                if ref_model is None:  # the start weights are the policy before training
                    ref_model = (load_model(cfg.model.ref_model, dtype=cfg.model.dtype).to(device)
                                 if cfg.model.ref_model else policy)
                cache = build_reference_cache(ref_model, data, cache_dir, fp, cfg.optim.batch_size * 2,
                                              device, collate, log)
            else:
                log(f"reference log-probs read from {ReferenceCache.file_for(cache_dir, fp)}")
        accelerator.wait_for_everyone()
        cache = cache or ReferenceCache.load(cache_dir, fp)
        # unpaired scorers read the cache directly; paired ones through the Reference interface
        references.append(cache if data.kind == "unpaired" else CachedReference(cache))
    return references


def live_reference(cfg: TrainConfig, policy, device, unpaired: bool):
    """A reference model held during training (--no-ref-cache)."""
    if unpaired:
        raise ReferenceError("aot-unpaired reads reference log-probs from the cache: drop --no-ref-cache")
    if cfg.model.ref_model:
        return FrozenReference(load_model(cfg.model.ref_model, dtype=cfg.model.dtype).to(device))
    if cfg.model.lora_r > 0:
        return AdapterDisabledReference(policy)
    return FrozenReference.from_policy(policy)
