"""Resident memory of CPU runs: freed tensors given back to the system.

glibc's malloc serves a request of at least `M_MMAP_THRESHOLD` bytes with a mapping of its own,
unmapped when freed; smaller ones come from the heap, whose freed chunks stay resident unless
they sit at its top. By default the threshold is dynamic: every free of a mapped chunk raises it
to that chunk's size (up to 32 MiB on 64-bit systems). After the first activations are freed,
every tensor of a training step under 32 MiB comes from the heap, and what a forward frees
between the tensors it keeps (gradient checkpointing frees each layer's intermediates and keeps
its input) stays resident although no tensor holds it. Measured (docs/real/memory.md):
SmolLM2-135M with LoRA r 8, a batch of 8 pairs × 256 tokens, gradient checkpointing, one
thread: the forward's peak RSS 2.46 GB above its start with the dynamic threshold, 0.41 GB with
the threshold fixed at 1 MiB.

`limit_heap_retention` fixes the threshold, which also turns the adjustment off: tensors of at
least `threshold` bytes are mapped, and given back as soon as they are freed. The cost is a
fresh mapping (zeroed pages) per large allocation. It acts on the whole process, on glibc only.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

M_MMAP_THRESHOLD = -3  # mallopt parameter (malloc.h)
HEAP_THRESHOLD = 1 << 20  # bytes: allocations this large or larger are mapped, never kept in the heap

_applied: int | None = None


def limit_heap_retention(threshold: int = HEAP_THRESHOLD) -> bool:
    """Fix glibc's mmap threshold at `threshold` bytes (see the module docstring); True when set
    (now or by an earlier call with the same value), False where there is no glibc `mallopt`
    (macOS, Windows, musl) or it refused."""
    global _applied
    if _applied == threshold:
        return True
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return False
    mallopt = getattr(libc, "mallopt", None)
    gnu = getattr(libc, "gnu_get_libc_version", None)  # glibc only: musl's mallopt does nothing
    if mallopt is None or gnu is None:
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    if mallopt(M_MMAP_THRESHOLD, int(threshold)) != 1:
        return False
    _applied = threshold
    return True


def choose_gradient_checkpointing(
    setting: bool | None, *, lora: bool, device: str | torch.device, penalized: bool = False, compiled: bool = False
) -> tuple[bool, str | None]:
    """(checkpoint the transformer blocks?, the line to log when the default decided it).

    `setting` True/False is the user's; None: on for a LoRA run on a CPU `device`, where
    the saved activations are most of the peak (docs/real/memory.md: SmolLM2-135M, 8 pairs ×
    256 tokens: a 6.7 GB forward without), and off otherwise: off with WDPO's penalty
    (its exact mode differentiates the backward) and with --compile (compiled blocks)."""
    if setting is not None:
        return setting, None
    if lora and str(getattr(device, "type", device)).split(":")[0] == "cpu" and not penalized and not compiled:
        return True, (
            "gradient checkpointing on (the default for LoRA on CPU: activations are recomputed in "
            "the backward, about a third more compute for a fraction of the memory; "
            "--no-gradient-checkpointing turns it off)"
        )
    return False, None
