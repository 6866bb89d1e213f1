"""Checkpoints without pickle: everything a resumed run needs, as safetensors and JSON.

A checkpoint `checkpoints/step-N/` holds

    model.safetensors       the trainable parameters (all of them, or the LoRA adapter's)
    optimizer.safetensors   the optimizer's tensor state;  optimizer.json  the rest of it
    scheduler.json          the learning-rate schedule's state
    objective.safetensors   the objective's state (group DRO's q), when it has one
    rng-R.safetensors/.json each process's random generators (torch, CUDA, numpy, python)
    trainer.json            step counters
    config.yaml             the run's resolved configuration
    manifest.json           size and sha256 of every file above — written last

Resuming never unpickles anything (a checkpoint folder may come from anyone): tensors come
from safetensors, everything else from JSON. A checkpoint is complete when its manifest exists
and every file matches it; `newest_valid` returns the newest complete one and says which newer
ones it skipped and why. Writing goes to a temporary folder renamed into place.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import cast

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..config import save_yaml
from ..errors import BadRunFolderError
from .sharding import full_model_state, is_sharded, load_model_state

MANIFEST = "manifest.json"


class CheckpointError(BadRunFolderError):
    """A checkpoint cannot be written or read; the message names the file."""


@contextmanager
def writing(path: Path):
    """Turn a failed write under `path` (a full disk, a size limit, a missing permission) into one
    line naming the path and the reason, whether the OS error comes from Python or safetensors."""
    try:
        yield
    except SafetensorError as e:
        reason = re.sub(r"\s*\(os error \d+\)$", "", str(e).split("I/O error: ")[-1])
        raise CheckpointError(f"cannot write {path}: {reason}") from None
    except OSError as e:
        raise CheckpointError(f"cannot write {e.filename or path}: {e.strerror or e}") from None


# ----------------------------------------------------------------------------- tensors ⇄ files
def _flatten(state, prefix: str, tensors: dict, path=()) -> object:
    """Replace every tensor in a nested dict/list by a {"tensor": key} reference."""
    if torch.is_tensor(state):
        key = ".".join(map(str, (prefix, *path)))
        tensors[key] = state.detach().cpu().contiguous()
        return {"__tensor__": key}
    if isinstance(state, dict):
        return {"__dict__": [[_key(k), _flatten(v, prefix, tensors, (*path, k))] for k, v in state.items()]}
    if isinstance(state, (list, tuple)):
        return {
            "__list__": [_flatten(v, prefix, tensors, (*path, i)) for i, v in enumerate(state)],
            "tuple": isinstance(state, tuple),
        }
    if state is None or isinstance(state, (bool, int, float, str)):
        return state
    raise CheckpointError(f"cannot store a {type(state).__name__} in a checkpoint without pickle")


def _key(k):
    if isinstance(k, (int, str)):
        return k
    raise CheckpointError(f"cannot store a dict key of type {type(k).__name__}")


def _unflatten(state, tensors: dict):
    if isinstance(state, dict):
        if "__tensor__" in state:
            return tensors[state["__tensor__"]]
        if "__dict__" in state:
            return {k: _unflatten(v, tensors) for k, v in state["__dict__"]}
        if "__list__" in state:
            items = [_unflatten(v, tensors) for v in state["__list__"]]
            return tuple(items) if state.get("tuple") else items
    return state


def save_state(state, folder: Path, name: str) -> None:
    """A nested state (dicts, lists, tensors, plain values) as name.safetensors + name.json."""
    tensors: dict[str, torch.Tensor] = {}
    skeleton = _flatten(state, name, tensors)
    if tensors:
        save_file(tensors, str(folder / f"{name}.safetensors"))
    (folder / f"{name}.json").write_text(json.dumps(skeleton))


def load_state(folder: Path, name: str):
    skeleton = json.loads((folder / f"{name}.json").read_text())
    file = folder / f"{name}.safetensors"
    tensors = load_tensors(file) if file.exists() else {}
    return _unflatten(skeleton, tensors)


# ----------------------------------------------------------------------------- random generators
def rng_state() -> dict:
    state = {"torch": torch.get_rng_state(), "python": random.getstate()}
    # the legacy tuple (numpy's stub also allows the dict of get_state(legacy=False))
    kind, keys, pos, has_gauss, cached = cast(tuple[str, np.ndarray, int, int, float], np.random.get_state())
    state["numpy"] = {
        "kind": kind,
        "keys": torch.from_numpy(keys.astype(np.int64)),
        "pos": int(pos),
        "has_gauss": int(has_gauss),
        "cached": float(cached),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# ----------------------------------------------------------------------------- manifest
def _sha256(file: Path) -> str:
    digest = hashlib.sha256()
    with open(file, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_manifest(folder: Path) -> None:
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.name != MANIFEST)
    manifest = {p.name: {"bytes": p.stat().st_size, "sha256": _sha256(p)} for p in files}
    tmp = folder / f".{MANIFEST}.tmp"
    tmp.write_text(json.dumps(manifest, indent=1))
    os.replace(tmp, folder / MANIFEST)


def verify(folder: Path) -> str | None:
    """None when the checkpoint is complete and intact, else why not."""
    file = folder / MANIFEST
    if not file.is_file():
        return "no manifest (the save did not finish)"
    try:
        manifest = json.loads(file.read_text())
    except (ValueError, OSError) as e:
        return f"unreadable manifest ({e})"
    for name, entry in manifest.items():
        path = folder / name
        if not path.is_file():
            return f"{name} is missing"
        if path.stat().st_size != entry["bytes"]:
            return f"{name} has {path.stat().st_size} bytes, the manifest says {entry['bytes']}"
        if _sha256(path) != entry["sha256"]:
            return f"{name} does not match its checksum"
    return None


def checkpoints(root: Path) -> list[Path]:
    """Finished checkpoint folders under `root`, oldest first."""
    return sorted(root.glob("step-*")) if root.is_dir() else []


def newest_valid(root: Path, log=print) -> Path | None:
    """The newest checkpoint that verifies; each newer broken one is named with the reason."""
    for folder in reversed(checkpoints(root)):
        problem = verify(folder)
        if problem is None:
            return folder
        log(f"skipping checkpoint {folder}: {problem}")
    return None


def prune(root: Path, keep: int = 2) -> None:
    """Keep the `keep` newest complete checkpoints (this run's: the folder belongs to one run)."""
    for old in checkpoints(root)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)


