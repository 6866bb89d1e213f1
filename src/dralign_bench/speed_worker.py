"""Child process of `dralign bench speed`: trains one side (TRL's DPOTrainer or dralign) or times
dralign's objectives, and writes what it measured as JSON.

    python -m dralign_bench.speed_worker SPEC.json RESULT.json

Each trainer runs in its own process so that its peak resident memory (the kernel's high-water
mark of this process's own memory, `VmHWM`, read at the end of each job) is its own: not
`getrusage`'s `ru_maxrss`, which Linux carries across `exec` from the parent that spawned the
process (the benchmark's parent holds the real workload's model, 1.17 GB, and every child's
`ru_maxrss` read at least that). Timing: the wall-clock (`perf_counter`)
and CPU (`process_time`, all threads) seconds from the end of the last warm-up step to the end of
the last step; for both trainers this covers whole loop iterations (data, forward, backward,
optimizer, logging) and excludes everything before the first step, in particular the
precomputation of reference log-probs (TRL: `precompute_ref_log_probs=True`, in
`DPOTrainer.__init__`; dralign: the reference cache, in `Trainer.__init__`).

SPEC: ``{"side": "trl" | "dralign" | "objectives", "threads": int, "jobs": [job, ...]}``, a job
being ``{"workload", "model", "data", "output_dir", "batch_size", "max_length", "lr", "seed",
"warmup", "steps"}`` (objectives: plus ``"variants"``, see `speed_sections.OBJECTIVE_VARIANTS`), and
optionally ``"device"`` ("cpu", the default, or "cuda") and ``"dtype"`` ("float32", the default,
or "bfloat16": weights in bf16 and bf16 autocast for both trainers, as `dralign_bench.gpu` runs
them). On a GPU each result also carries the peak GPU memory (`torch.cuda.max_memory_allocated`).
"""

from __future__ import annotations

import json
import resource
import statistics
import sys
import time
from pathlib import Path


