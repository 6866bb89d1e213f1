"""Presenting shift-world results: rich tables, PNG plots and the Markdown report.

Everything here reads the results document of :func:`dralign_bench.shift.run_shift` (the same
dict that is written to ``results.json``), so a report can be re-made from a saved file.
"""

from __future__ import annotations

from pathlib import Path

from ..plotting import pyplot

__all__ = ["plot_shift", "plot_tradeoff", "print_tables", "write_report", "table_rows"]

_COLUMNS = ("run", "r(α₀)", "worst r over α (α*)", "win vs start at α₀", "KL to start",
            "token entropy", "distinct-2", "held-out acc", "ECE")


def _fmt(ci: dict, digits: int = 3) -> str:
    if ci["high"] == ci["low"]:
        return f"{ci['mean']:.{digits}f}"
    return f"{ci['mean']:.{digits}f} [{ci['low']:.{digits}f}, {ci['high']:.{digits}f}]"


def table_rows(results: dict, run_ids) -> list[list[str]]:
    """One formatted row per run: the columns of :data:`_COLUMNS`."""
    rows = []
    for run_id in run_ids:
        r = results["runs"].get(run_id)
        if r is None:
            continue
        rows.append([run_id, _fmt(r["reward_at_alpha0"]),
                     f"{_fmt(r['worst']['reward'])} ({r['worst']['alpha']:g})",
                     _fmt(r["win_rate_at_alpha0"], 2), _fmt(r["kl"], 2), _fmt(r["token_entropy"], 2),
                     _fmt(r["distinct_2"], 3), _fmt(r["accuracy"], 2), _fmt(r["ece"], 3)])
    return rows


def _groups(results: dict) -> list[tuple[str, list[str]]]:
    """(title, run ids) per scenario, or one group of everything for a custom method list."""
    start = [k for k in results["runs"] if k.startswith("start/")]
    if results["scenarios"]:
        return [(f"{name}: {s['question']}", start[:1] + s["runs"]) for name, s in results["scenarios"].items()]
    return [("runs", start + [k for k in results["runs"] if not k.startswith("start/")])]


def print_tables(results: dict, console) -> None:
    """A rich table per scenario, then the claims with their verdicts."""
    from rich.table import Table

    opts = results["options"]
    for title, run_ids in _groups(results):
        table = Table(title=title, title_justify="left")
        for col in _COLUMNS:
            table.add_column(col, justify="left" if col == "run" else "right", overflow="fold")
        for row in table_rows(results, run_ids):
            table.add_row(*row)
        console.print(table)
    if results.get("claims"):
        table = Table(title="claims of the seed papers", title_justify="left", show_lines=True)
        for col in ("paper", "claim", "verdict", "differences (a − b, 95% CI)"):
            table.add_column(col, overflow="fold")
        for c in results["claims"]:
            table.add_row(c["paper"], c["claim"], c["verdict"], "\n".join(_comparison(d) for d in c["comparisons"]))
        console.print(table)
    console.print(f"α₀ = {opts['alpha0']}, r(α) = α·{opts['reward_a']} + (1−α)·{opts['reward_b']}; "
                  f"{opts['seeds']} seed(s); intervals: 95% hierarchical bootstrap (seeds, then completions)")


def _comparison(d: dict) -> str:
    metric = "−ECE" if d["metric"] == "ece" else d["metric"]
    return f"{d['a']} − {d['b']} ({metric}): {d['mean']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}] {d['verdict']}"


def _datasets(results: dict) -> list[str]:
    seen = []
    for r in results["runs"].values():
        if r["dataset"] != "start" and r["dataset"] not in seen:
            seen.append(r["dataset"])
    return seen


