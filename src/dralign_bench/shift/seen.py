"""What a trainer actually saw: completions per optimizer step, counted inside the training loop
(the unpaired scenario's control compares AOT with its re-paired baseline on these counts, not on
the options that were meant to make them equal)."""

from __future__ import annotations

__all__ = ["completions_per_step", "train_counting"]


def completions_per_step(examples: int, unpaired: bool) -> int:
    """Completions in one step's effective batch: an unpaired row holds one, a pair two."""
    return examples if unpaired else 2 * examples


def train_counting(cfg) -> tuple[object, list[int]]:
    """`dralign.train.train(cfg)`, also returning the completions of every step's effective batch
    as the training loop drew it (its batch plan at that step, the objective's data kind)."""
    from dralign.train.recipe import Recipe

    counts: list[int] = []

    class _Counting(Recipe):
        def step(self, step: int) -> dict:
            record = super().step(step)
            counts.append(completions_per_step(len(self.plan.effective_batch(step)), self.objective.unpaired))
            return record

    return _Counting(cfg).run(), counts
