"""`dralign demo` (= `make demo`): f-DPO's divergences, offline on a CPU in a few minutes.

A shortened shift-world run (:mod:`dralign_bench.shift`) of the scenario with the committed
run's clearest valid finding (docs/shift/report.md): DPO (reverse KL) at two β and at a shorter
training (its frontier), forward-KL and JS f-DPO each on its own β grid, all trained from the
same pretrained world LM on preferences labelled by Bradley–Terry on a mixture of two gold
objectives; each sampled on held-out prompts and compared with DPO's envelope at matched KL (gold
reward, token entropy, calibration after a fitted temperature); the control (DPO's reward gain
over the start model) is computed in the same run. Every `dralign bench shift` option applies;
only the defaults differ.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from dralign.config import option

from .shift import DEMO_SCENARIO, ShiftOptions, run_shift


@dataclass
class DemoOptions(ShiftOptions):
    """The demo: a shortened shift-world run (any `bench shift` option may be changed)."""

    scenarios: list[str] | None = option([DEMO_SCENARIO], "scenarios to run (default: f-DPO's divergences)")
    seeds: int | None = option(3, "test seeds")
    validation_seeds: int | None = option(0, "validation seeds (0: the robust methods' grid's first values)")
    steps: int | None = option(60, "optimizer steps per run")
    train_pairs: int | None = option(480, "training pairs")
    eval_prompts: int | None = option(256, "held-out prompts")
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
