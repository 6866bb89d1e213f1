"""`dralign bench shift`'s runner: validation seeds pick each robust method's own parameter
(against DPO's frontier on validation prompts), then every test run is trained per test seed,
measured with common random numbers, and the claims are judged (steps in :mod:`dralign_bench.shift`)."""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from .. import world
from .claims import frontier_at
from .data import build_dataset, heldout_pairs, human_rows, training_prompts, write_jsonl
from .measure import HeldoutPairs, SeedMetrics, evaluate_policy
from .papers import evaluate_claims
from .scenarios import (RunSpec, ShiftConfig, ShiftOptions, default_choices, frontier_runs, plan, resolve,
                        scenarios_of, steps_of)

__all__ = ["run_shift"]

VALIDATION_SEED0 = 1000  # validation seeds 1000, 1001, … never coincide with test seeds 0…7

_DIVERGENCE = {"fdpo-fkl": "forward_kl", "fdpo-js": "js"}


def _train_config(opts: ShiftOptions, lm: Path, data: Path, run: RunSpec, out: Path, seed: int):
    from dralign.config import build
    from dralign.train.config import TrainConfig

    batch = {"unpaired": 2 * opts.unpaired_batch, "repaired": opts.unpaired_batch}.get(run.dataset, opts.batch_size)
    if run.dataset == "human":  # scarce human rows: a smaller batch rather than none
        batch = min(batch, human_rows(opts))
    values = dict(model=str(lm), data=str(data), method=run.method, output_dir=str(out), overwrite=True,
                  max_steps=steps_of(opts, run), batch_size=batch, lr=opts.lr,
                  warmup_steps=max(1, steps_of(opts, run) // 10),
                  max_length=128, beta=opts.beta, seed=seed, progress=False,
                  ref_cache_dir=str(Path(opts.output_dir) / "ref_cache"))
    values.update(dict(run.params))
    return build(TrainConfig, values)


class _Seed:
    """One seed's shared material: datasets, prompts, the start model's samples' log-probs, pairs."""

    def __init__(self, opts, seed, validation, tokenizer, start, root, lm):
        from dralign.eval.generate import completion_logps

        self.seed, self.dir, self.lm = seed, root / "runs" / f"seed-{seed}", lm
        self.ratio: dict | None = None  # the sources scenario's density-ratio fit (AUC, ESS)
        self.seen: dict[str, list[int]] = {}  # completions per step each run's trainer drew
        self.tokenizer, self.start = tokenizer, start
        if validation:  # validation prompts: the train pool minus this seed's training prompts
            used = training_prompts(opts, seed)
            pool = [p for p in world.generate_prompts(4 * opts.validation_prompts, seed=seed + 77, split="train")
                    if p not in used]
            self.prompts = list(dict.fromkeys(pool))[: opts.validation_prompts]
        else:
            self.prompts = world.generate_prompts(opts.eval_prompts, seed=seed, split="heldout")
        # validation seeds draw their own pairs (another seed of the pair generator), fewer of them
        n_pairs = min(opts.eval_pairs, opts.validation_prompts) if validation else opts.eval_pairs
        self.pairs = HeldoutPairs.build(heldout_pairs(opts, seed, n_pairs), tokenizer, start)
        self.files: dict[str, Path] = {}
        self._cache: dict = {}
        self.start_logps = lambda comp: completion_logps(start, tokenizer, comp.prompts, comp.token_ids,
                                                         append_eos=comp.ended_at_eos)

    def data(self, opts, dataset: str) -> Path:
        if dataset not in self.files:
            rows = build_dataset(opts, dataset, self.seed)
            path = write_jsonl(self.dir / "data" / f"{dataset}.jsonl", rows)
            if dataset == "sources-oracle":  # the oracle ratio: the upper reference of reweighting
                from .oracle import write_oracle_file

                path = path.with_suffix(".ratios.jsonl")
                oracle = write_oracle_file(opts, rows, path, self.start, self.tokenizer)
                self.ratio = {**(self.ratio or {}), **oracle}
            self.files[dataset] = self._with_ratios(path) if dataset == "sources" else path
        return self.files[dataset]

    def _with_ratios(self, path: Path) -> Path:
        """DoRA's density ratios (target: the human source), cross-fitted once per seed on the
        start model's features, as every user of `dralign ratio fit` gets them; the file then
        carries `target_prob` and `ratio` columns (read by dora, ignored by the others)."""
        import contextlib
        import io

        from dralign.ratio.cli import RatioOptions, fit_file

        out = path.with_suffix(".ratios.jsonl")
        with contextlib.redirect_stdout(io.StringIO()):
            fit = fit_file(RatioOptions(data=str(path), output=str(out), target=["human"], model=str(self.lm),
                                        seed=self.seed))
        self.ratio = {**(self.ratio or {}), "auc": float(fit.auc), "ece": float(fit.ece), "prior": float(fit.prior),
                      "ess": fit.ess_fraction, "weight_max": float(fit.weight.max())}
        return out


def _measure_start(opts, tokenizer, start, sd: _Seed, console) -> SeedMetrics:
    """The start model on the seed's prompts and pairs: every scenario's reference row."""
    import torch

    with torch.no_grad():
        m = evaluate_policy(start, start, tokenizer, opts, sd.prompts, sd.seed, sd.start_logps, sd.pairs,
                            "reverse_kl", opts.beta)
    console.print(f"seed {sd.seed:>4} {'start':<34} r(α₀) {m.r0:.3f} worst {m.worst:.3f} acc {m.acc:.3f}")
    return m


def _train_and_measure(opts, lm, tokenizer, start, sd: _Seed, run: RunSpec, console) -> SeedMetrics:
    import torch

    from dralign.modeling import load_model
    from rich.markup import escape

    from .seen import train_counting

    out = sd.dir / run.id.replace("/", "__")
    t0 = time.perf_counter()
    result, sd.seen[run.id] = train_counting(_train_config(opts, lm, sd.data(opts, run.dataset), run, out, sd.seed))
    seconds = time.perf_counter() - t0
    policy = load_model(str(result.output_dir)).eval()
    beta = dict(run.params).get("beta", opts.beta)
    # held-out pairs only where a claim reads accuracy or calibration (flips, divergence)
    pairs = sd.pairs if run.dataset in ("flip", "clean") or "divergence" in (opts.scenarios or ["divergence"]) else None
    with torch.no_grad():
        m = evaluate_policy(policy, start, tokenizer, opts, sd.prompts, sd.seed, sd.start_logps, pairs,
                            _DIVERGENCE.get(run.method, "reverse_kl"), beta)
    m.seconds = seconds
    shutil.rmtree(out, ignore_errors=True)  # weights and optimizer state are not reused
    console.print(f"seed {sd.seed:>4} {escape(run.id):<34} r(α₀) {m.r0:.3f} worst {m.worst:.3f} KL {m.kl:6.2f} "
                  f"acc {m.acc:.3f} calib {m.calib:.3f} ({seconds:.0f}s)")
    return m


def _select(opts, val: dict, chosen: dict, console) -> dict:
    """Each tuned method's parameter: the grid value with the largest mean (over validation
    seeds) of y − DPO's frontier at its x. Returns the selection record."""
    record = {}
    for sc in scenarios_of(opts):
        fids = [r.id for r in frontier_runs(opts, sc)]
        for t in sc.tuned:
            scores = {}
            for v in t.grid:
                rid = RunSpec(t.dataset, t.method, ((t.param, v),)).id
                ms = val.get(rid, [])
                scores[v] = float(np.mean([m.get(t.y) - frontier_at([val[f][s].get(t.x) for f in fids],
                                                                     [val[f][s].get(t.y) for f in fids], m.get(t.x))
                                           for s, m in enumerate(ms)])) if ms else float("nan")
            best = max(t.grid, key=lambda v: -np.inf if np.isnan(scores[v]) else scores[v])
            chosen[(t.dataset, t.method)] = best
            record[f"{t.dataset}/{t.method}"] = {"param": t.param, "grid": list(t.grid), "chosen": best,
                                                 "criterion": f"{t.y} − DPO frontier at matched {t.x}",
                                                 "validation_scores": {str(k): v for k, v in scores.items()}}
            console.print(f"selected {t.method} {t.param}={best:g} (validation scores {scores})")
    return record


def _cell_trainer(lm, tokenizer, start, root: Path, console):
    """The maps' `train_cell`: one seed's runs of one cell, measured like the test runs."""
    def train_cell(opts: ShiftOptions, runs: list[RunSpec], seed: int) -> tuple[dict, list[float]]:
        sd = _Seed(opts, seed, False, tokenizer, start, root, lm)
        got = {r.id: _train_and_measure(opts, lm, tokenizer, start, sd, r, console) for r in runs}
        return got, [sd.ratio["auc"]] if sd.ratio and "auc" in sd.ratio else []
    return train_cell


def run_shift(cfg: ShiftConfig | ShiftOptions, console=None, command: str = "dralign bench shift") -> dict:
    """Run the benchmark of `cfg`; write results.json, the plots and report.md; return the results.

    `command` is recorded in the report as the command that made it."""
    import torch
    from rich.console import Console

    from dralign.modeling import load_model, load_tokenizer

    from ..plotting import require_matplotlib
    from ..world_lm import DEFAULT_CACHE_DIR, WorldLMSpec, world_lm

    opts = resolve(cfg.shift if isinstance(cfg, ShiftConfig) else cfg)
    require_matplotlib()  # before the runs, not after them
    console = console or Console()
    root = Path(opts.output_dir)
    t_start = time.perf_counter()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    lm = world_lm(WorldLMSpec(steps=opts.lm_steps or WorldLMSpec.steps), opts.cache_dir or DEFAULT_CACHE_DIR, console)
    tokenizer = load_tokenizer(str(lm))
    start = load_model(str(lm)).eval()
    if opts.maps:  # the second profile: maps only (:mod:`.maps`)
        from .maps import run_maps

        maps = run_maps(opts, _cell_trainer(lm, tokenizer, start, root, console), console=console)
        shutil.rmtree(root / "runs", ignore_errors=True)
        return {"maps": maps}

    val: dict[str, list[SeedMetrics]] = {}
    runs = plan(opts) if opts.validation_seeds else []  # empty when no scenario tunes anything
    if runs:
        console.rule(f"[bold]validation: {len(runs)} runs × {opts.validation_seeds} seed(s)")
        for k in range(opts.validation_seeds):
            sd = _Seed(opts, VALIDATION_SEED0 + k, True, tokenizer, start, root, lm)
            for run in runs:
                val.setdefault(run.id, []).append(_train_and_measure(opts, lm, tokenizer, start, sd, run, console))
    chosen = default_choices(opts)
    selection = _select(opts, val, chosen, console) if runs else {}
    runs = plan(opts, chosen)
    console.rule(f"[bold]test: {len(runs)} runs × {opts.seeds} seed(s)")
    metrics: dict[str, list[SeedMetrics]] = {}
    ratios: list[dict] = []
    seen: dict[str, list[int]] = {}  # completions per step, every step of every seed
    for seed in range(opts.seeds):
        sd = _Seed(opts, seed, False, tokenizer, start, root, lm)
        metrics.setdefault("start", []).append(_measure_start(opts, tokenizer, start, sd, console))
        for run in runs:
            metrics.setdefault(run.id, []).append(_train_and_measure(opts, lm, tokenizer, start, sd, run, console))
        for rid, counts in sd.seen.items():
            seen.setdefault(rid, []).extend(counts)
        if sd.ratio is not None:
            ratios.append(sd.ratio)
            console.print(f"seed {seed:>4} density ratios: held-out AUC {sd.ratio['auc']:.3f}, ESS {sd.ratio['ess']:.2f}")
    claims = evaluate_claims(opts, metrics, chosen, ratios, seen)
    from .papers import mixture_regret
    results = {
        "options": {**asdict(opts), "test_seeds": opts.seeds},
        "world_lm": json.loads((lm / "pretraining.json").read_text()),
        "scenarios": {sc.name: sc.question for sc in scenarios_of(opts)},
        "selection": selection,
        "runs": {rid: {"seeds": [asdict(m) for m in ms]} for rid, ms in metrics.items()},
        "validation_runs": {rid: {"seeds": [asdict(m) for m in ms]} for rid, ms in val.items()},
        "density_ratios": ratios,  # sources scenario, per test seed: held-out AUC, ECE, prior, ESS, oracle AUC
        "claims": claims,
        "regret": mixture_regret(opts, metrics),  # mixture: each run's regret at α against DPO trained at α
        "seconds": time.perf_counter() - t_start,
        "command": command,
    }
    shutil.rmtree(root / "runs", ignore_errors=True)
    shutil.rmtree(root / "ref_cache", ignore_errors=True)
    root.mkdir(parents=True, exist_ok=True)
    from .report import plot_claims, power_summary, print_tables, write_report

    results["power"] = power_summary(claims)

    results["files"] = {"results": str(root / "results.json"), "plots": plot_claims(results, root)}
    results["files"]["report"] = write_report(results, root / "report.md")
    (root / "results.json").write_text(json.dumps(results, indent=2))
    print_tables(results, console)
    return results
