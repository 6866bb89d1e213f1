"""Presenting shift-world results: rich tables, a frontier plot per claim, the numbers as text
(the Markdown report and the other files: `dralign_bench.shift.outputs`).

Everything reads the results document of :func:`dralign_bench.shift.run_shift` (the dict
written to ``results.json``), so a report can be re-made from a saved file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..plotting import pyplot
from .claims import upper_hull
from .scenarios import SCENARIOS

# the files (report.md, command.txt, results.json): dralign_bench.shift.outputs
__all__ = [
    "METRIC_LABELS",
    "RUN_COLUMNS",
    "VERDICTS",
    "fmt_comparison",
    "fmt_num",
    "plain_summary",
    "plot_claims",
    "power_summary",
    "print_tables",
    "run_table",
    "short_id",
]

VERDICTS = {
    "reproduced": "every comparison of the claim is significant in the claimed direction (Holm-adjusted p < 0.05)",
    "partly reproduced": "some comparisons are significant in the claimed direction, not all, and none against it",
    "contradicted": "at least one comparison is significant against the claim (whatever the others show)",
    "not significant": "no comparison is significant after Holm's correction, and the claim's MDE is within its declared effect of interest (an effect that size would likely have been seen)",
    "underpowered": "no comparison is significant, and the claim's MDE exceeds its declared effect of interest: the run could not have seen the effect the claim is about, so it neither supports nor refutes it",
    "invalid test": "the scenario's positive control failed, or the methods lay outside DPO's range on more than 20 % of the seeds (the overlap control): the run did not create the claim's condition, so it says nothing about the claim",
}

# Distinct colours (tab10 has ten, no two alike); DPO's frontier is always black.
_COLOURS = [
    "tab:blue",
    "tab:orange",
    "tab:green",
    "tab:red",
    "tab:purple",
    "tab:brown",
    "tab:pink",
    "tab:olive",
    "tab:cyan",
    "tab:gray",
]
METRIC_LABELS = {
    "r0": "r(α₀)",
    "kl": "KL to start",
    "worst": "worst r over α",
    "acc": "accuracy (noise-free order)",
    "entropy": "token entropy",
    "calib": "mean |p̂ − p| (own link)",
}


#: Metrics on the probability scale (gold reward in [0, 1], accuracy, |p̂ − p|): the power target
#: (median 95 % half-width ≤ 0.015) is stated on them; entropy is in nats and reported apart.
PROBABILITY_SCALE = ("r0", "worst", "acc", "calib")


def power_summary(claims: list[dict]) -> dict:
    """Median paired 95 % half-width and SE over the comparisons on the probability scale (all
    claims, and those whose controls — the scenario's and the overlap — passed), and over every
    comparison; comparisons without an interval (fewer than 2 seeds) are left out of the medians."""

    def stats(rows):
        rows = [r for r in rows if np.isfinite(r["ci"][1]) and np.isfinite(r["se"])]
        hw = [r["ci"][1] - r["diff"] for r in rows]
        return {
            "comparisons": len(rows),
            "median_half_width": float(np.median(hw)) if hw else float("nan"),
            "median_se": float(np.median([r["se"] for r in rows])) if rows else float("nan"),
        }

    def valid(c):
        return c["control"]["passed"] and (c.get("overlap") or {"passed": True})["passed"]

    prob = [(c, r) for c in claims for r in c["comparisons"] if r["metric"].split(" ")[0] in PROBABILITY_SCALE]
    return {
        "probability_scale": stats([r for _, r in prob]),
        "probability_scale_control_passed": stats([r for c, r in prob if valid(c)]),
        "all": stats([r for c in claims for r in c["comparisons"]]),
    }


def _mean(run: dict, key: str) -> float:
    return float(np.mean([s[key] for s in run["seeds"]]))


def fmt_num(v: float, digits: int) -> str:
    return f"{v:.{digits}f}" if np.isfinite(v) else "—"  # not measured (e.g. no held-out pairs in the scenario)


def run_table(results: dict) -> list[list[str]]:
    """One row per test run: means over test seeds ("—": not measured for that run)."""
    rows = []
    for rid, run in results["runs"].items():
        rows.append(
            [
                rid,
                *(
                    fmt_num(_mean(run, k), d)
                    for k, d in (
                        ("r0", 3),
                        ("worst", 3),
                        ("kl", 2),
                        ("entropy", 3),
                        ("acc", 3),
                        ("calib", 3),
                        ("seconds", 0),
                    )
                ),
            ]
        )
    return rows


RUN_COLUMNS = ("run", "r(α₀)", "worst r", "KL", "entropy", "acc (clean)", "|p̂−p|", "train s")
#: Short parameter names for the console, where run ids must fit 80 columns.
_SHORT = {"label_smoothing": "ε", "drdpo_beta": "β′", "beta": "β", "tau": "τ", "rho": "ρ", "lam": "λ"}


def short_id(rid: str) -> str:
    """A run id with Greek parameter names (flip/rdpo[label_smoothing=0.3] → flip/rdpo[ε=0.3])."""
    if "[" not in rid:
        return "DPO's envelope" if rid == "dpo-frontier" else rid
    head, inner = rid[:-1].split("[", 1)
    return (
        head
        + "["
        + ",".join(_SHORT.get(k, k) + "=" + v for k, v in (kv.split("=", 1) for kv in inner.split(",")))
        + "]"
    )


def _p(v: float) -> str:
    return f"{v:.3g}" if np.isfinite(v) else "n/a"


def _diff(c: dict, digits: int = 4) -> str:
    return f"{c['diff']:+.{digits}f}" if np.isfinite(c["diff"]) else "no value (no seed inside DPO's range)"


def _ci(c: dict, digits: int = 4) -> str:
    lo, hi = c["ci"]
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return f"no interval from {c.get('seeds', 0)} seed(s)"
    return f"95% CI {lo:+.{digits}f}, {hi:+.{digits}f}"


def fmt_comparison(c: dict) -> str:
    inside = (
        f"; {c['seeds']} seeds inside DPO's range ({c['inside']:.0%})"
        if "inside" in c and "matched" in c["metric"]
        else ""
    )
    return (
        f"{c['a']} − {c['b']} [{c['metric']}]: {_diff(c)} ({_ci(c)}; "
        f"SE {c['se']:.4f}; MDE {c['mde']:.4f}; Holm p {_p(c['p_holm'])} in the claim, "
        f"{_p(c.get('p_holm_report', c['p_holm']))} over the report{inside})"
    )


def _console_run_table(results: dict):
    """The test-run table for a terminal: short ids, no column that is empty (NaN) in every row."""
    from rich import box
    from rich.markup import escape
    from rich.table import Table

    rows = [[short_id(r[0]), *r[1:-1]] for r in run_table(results)]  # training seconds: in the report only
    # a column only the start model fills (its acc and |p̂−p| say nothing: u = 0) is left out
    cols = [k for k in range(len(RUN_COLUMNS) - 1) if k == 0 or any(r[k] != "—" for r in rows if r[0] != "start")]
    table = Table(title="test runs (means over test seeds)", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    for k in cols:
        table.add_column(RUN_COLUMNS[k], justify="left" if k == 0 else "right", no_wrap=True)
    for r in rows:
        table.add_row(*(escape(r[k]) for k in cols))
    return table


def _claim_lines(c: dict) -> list[str]:
    ctl, ov = c["control"], c.get("overlap")
    lines = [
        f"{c['verdict'].upper()} — {c['claim']}",
        f"  control: {ctl['name']} = {ctl['value']:.3f} (threshold {ctl['threshold']:.3f}): "
        f"{'passed' if ctl['passed'] else 'FAILED'}",
    ]
    if ov:
        lines.append(
            f"  overlap: {ov['value']:.0%} of seeds inside DPO's range (threshold {ov['threshold']:.0%}): "
            f"{'passed' if ov['passed'] else 'FAILED'}"
        )
    if "effect_of_interest" in c:
        lines.append(f"  effect of interest {c['effect_of_interest']:g}, MDE {fmt_num(c['mde'], 4)}")
    for d in c["comparisons"]:
        lines.append(
            f"  {short_id(d['a'])} − {short_id(d['b'])} [{d['metric']}]: {_diff(d)} "
            f"({_ci(d)}; Holm p {_p(d.get('p_holm_report', d['p_holm']))})"
        )
    return lines


def print_tables(results: dict, console) -> None:
    """The run table, each claim as a block of wrapped lines, and the plain-language summary
    (everything reads at 80 columns)."""
    from rich.text import Text

    console.print(_console_run_table(results))
    console.rule("claims")
    for c in results["claims"]:
        for k, line in enumerate(_claim_lines(c)):
            console.print(Text(line, style="bold" if k == 0 else ""), overflow="fold")  # Text: no markup parsing
        console.print()
    console.rule("what this run shows")
    console.print(Text(plain_summary(results)))


def _sentence_of(c: dict) -> str:
    """One claim in plain words: did the run create the condition, what did it find."""
    ctl, ov = c["control"], c.get("overlap")
    head = f"{c['paper']}: {c['claim']}"
    if not ctl["passed"]:
        return (
            f"{head} The run did not create the condition this claim needs ({ctl['name']} was "
            f"{ctl['value']:.3f}, below the {ctl['threshold']:.3f} required), so it says nothing about the claim."
        )
    if ov and not ov["passed"]:
        return (
            f"{head} The control passed, but the methods lay outside DPO's range on too many seeds "
            f"({ov['value']:.0%} inside, {ov['threshold']:.0%} required) to compare at matched settings."
        )
    found = "; ".join(
        f"{short_id(d['a'])} vs {short_id(d['b'])}, {d['metric']}: {_diff(d, 3)} ({_ci(d, 3)})"
        for d in c["comparisons"]
    )
    meaning = {
        "reproduced": "every difference is in the claimed direction and significant after Holm's correction over the "
        "whole report, so the run supports the claim",
        "partly reproduced": "some differences are significant in the claimed direction, not all",
        "contradicted": "at least one difference is significant against the claim",
        "not significant": f"no difference is significant, and the run could have detected {c.get('mde', float('nan')):.3f} "
        f"(the claim is about {c.get('effect_of_interest', float('nan')):g}): no sign of the effect",
        "underpowered": (
            f"no difference is significant, but the run could only detect {c['mde']:.3f}, more than "
            f"the {c.get('effect_of_interest', float('nan')):g} the claim is about: too few seeds to tell"
            if np.isfinite(c.get("mde", float("nan")))
            else "no difference is significant, and too few seeds gave a difference to say what the run "
            "could have detected"
        ),
    }.get(c["verdict"], c["verdict"])
    return (
        f"{head} The control passed ({ctl['name']}: {ctl['value']:.3f}, threshold {ctl['threshold']:.3f}). "
        f"Found: {found}. Verdict {c['verdict']}: {meaning}."
    )


def plain_summary(results: dict) -> str:
    """What the run shows, in plain words: one short paragraph per claim."""
    if not results["claims"]:
        return "No claim was judged (no scenario's runs were complete)."
    return "\n\n".join(_sentence_of(c) for c in results["claims"])


def plot_claims(results: dict, root: Path) -> list[str]:
    """A frontier plot per claim: DPO's β points (black line, per-seed means) and every compared
    run at its (x, y) with ±1 SE bars over seeds."""
    plt = pyplot()
    paths = []
    for k, claim in enumerate(results["claims"]):
        cmps = claim["comparisons"]
        if not cmps:
            continue
        metric = cmps[0]["metric"].split(" ")[0]
        x = "kl" if "matched KL" in cmps[0]["metric"] else "r0" if "matched r0" in cmps[0]["metric"] else "kl"
        fig, ax = plt.subplots(figsize=(6, 4))
        dataset = SCENARIOS[claim["scenario"]].dataset
        front = [rid for rid in results["runs"] if rid.startswith(f"{dataset}/dpo[beta=")]
        if front:
            pts = [
                (_mean(results["runs"][r], x), _mean(results["runs"][r], metric))
                for r in front + ["start"]
                if r in results["runs"]
            ]
            better = -1.0 if "lower is better" in cmps[0]["metric"] else 1.0
            hull = [(hx, better * hy) for hx, hy in upper_hull([(px, better * py) for px, py in pts])]
            ax.plot(*zip(*hull), "k--", lw=1, label="DPO envelope (hull of the means, start included)")
            ax.plot(*zip(*pts[: len(front)]), "ko", label="DPO (β grid, shorter training)")
            for r, pt in zip(front, pts):
                ax.annotate(short_id(r).split("[")[1].rstrip("]"), pt, fontsize=7)
        others = ["start"] + [rid for c in cmps for rid in (c["a"], c["b"]) if rid != "dpo-frontier"]
        for i, rid in enumerate(r for r in dict.fromkeys(others) if r in results["runs"]):
            run = results["runs"][rid]
            ys = np.array([s[metric] for s in run["seeds"]])
            xs = np.array([s[x] for s in run["seeds"]])
            se = lambda v: v.std(ddof=1) / np.sqrt(len(v)) if len(v) > 1 else 0.0  # noqa: E731
            ax.errorbar(xs.mean(), ys.mean(), xerr=se(xs), yerr=se(ys), fmt="o", color=_COLOURS[i % 10], label=rid)
        ax.set_xlabel(METRIC_LABELS.get(x, x))
        ax.set_ylabel(METRIC_LABELS.get(metric, metric))
        ax.set_title(f"{claim['scenario']}: {claim['verdict']}", fontsize=9)
        ax.legend(fontsize=7)
        fig.tight_layout()
        path = root / f"claim-{k + 1}-{claim['scenario']}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(str(path))
    return paths
