"""`dralign demo` (= `make demo`): the main job on its built-in default, offline on a CPU.

A small, real alignment run: preference pairs from the shift world (DESIGN §5), labelled by
Bradley–Terry on its gold sentiment reward; a tiny Llama built from a config with a tokenizer
trained on the world's corpus; several presets trained from the same start on the same data and
budget; a table of training and held-out metrics.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

DEMO_METHODS = ("dpo", "kldpo", "fdpo-js", "cvar")


def _write_jsonl(path: Path, rows) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        for row in rows:
            fh.write(json.dumps({k: row[k] for k in ("prompt", "chosen", "rejected")}) + "\n")
    return path


def build_demo_world(root: Path, n_train: int = 256, n_eval: int = 64, seed: int = 0):
    """Tiny model folder + train/eval JSONL files under `root`; returns their paths."""
    from .bench import world
    from .modeling.tiny import tiny_model, tiny_tokenizer

    reward = world.GOLD_OBJECTIVES["sentiment"]
    files = {}
    for split, n in (("train", n_train), ("heldout", n_eval)):
        prompts = world.generate_prompts(n, seed=seed, split=split)
        pairs = world.prompt_response_pairs(prompts, seed=seed)
        rows = world.label_rows(pairs, reward, temperature=0.1, seed=seed)
        files[split] = _write_jsonl(root / f"{split}.jsonl", rows)
    model_dir = root / "base-model"
    if not (model_dir / "config.json").exists():
        tok = tiny_tokenizer(world.generate_corpus(2000, seed=seed), vocab_size=512)
        model = tiny_model("llama", vocab_size=len(tok), seed=seed, hidden=64, layers=2)
        model.config.eos_token_id, model.config.pad_token_id = tok.eos_token_id, tok.pad_token_id
        model.save_pretrained(model_dir)
        tok.save_pretrained(model_dir)
    return model_dir, files["train"], files["heldout"]


def run_demo(steps: int = 40, output_dir: str = "outputs/demo", methods=DEMO_METHODS,
             console: Console | None = None) -> int:
    from .config import build
    from .train.config import TrainConfig
    from .train.trainer import train

    console = console or Console()
    root = Path(output_dir)
    console.rule("[bold]dralign demo")
    model_dir, train_file, eval_file = build_demo_world(root)
    console.print(f"tiny Llama at {model_dir}; pairs labelled by Bradley–Terry on the gold "
                  f"sentiment reward: {train_file}, held out: {eval_file}")
    table = Table(title=f"{len(methods)} methods, same start, same data, {steps} steps each")
    for col in ("method", "train loss", "train acc", "margin", "held-out acc", "held-out margin", "pairs/s", "time"):
        table.add_column(col, justify="right" if col != "method" else "left")
    for method in methods:
        t0 = time.perf_counter()
        cfg = build(TrainConfig, dict(model=str(model_dir), data=str(train_file), eval_data=str(eval_file),
                                      method=method, output_dir=str(root / method), max_steps=steps,
                                      batch_size=16, lr=2e-3, warmup_steps=4, max_length=128,
                                      ref_cache_dir=str(root / "ref_cache"), progress=True))
        result = train(cfg)
        m = result.metrics
        table.add_row(method, f"{m['loss']:.4f}", f"{m['rewards/accuracies']:.2f}",
                      f"{m['rewards/margins']:.3f}", f"{m.get('eval/rewards/accuracies', float('nan')):.2f}",
                      f"{m.get('eval/rewards/margins', float('nan')):.3f}", f"{m['pairs_per_s']:.0f}",
                      f"{time.perf_counter() - t0:.0f}s")
    console.print(table)
    console.print(f"models, metrics.jsonl and model cards under {root}/<method>/")
    return 0
