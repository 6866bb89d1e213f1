"""`dralign eval --per-pair FILE`: one JSON line per held-out pair, so that any analysis the
summary does not make (by length, by margin, by a column of one's own) can be made from it.

Each line: ``file`` and ``row`` (where the pair came from), ``index`` (its position among the
evaluated pairs), ``group`` and ``source`` (None when absent), the token lengths
``prompt_tokens``, ``chosen_tokens``, ``rejected_tokens`` (after truncation: what was scored),
the summed log-probs ``policy_chosen``, ``policy_rejected``, ``ref_chosen``, ``ref_rejected``,
``margin`` = β (u⁺ − u⁻) with u = log π − log π_ref, and ``p_chosen`` = σ(margin).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from ..config import atomic_write_text
from .groups import labels_of

__all__ = ["per_pair_records", "write_per_pair"]


def _num(x) -> float | None:
    """A finite float, or None (JSON has no NaN or infinity)."""
    x = float(x)
    return x if math.isfinite(x) else None


def _sigmoid(x: float) -> float:
    """σ(x), without overflow for large |x|."""
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))


def per_pair_records(data, scores) -> list[dict]:
    """The per-pair records of `data` (a paired :class:`dralign.data.PreferenceData`) scored as
    `scores` (:class:`dralign.eval.evaluate.PairScores`), in the order of ``data.examples``."""
    groups = labels_of(data, "group") if data.group_names else [None] * len(data)
    sources = labels_of(data, "source") if data.source_names else [None] * len(data)
    margins = scores.reward_chosen - scores.reward_rejected
    out = []
    for i, e in enumerate(data.examples):
        m = _num(margins[i])
        out.append(
            {
                "file": e.file,
                "row": int(e.row),
                "index": int(e.index),
                "group": groups[i],
                "source": sources[i],
                "prompt_tokens": len(e.prompt_ids),
                "chosen_tokens": len(e.chosen_ids),
                "rejected_tokens": len(e.rejected_ids),
                "policy_chosen": _num(scores.policy_chosen[i]),
                "policy_rejected": _num(scores.policy_rejected[i]),
                "ref_chosen": _num(scores.ref_chosen[i]),
                "ref_rejected": _num(scores.ref_rejected[i]),
                "margin": m,
                "p_chosen": None if m is None else _sigmoid(m),
            }
        )
    return out


def write_per_pair(path: str | Path, data, scores) -> Path:
    """Write :func:`per_pair_records` as JSON lines to `path` (atomically); returns the path."""
    lines = (json.dumps(r, allow_nan=False) for r in per_pair_records(data, scores))
    atomic_write_text(path, "".join(line + "\n" for line in lines))
    return Path(path)
