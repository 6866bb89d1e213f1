"""The command line and its plug-ins: bench commands come through the `dralign.commands`
entry points, and every refusal dralign raises is one line and exit status 2."""

from __future__ import annotations

import ast
import importlib
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import dralign
from dralign import errors
from dralign.cli import build_parser, main
from dralign.commands import Command, CommandGroup, discover

SRC = Path(dralign.__file__).parent


def _all_modules() -> list[str]:
    """Every module of dralign whose import needs no optional extra."""
    names = []
    for info in pkgutil.walk_packages([str(SRC)], prefix="dralign."):
        try:
            importlib.import_module(info.name)
        except ImportError:  # an extra (trl, matplotlib) that is not installed
            continue
        names.append(info.name)
    return names


def _refusal_classes() -> list[type]:
    _all_modules()
    importlib.import_module("dralign_bench.speed")  # SpeedBenchError: a bench command's refusal
    found, stack = [], [errors.DralignError]
    while stack:
        cls = stack.pop()
        found.append(cls)
        stack.extend(cls.__subclasses__())
    return sorted(set(found), key=lambda c: f"{c.__module__}.{c.__qualname__}")


def test_every_exception_class_of_dralign_is_in_the_family():
    """An exception class defined in src/dralign that is not a DralignError would escape
    `cli.main` as a traceback."""
    outside = []
    for file in SRC.rglob("*.py"):
        for node in ast.walk(ast.parse(file.read_text())):
            if isinstance(node, ast.ClassDef) and (node.name.endswith("Error") or node.name.endswith("Exception")):
                outside.append((file, node.name))
    classes = {c.__name__ for c in _refusal_classes()}
    assert [f"{f.relative_to(SRC)}: {n}" for f, n in outside if n not in classes] == []


@pytest.mark.parametrize("cls", _refusal_classes(), ids=lambda c: c.__qualname__)
def test_every_refusal_class_is_one_line_through_the_cli(cls, monkeypatch, capsys):
    import dralign.ratio.cli as ratio_cli

    def refuse(*_):
        raise _instance(cls, "the reason, in words")

    monkeypatch.setattr(ratio_cli, "fit_file", refuse)
    assert main(["ratio", "fit", "--data", "x.jsonl", "--target", "human"]) == 2
    err = capsys.readouterr().err
    assert err == "dralign ratio: error: the reason, in words\n"


def _instance(cls: type, message: str) -> Exception:
    try:
        return cls(message)
    except TypeError:  # a class whose constructor takes more than a message
        exc = cls.__new__(cls)
        Exception.__init__(exc, message)
        return exc


def test_aot_unpaired_without_the_reference_cache_is_one_line(tiny_model_dir, unpaired_jsonl, tmp_path, capsys):
    rc = main(
        [
            "train",
            "--no-progress",
            "--model",
            tiny_model_dir("llama"),
            "--data",
            str(unpaired_jsonl),
            "--method",
            "aot-unpaired",
            "--no-ref-cache",
            "--max-steps",
            "1",
            "--output-dir",
            str(tmp_path / "out"),
        ]
    )
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err
    assert err.strip().splitlines() == [
        "dralign train: error: aot-unpaired reads reference log-probs from the cache: drop --no-ref-cache"
    ]


def test_bench_commands_are_plugins_the_cli_does_not_name():
    cli = (SRC / "cli.py").read_text()
    assert "dralign_bench" not in cli
    paths = {path: spec for path, spec in discover()}
    assert paths, "no dralign.commands entry points installed: run `pip install -e .` again"
    assert isinstance(paths[("bench",)], CommandGroup)
    assert {p for p, s in paths.items() if isinstance(s, Command)} >= {
        ("bench", "shift"),
        ("bench", "loglinear"),
        ("bench", "real"),
        ("bench", "speed"),
        ("demo",),
    }
    args = build_parser().parse_args(["bench", "loglinear"])
    assert args.func is not None


def test_a_plugin_command_runs_with_its_config_and_command_line(monkeypatch, capsys):
    import dralign_bench.commands as bench_commands

    seen = {}

    def fake_run(cfg, command_line):
        seen.update(cfg=cfg, line=command_line)
        return 3

    monkeypatch.setattr(bench_commands, "_loglinear", fake_run)
    assert main(["bench", "loglinear"]) == 3
    from dralign_bench.loglinear import LoglinearConfig

    assert isinstance(seen["cfg"], LoglinearConfig) and seen["line"] == "dralign bench loglinear"
    main(["bench", "loglinear", "--output-dir", "a dir/with space"])
    assert seen["line"] == "dralign bench loglinear --output-dir 'a dir/with space'"  # pasteable again


@pytest.mark.slow
def test_train_help_imports_no_torch():
    code = (
        "import contextlib, io, sys\n"
        "from dralign.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()) as out, contextlib.suppress(SystemExit):\n"
        "    main(['train', '--help'])\n"
        "print([m for m in ('torch', 'transformers') if m in sys.modules], '--beta' in out.getvalue())"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PYTHONPATH": str(SRC.parent), "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[] True"
