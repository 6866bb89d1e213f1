"""Summaries of `dralign bench real`: per task, method and held-out set, the accuracy with a
95 % interval beside the two length controls, the same per group, and the worst group.

Intervals: each held-out pair's outcome (1 correct, ½ tie, 0 wrong) is averaged over the seeds
first, then the mean is bootstrapped over pairs (1,000 resamples): the interval covers the
sampling of held-out pairs; the spread over seeds is reported beside it (``seed_accuracy``).
"""

from __future__ import annotations

from dataclasses import asdict

import numpy as np

from dralign.lengths import LENGTH_TOLERANCE, length_report, longer_wins
from dralign.stats import MeanCI

__all__ = ["DEFINITIONS", "accuracy_block", "summarize"]

DEFINITIONS = {
    "accuracy": "share of held-out pairs whose implicit reward β·(log π − log π_ref) is higher for the "
    "chosen response (a tie counts ½); the start model's margin is 0, so it scores 0.5",
    "longer_baseline": "accuracy of picking the response with more completion tokens (a tie counts ½)",
    "length_matched": "pairs with |L+ − L−| ≤ tolerance × max(L+, L−) in completion tokens after "
    "truncation; the accuracy on them cannot come from length alone",
    "chosen_longer": "accuracy on the pairs whose chosen response has more completion tokens (chosen_shorter: fewer; "
    'equal_length: how many have as many); a model that learned only "longer is better" is high on '
    "the first and low on the second",
    "agrees_with_longer": "share of (pair, seed) outcomes equal to the longer-response baseline's",
    "base_logprob": "the start model's summed log-probability prefers the chosen response",
    "interval": "95 % percentile bootstrap over held-out pairs of the per-pair outcome averaged over seeds",
}


def _ci(values) -> dict | None:
    v = np.asarray(values, dtype=np.float64)
    return MeanCI.from_values(v, level=0.95, n_resamples=1000, seed=0).as_dict() if v.size else None


def _as_dicts(block):
    """A :func:`dralign.lengths.length_report` with its MeanCI as plain dicts (results.json)."""
    if isinstance(block, MeanCI):
        return block.as_dict()
    return {k: _as_dicts(v) for k, v in block.items()} if isinstance(block, dict) else block


def accuracy_block(per_seed: list[np.ndarray], lengths, tolerance: float) -> dict:
    """Accuracy of one method on one set of pairs (one outcome array per seed) beside the length
    controls of `dralign eval` (:func:`dralign.lengths.length_report` of the per-pair outcome
    averaged over seeds: the longer-response baseline, length-matched and chosen longer /
    shorter accuracy, with their n)."""
    outcomes = np.stack(per_seed)  # [seeds, pairs]
    mean = outcomes.mean(axis=0)  # per pair, over seeds
    length = _as_dicts(length_report(mean, *lengths, tolerance=tolerance, seed=0))
    return {
        "n": int(mean.size),
        "accuracy": _ci(mean),
        "seed_accuracy": [float(o.mean()) for o in outcomes],
        **{
            k: length[k]
            for k in ("longer_baseline", "length_matched", "chosen_longer", "chosen_shorter", "equal_length")
        },
        # over (pair, seed) outcomes, not their seed mean
        "agrees_with_longer": float((outcomes == longer_wins(*lengths)).mean()),
    }


def _subset(lengths, mask):
    return lengths[0][mask], lengths[1][mask]


def _groups(sets: dict, names: tuple[str, ...], per_set: dict, tolerance: float) -> tuple[dict, str | None]:
    """Per group over the sets `names` (their pairs concatenated): accuracy blocks and the
    worst named group (lowest accuracy)."""
    labels = np.asarray([g if g is not None else "(none)" for n in names for g in sets[n]["groups"]], dtype=object)
    outcomes = [np.concatenate(x) for x in zip(*(per_set[n] for n in names))]
    lengths = tuple(np.concatenate([sets[n]["lengths"][i] for n in names]) for i in (0, 1))
    out = {}
    for g in dict.fromkeys(labels):
        mask = labels == g
        out[g] = accuracy_block([o[mask] for o in outcomes], _subset(lengths, mask), tolerance)
    named = [(b["accuracy"]["mean"], g) for g, b in out.items() if g != "(none)"]
    return out, (min(named)[1] if named else None)


def _set_info(s: dict) -> dict:
    ref_c, ref_r = s["reference"]
    c, r = s["lengths"]
    return {
        **s["info"],
        "mean_tokens_chosen": float(c.mean()),
        "mean_tokens_rejected": float(r.mean()),
        "longer_baseline": _ci(longer_wins(*s["lengths"])),
        "length_matched_n": int(s["matched"].sum()),
        "base_logprob": _ci((ref_c > ref_r) + 0.5 * (ref_c == ref_r)),
        "groups": sorted({g for g in s["groups"] if g is not None}),
    }


def summarize(
    opts, tasks, sets: dict, raw: dict, ratio_info: dict | None, timing: dict, env: dict, model: str, command: str
) -> dict:
    """The results dictionary written to results.json (every key documented in DEFINITIONS)."""
    out_tasks, tolerance = {}, opts.length_tolerance or LENGTH_TOLERANCE
    for task in tasks:
        methods = {}
        for method, per_set in raw.get(task.name, {}).items():
            blocks = {}
            for name in (*task.in_domain, *task.out_of_domain):
                s = sets[name]
                blocks[name] = {
                    "domain": "in" if name in task.in_domain else "out",
                    **accuracy_block(per_set[name], s["lengths"], tolerance),
                }
            groups, worst = _groups(sets, task.in_domain, per_set, tolerance)
            methods[method] = {
                "sets": blocks,
                "groups": groups,
                "worst_group": worst,
                "worst_group_accuracy": groups[worst]["accuracy"] if worst else None,
            }
        out_tasks[task.name] = {
            "question": task.question,
            "train": list(task.train),
            "in_domain": list(task.in_domain),
            "out_of_domain": list(task.out_of_domain),
            "methods": methods,
        }
    return {
        "command": command,
        "model": model,
        "options": asdict(opts),
        "environment": env,
        "definitions": {**DEFINITIONS, "length_tolerance": tolerance},
        "heldout": {n: _set_info(s) for n, s in sets.items()},
        "ratio_fit": ratio_info,
        "tasks": out_tasks,
        "timing": timing,
    }
