"""The training configuration. Every field is a YAML key and a `dralign train` flag."""

from __future__ import annotations

from dataclasses import dataclass, make_dataclass
from typing import Literal

from ..config import Range, option


@dataclass
class ModelOptions:
    """Model, reference and adapters."""

    model: str | None = option(None, "causal LM: a local folder or a Hugging Face hub name")
    ref_model: str | None = option(None, "reference model (default: the start weights of --model)")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = option("auto", "weights dtype when loading")
    attn_implementation: str | None = option(None, "attention kernel: eager, sdpa, flash_attention_2 (default: the model's)")
    gradient_checkpointing: bool = option(False, "recompute activations in backward to save memory")
    lora_r: int = option(0, "LoRA rank; 0 trains all weights", Range(0))
    lora_alpha: float = option(16.0, "LoRA scaling alpha", Range(0, low_open=True))
    lora_dropout: float = option(0.0, "LoRA dropout", Range(0, 1, high_open=True))
    lora_target_modules: list[str] | None = option(None, "module names to adapt (default: all linear layers)")
    ref_cache: bool = option(True, "precompute reference log-probs once into a cache keyed by model+data+tokenisation; the reference model is then never held during training")
    ref_cache_dir: str | None = option(None, "where reference caches live (default: OUTPUT_DIR/ref_cache)")


@dataclass
class DataOptions:
    """Preference data."""

    data: str | None = option(None, "JSONL/JSON/Parquet/CSV (.gz ok), a save_to_disk folder, or a hub dataset name")
    data_subset: str | None = option(None, "hub dataset subset/config name")
    data_split: str = option("train", "split to train on")
    eval_data: str | None = option(None, "held-out file or folder (default: --eval-split of --data if it exists)")
    eval_split: str | None = option(None, "held-out split name of --data")
    eval_fraction: float = option(0.0, "hold out this fraction of the training rows for evaluation", Range(0, 1, high_open=True))
    format: Literal["auto", "explicit", "implicit", "conversational", "unpaired"] = option("auto", "row format")
    prompt_column: str = option("prompt", "column holding the prompt")
    chosen_column: str = option("chosen", "column holding the chosen response")
    rejected_column: str = option("rejected", "column holding the rejected response")
    completion_column: str = option("completion", "column holding an unpaired completion")
    label_column: str = option("label", "column holding an unpaired label (true = desirable)")
    weight_column: str = option("weight", "optional column of per-row weights")
    group_column: str = option("group", "optional column of group names (group-dro)")
    source_column: str = option("source", "optional column of row sources (dora)")
    target_prob_column: str = option("target_prob", "optional column of P(target | x, y) (dora)")
    ratio_column: str = option("ratio", "optional column of density ratios h (dora)")
    ratio_target: list[str] | None = option(None, "dora without ratio columns: the source value(s) of the target distribution; density ratios are then cross-fitted inline on the start model's features from --source-column")
    max_length: int = option(512, "max tokens of prompt + completion", Range(2))
    max_prompt_length: int | None = option(None, "max prompt tokens (default: as many as fit)", Range(1))
    truncation_side: Literal["left", "right"] = option("left", "which side of a long prompt to cut")
    long_prompts: Literal["cut", "strict"] = option("cut", "a prompt that leaves no room for the completion: cut it to --max-prompt-length (default half of --max-length) and count it, or refuse the row (strict)")
    on_bad_row: Literal["error", "skip"] = option("error", "what to do with invalid rows")
    prefix_sharing: Literal["auto", "on", "off"] = option("auto", "score chosen and rejected in one sequence [prompt | chosen | rejected] with a 4-D attention mask, so the prompt is computed once (same log-probs up to float rounding); auto = on for paired objectives when the model supports it and the prompts are long enough to pay (never for WDPO's penalty)")
    packing: Literal["auto", "on", "off"] = option("auto", "pack several prefix-shared pairs into one row (first-fit up to the batch's longest pair; positions restart per pair, block-diagonal mask), so no compute goes to padding; same log-probs; auto = on whenever prefix sharing is on")
    penalty_layout: Literal["per_sequence", "shared"] = option("per_sequence", "WDPO's penalty: per_sequence (the authors': chosen and rejected rows each with their own copy of the prompt, the plain layout) or shared (one prompt copy per pair, perturbed once; prefix-shared layout, about 2x a dpo step instead of up to 2.7x; see dralign.train.penalty)")
    group_by_length: bool = option(False, "batch examples of similar length together (less padding); the batch order stays a function of the seed and epoch")