def peak_rss_mb() -> float:
    """This process's own peak resident set size so far, in MiB: `VmHWM` of /proc/self/status
    (this address space's high-water mark, reset by `exec`); `ru_maxrss` where there is no /proc
    (it also counts the memory of the parent at the spawn: see the module docstring)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1 << 20) if sys.platform == "darwin" else peak / 1024


class StepClock:
    """Wall and CPU clock readings at the end of every optimizer step."""

    def __init__(self):
        self.wall: list[float] = []
        self.cpu: list[float] = []

    def tick(self) -> None:
        self.wall.append(time.perf_counter())
        self.cpu.append(time.process_time())

    def window(self, warmup: int) -> dict:
        """Seconds from the end of step `warmup` to the end of the last step, and per step."""
        if len(self.wall) <= warmup:
            raise RuntimeError(f"only {len(self.wall)} steps ran; need more than {warmup} warm-up steps")
        steps = len(self.wall) - warmup
        wall = self.wall[-1] - self.wall[warmup - 1] if warmup else self.wall[-1] - self._start_wall
        cpu = self.cpu[-1] - self.cpu[warmup - 1] if warmup else self.cpu[-1] - self._start_cpu
        per_step = [b - a for a, b in zip(self.wall[max(warmup - 1, 0) :], self.wall[warmup:])]
        return {
            "timed_steps": steps,
            "wall_s": wall,
            "cpu_s": cpu,
            "median_step_s": statistics.median(per_step) if per_step else wall / steps,
        }

    def start(self) -> None:
        self._start_wall, self._start_cpu = time.perf_counter(), time.process_time()


# ----------------------------------------------------------------------------- TRL
def run_trl(job: dict) -> dict:
    """TRL 1.16's DPOTrainer on the job's model and data, reference log-probs precomputed."""
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import DPOConfig, DPOTrainer

    clock = StepClock()

    class Clock(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            clock.start()

        def on_step_end(self, args, state, control, **kwargs):
            clock.tick()

    rows = [json.loads(line) for line in Path(job["data"]).read_text().splitlines() if line]
    dataset = Dataset.from_list([{k: r[k] for k in ("prompt", "chosen", "rejected")} for r in rows])
    bf16 = job.get("dtype", "float32") == "bfloat16"
    model = AutoModelForCausalLM.from_pretrained(
        job["model"], dtype=torch.bfloat16 if bf16 else torch.float32, attn_implementation="sdpa"
    )
    tokenizer = AutoTokenizer.from_pretrained(job["model"])
    peft_config = None
    if job.get("lora_r"):  # the adapter dralign's --lora-r puts on: every linear layer but the head
        from peft import LoraConfig

        peft_config = LoraConfig(
            r=job["lora_r"], lora_alpha=16, lora_dropout=0.0, target_modules="all-linear", task_type="CAUSAL_LM"
        )
    args = DPOConfig(
        output_dir=job["output_dir"],
        per_device_train_batch_size=job["batch_size"],
        gradient_accumulation_steps=1,
        max_steps=job["warmup"] + job["steps"],
        learning_rate=job["lr"],
        lr_scheduler_type="constant",
        warmup_steps=0,
        weight_decay=0.0,
        max_grad_norm=1.0,
        optim="adamw_torch",
        seed=job["seed"],
        data_seed=job["seed"],
        bf16=bf16,
        fp16=False,
        gradient_checkpointing=False,
        use_cpu=job.get("device", "cpu") == "cpu",
        precompute_ref_log_probs=True,
        precompute_ref_batch_size=2 * job["batch_size"],
        max_length=job["max_length"],
        beta=0.1,
        loss_type=["sigmoid"],
        report_to="none",
        save_strategy="no",
        disable_tqdm=True,
        dataloader_num_workers=0,
    )
    t0 = time.perf_counter()
    trainer = DPOTrainer(
        model=model,
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
        callbacks=[Clock()],
        peft_config=peft_config,
    )
    setup_s = time.perf_counter() - t0
    prepared = trainer.train_dataset
    tokens = sum(
        len(p) + len(c) + len(r)
        for p, c, r in zip(prepared["prompt_ids"], prepared["chosen_ids"], prepared["rejected_ids"])
    )
    trainer.train()
    return {**clock.window(job["warmup"]), "setup_s": setup_s, "tokens": tokens, "examples": len(prepared)}


# ----------------------------------------------------------------------------- dralign
def _train_config(job: dict, **overrides):
    from dralign.config import build
    from dralign.train.config import TrainConfig

    values = {
        "model": job["model"],
        "data": job["data"],
        "output_dir": job["output_dir"],
        "batch_size": job["batch_size"],
        "max_length": job["max_length"],
        "lr": job["lr"],
        "seed": job["seed"],
        "max_steps": job["warmup"] + job["steps"],
        "optimizer": "adamw",
        "scheduler": "constant",
        "max_grad_norm": 1.0,
        "dtype": job.get("dtype", "float32"),
        "mixed_precision": "bf16" if job.get("dtype") == "bfloat16" else "no",
        "attn_implementation": "sdpa",
        "progress": False,
        "ref_cache_dir": job.get("ref_cache_dir"),
    }
    values.update(overrides)
    return build(TrainConfig, {k: v for k, v in values.items() if v is not None})


def run_dralign(job: dict) -> dict:
    """dralign's trainer (preset dpo) on the job's model and data, reference log-probs cached."""
    import torch

    from dralign.train import Recipe
    from dralign_bench.speed_flops import matmul_peak, plain_flops_per_pair, step_flops

    device, bf16 = job.get("device", "cpu"), job.get("dtype") == "bfloat16"
    peak = matmul_peak(
        torch.get_num_threads(),
        n=job.get("matmul_n", 1024),  # before, untimed
        dtype=torch.bfloat16 if bf16 else torch.float32,
        device=device,
    )
    clock = StepClock()
    t0 = time.perf_counter()
    trainer = Recipe(_train_config(job, **job.get("train_options", {})), callbacks=[lambda step, record: clock.tick()])
    setup_s = time.perf_counter() - t0
    clock.start()
    trainer.run()
    window = clock.window(job["warmup"])
    total = job["warmup"] + job["steps"]
    flops = sum(step_flops(trainer, step) for step in range(job["warmup"], total))
    data = trainer.train_data
    tokens = sum(len(e.prompt_ids) + len(e.chosen_ids) + len(e.rejected_ids) for e in data.examples)
    return {
        **window,
        "setup_s": setup_s,
        "tokens": tokens,
        "examples": len(data),
        "model_flops": flops,
        "plain_flops_per_pair": plain_flops_per_pair(trainer),
        "prefix_sharing": trainer.prefix_sharing,
        "matmul_peak_flops_per_s": peak,
    }


# ----------------------------------------------------------------------------- objectives
def run_objectives(job: dict) -> dict:
    """Round-robin step times of dralign's trainer under several methods on the same batches."""
    from dralign.train import Recipe

    trainers = {}
    for name, options in job["variants"].items():
        cfg = _train_config(
            {**job, "output_dir": str(Path(job["output_dir"]) / name)}, **{**job.get("train_options", {}), **options}
        )
        trainers[name] = Recipe(cfg)
    wall = {name: [] for name in trainers}
    cpu = {name: [] for name in trainers}
    warmup_s = {name: 0.0 for name in trainers}
    for step in range(job["warmup"] + job["steps"]):
        for name, trainer in trainers.items():  # alternate, so that load hits every method alike
            w0, c0 = time.perf_counter(), time.process_time()
            trainer.step(step)
            if step >= job["warmup"]:
                wall[name].append(time.perf_counter() - w0)
                cpu[name].append(time.process_time() - c0)
            else:
                warmup_s[name] += time.perf_counter() - w0
    from dralign_bench.speed_flops import step_flops

    timed = range(job["warmup"], job["warmup"] + job["steps"])
    return {
        "step_s": {n: statistics.median(v) for n, v in wall.items()},
        "warmup_s": warmup_s,
        "cpu_step_s": {n: statistics.median(v) for n, v in cpu.items()},
        "model_flops_per_step": {n: sum(step_flops(t, s) for s in timed) / len(timed) for n, t in trainers.items()},
        "prefix_sharing": {n: t.prefix_sharing for n, t in trainers.items()},
        "exact": {n: t.exact for n, t in trainers.items()},
    }


SIDES = {"trl": run_trl, "dralign": run_dralign, "objectives": run_objectives}


def main(argv: list[str] | None = None) -> int:
    spec_file, result_file = (argv if argv is not None else sys.argv[1:])[:2]
    spec = json.loads(Path(spec_file).read_text())
    import torch

    torch.set_num_threads(int(spec["threads"]))
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    results = []
    for job in spec["jobs"]:
        result = SIDES[spec["side"]]({**job, "matmul_n": spec.get("matmul_n", 1024)})
        result.update(workload=job.get("workload"), peak_rss_mb=peak_rss_mb())
        if job.get("device", "cpu") != "cpu":
            result["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / (1 << 20)
        results.append(result)
    Path(result_file).write_text(
        json.dumps({"side": spec["side"], "results": results, "threads": torch.get_num_threads()})
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
