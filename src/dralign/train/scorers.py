"""Scorers: what differs between paired and unpaired data, chosen once at setup.

A scorer turns a collated batch into the objective's inputs. It owns the batch layout
(collation), the policy's values in the objective's units (summed or length-normalised
completion log-probs), the reference's values, and the per-row metadata (weight, group,
density ratio). The gradient strategies only see

    values = scorer.policy_values(model, batch)          differentiable, one tensor per kind of row
    rows   = scorer.rows(values, batch, side)            per-row tensors (policy, reference, metadata)
    args, meta = scorer.arguments(rows)                  Objective(*args, **meta)
    out, coefs = scorer.coefficients(objective, rows)    ∂L/∂values, aligned with `values`

so a strategy never asks which kind of data it trains on.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from ..data import PreferenceData
from ..data.collate import collate_pairs, collate_shared_pairs, collate_unpaired
from ..errors import BadInputError
from ..modeling import (
    CachedReference,
    Reference,
    SequenceLogps,
    choose_packing,
    choose_prefix_sharing,
    pair_logps,
    score_rows,
    sequence_logps,
)
from ..objectives import Objective


class ScoringError(BadInputError):
    """A batch cannot be scored by the objective; the message says why and what to do."""


@dataclass
class DataSide:
    """One dataset (training or held-out) with what scoring it needs: its reference and, for
    DoRA-style objectives, its density ratios h (indexed by example index)."""

    data: PreferenceData
    reference: Reference | CachedReference
    ratio: torch.Tensor | None = None


class PairedScorer:
    """Preference pairs: values (chosen [B], rejected [B]); prefix-shared or plain layout."""

    def __init__(self, objective: Objective, *, prefix_sharing: bool, weighted: bool, packing: bool = False):
        self.objective, self.prefix_sharing, self.weighted = objective, prefix_sharing, weighted
        self.packing = packing  # several prefix-shared pairs a row (padding-free)
        self.length_normalize = objective.length_normalize

    def collate(self, data: PreferenceData, indices: list[int]) -> dict:
        examples = [data.examples[i] for i in indices]
        if self.prefix_sharing:
            return collate_shared_pairs(examples, data.pad_token_id, pack=self.packing)
        return collate_pairs(examples, data.pad_token_id)

    def check_batch(self, data: PreferenceData, indices: list[list[int]], step: int) -> None:
        """Nothing to check: every pair is self-contained."""

    def policy_values(self, model, batch: dict) -> tuple[torch.Tensor, ...]:
        return pair_logps(model, batch).reduce(self.length_normalize)

    def reference_values(self, side: DataSide, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        return side.reference.logps(batch).reduce(self.length_normalize)

    def rows(self, values, batch: dict, side: DataSide) -> dict[str, torch.Tensor]:
        rc, rr = self.reference_values(side, batch)
        rows = {
            "policy_chosen": values[0],
            "policy_rejected": values[1],
            "ref_chosen": rc.float(),
            "ref_rejected": rr.float(),
        }
        rows.update(self.metadata(batch, side))
        return rows

    def metadata(self, batch: dict, side: DataSide) -> dict[str, torch.Tensor]:
        meta = {}
        if self.weighted:
            meta["weight"] = batch["weight"]
        if self.objective.uses_group:
            meta["group"] = batch["group"]
        if self.objective.uses_ratio:
            assert side.ratio is not None, "a ratio objective's side carries its ratios (recipe)"
            meta["ratio"] = side.ratio[batch["index"].cpu()].to(batch["index"].device)
        return meta

    @staticmethod
    def arguments(rows: dict) -> tuple[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], dict]:
        args = (rows["policy_chosen"], rows["policy_rejected"], rows["ref_chosen"], rows["ref_rejected"])
        return args, {k: rows[k] for k in ("weight", "group", "ratio") if k in rows}

    def coefficients(self, objective: Objective, rows: dict, *, state: dict | None = None):
        args, meta = self.arguments(rows)
        out, c_chosen, c_rejected = objective.coefficients(*args, **meta, state=state)
        return out, [c_chosen, c_rejected]


class UnpairedScorer:
    """Unpaired completions (prompt, completion, label): values [N]; the objective compares the
    desirable set with the undesirable one, so every sorted set needs both labels."""

    def __init__(self, objective: Objective, *, exact: bool, method: str):
        self.objective, self.exact, self.method = objective, exact, method
        self.length_normalize = objective.length_normalize

    def collate(self, data: PreferenceData, indices: list[int]) -> dict:
        return collate_unpaired([data.examples[i] for i in indices], data.pad_token_id)

    def check_batch(self, data: PreferenceData, micro: list[list[int]], step: int) -> None:
        """Refuse a sorted set that holds one label only (exact: the effective batch; local:
        each micro-batch)."""
        sets = [sum(micro, [])] if self.exact else micro
        for indices in sets:
            labels = [data[i].label for i in indices]
            if all(labels) or not any(labels):
                raise ScoringError(
                    f"step {step + 1}: a {'batch' if self.exact else 'micro-batch'} holds only "
                    f"{'desirable' if all(labels) else 'undesirable'} completions, but {self.method} "
                    "compares the two sets: the data needs both labels, and a larger --batch-size "
                    "(or --global-batch exact) when one label is rare"
                )

    def policy_values(self, model, batch: dict) -> tuple[torch.Tensor]:
        seq = sequence_logps(model, batch["input_ids"], batch["attention_mask"], batch["completion_mask"])
        return (seq.reduce(self.length_normalize),)

    def rows(self, values, batch: dict, side: DataSide) -> dict[str, torch.Tensor]:
        # per row, not split by label: the cache's chosen slots hold each completion's values
        assert isinstance(side.reference, CachedReference), "unpaired data always reads the cache (references.py)"
        ref = side.reference.cache.lookup(batch["index"].cpu())
        ref_values = SequenceLogps(ref.chosen_sum, ref.chosen_count).reduce(self.length_normalize)
        return {"policy": values[0], "ref": ref_values.float().to(values[0].device), "label": batch["label"]}

    @staticmethod
    def arguments(rows: dict) -> tuple[tuple, dict]:
        label = rows["label"]
        policy, ref = rows["policy"], rows["ref"]
        return (policy[label], policy[~label], ref[label], ref[~label]), {}

    def coefficients(self, objective: Objective, rows: dict, *, state: dict | None = None):
        args, _ = self.arguments(rows)
        out, c_chosen, c_rejected = objective.coefficients(*args, state=state)
        coef = torch.zeros_like(rows["policy"])
        coef[rows["label"]], coef[~rows["label"]] = c_chosen, c_rejected
        return out, [coef]


Scorer = PairedScorer | UnpairedScorer


def make_scorer(
    cfg, objective: Objective, model, data: PreferenceData, *, exact: bool, weighted: bool, log=print
) -> Scorer:
    """The scorer of a run, its batch layout chosen once: prefix sharing and packing when they pay
    (`dralign.modeling.prefix_sharing`); ValueError when an explicit `on` cannot be honoured."""
    d = cfg.data
    sharing, why = choose_prefix_sharing(
        d.prefix_sharing,
        model,
        data,
        penalized=objective.penalty is not None,
        unpaired=objective.unpaired,
        penalty_layout=d.penalty_layout,
    )
    if d.prefix_sharing != "off":
        log(f"prefix sharing {'on' if sharing else 'off'} ({why})")
    packing, why = choose_packing(d.packing, sharing)
    if sharing:
        log(f"packing {'on' if packing else 'off'} ({why})")
    if objective.unpaired:
        return UnpairedScorer(objective, exact=exact, method=cfg.method.method)
    return PairedScorer(objective, prefix_sharing=sharing, weighted=weighted, packing=packing)


def evaluate_rows(
    scorer: Scorer,
    model,
    side: DataSide,
    batch_size: int,
    device,
    autocast: Callable | None = None,
    progress: bool = False,
) -> dict[str, torch.Tensor]:
    """Every row of `side` scored without gradients (dropout off), concatenated on the CPU
    (progress: a bar over the batches): `dralign.modeling.score_rows` with the scorer's values."""
    import contextlib

    autocast = autocast or contextlib.nullcontext

    def score(batch: dict) -> dict:
        with autocast():
            values = scorer.policy_values(model, batch)
        return scorer.rows(tuple(v.float() for v in values), batch, side)

    return score_rows(
        len(side.data),
        lambda idx: scorer.collate(side.data, idx),
        score,
        batch_size=batch_size,
        model=model,
        device=device,
        progress=progress,
        description="evaluation",
    )
