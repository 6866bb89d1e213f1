"""`PreferenceData`: a tokenized dataset of pairs or unpaired examples, with its report, and
`ExampleTable`, the columnar store that holds the examples compactly."""

from __future__ import annotations

import hashlib
import json
from array import array
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .collate import collate_pairs, collate_unpaired
from .examples import PairExample, UnpairedExample
from .report import DataReport

ID_FIELDS = {"pairs": ("prompt_ids", "chosen_ids", "rejected_ids"), "unpaired": ("prompt_ids", "completion_ids")}
META_COLUMNS = ("index", "row", "file_id", "weight", "group", "source", "target_prob", "ratio")
_NAN = float("nan")


class IdColumns:
    """Token ids appended one example at a time into flat int32 buffers (4 bytes a token,
    where a tuple of Python ints costs 8–36), with each example's lengths."""

    def __init__(self, fields: Sequence[str]):
        self.fields = tuple(fields)
        self.flat = {f: array("i") for f in self.fields}
        self.lengths = {f: array("q") for f in self.fields}

    def append(self, parts: Sequence[Sequence[int]]) -> None:
        for f, ids in zip(self.fields, parts):
            self.flat[f].extend(ids)
            self.lengths[f].append(len(ids))

    def extend(self, flat: Sequence[np.ndarray], lengths: Sequence[np.ndarray]) -> None:
        """Append many examples at once: per field, their ids one after the other and their
        lengths."""
        for f, ids, n in zip(self.fields, flat, lengths):
            self.flat[f].frombytes(np.ascontiguousarray(ids, dtype=np.int32).tobytes())
            self.lengths[f].frombytes(np.ascontiguousarray(n, dtype=np.int64).tobytes())

    def __len__(self) -> int:
        return len(self.lengths[self.fields[0]]) if self.fields else 0

    def arrays(self) -> dict[str, np.ndarray]:
        """``{field: flat int32 ids, field.offsets: int64 [n + 1]}``."""
        out = {}
        for f in self.fields:
            out[f] = np.frombuffer(self.flat[f], dtype=np.int32).copy()
            lengths = np.frombuffer(self.lengths[f], dtype=np.int64)
            out[f"{f}.offsets"] = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        return out


class ExampleTable(Sequence):
    """The examples of a dataset as columns: per id field a flat int32 array and offsets, per
    metadata field one array (None stored as NaN), the file names once. Indexing builds the
    `PairExample` / `UnpairedExample` on demand, so the table reads as a list of examples while
    holding 4 bytes a token and no Python object per example."""

    def __init__(self, kind: str, arrays: dict[str, np.ndarray], files: Sequence[str]):
        self.kind, self.arrays, self.files = kind, arrays, list(files)
        self.fields = ID_FIELDS[kind]
        self._n = len(arrays["index"])

    @classmethod
    def from_examples(cls, kind: str, examples: Iterable) -> ExampleTable:
        examples = list(examples)
        ids = IdColumns(ID_FIELDS[kind])
        for e in examples:
            ids.append([getattr(e, f) for f in ids.fields])
        files = sorted({e.file for e in examples})
        file_id = {f: i for i, f in enumerate(files)}
        meta: dict[str, list] = {name: [] for name in META_COLUMNS + (("label",) if kind == "unpaired" else ())}
        for e in examples:
            for name in META_COLUMNS:
                value = file_id[e.file] if name == "file_id" else getattr(e, name)
                meta[name].append(_NAN if value is None else value)
            if kind == "unpaired":
                meta["label"].append(bool(e.label))
        return cls(kind, {**ids.arrays(), **columns_as_arrays(meta)}, files)

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(self._n))]
        if i < 0:
            i += self._n
        if not 0 <= i < self._n:
            raise IndexError(f"example {i} of {self._n}")
        a = self.arrays
        parts = [tuple(a[f][a[f"{f}.offsets"][i] : a[f"{f}.offsets"][i + 1]].tolist()) for f in self.fields]
        common = dict(
            weight=float(a["weight"][i]),
            group=int(a["group"][i]),
            source=int(a["source"][i]),
            target_prob=_none_if_nan(a["target_prob"][i]),
            ratio=_none_if_nan(a["ratio"][i]),
            row=int(a["row"][i]),
            file=self.files[int(a["file_id"][i])],
        )
        if self.kind == "pairs":
            return PairExample(int(a["index"][i]), *parts, **common)
        return UnpairedExample(int(a["index"][i]), *parts, label=bool(a["label"][i]), **common)

    def __iter__(self) -> Iterator:
        return (self[i] for i in range(self._n))

    def __eq__(self, other) -> bool:
        if not isinstance(other, Sequence) or len(other) != len(self):
            return False
        return all(x == y for x, y in zip(self, other))

    __hash__ = None  # type: ignore[assignment]  # unhashable, as a list (it defines __eq__)

    def lengths(self, field: str) -> np.ndarray:
        """The number of ids of `field` in each example."""
        return np.diff(self.arrays[f"{field}.offsets"])

    def ids(self, field: str, i: int) -> np.ndarray:
        offsets = self.arrays[f"{field}.offsets"]
        return self.arrays[field][offsets[i] : offsets[i + 1]]


