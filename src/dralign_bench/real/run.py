"""`dralign bench real`'s runner: the held-out sets scored once by the start model, DoRA's
density ratios fitted once, then per task, seed and method a short LoRA run through the public
`dralign train` path (:func:`dralign.train.train`) scored on the same held-out pairs."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import numpy as np

from dralign.lengths import completion_lengths, length_matched

from .data import heldout_rows, invalid_rows, task_rows, write_jsonl
from .options import TASKS, RealConfig, RealOptions, default_data_dir, resolve, smollm2_gguf
from .score import base_folder, pair_correct, pair_logps
from .summary import summarize

__all__ = ["run_real"]


def _methods(opts: RealOptions, task) -> list[str]:
    return [m for m in task.methods if not opts.methods or m in opts.methods]


def _train_config(opts: RealOptions, base: str, data: Path, method: str, out: Path, seed: int):
    from dralign.config import build
    from dralign.train.config import TrainConfig

    values = dict(
        model=base,
        data=str(data),
        method=method,
        output_dir=str(out),
        overwrite=True,
        max_steps=opts.steps,
        batch_size=opts.batch_size,
        lr=opts.lr,
        warmup_steps=opts.steps // 10,
        lora_r=opts.lora_r,
        max_length=opts.max_length,
        max_prompt_length=opts.max_prompt_length,
        beta=opts.beta,
        seed=seed,
        ref_cache_dir=str(Path(opts.output_dir) / "ref_cache"),
        progress=False,
    )
    if method == "wdpo":
        values["attn_implementation"] = "eager"  # the penalty's double backward needs it
    return build(TrainConfig, values)


def _fit_ratios(opts: RealOptions, rows: list[dict], reference, tokenizer, log) -> tuple[list[dict], dict]:
    """Rows with DoRA's `ratio` and `target_prob` columns from the ratio fitter (response level:
    a response is `human` when its policy is the human reference `ref`), and the fit's quality."""
    from dralign.ratio.fit import fit_density_ratios, response_source_from_policy

    t0 = time.perf_counter()
    fit = fit_density_ratios(
        rows,
        target="human",
        source_column=response_source_from_policy(("ref",)),
        response_level=True,
        model=reference,
        tokenizer=tokenizer,
        max_length=opts.max_length,
        batch_size=8,
        seed=0,
    )
    out = [
        {**r, "ratio": float(w), "target_prob": float(p)}
        for r, w, p in zip(rows, fit.weight.tolist(), fit.target_prob.tolist())
    ]
    info = {
        "auc": float(fit.auc),
        "ece": float(fit.ece),
        "brier": float(fit.brier),
        "prior": float(fit.prior),
        "folds": fit.n_folds,
        "level": fit.level,
        "pair_rule": fit.pair_rule,
        "features": fit.features,
        "n_rows": len(rows),
        "weight_min": float(fit.weight.min()),
        "weight_max": float(fit.weight.max()),
        "seconds": time.perf_counter() - t0,
    }
    log(f"density ratios: cross-fitted held-out AUC {info['auc']:.3f} on {len(rows)} pairs")
    return out, info


def _heldout(opts, names, tokenizer, reference, device, log) -> dict:
    """Per held-out set: its tokenised pairs, the start model's log-probs and what was cut."""
    from dralign.data import Columns, Truncation, load_pairs
    from dralign.eval.groups import labels_of

    sets = {}
    for name in names:
        rows = heldout_rows(opts, name)
        data = load_pairs(
            rows, tokenizer, Columns(), Truncation(opts.max_length, opts.max_prompt_length), on_bad_row="skip"
        )
        t0 = time.perf_counter()
        ref = pair_logps(reference, data, device=device)
        lengths = completion_lengths(data)
        sets[name] = {
            "data": data,
            "reference": ref,
            "lengths": lengths,
            "matched": length_matched(*lengths, opts.length_tolerance),
            "groups": labels_of(data, "group"),
            "info": {
                "rows": len(rows),
                "pairs": len(data),
                "invalid_rows_dropped_from_file": invalid_rows(opts.data_dir, name),
                "skipped": data.report.n_skipped,
                "prompts_cut": data.report.truncated_prompt,
                "completions_cut": data.report.truncated_completion,
                "score_seconds": time.perf_counter() - t0,
            },
        }
        log(
            f"held-out {name}: {len(data)} pairs ({data.report.truncated_prompt} prompts cut, "
            f"{data.report.n_skipped} skipped)"
        )
    return sets


