"""`dralign demo` (= `make demo`): the mixture conflict, offline on a CPU in a few minutes.

A shortened shift-world run (:mod:`dralign_bench.shift`), the one scenario where the effect is
clearest: preferences labelled by a mixture of two labellers (r_a with probability α₀ = 0.1,
else r_b) on two negatively correlated gold objectives; DPO at two β (its frontier), KLDPO and
WDPO trained from the same pretrained world LM; each sampled on the 512 held-out prompts and
scored at every mixture weight α; the control (DPO's worst case below the start model's) is
computed in the same run. No validation seeds here (KLDPO's τ and
WDPO's ρ are the grid's first values; `dralign bench shift --full` tunes them). Every `dralign
bench shift` option applies; only the defaults differ.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from dralign.config import option

from .shift import DEMO_SCENARIO, ShiftOptions, run_shift


@dataclass
class DemoOptions(ShiftOptions):
    """The demo: a shortened shift-world run (any `bench shift` option may be changed)."""

    scenarios: list[str] | None = option([DEMO_SCENARIO], "scenarios to run (default: the mixture conflict)")
    seeds: int | None = option(2, "test seeds")
    validation_seeds: int | None = option(0, "validation seeds (0: the robust methods' grid's first values)")
    steps: int | None = option(60, "optimizer steps per run")
    train_pairs: int | None = option(480, "training pairs")
    eval_prompts: int | None = option(512, "held-out prompts")
    eval_pairs: int | None = option(256, "held-out pairs")
    betas: list[float] = option([0.1, 1.0], "DPO's β values")
    output_dir: str = option("outputs/demo", "where results, plots and the report go")


@dataclass
class DemoConfig:
    demo: DemoOptions = field(default_factory=DemoOptions)


def run_demo(cfg: DemoConfig | None = None, console=None) -> int:
    from rich.console import Console

    run_shift((cfg or DemoConfig()).demo, console or Console(), command="dralign demo")  # ends with what it shows
    return 0
