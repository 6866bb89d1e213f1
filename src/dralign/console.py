"""The console of tables and progress.

Tables: on a terminal they wrap for its width; piped (to a file, a log, grep) they print full
width, never cut at rich's default 80 columns (:func:`table_console`).

Progress of a long phase (reading, tokenising, the reference pass, training, evaluation): on a
terminal a rich bar; when stdout is not a terminal (``nohup``, a log file, a pipe) plain lines,
at most one every :data:`LOG_EVERY` seconds and one at the end, e.g.

    reference log-probs 12/32 batches · 14.1 s/batch · ETA 4m40s

(:class:`LogLines`, :func:`phase_progress`, :func:`track`). A bar would print nothing until the
end, or leave one garbled, width-cut line.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sized

__all__ = [
    "LOG_EVERY",
    "LogLines",
    "duration",
    "is_terminal",
    "phase_progress",
    "set_log_every",
    "table_console",
    "track",
]

LOG_EVERY = 30.0  # seconds between two progress lines in a log (`--progress-every`)


def set_log_every(seconds: float) -> None:
    """Set :data:`LOG_EVERY` for the phases that follow (the trainer sets it from its options)."""
    global LOG_EVERY
    LOG_EVERY = float(seconds)


def table_console(width: int | None = None):
    """A rich console `width` wide; otherwise on a terminal its width, and piped wide enough
    never to wrap (rich would otherwise cut every row at 80 columns)."""
    from rich.console import Console

    if width:
        return Console(width=width)
    console = Console()
    return console if console.is_terminal else Console(width=100_000, soft_wrap=True)


def is_terminal() -> bool:
    """Whether stdout is a terminal (a live bar can be redrawn there; not in a log)."""
    return bool(getattr(sys.stdout, "isatty", lambda: False)())


def duration(seconds: float) -> str:
    """A short duration: 42s, 4m40s, 2h05m."""
    s = max(0, int(round(seconds)))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


class LogLines:
    """Progress of one phase as plain lines: ``DESCRIPTION done/total · x s/UNIT · ETA t``
    (and `stats`; UNIT defaults to the description: ``step 12/32 · 14.1 s/step``), written at most once every `every` seconds of `clock`, and at :meth:`close`
    when anything was done since the last line. `write` receives each line (default: print,
    flushed, so that a log shows it at once)."""

    def __init__(
        self,
        description: str,
        total: int | None,
        *,
        unit: str = "",
        every: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        write: Callable[[str], None] | None = None,
        done: int = 0,
    ):
        self.description, self.total, self.unit = description, total, unit
        self.every = LOG_EVERY if every is None else every
        self.clock, self.write = clock, write or (lambda line: print(line, flush=True))
        self.start_done = self.done = done
        self.start = self.last = clock()
        self.shown = done

    def line(self, stats: str = "") -> str:
        """The progress line now (rate and ETA from the mean time per unit since the start)."""
        parts = [f"{self.description} {self.done}/{self.total if self.total is not None else '?'}"]
        finished = self.done - self.start_done
        if finished > 0:
            per, name = (self.clock() - self.start) / finished, self.unit or self.description
            # slow phases read as seconds per unit, fast ones as units per second
            parts.append(f"{per:.1f} s/{name}" if per >= 1 or per <= 0 else f"{1 / per:.1f} {name}/s")
            if self.total is not None:
                parts.append(f"ETA {duration(per * max(self.total - self.done, 0))}")
        if stats:
            parts.append(stats)
        return " · ".join(p for p in parts if p)

    def advance(self, n: int = 1, stats: str = "") -> None:
        """`n` more units done; a line when `every` seconds passed since the last one."""
        self.done += n
        now = self.clock()
        if now - self.last >= self.every:
            self.write(self.line(stats))
            self.last, self.shown = now, self.done

    def close(self, stats: str = "") -> None:
        """The last line, unless nothing was done since the previous one."""
        if self.done != self.shown:
            self.write(self.line(stats))
            self.shown = self.done


@contextlib.contextmanager
def phase_progress(
    description: str, total: int | None, enabled: bool = True, bytes: bool = False, unit: str = ""
) -> Iterator[Callable[[int], None]]:
    """Progress of a long phase; yields advance(n). On a terminal a transient rich bar (the log
    keeps only the summaries); otherwise :class:`LogLines`; nothing when not `enabled` (the
    caller decides: --no-progress, the main process, a phase long enough to be worth it)."""
    if not enabled:

        def skip(n: int = 1) -> None:
            """Nothing to show."""

        yield skip
        return
    if not is_terminal():
        scale = 1 << 20 if bytes else 1  # bytes are counted in MB in a log
        lines = LogLines(
            f"{description} (MB)" if bytes else description,
            None if total is None else -(-total // scale),
            unit="MB" if bytes else unit,
        )
        carry = [0]

        def advance(n: int = 1) -> None:
            carry[0] += n
            whole, carry[0] = divmod(carry[0], scale)
            if whole:
                lines.advance(whole)

        yield advance
        lines.close()
        return
    from rich.progress import BarColumn, DownloadColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    count = DownloadColumn() if bytes else MofNCompleteColumn()
    with Progress(TextColumn(f"[bold]{description}"), BarColumn(), count, TimeRemainingColumn(), transient=True) as bar:
        task = bar.add_task(description, total=total)

        def step(n: int = 1) -> None:
            bar.advance(task, n)

        yield step


def track(
    items: Iterable, description: str, total: int | None = None, enabled: bool = True, unit: str = ""
) -> Iterator:
    """Iterate `items` with :func:`phase_progress` (total: ``len(items)`` when not given)."""
    if total is None and isinstance(items, Sized):  # Sized: a class with __len__
        total = len(items)
    with phase_progress(description, total, enabled=enabled, unit=unit) as advance:
        for item in items:
            yield item
            advance(1)
