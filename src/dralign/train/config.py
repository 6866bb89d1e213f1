"""The training configuration. Every field is a YAML key and a `dralign train` flag."""

from __future__ import annotations

from dataclasses import dataclass, make_dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from ..config import SEED_RANGE, Range, option, to_flat_dict
from ..data.options import ReadOptions, SharingOption
from ..errors import BadOptionError
from ..lengths import LengthOption

# one help for every --dtype (train, eval): what "auto" resolves to is said where it is shown
DTYPE_HELP = (
    "weights dtype when loading: auto = the checkpoint's own (float32 for a GGUF file, "
    "whose quantised blocks are dequantised)"
)


@dataclass
class ModelOptions:
    """Model, reference and adapters."""

    model: str | None = option(
        None,
        "causal LM: a local folder, a Hugging Face hub name or a GGUF file (dequantised at load; needs dralign[gguf])",
    )
    ref_model: str | None = option(
        None, "reference model, a folder, hub name or GGUF file (default: the start weights of --model)"
    )
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = option("auto", DTYPE_HELP)
    attn_implementation: str | None = option(
        None, "attention kernel: eager, sdpa, flash_attention_2 (default: the model's)"
    )
    gradient_checkpointing: bool | None = option(
        None,
        "recompute activations in backward to save memory (default: on for LoRA on CPU, where activations are most of the peak memory; off otherwise, and with --compile or WDPO's penalty)",
    )
    compile: bool = option(
        False,
        "torch.compile each transformer block (dynamic shapes); the first steps pay the compilation (see docs/benchmarks/speed.md); refused for WDPO's exact penalty and on a CPU without a C++ compiler",
    )
    lora_r: int = option(0, "LoRA rank; 0 trains all weights", Range(0))
    lora_alpha: float = option(16.0, "LoRA scaling alpha", Range(0, low_open=True))
    lora_dropout: float = option(0.0, "LoRA dropout", Range(0, 1, high_open=True))
    lora_target_modules: list[str] | None = option(None, "module names to adapt (default: all linear layers)")
    save_adapter: bool | None = option(
        None,
        "LoRA: save the adapter alone (adapter_model.safetensors + adapter_config.json, loaded with PEFT over the base) or, with --no-save-adapter, merged into the base as a whole model (default: alone over a folder or hub model; merged over a GGUF file, which an adapter config cannot name for from_pretrained)",
    )
    ref_cache: bool = option(
        True,
        "precompute reference log-probs once into a cache keyed by model+data+tokenisation; the reference model is then never held during training",
    )
    ref_cache_dir: str | None = option(None, "where reference caches live (default: OUTPUT_DIR/ref_cache)")


@dataclass
class DataOptions(ReadOptions, SharingOption):
    """Preference data."""

    data: str | None = option(None, "JSONL/JSON/Parquet/CSV (.gz ok), a save_to_disk folder, or a hub dataset name")
    data_split: str = option("train", "split to train on")
    eval_data: str | None = option(None, "held-out file or folder (default: --eval-split of --data if it exists)")
    eval_split: str | None = option(None, "held-out split name of --data")
    eval_fraction: float = option(
        0.0, "hold out this fraction of the training rows for evaluation", Range(0, 1, high_open=True)
    )
    ratio_target: list[str] | None = option(
        None,
        "dora without ratio columns: the source value(s) of the target distribution; density ratios are then cross-fitted inline on the start model's features from --source-column",
    )
    packing: Literal["auto", "on", "off"] = option(
        "auto",
        "pack several prefix-shared pairs into one row (first-fit up to the batch's longest pair; positions restart per pair, block-diagonal mask), so no compute goes to padding; same log-probs; auto = on whenever prefix sharing is on",
    )
    penalty_layout: Literal["per_sequence", "shared"] = option(
        "per_sequence",
        "WDPO's penalty: per_sequence (the authors': chosen and rejected rows each with their own copy of the prompt, the plain layout) or shared (one prompt copy per pair, perturbed once; prefix-shared layout, about 2x a dpo step instead of up to 2.7x; see dralign.train.penalty)",
    )
    group_by_length: bool = option(
        False,
        "batch examples of similar length together (less padding); the batch order stays a function of the seed and epoch",
    )


