"""Density ratios fitted before training: `--ratio-target` turns the training (and held-out)
file into one with `target_prob` and `ratio` columns, which the trainer then reads like any
other. Fitting never happens inside the training recipe."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING

from .cli import RatioOptions, fit_file

if TYPE_CHECKING:  # the sections it reads (data, method, model, optim); ratio never imports train
    from ..train.config import TrainConfig

RATIO_FOLDER = "ratios"  # under the output folder; kept by --overwrite like the reference cache


def with_fitted_ratios(cfg: TrainConfig, log=print) -> TrainConfig:
    """`cfg` itself when it asks for no inline ratios; else a copy whose data files carry
    cross-fitted ratios from the start model's features (see `dralign ratio fit`)."""
    d = cfg.data
    if not d.ratio_target or not cfg.method.objective().uses_ratio:
        return cfg
    if d.data_subset or (d.eval_split and not d.eval_data):
        raise ValueError(
            "--ratio-target fits ratios on local files; for a hub dataset run `dralign ratio fit` on a saved copy first"
        )
    folder = Path(cfg.optim.output_dir) / RATIO_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    target = d.ratio_target

    def fit(source: str | None, name: str) -> str:  # None: no --data, refused by fit_file
        output = folder / f"{name}.ratios.jsonl"
        log(f"fitting density ratios for {source} (target {', '.join(target)}) -> {output}")
        # the features see what training sees: the trainer's data section, passed whole
        fit_file(RatioOptions(data=source, output=str(output), target=list(target), model=cfg.model.model), read=d)
        return str(output)

    data = dataclasses.replace(
        d, data=fit(d.data, "train"), ratio_target=None, ratio_column="ratio", target_prob_column="target_prob"
    )
    if d.eval_data:
        data = dataclasses.replace(data, eval_data=fit(d.eval_data, "eval"))
    return dataclasses.replace(cfg, data=data)
