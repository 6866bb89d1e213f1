"""How preference data is read: the options objects and the one loader.

Every reader of preference data — `dralign train`, `dralign eval`, density-ratio fitting (inline
``--ratio-target`` and `dralign ratio fit`) and the benchmarks — builds these objects once from
its config and passes them whole:

* `Columns` (= `ColumnMap`): the column name of each field dralign reads;
* `Truncation`: max length, prompt length, side, what to do with a prompt that fills it;
* `Source`: a file, folder or hub name, with its subset and split.

`load_pairs(source, tokenizer, columns, truncation, on_bad_row)` (and `load_unpaired`) reads,
validates, tokenises and reports; the tokenised-data cache's key (`cache_key`) derives from the
same objects, so what is read and what is cached cannot drift apart.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from ..config import Range, option
from .formats import ColumnMap
from .loading import Row, load_rows

if TYPE_CHECKING:
    from .dataset import PreferenceData

__all__ = [
    "Columns",
    "ReadOptions",
    "Source",
    "Truncation",
    "cache_key",
    "load_pairs",
    "load_preference_data",
    "load_unpaired",
    "SharingOption",
]

Columns = ColumnMap  # one class for the column names; `Columns` is its name among the options


@dataclass(frozen=True)
class Truncation:
    """How long examples are cut (the rules: `dralign.data.tokenize`)."""

    max_length: int = 512
    max_prompt_length: int | None = None
    side: Literal["left", "right"] = "left"
    long_prompts: Literal["cut", "strict"] = "cut"
    add_eos: bool = True

    def kwargs(self) -> dict:
        """The keywords of `tokenize_pairs` / `tokenize_unpaired` these settings are."""
        return {
            "max_length": self.max_length,
            "max_prompt_length": self.max_prompt_length,
            "truncation_side": self.side,
            "long_prompts": self.long_prompts,
            "add_eos": self.add_eos,
        }


@dataclass(frozen=True)
class Source:
    """Where rows come from: a file, a saved-dataset folder or a hub dataset (with its subset
    and split)."""

    path: str
    subset: str | None = None
    split: str = "train"

    @classmethod
    def of(cls, source: Source | str | os.PathLike) -> Source:
        return source if isinstance(source, Source) else cls(str(source))

    def read(self, progress: bool = False) -> list[Row]:
        return load_rows(self.path, subset=self.subset, split=self.split, progress=progress)


@dataclass
class ReadOptions:
    """How preference rows are read, validated and cut: the config section every command that
    reads preference data composes (`dralign train` and `dralign eval` alike, so the two read a
    file the same way)."""

    data_subset: str | None = option(None, "hub dataset subset/config name")
    format: Literal["auto", "explicit", "implicit", "conversational", "unpaired"] = option("auto", "row format")
    prompt_column: str = option("prompt", "column holding the prompt")
    chosen_column: str = option("chosen", "column holding the chosen response")
    rejected_column: str = option("rejected", "column holding the rejected response")
    completion_column: str = option("completion", "column holding an unpaired completion")
    label_column: str = option("label", "column holding an unpaired label (true = desirable)")
    weight_column: str = option("weight", "optional column of per-row weights")
    group_column: str = option("group", "optional column of group names (group-dro)")
    source_column: str = option("source", "optional column of row sources (dora)")
    target_prob_column: str = option("target_prob", "optional column of P(target | x, y) (dora)")
    ratio_column: str = option("ratio", "optional column of density ratios h (dora)")
    max_length: int = option(512, "max tokens of prompt + completion", Range(2))
    max_prompt_length: int | None = option(
        None,
        "max prompt tokens; unset, a prompt is cut only when it leaves no room for its completion (>= --max-length tokens), and then to half of --max-length",
        Range(1),
    )
    truncation_side: Literal["left", "right"] = option("left", "which side of a long prompt to cut")
    long_prompts: Literal["cut", "strict"] = option(
        "cut",
        "a prompt that leaves no room for the completion: cut it to --max-prompt-length (default half of --max-length) and count it, or refuse the row (strict)",
    )
    on_bad_row: Literal["error", "skip"] = option("error", "what to do with invalid rows")

    def columns(self) -> Columns:
        return Columns(**{f.name: getattr(self, f"{f.name}_column") for f in dataclasses.fields(Columns)})

    def truncation(self) -> Truncation:
        return Truncation(self.max_length, self.max_prompt_length, self.truncation_side, self.long_prompts)

    def row_format(self) -> str | None:
        """The format to validate rows as (None: detect it)."""
        return None if self.format == "auto" else self.format

    def source(self, path: str, split: str = "train") -> Source:
        return Source(path, self.data_subset, split)


@dataclass
class SharingOption:
    """The batch layout of scored pairs (train's data section and eval's carry it)."""

    prefix_sharing: Literal["auto", "on", "off"] = option(
        "auto",
        "score chosen and rejected in one sequence [prompt | chosen | rejected] with a 4-D attention mask, so the prompt is computed once (same log-probs up to float rounding); auto = on for paired objectives when the model supports it and the prompts are long enough to pay (never for WDPO's penalty)",
    )


def cache_key(
    source: Source,
    tokenizer,
    columns: Columns,
    truncation: Truncation,
    on_bad_row: str,
    *,
    format: str | None = None,
    unpaired: bool = False,
    **part,
) -> str | None:
    """The tokenised-data cache key of reading `source` with these options (None: the source
    cannot be cached); `part` adds what else the caller's result depends on (a held-out split's
    fraction and seed, the training set's group names)."""
    settings = {
        "columns": dataclasses.asdict(columns),
        "truncation": dataclasses.asdict(truncation),
        "on_bad_row": on_bad_row,
        "format": format,
        "unpaired": unpaired,
        "subset": source.subset,
        "split": source.split,
        **part,
    }
    from . import cache  # numpy: not for `dralign train --help`

    return cache.fingerprint(source.path, tokenizer, settings)


