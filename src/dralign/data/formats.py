"""Row formats, format detection and per-row validation.

Formats (auto-detected from the columns, or forced with ``format=``):

- ``explicit``: ``prompt``, ``chosen``, ``rejected`` strings.
- ``implicit``: only ``chosen`` and ``rejected`` strings, each the full text; the prompt is
  their shared prefix (Anthropic HH style), see `split_implicit_prompt`.
- ``conversational``: ``prompt``, ``chosen``, ``rejected`` lists of ``{role, content}``
  messages, or only ``chosen``/``rejected`` full conversations whose shared leading messages
  are the prompt. Rendered later with the tokenizer's chat template.
- ``unpaired``: ``prompt``, ``completion`` strings and a boolean-like ``label`` (AOT-unpaired).

Optional columns, any format: ``weight`` (in [0, MAX_WEIGHT]), ``group`` (string or
integer), ``source`` (string), ``target_prob`` (in [0, 1]) and/or ``ratio`` (in [0, MAX_WEIGHT]).
Numeric fields accept numbers or strings holding one (as CSV cells may be). Text must be valid
Unicode (a JSON ``"\\ud800"`` escape, a lone surrogate, is a bad row).

A `ColumnMap` maps other column names onto these names. A name with dots, e.g.
``meta.scenario_group``, is a path into nested objects (``row["meta"]["scenario_group"]``)
unless the row has a key with that exact name. A column the format needs, or any column given a
name other than its default, must be present in at least one row: otherwise the whole source is
refused (a misspelt column name is never silently ignored).

Validation turns each `Row` into a `PairRecord` / `UnpairedRecord`, or a `BadRow` naming the
file, row, field and reason; every row ends up in exactly one of the two lists. The checks of a
single field (a column's value, its type and range) are `dralign.data.fields`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

from . import report as R
from .fields import (
    MAX_WEIGHT,
    BadField,
    Messages,
    Text,
    bounded_field,
    column_value,
    label_field,
    messages_field,
    name_field,
    number_field,
    short,
    text_field,
)
from .loading import Row, rows_from_records
from .report import BadRow, DataError

__all__ = [  # column_value, MAX_WEIGHT, Messages and Text live in data/fields.py
    "FORMATS",
    "HH_ASSISTANT_MARKER",
    "MAX_WEIGHT",
    "PAIR_FORMATS",
    "ColumnMap",
    "Extras",
    "Messages",
    "PairRecord",
    "Text",
    "UnpairedRecord",
    "as_rows",
    "bad_row",
    "check_columns",
    "column_value",
    "detect_format",
    "split_implicit_conversation",
    "split_implicit_prompt",
    "validate_pairs",
    "validate_unpaired",
]

FORMATS = ("explicit", "implicit", "conversational", "unpaired")
PAIR_FORMATS = ("explicit", "implicit", "conversational")
HH_ASSISTANT_MARKER = "\n\nAssistant:"

_MISSING = object()


@dataclass(frozen=True)
class ColumnMap:
    """The column name in the data for each field dralign reads (defaults: the field names)."""

    prompt: str = "prompt"
    chosen: str = "chosen"
    rejected: str = "rejected"
    completion: str = "completion"
    label: str = "label"
    weight: str = "weight"
    group: str = "group"
    source: str = "source"
    target_prob: str = "target_prob"
    ratio: str = "ratio"

    @staticmethod
    def flag(field: str) -> str:
        """The CLI option that names `field`'s column, e.g. ``--group-column``."""
        return f"--{field.replace('_', '-')}-column"

    @classmethod
    def of(cls, columns: ColumnMap | Mapping[str, str] | None) -> ColumnMap:
        """Accept a ColumnMap, a ``{field: column}`` dict, or None (the defaults)."""
        if columns is None:
            return cls()
        if isinstance(columns, ColumnMap):
            return columns
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(columns) - known)
        if unknown:
            raise ValueError(f"unknown fields in column map: {unknown}; known: {sorted(known)}")
        return cls(**columns)


