"""Presenting shift-world results: rich tables, a frontier plot per claim, the Markdown report.

Everything reads the results document of :func:`dralign_bench.shift.run_shift` (the dict
written to ``results.json``), so a report can be re-made from a saved file.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..plotting import pyplot
from .claims import OVERLAP_THRESHOLD, upper_hull
from .measure import evaluation_noise
from .scenarios import SCENARIOS

__all__ = ["VERDICTS", "command_text", "plain_summary", "plot_claims", "power_summary", "print_tables", "run_table", "write_outputs", "write_report"]

VERDICTS = {
    "reproduced": "every comparison of the claim is significant in the claimed direction (Holm-adjusted p < 0.05)",
    "partly reproduced": "some comparisons are significant in the claimed direction, not all, and none against it",
    "contradicted": "at least one comparison is significant against the claim (whatever the others show)",
    "not significant": "no comparison is significant after Holm's correction, and the claim's MDE is within its declared effect of interest (an effect that size would likely have been seen)",
    "underpowered": "no comparison is significant, and the claim's MDE exceeds its declared effect of interest: the run could not have seen the effect the claim is about, so it neither supports nor refutes it",
    "invalid test": "the scenario's positive control failed, or the methods lay outside DPO's range on more than 20 % of the seeds (the overlap control): the run did not create the claim's condition, so it says nothing about the claim",
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
    claims, and those whose controls — the scenario's and the overlap — passed), and over every
    comparison; comparisons without an interval (fewer than 2 seeds) are left out of the medians."""
    def stats(rows):
        rows = [r for r in rows if np.isfinite(r["ci"][1]) and np.isfinite(r["se"])]
        hw = [r["ci"][1] - r["diff"] for r in rows]
        return {"comparisons": len(rows), "median_half_width": float(np.median(hw)) if hw else float("nan"),
                "median_se": float(np.median([r["se"] for r in rows])) if rows else float("nan")}

    def valid(c):
        return c["control"]["passed"] and (c.get("overlap") or {"passed": True})["passed"]

    prob = [(c, r) for c in claims for r in c["comparisons"] if r["metric"].split(" ")[0] in PROBABILITY_SCALE]
    return {"probability_scale": stats([r for _, r in prob]),
            "probability_scale_control_passed": stats([r for c, r in prob if valid(c)]),
            "all": stats([r for c in claims for r in c["comparisons"]])}


def _mean(run: dict, key: str) -> float:
    return float(np.mean([s[key] for s in run["seeds"]]))


def _num(v: float, digits: int) -> str:
    return f"{v:.{digits}f}" if np.isfinite(v) else "—"  # not measured (e.g. no held-out pairs in the scenario)


def run_table(results: dict) -> list[list[str]]:
    """One row per test run: means over test seeds ("—": not measured for that run)."""
    rows = []
    for rid, run in results["runs"].items():
        rows.append([rid, *(_num(_mean(run, k), d) for k, d in (("r0", 3), ("worst", 3), ("kl", 2), ("entropy", 3),
                                                                ("acc", 3), ("calib", 3), ("seconds", 0)))])
    return rows


_RUN_COLUMNS = ("run", "r(α₀)", "worst r", "KL", "entropy", "acc (clean)", "|p̂−p|", "train s")
#: Short parameter names for the console, where run ids must fit 80 columns.
_SHORT = {"label_smoothing": "ε", "drdpo_beta": "β′", "beta": "β", "tau": "τ", "rho": "ρ", "lam": "λ"}


def short_id(rid: str) -> str:
    """A run id with Greek parameter names (flip/rdpo[label_smoothing=0.3] → flip/rdpo[ε=0.3])."""
    if "[" not in rid:
        return "DPO's envelope" if rid == "dpo-frontier" else rid
    head, inner = rid[:-1].split("[", 1)
    return head + "[" + ",".join(_SHORT.get(k, k) + "=" + v for k, v in (kv.split("=", 1) for kv in inner.split(","))) + "]"


def _p(v: float) -> str:
    return f"{v:.3g}" if np.isfinite(v) else "n/a"


