"""Per-row metadata the objectives read: weight, group, source, and DoRA's density ratio.

The one place both the native trainer and the TRL bridge (`dralign.integrations.trl`) take
these semantics from, so the two cannot disagree:

- group and source numbering (`number_names`): names fixed first (a training set's, so that
  held-out data uses the same ids), then new names in one order: integer names numerically,
  then the others as strings ("2" < "10" < "a"). Integer groups in a column are names too.
  Held-out groups are numbered with `extend=False`: a group unseen in training is "no group"
  (−1), since a group-robust objective has no weight for it.
- weights: w ≥ 0 per row, 1 when absent (`has_weights`).
- groups: a method that uses groups needs one on every row (`require_groups`).
- DoRA's calibration weight (`density_ratios`, `row_ratio`): h = ``ratio`` when the row gives
  it, else h = ``target_prob`` / π_T with π_T = P(target) the target prior of the *training*
  mixture, estimated as the mean ``target_prob`` of the training rows (a calibrated
  classifier's mean equals the prior). See docs/design.md, "The objective algebra" (DoRA).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import torch

from .examples import RowMeta
from .report import DataError


def _name_order(name: str) -> tuple:
    """Sort key: integer names numerically first, then the others as strings."""
    text = name.lstrip("-")
    return (0, int(name), "") if text.isdigit() else (1, 0, name)


def number_names(
    known: Sequence[str], new: Iterable[object], *, extend: bool = True
) -> tuple[list[str], dict[str, int]]:
    """(names, name → id): `known` keep their ids 0..k−1; the other names among `new` (None
    skipped; values compared as ``str``) follow in `_name_order`, or, with `extend=False`,
    get no id (the caller reads a missing name as "no group")."""
    names = [str(n) for n in known]
    if not extend:  # held-out rows: the training set's groups are all the objective knows
        return names, {n: i for i, n in enumerate(names)}
    added = sorted({str(n) for n in new if n is not None} - set(names), key=_name_order)
    names = [*names, *added]
    return names, {n: i for i, n in enumerate(names)}


def has_weights(examples: Sequence[RowMeta]) -> bool:
    """Whether any row carries a data weight other than 1."""
    return any(e.weight != 1.0 for e in examples)


def require_groups(
    examples: Sequence[RowMeta], group_names: Sequence[str], *, column: str = "group", method: str = "the method"
) -> int:
    """The number of groups; DataError naming the first row without a group."""
    missing = [e for e in examples if e.group < 0]
    if missing:
        e = missing[0]
        raise DataError(
            f"{e.file} row {e.row}: field '{column}': {method} needs a group for every "
            f"row ({len(missing)} rows lack one)"
        )
    return len(group_names)


def target_prior(target_probs: Iterable[float]) -> float:
    """π_T estimated as the mean target probability of the training rows; ValueError when the
    mean is not positive (no target rows) or a value is outside [0, 1]."""
    values = [float(p) for p in target_probs]
    if any(not 0.0 <= p <= 1.0 for p in values):
        raise DataError("target_prob: a value is not in [0, 1]")
    prior = sum(values) / len(values) if values else 0.0
    if not prior > 0:
        raise DataError(
            "target_prob averages to 0 over the training rows: no target rows, so no density ratio can be formed"
        )
    return prior


def row_ratio(ratio: float | None, target_prob: float | None, prior: float | None) -> float | None:
    """h of one row: `ratio` when given, else `target_prob` / `prior`; None when neither."""
    if ratio is not None:
        return float(ratio)
    if target_prob is None:
        return None
    if prior is None:
        raise DataError(
            "a row gives target_prob but no target prior is known (the training rows "
            "give ratios only); give this data a ratio column too"
        )
    return float(target_prob) / prior


def density_ratios(
    examples: Sequence[RowMeta], prior: float | None = None, *, column: str = "ratio"
) -> tuple[torch.Tensor, float | None]:
    """(h [n] float32, π_T) for DoRA: per row `row_ratio`.

    `prior` None: these are training rows, and π_T is estimated from those that give a
    target_prob (None when every row gives a ratio). Held-out rows pass the training π_T:
    the prior is a property of the training mixture, not of the rows being scored.
    DataError naming the first row that has neither a ratio nor a target_prob, and DataError
    naming `column` when every training row's h is 0 (every weight 0: nothing would train).
    """
    missing = [e for e in examples if e.ratio is None and e.target_prob is None]
    if missing:
        e = missing[0]
        raise DataError(
            f"{e.file} row {e.row}: the method needs a density ratio per row (`ratio` "
            f"or `target_prob` column; see `dralign ratio fit`); {len(missing)} rows "
            "lack both"
        )
    # held-out rows keep the training π_T: the prior is a property of the training mixture
    training = prior is None
    if prior is None and any(e.ratio is None for e in examples):
        prior = target_prior(e.target_prob for e in examples if e.target_prob is not None)
    given = [row_ratio(e.ratio, e.target_prob, prior) for e in examples]
    h = [x for x in given if x is not None]
    assert len(h) == len(given), "rows with neither a ratio nor a target_prob were refused above"
    if not all(math.isfinite(x) for x in h):
        raise DataError("a density ratio is not finite")
    if training and h and not any(h):  # DoRA's loss and gradient would be 0 at every step
        raise DataError(
            f"{examples[0].file}: column '{column}': every row's density ratio is 0, "
            "so every weight is 0 and nothing would train (see `dralign ratio fit`)"
        )
    return torch.tensor(h, dtype=torch.float32), prior
