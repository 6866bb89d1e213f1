"""A TRL `DPOConfig` YAML as `dralign train --config`: TRL field names → dralign options.

A YAML is read as a DPOConfig when one of its keys is a TRL field that is not a dralign option
(`learning_rate`, `per_device_train_batch_size`, `loss_type`, ...; `is_trl_config`). Each TRL
field is then translated (`translate`), one printed line per field
(``learning_rate: 5e-7 -> lr``); a field with no dralign counterpart is refused by name, with
the reason, in one line. Keys that are already dralign options (``data``, ``method``, ...) pass
through unchanged, so a TRL config can name the data file dralign reads.

The loss fields (``loss_type``, ``loss_weights``, ``label_smoothing``, ``f_divergence_type``,
``f_alpha_divergence_coef``) are translated by `dralign.objectives.trl.trl_loss`, the same
function the `DPOTrainer` drop-in uses. Every TRL value is first read through a typed field
(`TrlFields`, or the dralign option it becomes) with the checks of a flag, so ``bf16: 'false'``
is false and ``max_steps: 1.9`` is refused, naming the field. Nothing here imports TRL.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..config import ConfigError, Range, check_value, field_specs, option, option_names
from ..objectives.trl import LOSS_FIELDS, trl_loss
from ..printable import shown
from .config import TrainConfig

RENAMED = {
    # DPOConfig / TrainingArguments
    "learning_rate": "lr",
    "per_device_train_batch_size": "batch_size",
    "gradient_accumulation_steps": "grad_accum",
    "num_train_epochs": "epochs",
    "max_length": "max_length",
    "max_prompt_length": "max_prompt_length",
    "beta": "beta",
    "output_dir": "output_dir",
    "seed": "seed",
    "warmup_steps": "warmup_steps",
    "weight_decay": "weight_decay",
    "max_grad_norm": "max_grad_norm",
    "logging_steps": "log_every",
    "save_steps": "save_every",
    "eval_steps": "eval_every",
    "gradient_checkpointing": "gradient_checkpointing",
    "precompute_ref_log_probs": "ref_cache",
    # TRL's script arguments (`trl dpo --config`): ModelConfig and ScriptArguments
    "model_name_or_path": "model",
    "dataset_name": "data",
    "dataset_config": "data_subset",
    "dataset_train_split": "data_split",
    "dataset_test_split": "eval_split",
    "lora_r": "lora_r",
    "lora_alpha": "lora_alpha",
    "lora_dropout": "lora_dropout",
    "lora_target_modules": "lora_target_modules",
    "attn_implementation": "attn_implementation",
}
"""TRL fields whose value a dralign option takes as it is."""

NO_EFFECT = {
    "logging_first_step": "dralign logs from step 1",
    "per_device_eval_batch_size": "dralign evaluates in batches of 2 x batch_size",
    "eval_strategy": "evaluation follows eval_steps (eval_every)",
    "save_strategy": "checkpoints follow save_steps (save_every)",
    "logging_strategy": "logging follows logging_steps (log_every)",
    "do_train": "dralign train always trains",
    "do_eval": "held-out data is evaluated when given",
    "remove_unused_columns": "dralign reads only its columns",
    "disable_dropout": "dralign trains with the model's dropout settings",
    "dataset_num_proc": "tokenisation runs in the main process",
    "run_name": "the run is named by output_dir",
    "logging_dir": "trackers write under output_dir",
    "use_peft": "LoRA is on when lora_r > 0",
}
"""TRL fields with no setting to carry over: accepted and printed, since dralign does the same
thing by itself (a value that would change training is still refused, see `_special`)."""

REFUSED = {
    "warmup_ratio": "set warmup_steps instead (dralign counts warm-up in optimizer steps)",
    "use_weighting": "WPO weighting has no dralign counterpart; give per-row weights in a weight column",
    "sync_ref_model": "TR-DPO's moving reference has no dralign counterpart",
    "padding_free": "dralign batches padded rows (prefix sharing saves the prompt instead)",
    "use_liger_kernel": "dralign computes log-probs at completion positions itself",
    "rpo_alpha": "RPO's NLL term has no dralign counterpart",
    "ld_alpha": "LD-DPO has no dralign counterpart",
    "deepspeed": "use accelerate launch with a DeepSpeed config",
    "fsdp": "use accelerate launch with an FSDP config",
    "push_to_hub": "push the saved folder with huggingface-cli upload",
    "resume_from_checkpoint": "use --resume (the newest complete checkpoint of output_dir)",
}
"""TRL fields refused with the reason (a field in neither table is refused as unknown)."""

_SCHEDULERS = {"cosine": "cosine", "linear": "linear", "constant": "constant", "constant_with_warmup": "constant"}
_TRACKERS = ("none", "tensorboard", "wandb")
_OPTIMIZERS = {"adamw_torch": "adamw", "adamw_torch_fused": "adamw", "adamw_hf": "adamw", "sgd": "sgd"}
_TRUNCATION = {"keep_end": "left", "keep_start": "right"}


def trl_fields() -> set[str]:
    """Every field name this module knows as TRL's."""
    return set(RENAMED) | set(NO_EFFECT) | set(REFUSED) | set(SPECIAL)


