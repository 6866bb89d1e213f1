"""The CPU-scale feasibility probe of `dralign bench real` (docs/real/report.md, "Probe"):
does DPO with LoRA move held-out preference accuracy, on length-matched pairs, above chance
on SmolLM2-135M-Instruct at a size that runs on a shared 2-core CPU?

Run from the repository root:  OMP_NUM_THREADS=1 PYTHONPATH=src python docs/real/probe.py
Writes docs/real/probe.json. Data: ../shared/data/pandalm (short responses: every token is
cheap on a CPU), a seeded split into train and held-out pairs.
"""
import json, sys, time
from pathlib import Path

import numpy as np

from dralign.config import build
from dralign.data import load_rows, tokenize_pairs
from dralign.modeling import load_model, load_tokenizer
from dralign.train import train
from dralign.train.config import TrainConfig
from dralign_bench.real.score import (base_folder, completion_lengths, length_matched,
                                      longer_wins, pair_correct, pair_logps)
from dralign_bench.real.options import smollm2_gguf
from dralign.stats import MeanCI

ROOT = Path(__file__).resolve().parents[2]
N_TRAIN, N_EVAL, STEPS, BATCH, LR, MAX_LEN, MAX_PROMPT = 256, 128, 32, 8, 1e-3, 128, 48
out = Path("/tmp/dralign-real-probe")
t_all = time.perf_counter()
base = base_folder(smollm2_gguf(), out / "cache")
from dralign_bench.real.data import valid_row
rows = [r for r in map(json.loads, open(ROOT.parent / "shared/data/pandalm/testset_majority.jsonl")) if valid_row(r)]
order = np.random.default_rng(0).permutation(len(rows))
train_rows = [rows[i] for i in order[:N_TRAIN]]
eval_rows = [rows[i] for i in order[N_TRAIN:N_TRAIN + N_EVAL]]
out.mkdir(parents=True, exist_ok=True)
(out / "train.jsonl").write_text("".join(json.dumps({k: r[k] for k in ("prompt", "chosen", "rejected")}) + "\n" for r in train_rows))
tok = load_tokenizer(base)
ev = tokenize_pairs(eval_rows, tok, max_length=MAX_LEN, max_prompt_length=MAX_PROMPT, on_bad_row="skip")
ref = load_model(base)
t = time.perf_counter(); rl = pair_logps(ref, ev); t_eval = time.perf_counter() - t
lens = completion_lengths(ev); lm = length_matched(lens)
cfg = build(TrainConfig, dict(model=base, data=str(out / "train.jsonl"), method="dpo", output_dir=str(out / "run"),
                              overwrite=True, max_steps=STEPS, batch_size=BATCH, lr=LR, warmup_steps=3,
                              lora_r=8, max_length=MAX_LEN, max_prompt_length=MAX_PROMPT, beta=0.1,
                              seed=0, progress=False, packing="off"))
t = time.perf_counter(); res = train(cfg); t_train = time.perf_counter() - t
pl = pair_logps(load_model(str(res.output_dir)), ev)
c = pair_correct(pl, rl)
ci = lambda v: MeanCI.from_values(np.asarray(v, float), level=0.95, n_resamples=1000, seed=0)
result = {
    "data": "pandalm/testset_majority.jsonl", "n_train": N_TRAIN, "steps": STEPS, "batch_size": BATCH,
    "lr": LR, "lora_r": 8, "beta": 0.1, "max_length": MAX_LEN, "max_prompt_length": MAX_PROMPT,
    "n_eval": len(ev), "eval_prompts_cut": ev.report.truncated_prompt,
    "eval_completions_cut": ev.report.truncated_completion,
    "accuracy": ci(c).__dict__, "longer_baseline": ci(longer_wins(lens)).__dict__,
    "length_matched": {"n": int(lm.sum()), "accuracy": ci(c[lm]).__dict__ if lm.any() else None},
    "agrees_with_longer": float((c == longer_wins(lens)).mean()),
    "seconds": {"train": t_train, "eval_per_model": t_eval, "total": time.perf_counter() - t_all},
    "train_metrics": [json.loads(l) for l in open(res.output_dir / "metrics.jsonl")],
}
(ROOT / "docs/real/probe.json").write_text(json.dumps(result, indent=2, default=float))
print(json.dumps({k: v for k, v in result.items() if k != "train_metrics"}, indent=2, default=float))
