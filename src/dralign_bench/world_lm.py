"""The shift world's base model: a ~1M-parameter Llama pretrained on the world's corpus, cached.

Every method in the shift-world benchmark starts from this model. It is built
and trained here, offline, from a config: a byte-level BPE tokenizer trained on the corpus
(:func:`dralign.modeling.tiny.tiny_tokenizer`) and a Llama of :class:`WorldLMSpec` size,
trained by next-token prediction on ``prompt ids + response ids + eos`` — the prompt and the
response tokenized *separately*, exactly as :mod:`dralign.data.tokenize` tokenizes a preference
row, so the pretrained model has seen the token sequences that alignment and evaluation feed it.

The result is cached under ``cache_dir/world-lm-<hash of the spec>`` and written atomically
(a temporary folder renamed into place), so concurrent or interrupted runs never see half a
model. The same spec gives the same weights on the same machine and torch build.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from . import world

__all__ = ["WorldLMSpec", "pretrain_world_lm", "world_lm", "DEFAULT_CACHE_DIR"]

DEFAULT_CACHE_DIR = Path(os.environ.get("DRALIGN_CACHE", Path.home() / ".cache" / "dralign"))


@dataclass(frozen=True)
class WorldLMSpec:
    """Size and training budget of the world's base LM (defaults: ≈0.9M parameters)."""

    hidden: int = 128
    layers: int = 4
    heads: int = 4
    vocab_size: int = 1024
    corpus_size: int = 12000  # prompt–response texts from the train prompt pool
    steps: int = 200
    batch_size: int = 48
    lr: float = 3e-3
    warmup_steps: int = 30
    seed: int = 0

    def key(self) -> str:
        """Hash of every field and the world's text version: the cache folder's name."""
        blob = json.dumps({**dataclasses.asdict(self), "world": world.WORLD_VERSION}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]


def _training_sequences(tokenizer, texts: list[tuple[str, str]]) -> list[list[int]]:
    """``prompt ids + response ids + eos`` per (prompt, response), tokenized like preference rows."""
    prompts = tokenizer([p for p, _ in texts], add_special_tokens=True)["input_ids"]
    responses = tokenizer([r for _, r in texts], add_special_tokens=False)["input_ids"]
    eos = tokenizer.eos_token_id
    return [[*p, *r, eos] for p, r in zip(prompts, responses)]


def _batch(seqs: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded input ids, attention mask and labels (−100 on padding)."""
    length = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), length), pad_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.tensor(s)
        mask[i, : len(s)] = 1
    labels = ids.masked_fill(mask == 0, -100)
    return ids, mask, labels


def pretrain_world_lm(
    spec: WorldLMSpec, output_dir: Path, progress: Callable[[int, float], None] | None = None
) -> dict:
    """Train the base LM of `spec` from scratch and save it (with its tokenizer) to `output_dir`.

    Objective: mean next-token cross-entropy over real tokens. AdamW (β=(0.9, 0.95), weight
    decay 0.01), linear warm-up then cosine decay to 10 % of `lr`, gradient clipping at 1.0.
    Batches are drawn without replacement, reshuffled each epoch (seeded). Returns a summary
    with the final loss (mean of the last 20 steps) and the parameter count.
    """
    from dralign.modeling.tiny import tiny_model, tiny_tokenizer

    rng = torch.Generator().manual_seed(spec.seed)
    prompts = world.generate_prompts(spec.corpus_size, seed=spec.seed, split="train")
    responses = world.generate_responses(prompts, seed=spec.seed)
    tokenizer = tiny_tokenizer([*prompts, *responses], vocab_size=spec.vocab_size)
    model = tiny_model(
        "llama", vocab_size=len(tokenizer), seed=spec.seed, hidden=spec.hidden, layers=spec.layers, heads=spec.heads
    )
    model.config.eos_token_id = tokenizer.eos_token_id
    model.config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    seqs = _training_sequences(tokenizer, list(zip(prompts, responses)))

    optim = torch.optim.AdamW(model.parameters(), lr=spec.lr, betas=(0.9, 0.95), weight_decay=0.01)

    def lr_at(step: int) -> float:
        if step < spec.warmup_steps:
            return spec.lr * (step + 1) / spec.warmup_steps
        t = (step - spec.warmup_steps) / max(1, spec.steps - spec.warmup_steps)
        return spec.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * t)))

    model.train()
    order: list[int] = []
    losses = []
    t0 = time.perf_counter()
    for step in range(spec.steps):
        if len(order) < spec.batch_size:
            order = torch.randperm(len(seqs), generator=rng).tolist()
        idx, order = order[: spec.batch_size], order[spec.batch_size :]
        ids, mask, labels = _batch([seqs[i] for i in idx], tokenizer.pad_token_id)
        for group in optim.param_groups:
            group["lr"] = lr_at(step)
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        optim.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optim.step()
        losses.append(loss.item())
        if progress is not None:
            progress(step + 1, losses[-1])
    model.eval()
    model.save_pretrained(output_dir)
    tokenizer.save_pretrained(output_dir)
    summary = {
        "spec": dataclasses.asdict(spec),
        "world_version": world.WORLD_VERSION,
        "parameters": sum(p.numel() for p in model.parameters()),
        "final_loss": sum(losses[-20:]) / len(losses[-20:]),
        "seconds": time.perf_counter() - t0,
    }
    (Path(output_dir) / "pretraining.json").write_text(json.dumps(summary, indent=2))
    return summary


def world_lm(spec: WorldLMSpec = WorldLMSpec(), cache_dir: str | Path = DEFAULT_CACHE_DIR, console=None) -> Path:
    """The folder of the pretrained world LM for `spec`: from the cache, or trained now.

    Training shows a progress bar on `console` (a rich Console) when given.
    """
    cache_dir = Path(cache_dir)
    path = cache_dir / f"world-lm-{spec.key()}"
    if (path / "pretraining.json").exists():
        return path
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".world-lm-", dir=cache_dir))
    try:
        if console is not None:
            console.print(f"pretraining the world LM once ({spec.steps} steps; cached in {cache_dir})")
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

            with Progress(
                TextColumn("pretraining the world LM"),
                BarColumn(),
                TextColumn("step {task.completed}/{task.total} loss {task.fields[loss]:.3f}"),
                TimeElapsedColumn(),
                console=console,
                transient=True,
            ) as bar:
                task = bar.add_task("pretrain", total=spec.steps, loss=float("nan"))
                summary = pretrain_world_lm(spec, tmp, lambda s, l: bar.update(task, completed=s, loss=l))
            console.print(
                f"world LM: {summary['parameters']:,} parameters, final loss "
                f"{summary['final_loss']:.3f}, {summary['seconds']:.0f}s → {path}"
            )
        else:
            pretrain_world_lm(spec, tmp)
        try:
            os.replace(tmp, path)
        except OSError:  # another process finished first: keep theirs
            if not (path / "pretraining.json").exists():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return path
