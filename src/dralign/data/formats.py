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
file, row, field and reason; every row ends up in exactly one of the two lists.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

from . import report as R
from .loading import Row, rows_from_records
from .report import BadRow, DataError

FORMATS = ("explicit", "implicit", "conversational", "unpaired")
PAIR_FORMATS = ("explicit", "implicit", "conversational")
HH_ASSISTANT_MARKER = "\n\nAssistant:"

Messages = list  # a list of {"role": str, "content": str} dicts
Text = str | Messages

# Largest accepted weight or ratio. Larger values are almost surely corrupt (or a ratio whose
# classifier saw a near-zero prior) and overflow float32 sums of a batch's weights.
MAX_WEIGHT = 1e6
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


class _Bad(Exception):
    """Raised inside per-row validation; becomes a BadRow for that row."""

    def __init__(self, field: str | None, reason: str, detail: str):
        super().__init__(detail)
        self.field, self.reason, self.detail = field, reason, detail


def bad_row(row: Row | PairRecord | UnpairedRecord, field: str | None, reason: str,
            detail: str) -> BadRow:
    """A BadRow located at `row` (a raw Row or a validated record)."""
    index = row.index if isinstance(row, Row) else row.row
    return BadRow(row.file, index, row.line, field, reason, detail)


# --------------------------------------------------------------------------- detection

def column_value(data: Mapping[str, Any], column: str, default: Any = None) -> Any:
    """``data[column]``; for a dotted name that is not itself a key, the value at that path
    (``"meta.group"`` → ``data["meta"]["group"]``); `default` when absent."""
    if column in data:
        return data[column]
    if "." not in column:
        return default
    value: Any = data
    for key in column.split("."):
        if not isinstance(value, Mapping) or key not in value:
            return default
        value = value[key]
    return value


def _present(rows: Sequence[Row], column: str) -> bool:
    """Whether any readable row has `column` (even holding null)."""
    return any(row.data is not None and column_value(row.data, column, _MISSING) is not _MISSING
               for row in rows)


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
        first_chosen = next((v for v in (column_value(r.data, cols.chosen) for r in rows
                                         if r.data is not None) if v is not None), None)
        if isinstance(first_chosen, list):
            return "conversational"
        return "explicit" if _present(rows, cols.prompt) else "implicit"
    where = rows[0].file if rows else "<no rows>"
    raise DataError(
        f"{where}: cannot detect the data format from columns {_columns_seen(rows)[:20]}; "
        f"expected '{cols.chosen}' and '{cols.rejected}' (with or without '{cols.prompt}') for "
        f"pairs, or '{cols.prompt}', '{cols.completion}', '{cols.label}' for unpaired data. Name "
        f"the columns with --prompt-column, --chosen-column, --rejected-column (unpaired: "
        f"--completion-column, --label-column), or set --format.")


_REQUIRED = {"explicit": ("prompt", "chosen", "rejected"), "implicit": ("chosen", "rejected"),
             "conversational": ("chosen", "rejected"),
             "unpaired": ("prompt", "completion", "label")}
_OPTIONAL = ("weight", "group", "source", "target_prob", "ratio")


def check_columns(rows: Sequence[Row], fmt: str, columns: ColumnMap | None = None) -> None:
    """DataError unless every column `fmt` needs, and every column given a non-default name
    that `fmt` reads, is present in at least one readable row (no check without one)."""
    cols, defaults = ColumnMap.of(columns), ColumnMap()
    readable = [r for r in rows if r.data is not None]
    if not readable:
        return
    used = (("prompt", "completion", "label") if fmt == "unpaired"
            else ("prompt", "chosen", "rejected")) + _OPTIONAL
    for field_name in used:
        column = getattr(cols, field_name)
        named = column != getattr(defaults, field_name)
        if (named or field_name in _REQUIRED[fmt]) and not _present(readable, column):
            raise DataError(
                f"{readable[0].file}: no row has the column {column!r} ({fmt} format's "
                f"{field_name}, named with {ColumnMap.flag(field_name)}); the rows have columns "
                f"{_columns_seen(readable)[:20]}")


# --------------------------------------------------------------------------- field checks

def _get(data: Mapping[str, Any], column: str) -> Any:
    value = column_value(data, column)
    if value is None:
        raise _Bad(column, R.MISSING_FIELD, "missing")
    return value


