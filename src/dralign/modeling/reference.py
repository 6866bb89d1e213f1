"""Reference policies πref: a frozen copy or the PEFT base with its adapter off (the cached
reference, `CachedReference`, lives beside its cache in `dralign.modeling.cache`).

Every reference answers `logps(batch) -> PairLogps` (chosen/rejected sums and counts, each
[B], on the device of `batch["input_ids"]`) without building an autograd graph, for batches in
the plain or the prefix-shared layout (`dralign.data.collate`).
"""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from typing import Any

import torch

from dralign.modeling.logps import PairLogps, batch_logps
from dralign.modeling.wrappers import eval_mode

# The batch keys a model reads: the plain layout's, plus the prefix-shared layout's when present.
_MODEL_INPUTS = ("input_ids", "attention_mask", "completion_mask", "segment_ids", "position_ids", "pair_ids")


class Reference(ABC):
    """A reference policy that scores the chosen and rejected completions of a paired batch."""

    @abstractmethod
    def logps(self, batch: dict[str, torch.Tensor]) -> PairLogps:
        """Reference chosen/rejected summed log-probs and counts, each [B], without gradients."""


def _model_device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def model_logps(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> PairLogps:
    """`batch_logps` in eval mode without gradients, run on the model's device and returned on
    the batch's (paired batches, either layout; unpaired ones split by `label`)."""
    batch_device = batch["input_ids"].device
    keys = (*_MODEL_INPUTS, "label")
    on_model = {k: batch[k].to(_model_device(model)) for k in keys if k in batch}
    with torch.no_grad(), eval_mode(model):
        result = batch_logps(model, on_model)
    return PairLogps(*(t.to(batch_device) for t in result))


class FrozenReference(Reference):
    """A separate model whose weights never change (typically the policy's start weights).

    The given model is put in eval mode and its parameters are frozen in place.
    """

    def __init__(self, model: torch.nn.Module):
        self.model = model.eval().requires_grad_(False)

    @classmethod
    def from_policy(cls, policy: torch.nn.Module) -> FrozenReference:
        """A frozen deep copy of `policy` as it is now (call before training starts)."""
        return cls(copy.deepcopy(policy))

    def logps(self, batch: dict[str, torch.Tensor]) -> PairLogps:
        return model_logps(self.model, batch)


class AdapterDisabledReference(Reference):
    """The base model under a PEFT adapter, scored with the adapter disabled: a reference that
    costs no extra weights. The policy's train/eval mode is restored after each call."""

    def __init__(self, peft_model: torch.nn.Module):
        if not hasattr(peft_model, "disable_adapter"):
            raise TypeError(
                f"{type(peft_model).__name__} is not a PEFT model "
                "(no disable_adapter()); "
                "use FrozenReference.from_policy for a full-weight policy"
            )
        self.peft_model: Any = peft_model  # a peft.PeftModel (its disable_adapter is not Module's)

    def logps(self, batch: dict[str, torch.Tensor]) -> PairLogps:
        with self.peft_model.disable_adapter():
            return model_logps(self.peft_model, batch)
