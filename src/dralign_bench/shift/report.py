"""Presenting shift-world results: rich tables, a frontier plot per claim, the Markdown report.

Everything reads the results document of :func:`dralign_bench.shift.run_shift` (the dict
written to ``results.json``), so a report can be re-made from a saved file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..plotting import pyplot
from .scenarios import SCENARIOS

__all__ = ["VERDICTS", "plot_claims", "power_summary", "print_tables", "run_table", "write_report"]

VERDICTS = {
    "reproduced": "every comparison of the claim is significant in the claimed direction (Holm-adjusted p < 0.05)",
    "partly reproduced": "some comparisons are significant in the claimed direction, not all, and none against it",
    "contradicted": "at least one comparison is significant against the claim (whatever the others show)",
    "not significant": "no comparison is significant after Holm's correction (the MDE says what could have been seen)",
    "invalid test": "the scenario's positive control failed: the run did not create the paper's condition, so it says nothing about the claim",
}

# Distinct colours (tab10 has ten, no two alike); DPO's frontier is always black.
_COLOURS = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown", "tab:pink",
            "tab:olive", "tab:cyan", "tab:gray"]
_X = {"r0": "r(α₀)", "kl": "KL to start", "worst": "worst r over α", "acc": "accuracy (noise-free order)",
      "entropy": "token entropy", "calib": "mean |p̂ − p| (own link)"}


#: Metrics on the probability scale (gold reward in [0, 1], accuracy, |p̂ − p|): the power target
#: (median 95 % half-width ≤ 0.015) is stated on them; entropy is in nats and reported apart.
PROBABILITY_SCALE = ("r0", "worst", "acc", "calib")


def power_summary(claims: list[dict]) -> dict:
    """Median paired 95 % half-width and SE over the comparisons on the probability scale (all
    claims, and those whose control passed), and over every comparison."""
    def stats(rows):
        hw = [r["ci"][1] - r["diff"] for r in rows]
        return {"comparisons": len(rows), "median_half_width": float(np.median(hw)) if hw else float("nan"),
                "median_se": float(np.median([r["se"] for r in rows])) if rows else float("nan")}

    prob = [(c, r) for c in claims for r in c["comparisons"] if r["metric"].split(" ")[0] in PROBABILITY_SCALE]
    return {"probability_scale": stats([r for _, r in prob]),
            "probability_scale_control_passed": stats([r for c, r in prob if c["control"]["passed"]]),
            "all": stats([r for c in claims for r in c["comparisons"]])}


def _mean(run: dict, key: str) -> float:
    return float(np.mean([s[key] for s in run["seeds"]]))


def run_table(results: dict) -> list[list[str]]:
    """One row per test run: means over test seeds."""
    rows = []
    for rid, run in results["runs"].items():
        rows.append([rid, f"{_mean(run, 'r0'):.3f}", f"{_mean(run, 'worst'):.3f}", f"{_mean(run, 'kl'):.2f}",
                     f"{_mean(run, 'entropy'):.3f}", f"{_mean(run, 'acc'):.3f}", f"{_mean(run, 'calib'):.3f}",
                     f"{_mean(run, 'seconds'):.0f}"])
    return rows


_RUN_COLUMNS = ("run", "r(α₀)", "worst r", "KL", "entropy", "acc (clean)", "|p̂−p|", "train s")


def _fmt_cmp(c: dict) -> str:
    lo, hi = c["ci"]
    return (f"{c['a']} − {c['b']} [{c['metric']}]: {c['diff']:+.4f} (95% CI {lo:+.4f}, {hi:+.4f}; "
            f"SE {c['se']:.4f}; MDE {c['mde']:.4f}; Holm p {c['p_holm']:.3g})")


def print_tables(results: dict, console) -> None:
    from rich.markup import escape
    from rich.table import Table

    table = Table(title="test runs (means over test seeds)", title_justify="left")
    for col in _RUN_COLUMNS:
        table.add_column(col, justify="left" if col == "run" else "right")
    for row in run_table(results):
        table.add_row(*map(escape, row))
    console.print(table)
    table = Table(title="claims", title_justify="left", show_lines=True)
    for col in ("claim", "control", "verdict", "comparisons"):
        table.add_column(col, overflow="fold")
    for c in results["claims"]:
        ctl = c["control"]
        table.add_row(escape(c["claim"]), f"{ctl['name']}: {ctl['value']:.3f} vs {ctl['threshold']:.3f} "
                                  f"({'passed' if ctl['passed'] else 'FAILED'})",
                      c["verdict"], escape("\n".join(_fmt_cmp(d) for d in c["comparisons"])))
    console.print(table)


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
        front = sorted((rid for rid in results["runs"] if rid.startswith(f"{dataset}/dpo[beta=")),
                       key=lambda r: _mean(results["runs"][r], x))
        if front:
            ax.plot([_mean(results["runs"][r], x) for r in front], [_mean(results["runs"][r], metric) for r in front],
                    "k-o", label="DPO frontier (β grid, shorter training)")
            for r in front:
                ax.annotate(r.split("[")[1].rstrip("]"), (_mean(results["runs"][r], x), _mean(results["runs"][r], metric)),
                            fontsize=7)
        others = ["start"] + [rid for c in cmps for rid in (c["a"], c["b"]) if rid != "dpo-frontier"]
        for i, rid in enumerate(r for r in dict.fromkeys(others) if r in results["runs"]):
            run = results["runs"][rid]
            ys = np.array([s[metric] for s in run["seeds"]])
            xs = np.array([s[x] for s in run["seeds"]])
            se = lambda v: v.std(ddof=1) / np.sqrt(len(v)) if len(v) > 1 else 0.0  # noqa: E731
            ax.errorbar(xs.mean(), ys.mean(), xerr=se(xs), yerr=se(ys), fmt="o", color=_COLOURS[i % 10], label=rid)
        ax.set_xlabel(_X.get(x, x))
        ax.set_ylabel(_X.get(metric, metric))
        ax.set_title(f"{claim['scenario']}: {claim['verdict']}", fontsize=9)
        ax.legend(fontsize=7)
        fig.tight_layout()
        path = root / f"claim-{k + 1}-{claim['scenario']}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(str(path))
    return paths


def _power_lines(results: dict) -> list[str]:
    p = power_summary(results["claims"])
    a, b, e = p["probability_scale"], p["probability_scale_control_passed"], p["all"]
    return ["## Power", "",
            f"Median 95 % half-width of the paired differences on the probability scale (gold reward, accuracy, "
            f"|p̂ − p|): {a['median_half_width']:.4f} over {a['comparisons']} comparisons (median SE {a['median_se']:.4f}); "
            f"{b['median_half_width']:.4f} over the {b['comparisons']} whose control passed. Over every comparison, "
            f"entropy (nats) included: {e['median_half_width']:.4f}.", ""]


def _ratio_lines(results: dict) -> list[str]:
    ratios = results.get("density_ratios") or []
    if not ratios:
        return []
    col = lambda k: ", ".join(f"{r[k]:.3f}" for r in ratios)  # noqa: E731
    return ["## Density ratios (sources scenario)", "",
            f"Cross-fitted on the start model's features, target = the human source (π_T = {ratios[0]['prior']:.2f}), "
            f"per test seed: held-out AUC {col('auc')}; effective sample size (share of rows) {col('ess')}; "
            f"ECE {col('ece')}; largest weight {col('weight_max')}.", ""]


def write_report(results: dict, path: Path) -> str:
    o = results["options"]
    lines = [
        "# Shift-world benchmark", "",
        (f"Made by the {len(results['jobs'])} jobs below (the longest {results['seconds'] / 60:.1f} min, "
         f"{sum(j['seconds'] for j in results['jobs']) / 60:.1f} min of job time in all). "
         if len(results.get("jobs", [])) > 1 else
         f"Made by `{results['command']}` in {results['seconds'] / 60:.1f} min. ") +
        f"{o['test_seeds']} test seeds, {o['validation_seeds']} validation seeds, {o['eval_prompts']} held-out prompts "
        f"and {o['eval_pairs']} held-out pairs per evaluation, {o['steps']} steps per run, DPO's β grid {o['betas']}. "
        f"Gold objectives r_a = {o['reward_a']}, r_b = {o['reward_b']}, α₀ = {o['alpha0']}.", "",
        *[f"- job `{j['command']}` (scenarios {', '.join(j['scenarios'] or ['all'])}): {j['seconds'] / 60:.1f} min"
          for j in results.get("jobs", [])],
        *(["", results["note"], ""] if results.get("note") else [""]),
        "## Verdicts", "",
        *[f"- **{k}** — {v}." for k, v in VERDICTS.items()], "",
        "Every difference is oriented so that a positive value is the claim's direction (for a "
        "lower-is-better metric it is b − a). Every comparison is a per-seed difference (same prompts, same sampling random numbers, same held-out pairs: "
        "common random numbers), tested over the test seeds with a paired t-test; CI is the 95 % t interval, "
        "MDE the minimum detectable effect (80 % power, two-sided 5 %), p Holm-adjusted within the claim. "
        "Claims are judged against DPO's frontier per seed (piecewise-linear over its runs, clamped at its ends): "
        "DPO on the β grid and, where a scenario's methods move less than the β grid's smallest KL (forward KL), "
        "DPO trained at a fraction of the learning rate — under Adam β stops controlling the KL above β ≈ 1, so "
        "the frontier is the (hyper-parameter, checkpoint) frontier of Rafailov et al. 2023 (Fig. 2).", "",
        *_power_lines(results),
        *_ratio_lines(results),
        "## Claims", "",
    ]
    lines += [f"- **{c['verdict']}** — {c['claim']}" for c in results["claims"]] + [""]
    for c in results["claims"]:
        ctl = c["control"]
        lines += [f"### {c['paper']} — **{c['verdict']}**", "", c["claim"], "",
                  f"Control: {ctl['name']} = {ctl['value']:.4f} (threshold {ctl['threshold']:.3f}) — "
                  f"{'passed' if ctl['passed'] else 'FAILED'}; {ctl['detail']}.", ""]
        lines += [f"- {_fmt_cmp(d)}" for d in c["comparisons"]] + [""]
    if results.get("selection"):
        lines += ["## Own parameters chosen on the validation seeds", ""]
        lines += [f"- {k}: {v['param']} = {v['chosen']:g} from {v['grid']} ({v['criterion']}; scores "
                  f"{', '.join(f'{g}: {s:+.4f}' for g, s in v['validation_scores'].items())})"
                  for k, v in results["selection"].items()] + [""]
    lines += ["## Test runs (means over test seeds)", "", "| " + " | ".join(_RUN_COLUMNS) + " |",
              "|" + "---|" * len(_RUN_COLUMNS)]
    lines += ["| " + " | ".join(r) + " |" for r in run_table(results)] + [""]
    lines += ["## Plots", ""] + [f"![{Path(p).stem}]({Path(p).name})" for p in results["files"]["plots"]] + [""]
    path.write_text("\n".join(lines))
    return str(path)
