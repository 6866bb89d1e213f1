"""Sharded training with `--sharding fsdp2` (train/sharding.py) on CPU: two processes under
torchrun (gloo), FSDP2 over each decoder layer and the root. Two sharded processes give the update
of one process (dpo; kldpo's exact global batch with accumulation), a sharded run interrupted and resumed follows the uninterrupted trajectory, and the
final model is gathered into a folder that `from_pretrained` loads. WDPO's penalty is refused.

All sharded runs share one torchrun launch (tests/train/fsdp2_driver.py) so that the start-up
is paid once; the one-process runs train in this process while it runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from dralign.cli import main
from helpers import preference_rows, write_jsonl

DRIVER = Path(__file__).with_name("fsdp2_driver.py")
TOL = 1e-5  # max abs difference of updated float32 weights
SGD_ONE_STEP = dict(
    max_length=64,
    optimizer="sgd",
    max_steps=1,
    scheduler="constant",
    max_grad_norm=0.0,
    dtype="float32",
    lr=0.05,
    beta=1.0,
)
ONE_STEP_RUNS = {  # name: (method options, the sharded run's batch options; one process: batch 8)
    "dpo": ({"method": "dpo"}, {"batch_size": 4}),
    # the exact global batch over accumulation and processes, with a LoRA adapter and a held-out set
    "kldpo-lora": (
        {"method": "kldpo", "lora_r": 4, "lr": 0.5, "eval_fraction": 0.25},
        {"batch_size": 2, "grad_accum": 2},
    ),
}
RESUMED = dict(
    max_length=64,
    method="kldpo",
    optimizer="adamw",
    scheduler="cosine",
    warmup_steps=1,
    max_steps=4,
    max_grad_norm=0.5,
    dtype="float32",
    lr=1e-3,
    batch_size=2,
    grad_accum=2,
)


def weights(out: Path) -> dict[str, torch.Tensor]:
    """The saved model's weights (a LoRA run's: its adapter's)."""
    adapter = Path(out) / "adapter_model.safetensors"
    return load_file(str(adapter if adapter.exists() else Path(out) / "model.safetensors"))


def max_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max((a[k] - b[k]).abs().max().item() for k in a)


def metrics(out: Path) -> list[dict]:
    return [json.loads(line) for line in (Path(out) / "metrics.jsonl").read_text().splitlines()]


def _torchrun() -> list[str]:
    exe = Path(sys.executable).with_name("torchrun")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "torch.distributed.run"]


def _cli_args(options: dict) -> list[str]:
    args = []
    for key, value in options.items():
        args += [f"--{key.replace('_', '-')}", str(value)]
    return args


@pytest.fixture(scope="module")
def runs(tiny_model_dir, tmp_path_factory):
    """Every sharded run (one torchrun launch of 2 CPU processes) and the one-process runs."""
    root = tmp_path_factory.mktemp("fsdp2")
    data = write_jsonl(root / "pairs.jsonl", preference_rows(16))
    common = dict(
        model=tiny_model_dir("llama"),
        ref_model=tiny_model_dir("llama", seed=1),
        data=str(data),
        ref_cache_dir=str(root / "ref_cache"),
        progress=False,
    )
    sharded = dict(common, sharding="fsdp2")
    jobs = [
        {"options": {**sharded, **SGD_ONE_STEP, **method, **batch, "output_dir": str(root / f"two-{name}")}}
        for name, (method, batch) in ONE_STEP_RUNS.items()
    ]
    jobs += [
        {"options": {**sharded, **RESUMED, "output_dir": str(root / "full")}},
        {"options": {**sharded, **RESUMED, "output_dir": str(root / "cut")}, "stop_after": 2},
        {"options": {**sharded, **RESUMED, "output_dir": str(root / "cut"), "resume": True}},
    ]
    (root / "jobs.json").write_text(json.dumps(jobs))
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "ACCELERATE_USE_CPU": "true",
        "PYTHONPATH": os.pathsep.join(
            p for p in (str(Path(sys.modules["dralign"].__file__).parents[1]), os.environ.get("PYTHONPATH")) if p
        ),
    }
    env.pop("CUDA_VISIBLE_DEVICES", None)
    proc = subprocess.Popen(
        [*_torchrun(), "--standalone", "--nproc-per-node", "2", str(DRIVER), str(root / "jobs.json")],
        env=env,
        cwd=root,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        for name, (method, _) in ONE_STEP_RUNS.items():  # meanwhile, one process with batch 8
            options = {**common, **SGD_ONE_STEP, **method, "batch_size": 8, "output_dir": root / f"one-{name}"}
            assert (
                main(["train", "--no-progress", *_cli_args({k: v for k, v in options.items() if k != "progress"})]) == 0
            )
        output, _ = proc.communicate(timeout=600)
    finally:
        proc.kill()
    assert proc.returncode == 0, output[-6000:]
    return root, output


@pytest.mark.slow
@pytest.mark.parametrize("name", list(ONE_STEP_RUNS))
def test_two_sharded_processes_equal_one(name, runs, tiny_model_dir):
    """dpo (batch 4 a process) and kldpo with LoRA (2 micro-batches of 2 a process: the exact
    global batch over accumulation and processes) on 2 FSDP2 processes: the weights (the
    adapter's) of one process with batch 8 to 1e-5 after one SGD step, its logged loss and its
    held-out evaluation."""
    root, output = runs
    assert "FSDP2: 2 decoder layers and the root sharded over 2 processes (cpu)" in output
    card = (root / f"two-{name}" / "README.md").read_text()
    assert "2 processes" in card
    one, two = weights(root / f"one-{name}"), weights(root / f"two-{name}")
    lora = "lora" in name  # the step did something: LoRA's B starts at 0, full weights at the start model's
    moved = (
        max(v.abs().max().item() for k, v in one.items() if "lora_B" in k)
        if lora
        else max_diff(one, weights(tiny_model_dir("llama")))
    )
    assert moved > 1e-3
    assert max_diff(one, two) <= TOL
    loss_one, loss_two = metrics(root / f"one-{name}")[0]["loss"], metrics(root / f"two-{name}")[0]["loss"]
    assert loss_two == pytest.approx(loss_one, rel=1e-5)
    final = [json.loads((root / f"{n}-{name}" / "final_metrics.json").read_text()) for n in ("one", "two")]
    if lora:
        assert final[1]["eval/loss"] == pytest.approx(final[0]["eval/loss"], rel=1e-5)


@pytest.mark.slow
def test_sharded_resume_continues_the_same_trajectory(runs):
    """SIGTERM after step 2 of 4 leaves a checkpoint of the sharded run (full weights and AdamW
    state gathered); --resume under FSDP2 completes it: the loss and learning-rate curves and the
    final weights equal the uninterrupted sharded run's. The learning rate is the schedule's at
    every step (one scheduler step per optimizer step, whatever the number of processes)."""
    from dralign.train.schedule import make_scheduler

    root, _ = runs
    cut, full = metrics(root / "cut"), metrics(root / "full")
    assert [r["step"] for r in cut] == [1, 2, 3, 4]
    for key in ("loss", "lr", "grad_norm", "rewards/margins"):
        assert [r[key] for r in cut] == pytest.approx([r[key] for r in full], rel=1e-6, abs=1e-7)
    assert max(r["grad_norm"] for r in full) > RESUMED["max_grad_norm"]  # clipping was active
    assert max_diff(weights(root / "cut"), weights(root / "full")) <= 1e-6
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=RESUMED["lr"])
    schedule = make_scheduler(optimizer, warmup_steps=1, total_steps=4, kind="cosine")
    expected = []
    for _ in range(4):
        optimizer.step()
        schedule.step()
        expected.append(schedule.get_last_lr()[0])
    assert [r["lr"] for r in full] == pytest.approx(expected, rel=1e-9)


