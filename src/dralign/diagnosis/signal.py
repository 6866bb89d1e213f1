"""The label signal: how often a model's own log-probabilities prefer the chosen response,
overall, per group and per source, each with a 95 % bootstrap interval.

Per pair: 1(log π(y⁺|x) > log π(y⁻|x)) + ½ on a tie, with summed completion log-probs (the units
of DPO's implicit reward) and per token (summed / completion tokens; less tied to length,
since a longer response has a lower summed log-prob). Far below ½: the labels contradict the
model; a group far from the rest: its labels or its shift deserve a look."""

from __future__ import annotations

import numpy as np

from .measure import NO_NAME, names_of, outcome_ci


def score_pairs(model, data, rows: np.ndarray, batch_size: int, progress: bool):
    """(chosen sum, rejected sum, chosen tokens, rejected tokens) per pair of `rows`, float64,
    by `dralign.modeling.model_logps` (the trainer's and eval's log-probs: eval mode, no
    gradient), with a progress bar over pairs."""
    from ..data.loading import progress_bar
    from ..modeling import model_logps

    parts = []
    with progress_bar("scoring pairs", rows.size, enabled=progress) as advance:
        for start in range(0, rows.size, batch_size):
            idx = rows[start : start + batch_size].tolist()
            out = model_logps(model, data.collate(idx))
            parts.append([t.double().cpu().numpy() for t in out])
            advance(len(idx))
    return tuple(np.concatenate(col) for col in zip(*parts))


def prefers(chosen: np.ndarray, rejected: np.ndarray) -> np.ndarray:
    return (chosen > rejected) + 0.5 * (chosen == rejected)


def _split(values: np.ndarray, labels: np.ndarray, order: list[str], seed: int) -> dict:
    return {name: outcome_ci(values[labels == name], seed) for name in [*order, NO_NAME] if (labels == name).any()}


def label_signal(model, data, *, max_rows: int, batch_size: int, seed: int, progress: bool, model_name: str) -> dict:
    """The `label_signal` section (module docstring) on all pairs, or `max_rows` of them
    sampled with `seed`."""
    rows = np.arange(len(data))
    if 0 < max_rows < rows.size:
        rows = np.sort(np.random.default_rng(seed).choice(rows, max_rows, replace=False))
    cs, rs, cn, rn = score_pairs(model, data, rows, batch_size, progress)
    summed = prefers(cs, rs)
    per_token = prefers(cs / np.maximum(cn, 1), rs / np.maximum(rn, 1))
    out = {
        "model": model_name,
        "pairs_scored": int(rows.size),
        "pairs": len(data),
        "prefers_chosen": outcome_ci(summed, seed),
        "prefers_chosen_per_token": outcome_ci(per_token, seed),
    }
    for column, names in (("group", data.group_names), ("source", data.source_names)):
        if names:
            labels = np.asarray(names_of(data, column), dtype=object)[rows]
            out[f"by_{column}"] = {
                name: {"prefers_chosen": ci, "prefers_chosen_per_token": tok}
                for (name, ci), tok in zip(
                    _split(summed, labels, names, seed).items(), _split(per_token, labels, names, seed).values()
                )
            }
    return out
