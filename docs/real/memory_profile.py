"""Peak RSS of a real LoRA run, phase by phase (docs/real/memory.md).

Runs `dralign train`'s own recipe (the same set-up code, flags and layout decisions) for one
optimizer step and records, for every phase, the peak resident set size reached during that
phase alone (the kernel's high-water mark is reset between phases through
/proc/self/clear_refs, Linux ≥ 4.0) and the RSS left at its end.

Run from the repository root, one thread, with the flags of the run to profile:

    OMP_NUM_THREADS=1 PYTHONPATH=src python docs/real/memory_profile.py \
        --model SmolLM2-135M-Instruct.Q4_1.gguf --data uf16.jsonl --method dpo --lora-r 8 \
        --batch-size 8 --max-length 256 --output-dir /tmp/memprof --overwrite --no-progress

Prints one line a phase (GB = 10⁹ bytes) and, with --json FILE, writes them as JSON.
"""
import json
import sys
import time
from pathlib import Path

import torch

from dralign.config import parse
from dralign.train import recipe as recipe_module
from dralign.train.config import TrainConfig

GB = 1e9
ROWS: list[dict] = []


def _status(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024 / GB
    raise KeyError(field)


def _reset_peak() -> None:
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS


class phase:
    """`with phase("name"):` records the peak RSS within the block and the RSS after it."""

    def __init__(self, name: str):
        self.name = name

    def __enter__(self):
        self.start_rss, self.t0 = _status("VmRSS"), time.perf_counter()
        _reset_peak()

    def __exit__(self, *exc):
        row = {"phase": self.name, "start_gb": round(self.start_rss, 3), "peak_gb": round(_status("VmHWM"), 3),
               "end_gb": round(_status("VmRSS"), 3), "seconds": round(time.perf_counter() - self.t0, 1)}
        ROWS.append(row)
        print(f"{row['phase']:<28} start {row['start_gb']:6.3f}  peak {row['peak_gb']:6.3f}  "
              f"end {row['end_gb']:6.3f} GB  ({row['seconds']} s)", flush=True)


def _wrap(cls, method: str, name: str):
    original = getattr(cls, method)

    def wrapped(self, *args, **kwargs):
        with phase(name):
            return original(self, *args, **kwargs)

    setattr(cls, method, wrapped)


def main(argv: list[str]) -> None:
    out_json = None
    if "--json" in argv:
        i = argv.index("--json")
        out_json, argv = argv[i + 1], argv[:i] + argv[i + 2:]
    cfg = parse(TrainConfig, argv, prog="memory_profile")
    Recipe = recipe_module.Recipe
    for method, name in [("_setup_data", "data (read, tokenise)"), ("_setup_model", "model load (+ LoRA)"),
                         ("_setup_scoring", "reference pass (cache)"), ("_setup_optimizer", "optimizer set-up")]:
        _wrap(Recipe, method, name)
    imports = _status("VmHWM")  # before the first reset: the peak of the imports
    ROWS.append({"phase": "imports", "start_gb": 0.0, "peak_gb": round(imports, 3), "end_gb": round(_status("VmRSS"), 3),
                 "seconds": None})
    recipe = Recipe(cfg)
    acc = recipe.accelerator
    backward = acc.backward
    holder: dict = {}

    def timed_backward(loss, **kwargs):
        holder["open"].__exit__(None, None, None)  # the forward (and objective) ends here
        with phase("training backward"):
            backward(loss, **kwargs)
        holder["open"] = phase("optimizer step (AdamW)")
        holder["open"].__enter__()

    acc.backward = timed_backward
    micro = recipe.micro_batches(0)
    print("micro-batch shapes:", {k: tuple(v.shape) for k, v in micro[0].items()}, flush=True)
    recipe.micro_batches = lambda step: micro
    holder["open"] = phase("training forward (+ loss)")
    holder["open"].__enter__()
    recipe.step(0)
    holder["open"].__exit__(None, None, None)
    peak = max(row["peak_gb"] for row in ROWS)  # (ru_maxrss is reset with VmHWM: not the whole run's)
    print(f"peak of the run: {peak:.3f} GB; torch {torch.__version__}, threads {torch.get_num_threads()}",
          flush=True)
    if out_json:
        Path(out_json).write_text(json.dumps({"phases": ROWS, "peak_gb": round(peak, 3)}, indent=1))


if __name__ == "__main__":
    main(sys.argv[1:])
