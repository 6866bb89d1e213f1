"""The two model-handling helpers every part uses: the 🤗 model under its wrappers, and
eval mode for the duration of a block."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The 🤗 model under DDP-style (`.module`, e.g. Accelerate's DistributedDataParallel) and
    PEFT (`get_base_model()`) wrappers; the model itself when not wrapped. For inspecting its
    config, signature and modules; calls should still go through the wrapper."""
    while isinstance(model, torch.nn.parallel.DistributedDataParallel) or (
            hasattr(model, "module") and isinstance(model.module, torch.nn.Module)
            and not hasattr(model, "config")):
        model = model.module
    return model.get_base_model() if hasattr(model, "get_base_model") else model


@contextmanager
def eval_mode(model: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """Dropout off for the duration; the previous train/eval mode is restored after, even on
    an error."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)