def load_tensors(file: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(file))
    except (SafetensorError, OSError) as e:
        raise CheckpointError(f"{file}: cannot be read ({e})") from None


# ----------------------------------------------------------------------------- a run's checkpoint
def trainable_parameters(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The parameters the run changes (all of them, or a LoRA adapter's); frozen base weights
    come back from the model folder on resume."""
    return {n: p for n, p in model.named_parameters() if p.requires_grad}


def load_parameters(model: torch.nn.Module, saved: dict[str, torch.Tensor]) -> None:
    params = dict(model.named_parameters())
    unknown = sorted(set(saved) - set(params))
    if unknown:
        raise CheckpointError(f"the checkpoint holds parameters the model lacks: {', '.join(unknown[:5])}")
    with torch.no_grad():
        for name, value in saved.items():
            params[name].copy_(value)


def save_checkpoint(accelerator, root: Path, step: int, config, parts: dict) -> Path:
    """Write `parts` (name → nested state) and each process's RNG into root/step-N atomically:
    a temporary folder, the manifest last, then a rename; keeps the two newest."""

    final, tmp = root / f"step-{step:08d}", root / f".tmp-step-{step:08d}"
    with writing(tmp):
        return _save_checkpoint(accelerator, root, final, tmp, config, parts)


def _save_checkpoint(accelerator, root: Path, final: Path, tmp: Path, config, parts: dict) -> Path:
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    accelerator.wait_for_everyone()
    save_state(rng_state(), tmp, f"rng-{accelerator.process_index}")
    if accelerator.is_main_process:
        for name, state in parts.items():
            save_state(state, tmp, name)
        save_yaml(config, tmp / "config.yaml")
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        write_manifest(tmp)
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
        prune(root)
    accelerator.wait_for_everyone()
    return final


def load_checkpoint(accelerator, folder: Path) -> dict:
    """The parts of a verified checkpoint (see `newest_valid`); this process's RNG restored."""
    parts = {name: load_state(folder, name) for name in ("model", "optimizer", "scheduler", "objective", "trainer")}
    if (folder / f"rng-{accelerator.process_index}.json").exists():
        set_rng_state(load_state(folder, f"rng-{accelerator.process_index}"))
    return parts


def sharded_state(accelerator, model) -> dict | None:
    """Under FSDP the full weights (a collective: on every process with Accelerate's FSDP, on
    process 0 with `--sharding fsdp2`); else None."""
    from accelerate.utils import DistributedType

    if is_sharded(model):
        return full_model_state(model)
    return accelerator.get_state_dict(model) if accelerator.distributed_type == DistributedType.FSDP else None


def check_launch(accelerator) -> None:
    """Refuse processes that were launched together but do not train together (e.g. an FSDP
    config on CPU with Accelerate 1.15: each process trains alone and writes the same folder)."""
    launched = int(os.environ.get("WORLD_SIZE", "1"))
    if launched > accelerator.num_processes:
        raise CheckpointError(
            f"{launched} processes were launched but Accelerate runs them as "
            f"{accelerator.num_processes}: they would train alone and write one folder. "
            "On CPU set ACCELERATE_USE_CPU=true: with accelerate launch --multi_gpu (DDP), or with "
            "torchrun and --sharding fsdp2 (docs/launch/fsdp2-multinode.sh)"
        )


def save_run(accelerator, model, root: Path, config, parts: dict, step: int) -> Path:
    """A run's checkpoint: the trainable weights (gathered from FSDP shards) beside `parts`."""
    full = sharded_state(accelerator, model)
    trainable = trainable_parameters(accelerator.unwrap_model(model))
    weights = trainable if full is None else {n: full[n] for n in trainable if n in full}
    return save_checkpoint(accelerator, root, step, config, {"model": weights, **parts})


def load_run(accelerator, model, folder: Path) -> dict:
    """The parts of a run's checkpoint, its weights loaded into `model`."""
    from accelerate.utils import DistributedType

    if accelerator.distributed_type == DistributedType.FSDP:
        raise CheckpointError(
            "--resume under Accelerate's FSDP is not supported (its optimizer state is "
            "sharded): train with torchrun and --sharding fsdp2, which resumes"
        )
    parts = load_checkpoint(accelerator, folder)
    if is_sharded(model):  # every process reads the full weights and keeps its shard
        load_model_state(model, parts.pop("model"))
    else:
        load_parameters(accelerator.unwrap_model(model), parts.pop("model"))
    return parts
