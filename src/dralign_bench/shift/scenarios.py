"""The shift world's scenarios: what each paper claims, the condition its claim needs (the
positive control), the runs (DPO's β grid, each robust method's own-parameter grid) and the
options and profiles of `dralign bench shift`.

A run is a :class:`RunSpec` (dataset, preset, parameters). A scenario names

* ``frontier``: DPO on the scenario's dataset at every β of ``opts.betas`` — every claim is
  judged against this frontier, never against DPO at one β. Under Adam, β stops controlling the
  KL to the start above β ≈ 1 (the step size sets a floor), so a scenario whose methods move
  less than that (forward KL) extends the frontier with shorter training: DPO at the learning
  rate × each of its ``short`` scales — the (hyper-parameter, checkpoint) frontier of Rafailov et
  al. 2023, Fig. 2;
* ``tuned``: robust methods whose own parameter is picked from a small grid on the validation
  seeds (validation prompts), then frozen for the test seeds;
* ``fixed``: runs whose parameters are set by the question itself (rDPO at ε = the true flip
  rate; DPO on clean data as the flips control);
* its claims (:mod:`.claims`), each gated by the scenario's control (:mod:`.controls`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from dralign.config import option
from dralign.eval.mixtures import DEFAULT_ALPHAS

from .. import world

__all__ = [
    "DEMO_SCENARIO",
    "SCENARIOS",
    "RunSpec",
    "Scenario",
    "ShiftConfig",
    "ShiftOptions",
    "Tuned",
    "default_choices",
    "plan",
    "resolve",
]


@dataclass(frozen=True)
class RunSpec:
    """One training run: a preset on a dataset with parameter overrides (name, value)."""

    dataset: str
    method: str
    params: tuple[tuple[str, float], ...] = ()

    @property
    def id(self) -> str:
        inner = ",".join(f"{k}={v:g}" for k, v in self.params)
        return f"{self.dataset}/{self.method}" + (f"[{inner}]" if inner else "")


@dataclass(frozen=True)
class Tuned:
    """A robust method whose parameter `param` is chosen from `grid` on the validation seeds,
    maximising `select` = (its metric `y`) − (DPO's frontier at its `x`) averaged over seeds."""

    dataset: str
    method: str
    param: str
    grid: tuple[float, ...]
    x: str
    y: str


@dataclass(frozen=True)
class Scenario:
    name: str
    dataset: str
    question: str
    tuned: tuple[Tuned, ...] = ()
    fixed: tuple[RunSpec, ...] = ()
    short: tuple[float, ...] = ()  # learning-rate scales of the frontier's shorter-training DPO runs
    # the frontier's datasets (default: the scenario's own): sources takes the upper envelope of DPO on
    # all rows and DPO on the human rows; unpaired, DPO on the re-paired completions
    frontier_datasets: tuple[str, ...] = ()
    extra_betas: tuple[float, ...] = ()  # β values added to the frontier's grid for this scenario
    steps_scale: int = 1  # its runs train for steps × this (every run of its datasets)


#: f-DPO's own β grid per divergence: forward KL moves far less than reverse KL at equal β, so
#: its grid sits lower (measured: KL to the start 2–4 nats at 0.003–0.03 vs DPO's 5–11 at 0.1–3).
FDPO_BETAS = {"fdpo-fkl": (0.003, 0.01, 0.03), "fdpo-js": (0.3, 1.0, 3.0)}

SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario(
            "mixture",
            "labmix",
            "Labels from a mixture of labellers: each pair by a Bradley–Terry judge on r_a with probability α₀, "
            "else on r_b (not Bradley–Terry on any one reward), α₀ near one end and r_a, r_b negatively correlated "
            "in the corpus; gold reward for every α (Xu et al. 2025, WDPO/KLDPO).",
            # τ and ρ from the authors' released τ = 0.05 up to 2
            tuned=(
                Tuned("labmix", "kldpo", "tau", (0.05, 0.3, 2.0), "r0", "worst"),
                Tuned("labmix", "wdpo", "rho", (0.05, 0.3, 2.0), "r0", "worst"),
            ),
            # DPO trained at other α (the same pairs, the labeller mixture at α): each method's regret at α
            fixed=tuple(RunSpec(f"labmix-a{a:g}", "dpo") for a in (0.0, 0.5, 1.0)),
            # validation seeds 1000–1001: DPO's worst case fell 0.029 below the start's at 60 steps, 0.042 at 120
            steps_scale=2,
        ),
        Scenario(
            "divergence",
            "mix",
            "Reward vs diversity vs calibration across f-divergences, each on its own β grid (Wang et al. 2024).",
            fixed=tuple(RunSpec("mix", m, (("beta", b),)) for m, grid in FDPO_BETAS.items() for b in grid),
            short=(0.25, 0.5),
        ),
        Scenario(
            "flips",
            "flip",
            "A known fraction of training labels flipped, trained long enough to memorise them; rDPO at the "
            "true rate (and mis-set at ε = 0.1), cDPO and Dr. DPO tuned (Chowdhury et al. 2024; Mitchell 2023; "
            "Wu et al. 2025).",
            tuned=(
                Tuned("flip", "cdpo", "label_smoothing", (0.1, 0.3), "kl", "acc"),
                Tuned("flip", "drdpo", "drdpo_beta", (0.5, 2.0), "kl", "acc"),
            ),
            fixed=(
                RunSpec("clean", "dpo"),
                RunSpec("flip", "rdpo", (("label_smoothing", -1.0),)),
                RunSpec("flip", "rdpo", (("label_smoothing", 0.1),)),
            ),
        ),
        Scenario(
            "sources",
            "sources",
            "Scarce human rows labelled on the target r(α₀); plentiful synthetic rows (no give-away markers, "
            "at five distances from the human style, overlapping the human ones) labelled by a judge that agrees "
            "with the target on most pairs, reliably on human-like text and less so the further the text drifts "
            "(useful but shifted); DoRA's density ratios from the start model's features; target = the human labeller "
            "(Zhu et al. 2025, DoRA, against DPO on all rows and on the human rows, vanilla KL-DRO, reweighting "
            "by the estimated ratios, and reweighting by oracle ratios as an upper reference).",
            tuned=(
                Tuned("sources", "dora", "lam", (0.5, 2.0), "kl", "r0"),
                Tuned("sources", "dro", "tau", (0.5, 2.0), "kl", "r0"),
            ),
            fixed=(RunSpec("sources", "dora-reweight"), RunSpec("sources-oracle", "dora-reweight")),
            frontier_datasets=("sources", "human"),
        ),
        Scenario(
            "unpaired",
            "unpaired",
            "AOT on unpaired data (the pairing removed) against an unpaired baseline at matched KL: DPO on "
            "desirable and undesirable completions re-paired at random, on a β grid; the same completions per "
            "step (Melnyk et al. 2024).",
            fixed=(RunSpec("unpaired", "aot-unpaired"),),
            frontier_datasets=("repaired",),
            extra_betas=(0.01, 0.03),
        ),
    )
}

