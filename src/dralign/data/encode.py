"""Texts to token ids, many at a time: `encode` gives the ids calling a tokenizer gives, as
`Ids` (one flat int32 array with each text's start and length) — through the tokenizer class's
``encode_flat(texts, add_special_tokens)`` when it has one (the byte tokenizer of `dralign
diagnose`), else the Rust backend of a transformers fast tokenizer called directly when that is
what calling it does (`backend_of`: no Python object per token but the ids), else the call."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass
class Ids:
    """The token ids of one text field over a chunk of records: one flat int32 array, and each
    text's start in it and length. A cut moves starts and lengths; `gather` copies the ids."""

    flat: np.ndarray
    starts: np.ndarray
    lengths: np.ndarray

    @classmethod
    def of(cls, flat: np.ndarray, lengths: np.ndarray) -> Ids:
        lengths = np.asarray(lengths, dtype=np.int64)
        return cls(np.asarray(flat, dtype=np.int32), np.cumsum(lengths) - lengths, lengths)

    def gather(self, rows: np.ndarray) -> np.ndarray:
        """The ids of `rows`, one after the other."""
        starts, lengths = self.starts[rows], self.lengths[rows]
        ends = np.cumsum(lengths)
        index = np.arange(int(ends[-1]) if len(ends) else 0) + np.repeat(starts - (ends - lengths), lengths)
        return self.flat[index]

    def with_eos(self, eos: int) -> Ids:
        """`eos` appended to each text not already ending with it (contiguous texts only)."""
        ends = self.starts + self.lengths
        last = self.flat[np.maximum(ends - 1, 0)] if len(self.flat) else np.full(len(ends), -1)
        missing = (self.lengths == 0) | (last != eos)
        return Ids.of(np.insert(self.flat, ends[missing], eos), self.lengths + missing)


BACKEND_METHODS = (
    "__call__",
    "_call_one",
    "encode_plus",
    "batch_encode_plus",
    "_encode_plus",
    "_batch_encode_plus",
    "_convert_encoding",
    "set_truncation_and_padding",
)


def backend_of(tokenizer) -> Any:
    """The Rust tokenizer behind `tokenizer` when encoding with it gives the ids calling
    `tokenizer` gives: a transformers fast tokenizer whose class changes none of the methods
    calling it goes through, with no truncation or padding set and special tokens treated as
    calling it would treat them. None otherwise (then the tokenizer is called)."""
    try:
        from transformers import PreTrainedTokenizerFast
    except ImportError:  # pragma: no cover - transformers is a dependency
        return None
    if not isinstance(tokenizer, PreTrainedTokenizerFast):
        return None
    cls = type(tokenizer)
    if any(getattr(cls, m, None) is not getattr(PreTrainedTokenizerFast, m, None) for m in BACKEND_METHODS):
        return None
    backend = tokenizer.backend_tokenizer
    split = bool(getattr(tokenizer, "split_special_tokens", False))
    if backend.truncation is not None or backend.padding is not None:
        return None
    if getattr(backend, "encode_special_tokens", False) != split:
        return None
    return backend


def encode(tokenizer, texts: list[str], special: bool) -> Ids:
    """The ids `tokenizer(texts, add_special_tokens=special)` gives, as `Ids`: through the
    class's ``encode_flat`` when it has one, else the Rust backend (`backend_of`), else the call."""
    if not texts:
        return Ids.of(np.zeros(0, np.int32), np.zeros(0, np.int64))
    encode_flat = getattr(type(tokenizer), "encode_flat", None)  # the type's: not a wrapper's
    if encode_flat is not None:
        return Ids.of(*encode_flat(tokenizer, texts, add_special_tokens=special))
    backend = backend_of(tokenizer)
    if backend is not None:
        ids = [e.ids for e in backend.encode_batch(texts, add_special_tokens=special)]
    else:
        ids = tokenizer(texts, add_special_tokens=special)["input_ids"]
    lengths = np.fromiter(map(len, ids), np.int64, len(ids))
    return Ids.of(np.fromiter(itertools.chain.from_iterable(ids), np.int32, int(lengths.sum())), lengths)
