"""An output folder belongs to one run.

`run.json` marks a folder as a dralign run: its method, model, data, seed and status, the
fingerprints of its inputs (`fingerprints`: data content, model and reference weights,
tokenizer), and the manifest of what the run writes there (`outputs`). The lock
(`.dralign.lock`) and `run.json` come first, before any work; a start that fails removes what
it created, and the lock goes at every exit. A new run into a folder that holds another run
(or anything else) is refused unless it continues it (`--resume`: a folder with `run.json` and
a compatible configuration and inputs) or replaces it (`--overwrite`: deletes only what the old
manifest lists, never a foreign file or an input of the new run). The caches (`ref_cache/`,
`ratios/`) are keyed by content, not by run, and survive `--overwrite`.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import shutil
from pathlib import Path
from typing import IO

from ..config import atomic_write_text, to_flat_dict
from ..errors import BadRunFolderError

MARKER, LOCK = "run.json", ".dralign.lock"
KEEP_ON_OVERWRITE = {"ref_cache", "ratios", LOCK}  # keyed by content, not by run
# what every run may write besides the saved model (`dralign` is the trackers' log folder)
RUN_OUTPUTS = (
    "run.json",
    "config.yaml",
    "metrics.jsonl",
    "final_metrics.json",
    "README.md",
    "checkpoints",
    ".final-tmp",
    "dralign",
)
# a run.json from before the manifest: its outputs plus what save_pretrained writes
LEGACY_OUTPUTS = (
    *RUN_OUTPUTS,
    "model.safetensors",
    "model.safetensors.index.json",
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
    "adapter_model.safetensors",
    "adapter_config.json",
)
# what may change between a run and its --resume: when to stop, how to log and save
RESUMABLE_CHANGES = {
    "max_steps",
    "epochs",
    "log_every",
    "eval_every",
    "save_every",
    "resume",
    "overwrite",
    "report_to",
    "progress",
    "max_bad_steps",
    "ref_cache",
    "ref_cache_dir",
    "output_dir",
}


class RunFolderError(BadRunFolderError):
    """The output folder cannot be used as asked; the message says what to do."""


def flat_options(config) -> dict:
    return {k: v for section in to_flat_dict(config).values() for k, v in section.items()}


class RunFolder:
    """The output folder of one run, locked while the run holds it."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._lock: IO | None = None
        self.claimed = False  # this run may write the folder (claim() succeeded)
        self.resumed = False  # claimed by --resume: run.json is the earlier run's
        self.info: dict = {}  # run.json's content
        self._made_folder = False

    # -------------------------------------------------------------- claiming the folder
    def claim(self, config, *, resume: bool, overwrite: bool, inputs=()) -> None:
        """Lock the folder and check that this run may write it (see the module docstring);
        `inputs`: the paths the run reads, never deleted by --overwrite."""
        self._made_folder = not self.path.exists()
        self.path.mkdir(parents=True, exist_ok=True)
        self._acquire_lock()
        if resume:
            info = self._read_marker()
            if info is None:
                raise RunFolderError(
                    f"--resume: {self.path} holds no dralign run to continue (no readable "
                    f"{MARKER}, so no checkpoint of it); nothing was changed; check --output-dir"
                )
            self.info = info
            self.claimed = self.resumed = True
            return
        occupied = self._occupied()
        if occupied and not overwrite:
            raise RunFolderError(
                f"output folder {self.path} already holds a run ({occupied}): continue that run "
                "with --resume, replace it with --overwrite, or choose another --output-dir"
            )
        if occupied:
            previous = self._read_marker()
            if previous is None:
                raise RunFolderError(
                    f"--overwrite: {self.path} is not a dralign run folder (no readable "
                    f"{MARKER}); refusing to delete its contents; choose another --output-dir"
                )
            self._remove_outputs(previous, inputs)
        o = flat_options(config)
        self.info = {
            "tool": "dralign",
            "status": "starting",
            "method": o["method"],
            "model": o["model"],
            "data": o["data"],
            "seed": o["seed"],
            "outputs": list(RUN_OUTPUTS),
        }
        self._write()
        self.claimed = True

    def _read_marker(self) -> dict | None:
        try:
            info = json.loads((self.path / MARKER).read_text())
        except (OSError, ValueError):
            return None
        return info if isinstance(info, dict) and info.get("tool") == "dralign" else None

    def _remove_outputs(self, previous: dict, inputs) -> None:
        """Delete what the earlier run's manifest lists (plain names in this folder only: a
        forged run.json cannot point elsewhere), after checking that no input is among them."""
        listed = previous.get("outputs") or LEGACY_OUTPUTS
        names = {
            n
            for n in listed
            if isinstance(n, str)
            and n not in ("", ".", "..")
            and "/" not in n
            and os.sep not in n
            and n not in KEEP_ON_OVERWRITE
        }
        targets = [self.path / n for n in sorted(names) if os.path.lexists(self.path / n)]
        for source in inputs:
            clash = next((t for t in targets if _overlaps(t, Path(source))), None)
            if clash is not None:
                raise RunFolderError(
                    f"--overwrite would delete {clash}, which this run reads ({source}); "
                    "nothing was deleted; write to another --output-dir"
                )
        for target in targets:
            shutil.rmtree(target) if target.is_dir() and not target.is_symlink() else target.unlink()

    def _occupied(self) -> str | None:
        info = self._read_marker()
        if info is not None:
            return f"method {info.get('method')}, status {info.get('status')}"
        if (self.path / MARKER).exists():
            return f"an unreadable {MARKER}"
        others = [p.name for p in self.path.iterdir() if p.name not in KEEP_ON_OVERWRITE]
        return f"{len(others)} files or folders such as {sorted(others)[0]}" if others else None

    def _acquire_lock(self) -> None:
        for _ in range(3):  # the holder removes the lock file on release: lock the file at the path
            fh = open(self.path / LOCK, "a+")
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as e:
                fh.close()
                if e.errno in (errno.EAGAIN, errno.EACCES):
                    raise RunFolderError(
                        f"output folder {self.path} is in use by another dralign run; "
                        "wait for it to finish or choose another --output-dir"
                    ) from None
                raise
            if _same_file(fh, self.path / LOCK):
                fh.seek(0)
                fh.truncate()
                fh.write(str(os.getpid()))
                fh.flush()
                self._lock = fh
                return
            fh.close()  # locked a file its holder had just removed: try the new one
        raise RunFolderError(f"output folder {self.path} is in use by another dralign run")

    def release(self) -> None:
        """Remove the lock file and unlock (at every exit: success, error, signal)."""
        if self._lock is not None:
            if _same_file(self._lock, self.path / LOCK):
                (self.path / LOCK).unlink(missing_ok=True)
            fcntl.flock(self._lock, fcntl.LOCK_UN)
            self._lock.close()
            self._lock = None

    def abandon(self) -> None:
        """A start that failed: remove what this run created (its run.json; the folder when it
        made it and nothing else is left there), keep an earlier run's files, and unlock."""
        if self.claimed and not self.resumed:
            (self.path / MARKER).unlink(missing_ok=True)
        self.claimed = False
        self.release()
        if self._made_folder and self.path.is_dir() and not any(self.path.iterdir()):
            self.path.rmdir()

    # -------------------------------------------------------------- the run's record
    def check_fingerprints(self, fingerprints: dict) -> None:
        """On --resume: refuse inputs whose content changed since the run started (one line
        naming each); then hold `fingerprints` for run.json."""
        before = self.info.get("fingerprints") or {}
        changed = sorted(k for k in fingerprints if k in before and before[k] != fingerprints[k])
        if changed:
            raise RunFolderError(
                f"--resume: {', '.join(FINGERPRINT_NAMES.get(k, k) for k in changed)} "
                "changed since this run started (same path, different content); restore "
                "the original, or start again with --overwrite"
            )
        self.info["fingerprints"] = fingerprints

    def final_metrics(self) -> dict:
        """The final metrics an earlier session of this run wrote; else its last logged step's
        record; {} when neither can be read."""
        try:
            metrics = json.loads((self.path / "final_metrics.json").read_text())
            if isinstance(metrics, dict):
                return metrics
        except (OSError, ValueError):
            pass
        try:
            lines = (self.path / "metrics.jsonl").read_text().splitlines()
            record = json.loads(lines[-1]) if lines else {}
        except (OSError, ValueError):
            return {}
        return record if isinstance(record, dict) else {}

    def save_final(
        self,
        model,
        tokenizer,
        config,
        metrics: dict,
        card: str,
        state_dict: dict | None = None,
        merge: bool | None = None,
    ) -> None:
        """The model and tokenizer, the resolved config, final_metrics.json and the model card,
        staged in a temporary folder and moved into place; each name joins the manifest."""
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
        self.info["outputs"] = sorted({*self.info.get("outputs", RUN_OUTPUTS), *(p.name for p in staging.iterdir())})
        self._write()  # the manifest first: a crash mid-move leaves nothing unlisted
        replace_into(staging, self.path)

    def save_metrics(self, metrics: dict, card: str) -> None:
        """Rewrite final_metrics.json and the card (after the final evaluation)."""
        atomic_write_text(self.path / "final_metrics.json", json.dumps(metrics, indent=1) + "\n")
        atomic_write_text(self.path / "README.md", card)

    def mark(self, config, status: str) -> None:
        o = flat_options(config)
        self.info.update(
            {
                "tool": "dralign",
                "status": status,
                "method": o["method"],
                "model": o["model"],
                "data": o["data"],
                "seed": o["seed"],
            }
        )
        self.info.setdefault("outputs", list(RUN_OUTPUTS))
        self._write()

    def _write(self) -> None:
        atomic_write_text(self.path / MARKER, json.dumps(self.info, indent=1) + "\n")