def columns_as_arrays(meta: dict[str, list]) -> dict[str, np.ndarray]:
    """Metadata lists as typed arrays (floats may hold NaN for None)."""
    types = {
        "index": np.int64,
        "row": np.int64,
        "file_id": np.int64,
        "weight": np.float64,
        "group": np.int64,
        "source": np.int64,
        "target_prob": np.float64,
        "ratio": np.float64,
        "label": np.bool_,
    }
    return {name: np.asarray(values, dtype=types[name]) for name, values in meta.items()}


def _none_if_nan(value) -> float | None:
    value = float(value)
    return None if value != value else value


@dataclass
class PreferenceData:
    """A tokenized dataset: examples, group and source names, pad id, settings and report."""

    examples: ExampleTable | list[PairExample] | list[UnpairedExample]
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
        batch: list[Any] = [self.examples[i] for i in indices]  # all PairExample or all UnpairedExample (kind)
        collate = collate_pairs if self.kind == "pairs" else collate_unpaired
        return collate(batch, self.pad_token_id)

    def lengths(self) -> list[int]:
        """Longest sequence of each example (prompt + its longest completion), for batching."""
        if isinstance(self.examples, ExampleTable):
            t = self.examples
            longest = np.maximum.reduce([t.lengths(f) for f in t.fields[1:]])
            return (t.lengths("prompt_ids") + longest).tolist()
        examples: list[Any] = self.examples  # all PairExample or all UnpairedExample (kind)
        if self.kind == "pairs":
            return [len(e.prompt_ids) + max(len(e.chosen_ids), len(e.rejected_ids)) for e in examples]
        return [len(e.prompt_ids) + len(e.completion_ids) for e in examples]

    def fingerprint(self) -> str:
        """sha256 over the settings and every example's index and token ids (and label).

        Stable across calls and processes; changes with any token or tokenization setting.
        """
        digest = hashlib.sha256()
        header = {"kind": self.kind, "pad_token_id": self.pad_token_id, **self.settings}
        digest.update(json.dumps(header, sort_keys=True).encode())
        if isinstance(self.examples, ExampleTable):  # the same bytes, read from the columns
            t = self.examples
            lengths = [t.lengths(f) for f in t.fields]
            labels = t.arrays.get("label")
            for i in range(len(t)):
                n = [int(x[i]) for x in lengths] + ([] if labels is None else [1])
                digest.update(np.asarray([t.arrays["index"][i], *n], dtype=np.int64).tobytes())
                for f in t.fields:
                    digest.update(t.ids(f, i).astype(np.int64).tobytes())
                if labels is not None:
                    digest.update(np.asarray([int(labels[i])], dtype=np.int64).tobytes())
            return digest.hexdigest()
        examples: list[Any] = self.examples  # all PairExample or all UnpairedExample (kind)
        for e in examples:
            parts = (
                (e.prompt_ids, e.chosen_ids, e.rejected_ids)
                if self.kind == "pairs"
                else (e.prompt_ids, e.completion_ids, (int(e.label),))
            )
            digest.update(np.asarray([e.index, *map(len, parts)], dtype=np.int64).tobytes())
            for ids in parts:
                digest.update(np.asarray(ids, dtype=np.int64).tobytes())
        return digest.hexdigest()
