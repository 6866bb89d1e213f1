"""Spec schemes that other packages plug into ``dralign eval``: ``SCHEME:BODY`` → a reward or
a list of prompts.

A package adds a scheme in one of two ways, both ending in :meth:`SchemeRegistry.register`:

* declare an entry point (the way for installed packages: eval never imports them by name)::

      [project.entry-points."dralign.rewards"]     # or "dralign.prompts"
      world = "dralign_bench.world.specs:world_reward"

* or call :func:`dralign.eval.register_reward` / :func:`dralign.eval.register_prompts` at run
  time (scripts, tests).

A reward factory maps ``BODY`` to a reward callable, per text (``str -> float``) or batched
(``(prompts, responses) -> array``), as for ``package.module:function`` in
:mod:`dralign.eval.rewards`; a prompts factory maps ``(BODY, seed) -> list[str]``.
Either raises ValueError with the reason when the body is malformed. A factory may carry a
``spec_help`` attribute (e.g. ``"world:NAME"``) shown in error messages.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any

__all__ = ["PROMPTS", "REWARDS", "SchemeRegistry", "register_prompts", "register_reward"]


class SchemeRegistry:
    """Factories by scheme name: those registered in this process, then the entry points of
    `group`, loaded once, the first time a scheme is looked up or listed."""

    def __init__(self, group: str):
        self.group = group
        self._factories: dict[str, Callable[..., Any]] = {}
        self._discovered = False

    def register(self, scheme: str, factory: Callable[..., Any]) -> None:
        """Add `factory` under `scheme` (a lower-case identifier). Registering the same factory
        again is a no-op; a different one under a taken name is refused (ValueError)."""
        if not scheme.isidentifier():
            raise ValueError(f"{self.group}: scheme {scheme!r} is not an identifier")
        if self._factories.get(scheme, factory) is not factory:
            raise ValueError(f"{self.group}: scheme {scheme!r} is already registered ({self._factories[scheme]!r})")
        self._factories[scheme] = factory

    def _discover(self) -> None:
        if self._discovered:
            return
        self._discovered = True  # once: a broken plug-in must not be retried on every lookup
        for ep in entry_points(group=self.group):
            if ep.name not in self._factories:
                self.register(ep.name, ep.load())

    def get(self, scheme: str) -> Callable[..., Any] | None:
        """The factory of `scheme`, or None when no package provides it."""
        if scheme not in self._factories:
            self._discover()
        return self._factories.get(scheme)

    def helps(self) -> list[str]:
        """One usage line per scheme (its factory's ``spec_help``, else ``SCHEME:...``)."""
        self._discover()
        return [getattr(f, "spec_help", f"{s}:...") for s, f in sorted(self._factories.items())]

    def schemes(self) -> list[str]:
        """The registered scheme names, sorted."""
        self._discover()
        return sorted(self._factories)


#: ``SCHEME:BODY`` reward specs of ``--reward`` (:func:`dralign.eval.load_reward`).
REWARDS = SchemeRegistry("dralign.rewards")
#: ``SCHEME:BODY`` prompt specs of ``--prompts`` (:func:`dralign.eval.cli.load_prompts`).
PROMPTS = SchemeRegistry("dralign.prompts")


def register_reward(scheme: str, factory: Callable[[str], Any]) -> None:
    """Make ``--reward SCHEME:BODY`` mean ``factory(BODY)`` (a per-text or batched reward)."""
    REWARDS.register(scheme, factory)


def register_prompts(scheme: str, factory: Callable[[str, int], list[str]]) -> None:
    """Make ``--prompts SCHEME:BODY`` mean ``factory(BODY, seed)`` (a list of prompt strings)."""
    PROMPTS.register(scheme, factory)
