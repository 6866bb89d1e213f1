"""A truthful output folder: the model card says what the folder holds (a whole model, a LoRA
adapter merged into its base, or the adapter alone) and how to load it, and the files are there;
--save-adapter / --no-save-adapter choose. (A GGUF base: tests/modeling/test_gguf.py.)"""

from __future__ import annotations

import torch
from transformers import AutoModelForCausalLM

from dralign.cli import main
from helpers import preference_rows, write_jsonl


def train(start, tmp_path, name, *flags) -> tuple[int, object]:
    data = write_jsonl(tmp_path / "pairs.jsonl", preference_rows(8))
    out = tmp_path / name
    rc = main(
        [
            "train",
            "--model",
            start,
            "--data",
            str(data),
            "--max-steps",
            "1",
            "--batch-size",
            "4",
            "--max-length",
            "48",
            "--lr",
            "1e-2",
            "--no-progress",
            "--output-dir",
            str(out),
            *flags,
        ]
    )
    return rc, out


def card(out) -> str:
    return (out / "README.md").read_text()


def test_a_lora_run_keeps_the_adapter_alone_and_says_how_to_load_it(tiny_model_dir, tmp_path):
    from peft import AutoPeftModelForCausalLM

    start = tiny_model_dir("llama")
    rc, out = train(start, tmp_path, "adapter", "--lora-r", "4")
    assert rc == 0
    assert (out / "adapter_model.safetensors").is_file() and (out / "adapter_config.json").is_file()
    assert not (out / "model.safetensors").exists()
    text = card(out)
    assert "The LoRA adapter alone (r=4)" in text and f"The base model `{start}` is not in this folder" in text
    assert f'AutoPeftModelForCausalLM.from_pretrained("{out}")' in text
    model = AutoPeftModelForCausalLM.from_pretrained(str(out))  # what the card says works
    assert any("lora_B" in n and p.abs().sum() > 0 for n, p in model.named_parameters())


def test_no_save_adapter_merges_and_the_card_says_so(tiny_model_dir, tmp_path):
    start = tiny_model_dir("llama")
    rc, out = train(start, tmp_path, "merged", "--lora-r", "4", "--no-save-adapter")
    assert rc == 0
    assert (out / "model.safetensors").is_file() and not (out / "adapter_config.json").exists()
    text = card(out)
    assert "merged into it: the whole model" in text and "no adapter files" in text
    assert f'`AutoModelForCausalLM.from_pretrained("{out}")` (no PEFT needed)' in text
    merged, base = AutoModelForCausalLM.from_pretrained(out), AutoModelForCausalLM.from_pretrained(start)
    assert any(not torch.equal(a, b) for a, b in zip(merged.state_dict().values(), base.state_dict().values()))


def test_a_full_run_says_whole_model_and_save_adapter_needs_lora(tiny_model_dir, tmp_path, capsys):
    start = tiny_model_dir("llama")
    rc, out = train(start, tmp_path, "full")
    assert rc == 0 and "The whole model, every weight trained" in card(out)
    assert "LoRA" not in card(out).split("## What this folder holds")[1].split("## Final metrics")[0]
    rc, _ = train(start, tmp_path, "bad", "--save-adapter")
    assert rc == 2 and "--save-adapter is about a LoRA adapter: pass --lora-r N" in capsys.readouterr().err
