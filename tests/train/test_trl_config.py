"""A TRL DPOConfig YAML as `dralign train --config`: translated with the translation printed,
what has no counterpart refused by name."""

from __future__ import annotations

import json

import pytest
import yaml

from dralign.cli import main
from dralign.config import ConfigError, option_names
from dralign.train.config import TrainConfig
from dralign.train.trl_config import RENAMED, is_trl_config, translate


def trl_yaml(tmp_path, **fields):
    path = tmp_path / "dpo.yaml"
    path.write_text(yaml.safe_dump(fields))
    return path


def test_every_translation_target_is_a_dralign_option():
    assert set(RENAMED.values()) <= option_names(TrainConfig)


def test_detected_by_its_keys():
    assert is_trl_config({"learning_rate": 1e-6})
    assert is_trl_config({"per_device_train_batch_size": 4, "beta": 0.1})
    assert not is_trl_config({"lr": 1e-6, "beta": 0.1, "max_length": 64})  # dralign's own names


def test_translation_of_each_field():
    lines = []
    out = translate(
        {
            "learning_rate": "5e-7",
            "per_device_train_batch_size": 4,
            "gradient_accumulation_steps": 2,
            "num_train_epochs": 3,
            "max_steps": -1,
            "loss_type": ["robust"],
            "label_smoothing": 0.1,
            "lr_scheduler_type": "linear",
            "report_to": ["none"],
            "bf16": True,
            "logging_steps": 5,
            "precompute_ref_log_probs": True,
            "truncation_mode": "keep_end",
        },
        log=lines.append,
    )
    assert out == {
        "lr": "5e-7",
        "batch_size": 4,
        "grad_accum": 2,
        "epochs": 3,
        "max_steps": 0,
        "method": "rdpo",
        "label_smoothing": 0.1,
        "scheduler": "linear",
        "report_to": "none",
        "mixed_precision": "bf16",
        "log_every": 5,
        "ref_cache": True,
        "truncation_side": "left",
    }
    text = "\n".join(lines)
    assert "learning_rate: 5e-7 -> lr" in text
    assert "per_device_train_batch_size: 4 -> batch_size" in text
    assert "loss_type: ['robust'] -> method: rdpo" in text
    assert "max_steps: -1 -> max_steps: 0" in text


@pytest.mark.parametrize(
    "loss,preset", [("sigmoid", "dpo"), ("ipo", "ipo"), ("hinge", "hinge"), ("robust", "rdpo"), ("aot", "aot")]
)
def test_loss_types_map_to_presets(loss, preset):
    assert translate({"loss_type": loss}, log=lambda _: None)["method"] == preset


def test_alpha_divergence_uses_one_minus_coef():
    out = translate(
        {"loss_type": "sigmoid", "f_divergence_type": "alpha_divergence", "f_alpha_divergence_coef": 0.25},
        log=lambda _: None,
    )
    assert out["divergence"] == "alpha" and out["alpha"] == pytest.approx(0.75)
    out = translate(
        {"loss_type": "sigmoid", "f_divergence_type": "alpha_divergence", "f_alpha_divergence_coef": 1.0},
        log=lambda _: None,
    )
    assert out["divergence"] == "reverse_kl" and "alpha" not in out  # TRL: coef 1 is reverse KL
    out = translate({"f_divergence_type": "js_divergence", "learning_rate": 1e-6}, log=lambda _: None)
    assert out["divergence"] == "js"


def test_a_list_of_losses_is_refused_with_the_reason():
    with pytest.raises(ConfigError, match=r"loss_type=\['sigmoid', 'ipo'\].*weighted sum"):
        translate({"loss_type": ["sigmoid", "ipo"], "loss_weights": [0.5, 0.5]})
    out = translate({"loss_type": ["sigmoid"], "loss_weights": [1.0]}, log=lambda _: None)
    assert out == {"method": "dpo"}
    with pytest.raises(ConfigError, match="loss_weights"):
        translate({"loss_type": ["sigmoid"], "loss_weights": [2.0]})


def test_fields_without_counterpart_are_refused_by_name_in_one_line():
    with pytest.raises(ConfigError) as err:
        translate(
            {"learning_rate": 1e-6, "warmup_ratio": 0.1, "use_weighting": True, "some_new_field": 3}, where="dpo.yaml"
        )
    message = str(err.value)
    assert "\n" not in message and message.startswith("dpo.yaml: ")
    for name in ("warmup_ratio", "use_weighting", "some_new_field"):
        assert name in message
    assert "learning_rate" not in message


def test_a_trl_field_and_its_dralign_name_together_are_refused():
    with pytest.raises(ConfigError, match="learning_rate and lr"):
        translate({"learning_rate": 1e-6, "lr": 1e-5})
    with pytest.raises(ConfigError, match="method"):
        translate({"loss_type": "ipo", "method": "kldpo"})


