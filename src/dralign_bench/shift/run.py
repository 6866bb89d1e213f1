"""The shift world's runs in one process: validation seeds pick each robust method's own
parameter (against DPO's envelope on validation prompts), then every test run is trained per
test seed, measured with common random numbers, and the claims are judged (steps in
:mod:`dralign_bench.shift`; the command itself: :mod:`.command`)."""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from dralign.errors import BadOptionError

from .. import world
from . import provenance
from .claims import X_DIRECTION, frontier_y, holm_report
from .data import build_dataset, heldout_pairs, human_rows, training_prompts, write_jsonl
from .measure import HeldoutPairs, SeedMetrics, evaluate_policy
from .papers import evaluate_claims, mixture_regret
from .scenarios import RunSpec, ShiftOptions, default_choices, frontier_runs, plan, scenarios_of, steps_of

__all__ = ["cell_trainer", "execute", "maps_results", "seed_values", "world_models"]

VALIDATION_SEED0 = 1000  # validation seeds 1000, 1001, …; resolve_seeds refuses test seeds among them

_DIVERGENCE = {"fdpo-fkl": "forward_kl", "fdpo-js": "js"}


def _train_config(opts: ShiftOptions, lm: Path, data: Path, run: RunSpec, out: Path, seed: int):
    from dralign.config import build
    from dralign.train.config import TrainConfig

    batch = {"unpaired": 2 * opts.unpaired_batch, "repaired": opts.unpaired_batch}.get(run.dataset, opts.batch_size)
    if run.dataset == "human":  # scarce human rows: a smaller batch rather than none
        batch = min(batch, human_rows(opts))
    values = dict(
        model=str(lm),
        data=str(data),
        method=run.method,
        output_dir=str(out),
        overwrite=True,
        max_steps=steps_of(opts, run),
        batch_size=batch,
        lr=opts.lr,
        warmup_steps=max(1, steps_of(opts, run) // 10),
        max_length=128,
        beta=opts.beta,
        seed=seed,
        progress=False,
        ref_cache_dir=str(Path(opts.output_dir) / "ref_cache"),
    )
    values.update(dict(run.params))
    return build(TrainConfig, values)


class _Seed:
    """One seed's shared material: datasets, prompts, the start model's samples' log-probs, pairs."""

    def __init__(self, opts, seed, validation, tokenizer, start, root, lm):
        from dralign.eval.generate import completion_log_likelihoods

        self.seed, self.dir, self.lm = seed, root / "runs" / f"seed-{seed}", lm
        self.ratio: dict | None = None  # the sources scenario's density-ratio fit (AUC, ESS)
        self.seen: dict[str, list[int]] = {}  # completions per step each run's trainer drew
        self.tokenizer, self.start = tokenizer, start
        if validation:  # validation prompts: the train pool minus this seed's training prompts
            used = training_prompts(opts, seed)
            pool = [
                p
                for p in world.generate_prompts(4 * opts.validation_prompts, seed=seed + 77, split="train")
                if p not in used
            ]
            self.prompts = list(dict.fromkeys(pool))[: opts.validation_prompts]
        else:
            self.prompts = world.generate_prompts(opts.eval_prompts, seed=seed, split="heldout")
        # validation seeds draw their own pairs (another seed of the pair generator), fewer of them
        n_pairs = min(opts.eval_pairs, opts.validation_prompts) if validation else opts.eval_pairs
        self.pairs = HeldoutPairs.build(heldout_pairs(opts, seed, n_pairs), tokenizer, start)
        self.files: dict[str, Path] = {}
        self._cache: dict = {}
        self.start_logps = lambda comp: completion_log_likelihoods(
            start, tokenizer, comp.prompts, comp.token_ids, append_eos=comp.ended_at_eos
        )

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
            fit = fit_file(
                RatioOptions(data=str(path), output=str(out), target=["human"], model=str(self.lm), seed=self.seed)
            )
        self.ratio = {
            **(self.ratio or {}),
            "auc": float(fit.auc),
            "ece": float(fit.ece),
            "prior": float(fit.prior),
            "ess": fit.ess_fraction,
            "weight_max": float(fit.weight.max()),
        }
        return out


def _measure_start(opts, tokenizer, start, sd: _Seed, console) -> SeedMetrics:
    """The start model on the seed's prompts and pairs: every scenario's reference row."""
    import torch

    with torch.no_grad():
        m = evaluate_policy(
            start, start, tokenizer, opts, sd.prompts, sd.seed, sd.start_logps, sd.pairs, "reverse_kl", opts.beta
        )
    console.print(_progress(sd.seed, "start", m))
    return m


def _progress(seed: int, rid: str, m: SeedMetrics, seconds: float | None = None) -> str:
    """One run's line (80 columns where the scenario has no held-out pairs; no NaN shown)."""
    from rich.markup import escape

    from .report import short_id

    pairs = f" acc {m.acc:.3f} |p̂−p| {m.calib:.3f}" if np.isfinite(m.acc) and rid != "start" else ""
    return (
        f"seed {seed:>4} {escape(f'{short_id(rid):<22}')} r(α₀) {m.r0:.3f} worst {m.worst:.3f} KL {m.kl:5.2f}{pairs}"
        + (f" ({seconds:.0f}s)" if seconds is not None else "")
    )


def _train_and_measure(opts, lm, tokenizer, start, sd: _Seed, run: RunSpec, console) -> SeedMetrics:
    import torch

    from dralign.modeling import load_model

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
        m = evaluate_policy(
            policy,
            start,
            tokenizer,
            opts,
            sd.prompts,
            sd.seed,
            sd.start_logps,
            pairs,
            _DIVERGENCE.get(run.method, "reverse_kl"),
            beta,
        )
    m.seconds = seconds
    shutil.rmtree(out, ignore_errors=True)  # weights and optimizer state are not reused
    console.print(_progress(sd.seed, run.id, m, seconds))
    return m


def _select(opts, val: dict, chosen: dict, console) -> dict:
    """Each tuned method's parameter: the grid value with the largest mean (over validation
    seeds where the method lies inside DPO's range) of y − DPO's envelope at its x. Returns
    the selection record."""
    record = {}
    for sc in scenarios_of(opts):
        fids = [r.id for r in frontier_runs(opts, sc)]
        for t in sc.tuned:
            scores = {}
            for v in t.grid:
                ms = val.get(RunSpec(t.dataset, t.method, ((t.param, v),)).id, [])
                gaps = [
                    m.get(t.y) - frontier_y(val, fids, s, t.x, t.y, m.get(t.x), X_DIRECTION[t.x])
                    for s, m in enumerate(ms)
                ]
                gaps = [g for g in gaps if np.isfinite(g)]  # outside DPO's range: no value, never extrapolated
                scores[v] = float(np.mean(gaps)) if gaps else float("nan")
            best = max(t.grid, key=lambda v: -np.inf if np.isnan(scores[v]) else scores[v])
            chosen[(t.dataset, t.method)] = best
            record[f"{t.dataset}/{t.method}"] = {
                "param": t.param,
                "grid": list(t.grid),
                "chosen": best,
                "criterion": f"{t.y} − DPO envelope at matched {t.x}",
                "validation_scores": {str(k): v for k, v in scores.items()},
            }
            console.print(f"selected {t.method} {t.param}={best:g} (validation scores {scores})")
    return record


def seed_values(opts: ShiftOptions) -> tuple[list[int], list[int]]:
    """The test and validation seed values; BadOptionError if they would overlap."""
    test = list(range(opts.seed_offset, opts.seed_offset + opts.seeds))
    val = list(range(VALIDATION_SEED0, VALIDATION_SEED0 + opts.validation_seeds))
    if opts.seed_offset < 0 or set(test) & set(val):
        raise BadOptionError(
            f"--seed-offset {opts.seed_offset}: the test seeds {test[0]}–{test[-1]} must be >= 0 "
            f"and miss the validation seeds {val}"
        )
    return test, val


def world_models(opts: ShiftOptions, console) -> tuple[Path, object, object]:
    """(world LM folder, its tokenizer, the start model in eval mode): trained once and cached."""
    from dralign.modeling import load_model, load_tokenizer

    from ..world_lm import DEFAULT_CACHE_DIR, WorldLMSpec, world_lm

    lm = world_lm(WorldLMSpec(steps=opts.lm_steps or WorldLMSpec.steps), opts.cache_dir or DEFAULT_CACHE_DIR, console)
    return lm, load_tokenizer(str(lm)), load_model(str(lm)).eval()


def cell_trainer(lm, tokenizer, start, root: Path, console):
    """The maps' `train_cell`: one seed's runs of one cell, measured like the test runs."""

    def train_cell(opts: ShiftOptions, runs: list[RunSpec], seed: int) -> tuple[dict, list[float]]:
        sd = _Seed(opts, seed, False, tokenizer, start, root, lm)
        got = {"start": _measure_start(opts, tokenizer, start, sd, console)}  # the envelope's corner
        got.update({r.id: _train_and_measure(opts, lm, tokenizer, start, sd, r, console) for r in runs})
        return got, [sd.ratio["auc"]] if sd.ratio and "auc" in sd.ratio else []

    return train_cell


def maps_results(opts: ShiftOptions, maps: dict, root: Path, prov: dict, lm: Path, command: str) -> dict:
    """The maps profile's results: an earlier run's results.json in the output folder kept, the
    maps (and their provenance and command) added; else a document of the maps alone."""
    shutil.rmtree(root / "runs", ignore_errors=True)
    shutil.rmtree(root / "ref_cache", ignore_errors=True)
    saved = json.loads((root / "results.json").read_text())  # run_maps put `maps` into it
    if "claims" in saved and "runs" in saved:
        return {**saved, "maps": maps, "maps_provenance": prov, "maps_command": command}
    return {
        "provenance": prov,
        "options": {**asdict(opts), "test_seeds": opts.seeds, "test_seed_values": [], "validation_seed_values": []},
        "world_lm": json.loads((lm / "pretraining.json").read_text()),
        "scenarios": {},
        "selection": {},
        "runs": {},
        "validation_runs": {},
        "density_ratios": [],
        "claims": [],
        "seen": {},
        "regret": {},
        "maps": maps,
        "seconds": prov["wall_seconds"],
        "command": command,
    }


def execute(opts: ShiftOptions, console, command: str, prov: dict | None = None) -> dict:
    """The runs of resolved `opts` in this process: validation, selection, test runs, claims
    (report-wide Holm); the results document, provenance included (nothing written but scratch)."""
    import torch

    prov = prov or provenance.start()
    test_seeds, val_seeds = seed_values(opts)
    root = Path(opts.output_dir)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    lm, tokenizer, start = world_models(opts, console)

    val: dict[str, list[SeedMetrics]] = {}
    runs = plan(opts) if opts.validation_seeds else []  # empty when no scenario tunes anything
    if runs:
        console.rule(f"[bold]validation: {len(runs)} runs × seeds {val_seeds}")
        for seed in val_seeds:
            sd = _Seed(opts, seed, True, tokenizer, start, root, lm)
            val.setdefault("start", []).append(
                _measure_start(opts, tokenizer, start, sd, console)
            )  # the envelope's corner
            for run in runs:
                val.setdefault(run.id, []).append(_train_and_measure(opts, lm, tokenizer, start, sd, run, console))
    chosen = default_choices(opts)
    selection = _select(opts, val, chosen, console) if runs else {}
    runs = plan(opts, chosen)
    console.rule(f"[bold]test: {len(runs)} runs × seeds {test_seeds[0]}–{test_seeds[-1]}")
    metrics: dict[str, list[SeedMetrics]] = {}
    ratios: list[dict] = []
    seen: dict[str, list[int]] = {}  # completions per step, every step of every seed
    for seed in test_seeds:
        sd = _Seed(opts, seed, False, tokenizer, start, root, lm)
        metrics.setdefault("start", []).append(_measure_start(opts, tokenizer, start, sd, console))
        for run in runs:
            metrics.setdefault(run.id, []).append(_train_and_measure(opts, lm, tokenizer, start, sd, run, console))
        for rid, counts in sd.seen.items():
            seen.setdefault(rid, []).extend(counts)
        if sd.ratio is not None:
            ratios.append(sd.ratio)
            console.print(
                f"seed {seed:>4} density ratios: held-out AUC {sd.ratio['auc']:.3f}, ESS {sd.ratio['ess']:.2f}"
            )
    shutil.rmtree(root / "runs", ignore_errors=True)
    shutil.rmtree(root / "ref_cache", ignore_errors=True)
    prov = provenance.finish(prov)
    return {
        "provenance": prov,
        "options": {
            **asdict(opts),
            "test_seeds": opts.seeds,
            "test_seed_values": test_seeds,
            "validation_seed_values": val_seeds,
        },
        "world_lm": json.loads((lm / "pretraining.json").read_text()),
        "scenarios": {sc.name: sc.question for sc in scenarios_of(opts)},
        "selection": selection,
        "runs": {rid: {"seeds": [asdict(m) for m in ms]} for rid, ms in metrics.items()},
        "validation_runs": {rid: {"seeds": [asdict(m) for m in ms]} for rid, ms in val.items()},
        "density_ratios": ratios,  # sources scenario, per test seed: held-out AUC, ECE, prior, ESS, oracle AUC
        "claims": holm_report(evaluate_claims(opts, metrics, chosen, ratios, seen)),
        "seen": seen,  # completions per step each run's trainer drew (the unpaired control reads them)
        "regret": mixture_regret(opts, metrics),  # mixture: each run's regret at α against DPO trained at α
        "maps": {},  # where each method helps: the maps profile (--maps) fills it
        "seconds": prov["wall_seconds"],
        "command": command,
    }
