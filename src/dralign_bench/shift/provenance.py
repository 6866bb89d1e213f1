"""Where a shift-world result came from: the code's git commit and whether its tree was dirty,
the package versions, the cores, the start and end times; and the check that refuses to merge
parts made by different code or options (one line naming the difference).

A result is only evidence if the code that made it can be checked out again: parts of one
report must share the commit and the dirty state (with the same uncommitted diff), and nothing
is ever edited by hand to make them agree.
"""

from __future__ import annotations

import hashlib
import os
import platform
import subprocess
import time
from datetime import datetime, timezone
from pathlib import Path

from dralign.errors import BadInputError

__all__ = ["MERGE_FREE_OPTIONS", "check_parts", "finish", "git_state", "start", "versions"]

#: Options a part may differ in: which scenarios, where it wrote, how it ran, its notes.
MERGE_FREE_OPTIONS = ("scenarios", "output_dir", "cache_dir", "jobs", "note", "unshown_runs")


def _git(root: Path, *args: str) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout if out.returncode == 0 else None


def git_state(path: Path | None = None) -> dict:
    """{commit, dirty, diff_sha256} of the checkout holding `path` (default: this package's
    source). dirty: tracked files changed, or untracked files under src/ (code that runs);
    diff_sha256 tells two dirty trees apart. All None outside a git checkout (an installed wheel)."""
    root = _git(Path(path or __file__).resolve().parent, "rev-parse", "--show-toplevel")
    if root is None:
        return {"commit": None, "dirty": None, "diff_sha256": None}
    top = Path(root.strip())
    changed = (_git(top, "status", "--porcelain", "--untracked-files=no") or "") + (
        _git(top, "status", "--porcelain", "--untracked-files=all", "--", "src") or ""
    )
    diff = (_git(top, "diff", "HEAD") or "") + changed
    dirty = bool(changed.strip())
    return {
        "commit": (_git(top, "rev-parse", "HEAD") or "").strip() or None,
        "dirty": dirty,
        "diff_sha256": hashlib.sha256(diff.encode()).hexdigest() if dirty else None,
    }


def versions() -> dict:
    """python, torch, transformers, numpy and dralign versions (None where not installed)."""
    import importlib

    import dralign

    out = {"python": platform.python_version(), "dralign": dralign.__version__}
    for name in ("torch", "transformers", "numpy"):
        try:
            out[name] = importlib.import_module(name).__version__
        except ImportError:
            out[name] = None
    return out


def _utc() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def start() -> dict:
    """The provenance record at the start of a run (``finish`` completes it)."""
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        **git_state(),
        "versions": versions(),
        "cores": {"logical": os.cpu_count(), "usable": usable},
        "started": _utc(),
        "finished": None,
        "wall_seconds": None,
        "_t0": time.perf_counter(),
    }


def finish(prov: dict) -> dict:
    """A copy of `prov` with its end time and wall seconds (the monotonic clock)."""
    out = {k: v for k, v in prov.items() if k != "_t0"}
    out["finished"] = _utc()
    if "_t0" in prov:
        out["wall_seconds"] = time.perf_counter() - prov["_t0"]
    return out


def _name(part: dict, k: int) -> str:
    return f"part {k + 1} ({', '.join(part['options'].get('scenarios') or ['all'])})"


def check_parts(parts: list[dict]) -> None:
    """Refuse parts that cannot form one report: no provenance, another commit, another dirty
    state or diff, another world LM, or an option that differs (BadInputError, one line)."""
    for k, p in enumerate(parts):
        if not p.get("provenance"):
            raise BadInputError(
                f"cannot merge: {_name(p, k)} records no provenance (made before provenance was recorded); run it again"
            )
    base, b0 = parts[0], _name(parts[0], 0)
    for k, p in enumerate(parts[1:], start=1):
        for key in ("commit", "dirty", "diff_sha256"):
            if p["provenance"].get(key) != base["provenance"].get(key):
                raise BadInputError(
                    f"cannot merge: {_name(p, k)} has {key} {p['provenance'].get(key)!r}, "
                    f"{b0} {base['provenance'].get(key)!r}"
                )
        if p.get("world_lm") != base.get("world_lm"):
            raise BadInputError(f"cannot merge: {_name(p, k)} used another world LM than {b0}")
        a = {o: v for o, v in base["options"].items() if o not in MERGE_FREE_OPTIONS}
        b = {o: v for o, v in p["options"].items() if o not in MERGE_FREE_OPTIONS}
        for o in sorted(set(a) | set(b)):
            if a.get(o) != b.get(o):
                raise BadInputError(f"cannot merge: option {o} is {b.get(o)!r} in {_name(p, k)}, {a.get(o)!r} in {b0}")
