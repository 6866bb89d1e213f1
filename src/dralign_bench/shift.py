"""`dralign bench shift`: the shift-world benchmark, and the engine of `dralign demo`.

One run of the benchmark, per seed:

1. **Data.** Two responses per train prompt from the world's generator (the text the base LM
   was pretrained on), labelled by Bradley–Terry at temperature T on a mixture of two gold
   objectives r(α₀) = α₀ r_a + (1−α₀) r_b (``mix-linear``) or r_a^α₀ r_b^(1−α₀)
   (``mix-geometric``). Derived sets: ``sources`` (a fraction of the prompts answered by the
   synthetic generator and labelled by a *judge* whose mixture weight is α_judge instead of α₀;
   the rest human, labelled at α₀ — the target), ``unpaired`` (each mix-linear pair split into
   a desirable and an undesirable completion), ``flip-20``/``flip-40`` (mix-linear with that
   fraction of pairs swapped).
2. **Training.** Every method starts from the same pretrained world LM
   (:func:`dralign_bench.world_lm.world_lm`) with the same data, steps, batch size and learning
   rate, through the public `dralign train` path (:func:`dralign.train.train`).
3. **Evaluation.** Completions sampled (temperature 1) on held-out prompts; gold reward r(α)
   for every α on the grid and the worst case over it; win rate against the start model's
   completions; KL(π‖π_start) estimated from the samples; token entropy, distinct-1/2 and
   length; and, on held-out pairs labelled like the training set (without label noise),
   preference accuracy, ECE and Brier of σ(β·margin).

Across seeds, every mean comes with a 95 % hierarchical-bootstrap interval (resample seeds,
then completions within each seed), so one seed gives an interval over prompts and several
seeds include the training variance. Outputs: a rich table, ``results.json``, ``shift.png``
(gold reward vs α with bands), ``tradeoff.png`` (reward vs diversity) and ``report.md``.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from dralign.config import option
from dralign.eval.mixtures import DEFAULT_ALPHAS, mixture_fn

from . import world

__all__ = ["ShiftOptions", "ShiftConfig", "SCENARIOS", "Scenario", "run_shift", "resolve",
           "hierarchical_ci"]


# ----------------------------------------------------------------------------- scenarios
@dataclass(frozen=True)
class Scenario:
    """Methods compared on one or more datasets, and the question they answer."""

    name: str
    datasets: tuple[str, ...]
    methods: tuple[str, ...]
    question: str


SCENARIOS: dict[str, Scenario] = {s.name: s for s in (
    Scenario("mixture", ("mix-linear", "mix-geometric"), ("dpo", "kldpo", "wdpo"),
             "Preferences labelled at α₀ on a reward mixture; gold reward for every α (Xu et al. 2025)."),
    Scenario("sources", ("sources",), ("dpo", "dro", "dora", "dora-reweight"),
             "Human and synthetic responses with source labels; the target is the human labeller (Zhu et al. 2025)."),
    Scenario("unpaired", ("mix-linear", "unpaired"), ("dpo", "aot", "aot-unpaired"),
             "AOT paired, and unpaired on the same data with the pairing removed, against DPO (Melnyk et al. 2024)."),
    Scenario("divergence", ("mix-linear",), ("dpo", "fdpo-fkl", "fdpo-js", "fdpo-alpha"),
             "Reward vs diversity vs calibration across f-divergences (Wang et al. 2024)."),
    Scenario("flips", ("mix-linear", "flip-20", "flip-40"), ("dpo", "cdpo", "rdpo", "drdpo"),
             "A fraction of labels flipped; robustness of rDPO, cDPO and Dr. DPO against DPO."),
)}

DATASET_OF_METHOD = {"aot-unpaired": "unpaired"}
DEMO_METHODS = ("dpo", "kldpo", "wdpo", "fdpo-js", "aot", "dora")


def runs_of(scenario: Scenario) -> list[tuple[str, str]]:
    """The (dataset, method) runs a scenario needs: each paired method on each paired dataset,
    `aot-unpaired` on the unpaired set only."""
    runs = []
    for ds in scenario.datasets:
        for m in scenario.methods:
            unpaired_method = DATASET_OF_METHOD.get(m) == "unpaired"
            if (ds == "unpaired") == unpaired_method:
                runs.append((ds, m))
    if scenario.name == "flips":  # only dpo at rate 0: the clean reference
        runs = [(ds, m) for ds, m in runs if ds != "mix-linear" or m == "dpo"]
    return runs


# ----------------------------------------------------------------------------- options
@dataclass
class ShiftOptions:
    """The shift-world benchmark. Sizes left unset come from the profile (quick, or --full)."""

    full: bool = option(False, "the full suite: every scenario, 5 seeds (about 30 minutes on 2 CPU cores)")
    scenarios: list[str] | None = option(None, "scenarios to run: mixture, sources, unpaired, divergence, flips (default: all)")
    methods: list[str] | None = option(None, "instead of scenarios: these presets on one dataset (--dataset)")
    dataset: str = option("sources", "dataset for --methods: mix-linear, mix-geometric, sources, flip-20, flip-40")
    seeds: int | None = option(None, "number of seeds (quick 1, full 5)")
    steps: int | None = option(None, "optimizer steps per method (quick 30, full 50)")
    train_pairs: int | None = option(None, "training pairs per dataset (quick 384, full 512)")
    eval_prompts: int | None = option(None, "held-out prompts for sampling (quick 48, full 64)")
    samples_per_prompt: int = option(2, "completions sampled per held-out prompt")
    eval_pairs: int = option(128, "held-out labelled pairs for accuracy and calibration")
    max_new_tokens: int = option(48, "completion length cap when sampling")
    batch_size: int = option(16, "pairs per step")
    lr: float = option(1e-3, "peak learning rate (AdamW, 10% warm-up, cosine)")
    beta: float = option(0.1, "beta of every method")
    reward_a: str = option("sentiment", "gold objective r_a: sentiment, formality, conciseness, specificity")
    reward_b: str = option("formality", "gold objective r_b")
    alpha0: float = option(0.7, "training mixture weight α₀ of r_a")
    alpha_judge: float = option(0.2, "sources: the synthetic judge's mixture weight")
    synthetic_fraction: float = option(0.7, "sources: fraction of prompts with synthetic responses")
    label_temperature: float = option(0.1, "Bradley–Terry temperature of the labels")
    alphas: list[float] = option(list(DEFAULT_ALPHAS), "evaluation grid of α")
    output_dir: str = option("outputs/shift", "where models, results, plots and the report go")
    keep_models: bool = option(False, "keep each trained model's weights (3.4 MB each) for `dralign eval`")
    cache_dir: str | None = option(None, "where the pretrained world LM is cached (default: $DRALIGN_CACHE or ~/.cache/dralign)")
    lm_steps: int | None = option(None, "pretraining steps of the world LM (default 200)")


@dataclass
class ShiftConfig:
    shift: ShiftOptions = field(default_factory=ShiftOptions)


_PROFILES = {False: dict(seeds=1, steps=30, train_pairs=384, eval_prompts=48),
             True: dict(seeds=5, steps=50, train_pairs=512, eval_prompts=64)}


def resolve(opts: ShiftOptions) -> ShiftOptions:
    """Fill unset sizes from the profile and check every choice; returns a new ShiftOptions."""
    values = asdict(opts)
    for k, v in _PROFILES[opts.full].items():
        if values[k] is None:
            values[k] = v
    out = ShiftOptions(**values)
    for name in (out.scenarios or []):
        if name not in SCENARIOS:
            raise ValueError(f"unknown scenario {name!r}; choose from {', '.join(SCENARIOS)}")
    for key in ("reward_a", "reward_b"):
        if getattr(out, key) not in world.GOLD_OBJECTIVES:
            raise ValueError(f"{key}={getattr(out, key)!r}: choose from {', '.join(world.GOLD_OBJECTIVES)}")
    if out.methods:
        from dralign.objectives.presets import PRESETS

        for m in out.methods:
            if m not in PRESETS:
                raise ValueError(f"unknown method {m!r}; see `dralign methods`")
        if out.dataset not in _DATASETS:
            raise ValueError(f"unknown dataset {out.dataset!r}; choose from {', '.join(_DATASETS)}")
    for key in ("alpha0", "alpha_judge", "synthetic_fraction"):
        if not 0.0 <= getattr(out, key) <= 1.0:
            raise ValueError(f"{key} must lie in [0, 1], got {getattr(out, key)}")
    if min(out.seeds, out.steps, out.train_pairs, out.eval_prompts, out.samples_per_prompt) < 1:
        raise ValueError("seeds, steps, train_pairs, eval_prompts and samples_per_prompt must be >= 1")
    return out


def plan(opts: ShiftOptions) -> list[tuple[str, str]]:
    """Distinct (dataset, method) runs per seed, in order; shared runs appear once."""
    if opts.methods:
        return [(DATASET_OF_METHOD.get(m, opts.dataset), m) for m in opts.methods]
    runs: list[tuple[str, str]] = []
    for name in opts.scenarios or SCENARIOS:
        for r in runs_of(SCENARIOS[name]):
            if r not in runs:
                runs.append(r)
    return runs


# ----------------------------------------------------------------------------- data
_DATASETS = ("mix-linear", "mix-geometric", "sources", "unpaired", "flip-20", "flip-40")


def mixture_of(dataset: str) -> str:
    """The mixture family a dataset is labelled with (and evaluated on)."""
    return "geometric" if dataset == "mix-geometric" else "linear"


def _target_reward(opts: ShiftOptions, mixture: str, alpha: float) -> Callable[[str], float]:
    return world.make_mixture_reward(opts.reward_a, opts.reward_b, alpha, mixture)


def _pairs(seed: int, split: str, n: int) -> list[dict]:
    prompts = world.generate_prompts(n, seed=seed, split=split)
    return world.prompt_response_pairs(prompts, seed=seed)


def build_dataset(opts: ShiftOptions, dataset: str, seed: int, split: str = "train") -> list[dict]:
    """Rows of `dataset` for one seed. `split="heldout"` gives clean held-out pairs labelled
    like the training set (no flips; the sources set's held-out pairs are human, the target)."""
    n = opts.train_pairs if split == "train" else opts.eval_pairs
    T = opts.label_temperature
    if dataset == "sources":
        if split == "train":
            rows = world.assign_sources(world.generate_prompts(n, seed=seed, split="train"),
                                        opts.synthetic_fraction, seed=seed)
        else:
            rows = _pairs(seed, split, n)
        human = _target_reward(opts, "linear", opts.alpha0)
        judge = _target_reward(opts, "linear", opts.alpha_judge)
        labelled = {
            "human": iter(world.label_rows([r for r in rows if r["source"] == "human"], human, T, seed=seed)),
            "synthetic": iter(world.label_rows([r for r in rows if r["source"] == "synthetic"], judge, T,
                                               seed=seed + 10_000)),
        }
        return [next(labelled[r["source"]]) for r in rows]
    mixture = mixture_of(dataset)
    rows = world.label_rows(_pairs(seed, split, n), _target_reward(opts, mixture, opts.alpha0), T, seed=seed)
    if split != "train" or dataset in ("mix-linear", "mix-geometric"):
        return rows
    if dataset.startswith("flip-"):
        return world.flip_labels(rows, int(dataset.split("-")[1]) / 100, seed=seed)
    if dataset == "unpaired":
        return [{"prompt": r["prompt"], "completion": r[k], "label": k == "chosen"}
                for r in rows for k in ("chosen", "rejected")]
    raise ValueError(f"unknown dataset {dataset!r}; choose from {', '.join(_DATASETS)}")


def _write_jsonl(path: Path, rows: Sequence[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        for row in rows:
            fh.write(json.dumps(row) + "\n")
    return path


# ----------------------------------------------------------------------------- statistics
def _replicates(groups: Sequence[np.ndarray], picks: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Bootstrap replicates of the seed-averaged mean, [R, k].

    `groups[s]` holds seed s's per-unit values [n_s, k]; replicate r takes the seeds
    `picks[r]` (drawn with replacement) and, within each, n_s units with replacement.
    """
    R = picks.shape[0]
    boot = np.stack([g[rng.integers(0, len(g), size=(R, len(g)))].mean(axis=1) for g in groups])  # [S, R, k]
    return boot[picks, np.arange(R)[:, None]].mean(axis=1)


def hierarchical_ci(groups: Sequence[Any], stat: Callable[[np.ndarray], Any] = lambda m: m,
                    other: Sequence[Any] | None = None, n_resamples: int = 1000, seed: int = 0,
                    level: float = 0.95) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Estimate and percentile-bootstrap interval of stat(mean over seeds of per-seed means).

        m = (1/S) Σ_s mean_i x_{s,i}   (x_{s,i} ∈ R^k: unit i of seed s),  estimate = stat(m)

    Each replicate resamples the seeds with replacement, then the units within each chosen seed,
    so one seed gives an interval over units (prompts) and several seeds also carry the
    seed-to-seed (data and training) variance. With `other` (the same seeds of a second
    method), the statistic is stat(m) − stat(m_other), both replicates sharing the seed draws:
    a paired comparison. `stat` maps [..., k] → [...] (vectorised over replicates). Returns
    NumPy arrays (estimate, low, high) of stat's output shape (scalars for scalar units).
    """
    scalar_units = np.ndim(groups[0]) <= 1  # units are scalars: return scalars, not [1] arrays

    def as2d(gs):
        return [np.asarray(g, dtype=np.float64).reshape(len(g), -1) for g in gs]

    groups = as2d(groups)
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(groups), size=(n_resamples, len(groups)))
    est = np.asarray(stat(np.mean([g.mean(axis=0) for g in groups], axis=0)))
    reps = np.asarray(stat(_replicates(groups, picks, rng)))
    if other is not None:
        other = as2d(other)
        if len(other) != len(groups):
            raise ValueError("a paired comparison needs the same seeds for both methods")
        est = est - np.asarray(stat(np.mean([g.mean(axis=0) for g in other], axis=0)))
        reps = reps - np.asarray(stat(_replicates(other, picks, rng)))
    lo, hi = np.quantile(reps, [(1 - level) / 2, (1 + level) / 2], axis=0)
    if scalar_units and est.ndim == 1 and est.shape[0] == 1:
        return est[0], lo[0], hi[0]
    return est, lo, hi


def _ci(est, lo, hi, n: int) -> dict:
    return {"mean": float(est), "low": float(lo), "high": float(hi), "n": int(n)}


def _over_seeds(values: Sequence[float]) -> dict:
    """Seed-level scalars (one per seed): their mean with a bootstrap interval over seeds
    (zero width for one seed)."""
    from dralign.stats import bootstrap_ci

    return _ci(*bootstrap_ci(np.asarray(values, dtype=np.float64)), len(values))


# ----------------------------------------------------------------------------- one seed
@dataclass
class SeedEval:
    """Per-prompt measurements of one policy on one seed (the raw material of every interval);
    the samples of a prompt are averaged, so a prompt is one bootstrap unit."""

    rewards: np.ndarray          # [prompts, len(alphas)] gold reward r(α) of the samples
    wins: np.ndarray             # [prompts, len(alphas)] 1 / ½ / 0 against the start's sample (same uniforms)
    kl: np.ndarray               # [prompts] log π(y|x) − log π_start(y|x), y ∼ π
    length: np.ndarray           # [prompts] completion tokens
    token_entropy: float
    distinct_1: float
    distinct_2: float
    accuracy: float = float("nan")
    ece: float = float("nan")
    brier: float = float("nan")
    train_seconds: float = 0.0


def _gold(opts: ShiftOptions, texts: Sequence[str], mixture: str) -> np.ndarray:
    """r(α) of every text at every α of the grid, [n, len(alphas)]."""
    mix = mixture_fn(mixture)
    ra = np.array([world.GOLD_OBJECTIVES[opts.reward_a](t) for t in texts])
    rb = np.array([world.GOLD_OBJECTIVES[opts.reward_b](t) for t in texts])
    return np.stack([mix(ra, rb, a) for a in opts.alphas], axis=1)


def _sample(model, tokenizer, opts: ShiftOptions, prompts: Sequence[str], seed: int):
    from dralign.eval.generate import sample_completions

    return sample_completions(model, tokenizer, prompts, num_samples=opts.samples_per_prompt,
                              max_new_tokens=opts.max_new_tokens, temperature=1.0, seed=seed)


def evaluate_policy(policy, start, tokenizer, opts: ShiftOptions, prompts: Sequence[str],
                    start_rewards: np.ndarray, heldout, mixture: str, seed: int) -> SeedEval:
    """Sample `policy` on the held-out prompts and measure it (see :class:`SeedEval`);
    `start_rewards` are the start model's samples' gold rewards on the same grid, [n, len(alphas)]."""
    from dralign.eval.evaluate import preference_eval
    from dralign.eval.generate import completion_logps
    from dralign.eval.metrics import distinct_n, token_entropy

    comp = _sample(policy, tokenizer, opts, prompts, seed)
    rewards = _gold(opts, comp.texts, mixture)
    wins = (rewards > start_rewards) + 0.5 * (rewards == start_rewards)
    kl = (completion_logps(policy, tokenizer, comp.prompts, comp.token_ids, append_eos=comp.ended_at_eos)
          - completion_logps(start, tokenizer, comp.prompts, comp.token_ids, append_eos=comp.ended_at_eos))
    length = np.array([len(t) for t in comp.token_ids], dtype=np.float64)

    def per_prompt(x: np.ndarray) -> np.ndarray:  # samples of one prompt are one unit
        return x.reshape(len(prompts), -1, *x.shape[1:]).mean(axis=1)

    out = SeedEval(rewards=per_prompt(rewards), wins=per_prompt(wins), kl=per_prompt(kl), length=per_prompt(length),
                   token_entropy=token_entropy(comp.token_ids), distinct_1=distinct_n(comp.token_ids, 1),
                   distinct_2=distinct_n(comp.token_ids, 2))
    if heldout is not None:
        pref = preference_eval(policy, start, heldout, beta=opts.beta, seed=seed)
        out.accuracy, out.ece, out.brier = (pref[k].mean for k in ("accuracy", "ece", "brier"))
    return out


# ----------------------------------------------------------------------------- the run
def _train_config(opts: ShiftOptions, lm: Path, data: Path, method: str, out: Path, seed: int):
    from dralign.config import build
    from dralign.train.config import TrainConfig

    values = dict(model=str(lm), data=str(data), method=method, output_dir=str(out),
                  max_steps=opts.steps, batch_size=opts.batch_size, lr=opts.lr,
                  warmup_steps=max(1, opts.steps // 10), max_length=128, beta=opts.beta, seed=seed,
                  ref_cache_dir=str(Path(opts.output_dir) / "ref_cache"), progress=True)
    if method in ("dora", "dora-reweight"):
        values["ratio_target"] = ["human"]
    return build(TrainConfig, values)


def run_shift(cfg: ShiftConfig | ShiftOptions, console=None, command: str = "dralign bench shift") -> dict:
    """Run the benchmark of `cfg`; write results.json, the plots and report.md; return the results.

    `command` is recorded in the report as the command that made it."""
    import shutil

    import torch
    from rich.console import Console

    from dralign.data import load_rows, tokenize_pairs
    from dralign.modeling import load_model, load_tokenizer
    from dralign.train.trainer import train

    from .plotting import require_matplotlib
    from .world_lm import DEFAULT_CACHE_DIR, WorldLMSpec, world_lm

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
            start_comp = _sample(start, tokenizer, opts, prompts, seed)
        heldout, start_rewards = {}, {}
        for mx in mixtures:
            start_rewards[mx] = _gold(opts, start_comp.texts, mx)
            rows = build_dataset(opts, f"mix-{mx}", seed, split="heldout")
            path = _write_jsonl(seed_dir / "data" / f"heldout-{mx}.jsonl",
                                [{k: r[k] for k in ("prompt", "chosen", "rejected")} for r in rows])
            heldout[mx] = tokenize_pairs(load_rows(str(path)), tokenizer, max_length=128)
            raw[f"start/{mx}"].append(evaluate_policy(start, start, tokenizer, opts, prompts, start_rewards[mx],
                                                      heldout[mx], mx, seed))
        files: dict[str, Path] = {}
        for dataset, method in runs:
            if dataset not in files:
                files[dataset] = _write_jsonl(seed_dir / "data" / f"{dataset}.jsonl",
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
            a0 = _alpha_index(opts, opts.alpha0)
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
    from .shift_report import plot_shift, plot_tradeoff, print_tables, write_report

    results["files"] = {"results": str(root / "results.json"),
                        "shift_plot": plot_shift(results, root / "shift.png"),
                        "tradeoff_plot": plot_tradeoff(results, root / "tradeoff.png")}
    results["files"]["report"] = write_report(results, root / "report.md")
    (root / "results.json").write_text(json.dumps(results, indent=2))
    print_tables(results, console)
    return results


def _alpha_index(opts: ShiftOptions, alpha: float) -> int:
    return int(np.argmin(np.abs(np.asarray(opts.alphas) - alpha)))


# ----------------------------------------------------------------------------- summaries
def summarize_run(opts: ShiftOptions, evs: Sequence[SeedEval]) -> dict:
    """Every metric of one (dataset, method) across seeds, each with its 95 % interval."""
    rewards = [e.rewards for e in evs]
    r_est, r_lo, r_hi = hierarchical_ci(rewards)
    w_est, w_lo, w_hi = hierarchical_ci([e.wins for e in evs])
    n = sum(len(e.kl) for e in evs)
    worst = hierarchical_ci(rewards, stat=lambda m: m.min(axis=-1))
    a0 = _alpha_index(opts, opts.alpha0)
    return {
        "reward": {str(a): _ci(r_est[i], r_lo[i], r_hi[i], n) for i, a in enumerate(opts.alphas)},
        "win_rate": {str(a): _ci(w_est[i], w_lo[i], w_hi[i], n) for i, a in enumerate(opts.alphas)},
        "reward_at_alpha0": _ci(r_est[a0], r_lo[a0], r_hi[a0], n),
        "win_rate_at_alpha0": _ci(w_est[a0], w_lo[a0], w_hi[a0], n),
        "worst": {"alpha": float(opts.alphas[int(np.argmin(r_est))]), "reward": _ci(*worst, n)},
        "kl": _ci(*hierarchical_ci([e.kl for e in evs]), n),
        "length": _ci(*hierarchical_ci([e.length for e in evs]), n),
        **{k: _over_seeds([getattr(e, k) for e in evs])
           for k in ("token_entropy", "distinct_1", "distinct_2", "accuracy", "ece", "brier")},
        "train_seconds": float(np.mean([e.train_seconds for e in evs])),
        "seeds": len(evs),
    }


def _run_names(opts: ShiftOptions, run_id: str) -> dict:
    dataset, method = run_id.split("/")
    return {"dataset": dataset, "method": method,
            "mixture": method if dataset == "start" else mixture_of(dataset)}


def summarize(opts: ShiftOptions, raw: dict[str, list[SeedEval]], runs, lm: Path, seconds: float) -> dict:
    """The results document: options, world-LM facts, every run's summary."""
    pretraining = json.loads((lm / "pretraining.json").read_text())
    return {
        "options": asdict(opts),
        "world_lm": {"path": str(lm), "parameters": pretraining["parameters"],
                     "final_loss": pretraining["final_loss"], "spec": pretraining["spec"]},
        "scenarios": {name: {"question": s.question, "runs": [f"{d}/{m}" for d, m in runs_of(s)]}
                      for name, s in SCENARIOS.items()
                      if not opts.methods and name in (opts.scenarios or SCENARIOS)},
        "runs": {run_id: {**_run_names(opts, run_id), **summarize_run(opts, evs)}
                 for run_id, evs in raw.items() if evs},
        "seconds": seconds,
    }


# ----------------------------------------------------------------------------- claims
def _verdict(low: float, high: float) -> str:
    if low > 0:
        return "reproduced"
    if high < 0:
        return "contradicted"
    return "not significant"


def _compare(opts: ShiftOptions, raw, a: str, b: str, metric: str) -> dict | None:
    """Paired (by seed) difference a − b of a metric with its 95 % interval, or None if a run is missing.

    metric: "reward@alpha0", "worst" (min over α of the mean curve), or a seed-level scalar
    ("token_entropy", "accuracy", "ece" — for ece the sign is flipped so higher is better)."""
    if not raw.get(a) or not raw.get(b):
        return None
    ea, eb = raw[a], raw[b]
    if metric == "reward@alpha0":
        i = _alpha_index(opts, opts.alpha0)
        est, lo, hi = hierarchical_ci([e.rewards[:, i] for e in ea], other=[e.rewards[:, i] for e in eb])
    elif metric == "worst":
        est, lo, hi = hierarchical_ci([e.rewards for e in ea], stat=lambda m: m.min(axis=-1),
                                      other=[e.rewards for e in eb])
    else:
        sign = -1.0 if metric == "ece" else 1.0
        est, lo, hi = hierarchical_ci([[sign * getattr(e, metric)] for e in ea],
                                      other=[[sign * getattr(e, metric)] for e in eb])
    return {"a": a, "b": b, "metric": metric, **_ci(est, lo, hi, len(ea)), "verdict": _verdict(lo, hi)}


def claims_spec(opts: ShiftOptions) -> list[tuple[str, str, list[tuple[str, str, str]]]]:
    """(paper, claim, [(run a, run b, metric), ...]): each claim holds if every a beats its b."""
    div = ("fdpo-fkl", "fdpo-js", "fdpo-alpha")
    return [
        ("Xu et al. 2025 (WDPO, KLDPO)",
         "Under a shift of the preference mixture, KLDPO and WDPO keep a higher worst-case gold reward over the α grid than DPO.",
         [(f"{ds}/{m}", f"{ds}/dpo", "worst") for ds in ("mix-linear", "mix-geometric") for m in ("kldpo", "wdpo")]),
        ("Zhu et al. 2025 (DoRA)",
         "With human and synthetic data, DoRA reaches a higher target (human) gold reward than vanilla DRO and than density-ratio reweighting.",
         [("sources/dora", "sources/dro", "reward@alpha0"), ("sources/dora", "sources/dora-reweight", "reward@alpha0")]),
        ("Melnyk et al. 2024 (AOT)",
         "AOT, paired and on unpaired data, reaches a higher gold reward than DPO on the paired data.",
         [("mix-linear/aot", "mix-linear/dpo", "reward@alpha0"), ("unpaired/aot-unpaired", "mix-linear/dpo", "reward@alpha0")]),
        ("Wang et al. 2024 (f-DPO)",
         "Reverse KL (DPO) reaches the highest gold reward of the four divergences.",
         [("mix-linear/dpo", f"mix-linear/{m}", "reward@alpha0") for m in div]),
        ("Wang et al. 2024 (f-DPO)",
         "The other divergences trade reward for diversity: higher token entropy than reverse KL.",
         [(f"mix-linear/{m}", "mix-linear/dpo", "token_entropy") for m in div]),
        ("Wang et al. 2024 (f-DPO)",
         "JS and forward KL are better calibrated (lower ECE of σ(β·margin) on held-out pairs) than reverse KL.",
         [(f"mix-linear/{m}", "mix-linear/dpo", "ece") for m in ("fdpo-js", "fdpo-fkl")]),
        ("Chowdhury et al. 2024 (rDPO); cDPO; Wu et al. 2025 (Dr. DPO)",
         "With 20 % and 40 % of labels flipped, rDPO, cDPO and Dr. DPO reach a higher gold reward than DPO.",
         [(f"{ds}/{m}", f"{ds}/dpo", "reward@alpha0") for ds in ("flip-20", "flip-40") for m in ("rdpo", "cdpo", "drdpo")]),
        ("Chowdhury et al. 2024 (rDPO); cDPO; Wu et al. 2025 (Dr. DPO)",
         "With flipped labels they also rank held-out (clean) pairs more accurately than DPO.",
         [(f"{ds}/{m}", f"{ds}/dpo", "accuracy") for ds in ("flip-20", "flip-40") for m in ("rdpo", "cdpo", "drdpo")]),
    ]


def evaluate_claims(opts: ShiftOptions, raw) -> list[dict]:
    """Each claim's comparisons and an overall verdict: reproduced (every comparison
    significantly in the claimed direction), contradicted (every one significantly against),
    partly (some reproduced), or not significant. Claims whose runs were not made are skipped."""
    out = []
    for paper, claim, comparisons in claims_spec(opts):
        rows = [c for c in (_compare(opts, raw, a, b, m) for a, b, m in comparisons) if c is not None]
        if not rows:
            continue
        verdicts = {r["verdict"] for r in rows}
        overall = (verdicts.pop() if len(verdicts) == 1
                   else "partly reproduced" if "reproduced" in verdicts else "not reproduced")
        out.append({"paper": paper, "claim": claim, "verdict": overall, "comparisons": rows})
    return out
