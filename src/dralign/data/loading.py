"""Reading raw rows, each with its provenance, from files, saved datasets or the Hub.

Supported sources (`load_rows`):

- ``.jsonl``: one JSON object per line (lines end at ``\n``, ``\r\n`` or ``\r``). Blank lines
  are ignored (they are not rows); the row index counts the non-blank lines from 0 and ``line``
  is the 1-based physical line. Each line is decoded on its own: a line that is not valid UTF-8,
  not valid JSON, or not a JSON object becomes a row with ``error`` set (a bad row later,
  skippable), never a crash.
- ``.json``: a list of objects, or an object whose ``"data"`` or ``"rows"`` key holds that list.
- ``.parquet`` and ``.csv`` (CSV through pyarrow: empty cells of numeric columns are missing
  values, empty cells of text columns are empty strings).
- each of the above compressed as ``.gz`` (e.g. ``train.jsonl.gz``).

A file that cannot be read as a whole (truncated or not-gzip ``.gz``, a ``.json`` or ``.csv``
that is not UTF-8 or does not parse, an unreadable Parquet file) raises `DataError` naming the
file and, where known, the byte offset and line; no row of it is used. A UTF-8 byte-order mark
at the start of a file is ignored.
- a folder written by ``datasets.Dataset.save_to_disk`` or ``DatasetDict.save_to_disk``
  (``split`` picks the split of a DatasetDict).
- anything else that is not an existing path: a Hub dataset name, loaded with
  ``datasets.load_dataset(name, subset, split=split)`` (the only case that uses the network).
"""

from __future__ import annotations

import gzip
import io
import json
import math
import os
import zlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .report import INVALID_JSON, INVALID_UTF8, NOT_AN_OBJECT, DataError

FILE_SUFFIXES = (".jsonl", ".json", ".parquet", ".csv")
UTF8_BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True)
class Row:
    """One raw row and where it came from.

    ``index`` is the 0-based row index in ``file``; ``line`` the 1-based line number (JSONL
    only). When the row could not be parsed, ``data`` is None and ``error`` / ``error_reason``
    say why (reason ``invalid_utf8``, ``invalid_json`` or ``not_an_object``).
    """

    data: Mapping[str, Any] | None
    file: str
    index: int
    line: int | None = None
    error: str | None = None
    error_reason: str | None = None


def progress_bar(description: str, total: int | None, enabled: bool = True, bytes: bool = False):
    """Progress of a long phase (loading, tokenising, ...); yields advance(n): a transient bar on
    a terminal, plain lines in a log (:func:`dralign.console.phase_progress`).

    Shown only when `enabled` (the caller decides: --no-progress, the main process, a phase
    long enough to be worth it)."""
    from ..console import phase_progress

    return phase_progress(description, total, enabled=enabled, bytes=bytes, unit="rows")


def rows_from_records(records: Iterable[Any], file: str = "<memory>") -> list[Row]:
    """Wrap in-memory dicts as rows of a pseudo-file named `file` (non-dicts: unreadable rows)."""
    return [_row(record, file, i) for i, record in enumerate(records)]


def load_rows(
    source: str | os.PathLike, *, subset: str | None = None, split: str = "train", progress: bool = False
) -> list[Row]:
    """Read every row of `source` (a file, a saved dataset folder or a Hub dataset name).

    See the module docstring for the formats. Raises DataError when the source as a whole
    cannot be read (missing file, unknown suffix, malformed ``.json``, missing split) or holds
    no row.
    `progress`: a bar over the bytes of a JSONL file above PROGRESS_BYTES.
    """
    path = Path(source)
    if path.is_dir():
        rows = _load_saved_dataset(path, split)
    elif path.is_file():
        rows = _load_file(path, progress)
    elif _looks_like_path(str(source)):
        raise DataError(f"data file not found: {source}")
    else:
        rows = _load_hub(str(source), subset, split)
    if not rows:  # named here: further on, with no row, nothing knows the file
        raise DataError(f"{source}: no rows (an empty file, list or split)")
    return rows


def _looks_like_path(source: str) -> bool:
    """A Hub name is ``name`` or ``owner/name``; anything with a data suffix or an explicit
    relative/absolute start is meant as a local path."""
    name = source[:-3] if source.endswith(".gz") else source
    return name.endswith(FILE_SUFFIXES) or source.startswith((".", "/", "~"))


