"""Tables, plots and report.md of `dralign bench real` (from the results dictionary only, so a
committed results.json can be re-plotted)."""

from __future__ import annotations

from pathlib import Path

from ..plotting import pyplot

__all__ = ["above_chance", "plot_accuracy", "plot_groups", "print_tables", "write_report"]


def _fmt(ci: dict | None) -> str:
    return "—" if not ci else f"{ci['mean']:.3f} [{ci['low']:.2f}, {ci['high']:.2f}]"


def _rows(results: dict):
    """(task, method, set, block) for every accuracy the benchmark measured."""
    for task, t in results["tasks"].items():
        for method, m in t["methods"].items():
            for name, block in m["sets"].items():
                yield task, method, name, block


MIN_MATCHED = 20  # fewer length-matched pairs than this: a bootstrap interval says nothing


def above_chance(block: dict) -> bool:
    """Whether the length-matched accuracy's 95 % interval lies above 0.5, on at least
    :data:`MIN_MATCHED` length-matched pairs."""
    ci = block["length_matched"]["accuracy"]
    return bool(ci and block["length_matched"]["n"] >= MIN_MATCHED and ci["low"] > 0.5)


def _shows(results: dict) -> list[str]:
    """The plain statement of what the run shows about length-controlled accuracy."""
    blocks = list(_rows(results))
    above = [f"{task}/{method} on {name}" for task, method, name, b in blocks if above_chance(b)]
    small = sorted({name for _, _, name, b in blocks if b["length_matched"]["n"] < MIN_MATCHED})
    out = [
        (
            "Length-matched held-out accuracy is above chance (95 % interval above 0.5, "
            f"n ≥ {MIN_MATCHED}) for: " + ", ".join(above) + "."
        )
        if above
        else "**No method's length-matched held-out accuracy is shown above chance** (no 95 % interval "
        f"above 0.5 on at least {MIN_MATCHED} length-matched pairs). Differences between methods "
        "here are within the intervals and must not be read as rankings."
    ]
    if small:
        ns = {n: results["heldout"][n]["length_matched_n"] for n in small}
        out.append(
            "Too few length-matched held-out pairs to say anything from length-matched accuracy on: "
            + ", ".join(f"{n} (n={k})" for n, k in ns.items())
            + "; intervals on so few pairs (and on groups of a few pairs) are not meaningful."
        )
    return out


def _table(results: dict) -> list[list[str]]:
    return [
        [
            task,
            method,
            f"{name} ({b['domain']})",
            str(b["n"]),
            _fmt(b["accuracy"]),
            f"{min(b['seed_accuracy']):.2f}–{max(b['seed_accuracy']):.2f}",
            _fmt(b["longer_baseline"]),
            f"{_fmt(b['length_matched']['accuracy'])} (n={b['length_matched']['n']})",
            f"{b['agrees_with_longer']:.2f}",
        ]
        for task, method, name, b in _rows(results)
    ]


HEADER = [
    "task",
    "method",
    "held-out set",
    "n",
    "accuracy [95% CI]",
    "seed range",
    "longer baseline",
    "length-matched accuracy",
    "agrees w/ longer",
]
GROUP_HEADER = ["task", "method", "group", "n", "accuracy [95% CI]", "longer baseline", "length-matched accuracy"]


def _group_table(results: dict) -> list[list[str]]:
    rows = []
    for task, t in results["tasks"].items():
        for method, m in t["methods"].items():
            for g, b in m["groups"].items():
                rows.append(
                    [
                        task,
                        method,
                        g + (" (worst)" if g == m["worst_group"] else ""),
                        str(b["n"]),
                        _fmt(b["accuracy"]),
                        _fmt(b["longer_baseline"]),
                        f"{_fmt(b['length_matched']['accuracy'])} (n={b['length_matched']['n']})",
                    ]
                )
    return rows


