"""Subcommands that other packages add to ``dralign``, through the ``dralign.commands`` entry
point group (as eval's rewards and prompts plug in through ``dralign.rewards`` and
``dralign.prompts``)::

    [project.entry-points."dralign.commands"]
    bench = "mypkg.commands:bench"          # a CommandGroup: `dralign bench ...`
    "bench.shift" = "mypkg.commands:shift"  # a Command under it: `dralign bench shift`
    demo = "mypkg.commands:demo"            # a top-level Command: `dralign demo`

The entry point's module is imported to build the parser (`dralign --help` lists the commands),
so it must be light: a `Command` names its config class and its runner as ``"module:name"``
strings, imported only when the command runs or prints its own help.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

__all__ = ["GROUP", "Command", "CommandGroup", "discover"]

GROUP = "dralign.commands"


def _resolve(target: str) -> Any:
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


@dataclass(frozen=True)
class Command:
    """A subcommand whose options are the fields of the typed config `config` ("module:Class")
    and which runs `run` ("module:function"), called as ``run(config, command_line)`` and
    returning the exit status (None means 0)."""

    help: str
    config: str
    run: str
    description: str = ""

    def config_class(self) -> type:
        return _resolve(self.config)

    def runner(self) -> Callable[[Any, str], int | None]:
        return _resolve(self.run)


@dataclass(frozen=True)
class CommandGroup:
    """A name under which other commands sit (``dralign bench shift``)."""

    help: str


def discover() -> list[tuple[tuple[str, ...], Command | CommandGroup]]:
    """(path, spec) of every registered command, parents before children; the path is the entry
    point's name split at dots (``bench.shift`` -> ("bench", "shift"))."""
    found = [(tuple(ep.name.split(".")), ep.load()) for ep in entry_points(group=GROUP)]
    for path, spec in found:
        if not isinstance(spec, (Command, CommandGroup)):
            raise TypeError(f"entry point {'.'.join(path)} of {GROUP} is not a Command or CommandGroup")
    return sorted(found, key=lambda item: (len(item[0]), item[0]))
