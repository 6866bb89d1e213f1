"""Advice: finding → recommendation → the evidence for it.

Each rule reads the measured sections and, when it fires, names the claims of the shift-world
benchmark it rests on with their verdicts (`dralign.diagnosis.evidence`), and where a map of
the benchmark covers it the map's cells nearest to the data (`cite_map`), or says there is no
evidence in this project yet. A recommendation whose evidence contradicts it is never made:
the item keeps its finding and says why nothing is recommended (`_guard`).

Thresholds are constants below; each says whether it comes from the evidence or is a
judgement (the benchmark tests methods at one condition each, so no threshold can be derived
from it: where a rule cites it, the finding says at which condition it was tested)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from .evidence import NO_EVIDENCE

PROMPTS_CUT = 0.05  # judgement: more than 5 % of prompts cut loses context the labels depend on
COMPLETIONS_CUT = 0.05  # judgement: likewise for responses (the part DPO scores)
DUPLICATES = 0.01  # judgement: 1 % extra copies start to re-weight the data noticeably
FLIP_LOWER_BOUND = 0.01  # judgement: contradictions in ≥ 1 % of rows (a lower bound on flips)
LABEL_SIGNAL_HIGH = 0.45  # judgement: the interval of "prefers chosen" lies below 0.45
GROUP_SIGNAL_GAP = 0.10  # judgement: a group 0.1 from the rest, intervals apart
IMBALANCE = 3.0  # judgement: the largest group three times the smallest
SEPARABLE_AUC = 0.70  # judgement: below it the ratios stay near 1 and DoRA is close to KL-DRO
LENGTH_BIAS = 0.60  # judgement: the longer-response baseline's interval above 0.6 (or below 0.4)


@dataclass
class Advice:
    """One item: what was measured, what to do, on which evidence, under which threshold."""

    rule: str
    finding: str
    recommendation: str
    evidence: list[dict] | str
    threshold: str

    def as_dict(self) -> dict:
        return {
            "rule": self.rule,
            "finding": self.finding,
            "recommendation": self.recommendation,
            "evidence": self.evidence,
            "threshold": self.threshold,
        }


def cite(evidence: dict, scenario: str, mentions: str = "") -> list[dict] | str:
    """[{claim, verdict, statement}] of the claims of `scenario` whose paper or statement
    mentions `mentions`; `NO_EVIDENCE` when there are none."""
    found = [
        {"claim": cid, "verdict": c["verdict"], "statement": c["claim"]}
        for cid, c in evidence.get("claims", {}).items()
        if c["scenario"] == scenario and mentions in f"{c['paper']} {c['claim']}"
    ]
    return found or NO_EVIDENCE


def cite_map(evidence: dict, name: str, axis: str, measured: float) -> dict:
    """The row of map `name`'s cells nearest to `measured` on its axis `axis` (the other axis
    unknown from the data, so the whole row): {map, metric, axis, row, measured, verdict, cells:
    [{the other coordinates, gain, ci, seeds, control_passed}], note}. The verdict reads the
    cells whose control passed and whose interval is known: "supported" (every interval above
    0), "contradicted" (every one below), "depends on the other axis", "no valid cell"; it is
    `NO_EVIDENCE` (and cells empty) when the evidence has no such map."""
    m = (evidence.get("maps") or {}).get(name)
    if not m or not m.get("cells") or axis not in m.get("axes", {}):
        return {"map": name, "axis": axis, "measured": round(measured, 3), "verdict": NO_EVIDENCE, "cells": []}
    values = m["axes"][axis]
    row = min(values, key=lambda v: abs(v - measured))
    cells = [
        {
            **{a: v for a, v in c["coords"].items() if a != axis},
            "gain": c["gain"],
            "ci": c["ci"],
            "seeds": c["seeds"],
            "control_passed": c["control_passed"],
        }
        for c in m["cells"]
        if c["coords"].get(axis) == row
    ]
    valid = [c["ci"] for c in cells if c["control_passed"] and None not in c["ci"]]
    verdict = (
        "no valid cell"
        if not valid
        else "supported"
        if all(lo > 0 for lo, _ in valid)
        else "contradicted"
        if all(hi < 0 for _, hi in valid)
        else "depends on the other axis"
    )
    note = (
        ""
        if min(values) <= measured <= max(values)
        else (
            f"the measured {measured:.2f} lies outside the map's {min(values):g}-{max(values):g}: "
            "the nearest row is cited"
        )
    )
    return {
        "map": name,
        "metric": m["metric"],
        "axis": axis,
        "row": row,
        "measured": round(measured, 3),
        "verdict": verdict,
        "cells": cells,
        "note": note,
    }


def describe(entry: dict) -> str:
    """One line of an evidence entry: a claim and its verdict, or a map's row of cells."""
    if "claim" in entry:
        return f"{entry['claim']}: {entry['verdict']}"
    if not entry["cells"]:
        return f"map {entry['map']}: {entry['verdict']}"
    cells = ", ".join(
        " ".join(f"{k} {v:g}" for k, v in c.items() if k not in ("gain", "ci", "seeds", "control_passed"))
        + (
            f" {c['gain']:+.3f} [{c['ci'][0]:+.3f}, {c['ci'][1]:+.3f}]"
            if None not in (c["gain"], *c["ci"])
            else " no value"
        )
        + ("" if c["control_passed"] else " (control failed)")
        for c in entry["cells"]
    )
    return (
        f"map {entry['map']} at {entry['axis']} {entry['row']:g} (measured {entry['measured']:.2f}), "
        f"gain in {entry['metric']}: {cells}: {entry['verdict']}" + (f"; {entry['note']}" if entry["note"] else "")
    )


