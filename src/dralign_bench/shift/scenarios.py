"""The shift world's scenarios (the methods compared, the question), the options and profiles of
`dralign bench shift`, and the run plan."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from dralign.config import option
from dralign.eval.mixtures import DEFAULT_ALPHAS

from .. import world
from .data import DATASETS

__all__ = ["DATASET_OF_METHOD", "DEMO_METHODS", "SCENARIOS", "Scenario", "ShiftConfig",
           "ShiftOptions", "plan", "resolve", "runs_of"]


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
        if out.dataset not in DATASETS:
            raise ValueError(f"unknown dataset {out.dataset!r}; choose from {', '.join(DATASETS)}")
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
