"""The training loop's contracts: exact global batch (accumulation and processes), resume on the
same trajectory, and the reference cache."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from dralign.cli import main
from dralign.config import build
from dralign.train.config import TrainConfig

SGD_ONE_STEP = [
    "--no-progress",
    "--max-length",
    "64",
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
    "--beta",
    "1.0",
]
TOL = 1e-6  # max abs difference of updated float32 weights


def weights(out: Path) -> dict[str, torch.Tensor]:
    return load_file(str(Path(out) / "model.safetensors"))


def max_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max((a[k] - b[k]).abs().max().item() for k in a)


def metrics(out: Path) -> list[dict]:
    return [json.loads(line) for line in (Path(out) / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def sgd_args(tiny_model_dir, pref_jsonl):
    """One SGD step from a llama policy against a *different* reference model (another seed),
    so that margins, hence robust weights and AOT sort orders, are not all equal."""
    return [
        "--model",
        tiny_model_dir("llama"),
        "--ref-model",
        tiny_model_dir("llama", seed=1),
        "--data",
        str(pref_jsonl),
        *SGD_ONE_STEP,
    ]


def sgd_step(args, out, *extra) -> dict[str, torch.Tensor]:
    rc = main(["train", *args, "--output-dir", str(out), *map(str, extra)])
    assert rc == 0
    return weights(out)


# ----------------------------------------------------------------------------- global batch
@pytest.mark.parametrize("method", ["kldpo", "aot", "cvar", "dora"])
def test_accumulation_equals_one_big_batch(method, sgd_args, tiny_model_dir, tmp_path):
    """--batch-size 2 --grad-accum 4 gives the same update as --batch-size 8 (max abs diff of
    the float32 weights ≤ 1e-6), and the same logged loss."""
    start = weights(tiny_model_dir("llama"))
    big = sgd_step(sgd_args, tmp_path / "big", "--method", method, "--batch-size", 8)
    accum = sgd_step(sgd_args, tmp_path / "accum", "--method", method, "--batch-size", 2, "--grad-accum", 4)
    assert max_diff(big, start) > 1e-3  # the step did something
    assert max_diff(big, accum) <= TOL
    loss_big, loss_accum = metrics(tmp_path / "big")[0]["loss"], metrics(tmp_path / "accum")[0]["loss"]
    assert loss_accum == pytest.approx(loss_big, rel=1e-5)


def test_accumulation_equals_one_big_batch_unpaired(tiny_model_dir, unpaired_jsonl, tmp_path):
    """The same for aot-unpaired (sorting chosen and rejected sets separately)."""
    args = [
        "--model",
        tiny_model_dir("llama"),
        "--ref-model",
        tiny_model_dir("llama", seed=1),
        "--data",
        str(unpaired_jsonl),
        "--method",
        "aot-unpaired",
        *SGD_ONE_STEP,
    ]
    big = sgd_step(args, tmp_path / "big", "--batch-size", 8)
    accum = sgd_step(args, tmp_path / "accum", "--batch-size", 2, "--grad-accum", 4)
    local = sgd_step(args, tmp_path / "local", "--batch-size", 2, "--grad-accum", 4, "--global-batch", "local")
    assert max_diff(big, weights(tiny_model_dir("llama"))) > 1e-3
    assert max_diff(big, accum) <= TOL
    assert max_diff(big, local) > 100 * TOL


def test_unpaired_batches_hold_both_labels(tiny_model_dir, unpaired_jsonl, tmp_path, capsys):
    """aot-unpaired with micro-batches of 2 runs many steps (before the fix, a micro-batch
    holding one label only crashed with an IndexError); micro-batches of 1 give a clear error."""
    args = [
        "train",
        "--no-progress",
        "--max-length",
        "64",
        "--model",
        tiny_model_dir("llama"),
        "--data",
        str(unpaired_jsonl),
        "--method",
        "aot-unpaired",
        "--lr",
        "1e-4",
    ]
    rc = main(
        [
            *args,
            "--max-steps",
            "40",
            "--batch-size",
            "2",
            "--grad-accum",
            "2",
            "--global-batch",
            "local",
            "--output-dir",
            str(tmp_path / "a"),
        ]
    )
    assert rc == 0, capsys.readouterr().err
    assert len(metrics(tmp_path / "a")) == 40
    rc = main([*args, "--max-steps", "2", "--batch-size", "1", "--output-dir", str(tmp_path / "b")])
    err = capsys.readouterr().err
    assert rc == 2 and "holds only" in err and "both labels" in err and "Traceback" not in err


def test_local_global_batch_differs_for_kldpo(sgd_args, tmp_path):
    big = sgd_step(sgd_args, tmp_path / "big", "--method", "kldpo", "--batch-size", 8)
    local = sgd_step(
        sgd_args,
        tmp_path / "local",
        "--method",
        "kldpo",
        "--batch-size",
        2,
        "--grad-accum",
        4,
        "--global-batch",
        "local",
    )
    assert max_diff(big, local) > 100 * TOL


# ----------------------------------------------------------------------------- processes
def _accelerate() -> list[str]:
    exe = Path(sys.executable).with_name("accelerate")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "accelerate.commands.launch"]


@pytest.mark.slow
@pytest.mark.parametrize("method", ["kldpo", "aot", "dpo"])
def test_two_processes_equal_one(method, sgd_args, tmp_path):
    """Two processes (DDP over gloo on CPU) with batch 4 each give the weights (max abs diff
    ≤ 1e-6) and the logged loss of one process with batch 8, after one SGD step.

    Launched with `accelerate launch --multi_gpu` and ACCELERATE_USE_CPU=true: in accelerate
    1.15, `accelerate launch --cpu --num_processes 2` starts only ONE process unless an MPI
    hostfile is given (its simple launcher runs the script once), so it cannot test this."""
    one = sgd_step(sgd_args, tmp_path / "one", "--method", method, "--batch-size", 8)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ACCELERATE_USE_CPU": "true"}
    env.pop("CUDA_VISIBLE_DEVICES", None)
    port = str(29500 + os.getpid() % 1000)
    cmd = [
        *_accelerate(),
        "launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--main_process_port",
        port,
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "-m",
        "dralign.cli",
        "train",
        *sgd_args,
        "--method",
        method,
        "--batch-size",
        "4",
        "--output-dir",
        str(tmp_path / "two"),
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    assert "completed: 1 steps" in proc.stdout
    card = (tmp_path / "two" / "README.md").read_text()
    assert "effective batch 4 x 1 accumulation x 2 processes" in card  # really 2 processes
    two = weights(tmp_path / "two")
    assert max_diff(one, two) <= TOL
    assert metrics(tmp_path / "two")[0]["loss"] == pytest.approx(metrics(tmp_path / "one")[0]["loss"], rel=1e-5)


# ----------------------------------------------------------------------------- resume
def config(**options) -> TrainConfig:
    return build(TrainConfig, {"progress": False, "max_length": 64, **options})


@pytest.mark.parametrize("method", ["kldpo", "group-dro"])
def test_resume_continues_the_same_trajectory(method, tiny_model_dir, pref_jsonl, tmp_path):
    """SIGTERM after step 10 of 20 leaves a checkpoint; --resume completes to 20; the loss curve
    and the final weights equal an uninterrupted run's (AdamW, cosine schedule with warmup,
    exact global batch over 2 micro-batches; group-dro's q is part of the state)."""
    from dralign.train import train

    common = dict(
        model=tiny_model_dir("gpt2"),
        data=str(pref_jsonl),
        method=method,
        max_steps=20,
        batch_size=4,
        grad_accum=2,
        lr=2e-4,
        optimizer="adamw",
        scheduler="cosine",
        warmup_steps=3,
        dtype="float32",
        **({"eta": 0.5} if method == "group-dro" else {}),
    )  # kldpo has no eta: refused
    full = train(config(output_dir=str(tmp_path / "full"), **common))
    assert full.status == "completed" and full.steps == 20

    def stop_after_10(step, record):
        if step == 10:
            os.kill(os.getpid(), signal.SIGTERM)

    out = tmp_path / "cut"
    cut = train(config(output_dir=str(out), **common), callbacks=[stop_after_10])
    assert cut.status == "interrupted" and cut.steps == 10
    assert [p.name for p in (out / "checkpoints").iterdir()] == ["step-00000010"]
    assert not (out / "model.safetensors").exists()
    assert len(metrics(out)) == 10

    resumed = train(config(output_dir=str(out), resume=True, **common))
    assert resumed.status == "completed" and resumed.steps == 20
    curve, reference = metrics(out), metrics(tmp_path / "full")
    assert [r["step"] for r in curve] == list(range(1, 21))
    for key in ("loss", "lr", "rewards/margins"):
        assert [r[key] for r in curve] == pytest.approx([r[key] for r in reference], rel=1e-6, abs=1e-7)
    assert len({round(r["loss"], 4) for r in reference[10:]}) > 5  # the curve is not flat
    assert max_diff(weights(out), weights(tmp_path / "full")) <= 1e-6


