"""Preference metrics per group and per source of the held-out pairs, and the worst group.

A robust method is judged by its worst group as much as by its average, so every pair is
scored once (:func:`dralign.eval.evaluate.pair_rewards`) and the same rewards are split by the
row's ``group`` (or ``source``) column: accuracy, margin and calibration (ECE, Brier) with
95 % bootstrap intervals per name (:func:`dralign.eval.evaluate.preference_metrics`), and
the length controls (:mod:`dralign.lengths`) of each name's pairs.

Rows without a group are never dropped: they form the bucket :data:`NO_GROUP` and are counted
(``without``), but they are not a group, so they cannot be the worst one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..lengths import LENGTH_TOLERANCE, completion_lengths, length_report, outcomes

__all__ = ["NO_GROUP", "breakdown", "labels_of", "preference_report", "report_scores", "worst_name"]

NO_GROUP = "(none)"  # the bucket of rows without a group / source


def labels_of(data, column: str) -> list[str | None]:
    """The ``group`` or ``source`` name of every example of `data` (a
    :class:`dralign.data.PreferenceData`), None where the row has none."""
    if column not in ("group", "source"):
        raise ValueError(f"column must be 'group' or 'source', got {column!r}")
    names = data.group_names if column == "group" else data.source_names
    return [names[i] if i >= 0 else None for i in (getattr(e, column) for e in data.examples)]


def worst_name(metrics: dict[str, dict]) -> str | None:
    """The named group with the lowest accuracy (ties: the lower mean margin, then the name);
    None when there is no named group. The :data:`NO_GROUP` bucket is never the worst group."""
    named = [(m["accuracy"].mean, m["margin"].mean, name) for name, m in metrics.items() if name != NO_GROUP]
    return min(named)[2] if named else None


def breakdown(
    reward_chosen: Any,
    reward_rejected: Any,
    labels: Sequence[str | None],
    *,
    order: Sequence[str] = (),
    seed: int = 0,
    ece_bins: int = 10,
    lengths: tuple[Any, Any] | None = None,
    tolerance: float = LENGTH_TOLERANCE,
) -> dict:
    """Preference metrics of the pairs of each name in `labels` (None = no name).

    Returns ``{"by": {name: metrics}, "worst": name | None, "without": k}``: `metrics` is
    :func:`preference_metrics` of that name's pairs, with ``length`` (:func:`dralign.lengths.
    length_report` of its pairs at `tolerance`) when `lengths` = (L⁺, L⁻) are given; names come
    in `order` first (e.g. the data's group numbering), then any others sorted, then
    :data:`NO_GROUP` when ``k > 0`` rows have no name. Every pair is in exactly one bucket (the
    sizes add up to n).
    """
    from .evaluate import preference_metrics

    chosen = np.asarray(reward_chosen, dtype=np.float64).reshape(-1)
    rejected = np.asarray(reward_rejected, dtype=np.float64).reshape(-1)
    keys = [NO_GROUP if name is None else str(name) for name in labels]
    if not len(keys) == chosen.size == rejected.size:
        raise ValueError(f"{len(keys)} labels for {chosen.size} chosen and {rejected.size} rejected rewards")
    present = set(keys)
    names = [n for n in dict.fromkeys(map(str, order)) if n in present and n != NO_GROUP]
    names += sorted(present - set(names) - {NO_GROUP})
    if NO_GROUP in present:
        names.append(NO_GROUP)
    index = np.asarray(keys, dtype=object)
    by = {}
    for name in names:
        mask = index == name
        by[name] = preference_metrics(chosen[mask], rejected[mask], seed=seed, ece_bins=ece_bins)
        if lengths is not None:
            by[name]["length"] = length_report(
                outcomes(chosen[mask] - rejected[mask]),
                lengths[0][mask],
                lengths[1][mask],
                tolerance=tolerance,
                seed=seed,
            )
    return {"by": by, "worst": worst_name(by), "without": int(sum(k == NO_GROUP for k in keys))}


def report_scores(data, scores, *, seed: int = 0, ece_bins: int = 10, tolerance: float = LENGTH_TOLERANCE) -> dict:
    """Everything `dralign eval --data` reports on held-out pairs, from their scores (a
    :class:`dralign.eval.evaluate.PairScores` of `data`):

    * ``preference``: :func:`preference_metrics` of all pairs, ``beta`` and ``length`` (the
      length controls, :func:`dralign.lengths.length_report` at `tolerance`);
    * when any row has a group: ``groups`` (name → metrics with their ``length``, rows without
      a group under :data:`NO_GROUP`), ``worst_group`` (:func:`worst_name`) and
      ``rows_without_group``;
    * the same for sources: ``sources``, ``worst_source``, ``rows_without_source``.
    """
    from .evaluate import preference_metrics

    chosen, rejected = scores.reward_chosen, scores.reward_rejected
    lengths = completion_lengths(data)
    pref = preference_metrics(chosen, rejected, seed=seed, ece_bins=ece_bins)
    pref.update(
        beta=float(scores.beta),
        length=length_report(outcomes(chosen - rejected), *lengths, tolerance=tolerance, seed=seed),
    )
    out: dict = {"preference": pref}
    for column, names in (("group", data.group_names), ("source", data.source_names)):
        if names:  # the column exists in the data: report it, rows without a value included
            split = breakdown(
                chosen,
                rejected,
                labels_of(data, column),
                order=names,
                seed=seed,
                ece_bins=ece_bins,
                lengths=lengths,
                tolerance=tolerance,
            )
            out[f"{column}s"] = split["by"]
            out[f"worst_{column}"] = split["worst"]
            out[f"rows_without_{column}"] = split["without"]
    return out


def preference_report(
    model,
    reference,
    data,
    *,
    beta: float,
    batch_size: int = 32,
    seed: int = 0,
    ece_bins: int = 10,
    prefix_sharing: bool = False,
    tolerance: float = LENGTH_TOLERANCE,
) -> dict:
    """:func:`report_scores` of :func:`dralign.eval.evaluate.score_pairs` (one scoring pass;
    `prefix_sharing`: the batch layout)."""
    from .evaluate import score_pairs

    scores = score_pairs(model, reference, data, beta=beta, batch_size=batch_size, prefix_sharing=prefix_sharing)
    return report_scores(data, scores, seed=seed, ece_bins=ece_bins, tolerance=tolerance)