def _method_options() -> type:
    """The method section: a preset, optional overrides of its four choices, and one optional
    flag per method parameter — derived from `dralign.objectives.parameters()`, where each
    parameter's default, range and help live (unset = the preset's default)."""
    from ..objectives import parameters
    from ..objectives.presets import TABLES  # the component tables: a new piece shows up here

    fields = [
        ("method", str, option("dpo", "preset name (see `dralign methods`)")),
        *[(choice, str | None, option(None, f"override the preset's {what}: {', '.join(TABLES[choice])}"))
          for choice, what in (("divergence", "score"), ("coupling", "coupling"), ("link", "link"),
                               ("robust", "aggregation"))],
        ("penalty", str | None, option(None, "override the penalty: none, wasserstein")),
    ]
    for name, spec in parameters().items():
        kind = Literal[spec.choices] if spec.choices else float
        presets = "".join(f"; {p} {v}" for p, v in spec.preset_defaults.items())
        where = f"; {spec.range}" if spec.range else ""
        fields.append((name, kind | None, option(None, f"{spec.help} ({spec.default}{presets}{where})")))
    fields.append(("length_normalize", bool | None, option(None, "use mean instead of summed completion log-probs")))
    names = tuple(name for name, _, _ in fields[1:])

    def objective_kwargs(self) -> dict:
        """The given overrides, as keyword arguments of `Objective.from_preset`."""
        return {n: getattr(self, n) for n in names if getattr(self, n) is not None}

    return make_dataclass("MethodOptions", fields, namespace={
        "objective_kwargs": objective_kwargs,
        "__doc__": "Method: a preset and its parameters (unset = the preset's default)."})


MethodOptions = _method_options()


@dataclass
class OptimOptions:
    """Optimisation and schedule."""

    output_dir: str = option("outputs/dralign", "where checkpoints, metrics and the model go")
    batch_size: int = option(8, "pairs per micro-batch per process", Range(1))
    grad_accum: int = option(1, "micro-batches per optimizer step", Range(1))
    max_steps: int = option(0, "optimizer steps; 0 = as many as --epochs take", Range(0))
    epochs: float = option(1.0, "passes over the data when --max-steps is 0", Range(0, low_open=True))
    lr: float = option(5e-6, "peak learning rate", Range(0, low_open=True))
    optimizer: Literal["adamw", "sgd"] = option("adamw", "optimizer")
    weight_decay: float = option(0.0, "AdamW weight decay", Range(0))
    warmup_steps: int = option(0, "linear warmup steps", Range(0))
    scheduler: Literal["cosine", "linear", "constant"] = option("cosine", "decay after warmup")
    max_grad_norm: float = option(1.0, "clip the global gradient norm; 0 disables", Range(0))
    mixed_precision: Literal["no", "bf16", "fp16"] = option("no", "autocast precision")
    global_batch: Literal["auto", "exact", "local"] = option("auto", "robust statistics over the effective batch (exact) or per micro-batch (local); auto = exact when the objective couples examples")
    seed: int = option(0, "seed of data order and initialisation")
    max_bad_steps: int = option(5, "abort after this many consecutive non-finite steps", Range(1))


@dataclass
class LoggingOptions:
    """Logging, evaluation and checkpoints."""

    log_every: int = option(1, "write metrics every N steps", Range(1))
    eval_every: int = option(0, "evaluate on the held-out set every N steps (0: only at the end)", Range(0))
    save_every: int = option(0, "write a checkpoint every N steps (0: only at the end)", Range(0))
    resume: bool = option(False, "continue the run in --output-dir from its newest complete checkpoint (same method, data, model and seed)")
    overwrite: bool = option(False, "replace the run that --output-dir holds (its reference cache is kept)")
    report_to: Literal["none", "tensorboard", "wandb"] = option("none", "also log to this tracker")
    progress: bool = option(True, "show a progress bar")


@dataclass
class TrainConfig:
    """Every option of `dralign train`, one section dataclass per option group (the flags and YAML
    keys derive from their fields)."""

    model: ModelOptions
    data: DataOptions
    method: MethodOptions
    optim: OptimOptions
    logging: LoggingOptions
