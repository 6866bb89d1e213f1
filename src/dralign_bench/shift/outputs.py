"""The files a shift-world run leaves under its output folder: report.md (`write_report`, one
helper per section), command.txt (`command_text`), results.json and a plot per claim
(`write_outputs`). Like the tables (`dralign_bench.shift.report`) they read only the results
document, so they can be re-made from a saved ``results.json``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .claims import OVERLAP_THRESHOLD
from .measure import evaluation_noise
from .report import (
    METRIC_LABELS,
    RUN_COLUMNS,
    VERDICTS,
    fmt_comparison,
    fmt_num,
    plain_summary,
    plot_claims,
    power_summary,
    print_tables,
    run_table,
)

__all__ = ["command_text", "write_outputs", "write_report"]


def _power_lines(results: dict) -> list[str]:
    p = power_summary(results["claims"])
    a, b, e = p["probability_scale"], p["probability_scale_control_passed"], p["all"]
    return [
        "## Power",
        "",
        f"Median 95 % half-width of the paired differences on the probability scale (gold reward, accuracy, "
        f"|p̂ − p|): {a['median_half_width']:.4f} over {a['comparisons']} comparisons (median SE {a['median_se']:.4f}); "
        f"{b['median_half_width']:.4f} over the {b['comparisons']} whose control passed. Over every comparison, "
        f"entropy (nats) included: {e['median_half_width']:.4f}.",
        "",
    ]


def _ratio_lines(results: dict) -> list[str]:
    ratios = results.get("density_ratios") or []
    if not ratios:
        return []
    col = lambda k: ", ".join(f"{r[k]:.3f}" for r in ratios)  # noqa: E731
    return [
        "## Density ratios (sources scenario)",
        "",
        f"Cross-fitted on the start model's features, target = the human source (π_T = {ratios[0]['prior']:.2f}), "
        f"per test seed: held-out AUC {col('auc')}; effective sample size (share of rows) {col('ess')}; "
        f"ECE {col('ece')}; largest weight {col('weight_max')}"
        + (f"; the oracle ratio's AUC {col('oracle_auc')}" if all("oracle_auc" in r for r in ratios) else "")
        + ".",
        "",
    ]


def _header_lines(results: dict) -> list[str]:
    o, jobs = results["options"], results.get("jobs", [])
    made = (
        f"Made by `{results['command']}` in {results['seconds'] / 60:.1f} min of wall time"
        + (f", {len(jobs)} jobs ({sum(j['seconds'] for j in jobs) / 60:.1f} min of job time in all)" if jobs else "")
        + ". "
    )
    seeds = o.get("test_seed_values")
    return [
        "# Shift-world benchmark",
        "",
        made + f"{o['test_seeds']} test seeds{f' ({seeds[0]}–{seeds[-1]})' if seeds else ''}, "
        f"{o['validation_seeds']} validation seeds, {o['eval_prompts']} held-out prompts "
        f"and {o['eval_pairs']} held-out pairs per evaluation, {o['steps']} steps per run, DPO's β grid {o['betas']}. "
        f"Gold objectives r_a = {o['reward_a']}, r_b = {o['reward_b']}, α₀ = {o['alpha0']}.",
        "",
        *[
            f"- job `{j['command']}` (scenarios {', '.join(j['scenarios'] or ['all'])}): {j['seconds'] / 60:.1f} min"
            for j in jobs
        ],
        *(["", o["note"]] if o.get("note") else []),
        *(["", results["note"]] if results.get("note") else []),
        "",
    ]


def _provenance_lines(results: dict) -> list[str]:
    p, o = results.get("provenance"), results["options"]
    if not p:
        return ["## Provenance", "", "Not recorded (a result made before provenance was recorded).", ""]
    v = ", ".join(f"{k} {val}" for k, val in p["versions"].items())
    dirty = {
        True: f"**dirty** (uncommitted changes, diff sha256 {str(p.get('diff_sha256'))[:12]})",
        False: "clean",
        None: "unknown (not a git checkout)",
    }[p["dirty"]]
    cores = p.get("cores") or {}
    workers = f", {p['workers']} workers" if p.get("workers") else ""
    return [
        "## Provenance",
        "",
        f"Commit `{p['commit']}`, tree {dirty}; {v}; {cores.get('usable')} usable cores{workers}; "
        f"started {p['started']}, finished "
        f"{p['finished']} ({(p['wall_seconds'] or 0) / 60:.1f} min). Test seeds {o.get('test_seed_values')}, "
        f"validation seeds {o.get('validation_seed_values')}. Every option is in results.json.",
        "",
        "### Runs made for this report and not shown",
        "",
        *([f"- {u}" for u in o.get("unshown_runs") or []] or ["None declared."]),
        "",
    ]


def _method_lines() -> list[str]:
    return [
        "## Method",
        "",
        "Every difference is oriented so that a positive value is the claim's direction (for a "
        "lower-is-better metric it is b − a). Every comparison is a per-seed difference (same prompts, same sampling "
        "random numbers, same held-out pairs: common random numbers), tested over the test seeds with a paired "
        "t-test; CI is the 95 % t interval, MDE the minimum detectable effect (80 % power, two-sided 5 %, unadjusted), "
        "p Holm-adjusted within the claim and over every comparison of the report as one family; verdicts read "
        "the report-wide p. Each claim declares its smallest effect of interest before the run; a claim whose MDE "
        "exceeds it is *underpowered*, never *not significant*.",
        "",
        "Claims at matched x are judged against DPO's upper envelope per seed: the concave hull of DPO's runs and "
        "the start model in the (x, y) plane (what mixing two policies reaches), read in the direction the metric "
        "needs — at matched KL the best DPO value at KL ≤ the method's, at matched r(α₀) the best at r(α₀) ≥ the "
        "method's, the hull itself where DPO is the claimant. It is never extrapolated: a seed on which the method "
        f"lies outside DPO's range gives no difference, and a claim whose method is inside on fewer than "
        f"{OVERLAP_THRESHOLD:.0%} of the seeds is an invalid test (its overlap control). DPO's runs are the β grid "
        "and, where a scenario's methods move less than the β grid's smallest KL, DPO trained at a fraction of the "
        "learning rate (under Adam β stops controlling the KL above β ≈ 1): the (hyper-parameter, checkpoint) "
        "frontier of Rafailov et al. 2023 (Fig. 2).",
        "",
    ]


def _noise_lines(results: dict) -> list[str]:
    """Evaluation noise measured on split halves, beside the seed-to-seed spread of the differences."""
    out = []
    for metric in ("r0", "worst", "kl", "entropy", "acc", "calib"):
        ev = evaluation_noise({rid: run["seeds"] for rid, run in results["runs"].items() if rid != "start"}, metric)
        rows = [
            r
            for c in results["claims"]
            for r in c["comparisons"]
            if r["metric"].split(" ")[0] == metric and np.isfinite(r["se"])
        ]
        sd = float(np.median([r["se"] * np.sqrt(r["seeds"]) for r in rows])) if rows else float("nan")
        if np.isfinite(ev):
            out.append(
                f"- {METRIC_LABELS.get(metric, metric)}: evaluation SE of one run on one seed {ev:.4f}"
                + (f"; median SD over seeds of a compared difference {sd:.4f}" if np.isfinite(sd) else "")
            )
    if not out:
        return []
    return [
        "## Evaluation noise (split halves)",
        "",
        "Each run is also evaluated on the two halves of its held-out prompts (and pairs); |a − b|/2 measures "
        "the evaluation SE of the full mean (root mean square over runs and seeds). A difference of two runs on "
        "a seed carries at most √2 × that (less with common random numbers); the rest of its spread over seeds "
        "is training noise.",
        "",
        *out,
        "",
    ]


def _map_lines(results: dict) -> list[str]:
    """Each map as a table: gain over the best baseline per cell, its interval, its control."""
    maps = results.get("maps") or {}
    if not maps:
        return []
    lines = ["## Maps: where does each method help?", ""]
    if results.get("maps_command"):  # a maps profile run after the claims, into the same folder
        m = results.get("maps_provenance") or {}
        minutes = f" in {m['wall_seconds'] / 60:.1f} min of wall time" if m.get("wall_seconds") else ""
        lines += [f"Made by `{results['maps_command']}` at commit {m.get('commit')}{minutes}.", ""]
    for name, mp in maps.items():
        rows, cols = mp["rows"], mp.get("cols") or {"name": "gain", "values": [None]}  # a 1-D map: one column
        cells = {(c["row"], c.get("col")): c for c in mp["cells"]}
        params = mp.get("parameters") or {}
        used = ", ".join(f"{k} {v:g}" for k, v in (params.get("values") or {}).items())
        lines += [
            f"### {mp.get('title', name)}",
            "",
            f"Seeds {mp.get('seed_values')} in every cell"
            + (f"; parameters {used}, {params.get('source')}" if used else "")
            + ".",
            "",
            f"| {rows['name']} \\ {cols['name']} | "
            + " | ".join("" if v is None else f"{v:g}" for v in cols["values"])
            + " |",
            "|" + "---|" * (len(cols["values"]) + 1),
        ]
        for r in rows["values"]:
            cell = [cells.get((r, c)) for c in cols["values"]]
            lines.append(
                f"| {r:g} | "
                + " | ".join(
                    "—"
                    if x is None
                    else "no value (outside DPO's range)"
                    if not np.isfinite(x["diff"])
                    else f"{x['diff']:+.3f} [{x['ci'][0]:+.3f}, {x['ci'][1]:+.3f}]"
                    + ("" if x.get("control_passed", True) else " (control failed)")
                    for x in cell
                )
                + " |"
            )
        lines += (["", f"![{name}]({Path(mp['plot']).name})"] if mp.get("plot") else []) + [""]
    return lines


def _claim_section(c: dict) -> list[str]:
    ctl, ov = c["control"], c.get("overlap")
    lines = [
        f"### {c['paper']} — **{c['verdict']}**",
        "",
        c["claim"],
        "",
        f"Control: {ctl['name']} = {ctl['value']:.4f} (threshold {ctl['threshold']:.3f}) — "
        f"{'passed' if ctl['passed'] else 'FAILED'}; {ctl['detail']}.",
        "",
    ]
    if ov:
        lines += [
            f"Overlap control: {ov['name']} = {ov['value']:.0%} (threshold {ov['threshold']:.0%}) — "
            f"{'passed' if ov['passed'] else 'FAILED'}; {ov['detail']}.",
            "",
        ]
    if "effect_of_interest" in c:
        lines += [
            f"Effect of interest {c['effect_of_interest']:g}; MDE {fmt_num(c['mde'], 4)}"
            + (": underpowered" if not c["mde"] <= c["effect_of_interest"] else "")
            + (
                f" (at the level of Holm's first step over the report: {fmt_num(c['mde_report'], 4)})"
                if "mde_report" in c
                else ""
            )
            + ".",
            "",
        ]
    return lines + [f"- {fmt_comparison(d)}" for d in c["comparisons"]] + [""]


def write_report(results: dict, path: Path) -> str:
    lines = [
        *_header_lines(results),
        *_provenance_lines(results),
        "## Verdicts",
        "",
        *[f"- **{k}** — {v}." for k, v in VERDICTS.items()],
        "",
        *_method_lines(),
        *_power_lines(results),
        *_noise_lines(results),
        *_ratio_lines(results),
        "## Claims",
        "",
        *[f"- **{c['verdict']}** — {c['claim']}" for c in results["claims"]],
        "",
        "In plain words:",
        "",
        plain_summary(results),
        "",
    ]
    for c in results["claims"]:
        lines += _claim_section(c)
    lines += _map_lines(results)
    if results.get("selection"):
        lines += ["## Own parameters chosen on the validation seeds", ""]
        lines += [
            f"- {k}: {v['param']} = {v['chosen']:g} from {v['grid']} ({v['criterion']}; scores "
            f"{', '.join(f'{g}: {s:+.4f}' for g, s in v['validation_scores'].items())})"
            for k, v in results["selection"].items()
        ] + [""]
    lines += [
        "## Test runs (means over test seeds)",
        "",
        "| " + " | ".join(c.replace("|", "\\|") for c in RUN_COLUMNS) + " |",  # a pipe would split the column
        "|" + "---|" * len(RUN_COLUMNS),
    ]
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
    console.print(
        f"plots: {', '.join(files['plots'])}\nreport: {files['report']}\nresults: {files['results']}", soft_wrap=True
    )  # paths whole, never folded
    print_tables(results, console)  # last: it ends with what the run shows, in plain words
    return results


def command_text(results: dict) -> str:
    """command.txt: the command that made the results, then each worker's (from the record, never by hand)."""
    p = results.get("provenance") or {}
    lines = [
        f"# made at commit {p.get('commit')} (dirty: {p.get('dirty')}), {p.get('started')} – {p.get('finished')}",
        results["command"],
    ]
    lines += [
        f"# job: {j['command']} (scenarios {', '.join(j['scenarios'] or ['all'])}, {j['seconds'] / 60:.1f} min)"
        for j in results.get("jobs", [])
    ]
    if results.get("maps_command"):  # the maps profile, run later into the same folder
        m = results.get("maps_provenance") or {}
        lines += [
            f"# maps made at commit {m.get('commit')} (dirty: {m.get('dirty')}), {m.get('started')} – {m.get('finished')}",
            results["maps_command"],
        ]
    return "\n".join(lines) + "\n"