def _tokenize(
    rows: Sequence[Row],
    tokenizer,
    columns: Columns,
    truncation: Truncation,
    on_bad_row: str,
    format: str | None,
    like: PreferenceData | None,
    progress: bool,
) -> PreferenceData:
    from .tokenize import tokenize_pairs, tokenize_unpaired

    names: dict[str, Any] = {"groups": like.group_names, "sources": like.source_names} if like is not None else {}
    format = None if format == "auto" else format
    if format == "unpaired":
        return tokenize_unpaired(
            rows, tokenizer, columns=columns, on_bad_row=on_bad_row, progress=progress, **names, **truncation.kwargs()
        )
    return tokenize_pairs(
        rows,
        tokenizer,
        format=format,
        columns=columns,
        on_bad_row=on_bad_row,
        progress=progress,
        **names,
        **truncation.kwargs(),
    )


def load_pairs(
    source: Source | str | os.PathLike | Sequence[Row],
    tokenizer,
    columns: Columns = Columns(),  # noqa: B008 (frozen)
    truncation: Truncation = Truncation(),
    on_bad_row: str = "error",
    *,
    format: str | None = None,
    like: PreferenceData | None = None,
    cache_dir=None,
    progress: bool = False,
    log=print,
) -> PreferenceData:
    """Preference pairs from `source` (a `Source`, a path, or rows already read), validated,
    tokenised and reported; the one loader of train, eval, ratio fitting and the benchmarks.

    format: None detects it (explicit, implicit, conversational). like: number groups and
    sources as this (training) set does. cache_dir: read the result from, or write it to, the
    tokenised-data cache there (a source that is not a local file or folder is not cached).
    """
    return _load(source, tokenizer, columns, truncation, on_bad_row, format, like, cache_dir, progress, log)


def load_unpaired(
    source: Source | str | os.PathLike | Sequence[Row],
    tokenizer,
    columns: Columns = Columns(),  # noqa: B008 (frozen)
    truncation: Truncation = Truncation(),
    on_bad_row: str = "error",
    *,
    like: PreferenceData | None = None,
    cache_dir=None,
    progress: bool = False,
    log=print,
) -> PreferenceData:
    """Unpaired rows (prompt, completion, label) from `source`; as `load_pairs`."""
    return _load(source, tokenizer, columns, truncation, on_bad_row, "unpaired", like, cache_dir, progress, log)


def _load(
    source,
    tokenizer,
    columns: Columns,
    truncation: Truncation,
    on_bad_row: str,
    format: str | None,
    like: PreferenceData | None,
    cache_dir,
    progress: bool,
    log=print,
) -> PreferenceData:
    if not isinstance(source, (Source, str, os.PathLike)):  # rows already read: nothing to cache
        return _tokenize(source, tokenizer, columns, truncation, on_bad_row, format, like, progress)
    source = Source.of(source)

    def build() -> PreferenceData:
        return _tokenize(source.read(progress), tokenizer, columns, truncation, on_bad_row, format, like, progress)

    if cache_dir is None:
        return build()
    names: dict[str, Any] = {"groups": like.group_names, "sources": like.source_names} if like is not None else {}
    key = cache_key(
        source, tokenizer, columns, truncation, on_bad_row, format=format, unpaired=format == "unpaired", **names
    )
    from . import cache

    return cache.cached(build, cache_dir, key, log)


def load_preference_data(
    source,
    tokenizer,
    *,
    subset: str | None = None,
    split: str = "train",
    unpaired: bool = False,
    cache_dir=None,
    progress: bool = False,
    **kwargs,
) -> PreferenceData:
    """`dralign.data.options.load_pairs` (or `load_unpaired`) with the keywords of
    `tokenize_pairs` (columns, format, on_bad_row and the truncation settings)."""
    columns = ColumnMap.of(kwargs.pop("columns", None))
    on_bad_row, fmt = kwargs.pop("on_bad_row", "error"), kwargs.pop("format", None)
    if "truncation_side" in kwargs:
        kwargs["side"] = kwargs.pop("truncation_side")
    truncation = Truncation(**kwargs)  # an unknown keyword is a TypeError, as before
    where = Source(str(source), subset, split)
    if unpaired:
        return load_unpaired(where, tokenizer, columns, truncation, on_bad_row, cache_dir=cache_dir, progress=progress)
    return load_pairs(
        where, tokenizer, columns, truncation, on_bad_row, format=fmt, cache_dir=cache_dir, progress=progress
    )