@pytest.mark.slow
def test_sharded_final_model_loads_with_from_pretrained(runs):
    """The gathered final model is an ordinary folder: from_pretrained loads the weights that
    one process trained (not a shard, not the FSDP class name)."""
    from transformers import AutoModelForCausalLM

    root, _ = runs
    folder = root / "two-dpo"
    assert json.loads((folder / "config.json").read_text())["architectures"] == ["LlamaForCausalLM"]
    model = AutoModelForCausalLM.from_pretrained(folder)
    one = weights(root / "one-dpo")
    loaded = {k: v for k, v in model.state_dict().items() if k in one}
    assert max_diff(one, loaded) <= TOL


@pytest.mark.parametrize(
    "extra, says",
    [
        ((), ["needs several processes", "torchrun"]),
        (("--method", "wdpo"), ["does not support WDPO's gradient penalty"]),
    ],
)
def test_sharding_refusals_are_one_line(extra, says, tiny_model_dir, pref_jsonl, tmp_path, capsys):
    rc = main(
        [
            "train",
            "--no-progress",
            "--model",
            tiny_model_dir("llama"),
            "--data",
            str(pref_jsonl),
            "--output-dir",
            str(tmp_path / "out"),
            "--sharding",
            "fsdp2",
            "--max-steps",
            "1",
            *extra,
        ]
    )
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err
    assert all(s in err.strip().splitlines()[-1] for s in says)  # one line says it all


def test_sharding_refuses_fp16_and_accelerate_fsdp():
    """fp16 (no gradient scaler over sharded gradients) and a model Accelerate already shards."""
    from types import SimpleNamespace

    from accelerate.utils import DistributedType

    from dralign.config import build
    from dralign.errors import BadOptionError
    from dralign.train.config import TrainConfig
    from dralign.train.sharding import check_sharding

    two = SimpleNamespace(distributed_type=DistributedType.MULTI_CPU, num_processes=2)
    assert check_sharding(two, build(TrainConfig, {"sharding": "fsdp2"}), penalized=False)
    assert not check_sharding(two, build(TrainConfig, {}), penalized=False)
    with pytest.raises(BadOptionError, match="mixed-precision fp16"):
        check_sharding(two, build(TrainConfig, {"sharding": "fsdp2", "mixed_precision": "fp16"}), penalized=False)
    with pytest.raises(BadOptionError, match="Accelerate already runs FSDP"):
        check_sharding(
            SimpleNamespace(distributed_type=DistributedType.FSDP, num_processes=2),
            build(TrainConfig, {"sharding": "fsdp2"}),
            penalized=False,
        )


def test_torchrun_without_cpu_flag_is_refused_with_the_fix(monkeypatch):
    """torchrun on CPU without ACCELERATE_USE_CPU: Accelerate 1.15 runs each process alone; the
    refusal says which variable to set (measured: `torchrun --nproc-per-node 2 -m dralign.cli
    train --sharding fsdp2 ...` on this machine)."""
    from types import SimpleNamespace

    from dralign.errors import DralignError
    from dralign.train.checkpoint import check_launch

    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(DralignError, match="ACCELERATE_USE_CPU=true.*torchrun and --sharding fsdp2"):
        check_launch(SimpleNamespace(num_processes=1))
    check_launch(SimpleNamespace(num_processes=2))  # launched together, trained together
