"""Precomputed reference log-probs on disk, keyed by a fingerprint, and model fingerprints.

A cache lives under a directory as `reference-<hash of fingerprint>.safetensors` holding the
per-example reference chosen/rejected sums and counts (each [n], indexed by dataset example
index) and, in its metadata, the full fingerprint. The caller's fingerprint must cover
everything the values depend on: the reference model (`model_fingerprint`), the data and the
tokenisation. A cache whose fingerprint differs is never used.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from dralign.modeling.logps import PairLogps
from dralign.modeling.reference import Reference

logger = logging.getLogger(__name__)

CACHE_FORMAT = "dralign.reference_cache.v1"
_FIELDS = PairLogps._fields
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf")
_FULL_HASH_MAX_BYTES = 256 << 20
_SAMPLED_BLOCKS, _BLOCK_BYTES = 64, 1 << 20
_SAMPLED_ELEMENTS = 4096
_ABSENT = -1  # count of an example the cache has no value for


@dataclass(frozen=True)
class ReferenceCache:
    """Reference values of n examples: `chosen_sum`, `rejected_sum` [n] (float) and
    `chosen_count`, `rejected_count` [n] (int64, −1 for an example not in the cache)."""

    fingerprint: str
    chosen_sum: torch.Tensor
    rejected_sum: torch.Tensor
    chosen_count: torch.Tensor
    rejected_count: torch.Tensor

    def __len__(self) -> int:
        return self.chosen_sum.shape[0]

    @staticmethod
    def file_for(path: str | os.PathLike, fingerprint: str) -> Path:
        """The cache file for `fingerprint` under the directory `path`."""
        digest = hashlib.sha256(fingerprint.encode()).hexdigest()[:16]
        return Path(path) / f"reference-{digest}.safetensors"

    def lookup(self, index: torch.Tensor) -> PairLogps:
        """Values of the examples `index` [B] (CPU), each [B]; a missing example is an error."""
        if index.numel() and (index.min() < 0 or index.max() >= len(self)):
            raise KeyError(f"example indices outside the reference cache (0..{len(self) - 1}): "
                           f"{index[(index < 0) | (index >= len(self))].tolist()[:10]}")
        missing = index[self.chosen_count[index] == _ABSENT]
        if missing.numel():
            raise KeyError(f"examples not in the reference cache: {missing.tolist()[:10]}; "
                           "rebuild it over the whole dataset")
        return PairLogps(*(getattr(self, f)[index] for f in _FIELDS))

    @classmethod
    def from_values(cls, fingerprint: str, index: torch.Tensor,
                    values: PairLogps) -> "ReferenceCache":
        """A cache holding `values` (each [m]) for the examples `index` [m]; others absent."""
        n = int(index.max()) + 1
        columns = {}
        for field, value in zip(_FIELDS, values):
            fill = _ABSENT if field.endswith("count") else float("nan")
            columns[field] = torch.full((n,), fill, dtype=value.dtype).index_copy(0, index, value)
        return cls(fingerprint=fingerprint, **columns)

    @classmethod
    def build(cls, reference: Reference, batches: Iterable[dict[str, torch.Tensor]],
              path: str | os.PathLike, fingerprint: str, *,
              progress: bool = False) -> "ReferenceCache":
        """Score every batch with `reference`, save the cache under `path` and return it.

        Each batch is a paired batch with `index` [B]; `progress` shows a `rich` progress bar.
        """
        if progress:
            from rich.progress import track
            batches = track(batches, description="reference log-probs")
        indices, parts = [], []
        for batch in batches:
            indices.append(batch["index"].cpu())
            parts.append([t.cpu() for t in reference.logps(batch)])
        if not parts:
            raise ValueError("no batches to build the reference cache from")
        values = PairLogps(*(torch.cat(column) for column in zip(*parts)))
        cache = cls.from_values(fingerprint, torch.cat(indices), values)
        cache.save(path)
        return cache

    def save(self, path: str | os.PathLike) -> Path:
        """Write atomically (temporary file, then `os.replace`) under the directory `path`."""
        target = self.file_for(path, self.fingerprint)
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        tensors = {f: getattr(self, f).contiguous() for f in _FIELDS}
        try:
            save_file(tensors, str(temporary),
                      metadata={"format": CACHE_FORMAT, "fingerprint": self.fingerprint})
            os.replace(temporary, target)
        finally:
            temporary.unlink(missing_ok=True)
        return target

    @classmethod
    def load(cls, path: str | os.PathLike, fingerprint: str) -> "ReferenceCache | None":
        """The cache for `fingerprint` under `path`, or None when there is none or its stored
        fingerprint or format differs."""
        file = cls.file_for(path, fingerprint)
        if not file.is_file():
            return None
        with safe_open(str(file), framework="pt") as f:
            metadata = f.metadata() or {}
            if metadata.get("format") != CACHE_FORMAT or metadata.get("fingerprint") != fingerprint:
                logger.warning("ignoring reference cache %s: written for another fingerprint or "
                               "format", file)
                return None
            return cls(fingerprint=fingerprint, **{k: f.get_tensor(k) for k in _FIELDS})


def model_fingerprint(model_or_path: str | os.PathLike | torch.nn.Module) -> str:
    """A cheap hex digest identifying a model's weights and config.

    - a local folder: its `config.json` and the content hash of every weights file (sha256 of
      files up to 256 MiB; of the size and 64 evenly spaced 1 MiB blocks above that);
    - an in-memory model: its config and, per tensor of its state dict, the name, shape, dtype,
      sum and up to 4096 evenly spaced values (computed on the tensor's own device);
    - any other string (a Hub name): the name itself — pin a revision or pass a folder when the
      Hub copy may change.
    """
    if isinstance(model_or_path, torch.nn.Module):
        return _module_fingerprint(model_or_path)
    path = Path(model_or_path)
    if path.is_dir():
        return _folder_fingerprint(path)
    return hashlib.sha256(f"name:{model_or_path}".encode()).hexdigest()


def _folder_fingerprint(folder: Path) -> str:
    digest = hashlib.sha256()
    config = folder / "config.json"
    if config.is_file():
        digest.update(config.read_bytes())
    weights = sorted(p for p in folder.iterdir()
                     if p.is_file() and p.name.endswith(_WEIGHT_SUFFIXES))
    if not weights:
        raise FileNotFoundError(f"no weights files ({', '.join(_WEIGHT_SUFFIXES)}) in {folder}")
    for file in weights:
        digest.update(f"{file.name}:{_file_hash(file)}".encode())
    return digest.hexdigest()


def _file_hash(file: Path) -> str:
    """sha256 of a file's bytes; for a large file, of its size and evenly spaced blocks."""
    size = file.stat().st_size
    digest = hashlib.sha256(str(size).encode())
    with open(file, "rb") as f:
        if size <= _FULL_HASH_MAX_BYTES:
            for block in iter(lambda: f.read(_BLOCK_BYTES), b""):
                digest.update(block)
        else:
            for k in range(_SAMPLED_BLOCKS):
                f.seek((size - _BLOCK_BYTES) * k // (_SAMPLED_BLOCKS - 1))
                digest.update(f.read(_BLOCK_BYTES))
    return digest.hexdigest()


def _module_fingerprint(model: torch.nn.Module) -> str:
    digest = hashlib.sha256()
    config = getattr(model, "config", None)
    if config is not None:
        digest.update(json.dumps(config.to_dict(), sort_keys=True, default=str).encode())
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            flat = tensor.detach().reshape(-1)
            sample = flat[:: max(1, flat.numel() // _SAMPLED_ELEMENTS)].double().cpu()
            total = flat.sum(dtype=torch.float64).item()
            digest.update(f"{name}|{tuple(tensor.shape)}|{tensor.dtype}|{total:.12e}|".encode())
            digest.update(sample.numpy().tobytes())
    return digest.hexdigest()
