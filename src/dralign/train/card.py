"""The model card written beside the final model (README.md of the output folder): what the
run did, and what the folder holds and how to load it (a whole model, or a LoRA adapter alone
over a base the folder does not hold)."""

from __future__ import annotations

from pathlib import Path

from ..data import PreferenceData
from ..modeling import is_gguf
from ..objectives import Objective
from ..objectives.presets import PRESETS
from .config import TrainConfig

__all__ = ["model_card", "weights_form", "weights_lines"]


def weights_form(cfg: TrainConfig) -> str:
    """What the output folder holds: "full" (every weight trained), "merged" (a LoRA adapter
    merged into its base: a whole model) or "adapter" (the LoRA adapter alone). `--save-adapter`
    unset: the adapter alone, but merged over a GGUF base (an adapter config cannot name a GGUF
    file for from_pretrained)."""
    m = cfg.model
    if m.lora_r == 0:
        return "full"
    if m.save_adapter is None:
        return "merged" if is_gguf(m.model) else "adapter"
    return "adapter" if m.save_adapter else "merged"


def weights_lines(cfg: TrainConfig) -> list[str]:
    """The card's section on the folder's weights: which files, and the code that loads them."""
    form, base, r = weights_form(cfg), cfg.model.model, cfg.model.lora_r
    here = cfg.optim.output_dir
    whole = [f'Load it with `AutoModelForCausalLM.from_pretrained("{here}")` (no PEFT needed).']
    if form == "full":
        return [
            "The whole model, every weight trained, from the base "
            f"`{base}`: `model.safetensors` (or its shards), `config.json` and the tokenizer.",
            "",
            *whole,
        ]
    if form == "merged":
        return [
            f"A LoRA adapter (r={r}) trained over `{base}` and merged into it: the whole model, "
            "`model.safetensors` (or its shards), `config.json` and the tokenizer; no adapter "
            "files. (`--save-adapter` keeps the adapter alone.)",
            "",
            *whole,
        ]
    load = (
        f'`peft.PeftModel.from_pretrained(dralign.modeling.load_model("{base}"), "{here}")` '
        "(transformers cannot name a GGUF file as an adapter's base)"
        if is_gguf(base)
        else f'`peft.AutoPeftModelForCausalLM.from_pretrained("{here}")`, which loads the base '
        f"`{base}` named in `adapter_config.json`"
    )
    return [
        f"The LoRA adapter alone (r={r}): `adapter_model.safetensors` and "
        f"`adapter_config.json`, with the tokenizer. The base model `{base}` is not in this "
        "folder.",
        "",
        f"Load it with {load}. (`--no-save-adapter` saves the adapter merged into the base as a whole model instead.)",
    ]


def model_card(
    cfg: TrainConfig,
    objective: Objective,
    data: PreferenceData,
    metrics: dict,
    steps: int,
    skipped: int,
    processes: int,
) -> str:
    preset = PRESETS[cfg.method.method]
    params = objective.parameters()
    lines = [
        f"# {Path(cfg.optim.output_dir).name}: {cfg.method.method}",
        "",
        f"Aligned with [dralign](https://pypi.org/project/dralign/) from `{cfg.model.model}` on `{cfg.data.data}`.",
        "",
        f"- method: `{cfg.method.method}` — {preset.summary}; {preset.paper}",
        f"- objective: {objective.describe()}",
        "- parameters: " + ", ".join(f"{k}={v}" for k, v in sorted(params.items())),
        f"- data: {data.report.summary()}",
        f"- steps: {steps} ({skipped} skipped as non-finite); effective batch "
        f"{cfg.optim.batch_size} x {cfg.optim.grad_accum} accumulation x {processes} processes; "
        f"lr {cfg.optim.lr}",
        "",
        "## What this folder holds",
        "",
        *weights_lines(cfg),
        "",
        "## Final metrics",
        "",
        "| metric | value |",
        "|---|---|",
        *[f"| {k} | {v:.6g} |" for k, v in metrics.items() if isinstance(v, float)],
        "",
        "The full configuration is in `config.yaml`; per-step metrics in `metrics.jsonl`; the final "
        "ones in `final_metrics.json`.",
    ]
    return "\n".join(lines) + "\n"