#: `dralign demo`: the committed run's clearest valid finding (docs/shift, test seeds 7000–7009):
#: f-DPO's divergences against DPO's frontier — reverse KL (DPO) reaches a higher gold reward than
#: forward KL at matched KL, +0.082 [+0.065, +0.100] — with its control.
DEMO_SCENARIO = "divergence"


@dataclass
class ShiftOptions:
    """The shift-world benchmark. Sizes left unset come from the profile (quick, or --full)."""

    full: bool = option(
        False,
        "the full profile: 10 test + 2 validation seeds, 512 eval prompts (every scenario: about 2 h of one-core job time; --jobs 2 on 2 cores about 1 h)",
    )
    maps: bool = option(
        False,
        "the maps profile: where each method helps (DoRA over human fraction × judge agreement, rDPO over flip rates), 4 seeds per cell; writes `maps` into results.json and map-*.png",
    )
    scenarios: list[str] | None = option(
        None, "scenarios to run: mixture, divergence, flips, sources, unpaired (default: all)"
    )
    seeds: int | None = option(None, "test seeds (quick 2, full 10, maps 4 per cell)")
    seed_offset: int = option(
        0,
        "the first test seed: the test seeds are K, K+1, … (a committed run uses a range never used while developing)",
    )
    validation_seeds: int | None = option(
        None, "validation seeds for the robust methods' own parameters (quick 1, full 2); 0 = the grid's first value"
    )
    steps: int | None = option(None, "optimizer steps per run (quick 30, full 60)")
    train_pairs: int | None = option(None, "training pairs per dataset (quick 128, full 480)")
    flip_pairs: int | None = option(
        None, "flips: training pairs, fewer so that the steps make several epochs (quick 48, full 48)"
    )
    flip_rate: float = option(0.3, "flips: the true fraction of flipped training labels")
    synthetic_fraction: float = option(
        0.95,
        "sources: fraction of training rows from the synthetic source (human rows are scarce: 5%, 24 of 480; development seed 1000: at 10% DPO on the 48 human rows alone came within 0.02 of, or beat, DPO on all rows)",
    )
    judge: str = option(
        "conciseness",
        "sources: the gold objective the synthetic judge leans towards, the more the further the text is from the human style (alone, conciseness agrees with the target on 43% of synthetic pairs)",
    )
    judge_agreement: float = option(
        0.7,
        "sources: share of synthetic pairs on which the judge's noise-free order agrees with the target's (the slope of its lean towards `judge` is solved for it)",
    )
    eval_prompts: int | None = option(None, "held-out prompts sampled once per run (quick 64, full 512)")
    eval_pairs: int | None = option(None, "held-out pairs for accuracy and calibration (quick 64, full 1000)")
    validation_prompts: int = option(256, "validation prompts (train pool, none of the seed's training prompts)")
    max_new_tokens: int = option(24, "completion length cap when sampling")
    batch_size: int = option(16, "pairs per step (the unpaired runs: 2× rows, the same completions per step)")
    unpaired_batch: int = option(
        32, "unpaired scenario: pairs per step of the re-paired baseline (AOT-unpaired gets 2× completions)"
    )
    lr: float = option(1e-3, "peak learning rate (AdamW, 10% warm-up, cosine)")
    beta: float = option(0.1, "beta of every method not on the β grid")
    betas: list[float] = option([0.1, 0.3, 1.0, 3.0], "DPO's β grid: the frontier every claim is judged against")
    reward_a: str = option("sentiment", "gold objective r_a: sentiment, formality, conciseness, specificity")
    reward_b: str = option("formality", "gold objective r_b (negatively correlated with r_a in the corpus)")
    alpha0: float = option(0.1, "training mixture weight α₀ of r_a (near one end, as in the WDPO paper)")
    label_temperature: float = option(0.1, "Bradley–Terry temperature of the labels")
    alphas: list[float] = option(list(DEFAULT_ALPHAS), "evaluation grid of α")
    output_dir: str = option("outputs/shift", "where runs, results, plots and the report go")
    cache_dir: str | None = option(
        None, "where the pretrained world LM is cached (default: $DRALIGN_CACHE or ~/.cache/dralign)"
    )
    lm_steps: int | None = option(None, "pretraining steps of the world LM (default 200)")
    jobs: int = option(
        1, "worker processes, one scenario at a time each, one thread each; their parts are merged and judged together"
    )
    note: str | None = option(None, "a note recorded in results.json and printed in the report")
    unshown_runs: list[str] = option(
        [],
        "runs made for this report and not shown in it, each 'what: why' (failed controls included); listed in the report",
    )


