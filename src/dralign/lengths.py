"""Length-aware accuracy: the one place where held-out accuracy is put beside length, the first
confounder of preference data. `dralign eval`, the trainer's held-out evaluation and
`dralign bench real` all call these pure functions over per-pair arrays (a layer-1 module, so
that the trainer may call it; :mod:`dralign.eval` re-exports it).

Lengths are completion tokens after truncation (what the model scores): L⁺ of the chosen and
L⁻ of the rejected response. An outcome is 1 when the model prefers the chosen response, ½ on
a tie, 0 otherwise (:func:`outcomes`). Reported beside the accuracy:

* **longer baseline**: the accuracy of "pick the longer response", 1(L⁺ > L⁻) + ½·1(L⁺ = L⁻);
* **length-matched pairs**: those with |L⁺ − L⁻| ≤ ``tolerance`` · max(L⁺, L⁻) (default 10 %);
  the accuracy on them (with their number n) cannot come from length alone;
* **chosen longer / chosen shorter**: the accuracy on the pairs with L⁺ > L⁻ and with L⁺ < L⁻
  (pairs of equal length are in neither; their number is ``equal_length``). A model that only
  learned "longer is better" scores high on the first and low on the second.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from .config import Range, option
from .stats import MeanCI

__all__ = [
    "LENGTH_TOLERANCE",
    "completion_lengths",
    "flat_length_metrics",
    "length_matched",
    "length_report",
    "longer_wins",
    "outcomes",
]

LENGTH_TOLERANCE = 0.10  # |L+ - L-| <= 10 % of the longer one: a "length-matched" pair


def outcomes(margins: Any) -> np.ndarray:
    """Per pair 1(m > 0) + ½·1(m = 0) of the reward margins m = r⁺ − r⁻ (float64 [n])."""
    m = np.asarray(margins, dtype=np.float64).reshape(-1)
    return (m > 0) + 0.5 * (m == 0)


def completion_lengths(data) -> tuple[np.ndarray, np.ndarray]:
    """Token lengths (L⁺, L⁻), int64 [n], of the chosen and rejected completions of every pair
    of `data` (a paired :class:`dralign.data.PreferenceData`), after truncation."""
    chosen = np.array([len(e.chosen_ids) for e in data.examples], dtype=np.int64)
    rejected = np.array([len(e.rejected_ids) for e in data.examples], dtype=np.int64)
    return chosen, rejected


def longer_wins(chosen_len: Any, rejected_len: Any) -> np.ndarray:
    """Per pair the "pick the longer response" outcome: 1(L⁺ > L⁻) + ½·1(L⁺ = L⁻)."""
    c, r = np.asarray(chosen_len), np.asarray(rejected_len)
    return (c > r) + 0.5 * (c == r)


def length_matched(chosen_len: Any, rejected_len: Any, tolerance: float = LENGTH_TOLERANCE) -> np.ndarray:
    """Boolean mask of the pairs with |L⁺ − L⁻| ≤ tolerance · max(L⁺, L⁻)."""
    if not 0.0 <= tolerance < 1.0:
        raise ValueError(f"the length tolerance must lie in [0, 1), got {tolerance}")
    c, r = np.asarray(chosen_len, dtype=np.int64), np.asarray(rejected_len, dtype=np.int64)
    return np.abs(c - r) <= tolerance * np.maximum(c, r)


def _bootstrap(seed: int) -> Callable[[np.ndarray], MeanCI | None]:
    """MeanCI of a subset's outcomes (95 %, 1,000 resamples), None for an empty subset."""
    return lambda v: MeanCI.from_values(v, seed=seed) if v.size else None


