"""`make bench-gpu`: dralign vs TRL 1.16's DPOTrainer in bf16 on one GPU, on a real-size model.

    python -m dralign_bench.gpu [--shape qwen2-0.5b|smollm2-135m] [--json outputs/bench-gpu.json]
    python -m dralign_bench.gpu --device cpu --tiny      # the same script on CPU, in seconds

What runs (each trainer in its own subprocess, `dralign_bench.speed_worker`, as in
`dralign bench speed`):

- a random-init model of the shape of a real one (`SHAPES`; nothing is downloaded), with the
  4,096-token tokenizer of the speed benchmark and an embedding / output layer of the real
  vocabulary size (token ids stay below 4,096; the cost depends only on the number of rows);
- the balanced workload of the speed benchmark (prompt ≈ response ≈ max_length/4);
- both trainers with bf16 weights and bf16 autocast, SDPA attention, AdamW, constant LR,
  clipping 1.0, reference log-probs precomputed (TRL: `precompute_ref_log_probs`; dralign: its
  cache), the same batch size, max length and number of timed steps after warm-up.

Reported: pairs/s of each, the peak GPU memory of each (`torch.cuda.max_memory_allocated` in
its process), dralign's model FLOP/s (`dralign_bench.speed_flops`) and its MFU against a bf16
8192×8192 matmul peak measured in the same run. On CPU (`--device cpu`) the peak is a float32
or bf16 matmul on the CPU and "GPU memory" is absent.

With ≥ 2 GPUs visible, also an FSDP equivalence check (`fsdp_check`): one SGD step of kldpo
with batch 8 in one process against `accelerate launch` FSDP (version 2, 2 processes, batch 4
each); the saved weights must agree (max abs difference ≤ `FSDP_TOL` × the update's max).
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import torch

from dralign.config import Range, atomic_write_text, option, parse

from .speed import SpeedOptions, run_child
from .speed_data import build_world

# config values of the real models (their config.json), random weights here
SHAPES = {
    "qwen2-0.5b": {
        "model_type": "qwen2",
        "vocab_size": 151936,
        "hidden_size": 896,
        "intermediate_size": 4864,
        "num_hidden_layers": 24,
        "num_attention_heads": 14,
        "num_key_value_heads": 2,
        "tie_word_embeddings": True,
        "rope_theta": 1000000.0,
        "rms_norm_eps": 1e-6,
        "max_position_embeddings": 32768,
    },
    "smollm2-135m": {
        "model_type": "llama",
        "vocab_size": 49152,
        "hidden_size": 576,
        "intermediate_size": 1536,
        "num_hidden_layers": 30,
        "num_attention_heads": 9,
        "num_key_value_heads": 3,
        "tie_word_embeddings": True,
        "rope_theta": 100000.0,
        "rms_norm_eps": 1e-5,
        "max_position_embeddings": 8192,
    },
    "tiny": {
        "model_type": "llama",
        "vocab_size": 8192,
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "num_key_value_heads": 1,
        "tie_word_embeddings": True,
        "max_position_embeddings": 512,
    },
}
FSDP_TOL = 1e-3  # relative to the largest weight change: reductions differ in order across layouts

FSDP_CONFIG = """\
compute_environment: LOCAL_MACHINE
distributed_type: FSDP
num_machines: 1
num_processes: 2
mixed_precision: 'no'
fsdp_config:
  fsdp_version: 2
  fsdp_auto_wrap_policy: TRANSFORMER_BASED_WRAP
  fsdp_state_dict_type: FULL_STATE_DICT
  fsdp_cpu_ram_efficient_loading: false
  fsdp_reshard_after_forward: true
  fsdp_activation_checkpointing: false
"""


@dataclass
class GpuOptions:
    """The GPU benchmark: a real model's shape, random weights, timed training steps."""

    device: Literal["cuda", "cpu"] = option("cuda", "where to run")
    tiny: bool = option(False, "a tiny model and 2 steps (a smoke test, not a measurement)")
    shape: Literal[tuple(sorted(SHAPES))] = option("qwen2-0.5b", "the real model whose shape is used")
    dtype: Literal["bfloat16", "float32"] = option("bfloat16", "weights dtype")
    batch_size: int = option(8, "pairs per step", Range(1))
    max_length: int = option(1024, "tokens per sequence", Range(2))
    warmup: int = option(3, "untimed steps first", Range(0))
    steps: int = option(10, "timed steps", Range(1))
    threads: int = option(max(1, min(8, os.cpu_count() or 1)), "CPU threads", Range(1))
    fsdp: Literal["auto", "off"] = option("auto", "auto: the FSDP check when >= 2 GPUs are visible")
    json: str = option("outputs/bench-gpu.json", "where the results go")
    work_dir: str | None = option(None, "default: a temporary folder, removed after")


@dataclass
class GpuConfig:
    gpu: GpuOptions


