"""The model card written beside the final model (README.md of the output folder)."""

from __future__ import annotations

from pathlib import Path

from ..data import PreferenceData
from ..objectives import Objective
from ..objectives.presets import PRESETS
from .config import TrainConfig


def model_card(cfg: TrainConfig, objective: Objective, data: PreferenceData, metrics: dict,
               steps: int, skipped: int, processes: int) -> str:
    preset = PRESETS[cfg.method.method]
    params = objective.parameters()
    lines = [
        f"# {Path(cfg.optim.output_dir).name}: {cfg.method.method}",
        "",
        f"Aligned with [dralign](https://pypi.org/project/dralign/) from `{cfg.model.model}` on "
        f"`{cfg.data.data}`.",
        "",
        f"- method: `{cfg.method.method}` — {preset.summary}; {preset.paper}",
        f"- objective: {objective.describe()}",
        "- parameters: " + ", ".join(f"{k}={v}" for k, v in sorted(params.items())),
        f"- data: {data.report.summary()}",
        f"- steps: {steps} ({skipped} skipped as non-finite); effective batch "
        f"{cfg.optim.batch_size} x {cfg.optim.grad_accum} accumulation x {processes} processes; "
        f"lr {cfg.optim.lr}",
        "" if cfg.model.lora_r == 0 else f"- LoRA adapter r={cfg.model.lora_r}: load with PEFT on the base model",
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
