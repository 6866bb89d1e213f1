"""The one scoring loop: every row of a dataset through a model without gradients, in batches.

The reference cache, the trainer's held-out evaluation, `dralign eval` and the real-model
benchmark all score rows this way; what differs is how a batch is built and what is kept of it,
which the caller passes as two functions.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable

import torch

from .wrappers import eval_mode

__all__ = ["score_rows"]


def score_rows(
    n: int,
    batch_of: Callable[[list[int]], dict],
    score: Callable[[dict], dict],
    *,
    batch_size: int,
    model: torch.nn.Module | None = None,
    device=None,
    progress: bool = False,
    description: str = "scoring",
) -> dict[str, torch.Tensor]:
    """``score(batch)`` of every batch ``batch_of(indices)`` over rows 0..n-1, concatenated on
    the CPU: a {name: tensor [n, ...]} mapping, rows in order.

    Runs without gradients, and with `model` (the module being scored; a PEFT or DDP wrapper is
    fine) in eval mode for the duration (its train/eval mode restored after). Tensors of a batch
    go to `device` (None: they stay where `batch_of` made them). progress: a transient bar over
    the batches.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    starts: Iterable[int] = range(0, n, batch_size)
    if progress:
        from ..console import track  # a transient bar on a terminal, plain lines in a log

        starts = track(starts, description, unit="batch")
    parts: list[dict[str, torch.Tensor]] = []
    mode = eval_mode(model) if model is not None else contextlib.nullcontext()
    with torch.no_grad(), mode:
        for start in starts:
            batch = batch_of(list(range(start, min(start + batch_size, n))))
            if device is not None:
                batch = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
            parts.append({k: v.cpu() for k, v in score(batch).items()})
    if not parts:
        return {}
    return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}
