"""SIGINT (Ctrl-C) and SIGTERM over a whole run, from the first line of set-up to the final save.

Where stopping at once loses nothing (set-up, the final evaluation) a signal raises `Stopped`
there and then; where it would tear something (a training step, a checkpoint, the final save)
it is only recorded, and the recipe stops at the next safe point (after the step, with a
checkpoint). Outside a run the previous handlers are back.
"""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Stopped(KeyboardInterrupt):
    """A run stopped by SIGINT or SIGTERM. A KeyboardInterrupt (not a DralignError), so that no
    `except Exception` on the way up mistakes it for a damaged file; the command line prints it
    as one line."""

    def __init__(self, signum: int, phase: str):
        self.signum, self.phase = signum, phase
        super().__init__(f"stopped by {signal.Signals(signum).name} during {phase}")


class StopSignals:
    """The run's handler of SIGINT and SIGTERM; `received` is the last signal (None: none)."""

    def __init__(self) -> None:
        self.received: int | None = None
        self.phase: str | None = "set-up"  # None: record only; else raise Stopped naming it
        self._previous: dict = {}

    @contextmanager
    def installed(self, phase: str | None):
        """Handle the signals inside the block (only in the main thread: Python delivers
        signals there alone); `phase` as in `during`."""
        owner = not self._previous and threading.current_thread() is threading.main_thread()
        if owner:
            self._previous = {s: signal.signal(s, self._handle) for s in SIGNALS}
        try:
            with self.during(phase):
                yield self
        finally:
            if owner:
                for s, handler in self._previous.items():
                    signal.signal(s, handler)
                self._previous = {}

    @contextmanager
    def during(self, phase: str | None):
        """Inside the block a signal raises Stopped naming `phase`, or (phase None) is recorded."""
        before, self.phase = self.phase, phase
        try:
            yield
        finally:
            self.phase = before

    def _handle(self, signum, frame):
        self.received = signum
        if self.phase is not None:
            raise Stopped(signum, self.phase)

    @property
    def name(self) -> str:
        return signal.Signals(self.received).name if self.received else ""
