"""The run's data: training and held-out rows, tokenized, with their reports."""

from __future__ import annotations

import torch

from ..data import ColumnMap, PreferenceData, load_rows, tokenize_pairs, tokenize_unpaired
from .config import TrainConfig


class InputError(ValueError):
    """The data cannot be trained on as configured; the message names the option."""


def columns_of(cfg: TrainConfig) -> ColumnMap:
    d = cfg.data
    return ColumnMap(prompt=d.prompt_column, chosen=d.chosen_column, rejected=d.rejected_column,
                     completion=d.completion_column, label=d.label_column, weight=d.weight_column,
                     group=d.group_column, source=d.source_column, target_prob=d.target_prob_column,
                     ratio=d.ratio_column)


def load_data(cfg: TrainConfig, tokenizer, unpaired: bool, log=print
              ) -> tuple[PreferenceData, PreferenceData | None]:
    """Training and (optional) held-out data, tokenized, with their reports printed."""
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
    rows = load_rows(d.data, subset=d.data_subset, split=d.data_split)
    eval_rows = None
    if d.eval_data or d.eval_split:
        eval_rows = load_rows(d.eval_data or d.data, subset=d.data_subset, split=d.eval_split or d.data_split)
    elif d.eval_fraction > 0:
        g = torch.Generator().manual_seed(cfg.optim.seed)
        perm = torch.randperm(len(rows), generator=g).tolist()
        n_eval = max(1, int(round(d.eval_fraction * len(rows))))
        eval_rows = [rows[i] for i in sorted(perm[:n_eval])]
        rows = [rows[i] for i in sorted(perm[n_eval:])]
    train = tokenize(rows, tokenizer, **kwargs)
    log(f"train data: {train.report.summary()}")
    held_out = None
    if eval_rows is not None:
        held_out = tokenize(eval_rows, tokenizer, groups=train.group_names, sources=train.source_names, **kwargs)
        log(f"eval data: {held_out.report.summary()}")
    return train, held_out