def length_report(
    outcome: Any, chosen_len: Any, rejected_len: Any, *, tolerance: float = LENGTH_TOLERANCE, seed: int = 0
) -> dict:
    """The length controls of one set of pairs, each with a 95 % bootstrap interval over pairs.

    `outcome` [n]: the per-pair outcome (1, ½, 0; or its mean over seeds). Returns
    ``tolerance``; ``longer_baseline`` (MeanCI); ``length_matched``, ``chosen_longer`` and
    ``chosen_shorter``, each ``{"n": pairs, "accuracy": MeanCI | None}`` (None when n = 0);
    ``equal_length`` (pairs with L⁺ = L⁻); ``agrees_with_longer`` (share of outcomes equal to
    the longer baseline's; None for no pair).
    """
    o = np.asarray(outcome, dtype=np.float64).reshape(-1)
    c, r = np.asarray(chosen_len).reshape(-1), np.asarray(rejected_len).reshape(-1)
    if not o.size == c.size == r.size:
        raise ValueError(f"{o.size} outcomes for {c.size} chosen and {r.size} rejected lengths")
    ci, longer = _bootstrap(seed), longer_wins(c, r)

    def subset(mask: np.ndarray) -> dict:
        return {"n": int(mask.sum()), "accuracy": ci(o[mask])}

    return {
        "tolerance": float(tolerance),
        "longer_baseline": ci(longer.astype(np.float64)),
        "length_matched": subset(length_matched(c, r, tolerance)),
        "chosen_longer": subset(c > r),
        "chosen_shorter": subset(c < r),
        "equal_length": int((c == r).sum()),
        "agrees_with_longer": float((o == longer).mean()) if o.size else None,
    }


def flat_length_metrics(report: dict, prefix: str = "") -> dict[str, float]:
    """A :func:`length_report` as flat scalars (for `metrics.jsonl`): ``longer_baseline``,
    ``length_matched_accuracy`` / ``_n``, ``chosen_longer_accuracy`` / ``_n``,
    ``chosen_shorter_accuracy`` / ``_n``; an accuracy over no pair is NaN."""
    out = {f"{prefix}longer_baseline": _mean(report["longer_baseline"])}
    for key in ("length_matched", "chosen_longer", "chosen_shorter"):
        out[f"{prefix}{key}_accuracy"] = _mean(report[key]["accuracy"])
        out[f"{prefix}{key}_n"] = report[key]["n"]
    return out


def _mean(ci: MeanCI | None) -> float:
    return float("nan") if ci is None else float(ci.mean)


def held_out_length_metrics(rows: dict, data, *, tolerance: float, seed: int) -> dict:
    """The trainer's length controls of its held-out pairs, as `dralign eval` reports them:
    eval/length/longer_baseline, …_accuracy and …_n of the length-matched, chosen-longer and
    chosen-shorter pairs; the same per group and per source under eval/length/group/NAME/… and
    eval/length/source/NAME/…. `rows`: the scorer's per-row values (policy and reference
    log-probs) in the order of `data.examples`. Unpaired data has no pairs: {}."""
    if "policy_chosen" not in rows:
        return {}
    u = (rows["policy_chosen"] - rows["ref_chosen"]) - (rows["policy_rejected"] - rows["ref_rejected"])
    o, lengths = outcomes(u.double().numpy()), completion_lengths(data)
    out = flat_length_metrics(length_report(o, *lengths, tolerance=tolerance, seed=seed), prefix="eval/length/")
    for column, names in (("group", data.group_names), ("source", data.source_names)):
        ids = np.array([getattr(e, column) for e in data.examples])
        for i, name in enumerate(names):  # rows without a value are in the overall numbers only
            if (mask := ids == i).any():
                report = length_report(o[mask], lengths[0][mask], lengths[1][mask], tolerance=tolerance, seed=seed)
                out.update(flat_length_metrics(report, prefix=f"eval/length/{column}/{name}/"))
    return out


@dataclass
class LengthOption:
    """The length-matching tolerance: a config section part that `dralign train` (its held-out
    evaluation) and `dralign eval` both compose, so the option is declared once."""

    length_tolerance: float = option(
        LENGTH_TOLERANCE,
        "a held-out pair is length-matched when its chosen and rejected completions differ by at most this fraction of the longer one, in tokens (the length-matched accuracy; eval/length/* in training)",
        Range(0, 1, high_open=True),
    )
