"""Method parameters: each declared once, on the component that uses it.

A `Param` carries the one name (Python keyword, YAML key, ``--flag``), the default, a one-line
help, the valid range (as a check and as text) and, for settings, the allowed choices. A
component declares a parameter as a dataclass field, ``beta: float = BETA.field()``, so the
default lives on the `Param` only; `dralign.objectives.parameters()` collects them all, with the
components that use each, for the CLI's flags and help and for ``dralign methods``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any


@dataclass(frozen=True)
class Param:
    """One method parameter: name, default, help, valid range."""

    name: str
    default: Any
    help: str
    check: Callable[[Any], bool] = lambda v: True
    range: str = ""
    choices: tuple = ()

    def validate(self, value):
        """`value` when it is valid, else ValueError naming the parameter and its range."""
        if self.choices:
            if value not in self.choices:
                raise ValueError(f"{self.name} must be one of {', '.join(map(str, self.choices))}; got {value!r}")
            return value
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{self.name} must be a number {self.range}, got {value!r}")
        if not (math.isfinite(value) and self.check(value)):
            raise ValueError(f"{self.name} must be {self.range}, got {value}")
        return value

    def field(self):
        """A dataclass field with this parameter's default, tagged with the `Param`."""
        return field(default=self.default, metadata={"param": self})


def positive(name: str, default: float, help: str) -> Param:
    return Param(name, default, help, lambda v: v > 0, "> 0")


def non_negative(name: str, default: float, help: str) -> Param:
    return Param(name, default, help, lambda v: v >= 0, ">= 0")


def params_of(component) -> tuple[Param, ...]:
    """The `Param`s a component (class or instance) declares, in field order."""
    try:
        return tuple(f.metadata["param"] for f in fields(component) if "param" in f.metadata)
    except TypeError:  # not a dataclass: no parameters
        return ()


def values_of(component) -> dict:
    """{name: value} of a component instance's parameters."""
    return {p.name: getattr(component, p.name) for p in params_of(component)}


class Component:
    """Base of scores, couplings, links and aggregators: a small pure value.

    Subclasses set `name`, `formula` (the one place the formula is written; the class docstring
    is generated from it) and `paper`, and declare their parameters as `Param` fields.
    """

    name = ""
    formula = ""
    paper = ""

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "formula" in cls.__dict__:  # the docstring carries the formula and the paper
            body = (cls.__dict__.get("__doc__") or "").strip()
            cls.__doc__ = "\n\n".join(
                x for x in (f"{cls.formula}", body, f"Paper: {cls.paper}" if cls.paper else "") if x
            )

    def __post_init__(self):
        for p in params_of(self):
            p.validate(getattr(self, p.name))