def _diff(c: dict, digits: int = 4) -> str:
    return f"{c['diff']:+.{digits}f}" if np.isfinite(c["diff"]) else "no value (no seed inside DPO's range)"


def _ci(c: dict, digits: int = 4) -> str:
    lo, hi = c["ci"]
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return f"no interval from {c.get('seeds', 0)} seed(s)"
    return f"95% CI {lo:+.{digits}f}, {hi:+.{digits}f}"


def _fmt_cmp(c: dict) -> str:
    inside = f"; {c['seeds']} seeds inside DPO's range ({c['inside']:.0%})" if "inside" in c and "matched" in c["metric"] else ""
    return (f"{c['a']} − {c['b']} [{c['metric']}]: {_diff(c)} ({_ci(c)}; "
            f"SE {c['se']:.4f}; MDE {c['mde']:.4f}; Holm p {_p(c['p_holm'])} in the claim, "
            f"{_p(c.get('p_holm_report', c['p_holm']))} over the report{inside})")


def _console_run_table(results: dict):
    """The test-run table for a terminal: short ids, no column that is empty (NaN) in every row."""
    from rich import box
    from rich.markup import escape
    from rich.table import Table

    rows = [[short_id(r[0]), *r[1:-1]] for r in run_table(results)]  # training seconds: in the report only
    # a column only the start model fills (its acc and |p̂−p| say nothing: u = 0) is left out
    cols = [k for k in range(len(_RUN_COLUMNS) - 1) if k == 0 or any(r[k] != "—" for r in rows if r[0] != "start")]
    table = Table(title="test runs (means over test seeds)", title_justify="left", box=box.SIMPLE_HEAD,
                  pad_edge=False)
    for k in cols:
        table.add_column(_RUN_COLUMNS[k], justify="left" if k == 0 else "right", no_wrap=True)
    for r in rows:
        table.add_row(*(escape(r[k]) for k in cols))
    return table


def _claim_lines(c: dict) -> list[str]:
    ctl, ov = c["control"], c.get("overlap")
    lines = [f"{c['verdict'].upper()} — {c['claim']}",
             f"  control: {ctl['name']} = {ctl['value']:.3f} (threshold {ctl['threshold']:.3f}): "
             f"{'passed' if ctl['passed'] else 'FAILED'}"]
    if ov:
        lines.append(f"  overlap: {ov['value']:.0%} of seeds inside DPO's range (threshold {ov['threshold']:.0%}): "
                     f"{'passed' if ov['passed'] else 'FAILED'}")
    if "effect_of_interest" in c:
        lines.append(f"  effect of interest {c['effect_of_interest']:g}, MDE {_num(c['mde'], 4)}")
    for d in c["comparisons"]:
        lines.append(f"  {short_id(d['a'])} − {short_id(d['b'])} [{d['metric']}]: {_diff(d)} "
                     f"({_ci(d)}; Holm p {_p(d.get('p_holm_report', d['p_holm']))})")
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
        return (f"{head} The run did not create the condition this claim needs ({ctl['name']} was "
                f"{ctl['value']:.3f}, below the {ctl['threshold']:.3f} required), so it says nothing about the claim.")
    if ov and not ov["passed"]:
        return (f"{head} The control passed, but the methods lay outside DPO's range on too many seeds "
                f"({ov['value']:.0%} inside, {ov['threshold']:.0%} required) to compare at matched settings.")
    found = "; ".join(f"{short_id(d['a'])} vs {short_id(d['b'])}, {d['metric']}: {_diff(d, 3)} ({_ci(d, 3)})"
                      for d in c["comparisons"])
    meaning = {
        "reproduced": "every difference is in the claimed direction and significant after Holm's correction over the "
                      "whole report, so the run supports the claim",
        "partly reproduced": "some differences are significant in the claimed direction, not all",
        "contradicted": "at least one difference is significant against the claim",
        "not significant": f"no difference is significant, and the run could have detected {c.get('mde', float('nan')):.3f} "
                           f"(the claim is about {c.get('effect_of_interest', float('nan')):g}): no sign of the effect",
        "underpowered": (f"no difference is significant, but the run could only detect {c['mde']:.3f}, more than "
                         f"the {c.get('effect_of_interest', float('nan')):g} the claim is about: too few seeds to tell"
                         if np.isfinite(c.get("mde", float("nan"))) else
                         "no difference is significant, and too few seeds gave a difference to say what the run "
                         "could have detected"),
    }.get(c["verdict"], c["verdict"])
    return (f"{head} The control passed ({ctl['name']}: {ctl['value']:.3f}, threshold {ctl['threshold']:.3f}). "
            f"Found: {found}. Verdict {c['verdict']}: {meaning}.")


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
            pts = [(_mean(results["runs"][r], x), _mean(results["runs"][r], metric)) for r in front + ["start"]
                   if r in results["runs"]]
            better = -1.0 if "lower is better" in cmps[0]["metric"] else 1.0
            hull = [(hx, better * hy) for hx, hy in upper_hull([(px, better * py) for px, py in pts])]
            ax.plot(*zip(*hull), "k--", lw=1, label="DPO envelope (hull of the means, start included)")
            ax.plot(*zip(*pts[:len(front)]), "ko", label="DPO (β grid, shorter training)")
            for r, pt in zip(front, pts):
                ax.annotate(short_id(r).split("[")[1].rstrip("]"), pt, fontsize=7)
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
            f"ECE {col('ece')}; largest weight {col('weight_max')}"
            + (f"; the oracle ratio's AUC {col('oracle_auc')}" if all("oracle_auc" in r for r in ratios) else "")
            + ".", ""]


