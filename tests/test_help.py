"""Help from one truth: every flag's help shows the typed config's default and description,
the documentation (the README and the docs pages that took over its option text) states the same
defaults, and the texts a newcomer reads first say what happens
(GGUF models, what --dtype auto is, the prompt limit when --max-prompt-length is unset)."""

from __future__ import annotations

import argparse
import dataclasses
import re
from pathlib import Path

import pytest

from dralign.cli import build_parser
from dralign.config import _leaf_fields, _sections
from dralign.eval.cli import EvalConfig
from dralign.train.config import TrainConfig

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
# the README's option text moved to these pages (issue 23 item 4): the tests read them with it
DOCS = [README] + [ROOT / "docs" / p for p in ("data.md", "training.md", "benchmarks/speed.md")]


def docs_text() -> str:
    return "\n".join(p.read_text() for p in DOCS)


def subcommand(name: str) -> argparse.ArgumentParser:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    p = sub.choices[name]
    p.format_help()  # the options are added when the subcommand is used
    return p


def helps(name: str) -> dict[str, str]:
    """{option name: its help text} of `dralign NAME`."""
    return {a.dest: a.help for a in subcommand(name)._actions if a.help}


def defaults(cls) -> dict[str, tuple[object, str]]:
    """{option name: (default, help)} of every field of a config class."""
    out = {}
    for _, section in _sections(cls):
        for f, _ in _leaf_fields(section):
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            out[f.name] = (default, f.metadata.get("help", ""))
    return out


@pytest.mark.parametrize("command, cls", [("train", TrainConfig), ("eval", EvalConfig)])
def test_every_flag_shows_the_configs_default_and_help(command, cls):
    shown = helps(command)
    for name, (default, text) in defaults(cls).items():
        assert shown[name].startswith(text.replace("%", "%%")), name
        # the generated "(default: X)" closes the text, before the valid range "[...]"
        stated = re.findall(r"\(default: ([^()]*)\)(?= \[[^]]*\]$|$)", shown[name])
        if default not in (None, "", []):  # unset options describe their behaviour in words
            assert stated == [str(default)], f"--{name}: help says {stated}, the config {default!r}"


def test_the_readmes_stated_defaults_are_the_configs():
    train = {k: v for k, (v, _) in defaults(TrainConfig).items()}
    text = docs_text()
    # "`--packing`** (default `auto`" and "`--on-bad-row error`, the default"
    stated = re.findall(r"`--([a-z-]+)`\**\s*\(default `([^`]+)`", text)
    stated += [(f, v) for f, v in re.findall(r"`--([a-z-]+) ([^`]+)`, the default", text)]
    assert stated, "the README states no default any more: update this test"
    for flag, value in stated:
        name = flag.replace("-", "_")
        assert name in train, f"README names an unknown option --{flag}"
        assert str(train[name]) == value, f"README: --{flag} defaults to {value}; the config: {train[name]}"


def test_the_help_says_what_happens():
    train, eval_ = helps("train"), helps("eval")
    for text in (train["model"], train["ref_model"], eval_["model"], eval_["reference"]):
        assert "GGUF" in text
    for text in (train["dtype"], eval_["dtype"]):  # auto is float32 for a GGUF file, as docs/training.md says
        assert "(default: auto)" in text and "float32 for a GGUF file" in text
    assert "the default `auto` is float32 for a GGUF file" in docs_text()
    # unset, a prompt is cut only when it fills --max-length, to half of it (data/tokenize.py)
    assert "half of --max-length" in train["max_prompt_length"]
    assert "half of --max-length" in train["long_prompts"]


def test_the_data_summary_prints_the_prompt_limit_in_force(tok):
    from dralign.data import tokenize_pairs

    rows = [{"prompt": "word " * 40, "chosen": " yes", "rejected": " no"}]
    summary = tokenize_pairs(rows, tok, max_length=16).report.summary()
    assert "max_prompt_length=None" not in summary
    assert "1 prompts cut to 8 tokens" in summary
    assert "max_prompt_length=8 (prompts of >= max_length tokens only)" in summary
    strict = tokenize_pairs(rows, tok, max_length=16, long_prompts="strict", on_bad_row="skip")
    assert "max_prompt_length=none (long prompts refused)" in strict.report.summary()
    right = tokenize_pairs(rows, tok, max_length=16, truncation_side="right").report.summary()
    assert "their start kept with truncation_side=right" in right
