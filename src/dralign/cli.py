"""`dralign` command line: thin wrappers that parse a typed config and call the library.

Every option of `train` comes from `dralign.train.config.TrainConfig`; `--config FILE.yaml`
sets any of them, the command line wins. Errors in input print one clear message (no traceback)
and exit with status 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Callable

from . import __version__
from .config import ConfigError, add_arguments, from_args


def _methods(args) -> int:
    from rich import box
    from rich.table import Table

    from .objectives import Objective, parameters
    from .objectives.presets import PRESETS

    console = _methods_console(args.width)
    piped = not console.is_terminal and not args.width
    # piped (to a file, grep, less): one line per preset in a Markdown table, never wrapped
    table = Table(title=None if piped else "dralign methods (presets)", show_lines=not piped,
                  box=box.MARKDOWN if piped else box.HEAVY_HEAD)
    for col in ("preset", "divergence / coupling / link / robust [+ penalty]", "formula", "parameters", "paper"):
        table.add_column(col, overflow="fold")
    aliases: dict[str, list[str]] = {}
    for name, preset in PRESETS.items():
        if preset.alias_of is not None:
            aliases.setdefault(preset.alias_of, []).append(name)
    for name, preset in PRESETS.items():
        if preset.alias_of is not None:  # the same objective: named on its target's row
            continue
        obj = Objective.from_preset(name)
        choices = f"{obj.divergence} / {obj.coupling} / {obj.link} / {obj.robust}"
        if obj.penalty is not None:
            choices += f" + {obj.penalty.name}"
        params = ", ".join(f"{k}={v}" for k, v in obj.parameters().items())
        label, paper = name, preset.paper
        for alias in aliases.get(name, []):
            label += f" (alias: {alias})"
            if PRESETS[alias].paper != preset.paper:
                paper += f"; as {alias}: {PRESETS[alias].paper}"
        table.add_row(label, choices, obj.describe(), params, paper)
    if piped:
        with console.capture() as captured:
            console.print(table)
        print("dralign methods (presets)")
        print("\n".join(line.rstrip() for line in captured.get().splitlines() if line.strip()))
    else:
        console.print(table)
    console.print("Any other combination: name the four choices, e.g. "
                  "--method dpo --divergence js --robust kl. Parameters and defaults: "
                  + ", ".join(f"{k}={v.default}" for k, v in parameters().items()))
    return 0


def _methods_console(width: int | None):
    """A console `width` wide; on a terminal its width; piped, wide enough never to wrap
    (rich would otherwise cut every row at 80 columns)."""
    from rich.console import Console

    if width:
        return Console(width=width)
    console = Console()
    return console if console.is_terminal else Console(width=100_000, soft_wrap=True)


def _train(args) -> int:
    from .ratio.prepare import with_fitted_ratios
    from .train.config import TrainConfig
    from .train.recipe import train
    from .train.trl_config import translate

    cfg = with_fitted_ratios(from_args(TrainConfig, args, translate=translate))
    result = train(cfg)
    from accelerate import PartialState

    if PartialState().is_main_process:
        if result.status == "completed":
            print(f"completed: {result.steps} steps; model, card and final_metrics.json in {result.output_dir}")
        else:
            print(f"interrupted after {result.steps} steps; no final model was written; continue with "
                  f"--resume --output-dir {result.output_dir}")
    return 0 if result.status == "completed" else 130


def _ratio_fit(args) -> int:
    from .ratio.cli import RatioConfig, fit_file

    fit_file(from_args(RatioConfig, args).ratio)
    return 0


def _command_line(args) -> str:
    return " ".join(["dralign", *args.argv])


def _eval(args) -> int:
    from .eval.cli import EvalConfig, run_eval

    run_eval(from_args(EvalConfig, args))
    return 0


def _bench_shift(args) -> int:
    from dralign_bench.shift import ShiftConfig, run_shift

    run_shift(from_args(ShiftConfig, args), command=_command_line(args))
    return 0


def _bench_loglinear(args) -> int:
    from dralign_bench.loglinear import LoglinearConfig, run_loglinear

    run_loglinear(from_args(LoglinearConfig, args))
    return 0


def _bench_real(args) -> int:
    from dralign_bench.real import RealConfig, run_real

    run_real(from_args(RealConfig, args), command=_command_line(args))
    return 0


def _bench_speed(args) -> int:
    from dralign_bench.speed import SpeedConfig, run_speed

    run_speed(from_args(SpeedConfig, args))
    return 0


def _demo(args) -> int:
    from dralign_bench.demo import DemoConfig, run_demo

    return run_demo(from_args(DemoConfig, args))


class _LazyOptionsParser(argparse.ArgumentParser):
    """A subcommand's parser whose options are added the first time it parses or prints help:
    the configs they come from import torch, which `dralign --help` must not wait for."""

    def __init__(self, *args, add_options=None, **kwargs):
        super().__init__(*args, **kwargs)
        self._add_options = add_options

    def _complete(self) -> None:
        if self._add_options is not None:
            add, self._add_options = self._add_options, None
            add(self)

    def parse_known_args(self, args=None, namespace=None):
        self._complete()
        return super().parse_known_args(args, namespace)

    def format_usage(self):
        self._complete()
        return super().format_usage()

    def format_help(self):
        self._complete()
        return super().format_help()


def _config_options(config_of: Callable[[], type]) -> Callable[[argparse.ArgumentParser], None]:
    """Adds --config and one flag per field of the config class `config_of()` returns."""

    def add(p: argparse.ArgumentParser) -> None:
        p.add_argument("--config", help="YAML file of options (keys are the option names)")
        add_arguments(p, config_of())

    return add


def _add(sub, name: str, config_of: Callable[[], type], func, help: str, description: str | None = None):
    """A subcommand whose options are the fields of the config class `config_of()` (and
    --config FILE.yaml), added when the subcommand is used."""
    p = sub.add_parser(name, help=help, description=description or help, allow_abbrev=False,
                       add_options=_config_options(config_of))
    p.set_defaults(func=func)
    return p


def _config(module: str, name: str) -> Callable[[], type]:
    """The config class `module.name`, imported when its subcommand is used (each pulls in torch)."""
    return lambda: getattr(importlib.import_module(module), name)


def _subcommands(parser: argparse.ArgumentParser, dest: str):
    return parser.add_subparsers(dest=dest, required=True, parser_class=_LazyOptionsParser)


def build_parser() -> argparse.ArgumentParser:
    """The `dralign` parser. Imports no torch: each subcommand's options are added when it is
    used (see `_LazyOptionsParser`)."""
    # allow_abbrev=False everywhere: `--target` must never silently mean `--target-prob-column`
    parser = argparse.ArgumentParser(prog="dralign", description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--version", action="version", version=f"dralign {__version__}")
    sub = _subcommands(parser, "command")

    p = sub.add_parser("methods", help="every preset, its four choices, formula and paper", allow_abbrev=False)
    p.add_argument("--width", type=int, default=None, help="table width in characters")
    p.set_defaults(func=_methods)

    _add(sub, "train", _config("dralign.train.config", "TrainConfig"), _train, "align a causal LM on preference data",
         "Train with any preset or combination of choices. Every option may also be given in a "
         "YAML file with --config; the command line wins.")

    ratio = _subcommands(sub.add_parser("ratio", help="DoRA's density ratios", allow_abbrev=False),
                         "ratio_command")
    _add(ratio, "fit", _config("dralign.ratio.cli", "RatioConfig"), _ratio_fit,
         "cross-fit P(target | prompt, response); write target_prob and ratio per row",
         "Fit DoRA's density-ratio classifier (k-fold cross-fitted logistic regression on frozen "
         "features) and write per-row weights.")

    _add(sub, "eval", _config("dralign.eval.cli", "EvalConfig"), _eval, "evaluate a trained model: held-out pairs, generations, a shift sweep",
         "Preference accuracy, margins and calibration on held-out pairs; win rate against the start "
         "model under a reward, KL to it, diversity and length of samples; a shift sweep over mixture "
         "weights with the worst case. Every mean with a 95% bootstrap interval.")

    bench = _subcommands(sub.add_parser("bench", allow_abbrev=False,
                                        help="benchmarks: the shift world, the log-linear world, "
                                             "a real model on real data, speed against TRL"),
                         "bench_command")
    _add(bench, "shift", _config("dralign_bench.shift", "ShiftConfig"), _bench_shift, "the shift-world benchmark",
         "Methods trained from the same pretrained world LM on the same data; gold reward under "
         "preference shift, diversity, calibration; table, results.json, plots and report.md. "
         "--full runs every scenario with 5 seeds.")
    _add(bench, "loglinear", _config("dralign_bench.loglinear", "LoglinearConfig"), _bench_loglinear,
         "the exact log-linear world: closed-form optimum, robustness under shift, error vs n")
    _add(bench, "real", _config("dralign_bench.real", "RealConfig"), _bench_real,
         "SmolLM2-135M-Instruct with LoRA on real data: domain shift, groups, human vs model",
         "Held-out preference accuracy in- and out-of-domain, per group and the worst group, with "
         "intervals, beside the pick-the-longer-response baseline and the accuracy on length-"
         "matched pairs; results.json, plots and report.md. --profile gpu is the full run.")
    _add(bench, "speed", _config("dralign_bench.speed", "SpeedConfig"), _bench_speed, "dralign against TRL's DPOTrainer, side by side",
         "Pairs/s, peak RSS and FLOP/s of dralign and TRL 1.16's DPOTrainer on the same model, data "
         "and settings (balanced and prompt-heavy), and each objective's step time against dpo. "
         "Needs the trl extra: pip install 'dralign[trl]'.")

    _add(sub, "demo", _config("dralign_bench.demo", "DemoConfig"), _demo, "the main job on its built-in default (offline, CPU, a few minutes)",
         "A shortened shift-world run: dpo, kldpo, wdpo, fdpo-js, aot and dora from the same "
         "pretrained world LM; prints the table and the paths of the plots and the report.")
    return parser


def _quiet_libraries() -> None:
    """Keep the terminal for dralign's own progress: no per-load bars from transformers."""
    import transformers

    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    _quiet_libraries()
    from .errors import DralignError

    try:
        return args.func(args)
    except OSError as e:  # a full disk, a missing permission: one line naming the path
        where = f" {e.filename}:" if e.filename else ""
        print(f"dralign {args.command}: error:{where} {e.strerror or e}", file=sys.stderr)
        return 2
    except (DralignError, ValueError) as e:  # ValueError: torch's and transformers' refusals of a value
        print(f"dralign {args.command}: error: {e}", file=sys.stderr)
        return 2

if __name__ == "__main__":
    sys.exit(main())