def _guard(item: Advice) -> Advice:
    """`item`, or with no recommendation when a cited claim's or map row's verdict is
    "contradicted"."""
    if isinstance(item.evidence, str):
        return item
    against = [
        e.get("claim") or f"map {e['map']} at {e['axis']} {e['row']:g}"
        for e in item.evidence
        if e["verdict"] == "contradicted"
    ]
    if against:
        item.recommendation = (
            f"none: the evidence contradicts the usual remedy ({', '.join(against)}); look at the data by hand"
        )
    return item


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _cuts(m: dict, ev: dict) -> Advice | None:
    lengths, kept = m["lengths"], m["rows"]["kept"]
    if lengths["prompts_cut"] is None or not kept:
        return None
    p, c = lengths["prompts_cut"] / kept, lengths["completions_cut"] / kept
    if p <= PROMPTS_CUT and c <= COMPLETIONS_CUT:
        return None
    return Advice(
        "max_length",
        f"--max-length {lengths['max_length']} cuts {_pct(p)} of prompts and {_pct(c)} of completions",
        "train with a larger --max-length (or a smaller --max-prompt-length when only prompts are long)",
        NO_EVIDENCE,
        f"fires above {_pct(PROMPTS_CUT)} of prompts or {_pct(COMPLETIONS_CUT)} of completions cut (a judgement)",
    )


def _duplicates(m: dict, ev: dict) -> Advice | None:
    exact = m["duplicates"]["exact"]
    if exact["fraction"] < DUPLICATES:
        return None
    return Advice(
        "duplicates",
        f"{exact['extra_copies']} rows ({_pct(exact['fraction'])}) repeat "
        "another row's prompt, chosen and rejected exactly",
        "deduplicate: every copy is trained on, so repeated pairs weigh more",
        NO_EVIDENCE,
        f"fires at {_pct(DUPLICATES)} extra copies (a judgement)",
    )


def _flips(m: dict, ev: dict) -> Advice | None:
    con = m["duplicates"]["contradictory"]
    eps = con["flip_rate_lower_bound"]
    if eps < FLIP_LOWER_BOUND:
        return None
    tested = ev.get("conditions", {}).get("flip_rate")
    return _guard(
        Advice(
            "label_noise",
            f"{con['pairs']} pairs appear with chosen and rejected swapped ({con['rows']} "
            f"rows): at least {_pct(eps)} of the labels are flipped",
            f"rDPO with ε estimated, at least the lower bound: --method rdpo --label-smoothing "
            f"{math.ceil(100 * eps) / 100:.2f} (or cDPO); evaluate on de-duplicated, consistent pairs",
            cite(ev, "flips", "rDPO"),
            f"fires at a {_pct(FLIP_LOWER_BOUND)} lower bound (a judgement)"
            + (f"; the evidence was measured at a {_pct(tested)} flip rate" if tested else ""),
        )
    )


