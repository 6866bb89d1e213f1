"""Batches: padding and masks (the contract the model code reads), and a deterministic sampler.

`collate_pairs` returns, for B pairs:

- ``input_ids`` LongTensor [2B, L]: rows 0..B−1 prompt+chosen, rows B..2B−1 prompt+rejected,
  right-padded with ``pad_token_id`` to the longest of the 2B sequences;
- ``attention_mask`` LongTensor [2B, L]: 1 on real tokens, 0 on padding;
- ``completion_mask`` BoolTensor [2B, L]: True at t iff ``input_ids[:, t]`` is a completion
  token (its log-prob is read from the logits at t−1; t ≥ 1 always, as prompts are non-empty);
- ``index`` LongTensor [B], ``weight`` FloatTensor [B] (1.0 when absent), ``group``
  LongTensor [B] (−1 when absent), ``ratio`` and ``target_prob`` FloatTensor [B] (NaN when
  absent).

`collate_unpaired` returns the same per sequence for N examples ([N, L] tensors), ``label``
BoolTensor [N] and the same per-example fields.

`collate_shared_pairs` (prefix sharing) puts each pair in ONE row, ``[prompt | chosen |
rejected]``, so the prompt is computed once for both completions:

- ``input_ids`` LongTensor [B, L], right-padded to the longest of the B rows;
- ``attention_mask`` LongTensor [B, L]: 1 on real tokens, 0 on padding (a 2-D padding mask: the
  model's 4-D mask is built from ``segment_ids`` by `dralign.modeling.logps.shared_attention_mask`);
- ``segment_ids`` Int8Tensor [B, L]: `PROMPT` (0), `CHOSEN` (1), `REJECTED` (2), `PAD` (−1).
  A token sees the earlier tokens of the prompt and of its own segment only, so rejected tokens
  never see chosen ones: both completions are scored exactly as in their own sequences;
- ``position_ids`` LongTensor [B, L]: 0..P−1 on the prompt, P.. on the chosen completion and
  P.. again on the rejected one (0 on padding), the positions of the unshared layout;
- ``completion_mask`` BoolTensor [B, L]: True on chosen and rejected tokens;
- ``pair_ids`` LongTensor [B, L]: which pair (its position in `examples`) a token belongs to,
  −1 on padding;
- the per-example fields of `collate_pairs` (in the order of `examples`).

With ``pack=True`` (padding-free packing) a row holds several such pairs one after the other,
up to a token budget (default: the longest pair, so no row is longer than unpacked): R ≤ B rows,
positions restarting at 0 for every pair, and ``pair_ids`` telling the pairs apart; a token
sees only tokens of its own pair (a block-diagonal mask). On GPU with flash attention 🤗
Transformers takes the varlen path from position ids that restart at 0, but the prefix-shared
mask (rejected never sees chosen) is not expressible there, so packing needs SDPA or eager.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from .examples import PairExample, UnpairedExample

# Segment ids of the prefix-shared layout (`collate_shared_pairs`; read by dralign.modeling).
PAD, PROMPT, CHOSEN, REJECTED = -1, 0, 1, 2


def pad_rows(
    sequences: Sequence[tuple[Sequence[int] | torch.Tensor, Sequence[int] | torch.Tensor]],
    pad_token_id: int,
    device: torch.device | str | None = None,
) -> dict[str, torch.Tensor]:
    """Right-pad (prompt, completion) id pairs into the plain layout: `input_ids`,
    `attention_mask` and `completion_mask` [N, L] (L the longest prompt + completion), on
    `device`. Ids may be int sequences or 1-D LongTensors."""
    length = max(len(p) + len(c) for p, c in sequences)
    input_ids = torch.full((len(sequences), length), pad_token_id, dtype=torch.long, device=device)
    attention_mask = torch.zeros((len(sequences), length), dtype=torch.long, device=device)
    completion_mask = torch.zeros((len(sequences), length), dtype=torch.bool, device=device)
    for i, (prompt, completion) in enumerate(sequences):
        n_prompt, n = len(prompt), len(prompt) + len(completion)
        input_ids[i, :n] = torch.cat(
            [
                torch.as_tensor(prompt, dtype=torch.long, device=device),
                torch.as_tensor(completion, dtype=torch.long, device=device),
            ]
        )
        attention_mask[i, :n] = 1
        completion_mask[i, n_prompt:n] = True
    return {"input_ids": input_ids, "attention_mask": attention_mask, "completion_mask": completion_mask}


def _per_example(examples: Sequence[PairExample | UnpairedExample]) -> dict[str, torch.Tensor]:
    def optional(values):
        return torch.tensor([math.nan if v is None else v for v in values], dtype=torch.float)

    return {
        "index": torch.tensor([e.index for e in examples], dtype=torch.long),
        "weight": torch.tensor([e.weight for e in examples], dtype=torch.float),
        "group": torch.tensor([e.group for e in examples], dtype=torch.long),
        "ratio": optional(e.ratio for e in examples),
        "target_prob": optional(e.target_prob for e in examples),
    }


def collate_pairs(examples: Sequence[PairExample], pad_token_id: int) -> dict[str, torch.Tensor]:
    """Batch B preference pairs into [2B, L] tensors: chosen rows first, then rejected."""
    if not examples:
        raise ValueError("collate_pairs needs at least one example")
    sequences = [(e.prompt_ids, e.chosen_ids) for e in examples] + [(e.prompt_ids, e.rejected_ids) for e in examples]
    return {**pad_rows(sequences, pad_token_id), **_per_example(examples)}


def pack_rows(lengths: Sequence[int], budget: int) -> list[list[int]]:
    """First-fit decreasing: the positions of `lengths` grouped into rows of total length at
    most `budget` (an item longer than the budget gets a row of its own); each row in
    ascending order, rows ordered by their first item."""
    rows: list[list[int]] = []
    room: list[int] = []
    for i in sorted(range(len(lengths)), key=lambda i: (-lengths[i], i)):
        for r, free in enumerate(room):
            if lengths[i] <= free:
                rows[r].append(i)
                room[r] -= lengths[i]
                break
        else:
            rows.append([i])
            room.append(budget - lengths[i])
    return sorted((sorted(r) for r in rows), key=lambda r: r[0])


def collate_shared_pairs(
    examples: Sequence[PairExample], pad_token_id: int, *, pack: bool = False, budget: int | None = None
) -> dict[str, torch.Tensor]:
    """Batch B preference pairs into rows ``[prompt | chosen | rejected]`` (see the module
    docstring): the prefix-shared layout, one pair a row ([B, L]), or with `pack` several pairs
    a row up to `budget` tokens; read by `dralign.modeling.logps.pair_logps`."""
    if not examples:
        raise ValueError("collate_shared_pairs needs at least one example")
    sizes = shared_lengths(examples)
    rows = pack_rows(sizes, budget or max(sizes)) if pack else [[i] for i in range(len(examples))]
    length = max(sum(sizes[i] for i in row) for row in rows)
    n = len(rows)
    input_ids = torch.full((n, length), pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros((n, length), dtype=torch.long)
    segment_ids = torch.full((n, length), PAD, dtype=torch.int8)
    position_ids = torch.zeros((n, length), dtype=torch.long)
    pair_ids = torch.full((n, length), -1, dtype=torch.long)
    for row, members in enumerate(rows):
        start = 0
        for i in members:
            e = examples[i]
            p, c, r = len(e.prompt_ids), len(e.chosen_ids), len(e.rejected_ids)
            if p == 0:
                raise ValueError(f"example {e.index} has an empty prompt; prefix sharing needs one")
            end = start + p + c + r
            input_ids[row, start:end] = torch.tensor([*e.prompt_ids, *e.chosen_ids, *e.rejected_ids], dtype=torch.long)
            attention_mask[row, start:end] = 1
            segment_ids[row, start : start + p] = PROMPT
            segment_ids[row, start + p : start + p + c] = CHOSEN
            segment_ids[row, start + p + c : end] = REJECTED
            position_ids[row, start : start + p + c] = torch.arange(p + c)
            position_ids[row, start + p + c : end] = torch.arange(p, p + r)
            pair_ids[row, start:end] = i
            start = end
    return {
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "segment_ids": segment_ids,
        "position_ids": position_ids,
        "completion_mask": segment_ids > PROMPT,
        "pair_ids": pair_ids,
        **_per_example(examples),
    }


def padding_fraction(batch: dict[str, torch.Tensor]) -> float:
    """The fraction of a batch's token positions that are padding (computed for nothing)."""
    mask = batch["attention_mask"]
    return 1.0 - float(mask.sum()) / max(1, mask.numel())


