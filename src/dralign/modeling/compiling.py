"""`--compile`: torch.compile of each transformer block, with the cases it cannot serve refused.

Blocks, not the whole model: the fused LM head (`modeling.fused`) reads the final hidden states
through a hook and its own autograd function, which a whole-model graph would break around; a
block is the part that repeats, so one compiled graph (dynamic shapes: length groups and packing
change the sequence length every step) serves every layer.
"""

from __future__ import annotations

import os
import shutil

import torch

__all__ = ["compile_blocks", "compile_refusal", "transformer_blocks"]


def transformer_blocks(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The model's repeated blocks: the longest `ModuleList` whose members share one class
    (llama's `model.layers`, GPT-2's `transformer.h`), PEFT and DDP wrappers included."""
    best: list[torch.nn.Module] = []
    for module in model.modules():
        if isinstance(module, torch.nn.ModuleList) and len(module) > len(best):
            if len({type(m) for m in module}) == 1:
                best = list(module)
    return best


def compile_refusal(device: torch.device | str, *, double_backward: bool) -> str | None:
    """Why `--compile` cannot run here, or None. `double_backward`: the step differentiates a
    gradient (WDPO's exact penalty), which compiled graphs do not support."""
    if double_backward:
        return (
            "--compile cannot run WDPO's exact penalty: torch.compile has no double backward; "
            "use --penalty-mode finite_difference (the default) or drop --compile"
        )
    if torch.device(device).type == "cpu":
        compilers = [os.environ.get("CXX"), "g++", "c++", "clang++"]
        if not any(c and shutil.which(c) for c in compilers):
            return (
                "--compile on CPU needs a C++ compiler (torch.compile's CPU backend writes C++): "
                "none found (CXX, g++, c++, clang++); install one or drop --compile"
            )
    return None


def compile_blocks(model: torch.nn.Module) -> int:
    """Compile each transformer block of `model` in place (`dynamic=True`); the number compiled.
    Raises ValueError when the model has no repeated blocks to compile."""
    blocks = transformer_blocks(model)
    if not blocks:
        raise ValueError(f"--compile found no repeated transformer blocks in {type(model).__name__}")
    for block in blocks:
        block.compile(dynamic=True)
    return len(blocks)
