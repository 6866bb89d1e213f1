"""The picture beside `dralign eval --output x.json`: ``x.png`` with the held-out accuracy per
group (and per source) with its 95 % interval, and the reliability diagram.

matplotlib belongs to the ``bench`` extra, not to dralign's core: it is imported here, only when
a plot is written, and its absence skips the picture with one line instead of failing.
"""

from __future__ import annotations

from pathlib import Path

from ..printable import shown  # group names are data: drawn inert

__all__ = ["INSTALL_HINT", "plot_path", "write_plot"]

INSTALL_HINT = "pip install 'dralign[bench]'"


def plot_path(output: str | Path) -> Path:
    """``x.json`` → ``x.png`` (any other name gets ``.png`` appended to its stem)."""
    return Path(output).with_suffix(".png")


def _bars(ax, by: dict, worst: str | None, title: str) -> None:
    names = list(by)
    means = [by[n]["accuracy"].mean for n in names]
    lows = [m - by[n]["accuracy"].low for m, n in zip(means, names)]
    highs = [by[n]["accuracy"].high - m for m, n in zip(means, names)]
    colors = ["tab:red" if n == worst else "tab:blue" for n in names]
    ax.bar(range(len(names)), means, yerr=[lows, highs], capsize=3, color=colors)
    ax.axhline(0.5, color="grey", linestyle="--", linewidth=1)  # chance
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels([f"{shown(n)}\n(n={by[n]['n']})" for n in names], rotation=30, ha="right", fontsize=8)
    ax.set_ylim(0, 1)
    ax.set_ylabel("preference accuracy")
    ax.set_title(title + (f" (worst: {shown(worst)})" if worst else ""))


def _reliability(ax, bins: list[dict]) -> None:
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1)  # perfect calibration
    if bins:
        ax.plot([b["confidence"] for b in bins], [b["accuracy"] for b in bins], marker="o")
        for b in bins:
            ax.annotate(
                str(b["n"]), (b["confidence"], b["accuracy"]), fontsize=7, textcoords="offset points", xytext=(3, 3)
            )
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("predicted P(chosen preferred) = sigmoid(margin)")
    ax.set_ylabel("observed frequency")
    ax.set_title("reliability (each pair in both orders)")


def write_plot(results: dict, path: str | Path) -> bool:
    """Write the PNG of `results` (:func:`dralign.eval.cli.run_eval`'s, with a ``preference``
    section) to `path`; False, writing nothing, when matplotlib is not installed."""
    try:
        from matplotlib.figure import Figure  # no pyplot: no global backend or figure state
    except ImportError:
        return False
    panels = [
        (results[key], results.get(f"worst_{key[:-1]}"), f"accuracy by {key[:-1]}")
        for key in ("groups", "sources")
        if results.get(key)
    ]
    fig = Figure(figsize=(5.5 * (len(panels) + 1), 4.5))
    axes = fig.subplots(1, len(panels) + 1, squeeze=False)
    for ax, (by, worst, title) in zip(axes[0], panels):
        _bars(ax, by, worst, title)
    _reliability(axes[0][-1], results["preference"]["reliability"])
    fig.suptitle(f"dralign eval: {results.get('model')}", fontsize=10)
    fig.tight_layout()
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    fig.savefig(tmp, format="png", dpi=100)  # written whole, then renamed into place
    tmp.replace(path)
    return True
