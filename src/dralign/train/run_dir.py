"""An output folder belongs to one run.

`run.json` marks a folder as a dralign run (its method, model, data, seed and status). A new
run into a folder that holds another run is refused unless it continues it (`--resume`, with a
compatible configuration) or replaces it (`--overwrite`); a lock file keeps two runs from
writing one folder at once. The reference cache (`ref_cache/`) is keyed by fingerprints, not
by run, and survives `--overwrite`.
"""

from __future__ import annotations

from ..errors import BadRunFolderError
import errno
import fcntl
import json
import os
import shutil
from pathlib import Path

from ..config import atomic_write_text, to_flat_dict

MARKER, LOCK = "run.json", ".dralign.lock"
KEEP_ON_OVERWRITE = {"ref_cache", "ratios", LOCK}  # keyed by content, not by run
# what may change between a run and its --resume: when to stop, how to log and save
RESUMABLE_CHANGES = {"max_steps", "epochs", "log_every", "eval_every", "save_every", "resume", "overwrite",
                     "report_to", "progress", "max_bad_steps", "ref_cache", "ref_cache_dir", "output_dir"}


class RunFolderError(BadRunFolderError):
    """The output folder cannot be used as asked; the message says what to do."""


def flat_options(config) -> dict:
    return {k: v for section in to_flat_dict(config).values() for k, v in section.items()}


class RunFolder:
    """The output folder of one run, locked while the run holds it."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._lock = None
        self.claimed = False  # this run may write the folder (claim() succeeded)

    # -------------------------------------------------------------- claiming the folder
    def claim(self, config, *, resume: bool, overwrite: bool) -> None:
        """Lock the folder and check that this run may write it (see the module docstring)."""
        self.path.mkdir(parents=True, exist_ok=True)
        self._acquire_lock()
        occupied = self._occupied()
        if resume:
            self.claimed = True
            return
        if occupied and not overwrite:
            raise RunFolderError(
                f"output folder {self.path} already holds a run ({occupied}): continue that run "
                "with --resume, replace it with --overwrite, or choose another --output-dir")
        if occupied:
            if not (self.path / MARKER).exists():
                raise RunFolderError(f"--overwrite: {self.path} is not a dralign run folder (no {MARKER}); "
                                     "refusing to delete its contents; choose another --output-dir")
            for entry in self.path.iterdir():
                if entry.name not in KEEP_ON_OVERWRITE:
                    shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
        self.claimed = True
        self.mark(config, "running")

    def _occupied(self) -> str | None:
        marker = self.path / MARKER
        if marker.exists():
            try:
                info = json.loads(marker.read_text())
                return f"method {info.get('method')}, status {info.get('status')}"
            except ValueError:
                return f"an unreadable {MARKER}"
        others = [p.name for p in self.path.iterdir() if p.name not in KEEP_ON_OVERWRITE]
        return f"{len(others)} files or folders such as {sorted(others)[0]}" if others else None

    def _acquire_lock(self) -> None:
        fh = open(self.path / LOCK, "a+")
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            fh.close()
            if e.errno in (errno.EAGAIN, errno.EACCES):
                raise RunFolderError(f"output folder {self.path} is in use by another dralign run; "
                                     "wait for it to finish or choose another --output-dir") from None
            raise
        fh.seek(0), fh.truncate(), fh.write(str(os.getpid())), fh.flush()
        self._lock = fh

    def release(self) -> None:
        if self._lock is not None:
            fcntl.flock(self._lock, fcntl.LOCK_UN)
            self._lock.close()
            self._lock = None

    def save_final(self, model, tokenizer, config, metrics: dict, card: str, state_dict: dict | None = None,
                   merge: bool | None = None) -> None:
        """The model and tokenizer, the resolved config, final_metrics.json and the model card,
        staged in a temporary folder and moved into place; then the run is marked completed."""
        from ..config import save_yaml
        from ..modeling import save_model

        staging = self.path / ".final-tmp"
        if staging.exists():
            shutil.rmtree(staging)
        staging.mkdir()
        save_model(model, staging, state_dict, merge=merge)  # merge: a LoRA adapter into its base
        tokenizer.save_pretrained(staging)
        save_yaml(config, staging / "config.yaml")
        atomic_write_text(staging / "final_metrics.json", json.dumps(metrics, indent=1) + "\n")
        atomic_write_text(staging / "README.md", card)
        replace_into(staging, self.path)
        self.mark(config, "completed")

    def mark(self, config, status: str) -> None:
        o = flat_options(config)
        info = {"tool": "dralign", "status": status, "method": o["method"], "model": o["model"],
                "data": o["data"], "seed": o["seed"]}
        atomic_write_text(self.path / MARKER, json.dumps(info, indent=1) + "\n")


def check_resumable(saved: dict, config) -> None:
    """Refuse to resume a checkpoint written under another method, data, model or seed."""
    now = flat_options(config)
    differ = sorted(k for k in set(saved) | set(now)
                    if k not in RESUMABLE_CHANGES and saved.get(k) != now.get(k))
    if differ:
        changes = "; ".join(f"{k}: {saved.get(k)!r} -> {now.get(k)!r}" for k in differ)
        raise RunFolderError(f"--resume: the checkpoint was written by a different run ({changes}); "
                             "use the same settings to continue it, or --overwrite to start again")


def truncate_metrics(file: Path, up_to_step: int, log=print) -> None:
    """Keep the lines of metrics.jsonl up to `up_to_step`; a torn last line (a crash while
    writing) is dropped with a note, any other unreadable line is an error naming the file and line."""
    lines = file.read_text().splitlines()
    kept = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            if number == len(lines):
                log(f"note: {file} line {number} is incomplete (a crash while writing?); dropped")
                continue
            raise RunFolderError(f"{file} line {number}: not a JSON record; fix or delete the line") from None
        if record.get("step", 0) <= up_to_step:
            kept.append(line)
    atomic_write_text(file, "".join(line + "\n" for line in kept))


def replace_into(staging: Path, target: Path) -> None:
    """Move every file of `staging` into `target` (each one an atomic rename), then remove it."""
    for entry in staging.iterdir():
        destination = target / entry.name
        if destination.is_dir() and entry.is_dir():
            shutil.rmtree(destination)
        os.replace(entry, destination)
    staging.rmdir()

