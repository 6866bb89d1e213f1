"""Precomputed reference log-probs on disk, keyed by a fingerprint and verified by a checksum;
the one cache builder; the cached reference; model fingerprints.

A cache lives under a directory as `reference-<hash of fingerprint>.safetensors` holding the
per-example reference chosen/rejected sums and counts (each [n], indexed by dataset example
index) and, in its metadata, the full fingerprint and a sha256 of the values. The caller's
fingerprint must cover everything the values depend on: the reference model
(`model_fingerprint`), the data and the tokenisation. A cache whose fingerprint differs is
never used; one that cannot be read or whose values fail the checksum (a truncated or altered
file) is reported in one line and not used, so the caller rebuilds it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Sized
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from dralign.modeling.logps import PairLogps
from dralign.modeling.reference import Reference, model_logps
from dralign.modeling.scoring import score_rows

logger = logging.getLogger(__name__)

CACHE_FORMAT = "dralign.reference_cache.v2"  # v2: values carry a sha256 checksum
_FIELDS = PairLogps._fields
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf")
_FULL_HASH_MAX_BYTES = 256 << 20
_SAMPLED_BLOCKS, _BLOCK_BYTES = 64, 1 << 20
_SAMPLED_ELEMENTS = 4096
_ABSENT = -1  # count of an example the cache has no value for


def _checksum(columns: dict[str, torch.Tensor]) -> str:
    """sha256 over each column's name, dtype, shape and bytes, in `_FIELDS` order."""
    digest = hashlib.sha256()
    for name in _FIELDS:
        t = columns[name].detach().cpu().contiguous()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        digest.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


@dataclass(frozen=True)
class ReferenceCache:
    """Reference values of n examples: `chosen_sum`, `rejected_sum` [n] (float) and
    `chosen_count`, `rejected_count` [n] (int64, −1 for an example not in the cache). For
    unpaired data the chosen slots hold each completion's values."""

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
            raise KeyError(
                f"example indices outside the reference cache (0..{len(self) - 1}): "
                f"{index[(index < 0) | (index >= len(self))].tolist()[:10]}"
            )
        missing = index[self.chosen_count[index] == _ABSENT]
        if missing.numel():
            raise KeyError(
                f"examples not in the reference cache: {missing.tolist()[:10]}; rebuild it over the whole dataset"
            )
        return PairLogps(*(getattr(self, f)[index] for f in _FIELDS))

    @classmethod
    def from_values(cls, fingerprint: str, index: torch.Tensor, values: PairLogps) -> ReferenceCache:
        """A cache holding `values` (each [m]) for the examples `index` [m]; others absent."""
        n = int(index.max()) + 1
        columns = {}
        for field, value in zip(_FIELDS, values):
            fill = _ABSENT if field.endswith("count") else float("nan")
            columns[field] = torch.full((n,), fill, dtype=value.dtype).index_copy(0, index, value)
        return cls(fingerprint=fingerprint, **columns)

    def save(self, path: str | os.PathLike) -> Path:
        """Write atomically (temporary file, then `os.replace`) under the directory `path`."""
        target = self.file_for(path, self.fingerprint)
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        tensors = {f: getattr(self, f).contiguous() for f in _FIELDS}
        metadata = {"format": CACHE_FORMAT, "fingerprint": self.fingerprint, "checksum": _checksum(tensors)}
        try:
            save_file(tensors, str(temporary), metadata=metadata)
            os.replace(temporary, target)
        finally:
            temporary.unlink(missing_ok=True)
        return target

    @classmethod
    def load(cls, path: str | os.PathLike, fingerprint: str) -> ReferenceCache | None:
        """The cache for `fingerprint` under `path`, or None when there is none, when its stored
        fingerprint or format differs, or when it fails verification (unreadable, truncated, or
        values that do not match their checksum); each refusal is logged in one line."""
        file = cls.file_for(path, fingerprint)
        if not file.is_file():
            return None
        try:
            with safe_open(str(file), framework="pt") as f:
                metadata = f.metadata() or {}
                if metadata.get("format") != CACHE_FORMAT or metadata.get("fingerprint") != fingerprint:
                    logger.warning(
                        "ignoring reference cache %s: written for another fingerprint or format; it will be rebuilt",
                        file,
                    )
                    return None
                columns = {k: f.get_tensor(k) for k in _FIELDS}
        except (SafetensorError, OSError, ValueError, RuntimeError) as err:
            logger.warning(
                "reference cache %s is unreadable (%s); it will be rebuilt",
                file,
                str(err).splitlines()[0] if str(err) else type(err).__name__,
            )
            return None
        if _checksum(columns) != metadata.get("checksum"):
            logger.warning(
                "reference cache %s failed verification (its values do not match their checksum); it will be rebuilt",
                file,
            )
            return None
        return cls(fingerprint=fingerprint, **columns)