@dataclass(frozen=True)
class Extras:
    """The optional per-row fields, validated. ``group`` and ``source`` are names here."""

    weight: float = 1.0
    group: str | None = None
    source: str | None = None
    target_prob: float | None = None
    ratio: float | None = None


@dataclass(frozen=True)
class PairRecord:
    """A valid preference pair. For ``conversational`` rows the texts are message lists."""

    prompt: Text
    chosen: Text
    rejected: Text
    extras: Extras
    file: str
    row: int
    line: int | None
    conversational: bool = False
    implicit_prompt: bool = False  # the prompt was cut from chosen/rejected (no prompt column)


@dataclass(frozen=True)
class UnpairedRecord:
    """A valid unpaired example: a prompt, one completion and whether it is desirable."""

    prompt: str
    completion: str
    label: bool
    extras: Extras
    file: str
    row: int
    line: int | None


def bad_row(row: Row | PairRecord | UnpairedRecord, field: str | None, reason: str, detail: str) -> BadRow:
    """A BadRow located at `row` (a raw Row or a validated record)."""
    index = row.index if isinstance(row, Row) else row.row
    return BadRow(row.file, index, row.line, field, reason, detail)


# --------------------------------------------------------------------------- detection


def _present(rows: Sequence[Row], column: str) -> bool:
    """Whether any readable row has `column` (even holding null)."""
    return any(row.data is not None and column_value(row.data, column, _MISSING) is not _MISSING for row in rows)


def _columns_seen(rows: Sequence[Row]) -> list[str]:
    seen: set[str] = set()
    for row in rows:
        if row.data is not None:
            seen.update(row.data)
    return sorted(seen)


def detect_format(rows: Sequence[Row], columns: ColumnMap | None = None) -> str:
    """The format of `rows`, from the columns present in them and the type of the texts.

    ``completion`` + ``label`` → unpaired; ``chosen`` + ``rejected`` (+ ``prompt`` or not) →
    conversational when the first non-null ``chosen`` is a list, else explicit/implicit.
    Raises DataError when no format fits.
    """
    cols = ColumnMap.of(columns)
    if _present(rows, cols.completion) and _present(rows, cols.label):
        return "unpaired"
    if _present(rows, cols.chosen) and _present(rows, cols.rejected):
        first_chosen = next(
            (v for v in (column_value(r.data, cols.chosen) for r in rows if r.data is not None) if v is not None), None
        )
        if isinstance(first_chosen, list):
            return "conversational"
        return "explicit" if _present(rows, cols.prompt) else "implicit"
    where = rows[0].file if rows else "<no rows>"
    raise DataError(
        f"{where}: cannot detect the data format from columns {_columns_seen(rows)[:20]}; "
        f"expected '{cols.chosen}' and '{cols.rejected}' (with or without '{cols.prompt}') for "
        f"pairs, or '{cols.prompt}', '{cols.completion}', '{cols.label}' for unpaired data. Name "
        f"the columns with --prompt-column, --chosen-column, --rejected-column (unpaired: "
        f"--completion-column, --label-column), or set --format."
    )


_REQUIRED = {
    "explicit": ("prompt", "chosen", "rejected"),
    "implicit": ("chosen", "rejected"),
    "conversational": ("chosen", "rejected"),
    "unpaired": ("prompt", "completion", "label"),
}
_OPTIONAL = ("weight", "group", "source", "target_prob", "ratio")


def check_columns(rows: Sequence[Row], fmt: str, columns: ColumnMap | None = None) -> None:
    """DataError unless every column `fmt` needs, and every column given a non-default name
    that `fmt` reads, is present in at least one readable row (no check without one)."""
    cols, defaults = ColumnMap.of(columns), ColumnMap()
    readable = [r for r in rows if r.data is not None]
    if not readable:
        return
    used = (("prompt", "completion", "label") if fmt == "unpaired" else ("prompt", "chosen", "rejected")) + _OPTIONAL
    for field_name in used:
        column = getattr(cols, field_name)
        named = column != getattr(defaults, field_name)
        if (named or field_name in _REQUIRED[fmt]) and not _present(readable, column):
            raise DataError(
                f"{readable[0].file}: no row has the column {column!r} ({fmt} format's "
                f"{field_name}, named with {ColumnMap.flag(field_name)}); the rows have columns "
                f"{_columns_seen(readable)[:20]}"
            )