@dataclass
class ShiftConfig:
    shift: ShiftOptions = field(default_factory=ShiftOptions)


_PROFILES = {
    False: dict(seeds=2, validation_seeds=1, steps=30, train_pairs=128, flip_pairs=48, eval_prompts=64, eval_pairs=64),
    "maps": dict(
        seeds=4, validation_seeds=0, steps=60, train_pairs=480, flip_pairs=48, eval_prompts=256, eval_pairs=512
    ),
    True: dict(
        seeds=10, validation_seeds=2, steps=60, train_pairs=480, flip_pairs=48, eval_prompts=512, eval_pairs=1000
    ),
}


def resolve(opts: ShiftOptions) -> ShiftOptions:
    """Fill unset sizes from the profile and check every choice; returns a new ShiftOptions."""
    values = asdict(opts)
    for k, v in _PROFILES["maps" if opts.maps else opts.full].items():
        if values.get(k) is None:
            values[k] = v
    out = type(opts)(**values)
    for name in out.scenarios or []:
        if name not in SCENARIOS:
            raise ValueError(f"unknown scenario {name!r}; choose from {', '.join(SCENARIOS)}")
    for key in ("reward_a", "reward_b", "judge"):
        if getattr(out, key) not in world.GOLD_OBJECTIVES:
            raise ValueError(f"{key}={getattr(out, key)!r}: choose from {', '.join(world.GOLD_OBJECTIVES)}")
    if not 0.0 <= out.alpha0 <= 1.0 or not 0.0 < out.flip_rate < 0.5:
        raise ValueError("alpha0 must lie in [0, 1] and flip_rate in (0, 0.5)")
    if not 0.0 < out.synthetic_fraction < 1.0:
        raise ValueError("synthetic_fraction must lie in (0, 1): DoRA needs both sources")
    if not 0.0 < out.judge_agreement <= 1.0:
        raise ValueError("judge_agreement must lie in (0, 1]")
    if "sources" in [s.name for s in scenarios_of(out)] or out.maps:
        from .data import judge_slope

        judge_slope(out)  # an agreement the judge cannot reach is refused now, not mid-run
    if min(out.seeds, out.steps, out.train_pairs, out.flip_pairs, out.eval_prompts, out.eval_pairs) < 1:
        raise ValueError("seeds, steps, train_pairs, flip_pairs, eval_prompts and eval_pairs must be >= 1")
    if out.validation_seeds < 0 or len(out.betas) < 2:
        raise ValueError("validation_seeds must be >= 0 and the β grid needs at least 2 values")
    return out