def _header_lines(results: dict) -> list[str]:
    o, jobs = results["options"], results.get("jobs", [])
    made = (f"Made by `{results['command']}` in {results['seconds'] / 60:.1f} min of wall time"
            + (f", {len(jobs)} jobs ({sum(j['seconds'] for j in jobs) / 60:.1f} min of job time in all)" if jobs else "")
            + ". ")
    seeds = o.get("test_seed_values")
    return ["# Shift-world benchmark", "",
            made + f"{o['test_seeds']} test seeds{f' ({seeds[0]}–{seeds[-1]})' if seeds else ''}, "
            f"{o['validation_seeds']} validation seeds, {o['eval_prompts']} held-out prompts "
            f"and {o['eval_pairs']} held-out pairs per evaluation, {o['steps']} steps per run, DPO's β grid {o['betas']}. "
            f"Gold objectives r_a = {o['reward_a']}, r_b = {o['reward_b']}, α₀ = {o['alpha0']}.", "",
            *[f"- job `{j['command']}` (scenarios {', '.join(j['scenarios'] or ['all'])}): {j['seconds'] / 60:.1f} min"
              for j in jobs],
            *(["", o["note"]] if o.get("note") else []),
            *(["", results["note"]] if results.get("note") else []), ""]


def _provenance_lines(results: dict) -> list[str]:
    p, o = results.get("provenance"), results["options"]
    if not p:
        return ["## Provenance", "", "Not recorded (a result made before provenance was recorded).", ""]
    v = ", ".join(f"{k} {val}" for k, val in p["versions"].items())
    dirty = {True: f"**dirty** (uncommitted changes, diff sha256 {str(p.get('diff_sha256'))[:12]})",
             False: "clean", None: "unknown (not a git checkout)"}[p["dirty"]]
    cores = p.get("cores") or {}
    workers = f", {p['workers']} workers" if p.get("workers") else ""
    return ["## Provenance", "",
            f"Commit `{p['commit']}`, tree {dirty}; {v}; {cores.get('usable')} usable cores{workers}; "
            f"started {p['started']}, finished "
            f"{p['finished']} ({(p['wall_seconds'] or 0) / 60:.1f} min). Test seeds {o.get('test_seed_values')}, "
            f"validation seeds {o.get('validation_seed_values')}. Every option is in results.json.", "",
            "### Runs made for this report and not shown", "",
            *([f"- {u}" for u in o.get("unshown_runs") or []] or ["None declared."]), ""]