def _extras(data: Mapping[str, Any], cols: ColumnMap) -> Extras:
    weight = bounded_field(data, cols.weight, "weight")
    target_prob = number_field(data, cols.target_prob)
    if target_prob is not None and not 0 <= target_prob <= 1:
        raise BadField(cols.target_prob, R.OUT_OF_RANGE, f"target_prob {target_prob} is outside [0, 1]")
    ratio = bounded_field(data, cols.ratio, "ratio")
    # Both may be given (`dralign ratio fit` writes both): the ratio is used, target_prob is
    # kept for reference.
    return Extras(
        weight=1.0 if weight is None else weight,
        group=name_field(data, cols.group, allow_int=True),
        source=name_field(data, cols.source, allow_int=False),
        target_prob=target_prob,
        ratio=ratio,
    )


# --------------------------------------------------------------------------- implicit prompts


def split_implicit_prompt(chosen: str, rejected: str, marker: str = HH_ASSISTANT_MARKER) -> tuple[str, str, str] | None:
    """Split two full texts into (prompt, chosen completion, rejected completion).

    The prompt is their common prefix cut back to the end of the last `marker` in it (HH's
    ``"\\n\\nAssistant:"``). If neither text contains the marker, the prompt is the whole
    longest common prefix. Returns None when there is no usable shared prompt: an empty
    common prefix, or texts that contain the marker but diverge before it.
    """
    common = os.path.commonprefix([chosen, rejected])
    if marker in chosen or marker in rejected:
        cut = common.rfind(marker)
        if cut < 0:
            return None
        cut += len(marker)
    else:
        cut = len(common)
    if cut == 0:
        return None
    return chosen[:cut], chosen[cut:], rejected[cut:]


def split_implicit_conversation(chosen: Messages, rejected: Messages) -> tuple[Messages, Messages, Messages] | None:
    """Split two conversations into (shared prompt messages, chosen tail, rejected tail).

    The prompt is the longest run of identical leading messages, cut back so that both tails
    start with an ``assistant`` message. None when that leaves no shared message.
    """
    k = 0
    while k < min(len(chosen), len(rejected)) and chosen[k] == rejected[k]:
        k += 1
    while k > 0 and not (
        k < len(chosen) and k < len(rejected) and chosen[k]["role"] == rejected[k]["role"] == "assistant"
    ):
        k -= 1
    if k == 0:
        return None
    return chosen[:k], chosen[k:], rejected[k:]


# --------------------------------------------------------------------------- validation


def as_rows(rows: Sequence[Row] | Sequence[Mapping[str, Any]]) -> list[Row]:
    """Accept rows from `load_rows` or plain dicts (wrapped as rows of ``<memory>``)."""
    given = list(rows)
    read = [r for r in given if isinstance(r, Row)]
    return read if len(read) == len(given) else rows_from_records(given)


def validate_pairs(
    rows: Sequence[Row] | Sequence[Mapping[str, Any]],
    *,
    format: str | None = None,
    columns: ColumnMap | Mapping[str, str] | None = None,
    marker: str = HH_ASSISTANT_MARKER,
) -> tuple[str, list[PairRecord], list[BadRow]]:
    """Validate preference rows: returns (format, valid records, bad rows), in row order.

    `format` is detected when None (see `detect_format`); `marker` is the assistant marker
    used to cut implicit prompts.
    """
    rows, cols = as_rows(rows), ColumnMap.of(columns)
    fmt = format or detect_format(rows, cols)
    if fmt not in PAIR_FORMATS:
        raise ValueError(
            f"format {fmt!r} is not a preference-pair format {PAIR_FORMATS}"
            + ("; use tokenize_unpaired for unpaired data" if fmt == "unpaired" else "")
        )
    check_columns(rows, fmt, cols)
    records: list[PairRecord] = []
    bad: list[BadRow] = []
    for row in rows:
        try:
            records.append(_validate_pair(row, fmt, cols, marker))
        except BadField as err:
            bad.append(bad_row(row, err.field, err.reason, err.detail))
    return fmt, records, bad


