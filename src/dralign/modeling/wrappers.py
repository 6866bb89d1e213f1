"""The two model-handling helpers every part uses (the only `unwrap` and `eval_mode`): the 🤗 model under its wrappers, and
eval mode for the duration of a block."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch


def unwrap(model: torch.nn.Module, keep_peft: bool = False) -> Any:
    """The 🤗 model under DDP-style (`.module`: DistributedDataParallel, DataParallel, other
    wrappers without a `config`) and PEFT (`get_base_model()`) wrappers; the model itself when
    not wrapped. For inspecting its config, signature and modules; calls should still go
    through the wrapper. keep_peft: stop at a PEFT model (it forwards `get_input_embeddings`
    and `config`, and its adapters stay in the graph). Typed Any: the 🤗/PEFT methods it is read
    for (`config`, `get_input_embeddings`) are not `torch.nn.Module`'s."""
    m: Any = model
    while isinstance(m, (torch.nn.parallel.DistributedDataParallel, torch.nn.DataParallel)) or (
        hasattr(m, "module") and isinstance(m.module, torch.nn.Module) and not hasattr(m, "config")
    ):
        m = m.module
    if keep_peft:
        return m
    return m.get_base_model() if hasattr(m, "get_base_model") else m


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
