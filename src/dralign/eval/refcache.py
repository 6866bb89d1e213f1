"""The reference of `dralign eval --data`: read from a reference cache when one fits, so that an
evaluation does not score the reference again.

Where a cache is looked for: ``--ref-cache-dir`` (written there when it has none), else the
training run the evaluated ``--model`` folder comes from (its ``config.yaml``'s
``ref_cache_dir``, default ``MODEL/ref_cache``; read only). A cache is used only when its key
(:func:`dralign.train.references.reference_fingerprint`: the ``--reference`` weights, the
tokenised data, ``--dtype``, the default attention kernel) is the one of this evaluation, so a
cache of other data or another reference is never read.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["cached_eval_reference", "run_cache_dir"]


def run_cache_dir(model: str) -> Path | None:
    """The reference cache folder of the training run whose output folder is `model`, or None
    when `model` is not a dralign output folder (no ``config.yaml`` beside the weights)."""
    from ..config import ConfigError, load_yaml

    config = Path(model) / "config.yaml"
    if not config.is_file():
        return None
    try:
        options = load_yaml(config)
    except ConfigError:  # not a dralign config: no cache to look for
        return None
    return Path(options.get("ref_cache_dir") or Path(model) / "ref_cache")


def cached_eval_reference(opts, data, device: str, log=print):
    """A :class:`dralign.modeling.CachedReference` of ``opts.reference`` on `data`, or None
    when no cache fits and none is to be written (the caller then loads the reference model).

    `opts`: the :class:`dralign.eval.cli.EvalOptions` (``reference``, ``model``,
    ``ref_cache_dir``, ``dtype``, ``batch_size``)."""
    from ..modeling import CachedReference, ReferenceCache, build_reference_cache, load_model, model_fingerprint
    from ..train.references import reference_fingerprint

    cache_dir = Path(opts.ref_cache_dir) if opts.ref_cache_dir else run_cache_dir(opts.model)
    if cache_dir is None:
        return None
    key = reference_fingerprint(model_fingerprint(opts.reference), data, opts.dtype, None)
    cache = ReferenceCache.load(cache_dir, key)
    if cache is not None:
        log(f"reference log-probs read from {ReferenceCache.file_for(cache_dir, key)}")
        return CachedReference(cache)
    if not opts.ref_cache_dir:  # a training run's folder is read, never written by eval
        log(f"no reference cache of these pairs in {cache_dir}: scoring --reference")
        return None
    # transformers' stub types `to` through a wrapper that refuses a device string
    model = load_model(opts.reference, dtype=opts.dtype).to(device)  # type: ignore[arg-type]
    cache = build_reference_cache(
        model,
        data,
        lambda d, idx: d.collate(idx),
        cache_dir,
        key,
        batch_size=opts.batch_size,
        device=device,
        log=log,
        progress=True,
    )
    return CachedReference(cache)