def shared_lengths(examples: Sequence[PairExample]) -> list[int]:
    """Row length of each pair in the prefix-shared layout (prompt + chosen + rejected)."""
    return [len(e.prompt_ids) + len(e.chosen_ids) + len(e.rejected_ids) for e in examples]


def collate_unpaired(examples: Sequence[UnpairedExample], pad_token_id: int) -> dict[str, torch.Tensor]:
    """Batch N unpaired examples into [N, L] tensors plus ``label`` [N]."""
    if not examples:
        raise ValueError("collate_unpaired needs at least one example")
    batch = pad_rows([(e.prompt_ids, e.completion_ids) for e in examples], pad_token_id)
    batch["label"] = torch.tensor([e.label for e in examples], dtype=torch.bool)
    return {**batch, **_per_example(examples)}


def batch_indices(
    n: int,
    batch_size: int,
    *,
    seed: int,
    epoch: int,
    shuffle: bool = True,
    drop_last: bool = False,
    group_by_length: Sequence[int] | None = None,
    mega_batch: int = 50,
) -> list[list[int]]:
    """The batches of one epoch as lists of example indices; a function of (seed, epoch) only.

    With `shuffle`, indices are permuted by a generator seeded with (seed, epoch). With
    `group_by_length` (one length per example, e.g. ``PreferenceData.lengths()``), each run of
    ``mega_batch × batch_size`` indices is sorted by length (longest first) before being cut
    into batches, and the batches are then shuffled, so batches hold similar lengths. The last
    batch is smaller when `n` is not a multiple of `batch_size`, unless `drop_last`.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be ≥ 1, got {batch_size}")
    if group_by_length is not None and len(group_by_length) != n:
        raise ValueError(f"group_by_length has {len(group_by_length)} lengths for {n} examples")
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(n) if shuffle else np.arange(n)
    if group_by_length is not None:
        lengths = np.asarray(group_by_length)
        chunk = mega_batch * batch_size
        order = (
            np.concatenate(
                [part[np.argsort(-lengths[part], kind="stable")] for part in np.split(order, range(chunk, n, chunk))]
            )
            if n
            else order
        )
    batches = [order[i : i + batch_size].tolist() for i in range(0, n, batch_size)]
    if drop_last and batches and len(batches[-1]) < batch_size:
        batches.pop()
    if group_by_length is not None and shuffle:
        batches = [batches[i] for i in rng.permutation(len(batches))]
    return batches