def plot_shift(results: dict, path: Path) -> str:
    """Gold reward r(α) against α, one panel per dataset, a line and 95% band per method;
    the start model dashed, the training α₀ dotted."""
    plt = pyplot()

    opts = results["options"]
    datasets = _datasets(results)
    cols = min(3, len(datasets))
    rows = (len(datasets) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 3.6 * rows), squeeze=False)
    alphas = [float(a) for a in opts["alphas"]]
    for ax, ds in zip(axes.flat, datasets):
        runs = {k: r for k, r in results["runs"].items() if r["dataset"] == ds}
        mixture = next(iter(runs.values()))["mixture"]
        start = results["runs"].get(f"start/{mixture}")
        if start:
            ax.plot(alphas, [start["reward"][str(a)]["mean"] for a in opts["alphas"]], "k--", lw=1, label="start")
        for run_id, r in runs.items():
            mean = [r["reward"][str(a)]["mean"] for a in opts["alphas"]]
            lo = [r["reward"][str(a)]["low"] for a in opts["alphas"]]
            hi = [r["reward"][str(a)]["high"] for a in opts["alphas"]]
            line, = ax.plot(alphas, mean, lw=1.6, label=r["method"])
            ax.fill_between(alphas, lo, hi, color=line.get_color(), alpha=0.15)
        ax.axvline(opts["alpha0"], color="grey", ls=":", lw=1)
        ax.set_title(f"{ds} ({mixture} mixture)", fontsize=10)
        ax.set_xlabel(f"α  (r = α·{opts['reward_a']} ⊕ (1−α)·{opts['reward_b']})", fontsize=8)
        ax.set_ylabel("gold reward of samples", fontsize=8)
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(datasets):]:
        ax.axis("off")
    fig.suptitle(f"shift world: gold reward vs α ({opts['seeds']} seed(s), 95% bands)", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return str(path)


def plot_tradeoff(results: dict, path: Path) -> str:
    """Reward at α₀ against token entropy (diversity), and against ECE (calibration), one point
    with 95% error bars per run on the paired mixture data (the f-DPO trade-off)."""
    plt = pyplot()

    runs = {k: r for k, r in results["runs"].items() if r["dataset"] in ("mix-linear", "sources", "start")}
    if not any(r["dataset"] == "mix-linear" for r in runs.values()):
        runs = {k: r for k, r in results["runs"].items()}
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key, label in ((axes[0], "token_entropy", "token entropy of samples (nats)"),
                           (axes[1], "ece", "ECE of σ(β·margin) on held-out pairs")):
        for run_id, r in runs.items():
            if run_id.startswith("start/") and key == "ece":
                continue
            x, y = r[key], r["reward_at_alpha0"]
            ax.errorbar(x["mean"], y["mean"], xerr=[[x["mean"] - x["low"]], [x["high"] - x["mean"]]],
                        yerr=[[y["mean"] - y["low"]], [y["high"] - y["mean"]]], fmt="o", capsize=3,
                        label=run_id)
        ax.set_xlabel(label, fontsize=9)
        ax.set_ylabel("gold reward r(α₀)", fontsize=9)
    axes[0].legend(fontsize=7)
    fig.suptitle("reward vs diversity vs calibration", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return str(path)


def write_report(results: dict, path: Path, command: str | None = None) -> str:
    """The Markdown report: set-up, per-scenario tables, the claims with verdicts and numbers."""
    opts = results["options"]
    lm = results["world_lm"]
    lines = [
        "# Shift-world report",
        "",
        f"Command: `{command or results.get('command', 'dralign bench shift')}`  ",
        f"Wall time: {results['seconds'] / 60:.1f} min on this machine.",
        "",
        "## Set-up",
        "",
        f"- Base model: the world LM, a Llama of {lm['parameters']:,} parameters pretrained on the world's "
        f"corpus (final loss {lm['final_loss']:.3f} nats/token); every method starts from it.",
        f"- Gold objectives r_a = `{opts['reward_a']}`, r_b = `{opts['reward_b']}` (each in [0, 1]); "
        f"mixtures r(α) = α r_a + (1−α) r_b (linear) and r_a^α r_b^(1−α) (geometric).",
        f"- Training data per seed: {opts['train_pairs']} pairs, Bradley–Terry labels at temperature "
        f"{opts['label_temperature']} on r(α₀), α₀ = {opts['alpha0']}. Sources scenario: "
        f"{opts['synthetic_fraction']:.0%} of prompts answered by the synthetic generator and labelled by a judge at "
        f"α = {opts['alpha_judge']}; the target is the human labeller at α₀.",
        f"- Every method: {opts['steps']} AdamW steps of {opts['batch_size']} pairs, lr {opts['lr']}, β = {opts['beta']}, "
        "default method parameters (`dralign methods`).",
        f"- Evaluation: {opts['eval_prompts']} held-out prompts × {opts['samples_per_prompt']} samples "
        f"(temperature 1, ≤ {opts['max_new_tokens']} tokens); gold reward at α ∈ {{{', '.join(f'{a:g}' for a in opts['alphas'])}}}; "
        f"{opts['eval_pairs']} held-out pairs (clean labels) for accuracy and ECE.",
        f"- Seeds: {opts['seeds']}. Intervals: 95% hierarchical bootstrap (seeds, then completions within a seed); "
        "seed-level metrics (entropy, distinct-n, accuracy, ECE) bootstrap over seeds.",
        "",
        "![gold reward vs alpha](shift.png)",
        "",
        "![reward vs diversity and calibration](tradeoff.png)",
        "",
    ]
    for title, run_ids in _groups(results):
        lines += [f"## {title}", "", "| " + " | ".join(_COLUMNS) + " |", "|" + "---|" * len(_COLUMNS)]
        lines += ["| " + " | ".join(row) + " |" for row in table_rows(results, run_ids)]
        lines.append("")
    if results.get("claims"):
        lines += ["## Claims of the seed papers", "",
                  "A claim is *reproduced* when every comparison it implies is significantly in the claimed "
                  "direction (95% interval of the paired difference above 0), *contradicted* when every one is "
                  "significantly against, *partly reproduced* when some are reproduced, and *not significant* "
                  "otherwise. Nothing was tuned after seeing these numbers.", ""]
        for c in results["claims"]:
            lines += [f"### {c['paper']}: {c['verdict']}", "", f"> {c['claim']}", ""]
            lines += [f"- {_comparison(d)}" for d in c["comparisons"]]
            lines.append("")
    Path(path).write_text("\n".join(lines))
    return str(path)
