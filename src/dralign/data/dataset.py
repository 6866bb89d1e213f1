"""`PreferenceData`: a tokenized dataset of pairs or unpaired examples, with its report."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .collate import collate_pairs, collate_unpaired
from .examples import PairExample, UnpairedExample
from .report import DataReport


@dataclass
class PreferenceData:
    """A tokenized dataset: examples, group and source names, pad id, settings and report."""

    examples: list[PairExample] | list[UnpairedExample]
    kind: str  # "pairs" or "unpaired"
    pad_token_id: int
    group_names: list[str]
    source_names: list[str]
    settings: dict
    report: DataReport

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, i: int) -> PairExample | UnpairedExample:
        return self.examples[i]

    def collate(self, indices: Sequence[int]) -> dict:
        """The batch of the examples at `indices` (see `collate_pairs` / `collate_unpaired`)."""
        batch = [self.examples[i] for i in indices]
        collate = collate_pairs if self.kind == "pairs" else collate_unpaired
        return collate(batch, self.pad_token_id)

    def lengths(self) -> list[int]:
        """Longest sequence of each example (prompt + its longest completion), for batching."""
        if self.kind == "pairs":
            return [len(e.prompt_ids) + max(len(e.chosen_ids), len(e.rejected_ids))
                    for e in self.examples]
        return [len(e.prompt_ids) + len(e.completion_ids) for e in self.examples]

    def fingerprint(self) -> str:
        """sha256 over the settings and every example's index and token ids (and label).

        Stable across calls and processes; changes with any token or tokenization setting.
        """
        digest = hashlib.sha256()
        header = {"kind": self.kind, "pad_token_id": self.pad_token_id, **self.settings}
        digest.update(json.dumps(header, sort_keys=True).encode())
        for e in self.examples:
            parts = ((e.prompt_ids, e.chosen_ids, e.rejected_ids) if self.kind == "pairs"
                     else (e.prompt_ids, e.completion_ids, (int(e.label),)))
            digest.update(np.asarray([e.index, *map(len, parts)], dtype=np.int64).tobytes())
            for ids in parts:
                digest.update(np.asarray(ids, dtype=np.int64).tobytes())
        return digest.hexdigest()