def _method_options() -> type:
    """The method section: a preset, optional overrides of its four choices, and one optional
    flag per method parameter — derived from `dralign.objectives.parameters()`, where each
    parameter's default, range and help live (unset = the preset's default)."""
    from ..objectives import parameters
    from ..objectives.presets import TABLES  # the component tables: a new piece shows up here

    fields: list[tuple[str, Any, Any]] = [  # (name, type, field): make_dataclass's spec
        ("method", str, option("dpo", "preset name (see `dralign methods`)")),
        *[
            (choice, str | None, option(None, f"override the preset's {what}: {', '.join(TABLES[choice])}"))
            for choice, what in (
                ("divergence", "score"),
                ("coupling", "coupling"),
                ("link", "link"),
                ("robust", "aggregation"),
            )
        ],
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

    def objective(self):
        """The `Objective` these options name; BadOptionError naming the method when refused."""
        from ..objectives import Objective

        try:
            return Objective.from_preset(self.method, **self.objective_kwargs())
        except ValueError as err:  # the preset and its overrides are options: say which
            raise BadOptionError(f"method {self.method!r}: {err}") from None

    return make_dataclass(
        "MethodOptions",
        fields,
        namespace={
            "objective_kwargs": objective_kwargs,
            "objective": objective,
            "__doc__": "Method: a preset and its parameters (unset = the preset's default).",
        },
    )


if TYPE_CHECKING:  # built by make_dataclass (its fields are the objective's parameters): opaque to the checker
    MethodOptions = Any
else:
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
    sharding: Literal["none", "fsdp2"] = option(
        "none",
        "fsdp2: shard weights, gradients and optimizer state over the processes with FSDP2 (each decoder layer, then the root); launch with torchrun (docs/launch/fsdp2-multinode.sh)",
    )
    global_batch: Literal["auto", "exact", "local"] = option(
        "auto",
        "robust statistics over the effective batch (exact) or per micro-batch (local); auto = exact when the objective couples examples",
    )
    seed: int = option(0, "seed of data order and initialisation", SEED_RANGE)
    max_bad_steps: int = option(5, "abort after this many consecutive non-finite steps", Range(1))


@dataclass
class LoggingOptions(LengthOption):
    """Logging, evaluation and checkpoints."""

    log_every: int = option(1, "write metrics every N steps", Range(1))
    eval_every: int = option(0, "evaluate on the held-out set every N steps (0: only at the end)", Range(0))
    save_every: int = option(0, "write a checkpoint every N steps (0: only at the end)", Range(0))
    resume: bool = option(
        False,
        "continue the run in --output-dir from its newest complete checkpoint (same method, data, model and seed)",
    )
    overwrite: bool = option(False, "replace the run that --output-dir holds (its reference cache is kept)")
    report_to: Literal["none", "tensorboard", "wandb"] = option("none", "also log to this tracker")
    progress: bool = option(
        True,
        "show progress: a bar on a terminal; when stdout is not one (nohup, a log file), a plain line every --progress-every seconds for each long phase",
    )
    progress_every: float = option(30.0, "seconds between two progress lines when stdout is not a terminal", Range(0))


@dataclass
class TrainConfig:
    """Every option of `dralign train`, one section dataclass per option group (the flags and YAML
    keys derive from their fields)."""

    model: ModelOptions
    data: DataOptions
    method: MethodOptions
    optim: OptimOptions
    logging: LoggingOptions

    def cache_dir(self) -> Path:
        """The one place the cache folder is chosen: reference log-probs, and tokenised data in
        its `data/` (both keyed by content, so kept by --overwrite)."""
        return Path(self.model.ref_cache_dir or Path(self.optim.output_dir) / "ref_cache")


def tracker_config(cfg: TrainConfig) -> dict:
    """The resolved options as one flat mapping of scalars (`section/option`): TensorBoard's
    hparams take int, float, str or bool only (a list or None made `--report-to tensorboard` fail)."""
    flat = {}
    for section, options in to_flat_dict(cfg).items():
        for name, value in options.items():
            scalar = isinstance(value, (int, float, str, bool))
            flat[f"{section}/{name}"] = value if scalar else ("" if value is None else str(value))
    return flat