def print_tables(results: dict, console) -> None:
    from rich.table import Table

    for title, header, rows in (
        ("held-out preference accuracy", HEADER, _table(results)),
        ("per group", GROUP_HEADER, _group_table(results)),
    ):
        table = Table(title=title)
        for h in header:
            table.add_column(h)
        for r in rows:
            table.add_row(*r)
        console.print(table)


def plot_accuracy(results: dict, path: Path) -> str:
    """One panel per task: accuracy per method and held-out set with its interval, the
    length-matched accuracy (hollow) and the longer-response baseline (dashed), chance at 0.5."""
    plt = pyplot()
    tasks = list(results["tasks"])
    fig, axes = plt.subplots(1, len(tasks), figsize=(5 * len(tasks), 4), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        t = results["tasks"][task]
        sets = [*t["in_domain"], *t["out_of_domain"]]
        methods = list(t["methods"])
        width = 0.8 / max(len(methods), 1)
        for j, method in enumerate(methods):
            for i, name in enumerate(sets):
                b = t["methods"][method]["sets"][name]
                x = i + (j - (len(methods) - 1) / 2) * width
                a = b["accuracy"]
                ax.errorbar(
                    x,
                    a["mean"],
                    yerr=[[a["mean"] - a["low"]], [a["high"] - a["mean"]]],
                    fmt="o",
                    color=f"C{j}",
                    label=method if i == 0 else None,
                )
                lm = b["length_matched"]["accuracy"]
                if lm:
                    ax.plot(x, lm["mean"], "o", mfc="none", color=f"C{j}")
        for i, name in enumerate(sets):
            lb = results["heldout"][name]["longer_baseline"]["mean"]
            ax.hlines(lb, i - 0.45, i + 0.45, linestyles="dashed", colors="gray")
        ax.axhline(0.5, color="black", lw=0.5)
        ax.set_xticks(range(len(sets)))
        ax.set_xticklabels([f"{n}\n({'in' if n in t['in_domain'] else 'out'})" for n in sets])
        ax.set_ylim(0, 1)
        ax.set_title(task)
        ax.set_ylabel("held-out accuracy (filled) / length-matched (hollow)")
        ax.legend(fontsize=7)
    fig.suptitle("dashed: pick-the-longer-response baseline; bars: 95% CI over pairs")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path.name


def plot_groups(results: dict, path: Path) -> str:
    """Per-group accuracy bars of every method, the worst group outlined, per task."""
    plt = pyplot()
    tasks = [t for t in results["tasks"] if results["tasks"][t]["methods"]]
    fig, axes = plt.subplots(1, len(tasks), figsize=(5 * len(tasks), 4), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        t = results["tasks"][task]
        methods = list(t["methods"])
        groups = list(next(iter(t["methods"].values()))["groups"])
        width = 0.8 / max(len(methods), 1)
        for j, method in enumerate(methods):
            m = t["methods"][method]
            for i, g in enumerate(groups):
                a = m["groups"][g]["accuracy"]
                x = i + (j - (len(methods) - 1) / 2) * width
                ax.bar(
                    x,
                    a["mean"],
                    width,
                    color=f"C{j}",
                    label=method if i == 0 else None,
                    edgecolor="red" if g == m["worst_group"] else None,
                    yerr=[[a["mean"] - a["low"]], [a["high"] - a["mean"]]],
                    capsize=2,
                )
        ax.axhline(0.5, color="black", lw=0.5)
        ax.set_xticks(range(len(groups)))
        ax.set_xticklabels(groups, rotation=30, ha="right", fontsize=7)
        ax.set_ylim(0, 1)
        ax.set_title(f"{task}: accuracy per group (red edge: worst)")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path.name


def _md(header, rows) -> str:
    return "\n".join(
        ["| " + " | ".join(header) + " |", "|" + "---|" * len(header), *("| " + " | ".join(r) + " |" for r in rows)]
    )


def write_report(results: dict, path: Path) -> str:
    """report.md: what was run, the tables, and what the numbers do and do not show."""
    o, env, tm = results["options"], results["environment"], results["timing"]
    held = [
        [
            n,
            str(h["pairs"]),
            str(h["prompts_cut"]),
            str(h["completions_cut"]),
            str(h["skipped"]),
            f"{h['mean_tokens_chosen']:.0f} / {h['mean_tokens_rejected']:.0f}",
            _fmt(h["longer_baseline"]),
            str(h["length_matched_n"]),
            _fmt(h["base_logprob"]),
        ]
        for n, h in results["heldout"].items()
    ]
    rf = results.get("ratio_fit")
    lines = [
        f"# dralign bench real — {Path(results['model']).stem} with LoRA on real preference data",
        "",
        f"Command: `{results['command']}`",
        "",
        f"Model: `{Path(results['model']).name}`; profile **{o['profile']}**: {o['seeds']} seeds × "
        f"{o['steps']} steps × batch {o['batch_size']} (LoRA r={o['lora_r']}, lr {o['lr']}, β {o['beta']}), "
        f"max length {o['max_length']}, prompts cut from the left to {o['max_prompt_length']} tokens, "
        f"{o['train_pairs'] or 'all'} training pairs per data set (DoRA's ratios fitted on "
        f"{o['ratio_pairs'] or 'all'}), {o['eval_pairs'] or 'all'} held-out pairs per set. The held-out "
        "sets are the same for every method and seed.",
        "",
        f"Wall time {tm['total'] / 60:.1f} min on {env['device']} ({env['cpu_count']} cores, "
        f"OMP_NUM_THREADS={env['omp_num_threads']}; load average at start "
        f"{env['load_average_start'][0]:.1f}, at end {env['load_average_end'][0]:.1f} — the CPU was shared).",
        "",
        "## What this shows",
        "",
        *(x for line in _shows(results) for x in (line, "")),
        "## Definitions",
        "",
        *(f"- **{k}**: {v}" for k, v in results["definitions"].items()),
        "",
        "## Held-out sets",
        "",
        _md(
            [
                "set",
                "pairs",
                "prompts cut",
                "completions cut",
                "skipped",
                "mean tokens chosen / rejected",
                "longer baseline",
                "length-matched n",
                "start model log-prob prefers chosen",
            ],
            held,
        ),
        "",
    ]
    if rf:
        lines += [
            "## DoRA density ratios (summarize-from-feedback batch 18)",
            "",
            f"Fitted by `dralign.ratio.fit.fit_density_ratios` on the {rf['n_rows']} training pairs, "
            f"response level (target: human-written `ref` summaries), {rf['folds']}-fold cross-fitted: "
            f"held-out AUC **{rf['auc']:.3f}**, ECE {rf['ece']:.3f}, Brier {rf['brier']:.3f}, "
            f"target prior {rf['prior']:.3f}, weights in [{rf['weight_min']:.2f}, {rf['weight_max']:.2f}]. "
            f"Features: {rf['features']}.",
            "",
        ]
    lines += [
        "## Held-out preference accuracy",
        "",
        _md(HEADER, _table(results)),
        "",
        "![accuracy](accuracy.png)",
        "",
        "## Per group and the worst group",
        "",
        _md(GROUP_HEADER, _group_table(results)),
        "",
        "![groups](groups.png)",
        "",
    ]
    runs = tm.get("runs", {})
    if runs:
        lines += [
            "## Time",
            "",
            f"Held-out scoring by the start model {tm['heldout']:.0f} s; "
            f"{len(runs)} training runs, {sum(r['train'] for r in runs.values()) / 60:.1f} min training "
            f"and {sum(r['total'] - r['train'] for r in runs.values()) / 60:.1f} min scoring; "
            f"{tm['total'] / 60:.1f} min in all.",
            "",
        ]
    path.write_text("\n".join(lines))
    return path.name
