"""Plain helpers every test imports the same way (`from helpers import ...`): paths, generated
preference rows, JSONL files and hand-built token batches. Fixtures live in conftest.py.

Test files are collected without `__init__.py` files (pytest's default "prepend" import mode
puts this folder on sys.path, so `helpers` imports from any sub-folder), hence every test file's
basename must be unique across tests/ (e.g. tests/eval/test_eval_cli.py, not tests/eval/test_cli.py)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"  # the project's real data, beside the checkout
STORIES = SHARED_DATA / "models" / "stories260K"  # a real pretrained tiny Llama

POSITIVE = ["good", "happy", "great", "kind", "thank you", "very much"]
NEGATIVE = ["bad", "terrible", "lazy", "awful", "sad", "the weather"]
VOCAB = 384  # vocabulary of the tiny models that `make_batch` feeds


def write_jsonl(path: Path, rows) -> Path:
    """Write `rows` (dicts, or strings written as they are) one a line; creates the folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        for row in rows:
            fh.write((row if isinstance(row, str) else json.dumps(row)) + "\n")
    return path


def preference_rows(n: int = 64, seed: int = 0) -> list[dict]:
    """Pairs whose chosen responses use positive words and rejected ones negative words, with
    a `group` (two groups) and a `ratio` (density ratio, four levels) column."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        prompt = f"Human: question {i}, please answer briefly? Assistant:"
        rows.append(
            {
                "prompt": prompt,
                "chosen": " " + " ".join(rng.choices(POSITIVE, k=3)) + ".",
                "rejected": " " + " ".join(rng.choices(NEGATIVE, k=3)) + ".",
                "group": "ab"[i % 2],
                "ratio": 0.25 + 0.5 * (i % 4),
            }
        )
    return rows


def unpaired_rows(n: int = 64, seed: int = 0) -> list[dict]:
    """Unpaired rows (prompt, completion, label): even rows desirable (positive words)."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        good = i % 2 == 0
        words = POSITIVE if good else NEGATIVE
        rows.append(
            {
                "prompt": f"Human: topic {i // 2}? Assistant:",
                "completion": " " + " ".join(rng.choices(words, k=3)) + ".",
                "label": good,
            }
        )
    return rows


def make_batch(prompt_lens, completion_lens, length=None, vocab=VOCAB, seed=0):
    """A right-padded batch: rows of `prompt_len` prompt tokens then `completion_len`
    completion tokens (random ids in [2, vocab)), padded with token 1 to `length` (default: the
    longest row + 2); `index` numbers the pairs (chosen rows first, then rejected rows)."""
    g = torch.Generator().manual_seed(seed)
    length = length or max(p + c for p, c in zip(prompt_lens, completion_lens)) + 2
    n = len(prompt_lens)
    input_ids = torch.ones(n, length, dtype=torch.long)
    attention_mask = torch.zeros(n, length, dtype=torch.long)
    completion_mask = torch.zeros(n, length, dtype=torch.bool)
    for i, (p, c) in enumerate(zip(prompt_lens, completion_lens)):
        input_ids[i, : p + c] = torch.randint(2, vocab, (p + c,), generator=g)
        attention_mask[i, : p + c] = 1
        completion_mask[i, p : p + c] = True
    return {
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "completion_mask": completion_mask,
        "index": torch.arange(n // 2),
    }


def pair_logp_grads(model, batch, weights) -> dict:
    """Parameter gradients of Σ_i w_i (log π(y_i⁺) − 0.7 log π(y_i⁻)) over a paired batch (any
    layout): a fixed, asymmetric function of the pair log-probs, to compare layouts by."""
    from dralign.modeling import pair_logps

    model.zero_grad(set_to_none=True)
    lp = pair_logps(model, batch)
    ((lp.chosen_sum - 0.7 * lp.rejected_sum) * weights).sum().backward()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


# `dralign train` on a tiny model, fast: the reliability and run-folder tests' common flags
TRAIN_FAST = ["--no-progress", "--max-length", "64", "--batch-size", "8", "--lr", "1e-3"]


def train_cli(*args) -> int:
    """`dralign train` with `TRAIN_FAST` and `args` (any values, turned into strings)."""
    from dralign.cli import main

    return main(["train", *TRAIN_FAST, *map(str, args)])
