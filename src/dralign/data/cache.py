"""The tokenised-data cache: `PreferenceData` written once, read back on the next run.

Keyed, like the reference cache, by a fingerprint of everything the examples depend on: the
content of the source file (sha256 of its bytes; a folder: of every file in it), the tokenizer
(`tokenizer_fingerprint`), and the caller's settings (format, columns, truncation, bad-row
policy, split, held-out fraction and seed, ...). A source that is not a local file or folder (a
Hub name) is not cached: its content cannot be hashed without downloading it.

One entry is a folder ``data-<digest>/`` holding ``arrays.npz`` (every example's token ids as one
flat int32 array with offsets, and its per-row metadata as columns) and ``meta.json`` (kind, pad
id, group and source names, settings, the data report with every bad row, and the full
fingerprint, compared on reading). It is written into a temporary folder and renamed, so a
reader never sees half an entry; an entry that does not read back is ignored and rebuilt.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np

from .dataset import PreferenceData
from .examples import PairExample, UnpairedExample
from .report import BadRow, DataReport

VERSION = 1  # bump when the stored layout or the tokenisation rules change
_ID_FIELDS = {"pairs": ("prompt_ids", "chosen_ids", "rejected_ids"),
              "unpaired": ("prompt_ids", "completion_ids")}


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
    state = {"class": type(tokenizer).__name__,
             "model": backend.to_str() if backend is not None else sorted(tokenizer.get_vocab().items()),
             "special": {k: str(v) for k, v in sorted(tokenizer.special_tokens_map.items())},
             "chat_template": getattr(tokenizer, "chat_template", None),
             "pad": tokenizer.pad_token_id, "eos": tokenizer.eos_token_id}
    return hashlib.sha256(json.dumps(state, sort_keys=True, default=str).encode()).hexdigest()


def fingerprint(source, tokenizer, settings: dict) -> str | None:
    """The cache key of `source` tokenised by `tokenizer` with `settings` (None: not cacheable)."""
    digest = source_digest(source)
    if digest is None:
        return None
    return json.dumps({"version": VERSION, "source": digest,
                       "tokenizer": tokenizer_fingerprint(tokenizer), "settings": settings},
                      sort_keys=True, default=str)


def entry_for(cache_dir: str | os.PathLike, key: str) -> Path:
    return Path(cache_dir) / f"data-{hashlib.sha256(key.encode()).hexdigest()[:16]}"


def save(data: PreferenceData, cache_dir: str | os.PathLike, key: str) -> Path:
    """Write `data` under `cache_dir` for `key` (atomically: a temporary folder, then a rename)."""
    target = entry_for(cache_dir, key)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}."))
    try:
        arrays, files = _columns(data)
        np.savez(staging / "arrays.npz", **arrays)
        report = dataclasses.asdict(data.report)
        meta = {"key": key, "kind": data.kind, "pad_token_id": data.pad_token_id,
                "group_names": data.group_names, "source_names": data.source_names,
                "settings": data.settings, "files": files, "report": report}
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
    """The cached data for `key`, or None when absent, of another key, or unreadable."""
    folder = entry_for(cache_dir, key)
    try:
        meta = json.loads((folder / "meta.json").read_text())
        if meta["key"] != key:
            return None
        with np.load(folder / "arrays.npz") as z:
            arrays = {name: z[name] for name in z.files}
        return _rebuild(meta, arrays)
    except (OSError, ValueError, KeyError, TypeError):  # absent, partial or damaged: rebuild it
        return None


def cached(build: Callable[[], PreferenceData], cache_dir: str | os.PathLike | None,
           key: str | None, log: Callable[[str], None] = print) -> PreferenceData:
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


def _columns(data: PreferenceData) -> tuple[dict[str, np.ndarray], list[str]]:
    """Every example as columns: token ids flat with offsets, metadata one value per example."""
    examples, arrays = data.examples, {}
    for name in _ID_FIELDS[data.kind]:
        seqs = [getattr(e, name) for e in examples]
        lengths = np.fromiter((len(s) for s in seqs), dtype=np.int64, count=len(seqs))
        arrays[f"{name}.offsets"] = np.concatenate([[0], np.cumsum(lengths)])
        arrays[name] = np.fromiter((t for s in seqs for t in s), dtype=np.int64,
                                   count=int(lengths.sum()))
    files = sorted({e.file for e in examples})
    file_id = {f: i for i, f in enumerate(files)}

    def column(get, dtype):
        return np.fromiter((get(e) for e in examples), dtype=dtype, count=len(examples))

    nan = float("nan")
    arrays.update(index=column(lambda e: e.index, np.int64), row=column(lambda e: e.row, np.int64),
                  file_id=column(lambda e: file_id[e.file], np.int64),
                  weight=column(lambda e: e.weight, np.float64),
                  group=column(lambda e: e.group, np.int64), source=column(lambda e: e.source, np.int64),
                  target_prob=column(lambda e: nan if e.target_prob is None else e.target_prob, np.float64),
                  ratio=column(lambda e: nan if e.ratio is None else e.ratio, np.float64))
    if data.kind == "unpaired":
        arrays["label"] = column(lambda e: e.label, np.bool_)
    return arrays, files


def _rebuild(meta: dict, arrays: dict[str, np.ndarray]) -> PreferenceData:
    kind, files = meta["kind"], meta["files"]
    ids = {}
    for name in _ID_FIELDS[kind]:
        flat, offsets = arrays[name].tolist(), arrays[f"{name}.offsets"].tolist()
        ids[name] = [tuple(flat[a:b]) for a, b in zip(offsets[:-1], offsets[1:])]
    columns = {k: arrays[k].tolist() for k in ("index", "row", "file_id", "weight", "group",
                                               "source", "target_prob", "ratio")}
    examples = []
    for i in range(len(columns["index"])):
        common = dict(weight=columns["weight"][i], group=columns["group"][i],
                      source=columns["source"][i], target_prob=_none_if_nan(columns["target_prob"][i]),
                      ratio=_none_if_nan(columns["ratio"][i]), row=columns["row"][i],
                      file=files[columns["file_id"][i]])
        parts = [ids[name][i] for name in _ID_FIELDS[kind]]
        if kind == "pairs":
            examples.append(PairExample(columns["index"][i], *parts, **common))
        else:
            examples.append(UnpairedExample(columns["index"][i], *parts,
                                            label=bool(arrays["label"][i]), **common))
    report = dict(meta["report"])
    report["bad_rows"] = [BadRow(**b) for b in report["bad_rows"]]
    return PreferenceData(examples, kind, meta["pad_token_id"], meta["group_names"],
                          meta["source_names"], meta["settings"], DataReport(**report))


def _none_if_nan(value: float) -> float | None:
    return None if value != value else value
