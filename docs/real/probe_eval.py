"""The probe's trained model (docs/real/probe.py, run it first) scored on every PandaLM pair it
was not trained on (the 128 of probe.json included), to count enough length-matched pairs.

Run from the repository root:  OMP_NUM_THREADS=1 PYTHONPATH=src python docs/real/probe_eval.py
Writes docs/real/probe_eval.json.
"""
import json, time
from pathlib import Path

import numpy as np

from dralign.data import tokenize_pairs
from dralign.modeling import load_model, load_tokenizer
from dralign.stats import MeanCI
from dralign_bench.real.data import valid_row
from dralign_bench.real.score import completion_lengths, length_matched, longer_wins, pair_correct, pair_logps

ROOT = Path(__file__).resolve().parents[2]
out = Path("/tmp/dralign-real-probe")
N_TRAIN, MAX_LEN, MAX_PROMPT = 256, 128, 48  # as in probe.py
rows = [r for r in map(json.loads, open(ROOT.parent / "shared/data/pandalm/testset_majority.jsonl")) if valid_row(r)]
order = np.random.default_rng(0).permutation(len(rows))
held = [rows[i] for i in order[N_TRAIN:]]
base = str(next((out / "cache").iterdir()))
data = tokenize_pairs(held, load_tokenizer(base), max_length=MAX_LEN, max_prompt_length=MAX_PROMPT, on_bad_row="skip")
t = time.perf_counter()
ref = pair_logps(load_model(base), data)
pol = pair_logps(load_model(str(out / "run")), data)
c = pair_correct(pol, ref)
lens = completion_lengths(data)
lm, longer = length_matched(lens), longer_wins(lens)
ci = lambda v: MeanCI.from_values(np.asarray(v, float), level=0.95, n_resamples=1000, seed=0).__dict__
chosen_longer, chosen_shorter = lens[0] > lens[1], lens[0] < lens[1]
result = {"n_eval": len(data), "skipped": data.report.n_skipped, "prompts_cut": data.report.truncated_prompt,
          "completions_cut": data.report.truncated_completion,
          "accuracy": ci(c), "longer_baseline": ci(longer),
          "length_matched": {"n": int(lm.sum()), "accuracy": ci(c[lm])},
          "chosen_is_longer": {"n": int(chosen_longer.sum()), "accuracy": ci(c[chosen_longer])},
          "chosen_is_shorter": {"n": int(chosen_shorter.sum()), "accuracy": ci(c[chosen_shorter])},
          "agrees_with_longer": float((c == longer).mean()),
          "start_model_logprob_prefers_chosen": ci((ref[0] > ref[1]) + 0.5 * (ref[0] == ref[1])),
          "seconds": time.perf_counter() - t}
(ROOT / "docs/real/probe_eval.json").write_text(json.dumps(result, indent=2, default=float))
print(json.dumps(result, indent=2, default=float))
