"""`dralign` command line: thin wrappers that parse a typed config and call the library.

Every option of `train` comes from `dralign.train.config.TrainConfig`; `--config FILE.yaml`
sets any of them, the command line wins. Errors in input print one clear message (no traceback)
and exit with status 2.
"""

from __future__ import annotations

import argparse
import sys

from .config import ConfigError, add_arguments, from_args


def _methods(args) -> int:
    from rich.console import Console
    from rich.table import Table

    from .objectives import Objective
    from .objectives.presets import PARAMETERS, PRESETS

    table = Table(title="dralign methods (presets)", show_lines=True)
    for col in ("preset", "divergence / coupling / link / robust [+ penalty]", "formula", "parameters", "paper"):
        table.add_column(col, overflow="fold")
    for name, preset in PRESETS.items():
        obj = Objective.from_preset(name)
        choices = f"{obj.divergence} / {obj.coupling} / {obj.link} / {obj.robust}"
        if obj.penalty != "none":
            choices += f" + {obj.penalty}"
        params = ", ".join(f"{p}={getattr(obj, p)}" for p in preset.parameters)
        table.add_row(name, choices, obj.describe(), params, preset.paper)
    console = Console(width=args.width) if args.width else Console()
    console.print(table)
    console.print("Any other combination: name the four choices, e.g. "
                  "--method dpo --divergence js --robust kl. Parameters and defaults: "
                  + ", ".join(f"{k}={v}" for k, v in PARAMETERS.items()))
    return 0


def _train(args) -> int:
    from .train.config import TrainConfig
    from .train.trainer import train

    cfg = from_args(TrainConfig, args)
    result = train(cfg)
    from accelerate import PartialState

    if PartialState().is_main_process:
        print(f"{result.status}: {result.steps} steps; model and card in {result.output_dir}")
    return 0 if result.status == "completed" else 130


def _ratio_fit(args) -> int:
    from .ratio.cli import RatioConfig, fit_file

    fit_file(from_args(RatioConfig, args).ratio)
    return 0


def _demo(args) -> int:
    from .demo import run_demo

    return run_demo(steps=args.steps, output_dir=args.output_dir)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dralign", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("methods", help="every preset, its four choices, formula and paper")
    p.add_argument("--width", type=int, default=None, help="table width in characters")
    p.set_defaults(func=_methods)

    from .train.config import TrainConfig
    p = sub.add_parser("train", help="align a causal LM on preference data",
                       description="Train with any preset or combination of choices. Every option "
                                   "may also be given in a YAML file with --config; the command line wins.")
    p.add_argument("--config", help="YAML file of options (keys are the option names)")
    add_arguments(p, TrainConfig)
    p.set_defaults(func=_train)

    from .ratio.cli import RatioConfig
    ratio = sub.add_parser("ratio", help="DoRA's density ratios").add_subparsers(dest="ratio_command", required=True)
    p = ratio.add_parser("fit", help="cross-fit P(target | prompt, response); write target_prob and ratio per row",
                         description="Fit DoRA's density-ratio classifier (k-fold cross-fitted logistic "
                                     "regression on frozen features) and write per-row weights.")
    p.add_argument("--config", help="YAML file of options")
    add_arguments(p, RatioConfig)
    p.set_defaults(func=_ratio_fit)

    p = sub.add_parser("demo", help="the main job on its built-in default (offline, CPU)")
    p.add_argument("--steps", type=int, default=40, help="training steps per method")
    p.add_argument("--output-dir", default="outputs/demo", help="where results go")
    p.set_defaults(func=_demo)
    return parser


def _quiet_libraries() -> None:
    """Keep the terminal for dralign's own progress: no per-load bars from transformers."""
    import transformers

    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _quiet_libraries()
    from .data import DataError
    from .train.trainer import TrainingError

    try:
        return args.func(args)
    except (ConfigError, DataError, TrainingError, ValueError, OSError) as e:
        print(f"dralign {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