def run_real(cfg: RealConfig | RealOptions, console=None, command: str = "dralign bench real") -> dict:
    """Run the benchmark of `cfg`; write results.json, the plots and report.md under its output
    folder; return the results."""
    import torch
    from rich.console import Console

    from dralign.modeling import load_model, load_tokenizer
    from dralign.train import train

    from ..plotting import require_matplotlib

    opts = resolve(cfg.real if isinstance(cfg, RealConfig) else cfg)
    require_matplotlib()  # before the runs, not after them
    console = console or Console()
    log = console.print
    model = opts.model or smollm2_gguf()
    opts.data_dir = opts.data_dir or default_data_dir()
    root = Path(opts.output_dir)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    t_start, load_start = time.perf_counter(), os.getloadavg()
    tasks = [TASKS[t] for t in (opts.tasks or TASKS)]
    base = base_folder(model, opts.cache_dir or root / "cache", log=log)
    tokenizer = load_tokenizer(base)
    reference = load_model(base).to(device).eval()
    names = list(dict.fromkeys(n for t in tasks for n in (*t.in_domain, *t.out_of_domain)))
    sets = _heldout(opts, names, tokenizer, reference, device, log)
    ratio_info, raw, timing = None, {}, {"heldout": time.perf_counter() - t_start, "runs": {}}
    for task in tasks:
        methods = _methods(opts, task)
        rows = task_rows(opts, task.train)
        if "dora" in methods:  # every method of the task trains on the same rows, with ratios
            fitted, ratio_info = _fit_ratios(
                opts, task_rows(opts, task.train, opts.ratio_pairs), reference, tokenizer, log
            )
            rows = fitted[: len(rows)]
        train_file = write_jsonl(root / "data" / f"{task.name}.jsonl", rows)
        for seed in range(opts.seeds):
            for method in methods:
                out = root / "runs" / task.name / method / f"seed-{seed}"
                log(f"[bold]{task.name}[/] {method} seed {seed}")
                t0 = time.perf_counter()
                result = train(_train_config(opts, base, train_file, method, out, seed))
                t_train = time.perf_counter() - t0
                policy = load_model(str(result.output_dir)).to(device).eval()
                for name in (*task.in_domain, *task.out_of_domain):
                    s = sets[name]
                    correct = pair_correct(pair_logps(policy, s["data"], device=device), s["reference"])
                    raw.setdefault(task.name, {}).setdefault(method, {}).setdefault(name, []).append(correct)
                timing["runs"][f"{task.name}/{method}/{seed}"] = {
                    "train": t_train,
                    "total": time.perf_counter() - t0,
                    "train_pairs": len(rows),
                    "final_train_metrics": {k: v for k, v in result.metrics.items() if isinstance(v, (int, float))},
                }
                acc = {n: float(np.mean(v[-1])) for n, v in raw[task.name][method].items()}
                log("  held-out accuracy " + "  ".join(f"{n} {a:.3f}" for n, a in acc.items()) + f"  ({t_train:.0f}s)")
                del policy
                shutil.rmtree(Path(result.output_dir) / "checkpoints", ignore_errors=True)
                for weights in Path(result.output_dir).glob("*.safetensors"):
                    weights.unlink()  # keep metrics, config and card
    timing["total"] = time.perf_counter() - t_start
    env = {
        "device": device,
        "cpu_count": os.cpu_count(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "torch_threads": torch.get_num_threads(),
        "load_average_start": load_start,
        "load_average_end": os.getloadavg(),
    }
    results = summarize(opts, tasks, sets, raw, ratio_info, timing, env, model, command)
    root.mkdir(parents=True, exist_ok=True)
    from .report import plot_accuracy, plot_groups, print_tables, write_report

    results["files"] = {
        "results": "results.json",
        "accuracy_plot": plot_accuracy(results, root / "accuracy.png"),
        "groups_plot": plot_groups(results, root / "groups.png"),
    }
    results["files"]["report"] = write_report(results, root / "report.md")
    (root / "results.json").write_text(json.dumps(results, indent=2))
    print_tables(results, console)
    return results