def _file_kind(path: Path) -> tuple[str, bool]:
    """(suffix among FILE_SUFFIXES, gzipped?) or DataError for an unsupported name."""
    name = path.name.lower()
    compressed = name.endswith(".gz")
    if compressed:
        name = name[:-3]
    for suffix in FILE_SUFFIXES:
        if name.endswith(suffix):
            return suffix, compressed
    raise DataError(
        f"{path}: unsupported file type; expected one of "
        f"{', '.join(FILE_SUFFIXES)} (optionally .gz), a save_to_disk folder, "
        f"or a Hub dataset name"
    )


def _load_file(path: Path, progress: bool = False) -> list[Row]:
    suffix, compressed = _file_kind(path)
    file = str(path)
    if suffix == ".jsonl":  # streamed: never the whole file and its list of lines at once
        size = path.stat().st_size
        with progress_bar(f"reading {path.name}", size, progress and size > PROGRESS_BYTES, bytes=True) as advance:
            return _parse_jsonl(_lines(path, compressed, advance), file)
    raw = _decompress(path.read_bytes(), file) if compressed else path.read_bytes()
    if suffix != ".parquet" and raw.startswith(UTF8_BOM):  # some editors write one
        raw = raw[len(UTF8_BOM) :]
    if suffix == ".json":
        return _parse_json(raw, file, compressed)
    if suffix == ".parquet":
        return _parse_parquet(raw, file)
    return _parse_csv(raw, file, compressed)


def _decompress(raw: bytes, file: str) -> bytes:
    """gunzip `raw`, or DataError naming `file` when it is not complete, valid gzip data."""
    try:
        return gzip.decompress(raw)
    except EOFError as err:
        raise DataError(
            f"{file}: the gzip data is truncated ({err}); the file is incomplete, download or compress it again"
        ) from None
    except (OSError, zlib.error) as err:  # BadGzipFile (not gzip, CRC) is an OSError
        raise DataError(
            f"{file}: cannot decompress: {err} (a .gz name needs gzip data; rename the file if it is not compressed)"
        ) from None


