"""The shift world's labels: Bradley–Terry preferences on a gold reward, and label flipping.

Labelling draws from ``numpy.random.default_rng(seed)``: deterministic per seed.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

# =============================================================================================
# Bradley–Terry labelling and label noise
# =============================================================================================


def bt_probability(reward_1: float, reward_2: float, temperature: float) -> float:
    """P(1 ≻ 2) = σ((r1 − r2) / T) = 1 / (1 + exp(−(r1 − r2)/T)), computed stably.

    T = 0 is the hard limit: 1 if r1 > r2, 0 if r1 < r2, ½ on a tie.
    """
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    d = float(reward_1) - float(reward_2)
    if temperature == 0:
        return 1.0 if d > 0 else 0.0 if d < 0 else 0.5
    z = d / temperature
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    ez = math.exp(z)
    return ez / (1.0 + ez)


def bt_label(reward_1: float, reward_2: float, *, temperature: float, rng: Any) -> bool:
    """Draw a Bradley–Terry label: True (response 1 preferred) with probability
    σ((r1 − r2)/temperature). Consumes exactly one ``rng.random()`` (a NumPy Generator or a
    :class:`random.Random`)."""
    return bool(rng.random() < bt_probability(reward_1, reward_2, temperature))


def label_pairs(
    prompts: Sequence[str],
    responses_1: Sequence[str],
    responses_2: Sequence[str],
    reward_fn: Callable[[str], float],
    temperature: float = 0.1,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Label each pair by Bradley–Terry on ``reward_fn(response)``, deterministic per seed.

    For pair i, r1 = reward_fn(responses_1[i]), r2 = reward_fn(responses_2[i]),
    p_first = σ((r1 − r2)/temperature), and response 1 is chosen iff u_i < p_first with
    u_i ~ U(0, 1) from ``numpy.random.default_rng(seed)`` (one draw per pair, in order).
    Rows: ``{"prompt", "chosen", "rejected", "p_first", "first_preferred", "reward_chosen",
    "reward_rejected"}``; invariant: chosen is response 1 iff first_preferred.
    Rewards lie in [0, 1], so temperature 0.1 makes a 0.1 reward gap a 73 % preference.
    """
    if not len(prompts) == len(responses_1) == len(responses_2):
        raise ValueError(
            f"prompts, responses_1, responses_2 differ in length: "
            f"{len(prompts)}, {len(responses_1)}, {len(responses_2)}"
        )
    rng = np.random.default_rng(seed)
    rows = []
    for p, y1, y2 in zip(prompts, responses_1, responses_2):
        r1, r2 = float(reward_fn(y1)), float(reward_fn(y2))
        p_first = bt_probability(r1, r2, temperature)
        first = bool(rng.random() < p_first)
        rows.append(
            {
                "prompt": p,
                "chosen": y1 if first else y2,
                "rejected": y2 if first else y1,
                "p_first": p_first,
                "first_preferred": first,
                "reward_chosen": r1 if first else r2,
                "reward_rejected": r2 if first else r1,
            }
        )
    return rows


def label_rows(
    rows: Iterable[Mapping[str, Any]], reward_fn: Callable[[str], float], temperature: float = 0.1, seed: int = 0
) -> list[dict[str, Any]]:
    """:func:`label_pairs` on rows ``{"prompt", "response_1", "response_2", ...}`` (from
    :func:`prompt_response_pairs` or :func:`assign_sources`); every other key (e.g. ``source``)
    is carried over to the labelled row."""
    rows = list(rows)
    labelled = label_pairs(
        [r["prompt"] for r in rows],
        [r["response_1"] for r in rows],
        [r["response_2"] for r in rows],
        reward_fn,
        temperature,
        seed,
    )
    out = []
    for src, lab in zip(rows, labelled):
        extra = {k: v for k, v in src.items() if k not in ("prompt", "response_1", "response_2")}
        out.append({**lab, **extra})
    return out


def flip_labels(rows: Sequence[Mapping[str, Any]], rate: float, seed: int = 0) -> list[dict[str, Any]]:
    """The flipped-label scenario: swap chosen and rejected in exactly ``round(rate · n)`` rows,
    chosen uniformly at random (deterministic per seed).

    Returns new rows (the input is not modified), each with ``"flipped": bool``. In flipped
    rows ``reward_chosen``/``reward_rejected`` are swapped too and ``first_preferred`` is
    negated, when present; ``p_first`` (a property of the pair) is unchanged.
    """
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"rate must lie in [0, 1], got {rate}")
    n = len(rows)
    k = int(round(rate * n))
    flip = set(np.random.default_rng(seed).choice(n, size=k, replace=False).tolist()) if k else set()
    out = []
    for i, r in enumerate(rows):
        row = dict(r)
        if i in flip:
            row["chosen"], row["rejected"] = r["rejected"], r["chosen"]
            if "reward_chosen" in r and "reward_rejected" in r:
                row["reward_chosen"], row["reward_rejected"] = r["reward_rejected"], r["reward_chosen"]
            if "first_preferred" in r:
                row["first_preferred"] = not r["first_preferred"]
        row["flipped"] = i in flip
        out.append(row)
    return out
