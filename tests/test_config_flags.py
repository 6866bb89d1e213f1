"""Every `--flag` maps to exactly one dataclass field, and an option the library's commands
share is declared once (composed sections, not copies)."""

from __future__ import annotations

import argparse
import collections
import dataclasses

import pytest

from dralign.commands import Command, discover
from dralign.config import _sections, add_arguments, flag
from dralign.eval.cli import EvalConfig
from dralign.ratio.cli import RatioConfig
from dralign.train.config import TrainConfig

LIBRARY = {"train": TrainConfig, "eval": EvalConfig, "ratio fit": RatioConfig}

# The same flag name with a different meaning per command (each declared by its command):
SAME_NAME_OTHER_MEANING = {
    "model": "train: the model to train; eval: the model to evaluate; ratio fit: the feature model",
    "data": "train: the training file; eval: the held-out file; ratio fit: the file to fit",
    "data_split": "train: the split to train on (default train); eval: the split to score (default test)",
    "seed": "train: data order and init; eval: sampling and bootstrap; ratio fit: folds",
    "output": "eval: the results JSON; ratio fit: the rows with their ratios",
    "batch_size": "train: pairs per micro-batch; eval: sequences per forward pass",
    "beta": "train: the method's beta (default: the preset's); eval: the implicit reward's beta",
    "ref_cache_dir": "train: where the run writes and reads its caches (default OUTPUT_DIR/ref_cache); eval: a cache to read for --data (default: the training run's)",
    "dtype": "train's model section and eval's options each load models (one loading section: later)",
}


def _configs() -> dict[str, type]:
    plugins = {" ".join(p): s.config_class() for p, s in discover() if isinstance(s, Command)}
    return {**LIBRARY, **plugins}


def _declaring_class(section_cls: type, name: str) -> type:
    return next(c for c in section_cls.__mro__ if name in c.__dict__.get("__annotations__", {}))


@pytest.mark.parametrize("command", sorted(_configs()))
def test_each_flag_is_one_field(command):
    cls = _configs()[command]
    parser = argparse.ArgumentParser(allow_abbrev=False)
    add_arguments(parser, cls)  # argparse refuses a flag added twice
    fields = collections.Counter(f.name for _, section in _sections(cls) for f in dataclasses.fields(section))
    assert [n for n, k in fields.items() if k > 1] == []
    dest = {a: action.dest for action in parser._actions for a in action.option_strings if action.dest != "help"}
    assert set(dest.values()) == set(fields)  # every field has its flag, every flag its field
    assert all(f in (flag(d), "--no-" + flag(d)[2:]) for f, d in dest.items())  # named after it


def test_options_the_library_commands_share_are_declared_once():
    declared = collections.defaultdict(set)
    for cls in LIBRARY.values():
        for _, section in _sections(cls):
            for f in dataclasses.fields(section):
                owner = _declaring_class(section, f.name)
                declared[f.name].add(f"{owner.__module__}.{owner.__qualname__}")
    twice = {n: sorted(owners) for n, owners in declared.items() if len(owners) > 1}
    assert sorted(set(twice) - set(SAME_NAME_OTHER_MEANING)) == []
    # the data section: one declaration, composed by train, eval and ratio fit
    for name in ("max_length", "prompt_column", "on_bad_row", "source_column", "prefix_sharing"):
        assert len(declared[name]) == 1, (name, declared[name])