FINGERPRINT_NAMES = {
    "data": "the training data (--data)",
    "eval_data": "the held-out data (--eval-data)",
    "model": "the model (--model)",
    "ref_model": "the reference model (--ref-model)",
    "tokenizer": "the tokenizer",
}


def input_fingerprints(config, tokenizer) -> dict:
    """What the run's results depend on beyond its options, by content: the data files' sha256,
    the model's and reference's weights (`model_fingerprint`: a hub name is its name) and the
    tokenizer (vocabulary, merges, special tokens, chat template)."""
    from ..data.cache import source_digest, tokenizer_fingerprint
    from ..modeling import model_fingerprint

    def model(name):
        try:
            return model_fingerprint(name)
        except OSError:  # a folder without weights files: its loading fails elsewhere, by name
            return None

    d, m = config.data, config.model
    prints = {
        "data": source_digest(d.data),
        "eval_data": d.eval_data and source_digest(d.eval_data),
        "model": model(m.model),
        "ref_model": m.ref_model and model(m.ref_model),
        "tokenizer": tokenizer_fingerprint(tokenizer),
    }
    return {k: v for k, v in prints.items() if v}


def _overlaps(target: Path, source: Path) -> bool:
    """Whether deleting `target` deletes `source` or a file inside it (or `target` lies inside
    the folder `source`)."""
    if not source.exists():
        return False
    t, s = target.resolve(), source.resolve()
    return t == s or t in s.parents or s in t.parents


def _same_file(fh, path: Path) -> bool:
    try:
        return os.fstat(fh.fileno()).st_ino == os.stat(path).st_ino
    except OSError:
        return False


def check_resumable(saved: dict, config) -> None:
    """Refuse to resume a checkpoint written under another method, data, model or seed."""
    now = flat_options(config)
    differ = sorted(k for k in set(saved) | set(now) if k not in RESUMABLE_CHANGES and saved.get(k) != now.get(k))
    if differ:
        changes = "; ".join(f"{k}: {saved.get(k)!r} -> {now.get(k)!r}" for k in differ)
        raise RunFolderError(
            f"--resume: the checkpoint was written by a different run ({changes}); "
            "use the same settings to continue it, or --overwrite to start again"
        )


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
