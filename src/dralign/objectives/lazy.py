"""`torch`, imported the first time the objectives use it, not when they are imported.

The `dralign train` flags and `dralign methods` read the components' parameters (plain
dataclass fields); building them must not wait seconds for torch (`dralign train --help`). A
module writes ``torch = lazy_module("torch", globals())``: the first attribute read imports the
module and puts it in the caller's globals under the same name, so every later use is the real
module (no indirection on the hot path).
"""

from __future__ import annotations

import importlib
from typing import Any


class _LazyModule:
    """Stands in for module `name` in the namespace `home` under `alias` until first used."""

    def __init__(self, name: str, home: dict, alias: str):
        self._name, self._home, self._alias = name, home, alias

    def __getattr__(self, attr: str) -> Any:
        module = importlib.import_module(self._name)
        self._home[self._alias] = module  # later reads in `home` get the module itself
        return getattr(module, attr)


def lazy_module(name: str, home: dict, alias: str | None = None) -> Any:
    """Module `name` for namespace `home` (a module's ``globals()``), imported on first use."""
    return _LazyModule(name, home, alias or name.rpartition(".")[2])
