"""Rendering a `Diagnosis`: a rich report readable at 80 columns, the JSON, the PNG beside it."""

from __future__ import annotations

import json
from pathlib import Path

from ..config import atomic_write_text
from ..stats import MeanCI


def _ci(x: MeanCI | None, digits: int = 3) -> str:
    return "n/a" if x is None else f"{x.mean:.{digits}f} [{x.low:.{digits}f}, {x.high:.{digits}f}]"


def _table(title: str, columns: tuple[str, ...]):
    from rich.table import Table

    table = Table(title=title, title_justify="left", expand=False)
    for i, col in enumerate(columns):
        table.add_column(col, justify="left" if i == 0 else "right", overflow="fold")
    return table


def _rows_and_integrity(d, console) -> None:
    r, dup = d.rows, d.duplicates
    console.print(f"data: {r['source']} (format {r['format']})", markup=False)
    table = _table("rows and integrity", ("", "count"))
    for key in ("rows_read", "kept", "skipped"):
        table.add_row(key.replace("_", " "), str(r[key]))
    for reason, n in r["skipped_by_reason"].items():
        table.add_row(f"  skipped: {reason}", str(n))
    table.add_row("exact duplicates (extra copies)", str(dup["exact"]["extra_copies"]))
    con = dup["contradictory"]
    table.add_row("contradictory pairs (rows)", f"{con['pairs']} ({con['rows']})")
    table.add_row("flipped labels, lower bound", f"{100 * con['flip_rate_lower_bound']:.2f}%")
    if d.leakage is not None:
        leak = d.leakage
        table.add_row(
            "held-out rows sharing a prompt", f"{leak['eval_rows_with_shared_prompt']} of {leak['eval_rows']}"
        )
        table.add_row("held-out pairs also in --data", str(leak["shared_pairs"]))
    console.print(table)


def _lengths(d, console) -> None:
    L = d.lengths
    table = _table(f"lengths ({L['unit']}, as train holds them)", ("", "value"))
    if L["chosen_longer_fraction"] is not None:
        table.add_row("chosen longer", f"{100 * L['chosen_longer_fraction']:.1f}%")
        table.add_row("pick-the-longer accuracy", _ci(L["longer_baseline_accuracy"]))
    for part in ("prompt", "chosen", "rejected"):
        q = L[part]
        if q:
            table.add_row(f"{part}: median / p90 / max", f"{q['median']:.0f} / {q['p90']:.0f} / {q['max']}")
    if L["prompts_cut"] is None:
        table.add_row("cut by --max-length", "needs --model or --tokenizer")
    else:
        table.add_row(f"prompts cut (max_length {L['max_length']})", str(L["prompts_cut"]))
        table.add_row("completions cut", str(L["completions_cut"]))
    console.print(table)


def _named(title: str, section: dict, console, signal: dict | None) -> None:
    columns = ("name", "pairs", "chosen longer", "longer acc.") + (
        ("model prefers chosen (per token)",) if signal else ()
    )
    table = _table(title, columns)
    for name, b in section.items():
        row = [
            name,
            str(b["n"]),
            f"{100 * b['chosen_longer_fraction']:.0f}%",
            f"{b['longer_baseline_accuracy'].mean:.2f}",
        ]
        if signal:
            s = signal.get(name)
            row.append(_ci(s["prefers_chosen_per_token"], 2) if s else "")
        table.add_row(*row)
    console.print(table)


def _groups_sources(d, console) -> None:
    signal = d.label_signal or {}
    if d.groups:
        g = d.groups
        _named(f"groups: {g['count']}, imbalance {g['imbalance']:.1f}x", g["by"], console, signal.get("by_group"))
    s = d.sources
    if s:
        counts = ", ".join(f"{k} {v}" for k, v in s["counts"].items())
        console.print(f"sources: {counts}", markup=False)
        if "auc" in s:
            console.print(
                f"density-ratio fit (target {', '.join(s['target'])}, {s['rows_fitted']} rows, "
                f"{s['folds']}-fold): AUC {s['auc']:.3f}, ECE {s['ece']:.3f}, Brier {s['brier']:.3f}, "
                f"prior {s['prior']:.3f}, ESS {100 * s['ess']:.1f}%, weights "
                f"{s['weight_min']:.2f}-{s['weight_max']:.2f}",
                markup=False,
            )
        elif s.get("note"):
            console.print(f"density-ratio fit: {s['note']}", markup=False)


def _signal(d, console) -> None:
    s = d.label_signal
    if not s:
        return
    console.print(
        f"label signal of {s['model']} on {s['pairs_scored']} of {s['pairs']} pairs: prefers "
        f"chosen {_ci(s['prefers_chosen'])} (summed log-probs), "
        f"{_ci(s['prefers_chosen_per_token'])} (per token)",
        markup=False,
    )
    if s.get("by_source"):
        for name, v in s["by_source"].items():
            console.print(f"  source {name}: {_ci(v['prefers_chosen_per_token'])} per token", markup=False)


def _advice(d, console) -> None:
    from rich.markup import escape

    from .advice import describe

    if not d.advice:
        console.print("advice: nothing fired (thresholds in dralign/diagnosis/advice.py)")
        return
    console.print("[bold]advice[/bold]")
    for k, a in enumerate(d.advice, 1):
        ev = a.evidence if isinstance(a.evidence, str) else "; ".join(map(describe, a.evidence))
        console.print(
            f"{k}. {escape(a.finding)}\n   -> {escape(a.recommendation)}\n   evidence: {escape(ev)}\n"
            f"   threshold: {escape(a.threshold)}"
        )
    console.print(f"evidence read from {d.evidence_source}", markup=False)


def print_diagnosis(d, console) -> None:
    """The whole report on `console`."""
    _rows_and_integrity(d, console)
    _lengths(d, console)
    _groups_sources(d, console)
    _signal(d, console)
    _advice(d, console)


def write_outputs(d, path: str, console) -> None:
    """`path` (the JSON) and beside it the PNG, or one line saying why there is no PNG."""
    atomic_write_text(path, json.dumps(d.to_json(), indent=2, ensure_ascii=False) + "\n")
    console.print(f"wrote {path}", markup=False)
    png = Path(path).with_suffix(".png")
    try:
        from .plots import write_plot
    except ImportError:
        console.print(
            f"no plot: matplotlib is not installed (pip install 'dralign[bench]' to get {png})",
            markup=False,
            soft_wrap=True,
        )  # one line, whatever the console's width
        return
    write_plot(d, png)
    console.print(f"wrote {png}", markup=False)