def parse_args(argv: list[str] | None = None) -> GpuOptions:
    """The options of `python -m dralign_bench.gpu` (typed, range-checked, no abbreviations)."""
    args = parse(GpuConfig, argv, "python -m dralign_bench.gpu", __doc__.splitlines()[0]).gpu
    if args.tiny:
        args = dataclasses.replace(args, shape="tiny", batch_size=2, max_length=64, warmup=1, steps=2)
    return args


def save_model(shape: str, tokenizer_dir: Path, folder: Path, seed: int = 0, max_length: int = 1024) -> dict:
    """A random-init model of `shape` with the tokenizer of `tokenizer_dir`, saved to `folder`."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    values = dict(SHAPES[shape])
    values["max_position_embeddings"] = max(values["max_position_embeddings"], max_length)
    config = AutoConfig.for_model(
        values.pop("model_type"),
        **values,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, attn_implementation="sdpa")
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return {
        "shape": shape,
        "parameters": sum(p.numel() for p in model.parameters()),
        "vocab_size": config.vocab_size,
        "hidden": config.hidden_size,
        "layers": config.num_hidden_layers,
        "architecture": config.model_type,
    }


def compare(args, options: SpeedOptions, world: dict, model_dir: Path, root: Path, log) -> dict:
    """Run TRL then dralign on the balanced data; their pairs/s, peak memory and dralign's MFU."""
    cpu = args.device == "cpu"
    job = {
        "workload": "balanced",
        "model": str(model_dir),
        "data": world["files"]["balanced"],
        "batch_size": args.batch_size,
        "max_length": args.max_length,
        "lr": 1e-6,
        "seed": 0,
        "warmup": args.warmup,
        "steps": args.steps,
        "device": args.device,
        "dtype": args.dtype,
    }
    out = {}
    for side in ("trl", "dralign"):
        log(f"{side}: training {args.warmup} + {args.steps} steps")
        (r,) = run_child(
            side,
            [{**job, "output_dir": str(root / "runs" / side), "ref_cache_dir": str(root / "ref_cache" / side)}],
            options,
            root,
            side,
            matmul_n=256 if cpu else 8192,
            cpu=cpu,
        )
        out[side] = r
    dra, trl = out["dralign"], out["trl"]
    pairs = lambda r: args.batch_size * r["timed_steps"] / r["wall_s"]
    result = {
        "dralign_pairs_per_s": pairs(dra),
        "trl_pairs_per_s": pairs(trl),
        "ratio_vs_trl": pairs(dra) / pairs(trl),
        "dralign_peak_gpu_mb": dra.get("peak_gpu_mb"),
        "trl_peak_gpu_mb": trl.get("peak_gpu_mb"),
        "dralign_peak_rss_mb": dra["peak_rss_mb"],
        "trl_peak_rss_mb": trl["peak_rss_mb"],
        "dralign_model_flops_per_s": dra["model_flops"] / dra["wall_s"],
        "matmul_peak_flops_per_s": dra["matmul_peak_flops_per_s"],
        "dralign_prefix_sharing": dra["prefix_sharing"],
        "timed_steps_each": dra["timed_steps"],
        "tokens_identical": dra["tokens"] == trl["tokens"],
        "dralign_setup_s": dra["setup_s"],
        "trl_setup_s": trl["setup_s"],
        **world["stats"]["balanced"],
    }
    result["dralign_mfu"] = result["dralign_model_flops_per_s"] / result["matmul_peak_flops_per_s"]
    return result


def _weights(folder: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(folder / "model.safetensors"))


def fsdp_commands(model: str, ref_model: str, data: str, root: Path, max_length: int) -> tuple[list, list]:
    """The one-process and the two-process FSDP `dralign train` commands of the equivalence check
    (one SGD step of kldpo, float32, batch 8 = 2 × 4)."""
    common = [
        "train",
        "--model",
        model,
        "--ref-model",
        ref_model,
        "--data",
        data,
        "--method",
        "kldpo",
        "--no-progress",
        "--max-length",
        str(max_length),
        "--optimizer",
        "sgd",
        "--max-steps",
        "1",
        "--scheduler",
        "constant",
        "--max-grad-norm",
        "0",
        "--dtype",
        "float32",
        "--lr",
        "0.05",
    ]
    config = root / "fsdp2.yaml"
    config.write_text(FSDP_CONFIG)
    accelerate = Path(sys.executable).with_name("accelerate")
    launcher = [str(accelerate)] if accelerate.exists() else [sys.executable, "-m", "accelerate.commands.launch"]
    one = [sys.executable, "-m", "dralign.cli", *common, "--batch-size", "8", "--output-dir", str(root / "fsdp-one")]
    two = [
        *launcher,
        "launch",
        "--config_file",
        str(config),
        "--main_process_port",
        "29517",
        "-m",
        "dralign.cli",
        *common,
        "--batch-size",
        "4",
        "--output-dir",
        str(root / "fsdp-two"),
    ]
    return one, two


