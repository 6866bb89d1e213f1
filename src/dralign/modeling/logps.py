"""Per-sequence completion log-probabilities of a causal LM.

A batch row is a right-padded token sequence; `completion_mask[:, t]` is True where token
`input_ids[:, t]` belongs to the completion, whose log-probability comes from the logits at
position `t − 1`. Paired batches stack the chosen sequences (rows `0..B−1`) over the
rejected ones (rows `B..2B−1`).

Only the logits at predicting positions are computed when the model supports a boolean
`logits_to_keep` (🤗 Transformers ≥ 5 models built on `slice_logits_to_keep`): the hidden
states are sliced before the language-model head. Log-probabilities are taken as
`logit[target] − logsumexp(logits)` in at least float32, chunk by chunk, so no float32 copy of
the full-vocabulary logits is ever held for the whole batch, neither in the forward nor saved
for the backward.

Prefix sharing (`dralign.data.collate.collate_shared_pairs`): a pair is one row
``[prompt | chosen | rejected]`` with `segment_ids` and `position_ids`. The model gets a 4-D
attention mask (`shared_attention_mask`) in which a token sees the earlier prompt tokens and the
earlier tokens of its own segment only, and the positions of the unshared layout, so each
completion's log-prob equals the one of its own sequence [prompt | completion] up to float
rounding, while the prompt is computed once. The first rejected token is predicted by the
logits of the last prompt token, like the first chosen token (`shared_pair_logps`).
🤗 Transformers (≥ 5) models built on `masking_utils.create_causal_mask` take such a mask as is;
`prefix_sharing_support` says whether a model does; `pair_logps` scores a prefix-shared batch
with any other model (e.g. a separate reference model) by unsharing it first.
"""

from __future__ import annotations

import inspect
import sys
from typing import NamedTuple

import torch

from dralign.data.collate import CHOSEN, PAD, PROMPT, REJECTED, pad_rows
from dralign.modeling.fused import fused_head, head_input, head_target_log_probs, target_log_probs
from dralign.modeling.wrappers import unwrap

# Chunks of the [T, V] logits are upcast at most this many elements at a time.
CHUNK_ELEMENTS = 1 << 24  # (as `fused.CHUNK_ELEMENTS`, `target_log_probs`'s default)
# Fused head: logits of at most this many elements (32 MiB in float32) are kept for the backward
# rather than recomputed (e.g. 1,000 tokens at a 4k vocabulary; a 32k vocabulary recomputes).
RETAIN_ELEMENTS = 1 << 23


class SequenceLogps(NamedTuple):
    """Summed completion log-probs `sum` [N] (float32, or the model's dtype if wider) and
    completion token counts `count` [N] (int64) of N sequences."""

    sum: torch.Tensor
    count: torch.Tensor  # type: ignore[assignment]  # shadows tuple.count: the public field name

    def reduce(self, length_normalize: bool) -> torch.Tensor:
        """The objective's value per sequence [N]: `sum`, or `sum / count` (`normalized`)."""
        return normalized(self.sum, self.count) if length_normalize else self.sum


