"""WDPO step time relative to DPO on the same model and batch, with SDPA and eager attention.

    .venv/bin/python benchmarks/wdpo_step_time.py [--layers 4 --hidden 256 --batch 8 --length 128]

One step = forward + backward of one batch of pairs (reference log-probs precomputed), timed as
the median over `--repeats` steps after `--warmup`. Prints a Markdown table of seconds per step
and the ratio to dpo with the same attention kernel.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from dralign import Objective
from dralign.data import collate_pairs
from dralign.data.tokenize import PairExample
from dralign.modeling import pair_logps
from dralign.modeling.tiny import tiny_model
from dralign.train.penalty import penalized_backward


def make_batch(batch: int, length: int, vocab: int, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    half = length // 2
    rand = lambda n: tuple(torch.randint(2, vocab, (n,), generator=g).tolist())
    examples = [PairExample(index=i, prompt_ids=rand(half), chosen_ids=rand(half), rejected_ids=rand(half))
                for i in range(batch)]
    return collate_pairs(examples, pad_token_id=1)


def time_steps(steps: dict, warmup: int, repeats: int) -> dict:
    """Median seconds per step of each callable, measured round-robin so that any background
    load affects every method alike."""
    for step in steps.values():
        for _ in range(warmup):
            step()
    times = {name: [] for name in steps}
    for _ in range(repeats):
        for name, step in steps.items():
            t0 = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(t) for name, t in times.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--length", type=int, default=128)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--repeats", type=int, default=7)
    args = p.parse_args()
    vocab = 384
    batch = make_batch(args.batch, args.length, vocab)
    ref = torch.zeros(args.batch), torch.zeros(args.batch)
    rows = []
    for attn in ("sdpa", "eager"):
        model = tiny_model("llama", vocab_size=vocab, attn_implementation=attn, hidden=args.hidden,
                           layers=args.layers, heads=max(4, args.hidden // 64))
        dpo, wdpo_fd = Objective.from_preset("dpo"), Objective.from_preset("wdpo")
        wdpo_exact = Objective.from_preset("wdpo", penalty_mode="exact")

        def dpo_step():
            model.zero_grad(set_to_none=True)
            pc, pr, _, _ = pair_logps(model, batch)
            dpo(pc, pr, *ref).loss.backward()

        def wdpo_step(obj):
            model.zero_grad(set_to_none=True)
            penalized_backward(model, batch, *ref, obj)

        steps = {"dpo": dpo_step, "wdpo finite_difference": lambda: wdpo_step(wdpo_fd)}
        if attn == "eager":
            steps["wdpo exact"] = lambda: wdpo_step(wdpo_exact)
        rows += [(attn, name, t) for name, t in time_steps(steps, args.warmup, args.repeats).items()]
    print(f"llama {args.layers} layers x {args.hidden} wide, {args.batch} pairs x {args.length} tokens, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print("| attention | method | s/step | ratio to dpo |\n|---|---|---|---|")
    bases = {a: t for a, m, t in rows if m == "dpo"}
    for attn, method, t in rows:
        print(f"| {attn} | {method} | {t:.3f} | {t / bases[attn]:.2f}x |")


if __name__ == "__main__":
    main()
