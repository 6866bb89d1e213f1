"""The run's data: training and held-out rows, tokenized, with their reports."""

from __future__ import annotations

import functools

import torch

from ..data import PreferenceData
from ..data import cache as data_cache
from ..data.options import cache_key, load_pairs, load_unpaired
from ..errors import BadOptionError
from .config import TrainConfig


class InputError(BadOptionError):
    """The data cannot be trained on as configured; the message names the option."""


def load_data(
    cfg: TrainConfig, tokenizer, unpaired: bool, log=print, cache_dir=None, progress: bool = False
) -> tuple[PreferenceData, PreferenceData | None]:
    """Training and (optional) held-out data, tokenized, with their reports printed.

    cache_dir: where tokenised data is cached (`dralign.data.cache`), keyed by the source's
    content, the tokenizer and the data options (`dralign.data.options.cache_key`); None: no
    cache. progress: bars while reading and tokenising (the caller passes it on the main
    process only)."""
    d = cfg.data
    if not d.data:
        raise InputError("no training data: pass --data FILE (or `data:` in --config)")
    if unpaired and d.format not in ("auto", "unpaired"):
        raise InputError(f"the method needs unpaired rows (prompt, completion, label), got --format {d.format}")
    fmt = "unpaired" if unpaired else d.row_format()
    columns, truncation = d.columns(), d.truncation()
    load = load_unpaired if unpaired else functools.partial(load_pairs, format=fmt)
    if d.eval_data or d.eval_split or d.eval_fraction == 0:
        train = load(
            d.source(d.data, d.data_split),
            tokenizer,
            columns,
            truncation,
            d.on_bad_row,
            cache_dir=cache_dir,
            progress=progress,
            log=log,
        )
        held_out = None
        if d.eval_data or d.eval_split:
            held_out = load(
                d.source(d.eval_data or d.data, d.eval_split or d.data_split),
                tokenizer,
                columns,
                truncation,
                d.on_bad_row,
                like=train,
                cache_dir=cache_dir,
                progress=progress,
                log=log,
            )
    else:
        train, held_out = _split_by_fraction(cfg, tokenizer, load, cache_dir, progress, log)
    log(f"train data: {train.report.summary()}")
    if held_out is not None:
        log(f"eval data: {held_out.report.summary()}")
    return train, held_out


def _split_by_fraction(cfg: TrainConfig, tokenizer, load, cache_dir, progress: bool, log):
    """One file split by --eval-fraction (seeded): both parts come from one read, cached as a
    pair under keys that carry the fraction and the seed."""
    d = cfg.data
    assert d.data is not None  # the caller refused a run without --data
    source, fmt = d.source(d.data, d.data_split), "unpaired" if load is load_unpaired else d.row_format()
    train_key: str | None = None
    eval_key: str | None = None
    if cache_dir is not None:  # one source: both keys are None (not cacheable) or neither
        train_key, eval_key = (
            cache_key(
                source,
                tokenizer,
                d.columns(),
                d.truncation(),
                d.on_bad_row,
                format=fmt,
                unpaired=fmt == "unpaired",
                eval_fraction=d.eval_fraction,
                seed=cfg.optim.seed,
                part=part,
            )
            for part in ("train", "eval")
        )
    if train_key is not None and eval_key is not None:
        train, held_out = (data_cache.load(cache_dir, train_key), data_cache.load(cache_dir, eval_key))
        if train is not None and held_out is not None:
            log(f"tokenised data read from {data_cache.entry_for(cache_dir, train_key)}")
            return train, held_out
    rows = source.read(progress)
    g = torch.Generator().manual_seed(cfg.optim.seed)
    perm = torch.randperm(len(rows), generator=g).tolist()
    n_eval = max(1, int(round(d.eval_fraction * len(rows))))
    eval_rows = [rows[i] for i in sorted(perm[:n_eval])]
    rows = [rows[i] for i in sorted(perm[n_eval:])]
    train = load(rows, tokenizer, d.columns(), d.truncation(), d.on_bad_row, progress=progress)
    del rows  # the raw rows are not held beside the tokenised ones
    held_out = load(eval_rows, tokenizer, d.columns(), d.truncation(), d.on_bad_row, like=train, progress=progress)
    if train_key is not None and eval_key is not None:
        data_cache.save(train, cache_dir, train_key)
        data_cache.save(held_out, cache_dir, eval_key)
    return train, held_out