def is_trl_config(data: dict[str, Any]) -> bool:
    """Whether a YAML mapping is a TRL config: it has a TRL field that is not a dralign option."""
    own = option_names(TrainConfig)
    return any(key in trl_fields() - own for key in data)


@dataclass
class TrlFields:
    """The types of the TRL fields whose value is translated (TRL's own types: a YAML value is
    checked against them as a flag would be, before any translation)."""

    loss_type: list[str] = option(["sigmoid"])
    loss_weights: list[float] | None = option(None)
    label_smoothing: float = option(0.0)
    f_divergence_type: str = option("reverse_kl")
    # c = 1 − α with dralign's α in (0, 1); c = 1 is reverse KL: so c in (0, 1], named as TRL's field
    f_alpha_divergence_coef: float = option(0.5, valid=Range(0, 1, low_open=True))
    max_steps: int = option(-1)
    lr_scheduler_type: str = option("linear")
    report_to: list[str] | None = option(None)
    bf16: bool = option(False)
    fp16: bool = option(False)
    truncation_mode: str = option("keep_end")
    torch_dtype: str | None = option(None)
    dtype: str | None = option(None)
    optim: str = option("adamw_torch")


SPECIAL = tuple(f.name for f in dataclasses.fields(TrlFields))
"""TRL fields whose value is translated (the loss's by `trl_loss`, the others by `_special`)."""


def _typed(data: dict[str, Any], where: str) -> dict[str, Any]:
    """`data` with each translated TRL field converted to its type, and each renamed one checked
    against the dralign option it becomes; a bad value raises ConfigError naming the TRL field."""
    special, own = field_specs(TrlFields), field_specs(TrainConfig)
    out = dict(data)
    for key, value in data.items():
        if key in special:
            out[key] = check_value(value, *special[key], f"{where}: {key}")
        elif key in RENAMED:
            # checked here to name the TRL field; passed on as given (build converts it the same way)
            check_value(value, *own[RENAMED[key]], f"{where}: {key}")
    return out


def _loss(data: dict, out: dict, lines: list, refused: list) -> None:
    """The loss fields, through the one translation (`objectives.trl.trl_loss`)."""
    loss = trl_loss(data)
    refused.extend(loss.refusals)
    if loss.refusals:
        return
    noted = [note for note in loss.notes if note.split(":", 1)[0] in data]
    lines.extend(noted)
    for key in LOSS_FIELDS:  # one line per given field, also when it changes nothing
        if key in data and not any(note.startswith(f"{key}:") for note in noted):
            lines.append(f"{key}: {data[key]} -> (nothing to set: as dralign does by default)")
    if "loss_type" in data:
        out["method"] = loss.preset
    if "label_smoothing" in loss.parameters:
        out["label_smoothing"] = loss.parameters["label_smoothing"]
    if "f_divergence_type" in data:
        out["divergence"] = loss.parameters["divergence"]
        if "alpha" in loss.parameters:
            out["alpha"] = loss.parameters["alpha"]