class PairLogps(NamedTuple):
    """Summed completion log-probs and token counts of B chosen and B rejected sequences,
    each [B]."""

    chosen_sum: torch.Tensor
    rejected_sum: torch.Tensor
    chosen_count: torch.Tensor
    rejected_count: torch.Tensor

    def reduce(self, length_normalize: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """(chosen [B], rejected [B]) in the objective's units: summed log-probs, or with
        `length_normalize` log-probs per completion token (`normalized`)."""
        if length_normalize:
            return (normalized(self.chosen_sum, self.chosen_count), normalized(self.rejected_sum, self.rejected_count))
        return self.chosen_sum, self.rejected_sum


def normalized(total: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
    """Length normalisation, the one place it is written: `total / count`, 0 where a sequence
    has no completion token (count 0)."""
    return total / count.clamp(min=1).to(total.dtype)


def completion_logps(token_logps: torch.Tensor, mask: torch.Tensor, *, ld_alpha: float | None = None) -> SequenceLogps:
    """Per-sequence sum [N] and count [N] of per-token log-probs `token_logps` [N, T] over the
    completion tokens `mask` [N, T] (True/1 where a token counts).

    `ld_alpha` (LD-DPO, Liu et al. 2024, as TRL's `ld_alpha`): for a paired batch [chosen;
    rejected], tokens past the shorter completion of each pair count `ld_alpha` times in the
    sum (the count is unchanged).
    """
    mask = mask.bool()
    weight = mask.to(token_logps.dtype)
    if ld_alpha is not None:
        position = weight.cumsum(dim=1)
        shared = torch.minimum(*weight.sum(dim=1).chunk(2)).repeat(2).unsqueeze(1)
        weight = torch.where(position > shared, ld_alpha, 1.0).to(weight.dtype) * weight
    # where(), not a product alone: a masked-out −inf log-prob must not turn the sum into NaN
    return SequenceLogps(sum=torch.where(mask, token_logps * weight, 0.0).sum(dim=1), count=mask.sum(dim=1))


def supports_logits_mask(model: torch.nn.Module) -> bool:
    """Whether `model`'s forward takes a boolean [N, L] `logits_to_keep` mask (and then returns
    logits [kept, V]): true for 🤗 Transformers ≥ 5 models that slice with
    `slice_logits_to_keep`, PEFT-wrapped or not."""
    base = unwrap(model)
    takes_argument = "logits_to_keep" in inspect.signature(base.forward).parameters
    module = sys.modules.get(type(base).__module__)
    return takes_argument and hasattr(module, "slice_logits_to_keep")


# Length groups: a batch's rows are run as at most this many forwards of similar lengths, a
# split being taken only when the cost model saves at least SPLIT_MIN_SAVING of the forward.
MAX_GROUPS = 3
SPLIT_MIN_SAVING = 0.05


def _row_cost(length: int, hidden: int) -> float:
    """Forward cost of one row padded to `length`, in token positions: the linear layers cost
    ∝ length, attention ∝ length² (4·h per (query, key) pair vs ≈ 24·h² per token's weights)."""
    return length * (1.0 + (length / (6.0 * hidden) if hidden else 0.0))


def length_groups(
    lengths: list[int], hidden: int, max_groups: int = MAX_GROUPS, min_saving: float = SPLIT_MIN_SAVING
) -> list[list[int]]:
    """Rows grouped by length (each group padded to its own longest row): the contiguous split
    of the rows sorted by length into at most `max_groups` groups of least estimated cost
    (`_row_cost`), a further group taken only when it saves `min_saving` of the one-group cost
    (each group is one more forward call). Rows within a group keep ascending index order."""
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
    s = [lengths[i] for i in order]
    n = len(s)
    cost = lambda i, j: (j - i) * _row_cost(s[j - 1], hidden)  # rows order[i:j], one group
    best = {1: (cost(0, n), [0, n])} if n else {1: (0.0, [0, 0])}
    if n > 1 and max_groups >= 2:
        best[2] = min((cost(0, c) + cost(c, n), [0, c, n]) for c in range(1, n))
    if n > 2 and max_groups >= 3 and n <= 256:  # O(n²) search; larger batches stop at two
        best[3] = min(
            (cost(0, a) + cost(a, b) + cost(b, n), [0, a, b, n]) for a in range(1, n - 1) for b in range(a + 1, n)
        )
    chosen = best[1]
    for k in sorted(best)[1:]:
        if chosen[0] - best[k][0] >= min_saving * best[1][0]:
            chosen = best[k]
    cuts = chosen[1]
    return [sorted(order[a:b]) for a, b in zip(cuts[:-1], cuts[1:])]


def _token_logps(
    model, input_ids, attention_mask, sources, targets, inputs_embeds, row_lengths: torch.Tensor | None = None, **extra
) -> torch.Tensor:
    """log π(targets[j]) [T] read from the model's output at flat position `sources[j]`
    (b·L + t of the predicting position, in the same row as its target); `extra` model inputs
    (e.g. `position_ids`, [N, L]) are passed through.

    With `row_lengths` [N] (each row's real length, padding after it), rows of different
    lengths run as several forwards, each cut to its group's longest row (`length_groups`), so
    that less compute goes to padding; every token's log-prob is the same (a row's outputs do
    not depend on the other rows, nor on the padding after it, which a causal mask hides).
    Not under DDP, whose reducer expects one forward per backward, nor FSDP2, whose every forward
    is a collective (processes would run different numbers of them and wait on each other forever).
    """
    groups = (
        [list(range(input_ids.shape[0]))]
        if row_lengths is None or _distributed(model)
        else length_groups(row_lengths.tolist(), _hidden_width(model), MAX_GROUPS)
    )
    if len(groups) == 1:
        return _token_logps_once(model, input_ids, attention_mask, sources, targets, inputs_embeds, **extra)
    width = input_ids.shape[1]
    token_row = torch.div(sources, width, rounding_mode="floor")
    local_row = torch.full((input_ids.shape[0],), -1, dtype=torch.long, device=input_ids.device)
    parts, taken = [], []
    assert row_lengths is not None  # without lengths there is one group, returned above
    for rows in groups:
        index = torch.tensor(rows, dtype=torch.long, device=input_ids.device)
        length = int(row_lengths[index].max())
        local_row[index] = torch.arange(len(rows), device=input_ids.device)
        mine = (local_row[token_row] >= 0).nonzero(as_tuple=True)[0]
        local_sources = local_row[token_row[mine]] * length + sources[mine] % width
        cut = lambda t: t.index_select(0, index)[:, :length]  # noqa: B023 (used in this iteration only)
        mask = (
            cut(attention_mask)
            if attention_mask.dim() == 2
            else attention_mask.index_select(0, index)[..., :length, :length]
        )
        parts.append(
            _token_logps_once(
                model,
                cut(input_ids),
                mask,
                local_sources,
                targets[mine],
                None if inputs_embeds is None else cut(inputs_embeds),
                **{k: cut(v) for k, v in extra.items()},
            )
        )
        taken.append(mine)
        local_row[index] = -1
    return torch.cat(parts)[torch.argsort(torch.cat(taken))]


def _distributed(model) -> bool:
    from torch.distributed.fsdp import FSDPModule

    return isinstance(model, (torch.nn.parallel.DistributedDataParallel, torch.nn.DataParallel, FSDPModule))


def _hidden_width(model) -> int:
    config = getattr(unwrap(model), "config", None)
    if config is not None and hasattr(config, "get_text_config"):
        config = config.get_text_config()
    return int(getattr(config, "hidden_size", None) or getattr(config, "n_embd", None) or 0)


def _real_lengths(keep: torch.Tensor) -> torch.Tensor:
    """[N] one past each row's last True position of `keep` [N, L] (0 for none)."""
    positions = torch.arange(1, keep.shape[1] + 1, device=keep.device)
    return torch.where(keep, positions, 0).amax(1)


def _token_logps_once(model, input_ids, attention_mask, sources, targets, inputs_embeds, **extra) -> torch.Tensor:
    """`_token_logps` in one forward over every row.

    Fused (`dralign.modeling.fused`, when `fused_head` allows the model): the final hidden
    states at `sources` go through the head chunk by chunk, no [T, V] logits in either pass.
    Plain otherwise: the logits at the predicting positions (only those when the model takes a
    boolean `logits_to_keep`), then `target_log_probs`.
    """
    inputs = {"inputs_embeds": inputs_embeds} if inputs_embeds is not None else {"input_ids": input_ids}
    head = fused_head(model)
    if head is not None:
        with head_input(head) as captured:
            model(**inputs, attention_mask=attention_mask, use_cache=False, **extra)
        assert captured.hidden is not None, "the head's pre-hook captures its input"
        hidden = captured.hidden.flatten(0, -2).index_select(0, sources)  # [T, H]
        return head_target_log_probs(
            hidden, head, targets, chunk_elements=CHUNK_ELEMENTS, retain_elements=RETAIN_ELEMENTS
        )
    predicting = torch.zeros(input_ids.numel(), dtype=torch.bool, device=input_ids.device)
    predicting[sources] = True
    predicting = predicting.view_as(input_ids)
    if supports_logits_mask(model):
        logits = model(
            **inputs, attention_mask=attention_mask, use_cache=False, logits_to_keep=predicting, **extra
        ).logits
    else:
        logits = model(**inputs, attention_mask=attention_mask, use_cache=False, **extra).logits[predicting]
    if sources.numel() > 1 and not bool((sources[1:] > sources[:-1]).all()):
        kept_rank = predicting.flatten().cumsum(0) - 1  # flat position -> row of `logits`
        logits = logits.index_select(0, kept_rank[sources])  # repeated or reordered sources
    return target_log_probs(logits, targets, chunk_elements=CHUNK_ELEMENTS)


def sequence_logps(
    model: torch.nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    completion_mask: torch.Tensor,
    *,
    inputs_embeds: torch.Tensor | None = None,
) -> SequenceLogps:
    """Summed completion log-probs and completion token counts, in one forward pass.

    input_ids [N, L] (right-padded), attention_mask [N, L], completion_mask [N, L] (True where
    `input_ids[:, t]` is a completion token). `inputs_embeds` [N, L, H], when given, replaces
    the embedding lookup of `input_ids` (e.g. to differentiate with respect to it); the targets
    still come from `input_ids`. Returns `SequenceLogps(sum [N], count [N])`.
    """
    completion_mask = completion_mask.bool()
    if completion_mask[:, 0].any():
        raise ValueError(
            "completion_mask is True at position 0, whose token no logit predicts; "
            "a completion must follow at least one prompt token"
        )
    predicted = completion_mask[:, 1:]  # [N, L−1]: token t is predicted by the output at t − 1
    rows, cols = completion_mask.nonzero(as_tuple=True)
    sources = rows * input_ids.shape[1] + cols - 1
    token_logps = _token_logps(
        model,
        input_ids,
        attention_mask,
        sources,
        input_ids[completion_mask],
        inputs_embeds,
        row_lengths=_real_lengths(attention_mask.bool()),
    )  # [T]
    dense = token_logps.new_zeros(predicted.shape).masked_scatter(predicted, token_logps)
    return completion_logps(dense, predicted)


def split_pairs(logps: SequenceLogps) -> PairLogps:
    """Split the 2B rows of a paired batch into chosen (first B) and rejected (last B)."""
    n = logps.sum.shape[0]
    if n % 2:
        raise ValueError(f"a paired batch has an even number of rows (chosen then rejected); got {n}")
    b = n // 2
    return PairLogps(
        chosen_sum=logps.sum[:b],
        rejected_sum=logps.sum[b:],
        chosen_count=logps.count[:b],
        rejected_count=logps.count[b:],
    )


def pair_logps(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> PairLogps:
    """Chosen and rejected summed completion log-probs and counts (each [B]) of a paired batch:
    the plain layout (`input_ids`, `attention_mask`, `completion_mask` [2B, L]) or the
    prefix-shared one (with `segment_ids`, `position_ids`; [B, L], see `shared_pair_logps`)."""
    if "segment_ids" in batch:
        if prefix_sharing_support(model) is None:
            return shared_pair_logps(model, batch)
        batch = unshared_batch(batch)  # e.g. a separate reference model on another kernel
    return split_pairs(sequence_logps(model, batch["input_ids"], batch["attention_mask"], batch["completion_mask"]))


def batch_logps(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> PairLogps:
    """`pair_logps` of a paired batch; for an unpaired batch (with `label` [N]), the desirable
    completions as "chosen" and the undesirable ones as "rejected" (the two sets may differ in
    size)."""
    if "label" not in batch:
        return pair_logps(model, batch)
    seq = sequence_logps(model, batch["input_ids"], batch["attention_mask"], batch["completion_mask"])
    label = batch["label"].bool()
    return PairLogps(seq.sum[label], seq.sum[~label], seq.count[label], seq.count[~label])


# ----------------------------------------------------------------------------- prefix sharing
# Attention kernels whose 4-D mask format `shared_attention_mask` knows.
SHARED_MASK_KERNELS = ("sdpa", "eager")


def _attention_kernel(model: torch.nn.Module) -> str | None:
    return getattr(getattr(unwrap(model), "config", None), "_attn_implementation", None)


def prefix_sharing_support(model: torch.nn.Module) -> str | None:
    """None when `model` can score a prefix-shared batch exactly, else the reason it cannot.

    Needs: a forward taking `position_ids` and building its mask with 🤗 `masking_utils`
    (which passes a custom 4-D mask through unchanged), an attention kernel in
    `SHARED_MASK_KERNELS` (flash kernels take no arbitrary mask), and no sliding-window
    attention (a custom mask replaces the window).
    """
    base = unwrap(model)
    name = type(base).__name__
    module = sys.modules.get(type(getattr(base, "base_model", base)).__module__)
    if "position_ids" not in inspect.signature(base.forward).parameters:
        return f"{name}'s forward takes no position_ids"
    if not hasattr(module, "create_causal_mask"):
        return f"{name} does not build its attention mask with transformers' masking_utils"
    kernel = _attention_kernel(base)
    if kernel not in SHARED_MASK_KERNELS:
        return (
            f"attention kernel {kernel!r} takes no custom 4-D mask (prefix sharing works with "
            f"{' and '.join(SHARED_MASK_KERNELS)})"
        )
    config = base.config
    window = getattr(config, "sliding_window", None)
    uses_window = getattr(config, "use_sliding_window", window is not None)
    layer_types = getattr(config, "layer_types", None) or ()
    if (window and uses_window) or any("sliding" in str(t) for t in layer_types):
        return f"{name} uses sliding-window attention, which a custom 4-D mask would replace"
    return None


def shared_attention_mask(
    segment_ids: torch.Tensor,
    kernel: str | None,
    dtype: torch.dtype = torch.float32,
    pair_ids: torch.Tensor | None = None,
) -> torch.Tensor:
    """The [R, 1, L, L] attention mask of a prefix-shared (possibly packed) batch.

    Query q sees key k ≤ q when both belong to the same pair (`pair_ids`, default: one pair a
    row) and k is a prompt token or in q's own segment (chosen sees prompt and chosen; rejected
    sees prompt and rejected, never chosen); padding keys are never seen. Every query also sees
    itself, so no row is fully masked (padding queries see only themselves). Format: boolean
    (True = attend) for "sdpa"; additive float of `dtype` (0 or the most negative value) for
    "eager".
    """
    seg = segment_ids.long()
    length = seg.shape[1]
    positions = torch.arange(length, device=seg.device)
    causal = positions[None, :, None] >= positions[None, None, :]  # [1, q, k]
    key_seg, query_seg = seg[:, None, :], seg[:, :, None]
    same = (key_seg == PROMPT) | ((key_seg == query_seg) & (key_seg != PAD))
    if pair_ids is not None:  # packed: block-diagonal over pairs
        same = same & (pair_ids[:, None, :] == pair_ids[:, :, None])
    allowed = (causal & same) | torch.eye(length, dtype=torch.bool, device=seg.device)[None]
    allowed = allowed[:, None]  # [R, 1, L, L]
    if kernel == "sdpa":
        return allowed
    if kernel == "eager":
        return torch.zeros(allowed.shape, dtype=dtype, device=seg.device).masked_fill_(~allowed, torch.finfo(dtype).min)
    raise ValueError(
        f"no prefix-sharing mask for attention kernel {kernel!r}; use one of {', '.join(SHARED_MASK_KERNELS)}"
    )


def pair_of_position(batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """[R, L] the pair each position of a prefix-shared batch belongs to (−1 on padding)."""
    if "pair_ids" in batch:
        return batch["pair_ids"]
    seg = batch["segment_ids"]
    rows = torch.arange(seg.shape[0], device=seg.device)[:, None].expand_as(seg)
    return torch.where(seg.long() == PAD, -1, rows)


def _shared_predictors(segment_ids: torch.Tensor, pairs: torch.Tensor, completion_mask: torch.Tensor) -> torch.Tensor:
    """For each completion token (row-major order of `completion_mask`), the flat index r·L + t
    of the position whose output predicts it: t − 1, except for the first rejected token, which
    the last prompt token of its pair predicts (as in its unshared sequence)."""
    seg = segment_ids.long()
    length = seg.shape[1]
    flat = torch.arange(seg.numel(), device=seg.device).view_as(seg)
    rows, cols = completion_mask.nonzero(as_tuple=True)
    source = rows * length + cols - 1
    is_prompt = seg == PROMPT
    last_prompt = torch.full((int(pairs.max()) + 1,), -1, dtype=torch.long, device=seg.device)
    last_prompt = last_prompt.scatter_reduce(0, pairs[is_prompt], flat[is_prompt], reduce="amax")
    first_rejected = (seg[rows, cols] == REJECTED) & (seg[rows, cols - 1] != REJECTED)
    return torch.where(first_rejected, last_prompt[pairs[rows, cols]], source)


def unshared_batch(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The plain layout ([2B, L]: prompt+chosen rows, then prompt+rejected rows, right-padded)
    of a prefix-shared (or packed) batch: `input_ids`, `attention_mask`, `completion_mask`.
    Padding ids are 0 (masked out); other keys are left out."""
    ids, seg, pairs = batch["input_ids"], batch["segment_ids"].long(), pair_of_position(batch)
    n = int(pairs.max()) + 1
    parts = [
        (ids[(pairs == b) & (seg == PROMPT)], ids[(pairs == b) & (seg == segment)])
        for segment in (CHOSEN, REJECTED)
        for b in range(n)
    ]
    return pad_rows(parts, pad_token_id=0, device=ids.device)


def shared_pair_logps(
    model: torch.nn.Module, batch: dict[str, torch.Tensor], *, inputs_embeds: torch.Tensor | None = None
) -> PairLogps:
    """Chosen and rejected summed log-probs and counts (each [B]) of a prefix-shared batch, in
    one forward pass over rows ``[prompt | chosen | rejected]``, one pair a row or several
    (packed, told apart by `pair_ids`; the mask is then block-diagonal over pairs).

    batch: `input_ids`, `segment_ids`, `position_ids`, `completion_mask`, `pair_ids` [R, L]
    (see `dralign.data.collate.collate_shared_pairs`). Equal, up to float rounding, to
    `pair_logps` of the same pairs in the plain layout. `inputs_embeds` [R, L, H] replaces the
    embedding lookup. Raises ValueError when the model cannot take the layout (`prefix_sharing_support`).
    """
    reason = prefix_sharing_support(model)
    if reason is not None:
        raise ValueError(f"prefix sharing is not available for this model: {reason}")
    input_ids, seg = batch["input_ids"], batch["segment_ids"]
    completion_mask = batch["completion_mask"].bool()
    if completion_mask[:, 0].any():
        raise ValueError("completion_mask is True at position 0; a completion must follow a prompt")
    embed_dtype = (
        inputs_embeds.dtype if inputs_embeds is not None else unwrap(model).get_input_embeddings().weight.dtype
    )
    pairs = pair_of_position(batch)
    mask = shared_attention_mask(seg, _attention_kernel(model), embed_dtype, pairs if "pair_ids" in batch else None)
    source = _shared_predictors(seg, pairs, completion_mask)  # [T] flat positions
    token_logps = _token_logps(
        model,
        input_ids,
        mask,
        source,
        input_ids[completion_mask],
        inputs_embeds,
        row_lengths=_real_lengths(pairs >= 0),
        position_ids=batch["position_ids"],
    )  # [T]
    token_pair = pairs[completion_mask]
    token_seg = seg[completion_mask].long()
    n = int(pairs.max()) + 1
    sums, counts = [], []
    for segment in (CHOSEN, REJECTED):
        in_segment = token_seg == segment
        sums.append(token_logps.new_zeros(n).index_add(0, token_pair[in_segment], token_logps[in_segment]))
        counts.append(torch.bincount(token_pair[in_segment], minlength=n))
    return PairLogps(chosen_sum=sums[0], rejected_sum=sums[1], chosen_count=counts[0], rejected_count=counts[1])
