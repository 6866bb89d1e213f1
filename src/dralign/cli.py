"""`dralign` command line: thin wrappers that parse a typed config and call the library.

Every option of `train` comes from `dralign.train.config.TrainConfig`; `--config FILE.yaml`
sets any of them, the command line wins. Errors in input print one clear message (no traceback)
and exit with status 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable
from typing import Any

from . import __version__
from .config import ConfigError, add_arguments, from_args


def _methods(args) -> int:
    from rich import box
    from rich.table import Table

    from .objectives import parameters
    from .objectives.objective import preset_summary
    from .objectives.presets import PRESETS

    console = _methods_console(args.width)
    piped = not console.is_terminal and not args.width
    # piped (to a file, grep, less): one line per preset in a Markdown table, never wrapped
    table = Table(
        title=None if piped else "dralign methods (presets)",
        show_lines=not piped,
        box=box.MARKDOWN if piped else box.HEAVY_HEAD,
    )
    for col in ("preset", "divergence / coupling / link / robust [+ penalty]", "formula", "parameters", "paper"):
        table.add_column(col, overflow="fold")
    aliases: dict[str, list[str]] = {}
    for name, preset in PRESETS.items():
        if preset.alias_of is not None:
            aliases.setdefault(preset.alias_of, []).append(name)
    for name, preset in PRESETS.items():
        if preset.alias_of is not None:  # the same objective: named on its target's row
            continue
        choices, formula, params = preset_summary(name)
        label, paper = name, preset.paper
        for alias in aliases.get(name, []):
            label += f" (alias: {alias})"
            if PRESETS[alias].paper != preset.paper:
                paper += f"; as {alias}: {PRESETS[alias].paper}"
        table.add_row(label, choices, formula, params, paper)
    if piped:
        with console.capture() as captured:
            console.print(table)
        print("dralign methods (presets)")
        print("\n".join(line.rstrip() for line in captured.get().splitlines() if line.strip()))
    else:
        console.print(table)
    console.print(
        "Any other combination: name the four choices, e.g. "
        "--method dpo --divergence js --robust kl. Parameters and defaults: "
        + ", ".join(f"{k}={v.default}" for k, v in parameters().items())
    )
    return 0


def _methods_console(width: int | None):
    """A console `width` wide; on a terminal its width; piped, full width (`dralign.console`)."""
    from .console import table_console

    return table_console(width)


def _train(args) -> int:
    from .ratio.prepare import with_fitted_ratios
    from .train.config import TrainConfig
    from .train.recipe import train
    from .train.trl_config import translate

    cfg = from_args(TrainConfig, args, translate=translate)
    # the ratios are fitted into the output folder once the run holds it; --config is an input
    result = train(cfg, inputs=[args.config] if getattr(args, "config", None) else [], prepare=with_fitted_ratios)
    from accelerate import PartialState

    if PartialState().is_main_process:
        if result.status == "completed":
            print(f"completed: {result.steps} steps; model, card and final_metrics.json in {result.output_dir}")
        elif result.model_saved:
            print(
                f"interrupted after {result.steps} steps, before the final evaluation; the model is "
                f"saved in {result.output_dir}; evaluate with --resume --output-dir {result.output_dir}"
            )
        else:
            print(
                f"interrupted after {result.steps} steps; no final model was written; continue with "
                f"--resume --output-dir {result.output_dir}"
            )
    return 0 if result.status == "completed" else 130


def _ratio_fit(args) -> int:
    from .ratio.cli import RatioConfig, fit_file

    cfg = from_args(RatioConfig, args)
    fit_file(cfg.ratio, cfg.data)
    return 0


def _command_line(args) -> str:
    """The command as typed, quoted for a shell, so that a recorded command can be pasted again."""
    import shlex

    return shlex.join(["dralign", *args.argv])


def _eval(args) -> int:
    from .eval.cli import EvalConfig, run_eval

    run_eval(from_args(EvalConfig, args))
    return 0


def _diagnose(args) -> int:
    from .diagnosis import DiagnoseConfig, run_diagnose

    run_diagnose(from_args(DiagnoseConfig, args))
    return 0


def _plugin(command) -> Callable:
    """The `func` of a subcommand another package registers (`dralign.commands.Command`)."""

    def run(args) -> int:
        status = command.runner()(from_args(command.config_class(), args), _command_line(args))
        return 0 if status is None else status

    return run


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
    p = sub.add_parser(
        name, help=help, description=description or help, allow_abbrev=False, add_options=_config_options(config_of)
    )
    p.set_defaults(func=func)
    return p


def _config(module: str, name: str) -> Callable[[], type]:
    """The config class `module.name`, imported when its subcommand is used (each pulls in torch)."""
    return lambda: getattr(importlib.import_module(module), name)


def _subcommands(parser: argparse.ArgumentParser, dest: str):
    return parser.add_subparsers(dest=dest, required=True, parser_class=_LazyOptionsParser)


def _add_plugins(sub) -> None:
    """The subcommands other packages register through the `dralign.commands` entry points
    (the benchmarks and the demo); the CLI names none of them."""
    from .commands import Command, discover

    groups: dict[tuple[str, ...], Any] = {(): sub}
    for path, spec in discover():
        parent = groups.get(path[:-1])
        if parent is None:  # a command under a group nobody registered
            raise ConfigError(f"command {' '.join(path)}: no command group {' '.join(path[:-1])!r}")
        if isinstance(spec, Command):
            _add(parent, path[-1], spec.config_class, _plugin(spec), spec.help, spec.description or None)
        else:
            group = parent.add_parser(path[-1], help=spec.help, allow_abbrev=False)
            groups[path] = _subcommands(group, "_".join(path) + "_command")


BUILTIN = ("methods", "train", "ratio", "eval")  # the commands of dralign itself; others are plug-ins


def build_parser(plugins: bool = True) -> argparse.ArgumentParser:
    """The `dralign` parser. Imports no torch: each subcommand's options are added when it is
    used (see `_LazyOptionsParser`). plugins=False leaves out the commands of other packages
    (reading the entry points costs a tenth of a second that `dralign train --help` need not wait)."""
    # allow_abbrev=False everywhere: `--target` must never silently mean `--target-prob-column`
    parser = argparse.ArgumentParser(prog="dralign", description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--version", action="version", version=f"dralign {__version__}")
    sub = _subcommands(parser, "command")

    p = sub.add_parser("methods", help="every preset, its four choices, formula and paper", allow_abbrev=False)
    p.add_argument("--width", type=int, default=None, help="table width in characters")
    p.set_defaults(func=_methods)

    _add(
        sub,
        "train",
        _config("dralign.train.config", "TrainConfig"),
        _train,
        "align a causal LM on preference data",
        "Train with any preset or combination of choices. Every option may also be given in a "
        "YAML file with --config; the command line wins.",
    )

    ratio = _subcommands(sub.add_parser("ratio", help="DoRA's density ratios", allow_abbrev=False), "ratio_command")
    _add(
        ratio,
        "fit",
        _config("dralign.ratio.cli", "RatioConfig"),
        _ratio_fit,
        "cross-fit P(target | prompt, response); write target_prob and ratio per row",
        "Fit DoRA's density-ratio classifier (k-fold cross-fitted logistic regression on frozen "
        "features) and write per-row weights.",
    )

    _add(
        sub,
        "eval",
        _config("dralign.eval.cli", "EvalConfig"),
        _eval,
        "evaluate a trained model: held-out pairs, generations, a shift sweep",
        "Preference accuracy, margins and calibration on held-out pairs; win rate against the start "
        "model under a reward, KL to it, diversity and length of samples; a shift sweep over mixture "
        "weights with the worst case. Every mean with a 95% bootstrap interval.",
    )

    _add(
        sub,
        "diagnose",
        _config("dralign.diagnosis", "DiagnoseConfig"),
        _diagnose,
        "look at a preference file before training: integrity, lengths, groups, sources, advice",
        "Rows and bad rows (read as `dralign train` reads them), duplicates and contradictory "
        "pairs, leakage into --eval, the pick-the-longer baseline and what --max-length cuts, "
        "groups, the density-ratio fit against --target, the label signal of --model; advice "
        "with the evidence it rests on. --json writes the report (and a PNG beside it).",
    )

    if plugins:
        _add_plugins(sub)
    return parser


def _quiet_libraries() -> None:
    """Keep the terminal for dralign's own progress: no per-load bars from transformers."""
    import transformers

    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(plugins=argv[:1] not in [[c] for c in BUILTIN]).parse_args(argv)
    args.argv = argv
    _quiet_libraries()
    from .errors import DralignError
    from .printable import shown, shown_lines  # a message quotes values from data: printed inert

    try:
        return args.func(args)
    except OSError as e:  # a full disk, a missing permission: one line naming the path
        where = f" {e.filename}:" if e.filename else ""
        print(f"dralign {args.command}: error:{shown(where)} {shown(e.strerror or e)}", file=sys.stderr)
        return 2
    except (DralignError, ValueError) as e:  # ValueError: torch's and transformers' refusals of a value
        print(f"dralign {args.command}: error: {shown_lines(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:  # Ctrl-C or SIGTERM (train's set-up): one line, no traceback
        print(f"dralign {args.command}: {e or 'stopped by SIGINT'}", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
