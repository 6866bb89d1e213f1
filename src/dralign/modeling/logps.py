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
"""

from __future__ import annotations

import inspect
import sys
from typing import NamedTuple

import torch

# Chunks of the [T, V] logits are upcast at most this many elements at a time.
_CHUNK_ELEMENTS = 1 << 24


class SequenceLogps(NamedTuple):
    """Summed completion log-probs `sum` [N] (float32, or the model's dtype if wider) and
    completion token counts `count` [N] (int64) of N sequences."""

    sum: torch.Tensor
    count: torch.Tensor

    @property
    def mean(self) -> torch.Tensor:
        """Length-normalised log-probs `sum / count` [N] (0 where a sequence has no completion)."""
        return self.sum / self.count.clamp(min=1)


class PairLogps(NamedTuple):
    """Summed completion log-probs and token counts of B chosen and B rejected sequences,
    each [B]."""

    chosen_sum: torch.Tensor
    rejected_sum: torch.Tensor
    chosen_count: torch.Tensor
    rejected_count: torch.Tensor


class _TargetLogProb(torch.autograd.Function):
    """`log softmax(logits)[target]` per row, computed in chunks; backward is built from
    differentiable ops on the saved logits so that double backward works."""

    @staticmethod
    def forward(ctx, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(logits, targets)
        compute_dtype = torch.promote_types(logits.dtype, torch.float32)
        out = torch.empty(logits.shape[0], dtype=compute_dtype, device=logits.device)
        for rows in _row_chunks(logits):
            chunk = logits[rows].to(compute_dtype)
            target_logits = chunk.gather(1, targets[rows, None]).squeeze(1)
            out[rows] = target_logits - torch.logsumexp(chunk, dim=-1)
        return out

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        logits, targets = ctx.saved_tensors
        grads = []
        for rows in _row_chunks(logits):
            chunk = logits[rows].to(grad_out.dtype)
            g = grad_out[rows, None]
            # d/dlogits (logit[target] − logsumexp) = onehot(target) − softmax
            grad_chunk = (-torch.softmax(chunk, dim=-1) * g).scatter_add(1, targets[rows, None], g)
            grads.append(grad_chunk.to(logits.dtype))
        return torch.cat(grads) if grads else torch.zeros_like(logits), None


def _row_chunks(logits: torch.Tensor) -> list[slice]:
    """Row slices of a [T, V] tensor holding at most `_CHUNK_ELEMENTS` elements each."""
    rows_per_chunk = max(1, _CHUNK_ELEMENTS // max(1, logits.shape[-1]))
    return [slice(s, s + rows_per_chunk) for s in range(0, logits.shape[0], rows_per_chunk)]


def target_log_probs(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Log-probability of each target under the softmax of its logits.

    logits [T, V] (any float dtype), targets [T] (int64) → [T] in float32, or in the logits'
    dtype when wider. Differentiable twice.
    """
    return _TargetLogProb.apply(logits, targets)


def _unwrapped(model: torch.nn.Module) -> torch.nn.Module:
    """The 🤗 model under DDP-style (`.module`) and PEFT wrappers (the model itself when not
    wrapped). Only its signature and module are inspected; calls still go through the wrapper."""
    while isinstance(model, torch.nn.parallel.DistributedDataParallel):
        model = model.module
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def supports_logits_mask(model: torch.nn.Module) -> bool:
    """Whether `model`'s forward takes a boolean [N, L] `logits_to_keep` mask (and then returns
    logits [kept, V]): true for 🤗 Transformers ≥ 5 models that slice with
    `slice_logits_to_keep`, PEFT-wrapped or not."""
    base = _unwrapped(model)
    takes_argument = "logits_to_keep" in inspect.signature(base.forward).parameters
    module = sys.modules.get(type(base).__module__)
    return takes_argument and hasattr(module, "slice_logits_to_keep")


def _predicting_logits(model, input_ids, attention_mask, predicting, inputs_embeds):
    """Logits [T, V] at the positions marked in `predicting` [N, L] (row-major order)."""
    if inputs_embeds is not None:
        inputs = {"inputs_embeds": inputs_embeds}
    else:
        inputs = {"input_ids": input_ids}
    if supports_logits_mask(model):
        return model(**inputs, attention_mask=attention_mask, use_cache=False,
                     logits_to_keep=predicting).logits
    return model(**inputs, attention_mask=attention_mask, use_cache=False).logits[predicting]


def sequence_logps(model: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                   completion_mask: torch.Tensor, *,
                   inputs_embeds: torch.Tensor | None = None) -> SequenceLogps:
    """Summed completion log-probs and completion token counts, in one forward pass.

    input_ids [N, L] (right-padded), attention_mask [N, L], completion_mask [N, L] (True where
    `input_ids[:, t]` is a completion token). `inputs_embeds` [N, L, H], when given, replaces
    the embedding lookup of `input_ids` (e.g. to differentiate with respect to it); the targets
    still come from `input_ids`. Returns `SequenceLogps(sum [N], count [N])`.
    """
    completion_mask = completion_mask.bool()
    if completion_mask[:, 0].any():
        raise ValueError("completion_mask is True at position 0, whose token no logit predicts; "
                         "a completion must follow at least one prompt token")
    predicted = completion_mask[:, 1:]  # [N, L−1]: token t is predicted by the logits at t − 1
    predicting = torch.cat([predicted, torch.zeros_like(predicted[:, :1])], dim=1)  # [N, L]
    logits = _predicting_logits(model, input_ids, attention_mask, predicting, inputs_embeds)
    token_logps = target_log_probs(logits, input_ids[:, 1:][predicted])  # [T]
    row_of_token = predicted.nonzero(as_tuple=True)[0]
    sums = token_logps.new_zeros(input_ids.shape[0]).index_add(0, row_of_token, token_logps)
    return SequenceLogps(sum=sums, count=predicted.sum(dim=1))


def split_pairs(logps: SequenceLogps) -> PairLogps:
    """Split the 2B rows of a paired batch into chosen (first B) and rejected (last B)."""
    n = logps.sum.shape[0]
    if n % 2:
        raise ValueError("a paired batch has an even number of rows (chosen then rejected); "
                         f"got {n}")
    b = n // 2
    return PairLogps(chosen_sum=logps.sum[:b], rejected_sum=logps.sum[b:],
                     chosen_count=logps.count[:b], rejected_count=logps.count[b:])


def pair_logps(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> PairLogps:
    """Chosen and rejected summed completion log-probs and counts (each [B]) of a paired batch
    with `input_ids`, `attention_mask`, `completion_mask` [2B, L]."""
    return split_pairs(sequence_logps(model, batch["input_ids"], batch["attention_mask"],
                                      batch["completion_mask"]))
