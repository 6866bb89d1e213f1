"""Prefix sharing through the trainer: one step with and without it gives the same update
(cache or live reference, exact global batch, gradient checkpointing, LoRA); `auto` and the
layouts WDPO and unpaired data keep."""

from __future__ import annotations

import json

import pytest
from safetensors.torch import load_file

from dralign.cli import main
from helpers import write_jsonl

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
    "--lr",
    "0.05",
    "--beta",
    "1.0",
]


@pytest.fixture(scope="module")
def long_prompt_jsonl(tmp_path_factory):
    rows = [
        {
            "prompt": f"Human: question {i} about the weather, please answer politely? Assistant:",
            "chosen": " Thank you, a good day.",
            "rejected": " " + "bad " * (1 + i % 3) + "weather.",
        }
        for i in range(16)
    ]
    return write_jsonl(tmp_path_factory.mktemp("prefix") / "pairs.jsonl", rows)


def step(tiny_model_dir, data, out, *extra):
    rc = main(
        [
            "train",
            "--model",
            tiny_model_dir("llama"),
            "--ref-model",
            tiny_model_dir("llama", seed=1),
            "--data",
            str(data),
            "--output-dir",
            str(out),
            *SGD_ONE_STEP,
            *map(str, extra),
        ]
    )
    assert rc == 0
    return load_file(str(out / "model.safetensors"))


def max_diff(a, b):
    return max((a[k] - b[k]).abs().max().item() for k in a)


@pytest.mark.parametrize(
    "method,extra",
    [
        ("dpo", ()),
        ("kldpo", ("--batch-size", "2", "--grad-accum", "4", "--global-batch", "exact")),
        ("aot", ("--no-ref-cache", "--gradient-checkpointing", "--batch-size", "4", "--grad-accum", "2")),
    ],
)
def test_one_step_with_prefix_sharing_equals_without(
    method, extra, tiny_model_dir, long_prompt_jsonl, tmp_path, capsys
):
    """The same update (float32 weights within 1e-6) with the reference cache or a live reference
    model, exact global batch and gradient checkpointing."""
    common = ("--method", method, "--batch-size", "8", *extra)
    on = step(tiny_model_dir, long_prompt_jsonl, tmp_path / "on", *common, "--prefix-sharing", "on")
    assert "prefix sharing on" in capsys.readouterr().out
    off = step(tiny_model_dir, long_prompt_jsonl, tmp_path / "off", *common, "--prefix-sharing", "off")
    assert max_diff(on, load_file(tiny_model_dir("llama") + "/model.safetensors")) > 1e-3
    assert max_diff(on, off) <= 1e-6


def test_lora_training_with_prefix_sharing(tiny_model_dir, long_prompt_jsonl, tmp_path, capsys):
    """LoRA with the adapter-disabled reference (no cache): the same adapter as without sharing."""
    common = ("--lora-r", "4", "--no-ref-cache", "--lr", "0.5", "--group-by-length")
    outs = {}
    for setting in ("on", "off"):
        out = tmp_path / setting
        assert (
            main(
                [
                    "train",
                    "--model",
                    tiny_model_dir("qwen2"),
                    "--data",
                    str(long_prompt_jsonl),
                    "--output-dir",
                    str(out),
                    *SGD_ONE_STEP,
                    *common,
                    "--prefix-sharing",
                    setting,
                ]
            )
            == 0
        )
        outs[setting] = load_file(str(out / "adapter_model.safetensors"))
    assert max_diff(outs["on"], outs["off"]) <= 1e-6


def test_auto_turns_on_for_long_prompts_and_wdpo_keeps_the_plain_layout(
    tiny_model_dir, long_prompt_jsonl, tmp_path, capsys
):
    args = ["train", "--model", tiny_model_dir("gpt2"), "--data", str(long_prompt_jsonl), *SGD_ONE_STEP]
    assert main([*args, "--output-dir", str(tmp_path / "auto")]) == 0
    assert "prefix sharing on (auto: estimated forward cost" in capsys.readouterr().out
    record = json.loads((tmp_path / "auto" / "metrics.jsonl").read_text().splitlines()[-1])
    assert not record["skipped"]
    assert main([*args, "--method", "wdpo", "--output-dir", str(tmp_path / "wdpo")]) == 0
    assert "prefix sharing off (WDPO's penalty" in capsys.readouterr().out
    assert main([*args, "--method", "wdpo", "--prefix-sharing", "on", "--output-dir", str(tmp_path / "no")]) == 2
    assert "refused for the Wasserstein penalty" in capsys.readouterr().err


def test_unpaired_objectives_keep_the_plain_layout(tiny_model_dir, unpaired_jsonl, tmp_path, capsys):
    assert (
        main(
            [
                "train",
                "--model",
                tiny_model_dir("llama"),
                "--data",
                str(unpaired_jsonl),
                "--method",
                "aot-unpaired",
                "--prefix-sharing",
                "on",
                "--batch-size",
                "8",
                "--output-dir",
                str(tmp_path / "u"),
                *SGD_ONE_STEP,
            ]
        )
        == 0
    )
    assert "prefix sharing off (unpaired data" in capsys.readouterr().out
