"""Memory defaults of `dralign train`: gradient checkpointing for LoRA on CPU."""

from __future__ import annotations

from helpers import train_cli

DEFAULT_LINE = "gradient checkpointing on (the default for LoRA on CPU"


def test_lora_on_cpu_checkpoints_by_default(base, tmp_path, monkeypatch, capsys):
    from dralign.train import recipe

    seen = []
    load = recipe.load_model
    monkeypatch.setattr(recipe, "load_model", lambda *a, **k: seen.append(k["gradient_checkpointing"]) or load(*a, **k))
    one_step = ("--max-steps", "1", "--overwrite", "--output-dir")
    assert train_cli(*base, "--lora-r", "2", *one_step, tmp_path / "lora") == 0
    assert DEFAULT_LINE in capsys.readouterr().out
    assert train_cli(*base, "--lora-r", "2", "--no-gradient-checkpointing", *one_step, tmp_path / "off") == 0
    assert train_cli(*base, *one_step, tmp_path / "full") == 0  # all weights: off unless asked
    assert DEFAULT_LINE not in capsys.readouterr().out
    assert seen == [True, False, False]