def test_resume_without_checkpoint_is_a_clear_error(tiny_model_dir, pref_jsonl, tmp_path, capsys):
    rc = main(
        [
            "train",
            "--no-progress",
            "--model",
            tiny_model_dir("gpt2"),
            "--data",
            str(pref_jsonl),
            "--output-dir",
            str(tmp_path / "empty"),
            "--resume",
            "--max-steps",
            "2",
        ]
    )
    err = capsys.readouterr().err
    assert rc == 2 and "no checkpoint" in err and "Traceback" not in err


# ----------------------------------------------------------------------------- reference cache
@pytest.fixture
def count_loads(monkeypatch):
    """Counts `load_model` calls in the trainer, by path; a live FrozenReference is an error."""
    from dralign.train import references

    calls: list[str] = []
    real = references.load_model

    def counting(path, **kwargs):
        calls.append(str(path))
        return real(path, **kwargs)

    class NoFrozenReference:
        def __init__(self, *a, **k):
            raise AssertionError("a live reference model was built although the cache is on")

        from_policy = classmethod(lambda cls, *a, **k: cls())

    from dralign.train import recipe

    monkeypatch.setattr(references, "load_model", counting)
    monkeypatch.setattr(recipe, "load_model", counting)
    monkeypatch.setattr(references, "FrozenReference", NoFrozenReference)
    return calls