def _method_lines() -> list[str]:
    return [
        "## Method", "",
        "Every difference is oriented so that a positive value is the claim's direction (for a "
        "lower-is-better metric it is b − a). Every comparison is a per-seed difference (same prompts, same sampling "
        "random numbers, same held-out pairs: common random numbers), tested over the test seeds with a paired "
        "t-test; CI is the 95 % t interval, MDE the minimum detectable effect (80 % power, two-sided 5 %, unadjusted), "
        "p Holm-adjusted within the claim and over every comparison of the report as one family; verdicts read "
        "the report-wide p. Each claim declares its smallest effect of interest before the run; a claim whose MDE "
        "exceeds it is *underpowered*, never *not significant*.", "",
        "Claims at matched x are judged against DPO's upper envelope per seed: the concave hull of DPO's runs and "
        "the start model in the (x, y) plane (what mixing two policies reaches), read in the direction the metric "
        "needs — at matched KL the best DPO value at KL ≤ the method's, at matched r(α₀) the best at r(α₀) ≥ the "
        "method's, the hull itself where DPO is the claimant. It is never extrapolated: a seed on which the method "
        f"lies outside DPO's range gives no difference, and a claim whose method is inside on fewer than "
        f"{OVERLAP_THRESHOLD:.0%} of the seeds is an invalid test (its overlap control). DPO's runs are the β grid "
        "and, where a scenario's methods move less than the β grid's smallest KL, DPO trained at a fraction of the "
        "learning rate (under Adam β stops controlling the KL above β ≈ 1): the (hyper-parameter, checkpoint) "
        "frontier of Rafailov et al. 2023 (Fig. 2).", ""]


def _noise_lines(results: dict) -> list[str]:
    """Evaluation noise measured on split halves, beside the seed-to-seed spread of the differences."""
    out = []
    for metric in ("r0", "worst", "kl", "entropy", "acc", "calib"):
        ev = evaluation_noise({rid: run["seeds"] for rid, run in results["runs"].items() if rid != "start"}, metric)
        rows = [r for c in results["claims"] for r in c["comparisons"] if r["metric"].split(" ")[0] == metric
                and np.isfinite(r["se"])]
        sd = float(np.median([r["se"] * np.sqrt(r["seeds"]) for r in rows])) if rows else float("nan")
        if np.isfinite(ev):
            out.append(f"- {_X.get(metric, metric)}: evaluation SE of one run on one seed {ev:.4f}"
                       + (f"; median SD over seeds of a compared difference {sd:.4f}" if np.isfinite(sd) else ""))
    if not out:
        return []
    return ["## Evaluation noise (split halves)", "",
            "Each run is also evaluated on the two halves of its held-out prompts (and pairs); |a − b|/2 measures "
            "the evaluation SE of the full mean (root mean square over runs and seeds). A difference of two runs on "
            "a seed carries at most √2 × that (less with common random numbers); the rest of its spread over seeds "
            "is training noise.", "", *out, ""]


def _map_lines(results: dict) -> list[str]:
    """Each map as a table: gain over the best baseline per cell, its interval, its control."""
    maps = results.get("maps") or {}
    if not maps:
        return []
    lines = ["## Maps: where does each method help?", ""]
    for name, mp in maps.items():
        rows, cols = mp["rows"], mp.get("cols") or {"name": "gain", "values": [None]}  # a 1-D map: one column
        cells = {(c["row"], c.get("col")): c for c in mp["cells"]}
        lines += [f"### {mp.get('title', name)}", "", f"| {rows['name']} \\ {cols['name']} | "
                  + " | ".join("" if v is None else f"{v:g}" for v in cols["values"]) + " |",
                  "|" + "---|" * (len(cols["values"]) + 1)]
        for r in rows["values"]:
            cell = [cells.get((r, c)) for c in cols["values"]]
            lines.append(f"| {r:g} | " + " | ".join(
                "—" if x is None else "no value (outside DPO's range)" if not np.isfinite(x["diff"])
                else f"{x['diff']:+.3f} [{x['ci'][0]:+.3f}, {x['ci'][1]:+.3f}]"
                + ("" if x.get("control_passed", True) else " (control failed)") for x in cell) + " |")
        lines += (["", f"![{name}]({Path(mp['plot']).name})"] if mp.get("plot") else []) + [""]
    return lines


