"""Model FLOPs of dralign's training steps, and the machine's matmul peak, for `dralign bench speed`.

FLOP/s of dralign — model FLOPs of the timed steps (useful work: padding and masked-out
attention are not counted), per forward of a batch:

    2·N·T + 2·d·V·K + 4·d_att·n_layers·A

N the parameters of the transformer blocks (all but the input embedding and the LM head), T the
real tokens fed, d the width, V the vocabulary, K the positions whose logits are computed
(one per completion token; under prefix sharing one fewer per pair, the last prompt token
predicting both first completion tokens), d_att = heads × head_dim, A the (query, key) pairs a
real token attends to (causal, within its own sequence or, shared, the prompt and its own
segment). A training step counts (2 + f)× its forwards: the backward's activation gradients ≈
1× the forward and its weight gradients ≈ f× it, f the trainable fraction of the blocks'
weights (1 in full fine-tuning, so 3×; ≈ 0 with LoRA, so ≈ 2×). The peak is
the best of several float32 n×n matmuls (2n³ FLOPs each, n = 1024) measured in the same run
with the same thread count: in this process before and after, and in each dralign child
before it trains.
"""

from __future__ import annotations

import time

import torch

__all__ = ["batch_flops", "matmul_peak", "plain_flops_per_pair", "step_flops"]


def _dims(model) -> dict:
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    base = getattr(base, "module", base)
    config = base.config
    embeddings = {
        id(p)
        for m in (base.get_input_embeddings(), base.get_output_embeddings())
        if m is not None
        for p in m.parameters()
    }
    heads = config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    body = [p for p in base.parameters() if id(p) not in embeddings]
    frozen = sum(p.numel() for p in body if not p.requires_grad)
    adapter = sum(p.numel() for n, p in base.named_parameters() if "lora_" in n)  # counted apart
    total = sum(p.numel() for p in body) - adapter
    return {
        "body": total,
        "trainable_fraction": 1.0 - frozen / total,
        "width": config.hidden_size,
        "vocab": config.vocab_size,
        "attention_width": heads * head_dim,
        "layers": config.num_hidden_layers,
    }


def batch_flops(batch: dict, dims: dict) -> float:
    """Model FLOPs of one training forward + backward of `batch` (plain or prefix-shared layout);
    see the module docstring for the formula."""
    real = batch["attention_mask"].sum().item()
    completion = batch["completion_mask"].sum().item()
    if "segment_ids" in batch:  # prefix-shared rows [prompt | chosen | rejected]
        seg = batch["segment_ids"].long()
        p, c, r = ((seg == s).sum(1).double() for s in (0, 1, 2))
        logits = completion - int(((c > 0) & (r > 0)).sum())
        pairs = (p * (p + 1) / 2 + (c + r) * p + c * (c + 1) / 2 + r * (r + 1) / 2).sum().item()
    else:
        n = batch["attention_mask"].sum(1).double()
        logits, pairs = completion, (n * (n + 1) / 2).sum().item()
    forward = (
        2 * dims["body"] * real
        + 2 * dims["width"] * dims["vocab"] * logits
        + 4 * dims["attention_width"] * dims["layers"] * pairs
    )
    return (2.0 + dims.get("trainable_fraction", 1.0)) * forward


def step_flops(trainer, step: int) -> float:
    """Model FLOPs of optimizer step `step` of a dralign `Recipe` (its micro-batches rebuilt)."""
    dims = _dims(trainer.model)
    return sum(batch_flops(batch, dims) for batch in trainer.micro_batches(step))


def plain_flops_per_pair(trainer) -> float:
    """Mean model FLOPs of one pair trained as its own two rows (the plain layout, no padding):
    the work TRL's DPOTrainer does for a pair, counted on dralign's tokenisation of the same data."""
    from dralign.data.collate import collate_pairs

    dims = _dims(trainer.model)
    examples = trainer.train_data.examples
    return sum(batch_flops(collate_pairs([e], 0), dims) for e in examples) / len(examples)


def matmul_peak(
    threads: int, n: int = 1024, repeats: int = 7, dtype: torch.dtype = torch.float32, device: str = "cpu"
) -> float:
    """Best n×n matmul throughput in FLOP/s with `threads` torch threads, in `dtype` on `device`
    (float32 on CPU for `dralign bench speed`; bfloat16 on a GPU for `dralign_bench.gpu`)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    sync = torch.cuda.synchronize if str(device).startswith("cuda") else (lambda: None)
    try:
        a = torch.randn(n, n, device=device).to(dtype)
        b = torch.randn(n, n, device=device).to(dtype)
        a @ b  # warm-up
        sync()
        inner = max(1, int((2e9 if device == "cpu" else 2e13) // (2 * n**3)))
        best = 0.0
        for _ in range(repeats):
            t0 = time.perf_counter()
            for _ in range(inner):
                a @ b
            sync()
            best = max(best, 2 * n**3 * inner / (time.perf_counter() - t0))
        return best
    finally:
        torch.set_num_threads(previous)