def test_reference_cache_is_reused(count_loads, tiny_model_dir, pref_jsonl, tmp_path, capsys):
    policy = tiny_model_dir("llama")
    args = [
        "train",
        "--no-progress",
        "--model",
        policy,
        "--data",
        str(pref_jsonl),
        "--max-steps",
        "1",
        "--max-length",
        "64",
        "--output-dir",
        str(tmp_path / "out"),
    ]
    assert main(args) == 0
    assert count_loads == [policy]
    assert "computing reference log-probs" in capsys.readouterr().out
    cache_dir = tmp_path / "out" / "ref_cache"
    assert len(list(cache_dir.glob("reference-*.safetensors"))) == 1

    count_loads.clear()
    args.append("--overwrite")  # the folder holds the first run; its reference cache survives
    assert main(args) == 0  # same model and data: read the cache
    out = capsys.readouterr().out
    assert count_loads == [policy]
    assert "reference log-probs read from" in out and "computing reference" not in out

    count_loads.clear()
    assert main([*args, "--max-length", "48"]) == 0  # other tokenisation: a new cache
    assert count_loads == [policy]
    assert "computing reference log-probs" in capsys.readouterr().out
    assert len(list(cache_dir.glob("reference-*.safetensors"))) == 2


def test_reference_cache_with_a_separate_ref_model(count_loads, tiny_model_dir, pref_jsonl, tmp_path, capsys):
    policy, ref = tiny_model_dir("llama"), tiny_model_dir("llama", seed=1)
    args = [
        "train",
        "--no-progress",
        "--model",
        policy,
        "--ref-model",
        ref,
        "--data",
        str(pref_jsonl),
        "--max-steps",
        "1",
        "--max-length",
        "64",
        "--ref-cache-dir",
        str(tmp_path / "cache"),
    ]
    assert main([*args, "--output-dir", str(tmp_path / "a")]) == 0
    assert sorted(count_loads) == sorted([policy, ref])
    capsys.readouterr()
    count_loads.clear()
    assert main([*args, "--output-dir", str(tmp_path / "b")]) == 0  # another run, shared cache
    assert count_loads == [policy]  # the reference model is never loaded
    assert "reference log-probs read from" in capsys.readouterr().out
    # the cache holds the ref model's values, not the policy's: both runs' first losses agree
    # and differ from log 2 (which a policy-as-reference run gives at step 1)
    first = [metrics(tmp_path / d)[0]["loss"] for d in ("a", "b")]
    assert first[0] == first[1] and abs(first[0] - 0.6931472) > 1e-3


def test_reference_cache_depends_on_dtype(count_loads, tiny_model_dir, pref_jsonl, tmp_path, capsys):
    """Reference log-probs computed in bfloat16 are not reused for a float32 run."""
    args = [
        "train",
        "--no-progress",
        "--model",
        tiny_model_dir("llama"),
        "--data",
        str(pref_jsonl),
        "--max-steps",
        "1",
        "--max-length",
        "64",
        "--ref-cache-dir",
        str(tmp_path / "cache"),
    ]
    assert main([*args, "--dtype", "bfloat16", "--output-dir", str(tmp_path / "bf16")]) == 0
    capsys.readouterr()
    assert main([*args, "--dtype", "float32", "--output-dir", str(tmp_path / "fp32")]) == 0
    assert "computing reference log-probs" in capsys.readouterr().out
    assert metrics(tmp_path / "fp32")[0]["loss"] == pytest.approx(0.6931472, abs=1e-6)
