"""Which examples form each optimizer step: a pure function of (data, seed, epoch, step).

One optimizer step takes an *effective batch* of `batch_size × grad_accum × processes` examples;
each process takes its contiguous share, cut into `grad_accum` micro-batches. An epoch's order
is computed once per epoch (never per step) and only from the seed and the epoch, so a resumed
run sees exactly the batches an uninterrupted one would.
"""

from __future__ import annotations

import numpy as np

from ..data import PreferenceData, batch_indices


class BatchPlan:
    """The batch order of a run (see the module docstring)."""

    def __init__(
        self,
        data: PreferenceData,
        *,
        batch_size: int,
        grad_accum: int,
        processes: int,
        seed: int,
        group_by_length: bool = False,
    ):
        self.data, self.seed = data, seed
        self.batch_size, self.grad_accum = batch_size, grad_accum
        self.effective = batch_size * grad_accum * processes
        self.steps_per_epoch = len(data) // self.effective
        # an effective batch is indivisible (robust statistics span it), so an epoch drops the
        # remainder; a different remainder is dropped every epoch since the order is reshuffled
        self.left_out_per_epoch = len(data) - self.steps_per_epoch * self.effective
        self._lengths = data.lengths() if group_by_length else None
        self._cached: tuple[int, list[list[int]]] | None = None

    def effective_batch(self, step: int) -> list[int]:
        """The example indices of optimizer step `step` (0-based), over all processes."""
        epoch, position = divmod(step, self.steps_per_epoch)
        if self._cached is None or self._cached[0] != epoch:
            self._cached = (epoch, self._epoch_order(epoch))
        return self._cached[1][position]

    def micro_batches(self, step: int, process_index: int) -> list[list[int]]:
        """This process's share of step `step`, as `grad_accum` lists of indices."""
        share = self.batch_size * self.grad_accum
        mine = self.effective_batch(step)[process_index * share : (process_index + 1) * share]
        return [mine[i : i + self.batch_size] for i in range(0, share, self.batch_size)]

    def _epoch_order(self, epoch: int) -> list[list[int]]:
        if self.data.kind == "unpaired":
            order = label_balanced_order(self.data, self.seed, epoch)
            return [order[i * self.effective : (i + 1) * self.effective] for i in range(self.steps_per_epoch)]
        # grouped by prompt + longest completion in either layout, so that turning prefix
        # sharing on or off never changes which examples form a batch
        return batch_indices(
            len(self.data),
            self.effective,
            seed=self.seed,
            epoch=epoch,
            shuffle=True,
            drop_last=True,
            group_by_length=self._lengths,
        )


def label_balanced_order(data: PreferenceData, seed: int, epoch: int) -> list[int]:
    """The epoch's shuffled order with each label spread evenly over it (a stable merge by
    position within its label), so every batch of unpaired data holds both labels."""
    perm = np.random.default_rng([seed, epoch]).permutation(len(data))
    counts = {lab: sum(e.label == lab for e in data.examples) for lab in (True, False)}
    rank, seen = [], {True: 0, False: 0}
    for i in perm.tolist():
        label = data[i].label
        rank.append(((seen[label] + 0.5) / counts[label], i))
        seen[label] += 1
    return [i for _, i in sorted(rank)]
