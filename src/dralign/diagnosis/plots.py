"""The picture beside `dralign diagnose --json x.json`: ``x.png`` with the length distributions,
the group sizes with each group's longer-response baseline, and the label signal per group.

matplotlib is the ``bench`` extra: importing this module raises ImportError without it, and the
caller then skips the picture with one line."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def _lengths(ax, lengths: dict) -> None:
    h = lengths["histograms"]
    edges = h["edges"]
    centers = [(a + b) / 2 for a, b in zip(edges[:-1], edges[1:])]
    for part in ("prompt", "chosen", "rejected"):
        ax.step(centers, h[part], where="mid", label=part)
    if lengths.get("max_length"):
        ax.axvline(lengths["max_length"], color="grey", linestyle="--", linewidth=1, label="--max-length")
    ax.set_xlabel(f"length ({lengths['unit']}; last bin: p99 and above)")
    ax.set_ylabel("pairs")
    ax.set_title("lengths")
    ax.legend(fontsize=8)


def _groups(ax, groups: dict) -> None:
    names = list(groups["by"])
    sizes = [groups["by"][n]["n"] for n in names]
    ax.bar(range(len(names)), sizes, color="tab:blue")
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("pairs")
    twin = ax.twinx()
    twin.plot(
        range(len(names)), [groups["by"][n]["longer_baseline_accuracy"].mean for n in names], "o", color="tab:orange"
    )
    twin.axhline(0.5, color="grey", linestyle=":", linewidth=1)
    twin.set_ylim(0, 1)
    twin.set_ylabel("pick-the-longer accuracy (dots)")
    ax.set_title(f"groups (imbalance {groups['imbalance']:.1f}x)")


def _signal(ax, by: dict) -> None:
    names = list(by)
    ci = [by[n]["prefers_chosen_per_token"] for n in names]
    ax.bar(
        range(len(names)),
        [c.mean for c in ci],
        yerr=[[c.mean - c.low for c in ci], [c.high - c.mean for c in ci]],
        capsize=3,
        color="tab:green",
    )
    ax.axhline(0.5, color="grey", linestyle="--", linewidth=1)
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names, rotation=30, ha="right", fontsize=8)
    ax.set_ylim(0, 1)
    ax.set_title("model prefers chosen (per token, 95% CI)")


def write_plot(d, path: str | Path) -> None:
    """Write the panels the diagnosis has data for into `path`."""
    signal_by = (d.label_signal or {}).get("by_group") or (d.label_signal or {}).get("by_source")
    panels = (
        [("lengths", d.lengths)]
        + ([("groups", d.groups)] if d.groups else [])
        + ([("signal", signal_by)] if signal_by else [])
    )
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4), squeeze=False)
    draw = {"lengths": _lengths, "groups": _groups, "signal": _signal}
    for ax, (name, section) in zip(axes[0], panels):
        draw[name](ax, section)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