@pytest.mark.slow
def test_a_dpo_config_yaml_trains_with_the_translation_printed(tiny_model_dir, pref_jsonl, tmp_path, capsys):
    out = tmp_path / "out"
    config = trl_yaml(
        tmp_path,
        learning_rate="1e-3",
        per_device_train_batch_size=8,
        gradient_accumulation_steps=1,
        max_steps=1,
        max_length=64,
        beta=0.2,
        loss_type=["sigmoid"],
        seed=3,
        output_dir=str(out),
        logging_steps=1,
        report_to="none",
        lr_scheduler_type="constant",
        warmup_steps=0,
        weight_decay=0.0,
        max_grad_norm=1.0,
        bf16=False,
        gradient_checkpointing=False,
        precompute_ref_log_probs=True,
        model_name_or_path=tiny_model_dir("llama"),
        data=str(pref_jsonl),
    )
    assert main(["train", "--config", str(config), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    for line in (
        "learning_rate: 1e-3 -> lr",
        "per_device_train_batch_size: 8 -> batch_size",
        "loss_type: ['sigmoid'] -> method: dpo",
        "max_steps: 1 -> max_steps",
        "beta: 0.2 -> beta",
        "lr_scheduler_type: constant -> scheduler",
        f"model_name_or_path: {tiny_model_dir('llama')} -> model",
    ):
        assert line in printed, printed
    assert "completed: 1 steps" in printed
    resolved = yaml.safe_load((out / "config.yaml").read_text())
    assert resolved["optim"]["lr"] == 1e-3 and resolved["optim"]["seed"] == 3
    assert resolved["method"]["method"] == "dpo" and resolved["method"]["beta"] == 0.2
    assert resolved["optim"]["scheduler"] == "constant"
    assert [json.loads(r)["step"] for r in (out / "metrics.jsonl").read_text().splitlines()] == [1]


def test_an_unknown_field_stops_the_command_by_name(tmp_path, capsys):
    config = trl_yaml(tmp_path, learning_rate=1e-6, sync_ref_model=True, model="m", data="d")
    assert main(["train", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "sync_ref_model" in err and "no dralign counterpart" in err


# ---------------------------------------------------------------------------- typed like flags
def test_trl_values_are_typed_as_flags_are():
    """`bf16: 'false'` is false (any non-empty string used to be true); a fractional max_steps is
    refused (it used to become 1), as `--max-steps 1.9` is."""
    out = translate({"bf16": "false", "fp16": "no", "learning_rate": 1e-6}, log=lambda _: None)
    assert "mixed_precision" not in out
    assert (
        translate({"bf16": "true", "beta": 0.1, "learning_rate": 1e-6}, log=lambda _: None)["mixed_precision"] == "bf16"
    )
    with pytest.raises(ConfigError, match=r"^dpo.yaml: max_steps: 1.9 is not a valid int$"):
        translate({"max_steps": 1.9, "learning_rate": 1e-6}, where="dpo.yaml")


@pytest.mark.parametrize(
    "field, value",
    [
        ("max_steps", None),
        ("loss_type", None),
        ("loss_weights", "heavy"),
        ("lr_scheduler_type", ["cosine"]),
        ("label_smoothing", "abc"),
        ("bf16", "maybe"),
        ("learning_rate", "fast"),
        ("per_device_train_batch_size", 0),
        ("f_alpha_divergence_coef", [0.5]),
        ("f_alpha_divergence_coef", -0.5),
    ],
)
def test_a_badly_typed_trl_field_is_one_line_naming_it(field, value):
    with pytest.raises(ConfigError) as err:
        translate(
            {field: value, "learning_rate": 1e-6} if field != "learning_rate" else {field: value}, where="dpo.yaml"
        )
    message = str(err.value)
    assert message.startswith(f"dpo.yaml: {field}: ") and "\n" not in message


def test_a_single_loss_weight_reads_as_a_list_as_the_flag_does():
    out = translate({"loss_type": "ipo", "loss_weights": 1.0}, log=lambda _: None)  # was a TypeError
    assert out == {"method": "ipo"}


def test_a_badly_typed_trl_field_through_the_cli_is_one_line(tmp_path, capsys):
    config = trl_yaml(tmp_path, learning_rate=1e-6, lr_scheduler_type=["cosine"], model="m", data="d")
    assert main(["train", "--config", str(config)]) == 2
    err = capsys.readouterr().err.strip()
    assert "lr_scheduler_type" in err and "Traceback" not in err and len(err.splitlines()) == 1


def test_every_given_loss_field_gets_its_line():
    lines = []
    translate(
        {
            "loss_type": "sigmoid",
            "label_smoothing": 0.0,
            "f_alpha_divergence_coef": 0.5,
            "f_divergence_type": "reverse_kl",
            "learning_rate": 1e-6,
        },
        log=lines.append,
    )
    for key in ("loss_type", "label_smoothing", "f_alpha_divergence_coef", "f_divergence_type"):
        assert any(line.strip().startswith(f"{key}: ") for line in lines), (key, lines)
