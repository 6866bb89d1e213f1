"""The run's data: training and held-out rows, tokenized, with their reports."""

from __future__ import annotations

from ..errors import BadOptionError
import dataclasses

import torch

from ..data import ColumnMap, PreferenceData, load_rows, tokenize_pairs, tokenize_unpaired
from ..data import cache as data_cache
from .config import TrainConfig


class InputError(BadOptionError):
    """The data cannot be trained on as configured; the message names the option."""


def columns_of(cfg: TrainConfig) -> ColumnMap:
    d = cfg.data
    return ColumnMap(prompt=d.prompt_column, chosen=d.chosen_column, rejected=d.rejected_column,
                     completion=d.completion_column, label=d.label_column, weight=d.weight_column,
                     group=d.group_column, source=d.source_column, target_prob=d.target_prob_column,
                     ratio=d.ratio_column)


def load_data(cfg: TrainConfig, tokenizer, unpaired: bool, log=print, cache_dir=None,
              progress: bool = False) -> tuple[PreferenceData, PreferenceData | None]:
    """Training and (optional) held-out data, tokenized, with their reports printed.

    cache_dir: where tokenised data is cached (`dralign.data.cache`), keyed by the source's
    content, the tokenizer and every setting below; None: no cache. progress: bars while
    reading and tokenising (the caller passes it on the main process only)."""
    d = cfg.data
    if not d.data:
        raise InputError("no training data: pass --data FILE (or `data:` in --config)")
    tokenize = tokenize_unpaired if unpaired else tokenize_pairs
    kwargs = dict(columns=columns_of(cfg), on_bad_row=d.on_bad_row, max_length=d.max_length,
                  max_prompt_length=d.max_prompt_length, truncation_side=d.truncation_side,
                  long_prompts=d.long_prompts)
    if not unpaired:
        kwargs["format"] = None if d.format == "auto" else d.format
    elif d.format not in ("auto", "unpaired"):
        raise InputError(f"the method needs unpaired rows (prompt, completion, label), got --format {d.format}")
    settings = {**kwargs, "columns": dataclasses.asdict(kwargs["columns"]), "unpaired": unpaired,
                "subset": d.data_subset}

    def key(source, part: dict):
        return None if cache_dir is None else data_cache.fingerprint(source, tokenizer, {**settings, **part})

    def read(source, split):
        return load_rows(source, subset=d.data_subset, split=split, progress=progress)

    separate = bool(d.eval_data or d.eval_split)
    eval_source, eval_split = d.eval_data or d.data, d.eval_split or d.data_split
    train_part = {"split": d.data_split, "eval_fraction": 0.0 if separate else d.eval_fraction,
                  "seed": cfg.optim.seed if d.eval_fraction > 0 and not separate else None,
                  "part": "train"}
    train_key = key(d.data, train_part)
    if separate or d.eval_fraction == 0:
        train = data_cache.cached(lambda: tokenize(read(d.data, d.data_split), tokenizer,
                                                   progress=progress, **kwargs),
                                  cache_dir, train_key, log)
        held_out = None
        if separate:
            eval_key = key(eval_source, {"split": eval_split, "part": "eval",
                                         "groups": train.group_names, "sources": train.source_names})
            held_out = data_cache.cached(
                lambda: tokenize(read(eval_source, eval_split), tokenizer, groups=train.group_names,
                                 sources=train.source_names, progress=progress, **kwargs),
                cache_dir, eval_key, log)
    else:  # one file split by --eval-fraction: both parts come from one read
        eval_key = key(d.data, {**train_part, "part": "eval"})
        train = held_out = None
        if cache_dir is not None and train_key is not None:
            train, held_out = (data_cache.load(cache_dir, train_key), data_cache.load(cache_dir, eval_key))
        if train is None or held_out is None:
            rows = read(d.data, d.data_split)
            g = torch.Generator().manual_seed(cfg.optim.seed)
            perm = torch.randperm(len(rows), generator=g).tolist()
            n_eval = max(1, int(round(d.eval_fraction * len(rows))))
            eval_rows = [rows[i] for i in sorted(perm[:n_eval])]
            rows = [rows[i] for i in sorted(perm[n_eval:])]
            train = tokenize(rows, tokenizer, progress=progress, **kwargs)
            del rows  # the raw rows are not held beside the tokenised ones
            held_out = tokenize(eval_rows, tokenizer, groups=train.group_names,
                                sources=train.source_names, progress=progress, **kwargs)
            if cache_dir is not None and train_key is not None:
                data_cache.save(train, cache_dir, train_key)
                data_cache.save(held_out, cache_dir, eval_key)
        else:
            log(f"tokenised data read from {data_cache.entry_for(cache_dir, train_key)}")
    log(f"train data: {train.report.summary()}")
    if held_out is not None:
        log(f"eval data: {held_out.report.summary()}")
    return train, held_out
