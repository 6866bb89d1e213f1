"""`--compile`: which modules are compiled, what is refused (one line), and that a compiled run
takes the same steps as an eager one."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from dralign.cli import main
from dralign.modeling.compiling import compile_refusal, transformer_blocks
from dralign.modeling.tiny import tiny_model

FAST = ["--no-progress", "--max-length", "64", "--batch-size", "4", "--lr", "1e-2", "--optimizer", "sgd"]


@pytest.mark.parametrize("arch,path", [("llama", "model.layers"), ("gpt2", "transformer.h"), ("qwen2", "model.layers")])
def test_blocks_are_the_repeated_layers(arch, path):
    model = tiny_model(arch, vocab_size=64)
    expected = list(model.get_submodule(path))
    assert len(expected) >= 2
    assert [id(b) for b in transformer_blocks(model)] == [id(b) for b in expected]


def test_refusals(monkeypatch):
    assert "double backward" in compile_refusal("cpu", double_backward=True)
    assert compile_refusal("cuda", double_backward=False) is None  # no host compiler needed there
    monkeypatch.setattr("shutil.which", lambda name: None)
    monkeypatch.delenv("CXX", raising=False)
    assert "C++ compiler" in compile_refusal("cpu", double_backward=False)


def test_exact_wdpo_with_compile_is_one_line(tiny_model_dir, pref_jsonl, tmp_path, capsys):
    model = tiny_model_dir("llama")
    capsys.readouterr()  # the fixture's own output
    rc = main(
        [
            "train",
            *FAST,
            "--model",
            model,
            "--data",
            str(pref_jsonl),
            "--method",
            "wdpo",
            "--penalty-mode",
            "exact",
            "--attn-implementation",
            "eager",
            "--compile",
            "--max-steps",
            "1",
            "--output-dir",
            str(tmp_path / "out"),
        ]
    )
    err = capsys.readouterr().err
    assert rc == 2 and "double backward" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.slow
def test_compiled_run_takes_the_eager_steps(tiny_model_dir, pref_jsonl, tmp_path, capsys):
    """Two SGD steps of dpo: the compiled blocks give the eager weights (to float32 rounding)."""
    weights = {}
    for name, extra in (("eager", []), ("compiled", ["--compile"])):
        out = tmp_path / name
        rc = main(
            [
                "train",
                *FAST,
                "--model",
                tiny_model_dir("llama"),
                "--data",
                str(pref_jsonl),
                "--max-steps",
                "2",
                "--output-dir",
                str(out),
                *extra,
            ]
        )
        assert rc == 0, capsys.readouterr().err
        weights[name] = load_file(out / "model.safetensors")
    start = load_file(f"{tiny_model_dir('llama')}/model.safetensors")
    moved = max((weights["eager"][k] - start[k]).abs().max().item() for k in start)
    assert moved > 1e-4  # the steps changed the weights, so agreeing means something
    for key, value in weights["eager"].items():
        torch.testing.assert_close(weights["compiled"][key], value, rtol=1e-4, atol=1e-5)