def build_reference_cache(
    model: torch.nn.Module,
    data: Sized,
    collate: Callable[[Any, list[int]], dict],
    path: str | os.PathLike,
    fingerprint: str,
    *,
    batch_size: int,
    device=None,
    log=print,
    progress: bool = False,
) -> ReferenceCache:
    """Score every example of `data` with `model` (eval mode, no grad), save the cache
    atomically under `path` and return it: the one builder of reference caches.

    `collate(data, indices)` builds a batch holding `index` [B] (paired, either layout; or
    unpaired with `label`, whose values go to the chosen slots). `device`: where batches go
    (default the model's). Values are stored in float32.
    """
    log(f"computing reference log-probs for {len(data)} examples -> {path}")

    def score(batch: dict) -> dict:
        if "label" in batch:  # unpaired: every completion's own values, in the chosen slots
            values = model_logps(model, {**batch, "label": torch.ones_like(batch["label"], dtype=torch.bool)})
            values = PairLogps(
                values.chosen_sum,
                torch.zeros_like(values.chosen_sum),
                values.chosen_count,
                torch.zeros_like(values.chosen_count),
            )
        else:
            values = model_logps(model, batch)
        return {
            "index": batch["index"],
            **{k: t.float() if t.is_floating_point() else t for k, t in values._asdict().items()},
        }

    device = device if device is not None else next(model.parameters()).device
    scored = score_rows(
        len(data),
        lambda indices: collate(data, indices),
        score,
        batch_size=batch_size,
        model=model,
        device=device,
        progress=progress,
        description="reference log-probs",
    )
    if not scored:
        raise ValueError("no examples to build the reference cache from")
    index = scored.pop("index")
    values = PairLogps(**scored)
    cache = ReferenceCache.from_values(fingerprint, index, values)
    cache.save(path)
    return cache


class CachedReference(Reference):
    """Precomputed reference values read by `batch["index"]`; never touches a model. For an
    unpaired batch (with `label`), the values split by label like the policy's."""

    def __init__(self, cache: ReferenceCache):
        self.cache = cache

    def logps(self, batch: dict[str, torch.Tensor]) -> PairLogps:
        index = batch["index"]
        values = self.cache.lookup(index.cpu())
        if "label" in batch:
            label = batch["label"].cpu().bool()
            values = PairLogps(
                values.chosen_sum[label],
                values.chosen_sum[~label],
                values.chosen_count[label],
                values.chosen_count[~label],
            )
        return PairLogps(*(t.to(index.device) for t in values))


def model_fingerprint(model_or_path: str | os.PathLike | torch.nn.Module) -> str:
    """A cheap hex digest identifying a model's weights and config.

    - a local folder: its `config.json` and the content hash of every weights file (sha256 of
      files up to 256 MiB; of the size and 64 evenly spaced 1 MiB blocks above that);
    - an in-memory model: its config and, per tensor of its state dict, the name, shape, dtype,
      sum and up to 4096 evenly spaced values (computed on the tensor's own device);
    - a local file (a GGUF checkpoint): its name and content hash, as a weights file above;
    - any other string (a Hub name): the name itself — pin a revision or pass a folder when the
      Hub copy may change.
    """
    if isinstance(model_or_path, torch.nn.Module):
        return _module_fingerprint(model_or_path)
    path = Path(model_or_path)
    if path.is_dir():
        return _folder_fingerprint(path)
    if path.is_file():  # a single-file checkpoint (a .gguf): its content
        return hashlib.sha256(f"file:{path.name}:{_file_hash(path)}".encode()).hexdigest()
    return hashlib.sha256(f"name:{model_or_path}".encode()).hexdigest()


def _folder_fingerprint(folder: Path) -> str:
    digest = hashlib.sha256()
    config = folder / "config.json"
    if config.is_file():
        digest.update(config.read_bytes())
    weights = sorted(p for p in folder.iterdir() if p.is_file() and p.name.endswith(_WEIGHT_SUFFIXES))
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
