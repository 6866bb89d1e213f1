"""The dataset columns that reach the objective inside TRL's `DPOTrainer`, with dralign's own
metadata semantics (`dralign.data.metadata`): group numbering, the target prior, h."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch

from ...data.metadata import number_names, row_ratio, target_prior
from ...errors import BadInputError
from ...objectives import Objective
from .objective import UnsupportedObjectiveError

try:
    import datasets
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("dralign.integrations.trl needs TRL: pip install 'dralign[trl]'") from exc

META_KEYS = {"dralign_weight": "weight", "dralign_group": "group", "dralign_ratio": "ratio"}
"""Batch keys the collator adds → the `Objective` keyword they feed."""


@dataclass
class ObjectiveColumns:
    """The dataset columns that reach the objective and how a list of rows becomes tensors.

    weight:       per-row data weight w ≥ 0 (ℓ_i enters aggregation as w_i·ℓ_i).
    group:        group DRO's group, a name (integers are names too) mapped through `group_ids`,
                  numbered by `dralign.data.metadata.number_names` over the training rows.
    ratio:        DoRA's density ratio h per row.
    target_prob:  P(target | x, y) per row, used when there is no `ratio`: h = p / target_prior,
                  with the training set's prior for every dataset (`dralign.data.metadata`).
    """

    weight: str | None = None
    group: str | None = None
    num_groups: int | None = None  # group DRO's initial state: q uniform over these groups
    ratio: str | None = None
    target_prob: str | None = None
    target_prior: float | None = None
    group_ids: dict[str, int] | None = None

    @property
    def names(self) -> list[str]:
        return [c for c in (self.weight, self.group, self.ratio, self.target_prob) if c]

    def tensors(self, rows: Sequence[Mapping]) -> dict[str, torch.Tensor]:
        """The `dralign_*` batch entries for `rows`."""
        out = {}
        if self.weight:
            out["dralign_weight"] = torch.tensor([self._number(r, self.weight) for r in rows])
        if self.group:
            out["dralign_group"] = torch.tensor([self._group(r) for r in rows], dtype=torch.long)
        if self.ratio:
            out["dralign_ratio"] = torch.tensor([self._number(r, self.ratio) for r in rows])
        elif self.target_prob:
            probs = [self._number(r, self.target_prob) for r in rows]
            if any(not 0.0 <= p <= 1.0 for p in probs):
                raise ValueError(f"column {self.target_prob!r}: a value is not in [0, 1]")
            out["dralign_ratio"] = torch.tensor([row_ratio(None, p, self.target_prior) for p in probs])
        return out

    @staticmethod
    def _number(row, column) -> float:
        value = row.get(column)
        try:
            x = float(value)
        except (TypeError, ValueError):
            raise ValueError(
                f"column {column!r}: a row has {value!r}, not a number; every row needs one for this objective"
            ) from None
        if not math.isfinite(x):
            raise ValueError(f"column {column!r}: a row has the non-finite value {value!r}")
        return x

    def _group(self, row) -> int:
        value, ids = row.get(self.group), self.group_ids or {}
        if value is None or str(value) not in ids:
            raise ValueError(
                f"column {self.group!r}: group {value!r} is not one of the training data's groups ({', '.join(ids)})"
            )
        return ids[str(value)]


def _column_names(dataset) -> list[str]:
    names = getattr(dataset, "column_names", None)
    return list(names) if names is not None else list(next(iter(dataset)).keys())


def _column_values(dataset, column) -> list | None:
    """All values of a column of a map-style dataset (None for an iterable one)."""
    return list(dataset[column]) if isinstance(dataset, datasets.Dataset) else None


def _numbers(values: Sequence, column: str, which: str = "training") -> list[float]:
    """The column's values as numbers; BadInputError naming the first row that has none."""
    out = []
    for i, value in enumerate(values):
        try:
            out.append(ObjectiveColumns._number({column: value}, column))
        except ValueError as err:
            raise BadInputError(f"{which} dataset row {i}: {err}") from None
    return out


