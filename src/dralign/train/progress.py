"""The training progress bar: running averages over a window, not the last step's values
(a single step's accuracy looks like learning when held-out accuracy is at chance)."""

from __future__ import annotations

from collections import deque

WINDOW = 20


class Progress:
    """A rich progress bar with windowed loss, margin, accuracy and pairs/s."""

    def __init__(self, total: int, completed: int, enabled: bool, window: int = WINDOW):
        self.enabled = enabled
        self.recent: deque[dict] = deque(maxlen=window)
        if enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress as Bar, TextColumn, TimeRemainingColumn
            self.bar = Bar(TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(),
                           TimeRemainingColumn(), TextColumn("{task.fields[stats]}"))
            self.task = self.bar.add_task("train", total=total, completed=completed, stats="")

    def __enter__(self):
        if self.enabled:
            self.bar.__enter__()
        return self

    def __exit__(self, *exc):
        if self.enabled:
            self.bar.__exit__(*exc)

    def averages(self) -> dict[str, float]:
        """Means over the window of the finite values of each shown metric."""
        out = {}
        for key in ("loss", "rewards/margins", "rewards/accuracies", "pairs_per_s"):
            values = [r[key] for r in self.recent if key in r and r[key] == r[key]]
            out[key] = sum(values) / len(values) if values else float("nan")
        return out

    def update(self, record: dict) -> None:
        self.recent.append(record)
        if self.enabled:
            a = self.averages()
            stats = (f"loss {a['loss']:.4f}  margin {a['rewards/margins']:.3f}  "
                     f"acc {a['rewards/accuracies']:.2f}  {a['pairs_per_s']:.1f} pairs/s "
                     f"(mean of last {len(self.recent)})")
            self.bar.update(self.task, advance=1, stats=stats)
