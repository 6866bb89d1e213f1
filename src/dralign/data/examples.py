"""Tokenized examples: a preference pair, an unpaired example, and the per-row metadata they
share (`RowMeta`). The dataset that holds them is `dralign.data.dataset.PreferenceData`."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, kw_only=True)
class RowMeta:
    """The per-row fields every example carries, keyword-only (written once for both kinds).

    ``weight`` is the data weight w ≥ 0; ``group`` / ``source`` are ids into
    ``PreferenceData.group_names`` / ``source_names`` (−1 when absent; numbered by
    `dralign.data.metadata.number_names`); ``target_prob`` = P(target | x, y) and ``ratio`` = h
    (None when absent, see `dralign.data.metadata.density_ratios`); ``row`` and ``file`` say
    where the row came from.
    """

    weight: float = 1.0
    group: int = -1
    source: int = -1
    target_prob: float | None = None
    ratio: float | None = None
    row: int = -1
    file: str = ""


@dataclass(frozen=True)
class PairExample(RowMeta):
    """One tokenized preference pair. ``index`` is its position in the dataset (the key of the
    reference log-prob cache)."""

    index: int
    prompt_ids: tuple[int, ...]
    chosen_ids: tuple[int, ...]
    rejected_ids: tuple[int, ...]


@dataclass(frozen=True)
class UnpairedExample(RowMeta):
    """One tokenized unpaired example: a prompt, a completion and whether it is desirable."""

    index: int
    prompt_ids: tuple[int, ...]
    completion_ids: tuple[int, ...]
    label: bool