def _signal(m: dict, ev: dict) -> Advice | None:
    signal = m.get("label_signal")
    if not signal:
        return None
    overall = signal["prefers_chosen_per_token"]
    if overall.high < LABEL_SIGNAL_HIGH:
        return _guard(
            Advice(
                "label_signal",
                f"{signal['model']} prefers the chosen response on only {overall} of "
                "pairs (per-token log-probs): the labels contradict the model",
                "check the labels' orientation; if they are right but noisy, rDPO or cDPO with ε estimated",
                cite(ev, "flips", "rDPO"),
                f"fires when the 95% interval lies below {LABEL_SIGNAL_HIGH} (a judgement)",
            )
        )
    outliers = [
        name
        for name, g in signal.get("by_group", {}).items()
        if abs(g["prefers_chosen_per_token"].mean - overall.mean) >= GROUP_SIGNAL_GAP
        and (g["prefers_chosen_per_token"].high < overall.low or g["prefers_chosen_per_token"].low > overall.high)
    ]
    if not outliers:
        return None
    return Advice(
        "group_signal",
        f"the label signal of group(s) {', '.join(outliers)} differs from the rest (overall {overall.mean:.2f})",
        "read a sample of these groups' pairs: their labels or their shift deserve a look; evaluate them separately",
        NO_EVIDENCE,
        f"fires at a gap of {GROUP_SIGNAL_GAP} with disjoint 95% intervals (a judgement)",
    )


def _imbalance(m: dict, ev: dict) -> Advice | None:
    groups = m.get("groups")
    if not groups or groups["count"] < 2 or groups["imbalance"] < IMBALANCE:
        return None
    return Advice(
        "groups",
        f"groups are imbalanced: {groups['largest']} is {groups['imbalance']:.1f}x "
        f"{groups['smallest']} ({groups['count']} groups)",
        "group DRO (--method group-dro) or CVaR (--method cvar), and evaluate the worst "
        "group (`dralign eval --data` reports it)",
        NO_EVIDENCE,
        f"fires at a largest/smallest ratio of {IMBALANCE:g} (a judgement)",
    )


def _sources(m: dict, ev: dict) -> Advice | None:
    s = m.get("sources") or {}
    if s.get("auc") is None or s["auc"] < SEPARABLE_AUC:
        return None
    world = ev.get("density_ratios") or {}
    tested = (
        (
            f"; the evidence's sources scenario had AUC {world['auc']:.2f}, target prior "
            f"{world['prior']:.2f}, ESS {world['ess']:.2f}"
        )
        if world
        else ""
    )
    claims = cite(ev, "sources", "DoRA")
    # the map's human fraction is the target's share of the rows: the fit's target prior
    cell = cite_map(ev, "dora", "human_fraction", s["prior"])
    return _guard(
        Advice(
            "sources",
            f"the sources are separable from the target {', '.join(s['target'])}: cross-fitted "
            f"AUC {s['auc']:.2f}, target prior {s['prior']:.2f}, ESS {s['ess']:.2f}",
            f"DoRA: dralign train --method dora --ratio-target {' '.join(s['target'])}",
            [*(claims if isinstance(claims, list) else []), cell],
            f"fires at AUC {SEPARABLE_AUC} (a judgement){tested}",
        )
    )


def _length(m: dict, ev: dict) -> Advice | None:
    base = m["lengths"]["longer_baseline_accuracy"]
    if base is None or not (base.low > LENGTH_BIAS or base.high < 1 - LENGTH_BIAS):
        return None
    return Advice(
        "length_bias",
        f"picking the longer response is right on {base} of pairs",
        "report the accuracy on length-matched pairs beside every held-out accuracy, "
        "and compare with this baseline (a model can reach it by length alone)",
        NO_EVIDENCE,
        f"fires when the 95% interval lies outside [{1 - LENGTH_BIAS:.1f}, {LENGTH_BIAS}] (a judgement)",
    )


def _leakage(m: dict, ev: dict) -> Advice | None:
    leak = m.get("leakage")
    if not leak or not leak["eval_rows_with_shared_prompt"]:
        return None
    return Advice(
        "leakage",
        f"{leak['eval_rows_with_shared_prompt']} held-out rows ({_pct(leak['fraction'])}) "
        f"share their prompt with the training data ({leak['shared_pairs']} whole pairs)",
        "remove those rows from the held-out set: they overstate held-out accuracy",
        NO_EVIDENCE,
        "fires on any shared prompt",
    )


RULES: tuple[Callable[[dict, dict], Advice | None], ...] = (
    _leakage,
    _flips,
    _signal,
    _duplicates,
    _sources,
    _imbalance,
    _length,
    _cuts,
)


def advise(measured: dict, evidence: dict) -> list[Advice]:
    """The advice items every rule gives on the `measured` sections (in the rules' order)."""
    return [item for rule in RULES if (item := rule(measured, evidence)) is not None]
