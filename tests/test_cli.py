"""The command line: methods table, typed config derivation, the demo at reduced size."""

import json
from pathlib import Path
import argparse

import pytest
import yaml

from dralign.cli import main
from dralign.config import ConfigError, add_arguments, build, from_args
from dralign.objectives.presets import PRESETS
from dralign.train.config import TrainConfig


def test_methods_lists_every_preset_with_formula_and_paper(capsys):
    assert main(["methods", "--width", "400"]) == 0
    out = capsys.readouterr().out
    for name in PRESETS:
        assert f" {name} " in out
    assert "tau * log mean exp(l/tau)" in out  # kldpo's formula
    assert "2502.01930" in out and "2406.05882" in out and "2309.16240" in out and "2504.05831" in out


def _parse(argv, tmp_path=None):
    p = argparse.ArgumentParser()
    p.add_argument("--config")
    add_arguments(p, TrainConfig)
    return from_args(TrainConfig, p.parse_args(argv))


def test_flags_are_derived_from_the_dataclasses(tmp_path):
    cfg = _parse(["--model", "m", "--beta", "0.3", "--no-ref-cache", "--lora-target-modules", "q", "v",
                  "--global-batch", "exact"])
    assert cfg.model.model == "m" and cfg.method.beta == 0.3 and cfg.model.ref_cache is False
    assert cfg.model.lora_target_modules == ["q", "v"] and cfg.optim.global_batch == "exact"
    assert cfg.optim.batch_size == 8  # dataclass default


def test_yaml_then_command_line_wins(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text(yaml.safe_dump({"method": {"beta": 0.3, "method": "kldpo"}, "lr": 1e-4}))
    cfg = _parse(["--config", str(f), "--beta", "0.2"])
    assert cfg.method.beta == 0.2 and cfg.method.method == "kldpo" and cfg.optim.lr == 1e-4


def test_bad_yaml_values_name_the_file_and_key(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("batch_size: many\n")
    with pytest.raises(ConfigError, match=r"c.yaml: batch_size: 'many' is not a valid int"):
        _parse(["--config", str(f)])
    f.write_text("bogus_option: 1\n")
    with pytest.raises(ConfigError, match="unknown option"):
        _parse(["--config", str(f)])
    with pytest.raises(ConfigError, match="not one of"):
        build(TrainConfig, {"scheduler": "exponential"})


def test_cli_errors_are_one_clear_line(tmp_path, capsys):
    assert main(["train", "--model", str(tmp_path / "nope"), "--data", str(tmp_path / "missing.jsonl"),
                 "--output-dir", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("dralign train: error:") and "Traceback" not in err
    assert main(["train", "--method", "dpoo", "--model", "x", "--data", "y"]) == 2
    assert "valid presets" in capsys.readouterr().err


@pytest.mark.slow
def test_demo_runs_end_to_end_at_reduced_size(tmp_path, capsys):
    """`dralign demo` at a reduced size: the mixture conflict (DPO at two β, KLDPO, WDPO) trained
    from one (briefly pretrained, cached) world LM on two seeds, its control computed in the same
    run; the tables print, and the plots, report and results exist."""
    out_dir = tmp_path / "demo"
    argv = ["demo", "--steps", "2", "--train-pairs", "32", "--eval-prompts", "4", "--eval-pairs", "8",
            "--max-new-tokens", "16", "--lm-steps", "8", "--cache-dir", str(tmp_path / "cache"),
            "--output-dir", str(out_dir)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    results = json.loads((out_dir / "results.json").read_text())
    assert set(results["runs"]) == {"start", "mix/dpo[beta=0.1]", "mix/dpo[beta=0.3]", "mix/kldpo[tau=0.5]",
                                    "mix/wdpo[rho=0.01]"}
    assert all(len(run["seeds"]) == 2 for run in results["runs"].values())
    (claim,) = results["claims"]
    assert set(claim["control"]) >= {"name", "value", "threshold", "passed"}
    assert claim["verdict"] in ("reproduced", "partly reproduced", "contradicted", "not significant", "invalid test")
    for path in results["files"]["plots"] + [results["files"]["report"]]:
        assert Path(path).stat().st_size > 0
        assert path in out.replace("\n", "")
    assert "dralign demo" in (out_dir / "report.md").read_text()
