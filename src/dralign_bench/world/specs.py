"""The shift world's ``dralign eval`` specs, registered through the ``dralign.rewards`` and
``dralign.prompts`` entry points (pyproject.toml; see :mod:`dralign.eval.registry`):

* ``--reward world:NAME`` — a gold objective (:data:`GOLD_OBJECTIVES`) of the response text;
* ``--reward world:mix:A,B,ALPHA[,linear|geometric]`` — α·r_A + (1−α)·r_B (or r_A^α·r_B^(1−α));
* ``--prompts world:heldout:N`` / ``world:train:N`` — N prompts of a pool, seeded.
"""

from __future__ import annotations

from collections.abc import Callable

from .gold import GOLD_OBJECTIVES, make_mixture_reward
from .text import generate_prompts

__all__ = ["world_prompts", "world_reward"]


def world_reward(body: str) -> Callable[[str], float]:
    """The per-text reward of ``world:BODY``; ValueError naming what is wrong."""
    if body.startswith("mix:"):
        parts = [p.strip() for p in body[len("mix:") :].split(",")]
        if len(parts) not in (3, 4):
            raise ValueError("a mixture is world:mix:A,B,ALPHA[,linear|geometric]")
        a, b, alpha = parts[:3]
        for name in (a, b):
            if name not in GOLD_OBJECTIVES:
                raise ValueError(f"unknown gold objective {name!r}")
        try:
            alpha_value = float(alpha)
        except ValueError:
            raise ValueError(f"ALPHA {alpha!r} is not a number") from None
        return make_mixture_reward(a, b, alpha_value, parts[3] if len(parts) == 4 else "linear")
    if body not in GOLD_OBJECTIVES:
        raise ValueError(f"unknown gold objective {body!r}")
    return GOLD_OBJECTIVES[body]


world_reward.spec_help = (
    f"world:NAME (NAME one of {', '.join(GOLD_OBJECTIVES)}), world:mix:A,B,ALPHA[,linear|geometric]"
)


def world_prompts(body: str, seed: int) -> list[str]:
    """`N` seeded prompts of ``world:heldout:N`` or ``world:train:N``."""
    parts = body.split(":")
    if len(parts) != 2 or parts[0] not in ("heldout", "train"):
        raise ValueError("expected world:heldout:N or world:train:N")
    try:
        n = int(parts[1])
    except ValueError:
        raise ValueError(f"N={parts[1]!r} is not an integer") from None
    if n < 1:
        raise ValueError("N must be >= 1")
    return generate_prompts(n, seed=seed, split=parts[0])


world_prompts.spec_help = "world:heldout:N / world:train:N"