def _claim_section(c: dict) -> list[str]:
    ctl, ov = c["control"], c.get("overlap")
    lines = [f"### {c['paper']} — **{c['verdict']}**", "", c["claim"], "",
             f"Control: {ctl['name']} = {ctl['value']:.4f} (threshold {ctl['threshold']:.3f}) — "
             f"{'passed' if ctl['passed'] else 'FAILED'}; {ctl['detail']}.", ""]
    if ov:
        lines += [f"Overlap control: {ov['name']} = {ov['value']:.0%} (threshold {ov['threshold']:.0%}) — "
                  f"{'passed' if ov['passed'] else 'FAILED'}; {ov['detail']}.", ""]
    if "effect_of_interest" in c:
        lines += [f"Effect of interest {c['effect_of_interest']:g}; MDE {_num(c['mde'], 4)}"
                  + (": underpowered" if not c["mde"] <= c["effect_of_interest"] else "")
                  + (f" (at the level of Holm's first step over the report: {_num(c['mde_report'], 4)})"
                     if "mde_report" in c else "") + ".", ""]
    return lines + [f"- {_fmt_cmp(d)}" for d in c["comparisons"]] + [""]


def write_report(results: dict, path: Path) -> str:
    lines = [*_header_lines(results), *_provenance_lines(results),
             "## Verdicts", "", *[f"- **{k}** — {v}." for k, v in VERDICTS.items()], "",
             *_method_lines(), *_power_lines(results), *_noise_lines(results), *_ratio_lines(results),
             "## Claims", "", *[f"- **{c['verdict']}** — {c['claim']}" for c in results["claims"]], "",
             "In plain words:", "", plain_summary(results), ""]
    for c in results["claims"]:
        lines += _claim_section(c)
    lines += _map_lines(results)
    if results.get("selection"):
        lines += ["## Own parameters chosen on the validation seeds", ""]
        lines += [f"- {k}: {v['param']} = {v['chosen']:g} from {v['grid']} ({v['criterion']}; scores "
                  f"{', '.join(f'{g}: {s:+.4f}' for g, s in v['validation_scores'].items())})"
                  for k, v in results["selection"].items()] + [""]
    lines += ["## Test runs (means over test seeds)", "",
              "| " + " | ".join(c.replace("|", "\\|") for c in _RUN_COLUMNS) + " |",  # a pipe would split the column
              "|" + "---|" * len(_RUN_COLUMNS)]
    lines += ["| " + " | ".join(r) + " |" for r in run_table(results)] + [""]
    lines += ["## Plots", ""] + [f"![{Path(p).stem}]({Path(p).name})" for p in results["files"]["plots"]] + [""]
    path.write_text("\n".join(lines))
    return str(path)


def write_outputs(results: dict, root: Path, console) -> dict:
    """results.json, a plot per claim, report.md and command.txt under `root`; the tables on
    the console; returns `results` with its ``power`` summary and ``files``."""
    root.mkdir(parents=True, exist_ok=True)
    results["power"] = power_summary(results["claims"])
    results["files"] = {"results": str(root / "results.json"), "plots": plot_claims(results, root)}
    results["files"]["report"] = write_report(results, root / "report.md")
    (root / "command.txt").write_text(command_text(results))
    (root / "results.json").write_text(json.dumps(results, indent=2))
    files = results["files"]
    console.print(f"plots: {', '.join(files['plots'])}\nreport: {files['report']}\nresults: {files['results']}",
                  soft_wrap=True)  # paths whole, never folded
    print_tables(results, console)  # last: it ends with what the run shows, in plain words
    return results


def command_text(results: dict) -> str:
    """command.txt: the command that made the results, then each worker's (from the record, never by hand)."""
    p = results.get("provenance") or {}
    lines = [f"# made at commit {p.get('commit')} (dirty: {p.get('dirty')}), {p.get('started')} – {p.get('finished')}",
             results["command"]]
    lines += [f"# job: {j['command']} (scenarios {', '.join(j['scenarios'] or ['all'])}, {j['seconds'] / 60:.1f} min)"
              for j in results.get("jobs", [])]
    return "\n".join(lines) + "\n"
