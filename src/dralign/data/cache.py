"""The tokenised-data cache: `PreferenceData` written once, read back on the next run.

Keyed, like the reference cache, by a fingerprint of everything the examples depend on: the
content of the source file (sha256 of its bytes; a folder: of every file in it), the tokenizer
(`tokenizer_fingerprint`), and the caller's settings (format, columns, truncation, bad-row
policy, split, held-out fraction and seed, ...). A source that is not a local file or folder (a
Hub name) is not cached: its content cannot be hashed without downloading it.

One entry is a folder ``data-<digest>/`` holding ``arrays.npz`` (the `ExampleTable`'s columns:
token ids as flat int32 arrays with offsets, the per-row metadata one array each) and ``meta.json`` (kind, pad
id, group and source names, settings, the data report with every bad row, and the full
fingerprint, compared on reading, and the sha256 of ``arrays.npz``, checked on reading). It is
written into a temporary folder and renamed, so a reader never sees half an entry; an entry
that does not read back or fails its checksum (a damaged disk, a flipped byte) is reported in
one warning line and rebuilt.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import logging
import os
import shutil
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .dataset import ExampleTable, PreferenceData
from .report import BadRow, DataReport

VERSION = 2  # bump when the stored layout or the tokenisation rules change

logger = logging.getLogger(__name__)


def source_digest(source: str | os.PathLike) -> str | None:
    """sha256 of a local file's bytes, or of a folder's files (relative names and bytes);
    None for anything else (a Hub dataset name)."""
    path = Path(source)
    if path.is_file():
        files = [(path.name, path)]
    elif path.is_dir():
        files = sorted((str(p.relative_to(path)), p) for p in path.rglob("*") if p.is_file())
    else:
        return None
    digest = hashlib.sha256()
    for name, file in files:
        digest.update(name.encode() + b"\0")
        with open(file, "rb") as fh:
            while block := fh.read(1 << 20):
                digest.update(block)
    return digest.hexdigest()


def tokenizer_fingerprint(tokenizer) -> str:
    """sha256 of what decides a tokenizer's ids: its vocabulary and merges (the fast tokenizer's
    serialised form, else the vocabulary), special tokens, chat template and class."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    state = {
        "class": type(tokenizer).__name__,
        "model": backend.to_str() if backend is not None else sorted(tokenizer.get_vocab().items()),
        "special": {k: str(v) for k, v in sorted(tokenizer.special_tokens_map.items())},
        "chat_template": getattr(tokenizer, "chat_template", None),
        "pad": tokenizer.pad_token_id,
        "eos": tokenizer.eos_token_id,
    }
    return hashlib.sha256(json.dumps(state, sort_keys=True, default=str).encode()).hexdigest()


def fingerprint(source, tokenizer, settings: dict) -> str | None:
    """The cache key of `source` tokenised by `tokenizer` with `settings` (None: not cacheable)."""
    digest = source_digest(source)
    if digest is None:
        return None
    return json.dumps(
        {"version": VERSION, "source": digest, "tokenizer": tokenizer_fingerprint(tokenizer), "settings": settings},
        sort_keys=True,
        default=str,
    )


def entry_for(cache_dir: str | os.PathLike, key: str) -> Path:
    return Path(cache_dir) / f"data-{hashlib.sha256(key.encode()).hexdigest()[:16]}"


def save(data: PreferenceData, cache_dir: str | os.PathLike, key: str) -> Path:
    """Write `data` under `cache_dir` for `key` (atomically: a temporary folder, then a rename)."""
    target = entry_for(cache_dir, key)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}."))
    try:
        table = _table(data)
        arrays: dict[str, Any] = table.arrays  # names as keywords: numpy's stub mixes them with allow_pickle
        np.savez(staging / "arrays.npz", **arrays)
        files = table.files
        report = dataclasses.asdict(data.report)
        checksum = hashlib.sha256((staging / "arrays.npz").read_bytes()).hexdigest()
        meta = {
            "key": key,
            "checksum": checksum,
            "kind": data.kind,
            "pad_token_id": data.pad_token_id,
            "group_names": data.group_names,
            "source_names": data.source_names,
            "settings": data.settings,
            "files": files,
            "report": report,
        }
        (staging / "meta.json").write_text(json.dumps(meta))
        try:
            os.replace(staging, target)
        except OSError:
            if not target.exists():
                raise
            shutil.rmtree(staging)  # a concurrent writer got there first: its entry is the same
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def load(cache_dir: str | os.PathLike, key: str) -> PreferenceData | None:
    """The cached data for `key`, or None when absent, of another key, or damaged (then with
    one warning line naming the entry: the caller rebuilds it)."""
    folder = entry_for(cache_dir, key)
    if not (folder / "meta.json").is_file():
        return None
    try:
        meta = json.loads((folder / "meta.json").read_text())
        if meta["key"] != key:
            return None
        raw = (folder / "arrays.npz").read_bytes()
        if hashlib.sha256(raw).hexdigest() != meta["checksum"]:
            raise ValueError("arrays.npz does not match its checksum")
        with np.load(io.BytesIO(raw)) as z:
            arrays = {name: z[name] for name in z.files}
        report = dict(meta["report"])
        report["bad_rows"] = [BadRow(**b) for b in report["bad_rows"]]
        return PreferenceData(
            ExampleTable(meta["kind"], arrays, meta["files"]),
            meta["kind"],
            meta["pad_token_id"],
            meta["group_names"],
            meta["source_names"],
            meta["settings"],
            DataReport(**report),
        )
    except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile) as err:  # damaged: rebuild
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        logger.warning("tokenised-data cache %s is damaged (%s); it will be rebuilt", folder, reason)
        shutil.rmtree(folder, ignore_errors=True)  # else the rebuilt entry could not take its place
        return None


def cached(
    build: Callable[[], PreferenceData],
    cache_dir: str | os.PathLike | None,
    key: str | None,
    log: Callable[[str], None] = print,
) -> PreferenceData:
    """`build()`'s data, read from the cache when `key` was cached, else built and written."""
    if cache_dir is None or key is None:
        return build()
    data = load(cache_dir, key)
    if data is not None:
        log(f"tokenised data read from {entry_for(cache_dir, key)}")
        return data
    data = build()
    try:
        save(data, cache_dir, key)
    except OSError as err:  # a cache that cannot be written costs time on the next run, nothing else
        log(f"note: the tokenised data could not be cached in {cache_dir}: {err}")
    return data


def _table(data: PreferenceData) -> ExampleTable:
    if isinstance(data.examples, ExampleTable):
        return data.examples
    return ExampleTable.from_examples(data.kind, data.examples)
