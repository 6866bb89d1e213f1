"""The benchmark commands of ``dralign`` (``bench shift|loglinear|real|speed``, ``demo``),
registered through the ``dralign.commands`` entry point group (see :mod:`dralign.commands`).

Light on purpose: ``dralign --help`` imports this module; each runner imports its benchmark
(and torch) only when it runs.
"""

from __future__ import annotations

from dralign.commands import Command, CommandGroup


def _shift(cfg, command_line: str) -> int:
    from .shift import run_shift

    run_shift(cfg, command=command_line)
    return 0


def _loglinear(cfg, command_line: str) -> int:
    from .loglinear import run_loglinear

    run_loglinear(cfg)
    return 0


def _real(cfg, command_line: str) -> int:
    from .real import run_real

    run_real(cfg, command=command_line)
    return 0


def _speed(cfg, command_line: str) -> int:
    from .speed import run_speed

    run_speed(cfg)
    return 0


def _demo(cfg, command_line: str) -> int:
    from .demo import run_demo

    return run_demo(cfg)


bench = CommandGroup("benchmarks: the shift world, the log-linear world, a real model on real data, speed against TRL")
shift = Command(
    "the shift-world benchmark",
    "dralign_bench.shift:ShiftConfig",
    "dralign_bench.commands:_shift",
    "Methods trained from the same pretrained world LM on the same data; gold reward under "
    "preference shift, diversity, calibration; table, results.json, plots and report.md. "
    "--full runs every scenario with 5 seeds.",
)
loglinear = Command(
    "the exact log-linear world: closed-form optimum, robustness under shift, error vs n",
    "dralign_bench.loglinear:LoglinearConfig",
    "dralign_bench.commands:_loglinear",
)
real = Command(
    "SmolLM2-135M-Instruct with LoRA on real data: domain shift, groups, human vs model",
    "dralign_bench.real:RealConfig",
    "dralign_bench.commands:_real",
    "Held-out preference accuracy in- and out-of-domain, per group and the worst group, with "
    "intervals, beside the pick-the-longer-response baseline and the accuracy on length-"
    "matched pairs; results.json, plots and report.md. --profile gpu is the full run.",
)
speed = Command(
    "dralign against TRL's DPOTrainer, side by side",
    "dralign_bench.speed:SpeedConfig",
    "dralign_bench.commands:_speed",
    "Pairs/s, peak RSS and FLOP/s of dralign and TRL 1.16's DPOTrainer on the same model, data "
    "and settings (balanced and prompt-heavy), and each objective's step time against dpo. "
    "Needs the trl extra: pip install 'dralign[trl]'.",
)
demo = Command(
    "the main job on its built-in default (offline, CPU, a few minutes)",
    "dralign_bench.demo:DemoConfig",
    "dralign_bench.commands:_demo",
    "A shortened shift-world run: dpo, kldpo, wdpo, fdpo-js, aot and dora from the same "
    "pretrained world LM; prints the table and the paths of the plots and the report.",
)