def plan_columns(
    objective: Objective,
    train_dataset,
    eval_datasets: Sequence = (),
    *,
    weight_column: str | None = "weight",
    group_column: str | None = "group",
    ratio_column: str | None = "ratio",
    target_prob_column: str | None = "target_prob",
) -> ObjectiveColumns:
    """Which columns the objective reads, checked against the datasets before TRL tokenises.

    `weight` is used whenever the training data has it; `group` and `ratio`/`target_prob` only
    for objectives that use them, and then every dataset must have them. Groups are numbered
    over the training data as `dralign train` numbers them, which also sets group DRO's
    `num_groups`; the target prior is the training data's.
    """
    columns = ObjectiveColumns()
    names = _column_names(train_dataset)
    label = f"objective (coupling={objective.coupling!r}, robust={objective.robust!r})"
    if weight_column and weight_column in names:
        if objective.components.coupling.sorts:
            raise UnsupportedObjectiveError(
                f"the training data has a {weight_column!r} column, but coupling="
                f"{objective.coupling!r} compares sorted quantiles, not rows, so per-row weights "
                "cannot apply. Drop the column, or pass weight_column=None to ignore it"
            )
        columns.weight = weight_column
    if objective.uses_group:
        _plan_groups(columns, train_dataset, names, group_column, label)
    if objective.uses_ratio:
        _plan_ratios(columns, train_dataset, names, ratio_column, target_prob_column, label)
    required = [c for c in (columns.group, columns.ratio or columns.target_prob) if c]
    for dataset in eval_datasets:
        missing = [c for c in required if c not in _column_names(dataset)]
        if missing:
            raise UnsupportedObjectiveError(
                f"{label}: an eval dataset lacks the column(s) {', '.join(map(repr, missing))}"
            )
        for column in filter(None, (columns.ratio, columns.target_prob)):  # checked here, where rows have numbers
            values = _column_values(dataset, column)
            if values is not None:
                _numbers(values, column, "eval")
    return columns


def _plan_groups(
    columns: ObjectiveColumns, train_dataset, names: list[str], group_column: str | None, label: str
) -> None:
    """The group column, its groups numbered over the training data (as `dralign train` does)."""
    if not group_column or group_column not in names:
        raise UnsupportedObjectiveError(
            f"{label} needs a group per row: the training data has no {group_column!r} column "
            "(pass group_column=<its name>)"
        )
    columns.group = group_column
    values = _column_values(train_dataset, group_column)
    if values is None:
        raise UnsupportedObjectiveError(
            f"{label}: numbering the {group_column!r} column's groups needs the whole training "
            "set, which an IterableDataset cannot give; use a map-style datasets.Dataset"
        )
    if None in values:
        raise BadInputError(
            f"training dataset row {values.index(None)}: column "
            f"{group_column!r}: no group (the objective needs one per row)"
        )
    _, columns.group_ids = number_names([], values)
    columns.num_groups = len(columns.group_ids)


def _plan_ratios(
    columns: ObjectiveColumns,
    train_dataset,
    names: list[str],
    ratio_column: str | None,
    target_prob_column: str | None,
    label: str,
) -> None:
    """The ratio column, or the target_prob column with the training data's target prior."""
    if ratio_column and ratio_column in names:
        columns.ratio = ratio_column
        values = _column_values(train_dataset, ratio_column)
        if values is not None and not any(_numbers(values, ratio_column)):
            raise BadInputError(
                f"column {ratio_column!r}: every training row's density ratio "
                "is 0, so every weight is 0 and nothing would train"
            )
    elif target_prob_column and target_prob_column in names:
        values = _column_values(train_dataset, target_prob_column)
        if values is None:
            raise UnsupportedObjectiveError(
                f"{label}: a {target_prob_column!r} column needs the training set's mean as the "
                "target prior, which an IterableDataset cannot give; add a `ratio` column"
            )
        columns.target_prob = target_prob_column
        columns.target_prior = target_prior(_numbers(values, target_prob_column))
    else:
        raise UnsupportedObjectiveError(
            f"{label} needs a density ratio per row: the training data has neither a "
            f"{ratio_column!r} nor a {target_prob_column!r} column (see `dralign ratio fit`)"
        )


class ObjectiveColumnsCollator:
    """Wraps TRL's (or the user's) collator: strips the objective's columns from each row,
    collates the rest with the wrapped collator, then adds them as `dralign_*` tensors, which
    `DPOTrainer` hands to the objective and never to the model."""

    def __init__(self, collator: Callable, columns: ObjectiveColumns):
        self.collator, self.columns = collator, columns

    def __call__(self, rows: list[dict]) -> dict:
        extra = self.columns.tensors(rows)
        strip = set(self.columns.names)
        if strip:
            rows = [{k: v for k, v in row.items() if k not in strip} for row in rows]
        batch = self.collator(rows)
        batch.update(extra)
        return batch


def split_meta(inputs: Mapping) -> tuple[dict, dict]:
    """(TRL's batch without `dralign_*` keys, {objective keyword: tensor})."""
    meta = {name: inputs[key] for key, name in META_KEYS.items() if key in inputs}
    return {k: v for k, v in inputs.items() if k not in META_KEYS}, meta
