"""Text from data, made safe to print: the one helper every printed piece of data goes through.

A group name, a source, a column value quoted in an error message comes from a user's file; a
terminal would act on its control characters (``\\x1b[2J`` clears the screen, ``\\r`` overwrites
the line, U+202E reverses what follows). `shown` writes each such character as a visible escape
(``\\x1b``, ``\\r``, ``\\u202e``) and leaves every printable character, any script, as it is.
`shown_markup` also escapes rich's ``[markup]`` for text printed through a rich console.
"""

from __future__ import annotations

import re
from typing import Any

_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029]")
"""C0 and C1 controls, DEL, and the bidirectional and line-separator marks a terminal acts on."""


def _escape(match: re.Match) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def shown(value: Any) -> str:
    """str(value) with every control character written as a visible escape (one line, inert)."""
    return _CONTROL.sub(_escape, str(value))


def shown_lines(value: Any) -> str:
    """`shown` for each line of str(value), the line breaks kept (a message that is a list, such
    as the bad rows of a file, stays a list)."""
    return "\n".join(shown(line) for line in str(value).split("\n"))


def shown_markup(value: Any) -> str:
    """`shown(value)` with rich markup escaped too (``[red]`` printed as it is, not as colour)."""
    from rich.markup import escape

    return escape(shown(value))
