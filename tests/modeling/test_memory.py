"""dralign.modeling.memory: freed tensors are given back to the system (glibc's heap)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

# What a checkpointed forward does, in small: it frees a large intermediate (4 MB here) with
# smaller tensors kept around it. A first 16 MiB tensor freed raises glibc's dynamic threshold
# (and its trim threshold with it), after which such an intermediate comes from the heap and its
# pages stay resident when freed, wherever it lies; with the fixed threshold each is a mapping of
# its own, given back on free. Prints the bytes given back over 30 frees.
PATTERN = textwrap.dedent("""
    import sys, torch
    from pathlib import Path
    from dralign.modeling.memory import limit_heap_retention
    if sys.argv[1] == "on":
        assert limit_heap_retention()
    def rss():
        line = next(l for l in Path("/proc/self/status").read_text().splitlines() if l.startswith("VmRSS:"))
        return int(line.split()[1]) * 1024
    torch.ones(4 << 20)  # 16 MiB, freed at once: the threshold rises to it (32 MiB at most)
    keep, released = [], 0
    for i in range(30):
        transient = torch.ones(1_000_000 + 16_384 * i)  # 4 MB and growing
        keep.append(torch.ones(16_384))  # 64 KiB kept
        before = rss()
        del transient
        released += before - rss()
    print(released)
""")


def _released(setting: str) -> int:
    out = subprocess.run([sys.executable, "-c", PATTERN, setting], capture_output=True, text=True, check=True)
    return int(out.stdout.split()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc only")
def test_freed_intermediates_do_not_stay_resident():
    if not _glibc():
        pytest.skip("no glibc mallopt")
    freed = 30 * 4_000_000
    assert _released("on") > 0.9 * freed  # every intermediate given back
    assert _released("off") < 0.25 * freed  # glibc's default keeps them: the test can fail


def _glibc() -> bool:
    out = subprocess.run(
        [sys.executable, "-c", "from dralign.modeling.memory import limit_heap_retention as f;print(f())"],
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip() == "True"


def test_load_model_limits_heap_retention(monkeypatch, tiny_model_dir):
    from dralign.modeling import loading

    calls = []
    monkeypatch.setattr(loading, "limit_heap_retention", lambda: calls.append(1) or True)
    loading.load_model(tiny_model_dir("llama"))
    assert calls == [1]


def test_gradient_checkpointing_default():
    from dralign.modeling import choose_gradient_checkpointing as choose

    assert choose(None, lora=True, device="cpu")[0]
    assert choose(None, lora=True, device="cpu")[1].startswith("gradient checkpointing on")
    assert not any(choose(None, lora=True, device="cpu", **{k: True})[0] for k in ("penalized", "compiled"))
    assert choose(None, lora=False, device="cpu") == (False, None)
    assert choose(None, lora=True, device="cuda:0") == (False, None)
    assert choose(False, lora=True, device="cpu") == (False, None)  # the user's setting stands
    assert choose(True, lora=False, device="cuda") == (True, None)
