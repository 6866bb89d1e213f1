"""Training progress: running averages over a window, not the last step's values (a single
step's accuracy looks like learning when held-out accuracy is at chance). On a terminal a rich
bar; in a log (stdout not a terminal) a plain line every `--progress-every` seconds,
``step 12/32 · 14.1 s/step · ETA 4m40s · loss 0.63 · margin 0.1 · acc 0.55``
(:class:`dralign.console.LogLines`). Either way :meth:`Progress.timing` gives every step's
``step_seconds`` and ``eta_seconds`` for metrics.jsonl."""

from __future__ import annotations

from collections import deque

from ..console import LogLines, is_terminal

WINDOW = 20


class Progress:
    """Windowed loss, margin, accuracy and pairs/s, as a bar (`terminal`) or log lines;
    nothing shown when not `enabled`. `terminal` None: whether stdout is one."""

    def __init__(
        self,
        total: int,
        completed: int,
        enabled: bool,
        window: int = WINDOW,
        terminal: bool | None = None,
        lines: LogLines | None = None,
    ):
        self.enabled, self.total, self.done = enabled, total, completed
        self.recent: deque[dict] = deque(maxlen=window)
        self.seconds: deque[float] = deque(maxlen=window)
        self.terminal = is_terminal() if terminal is None else terminal
        self.bar = self.lines = None
        if enabled and self.terminal:
            from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn
            from rich.progress import Progress as Bar

            self.bar = Bar(
                TextColumn("[bold]train"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeRemainingColumn(),
                TextColumn("{task.fields[stats]}"),
            )
            self.task = self.bar.add_task("train", total=total, completed=completed, stats="")
        elif enabled:
            self.lines = lines or LogLines("step", total, done=completed)

    def __enter__(self):
        if self.bar is not None:
            self.bar.__enter__()
        return self

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.__exit__(*exc)
        elif self.lines is not None:
            self.lines.close(self._stats())

    def averages(self) -> dict[str, float]:
        """Means over the window of the finite values of each shown metric."""
        out = {}
        for key in ("loss", "rewards/margins", "rewards/accuracies", "pairs_per_s"):
            values = [r[key] for r in self.recent if key in r and r[key] == r[key]]
            out[key] = sum(values) / len(values) if values else float("nan")
        return out

    def timing(self, step_seconds: float) -> dict[str, float]:
        """``step_seconds`` of the step just done and ``eta_seconds`` of the rest of the run
        (the window's mean step time × the steps left); call once per step, before update."""
        self.seconds.append(step_seconds)
        left = max(self.total - self.done - 1, 0)
        return {"step_seconds": step_seconds, "eta_seconds": left * sum(self.seconds) / len(self.seconds)}

    def _stats(self) -> str:
        a = self.averages()
        return (
            f"loss {a['loss']:.4f} · margin {a['rewards/margins']:.3f} · "
            f"acc {a['rewards/accuracies']:.2f} · {a['pairs_per_s']:.1f} pairs/s"
        )

    def update(self, record: dict) -> None:
        self.recent.append(record)
        self.done += 1
        if self.bar is not None:
            stats = self._stats().replace(" · ", "  ") + f" (mean of last {len(self.recent)})"
            self.bar.update(self.task, advance=1, stats=stats)
        elif self.lines is not None:
            self.lines.advance(1, self._stats())