def _special(key: str, value, out: dict, lines: list, refused: list) -> None:
    """One translated field other than the loss's."""

    def put(option: str, new) -> None:
        out[option] = new
        lines.append(f"{key}: {value} -> {option}" + ("" if new == value else f": {new}"))

    if key == "max_steps":
        put("max_steps", 0 if int(value) < 0 else int(value))  # TRL: -1 = use epochs; dralign: 0
    elif key == "lr_scheduler_type":
        if value not in _SCHEDULERS:
            refused.append(f"lr_scheduler_type={value!r}: dralign has {', '.join(_SCHEDULERS)}")
        else:
            put("scheduler", _SCHEDULERS[value])
    elif key == "report_to":
        trackers = [value] if isinstance(value, str) else list(value or ["none"])
        trackers = [t for t in trackers if t != "none"] or ["none"]
        if len(trackers) > 1 or trackers[0] not in _TRACKERS:
            refused.append(f"report_to={value!r}: dralign logs to one of {', '.join(_TRACKERS)}")
        else:
            put("report_to", trackers[0])
    elif key in ("bf16", "fp16"):  # typed by _typed: 'false' is False
        if value:
            if out.get("mixed_precision") not in (None, "no"):
                refused.append("bf16 and fp16 are both true")
            else:
                put("mixed_precision", key)
        else:
            lines.append(f"{key}: {value} -> (mixed_precision stays as set)")
    elif key == "truncation_mode":
        if value not in _TRUNCATION:
            refused.append(f"truncation_mode={value!r}: not one of {', '.join(_TRUNCATION)}")
        else:
            # TRL cuts the whole sequence; dralign cuts the prompt on this side (completions on the right)
            put("truncation_side", _TRUNCATION[value])
    elif key in ("torch_dtype", "dtype") and value is not None:  # None: the model's own dtype
        put("dtype", {"float": "float32", "half": "float16"}.get(str(value), str(value)))
    elif key == "optim":
        if value not in _OPTIMIZERS:
            refused.append(f"optim={value!r}: dralign has adamw and sgd")
        else:
            put("optimizer", _OPTIMIZERS[value])


def translate(data: dict[str, Any], where: str = "config", log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """dralign options for a TRL DPOConfig mapping (a plain dralign mapping is returned as is).

    Prints one line per TRL field (``learning_rate: 5e-7 -> lr``) through `log` (default:
    print on the main process); raises ConfigError naming every field with no counterpart.
    """
    if not is_trl_config(data):
        return data
    own = option_names(TrainConfig)
    data = _typed(data, where)
    out: dict[str, Any] = {}
    lines: list[str] = []
    refused: list[str] = []
    if any(k in data for k in LOSS_FIELDS):
        _loss(data, out, lines, refused)
    for key, value in data.items():
        if key in LOSS_FIELDS:
            continue
        if key in RENAMED:
            if RENAMED[key] != key and RENAMED[key] in data:
                refused.append(f"{key} and {RENAMED[key]} are both given")
            out[RENAMED[key]] = value
            lines.append(f"{key}: {value} -> {RENAMED[key]}")
        elif key in SPECIAL:
            _special(key, value, out, lines, refused)
        elif key in NO_EFFECT:
            lines.append(f"{key}: {value} -> (nothing to set: {NO_EFFECT[key]})")
        elif key in REFUSED:
            refused.append(f"{key} ({REFUSED[key]})")
        elif key in own:
            if key in out and out[key] != value:
                refused.append(f"{key}: given as a dralign option ({value!r}) and by a TRL field ({out[key]!r})")
            out[key] = value
        else:
            refused.append(f"{key} (not a DPOConfig field dralign knows)")
    if refused:
        raise ConfigError(f"{where}: TRL DPOConfig field(s) with no dralign counterpart: " + "; ".join(refused))
    log = log or _main_process_print
    log(f"{where}: a TRL DPOConfig, translated to dralign options:")
    for line in lines:
        log(f"  {shown(line)}")  # values from a file: printed inert
    return out


def _main_process_print(text: str) -> None:
    if int(os.environ.get("RANK", "0")) == 0:  # under accelerate launch, print once
        print(text, flush=True)