def _unicode(column: str, text: str, what: str = "") -> str:
    """`text` unless it holds a lone surrogate (JSON allows ``"\\ud800"``; no encoder does)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as err:
        raise _Bad(column, R.INVALID_TEXT, f"{what}not valid Unicode: lone surrogate "
                   f"{text[err.start]!r} at character {err.start}") from None
    return text


def _text(data: Mapping[str, Any], column: str) -> str:
    value = _get(data, column)
    if not isinstance(value, str):
        raise _Bad(column, R.WRONG_TYPE, f"expected a string, got {type(value).__name__} "
                                         f"{_short(value)}")
    if not value.strip():
        raise _Bad(column, R.EMPTY, "empty or whitespace-only string")
    return _unicode(column, value)


def _messages(data: Mapping[str, Any], column: str) -> Messages:
    value = _get(data, column)
    if not isinstance(value, list):
        raise _Bad(column, R.WRONG_TYPE, f"expected a list of {{role, content}} messages, got "
                                         f"{type(value).__name__} {_short(value)}")
    if not value:
        raise _Bad(column, R.EMPTY, "empty list of messages")
    for i, message in enumerate(value):
        if not isinstance(message, Mapping):
            raise _Bad(column, R.BAD_MESSAGE, f"message {i} is not an object "
                                              f"(got {type(message).__name__})")
        for key in ("role", "content"):
            if not isinstance(message.get(key), str):
                problem = "has no" if message.get(key) is None else "has a non-string"
                raise _Bad(column, R.BAD_MESSAGE, f"message {i} {problem} {key!r}")
            _unicode(column, message[key], f"message {i} {key!r} is ")
    return [{"role": m["role"], "content": m["content"]} for m in value]


def _number(data: Mapping[str, Any], column: str) -> float | None:
    value = column_value(data, column)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise _Bad(column, R.WRONG_TYPE, f"expected a number, got {type(value).__name__} "
                                         f"{_short(value)}")
    try:
        number = float(value)
    except OverflowError:  # an integer beyond float range
        raise _Bad(column, R.NON_FINITE, f"number too large: {_short(value)}") from None
    except ValueError:
        raise _Bad(column, R.WRONG_TYPE, f"expected a number, got {_short(value)}") from None
    if not math.isfinite(number):
        raise _Bad(column, R.NON_FINITE, f"non-finite value {number}")
    return number


def _name(data: Mapping[str, Any], column: str, allow_int: bool) -> str | None:
    value = column_value(data, column)
    if value is None:
        return None
    if isinstance(value, float) and allow_int and value.is_integer():
        value = int(value)
    if isinstance(value, str) and value.strip():
        return _unicode(column, value)
    if isinstance(value, int) and not isinstance(value, bool) and allow_int:
        return str(value)
    if isinstance(value, str):
        raise _Bad(column, R.EMPTY, "empty or whitespace-only string")
    kind = "a string or an integer" if allow_int else "a string"
    raise _Bad(column, R.WRONG_TYPE, f"expected {kind}, got {type(value).__name__} "
                                     f"{_short(value)}")


def _label(data: Mapping[str, Any], column: str) -> bool:
    value = _get(data, column)
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0"):
        return value.strip().lower() in ("true", "1")
    raise _Bad(column, R.BAD_LABEL, f"label must be boolean-like (true/false or 0/1), "
                                    f"got {type(value).__name__} {_short(value)}")


def _bounded(data: Mapping[str, Any], column: str, name: str) -> float | None:
    """A weight or ratio: a finite number in [0, MAX_WEIGHT], or None when absent."""
    value = _number(data, column)
    if value is not None and value < 0:
        raise _Bad(column, R.OUT_OF_RANGE, f"{name} {value} is negative (must be ≥ 0)")
    if value is not None and value > MAX_WEIGHT:
        raise _Bad(column, R.OUT_OF_RANGE, f"{name} {value:g} is above the maximum "
                                           f"{MAX_WEIGHT:g}")
    return value


def _extras(data: Mapping[str, Any], cols: ColumnMap) -> Extras:
    weight = _bounded(data, cols.weight, "weight")
    target_prob = _number(data, cols.target_prob)
    if target_prob is not None and not 0 <= target_prob <= 1:
        raise _Bad(cols.target_prob, R.OUT_OF_RANGE,
                   f"target_prob {target_prob} is outside [0, 1]")
    ratio = _bounded(data, cols.ratio, "ratio")
    # Both may be given (`dralign ratio fit` writes both): the ratio is used, target_prob is
    # kept for reference.
    return Extras(weight=1.0 if weight is None else weight,
                  group=_name(data, cols.group, allow_int=True),
                  source=_name(data, cols.source, allow_int=False),
                  target_prob=target_prob, ratio=ratio)


def _short(value: Any, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


# --------------------------------------------------------------------------- implicit prompts

def split_implicit_prompt(chosen: str, rejected: str,
                          marker: str = HH_ASSISTANT_MARKER) -> tuple[str, str, str] | None:
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


def split_implicit_conversation(chosen: Messages, rejected: Messages
                                ) -> tuple[Messages, Messages, Messages] | None:
    """Split two conversations into (shared prompt messages, chosen tail, rejected tail).

    The prompt is the longest run of identical leading messages, cut back so that both tails
    start with an ``assistant`` message. None when that leaves no shared message.
    """
    k = 0
    while k < min(len(chosen), len(rejected)) and chosen[k] == rejected[k]:
        k += 1
    while k > 0 and not (k < len(chosen) and k < len(rejected)
                         and chosen[k]["role"] == rejected[k]["role"] == "assistant"):
        k -= 1
    if k == 0:
        return None
    return chosen[:k], chosen[k:], rejected[k:]


# --------------------------------------------------------------------------- validation

def as_rows(rows: Sequence[Row] | Sequence[Mapping[str, Any]]) -> list[Row]:
    """Accept rows from `load_rows` or plain dicts (wrapped as rows of ``<memory>``)."""
    rows = list(rows)
    if all(isinstance(r, Row) for r in rows):
        return rows
    return rows_from_records(rows)


def validate_pairs(rows: Sequence[Row] | Sequence[Mapping[str, Any]], *,
                   format: str | None = None, columns: ColumnMap | Mapping[str, str] | None = None,
                   marker: str = HH_ASSISTANT_MARKER
                   ) -> tuple[str, list[PairRecord], list[BadRow]]:
    """Validate preference rows: returns (format, valid records, bad rows), in row order.

    `format` is detected when None (see `detect_format`); `marker` is the assistant marker
    used to cut implicit prompts.
    """
    rows, cols = as_rows(rows), ColumnMap.of(columns)
    fmt = format or detect_format(rows, cols)
    if fmt not in PAIR_FORMATS:
        raise ValueError(f"format {fmt!r} is not a preference-pair format {PAIR_FORMATS}"
                         + ("; use tokenize_unpaired for unpaired data" if fmt == "unpaired"
                            else ""))
    check_columns(rows, fmt, cols)
    records: list[PairRecord] = []
    bad: list[BadRow] = []
    for row in rows:
        try:
            records.append(_validate_pair(row, fmt, cols, marker))
        except _Bad as err:
            bad.append(bad_row(row, err.field, err.reason, err.detail))
    return fmt, records, bad


def validate_unpaired(rows: Sequence[Row] | Sequence[Mapping[str, Any]], *,
                      columns: ColumnMap | Mapping[str, str] | None = None
                      ) -> tuple[list[UnpairedRecord], list[BadRow]]:
    """Validate unpaired rows (prompt, completion, label): returns (records, bad rows)."""
    rows, cols = as_rows(rows), ColumnMap.of(columns)
    check_columns(rows, "unpaired", cols)
    records: list[UnpairedRecord] = []
    bad: list[BadRow] = []
    for row in rows:
        try:
            _check_readable(row)
            data = row.data
            records.append(UnpairedRecord(
                prompt=_text(data, cols.prompt), completion=_text(data, cols.completion),
                label=_label(data, cols.label), extras=_extras(data, cols),
                file=row.file, row=row.index, line=row.line))
        except _Bad as err:
            bad.append(bad_row(row, err.field, err.reason, err.detail))
    return records, bad


def _check_readable(row: Row) -> None:
    if row.data is None:
        raise _Bad(None, row.error_reason or R.NOT_AN_OBJECT, row.error or "unreadable row")


def _validate_pair(row: Row, fmt: str, cols: ColumnMap, marker: str) -> PairRecord:
    _check_readable(row)
    data = row.data
    conversational = fmt == "conversational"
    if conversational:
        chosen, rejected = _messages(data, cols.chosen), _messages(data, cols.rejected)
    else:
        chosen, rejected = _text(data, cols.chosen), _text(data, cols.rejected)
    if chosen == rejected:
        raise _Bad(cols.rejected, R.CHOSEN_EQUALS_REJECTED, "chosen and rejected are identical")
    has_prompt = fmt == "explicit" or (conversational
                                       and column_value(data, cols.prompt) is not None)
    if has_prompt:
        prompt = _messages(data, cols.prompt) if conversational else _text(data, cols.prompt)
    else:
        split = (split_implicit_conversation(chosen, rejected) if conversational
                 else split_implicit_prompt(chosen, rejected, marker))
        if split is None:
            raise _Bad(cols.chosen, R.NO_SHARED_PROMPT, "chosen and rejected share no usable "
                       "prompt prefix" + (" (no common messages before an assistant turn)"
                                          if conversational else
                                          f" (none, or none ending with {marker!r})"))
        prompt, chosen, rejected = split
    for column, completion in ((cols.chosen, chosen), (cols.rejected, rejected)):
        if conversational and not any(m["role"] == "assistant" for m in completion):
            roles = ", ".join(sorted({m["role"] for m in completion}))
            raise _Bad(column, R.BAD_MESSAGE, f"the response has no 'assistant' message (roles: "
                       f"{_short(roles)}); a response is what the assistant says")
        if not _content(completion).strip():
            raise _Bad(column, R.EMPTY, "empty completion" + ("" if has_prompt else
                       " after removing the shared prompt (the text is only the prompt)"))
    return PairRecord(prompt, chosen, rejected, _extras(data, cols), row.file, row.index,
                      row.line, conversational, implicit_prompt=not has_prompt)


def _content(text: Text) -> str:
    return text if isinstance(text, str) else "".join(m["content"] for m in text)