def validate_unpaired(
    rows: Sequence[Row] | Sequence[Mapping[str, Any]], *, columns: ColumnMap | Mapping[str, str] | None = None
) -> tuple[list[UnpairedRecord], list[BadRow]]:
    """Validate unpaired rows (prompt, completion, label): returns (records, bad rows)."""
    rows, cols = as_rows(rows), ColumnMap.of(columns)
    check_columns(rows, "unpaired", cols)
    records: list[UnpairedRecord] = []
    bad: list[BadRow] = []
    for row in rows:
        try:
            data = _check_readable(row)
            records.append(
                UnpairedRecord(
                    prompt=text_field(data, cols.prompt),
                    completion=text_field(data, cols.completion),
                    label=label_field(data, cols.label),
                    extras=_extras(data, cols),
                    file=row.file,
                    row=row.index,
                    line=row.line,
                )
            )
        except BadField as err:
            bad.append(bad_row(row, err.field, err.reason, err.detail))
    return records, bad


def _check_readable(row: Row) -> Mapping[str, Any]:
    """The row's fields, or a BadField when the row could not be read."""
    if row.data is None:
        raise BadField(None, row.error_reason or R.NOT_AN_OBJECT, row.error or "unreadable row")
    return row.data


def _validate_pair(row: Row, fmt: str, cols: ColumnMap, marker: str) -> PairRecord:
    data = _check_readable(row)
    conversational = fmt == "conversational"
    chosen: Text
    rejected: Text
    prompt: Text
    if conversational:
        chosen, rejected = messages_field(data, cols.chosen), messages_field(data, cols.rejected)
    else:
        chosen, rejected = text_field(data, cols.chosen), text_field(data, cols.rejected)
    if chosen == rejected:
        raise BadField(cols.rejected, R.CHOSEN_EQUALS_REJECTED, "chosen and rejected are identical")
    has_prompt = fmt == "explicit" or (conversational and column_value(data, cols.prompt) is not None)
    if has_prompt:
        prompt = messages_field(data, cols.prompt) if conversational else text_field(data, cols.prompt)
    else:
        split = _split_implicit(chosen, rejected, marker)
        if split is None:
            raise BadField(
                cols.chosen,
                R.NO_SHARED_PROMPT,
                "chosen and rejected share no usable "
                "prompt prefix"
                + (
                    " (no common messages before an assistant turn)"
                    if conversational
                    else f" (none, or none ending with {marker!r})"
                ),
            )
        prompt, chosen, rejected = split
    for column, completion in ((cols.chosen, chosen), (cols.rejected, rejected)):
        if isinstance(completion, list) and not any(m["role"] == "assistant" for m in completion):
            roles = ", ".join(sorted({m["role"] for m in completion}))
            raise BadField(
                column,
                R.BAD_MESSAGE,
                f"the response has no 'assistant' message (roles: "
                f"{short(roles)}); a response is what the assistant says",
            )
        if not _content(completion).strip():
            raise BadField(
                column,
                R.EMPTY,
                "empty completion"
                + ("" if has_prompt else " after removing the shared prompt (the text is only the prompt)"),
            )
    return PairRecord(
        prompt,
        chosen,
        rejected,
        _extras(data, cols),
        row.file,
        row.index,
        row.line,
        conversational,
        implicit_prompt=not has_prompt,
    )


def _split_implicit(chosen: Text, rejected: Text, marker: str) -> tuple[Text, Text, Text] | None:
    """The shared prompt of two texts (`split_implicit_prompt`) or of two conversations
    (`split_implicit_conversation`); the field checks give both of one kind."""
    if isinstance(chosen, str) and isinstance(rejected, str):
        return split_implicit_prompt(chosen, rejected, marker)
    if isinstance(chosen, list) and isinstance(rejected, list):
        return split_implicit_conversation(chosen, rejected)
    return None


def _content(text: Text) -> str:
    return text if isinstance(text, str) else "".join(m["content"] for m in text)
