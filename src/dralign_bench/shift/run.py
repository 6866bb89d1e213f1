"""`dralign bench shift`'s runner: every (dataset, method) run trained from the pretrained world
LM, per seed, measured, summarised, reported (the steps are in :mod:`dralign_bench.shift`)."""

from __future__ import annotations

import json
import time
from pathlib import Path

from .. import world
from .data import build_dataset, mixture_of, write_jsonl
from .measure import SeedEval, evaluate_policy, gold_grid, sample
from .scenarios import ShiftConfig, ShiftOptions, plan, resolve
from .summary import alpha_index, evaluate_claims, summarize

__all__ = ["run_shift"]


def _train_config(opts: ShiftOptions, lm: Path, data: Path, method: str, out: Path, seed: int):
    from dralign.config import build
    from dralign.train.config import TrainConfig

    values = dict(model=str(lm), data=str(data), method=method, output_dir=str(out),
                  max_steps=opts.steps, batch_size=opts.batch_size, lr=opts.lr,
                  warmup_steps=max(1, opts.steps // 10), max_length=128, beta=opts.beta, seed=seed,
                  ref_cache_dir=str(Path(opts.output_dir) / "ref_cache"), progress=True)
    if method in ("dora", "dora-reweight"):
        values["ratio_target"] = ["human"]
    from dralign.ratio.prepare import with_fitted_ratios

    return with_fitted_ratios(build(TrainConfig, values))


def run_shift(cfg: ShiftConfig | ShiftOptions, console=None, command: str = "dralign bench shift") -> dict:
    """Run the benchmark of `cfg`; write results.json, the plots and report.md; return the results.

    `command` is recorded in the report as the command that made it."""
    import shutil

    import torch
    from rich.console import Console

    from dralign.data import load_rows, tokenize_pairs
    from dralign.modeling import load_model, load_tokenizer
    from dralign.train import train

    from ..plotting import require_matplotlib
    from ..world_lm import DEFAULT_CACHE_DIR, WorldLMSpec, world_lm

    opts = resolve(cfg.shift if isinstance(cfg, ShiftConfig) else cfg)
    require_matplotlib()  # before the runs, not after them
    console = console or Console()
    root = Path(opts.output_dir)
    runs = plan(opts)
    t_start = time.perf_counter()
    console.rule(f"[bold]shift world: {len(runs)} runs × {opts.seeds} seed(s)")
    spec = WorldLMSpec(steps=opts.lm_steps or WorldLMSpec.steps)
    lm = world_lm(spec, opts.cache_dir or DEFAULT_CACHE_DIR, console)
    tokenizer = load_tokenizer(str(lm))
    start = load_model(str(lm)).eval()
    mixtures = sorted({mixture_of(ds) for ds, _ in runs})
    raw: dict[str, list[SeedEval]] = {f"{ds}/{m}": [] for ds, m in runs}
    raw.update({f"start/{mx}": [] for mx in mixtures})
    for seed in range(opts.seeds):
        seed_dir = root / "runs" / f"seed-{seed}"
        prompts = world.generate_prompts(opts.eval_prompts, seed=seed, split="heldout")
        with torch.no_grad():
            start_comp = sample(start, tokenizer, opts, prompts, seed)
        heldout, start_rewards = {}, {}
        for mx in mixtures:
            start_rewards[mx] = gold_grid(opts, start_comp.texts, mx)
            rows = build_dataset(opts, f"mix-{mx}", seed, split="heldout")
            path = write_jsonl(seed_dir / "data" / f"heldout-{mx}.jsonl",
                                [{k: r[k] for k in ("prompt", "chosen", "rejected")} for r in rows])
            heldout[mx] = tokenize_pairs(load_rows(str(path)), tokenizer, max_length=128)
            raw[f"start/{mx}"].append(evaluate_policy(start, start, tokenizer, opts, prompts, start_rewards[mx],
                                                      heldout[mx], mx, seed))
        files: dict[str, Path] = {}
        for dataset, method in runs:
            if dataset not in files:
                files[dataset] = write_jsonl(seed_dir / "data" / f"{dataset}.jsonl",
                                              build_dataset(opts, dataset, seed))
            out = seed_dir / dataset / method
            console.print(f"[bold]seed {seed}[/] {dataset} / {method}")
            t0 = time.perf_counter()
            result = train(_train_config(opts, lm, files[dataset], method, out, seed))
            seconds = time.perf_counter() - t0
            policy = load_model(str(result.output_dir)).eval()
            mx = mixture_of(dataset)
            with torch.no_grad():
                ev = evaluate_policy(policy, start, tokenizer, opts, prompts, start_rewards[mx],
                                     heldout[mx], mx, seed)
            ev.train_seconds = seconds
            raw[f"{dataset}/{method}"].append(ev)
            a0 = alpha_index(opts, opts.alpha0)
            console.print(f"  r(α₀) {ev.rewards[:, a0].mean():.3f}  worst {ev.rewards.mean(0).min():.3f}  "
                          f"KL {ev.kl.mean():.2f}  held-out acc {ev.accuracy:.2f}  ({seconds:.0f}s)")
            shutil.rmtree(Path(result.output_dir) / "checkpoints", ignore_errors=True)  # optimizer state: not reused
            if not opts.keep_models:
                for weights in Path(result.output_dir).glob("*.safetensors"):
                    weights.unlink()  # keep metrics, config and card
    results = summarize(opts, raw, runs, lm, time.perf_counter() - t_start)
    results["claims"] = evaluate_claims(opts, raw)
    results["command"] = command
    root.mkdir(parents=True, exist_ok=True)
    (root / "results.json").write_text(json.dumps(results, indent=2))
    from .report import plot_shift, plot_tradeoff, print_tables, write_report

    results["files"] = {"results": str(root / "results.json"),
                        "shift_plot": plot_shift(results, root / "shift.png"),
                        "tradeoff_plot": plot_tradeoff(results, root / "tradeoff.png")}
    results["files"]["report"] = write_report(results, root / "report.md")
    (root / "results.json").write_text(json.dumps(results, indent=2))
    print_tables(results, console)
    return results


