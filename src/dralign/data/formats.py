"""Row formats, format detection and per-row validation.

Formats (auto-detected from the columns, or forced with ``format=``):

- ``explicit``: ``prompt``, ``chosen``, ``rejected`` strings.
- ``implicit``: only ``chosen`` and ``rejected`` strings, each the full text; the prompt is
  their shared prefix (Anthropic HH style), see `split_implicit_prompt`.
- ``conversational``: ``prompt``, ``chosen``, ``rejected`` lists of ``{role, content}``
  messages, or only ``chosen``/``rejected`` full conversations whose shared leading messages
  are the prompt. Rendered later with the tokenizer's chat template.
- ``unpaired``: ``prompt``, ``completion`` strings and a boolean-like ``label`` (AOT-unpaired).

Optional columns, any format: ``weight`` (finite, ≥ 0), ``group`` (string or integer),
``source`` (string), ``target_prob`` (in (0, 1]) or ``ratio`` (finite, ≥ 0), not both.
Numeric fields accept numbers or strings holding one (as CSV cells may be). A `ColumnMap` maps
other column names onto these names.

Validation turns each `Row` into a `PairRecord` / `UnpairedRecord`, or a `BadRow` naming the
file, row, field and reason; every row ends up in exactly one of the two lists.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, fields
from typing import Any, Mapping, Sequence, Union

from . import report as R
from .loading import Row, rows_from_records
from .report import BadRow, DataError

FORMATS = ("explicit", "implicit", "conversational", "unpaired")
PAIR_FORMATS = ("explicit", "implicit", "conversational")
HH_ASSISTANT_MARKER = "\n\nAssistant:"

Messages = list  # a list of {"role": str, "content": str} dicts
Text = Union[str, Messages]


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

    @classmethod
    def of(cls, columns: "ColumnMap | Mapping[str, str] | None") -> "ColumnMap":
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

def detect_format(rows: Sequence[Row], columns: ColumnMap | None = None) -> str:
    """The format of `rows`, from the union of their columns and the type of the texts.

    ``completion`` + ``label`` → unpaired; ``chosen`` + ``rejected`` (+ ``prompt`` or not) →
    conversational when the first non-null ``chosen`` is a list, else explicit/implicit.
    Raises DataError when no format fits.
    """
    cols = ColumnMap.of(columns)
    seen: set[str] = set()
    first_chosen = None
    for row in rows:
        if row.data is None:
            continue
        seen.update(row.data)
        if first_chosen is None and row.data.get(cols.chosen) is not None:
            first_chosen = row.data[cols.chosen]
    if {cols.completion, cols.label} <= seen:
        return "unpaired"
    if {cols.chosen, cols.rejected} <= seen:
        if isinstance(first_chosen, list):
            return "conversational"
        return "explicit" if cols.prompt in seen else "implicit"
    where = rows[0].file if rows else "<no rows>"
    raise DataError(
        f"{where}: cannot detect the data format from columns {sorted(seen)[:20]}; expected "
        f"'{cols.chosen}' and '{cols.rejected}' (with or without '{cols.prompt}') for pairs, "
        f"or '{cols.prompt}', '{cols.completion}', '{cols.label}' for unpaired data. Pass "
        f"format= and/or columns=ColumnMap(...) to say which columns hold what.")


# --------------------------------------------------------------------------- field checks

def _get(data: Mapping[str, Any], column: str) -> Any:
    value = data.get(column)
    if value is None:
        raise _Bad(column, R.MISSING_FIELD, "missing")
    return value


def _text(data: Mapping[str, Any], column: str) -> str:
    value = _get(data, column)
    if not isinstance(value, str):
        raise _Bad(column, R.WRONG_TYPE, f"expected a string, got {type(value).__name__} "
                                         f"{_short(value)}")
    if not value.strip():
        raise _Bad(column, R.EMPTY, "empty or whitespace-only string")
    return value


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
    return [{"role": m["role"], "content": m["content"]} for m in value]


def _number(data: Mapping[str, Any], column: str) -> float | None:
    value = data.get(column)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise _Bad(column, R.WRONG_TYPE, f"expected a number, got {type(value).__name__} "
                                         f"{_short(value)}")
    try:
        number = float(value)
    except ValueError:
        raise _Bad(column, R.WRONG_TYPE, f"expected a number, got {_short(value)}") from None
    if not math.isfinite(number):
        raise _Bad(column, R.NON_FINITE, f"non-finite value {number}")
    return number


def _name(data: Mapping[str, Any], column: str, allow_int: bool) -> str | None:
    value = data.get(column)
    if value is None:
        return None
    if isinstance(value, float) and allow_int and value.is_integer():
        value = int(value)
    if isinstance(value, str) and value.strip():
        return value
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


def _extras(data: Mapping[str, Any], cols: ColumnMap) -> Extras:
    weight = _number(data, cols.weight)
    if weight is not None and weight < 0:
        raise _Bad(cols.weight, R.OUT_OF_RANGE, f"weight {weight} is negative (must be ≥ 0)")
    target_prob = _number(data, cols.target_prob)
    if target_prob is not None and not 0 < target_prob <= 1:
        raise _Bad(cols.target_prob, R.OUT_OF_RANGE,
                   f"target_prob {target_prob} is outside (0, 1]")
    ratio = _number(data, cols.ratio)
    if ratio is not None and ratio < 0:
        raise _Bad(cols.ratio, R.OUT_OF_RANGE, f"ratio {ratio} is negative (must be ≥ 0)")
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
    has_prompt = fmt == "explicit" or (conversational and data.get(cols.prompt) is not None)
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
        if not _content(completion).strip():
            raise _Bad(column, R.EMPTY, "empty completion" + ("" if has_prompt else
                       " after removing the shared prompt (the text is only the prompt)"))
    return PairRecord(prompt, chosen, rejected, _extras(data, cols), row.file, row.index,
                      row.line, conversational)


def _content(text: Text) -> str:
    return text if isinstance(text, str) else "".join(m["content"] for m in text)
