"""One field of a raw row: a column's value (a dotted name is a path into nested objects) and
the checks that turn it into a typed value or a `BadField` (the column, the reason of
`dralign.data.report` and a detail), which validation (`dralign.data.formats`) turns into a
`BadRow` for the row."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from . import report as R

Messages = list  # a list of {"role": str, "content": str} dicts
Text = str | Messages

# Largest accepted weight or ratio. Larger values are almost surely corrupt (or a ratio whose
# classifier saw a near-zero prior) and overflow float32 sums of a batch's weights.
MAX_WEIGHT = 1e6


class BadField(Exception):
    """Raised inside per-row validation; becomes a BadRow for that row."""

    def __init__(self, field: str | None, reason: str, detail: str):
        super().__init__(detail)
        self.field, self.reason, self.detail = field, reason, detail


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


def required(data: Mapping[str, Any], column: str) -> Any:
    value = column_value(data, column)
    if value is None:
        raise BadField(column, R.MISSING_FIELD, "missing")
    return value


def unicode_text(column: str, text: str, what: str = "") -> str:
    """`text` unless it holds a lone surrogate (JSON allows ``"\\ud800"``; no encoder does)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as err:
        raise BadField(
            column,
            R.INVALID_TEXT,
            f"{what}not valid Unicode: lone surrogate {text[err.start]!r} at character {err.start}",
        ) from None
    return text


def text_field(data: Mapping[str, Any], column: str) -> str:
    value = required(data, column)
    if not isinstance(value, str):
        raise BadField(column, R.WRONG_TYPE, f"expected a string, got {type(value).__name__} {short(value)}")
    if not value.strip():
        raise BadField(column, R.EMPTY, "empty or whitespace-only string")
    return unicode_text(column, value)


def messages_field(data: Mapping[str, Any], column: str) -> Messages:
    value = required(data, column)
    if not isinstance(value, list):
        raise BadField(
            column,
            R.WRONG_TYPE,
            f"expected a list of {{role, content}} messages, got {type(value).__name__} {short(value)}",
        )
    if not value:
        raise BadField(column, R.EMPTY, "empty list of messages")
    for i, message in enumerate(value):
        if not isinstance(message, Mapping):
            raise BadField(column, R.BAD_MESSAGE, f"message {i} is not an object (got {type(message).__name__})")
        for key in ("role", "content"):
            if not isinstance(message.get(key), str):
                problem = "has no" if message.get(key) is None else "has a non-string"
                raise BadField(column, R.BAD_MESSAGE, f"message {i} {problem} {key!r}")
            unicode_text(column, message[key], f"message {i} {key!r} is ")
    return [{"role": m["role"], "content": m["content"]} for m in value]


def number_field(data: Mapping[str, Any], column: str) -> float | None:
    value = column_value(data, column)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise BadField(column, R.WRONG_TYPE, f"expected a number, got {type(value).__name__} {short(value)}")
    try:
        number = float(value)
    except OverflowError:  # an integer beyond float range
        raise BadField(column, R.NON_FINITE, f"number too large: {short(value)}") from None
    except ValueError:
        raise BadField(column, R.WRONG_TYPE, f"expected a number, got {short(value)}") from None
    if not math.isfinite(number):
        raise BadField(column, R.NON_FINITE, f"non-finite value {number}")
    return number


def name_field(data: Mapping[str, Any], column: str, allow_int: bool) -> str | None:
    value = column_value(data, column)
    if value is None:
        return None
    if isinstance(value, float) and allow_int and value.is_integer():
        value = int(value)
    if isinstance(value, str) and value.strip():
        return unicode_text(column, value)
    if isinstance(value, int) and not isinstance(value, bool) and allow_int:
        return str(value)
    if isinstance(value, str):
        raise BadField(column, R.EMPTY, "empty or whitespace-only string")
    kind = "a string or an integer" if allow_int else "a string"
    raise BadField(column, R.WRONG_TYPE, f"expected {kind}, got {type(value).__name__} {short(value)}")


def label_field(data: Mapping[str, Any], column: str) -> bool:
    value = required(data, column)
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0"):
        return value.strip().lower() in ("true", "1")
    raise BadField(
        column,
        R.BAD_LABEL,
        f"label must be boolean-like (true/false or 0/1), got {type(value).__name__} {short(value)}",
    )


def bounded_field(data: Mapping[str, Any], column: str, name: str) -> float | None:
    """A weight or ratio: a finite number in [0, MAX_WEIGHT], or None when absent."""
    value = number_field(data, column)
    if value is not None and value < 0:
        raise BadField(column, R.OUT_OF_RANGE, f"{name} {value} is negative (must be ≥ 0)")
    if value is not None and value > MAX_WEIGHT:
        raise BadField(column, R.OUT_OF_RANGE, f"{name} {value:g} is above the maximum {MAX_WEIGHT:g}")
    return value


def short(value: Any, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
