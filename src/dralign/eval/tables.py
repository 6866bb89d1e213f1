"""The tables `dralign eval` prints: every metric with its 95 % interval, the per-group and
per-source breakdowns (the worst one marked) and the length controls."""

from __future__ import annotations

from typing import Any

from ..printable import shown_markup  # group names, sources, values: data, printed inert

__all__ = ["print_breakdown", "print_results"]


def _rows(results: dict) -> list[tuple[str, str, Any]]:
    """(section, metric, value) rows of the results table; value a MeanCI, number or note."""
    rows: list[tuple[str, str, Any]] = []
    data = results.get("data")
    if data:
        for key in ("rows_read", "kept", "skipped", "truncated_prompt", "truncated_completion"):
            rows.append(("data", key, data[key]))
        for reason, n in data["skipped_by_reason"].items():
            rows.append(("data", f"skipped: {reason}", n))
    pref = results.get("preference")
    if pref:
        for key in ("accuracy", "margin", "reward_chosen", "reward_rejected", "ece", "brier"):
            rows.append(("preference", key, pref[key]))
        if pref.get("length"):
            rows += _length_rows(pref["length"])
    gen = results.get("generation")
    if gen:
        for name, r in gen["rewards"].items():
            rows.append(("generation", f"{name}: policy", r["policy"]))
            rows.append(("generation", f"{name}: start", r["start"] or "needs --reference"))
            rows.append(("generation", f"{name}: win rate vs start", r["win_rate"] or "needs --reference"))
        rows.append(("generation", "KL(policy || start)", gen["kl"] or "needs --reference"))
        for key in ("length", "token_entropy", "distinct_1", "distinct_2", "eos_rate"):
            rows.append(("generation", key, gen[key]))
            if gen["start"] is not None:
                rows.append(("generation", f"{key}: start", gen["start"][key]))
    sweep = results.get("shift_sweep")
    if sweep:
        for a in sweep["alphas"]:
            rows.append(("shift sweep", f"r(alpha={a:g})", sweep["reward"][a]))
            if "win_rate" in sweep:
                rows.append(("shift sweep", f"win rate (alpha={a:g})", sweep["win_rate"][a]))
        rows.append(("shift sweep", "average over alphas", sweep["average"]))
        rows.append(("shift sweep", f"worst: r(alpha={sweep['worst']['alpha']:g})", sweep["worst"]["reward"]))
        if "worst_win_rate" in sweep:
            w = sweep["worst_win_rate"]
            rows.append(("shift sweep", f"worst win rate (alpha={w['alpha']:g})", w["win_rate"]))
    return rows


def _length_rows(length: dict) -> list[tuple[str, str, Any]]:
    """The length controls (:func:`dralign.lengths.length_report`) as table rows."""
    t = length["tolerance"]
    rows = [("length", "pick-the-longer baseline", length["longer_baseline"])]
    for key, label in (
        ("length_matched", f"accuracy, length-matched (|dL| <= {t:g} x longer)"),
        ("chosen_longer", "accuracy, chosen longer"),
        ("chosen_shorter", "accuracy, chosen shorter"),
    ):
        rows.append(("length", label, length[key]["accuracy"] or "no such pairs"))
    return rows


def print_results(results: dict, console) -> None:
    """A rich table of every metric with its 95 % interval."""
    from rich.table import Table

    from ..stats import MeanCI

    table = Table(title=f"dralign eval: {shown_markup(results.get('model'))}")
    for col in ("section", "metric", "value", "95% interval", "n"):
        table.add_column(col, justify="left" if col in ("section", "metric") else "right", overflow="fold")
    for section, metric, value in _rows(results):
        if isinstance(value, MeanCI):
            table.add_row(
                shown_markup(section),
                shown_markup(metric),
                f"{value.mean:.4g}",
                f"[{value.low:.4g}, {value.high:.4g}]",
                str(value.n),
            )
        elif isinstance(value, float):
            table.add_row(shown_markup(section), shown_markup(metric), f"{value:.4g}", "", "")
        else:
            table.add_row(shown_markup(section), shown_markup(metric), shown_markup(value), "", "")
    console.print(table)
    for column in ("group", "source"):
        if results.get(f"{column}s"):
            print_breakdown(results, column, console)
    if results.get("shift_sweep"):
        s = results["shift_sweep"]
        console.print(
            shown_markup(
                f"shift sweep: r(alpha) = {s['mixture']} mixture of r_a = {s['reward_a']} and r_b = {s['reward_b']}"
            )
        )


def _length_cells(length: dict | None) -> tuple[str, str, str]:
    """(longer baseline, length-matched accuracy [interval] (n), chosen longer / shorter)."""
    if not length:
        return "", "", ""

    def mean(block: dict) -> str:
        return "-" if block["accuracy"] is None else f"{block['accuracy'].mean:.3f}"

    lm = length["length_matched"]
    matched = (
        "- (n=0)"
        if lm["accuracy"] is None
        else f"{lm['accuracy'].mean:.3f} [{lm['accuracy'].low:.2f}, {lm['accuracy'].high:.2f}] (n={lm['n']})"
    )
    return (
        f"{length['longer_baseline'].mean:.3f}",
        matched,
        f"{mean(length['chosen_longer'])} / {mean(length['chosen_shorter'])}",
    )


def print_breakdown(results: dict, column: str, console) -> None:
    """The per-group (or per-source) table, the worst one marked, and a line naming it."""
    from rich.table import Table

    from .groups import NO_GROUP

    by, worst = results[f"{column}s"], results[f"worst_{column}"]
    table = Table(title=f"held-out pairs by {column} (intervals of ece and brier: in the JSON)")
    for i, col in enumerate(
        (
            column,
            "n",
            "accuracy [95%]",
            "margin [95%]",
            "ece",
            "brier",
            "longer baseline",
            "length-matched [95%] (n)",
            "chosen longer / shorter",
        )
    ):
        table.add_column(col, justify="left" if i == 0 else "right", overflow="fold")  # the names, then numbers
    for name, m in by.items():
        acc, margin = m["accuracy"], m["margin"]
        table.add_row(
            shown_markup(name) + (" (worst)" if name == worst else ""),
            str(m["n"]),
            f"{acc.mean:.3f} [{acc.low:.2f}, {acc.high:.2f}]",
            f"{margin.mean:.3g} [{margin.low:.3g}, {margin.high:.3g}]",
            f"{m['ece'].mean:.3f}",
            f"{m['brier'].mean:.3f}",
            *_length_cells(m.get("length")),
        )
    console.print(table)
    if worst is not None:
        console.print(
            f"worst {column}: {shown_markup(worst)} (accuracy {by[worst]['accuracy']}, {by[worst]['n']} pairs)"
        )
    missing = results[f"rows_without_{column}"]
    if missing:
        console.print(f"{missing} pairs have no {column}: counted under {NO_GROUP!r}, not a {column}")