def fsdp_check(model: str, ref_model: str, data: str, root: Path, max_length: int, log) -> dict:
    """Two FSDP processes against one: the max abs difference of the saved weights."""
    one, two = fsdp_commands(model, ref_model, data, root, max_length)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    env.pop("ACCELERATE_USE_CPU", None)
    runs = {}
    for name, cmd, gpus in (("one", one, "0"), ("two", two, "0,1")):
        log(f"fsdp check: {name} process(es)")
        t0 = time.perf_counter()
        proc = subprocess.run(
            cmd, env={**env, "CUDA_VISIBLE_DEVICES": gpus}, capture_output=True, text=True, timeout=300
        )
        runs[name] = {
            "returncode": proc.returncode,
            "seconds": time.perf_counter() - t0,
            "tail": (proc.stdout[-1500:] + proc.stderr[-3000:]) if proc.returncode else "",
        }
    out = {"runs": runs, "command_two": " ".join(two)}
    if any(r["returncode"] for r in runs.values()):
        return {**out, "equivalent": False, "error": "a run failed; see runs[...].tail"}
    a, b, start = _weights(root / "fsdp-one"), _weights(root / "fsdp-two"), _weights(Path(model))
    diff = max((a[k].float() - b[k].float()).abs().max().item() for k in a)
    update = max((a[k].float() - start[k].float()).abs().max().item() for k in a)
    return {
        **out,
        "max_abs_diff": diff,
        "max_update": update,
        "equivalent": diff <= FSDP_TOL * update,
        "same_keys": a.keys() == b.keys(),
    }


def _print(results: dict) -> None:
    c = results["compare"]
    mb = lambda v: "-" if v is None else f"{v:.0f}"
    print(f"\n{'':10} {'pairs/s':>9} {'peak GPU MB':>12} {'peak RSS MB':>12}")
    for side in ("dralign", "trl"):
        print(
            f"{side:10} {c[side + '_pairs_per_s']:9.2f} {mb(c[side + '_peak_gpu_mb']):>12} "
            f"{mb(c[side + '_peak_rss_mb']):>12}"
        )
    print(
        f"ratio dralign / TRL: {c['ratio_vs_trl']:.2f}x; dralign {c['dralign_model_flops_per_s'] / 1e12:.2f} "
        f"TFLOP/s = MFU {100 * c['dralign_mfu']:.1f}% of a measured {results['matmul_dtype']} matmul peak "
        f"of {c['matmul_peak_flops_per_s'] / 1e12:.2f} TFLOP/s"
    )
    f = results.get("fsdp")
    if f:
        print(
            f"FSDP check: {f.get('equivalent')} (max abs diff {f.get('max_abs_diff')}, update {f.get('max_update')})"
            if "skipped" not in f
            else f"FSDP check skipped: {f['skipped']}"
        )


def run(args: GpuOptions, log=print) -> dict:
    """The whole script: build, compare, FSDP check (≥ 2 GPUs), JSON."""
    import shutil

    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit(
            "no GPU visible (torch.cuda.is_available() is False); use --device cpu --tiny to try the script"
        )
    t0 = time.perf_counter()
    created = args.work_dir is None
    root = Path(tempfile.mkdtemp(prefix="dralign-gpu-")) if created else Path(args.work_dir)
    root.mkdir(parents=True, exist_ok=True)
    try:
        options = replace(
            SpeedOptions(),
            workloads=["balanced"],
            layers=1,
            hidden=64,
            batch_size=args.batch_size,
            max_length=args.max_length,
            warmup=args.warmup,
            steps=args.steps,
            objective_steps=1,
            threads=args.threads,
            seed=0,
        )
        log(f"building the data and a random-init {args.shape}-shaped model in {root}")
        world = build_world(options, root)
        model_dir = root / "model_gpu"
        info = save_model(args.shape, Path(world["model"]), model_dir, max_length=args.max_length)
        gpu = args.device == "cuda"
        device = torch.cuda.get_device_name(0) if gpu else platform.processor() or platform.machine()
        results = {
            "settings": vars(args),
            "model": info,
            "matmul_dtype": args.dtype if gpu else f"{args.dtype} (CPU)",
            "machine": {
                "device": device,
                "gpus": torch.cuda.device_count(),
                "torch": torch.__version__,
                "python": platform.python_version(),
            },
        }
        results["compare"] = compare(args, options, world, model_dir, root, log)
        if args.fsdp == "off":
            results["fsdp"] = {"skipped": "--fsdp off"}
        elif args.device != "cuda" or torch.cuda.device_count() < 2:
            results["fsdp"] = {"skipped": f"needs ≥ 2 GPUs ({torch.cuda.device_count()} visible, device {args.device})"}
        else:
            ref_dir = root / "model_gpu_ref"
            save_model(args.shape, Path(world["model"]), ref_dir, seed=1, max_length=args.max_length)
            results["fsdp"] = fsdp_check(
                str(model_dir), str(ref_dir), world["files"]["balanced"], root, args.max_length, log
            )
        results["elapsed_s"] = time.perf_counter() - t0
        _print(results)
        if args.json:
            Path(args.json).parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(args.json, json.dumps(results, indent=2) + "\n")
            log(f"results written to {args.json} ({results['elapsed_s']:.0f} s)")
        return results
    finally:
        if created:
            shutil.rmtree(root, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    run(parse_args(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