def frontier_runs(opts: ShiftOptions, sc: Scenario) -> list[RunSpec]:
    """DPO at every β of the grid (with the scenario's extra β) on each of the scenario's frontier
    datasets, then its shorter-training runs (at the grid's largest β, learning rate × each
    `sc.short` scale): the frontier."""
    betas = sorted(set(opts.betas) | set(sc.extra_betas))
    runs = [RunSpec(d, "dpo", (("beta", b),)) for d in (sc.frontier_datasets or (sc.dataset,)) for b in betas]
    return runs + [RunSpec(sc.dataset, "dpo", (("beta", max(opts.betas)), ("lr", opts.lr * s))) for s in sc.short]


def steps_of(opts: ShiftOptions, run: RunSpec) -> int:
    """Optimizer steps of `run`: opts.steps × the `steps_scale` of the scenario owning its dataset."""
    for sc in SCENARIOS.values():
        if sc.steps_scale != 1 and (run.dataset == sc.dataset or run.dataset.startswith(sc.dataset + "-")):
            return opts.steps * sc.steps_scale
    return opts.steps


def concrete(opts: ShiftOptions, spec: RunSpec) -> RunSpec:
    """A fixed run with its placeholders filled: ε = −1 means "the true flip rate"."""
    params = tuple((k, opts.flip_rate if v == -1.0 else v) for k, v in spec.params)
    return RunSpec(spec.dataset, spec.method, params)


def scenarios_of(opts: ShiftOptions) -> list[Scenario]:
    return [SCENARIOS[n] for n in (opts.scenarios or SCENARIOS)]


def default_choices(opts: ShiftOptions) -> dict[tuple[str, str], float]:
    """Each tuned method's parameter when no validation chose it: its grid's first value."""
    return {(t.dataset, t.method): t.grid[0] for sc in scenarios_of(opts) for t in sc.tuned}


def plan(opts: ShiftOptions, chosen: dict[tuple[str, str], float] | None = None) -> list[RunSpec]:
    """Distinct test runs per seed, in order. `chosen` maps (dataset, method) of a tuned method
    to its frozen parameter; without it (the validation phase) every grid value is a run."""
    runs: list[RunSpec] = []

    def add(r: RunSpec) -> None:
        if r not in runs:
            runs.append(r)

    for sc in scenarios_of(opts):
        if chosen is None and not sc.tuned:
            continue  # validation runs serve only the choice of tuned parameters
        for r in frontier_runs(opts, sc):
            add(r)
        for t in sc.tuned:
            values = [chosen[(t.dataset, t.method)]] if chosen is not None else list(t.grid)
            for v in values:
                add(RunSpec(t.dataset, t.method, ((t.param, v),)))
        if chosen is not None:
            for f in sc.fixed:
                add(concrete(opts, f))
    return runs
