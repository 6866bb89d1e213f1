"""The one console of tables: on a terminal, tables wrap for its width; piped (to a file, a log,
grep), they print full width, never cut at rich's default 80 columns."""

from __future__ import annotations

__all__ = ["table_console"]


def table_console(width: int | None = None):
    """A rich console `width` wide; otherwise on a terminal its width, and piped wide enough
    never to wrap (rich would otherwise cut every row at 80 columns)."""
    from rich.console import Console

    if width:
        return Console(width=width)
    console = Console()
    return console if console.is_terminal else Console(width=100_000, soft_wrap=True)
