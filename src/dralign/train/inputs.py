"""The run's data: training and held-out rows, tokenized, with their reports, and the per-row
density ratios of DoRA-style objectives."""

from __future__ import annotations

import torch

from ..data import ColumnMap, PreferenceData, load_rows, tokenize_pairs, tokenize_unpaired
from .config import TrainConfig


class InputError(ValueError):
    """The data cannot be trained on as configured; the message names the file, row and option."""


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
                  max_prompt_length=d.max_prompt_length, truncation_side=d.truncation_side)
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


def density_ratios(data: PreferenceData, prior: float | None = None) -> tuple[torch.Tensor, float | None]:
    """(h per example, the target prior π_T used): the `ratio` column, else target_prob / π_T with
    π_T the mean target probability of the TRAINING rows (a calibrated classifier's mean is the
    target prior of the training mixture; held-out rows are divided by the same π_T)."""
    ratio = [e.ratio for e in data.examples]
    if all(r is not None for r in ratio):
        return torch.tensor(ratio, dtype=torch.float32), prior
    probs = [e.target_prob for e in data.examples]
    if all(p is not None for p in probs):
        p = torch.tensor(probs, dtype=torch.float32)
        prior = float(p.mean()) if prior is None else prior
        return p / prior, prior
    missing = next(e for e, r, p in zip(data.examples, ratio, probs) if r is None and p is None)
    raise InputError(f"{missing.file} row {missing.row}: the method needs a density ratio per row "
                     "(a `ratio` or `target_prob` column; see `dralign ratio fit`, or --ratio-target "
                     "on the command line)")


def require_groups(data: PreferenceData, column: str, method: str) -> None:
    bad = [e for e in data.examples if e.group < 0]
    if bad:
        raise InputError(f"{bad[0].file} row {bad[0].row}: field '{column}': method {method} needs a "
                         f"group for every row ({len(bad)} rows have none; see --group-column)")
