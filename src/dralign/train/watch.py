"""Two warnings from the metric records of a run, each given at most once.

- **The policy has not moved.** After a warm-up, the reward margins β·(u⁺ − u⁻) and the
  log-ratios to the reference u = log πθ(y|x) − log πref(y|x) of the chosen and the rejected
  responses are all still ≈ 0 (below `tol` nats per response): training is not changing the
  policy, typically because the learning rate is too small for the model (the default lr on a
  small model). The records hold β·u (`rewards/chosen`, `rewards/rejected`), so u = reward / β;
  the mean |u| over both responses is a sample proxy of the policy's distance (KL) to the
  reference on the training data.
- **Overfitting.** Over the last `evaluations` held-out evaluations the held-out loss rose at
  every one, while the mean training loss fell between the first and the last of them.

The functions are pure (records in, verdict out); `Watch` is the step hook that keeps the
records and prints each warning once.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

Record = dict
"""One step's metrics, as written to metrics.jsonl: `step`, `loss`, `rewards/margins`, …,
and `eval/loss` on the steps that evaluated."""

EVAL_LOSS_KEYS = ("eval/loss", "eval/loss_without_groups")


def warmup_steps(total_steps: int) -> int:
    """Steps before the policy is expected to have moved: 20, or 10 % of a shorter run (at
    least 2)."""
    return max(2, min(20, math.ceil(0.1 * total_steps)))


def policy_distance(record: Record, beta: float) -> float | None:
    """max(|u⁺|, |u⁻|, |u⁺ − u⁻|) of one record, in nats per response (u = reward / β); None
    when the record has no reward metrics (an objective that reports none)."""
    keys = ("rewards/chosen", "rewards/rejected", "rewards/margins")
    if beta <= 0 or not all(k in record for k in keys):
        return None
    return max(abs(record[k]) for k in keys) / beta


def policy_stalled(records: Sequence[Record], beta: float, window: int = 5, tol: float = 1e-2) -> bool:
    """Whether the last `window` records all show the policy within `tol` nats of the
    reference (margins and log-ratios ≈ 0). False with fewer records, or without reward
    metrics, or when a step was skipped (its metrics are not a step's)."""
    recent = []
    for r in reversed(records):  # from the end: a check per step stays O(window), not O(steps)
        if not r.get("skipped"):
            recent.append(r)
            if len(recent) == window:
                break
    if len(recent) < window:
        return False
    distances = [policy_distance(r, beta) for r in recent]
    return all(d is not None and d < tol for d in distances)


def _eval_loss(record: Record) -> float | None:
    return next((record[k] for k in EVAL_LOSS_KEYS if k in record), None)


def overfitting(records: Sequence[Record], evaluations: int = 3) -> bool:
    """Whether the held-out loss rose at each of the last `evaluations` evaluations while the
    mean training loss fell: the mean of `loss` over the steps up to the last evaluation
    (since the one before it) is below that up to the first of them."""
    evals = [i for i, r in enumerate(records) if _eval_loss(r) is not None]
    if evaluations < 2 or len(evals) < evaluations:
        return False
    last = evals[-evaluations:]
    held_out = [v for i in last if (v := _eval_loss(records[i])) is not None]  # all are (evals)
    if not all(b > a for a, b in zip(held_out, held_out[1:])):
        return False

    def mean_train_loss(end: int) -> float | None:
        start = max((i for i in evals if i < end), default=-1) + 1
        losses = [r["loss"] for r in records[start : end + 1] if "loss" in r and not r.get("skipped")]
        return sum(losses) / len(losses) if losses else None

    first, final = mean_train_loss(last[0]), mean_train_loss(last[-1])
    return first is not None and final is not None and final < first


class Watch:
    """A step hook `(step, record)` of the training loop: keeps the records and calls `warn`
    with each warning's message at most once."""

    def __init__(self, total_steps: int, beta: float, lr: float, warn: Callable[[str], None] = print):
        self.total_steps, self.beta, self.lr, self.warn = total_steps, beta, lr, warn
        self.records: list[Record] = []
        self.warned: set[str] = set()

    def __call__(self, step: int, record: Record) -> None:
        self.records.append(record)
        if (
            "stalled" not in self.warned
            and step >= warmup_steps(self.total_steps)
            and policy_stalled(self.records, self.beta)
        ):
            self.warned.add("stalled")
            self.warn(
                f"warning: after {step} steps the policy has not moved from the reference "
                f"(reward margins and log-ratios to it below 0.01 nats): the learning rate "
                f"--lr {self.lr:g} is probably too small for this model; try 10-100x larger"
            )
        if "overfitting" not in self.warned and _eval_loss(record) is not None and overfitting(self.records):
            self.warned.add("overfitting")
            self.warn(
                f"warning: at step {step} the held-out loss has risen at each of the last 3 "
                "evaluations while the training loss fell: the model is overfitting the "
                "training pairs (fewer --epochs/--max-steps, a lower --lr, a larger --beta "
                "or more data)"
            )
