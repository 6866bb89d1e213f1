"""`dralign demo` (= `make demo`): the main job on its built-in default, offline on a CPU.

A shortened shift-world run (:mod:`dralign_bench.shift`): the world LM is pretrained
(or taken from the cache), then dpo, kldpo, wdpo, fdpo-js, aot and dora are trained from it on
the same human + synthetic preference data, for the same budget; each is sampled on held-out
prompts and scored by the gold reward at every mixture weight α. Prints the table, and the
paths of the plots and the report. Every `dralign bench shift` option applies; only the
defaults differ (one seed, these six methods on the ``sources`` data, ``outputs/demo``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .shift import DEMO_METHODS, ShiftOptions, run_shift
from dralign.config import option


@dataclass
class DemoOptions(ShiftOptions):
    """The demo: a shortened shift-world run (any `bench shift` option may be changed)."""

    methods: list[str] | None = option(list(DEMO_METHODS), "presets to train from the same start")
    dataset: str = option("sources", "their training data: human + synthetic pairs with source labels")
    output_dir: str = option("outputs/demo", "where models, results, plots and the report go")
    keep_models: bool = option(True, "keep each trained model's weights for `dralign eval`")


@dataclass
class DemoConfig:
    demo: DemoOptions = field(default_factory=DemoOptions)


def run_demo(cfg: DemoConfig | None = None, console=None) -> int:
    from rich.console import Console

    console = console or Console()
    results = run_shift((cfg or DemoConfig()).demo, console, command="dralign demo")
    files = results["files"]
    console.print(f"plots: {files['shift_plot']}, {files['tradeoff_plot']}\n"
                  f"report: {files['report']}\nresults: {files['results']}")
    return 0
