"""Bad rows, the error raised for them, and the report of what a data pipeline kept.

Every problem with a row becomes a :class:`BadRow` that names the file, the row (0-based row
index, plus the 1-based line number for JSONL files) and the field, with a reason code (for
counting) and a human-readable detail. Nothing is dropped silently: under ``on_bad_row="error"``
the bad rows raise :class:`DataError`; under ``"skip"`` they are counted in the
:class:`DataReport`, so that ``kept + skipped == rows_read`` always holds.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from .. import printable
from ..errors import BadInputError

# Reason codes of bad rows (the keys of ``DataReport.skipped``).
INVALID_UTF8 = "invalid_utf8"
INVALID_JSON = "invalid_json"
NOT_AN_OBJECT = "not_an_object"
MISSING_FIELD = "missing_field"
WRONG_TYPE = "wrong_type"
EMPTY = "empty"
INVALID_TEXT = "invalid_text"
NON_FINITE = "non_finite"
OUT_OF_RANGE = "out_of_range"
CHOSEN_EQUALS_REJECTED = "chosen_equals_rejected"
NO_SHARED_PROMPT = "no_shared_prompt"
BAD_MESSAGE = "bad_message"
BAD_LABEL = "bad_label"
PROMPT_FILLS_MAX_LENGTH = "prompt_fills_max_length"
CHAT_TEMPLATE_MISMATCH = "chat_template_mismatch"
CHAT_TEMPLATE_ERROR = "chat_template_error"

ON_BAD_ROW = ("error", "skip")
MAX_LISTED = 10


@dataclass(frozen=True)
class BadRow:
    """One rejected row: where it is, which field, and why.

    ``row`` is the 0-based row index in its file; ``line`` is the 1-based line number for JSONL
    files (None for other formats); ``field`` is the column name in the file (None when the
    whole row is unreadable).
    """

    file: str
    row: int
    line: int | None
    field: str | None
    reason: str
    detail: str

    def __str__(self) -> str:
        where = f"{self.file}: row {self.row}"
        if self.line is not None:
            where += f" (line {self.line})"
        what = f"field {self.field!r}" if self.field is not None else "whole row"
        return f"{where}, {what}: {self.detail}"


def check_policy(on_bad_row: str) -> None:
    """Raise ValueError unless `on_bad_row` is one of ``"error"`` or ``"skip"``."""
    if on_bad_row not in ON_BAD_ROW:
        raise ValueError(f"on_bad_row must be one of {ON_BAD_ROW}, got {on_bad_row!r}")


def _count_by_reason(bad_rows: list[BadRow]) -> dict[str, int]:
    return dict(sorted(Counter(b.reason for b in bad_rows).items()))


def _format_counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{reason}: {n}" for reason, n in counts.items())


class DataError(BadInputError):
    """Bad input data. ``bad_rows`` holds every bad row found (the message lists the first 10)."""

    def __init__(self, message: str, bad_rows: list[BadRow] | None = None):
        super().__init__(message)
        self.bad_rows = list(bad_rows or [])

    @classmethod
    def from_bad_rows(cls, bad_rows: list[BadRow], rows_read: int) -> DataError:
        """The error raised under ``on_bad_row="error"``: lists up to 10 rows and the total."""
        files = sorted({b.file for b in bad_rows})
        lines = [
            f"{len(bad_rows)} bad row(s) out of {rows_read} read from {', '.join(files)} "
            f"({_format_counts(_count_by_reason(bad_rows))}):"
        ]
        lines += [f"  {b}" for b in bad_rows[:MAX_LISTED]]
        if len(bad_rows) > MAX_LISTED:
            lines.append(f"  ... and {len(bad_rows) - MAX_LISTED} more")
        # Worded for the CLI, where most users meet it; in Python the option is on_bad_row.
        lines.append("Fix these rows, or rerun with --on-bad-row skip to drop them with a count.")
        return cls("\n".join(lines), bad_rows)


@dataclass
class DataReport:
    """What happened to the rows of one source: read, kept, skipped (by reason), truncated.

    ``truncated_prompt`` / ``truncated_completion`` count kept rows whose prompt / at least one
    completion lost tokens to ``max_prompt_length`` / ``max_length``.
    """

    source: str
    format: str
    rows_read: int
    kept: int
    bad_rows: list[BadRow] = field(default_factory=list)
    truncated_prompt: int = 0
    truncated_completion: int = 0
    settings: dict = field(default_factory=dict)

    @property
    def skipped(self) -> dict[str, int]:
        """Number of skipped rows per reason code."""
        return _count_by_reason(self.bad_rows)

    @property
    def n_skipped(self) -> int:
        return len(self.bad_rows)

    def counts(self) -> dict:
        """The report as numbers, for JSON output."""
        return {
            "source": self.source,
            "format": self.format,
            "rows_read": self.rows_read,
            "kept": self.kept,
            "skipped": self.n_skipped,
            "skipped_by_reason": dict(self.skipped),
            "truncated_prompt": self.truncated_prompt,
            "truncated_completion": self.truncated_completion,
        }

    def summary(self, max_listed: int = 3) -> str:
        """One paragraph: counts, truncation, settings and the first few skipped rows."""
        text = (
            f"Read {self.rows_read} rows from {self.source} (format {self.format}); "
            f"kept {self.kept}, skipped {self.n_skipped}"
        )
        if self.bad_rows:
            text += f" ({_format_counts(self.skipped)})"
        settings = dict(self.settings)
        cut_to = settings.get("max_prompt_length") or settings.get("max_length", 0) // 2
        side = settings.get("truncation_side", "left")
        text += (
            f". Truncated: {self.truncated_prompt} prompts cut to {cut_to} tokens (their "
            f"{'end' if side == 'left' else 'start'} kept with truncation_side={side}), "
            f"completions cut in {self.truncated_completion} rows"
        )
        if "max_prompt_length" in settings and settings["max_prompt_length"] is None:
            # the resolved limit, not None: unset, only a prompt that fills max_length is cut
            settings["max_prompt_length"] = (
                "none (long prompts refused)"
                if settings.get("long_prompts") == "strict"
                else f"{cut_to} (prompts of >= max_length tokens only)"
            )
        if settings:
            text += " (" + ", ".join(f"{k}={v}" for k, v in settings.items()) + ")"
        text += "."
        if self.bad_rows:
            shown = "; ".join(str(b) for b in self.bad_rows[:max_listed])
            more = f"; and {self.n_skipped - max_listed} more" if self.n_skipped > max_listed else ""
            text += f" Skipped: {shown}{more}."
        return printable.shown(text)  # file names and quoted values are data: printed inert