def _decode(raw: bytes, file: str, compressed: bool) -> str:
    """`raw` as UTF-8 text, or DataError naming the first bad byte, its offset and line."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw.count(b"\n", 0, err.start) + 1
        where = " of the decompressed data" if compressed else ""
        raise DataError(
            f"{file}: not valid UTF-8: byte 0x{raw[err.start]:02x} at byte offset "
            f"{err.start}{where} (line {line}); save the file as UTF-8"
        ) from None


def _parse_parquet(raw: bytes, file: str) -> list[Row]:
    import pyarrow.parquet as pq

    try:
        records = pq.read_table(io.BytesIO(raw)).to_pylist()
    except Exception as err:  # ArrowInvalid, OSError, ...: the file as a whole is unreadable
        raise DataError(f"{file}: cannot read Parquet: {err}") from None
    return rows_from_records(records, file)


def _parse_csv(raw: bytes, file: str, compressed: bool) -> list[Row]:
    import pyarrow.csv as pcsv

    # pyarrow would read a column with a non-UTF-8 byte as binary: every cell would be bytes.
    _decode(raw, file, compressed)
    try:
        table = pcsv.read_csv(io.BytesIO(raw))
    except Exception as err:  # pyarrow raises ArrowInvalid with the offending line
        raise DataError(f"{file}: cannot parse CSV: {err}") from err
    return [_row(_nan_to_none(r), file, i) for i, r in enumerate(table.to_pylist())]


def _row(record: Any, file: str, index: int, line: int | None = None) -> Row:
    if not isinstance(record, Mapping):
        return Row(
            None,
            file,
            index,
            line,
            error=f"row is not an object (got {type(record).__name__})",
            error_reason=NOT_AN_OBJECT,
        )
    return Row(dict(record), file, index, line)


def _nan_to_none(record: dict) -> dict:
    """CSV has no other way to write a missing number than an empty (NaN) cell."""
    return {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in record.items()}


BLOCK = 1 << 20  # bytes read at a time from a JSONL file
PROGRESS_BYTES = 16 << 20  # a file this large is read with a progress bar (when asked)


def _lines(path: Path, compressed: bool, advance=lambda n: None) -> Iterator[bytes]:
    """The lines of a (gzipped) file as `bytes.splitlines` splits them (at ``\n``, ``\r\n``
    or ``\r``), read a block at a time; the UTF-8 byte-order mark at its start dropped.
    DataError naming the file when the gzip data is truncated or not gzip."""
    file = str(path)
    try:
        with open(path, "rb") as raw, gzip.open(raw) if compressed else raw as fh:
            carry = fh.read(len(UTF8_BOM))
            if carry == UTF8_BOM:  # some editors write one
                carry = b""
            done = 0
            while block := fh.read(BLOCK):
                advance(raw.tell() - done)  # progress in bytes of the file as stored
                done = raw.tell()
                pieces = (carry + block).splitlines(keepends=True)
                # the last piece may continue in the next block (no line end yet, or a "\r"
                # whose "\n" is still to come)
                carry = pieces.pop() if pieces else b""
                for piece in pieces:
                    yield piece.rstrip(b"\r\n")
                if carry.endswith(b"\n"):
                    yield carry.rstrip(b"\r\n")
                    carry = b""
            if carry:
                yield carry.rstrip(b"\r\n")
    except EOFError as err:
        raise DataError(
            f"{file}: the gzip data is truncated ({err}); the file is incomplete, download or compress it again"
        ) from None
    except (OSError, zlib.error) as err:  # BadGzipFile (not gzip, CRC) is an OSError
        if not compressed:
            raise
        raise DataError(
            f"{file}: cannot decompress: {err} (a .gz name needs gzip data; rename the file if it is not compressed)"
        ) from None


def _parse_jsonl(lines: Iterable[bytes], file: str) -> list[Row]:
    rows: list[Row] = []
    for line_no, line_bytes in enumerate(lines, start=1):
        if not line_bytes.strip():
            continue
        index = len(rows)
        try:
            line = line_bytes.decode("utf-8")
        except UnicodeDecodeError as err:  # one bad line is one bad row, not a bad file
            rows.append(
                Row(
                    None,
                    file,
                    index,
                    line_no,
                    error=f"not valid UTF-8: byte 0x{line_bytes[err.start]:02x} at byte {err.start + 1} of the line",
                    error_reason=INVALID_UTF8,
                )
            )
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            rows.append(
                Row(
                    None,
                    file,
                    index,
                    line_no,
                    error=f"invalid JSON: {err.msg} (column {err.colno})",
                    error_reason=INVALID_JSON,
                )
            )
            continue
        except (ValueError, RecursionError) as err:  # e.g. a 5000-digit integer, 10^5 nested [
            rows.append(
                Row(None, file, index, line_no, error=f"invalid JSON: {_first_line(err)}", error_reason=INVALID_JSON)
            )
            continue
        rows.append(_row(record, file, index, line_no))
    return rows


def _first_line(err: BaseException) -> str:
    return str(err).splitlines()[0] if str(err) else type(err).__name__


def _parse_json(raw: bytes, file: str, compressed: bool = False) -> list[Row]:
    text = _decode(raw, file, compressed)
    try:
        content = json.loads(text)
    except json.JSONDecodeError as err:
        raise DataError(f"{file}: invalid JSON at line {err.lineno}, column {err.colno}: {err.msg}") from err
    except (ValueError, RecursionError) as err:
        raise DataError(f"{file}: invalid JSON: {_first_line(err)}") from None
    if isinstance(content, dict):
        key = next((k for k in ("data", "rows") if isinstance(content.get(k), list)), None)
        if key is None:
            raise DataError(
                f"{file}: a .json file must hold a list of rows or an object with "
                f"a 'data' or 'rows' list; found keys {sorted(content)[:10]}"
            )
        content = content[key]
    if not isinstance(content, list):
        raise DataError(f"{file}: a .json file must hold a list of rows, got {type(content).__name__}")
    return rows_from_records(content, file)


def _load_saved_dataset(path: Path, split: str) -> list[Row]:
    if not ((path / "dataset_dict.json").exists() or (path / "state.json").exists()):
        raise DataError(
            f"{path}: a folder must be written by datasets' save_to_disk (no dataset_dict.json or state.json in it)"
        )
    import datasets

    try:
        loaded = datasets.load_from_disk(str(path))
    except Exception as err:  # a damaged folder: missing or corrupt Arrow files
        raise DataError(f"{path}: cannot read the saved dataset: {type(err).__name__}: {_first_line(err)}") from None
    file = str(path)
    if isinstance(loaded, datasets.DatasetDict):
        if split not in loaded:
            raise DataError(f"{path}: no split {split!r}; available: {', '.join(loaded)}")
        loaded, file = loaded[split], f"{path}[{split}]"
    return rows_from_records(loaded, file)


def _load_hub(name: str, subset: str | None, split: str) -> list[Row]:
    import datasets

    try:
        loaded = datasets.load_dataset(name, subset, split=split)
    except Exception as err:
        raise DataError(
            f"{name!r} is neither an existing file or folder nor a loadable Hub dataset ({type(err).__name__}: {err})"
        ) from err
    file = name + (f"/{subset}" if subset else "") + f"[{split}]"
    return rows_from_records(loaded, file)
