"""The command line: methods table, typed config derivation, the demo at reduced size."""

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from dralign.cli import build_parser, main
from dralign.config import ConfigError, add_arguments, build, from_args
from dralign.objectives.presets import PRESETS
from dralign.train.config import TrainConfig


def test_methods_lists_every_preset_with_formula_and_paper(capsys):
    assert main(["methods", "--width", "400"]) == 0
    out = capsys.readouterr().out
    for name, preset in PRESETS.items():
        assert (f" {name} " if preset.alias_of is None else f"(alias: {name})") in out
    assert "tau * log mean exp(l/tau)" in out  # kldpo's formula
    assert "2502.01930" in out and "2406.05882" in out and "2309.16240" in out and "2504.05831" in out


def test_methods_piped_prints_one_unwrapped_row_per_preset_and_dro_as_kldpo(capsys):
    assert main(["methods"]) == 0  # capsys: stdout is not a terminal
    lines = capsys.readouterr().out.splitlines()
    rows = {line.split("|")[1].strip(): line for line in lines if line.startswith("| ") and "preset" not in line}
    canonical = [n for n, p in PRESETS.items() if p.alias_of is None]
    assert sorted(rows) == sorted(n if n != "kldpo" else "kldpo (alias: dro)" for n in canonical)
    kldpo = rows["kldpo (alias: dro)"]  # the whole row on one line: formula and both papers
    assert "tau * log mean exp(l/tau)" in kldpo and "2502.01930" in kldpo and "as dro:" in kldpo
    assert all(line == line.rstrip() for line in lines)
    assert PRESETS["dro"].alias_of == "kldpo"


def _python(code: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "src")}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)


@pytest.mark.slow
def test_building_the_parser_and_top_level_help_import_no_torch():
    done = _python(
        "import sys, dralign.cli\n"
        "p = dralign.cli.build_parser()\n"
        "help = p.format_help()\n"
        "heavy = [m for m in ('torch', 'transformers', 'accelerate', 'datasets') if m in sys.modules]\n"
        "print(heavy, 'train' in help and 'bench' in help)"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[] True"
    # `dralign train --help` builds the train options: no torch (the method flags come from
    # dralign.objectives, which imports torch on first use), transformers, accelerate or peft
    done = _python(
        "import sys, dralign.cli\n"
        "dralign.cli.build_parser().parse_args(['train', '--model', 'm'])\n"
        "print([m for m in ('torch', 'transformers', 'accelerate', 'peft', 'datasets') if m in sys.modules])"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


@pytest.mark.slow
def test_dralign_help_answers_in_under_a_second():
    done = _python(
        "import contextlib, io, time\n"
        "start = time.perf_counter()\n"
        "from dralign.cli import main\n"
        "out = io.StringIO()\n"
        "with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):\n"
        "    main(['--help'])\n"
        "print(time.perf_counter() - start, 'usage: dralign' in out.getvalue())"
    )
    assert done.returncode == 0, done.stderr
    elapsed, shown = done.stdout.split()
    assert shown == "True" and float(elapsed) < 1.0  # it imported torch and transformers: 6.5 s


def test_subcommand_options_are_added_when_it_is_used(capsys):
    parser = build_parser()
    cfg = from_args(TrainConfig, parser.parse_args(["train", "--model", "m", "--beta", "0.2"]))
    assert cfg.model.model == "m" and cfg.method.beta == 0.2
    with pytest.raises(SystemExit):
        parser.parse_args(["ratio", "fit", "--help"])
    assert "--target" in capsys.readouterr().out


def test_a_missing_gguf_package_is_one_line_naming_the_extra(tmp_path, monkeypatch, capsys):
    model = tmp_path / "m.gguf"
    model.write_bytes(b"GGUF")
    data = tmp_path / "d.jsonl"
    data.write_text('{"prompt": "p", "chosen": "a", "rejected": "b"}\n')
    monkeypatch.setitem(sys.modules, "gguf", None)
    assert main(["train", "--model", str(model), "--data", str(data), "--output-dir", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("dralign train: error:") and "pip install 'dralign[gguf]'" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_a_missing_gguf_file_is_one_line(tmp_path, capsys):
    data = tmp_path / "d.jsonl"
    data.write_text('{"prompt": "p", "chosen": "a", "rejected": "b"}\n')
    assert main(["train", "--model", "models/none.gguf", "--data", str(data), "--output-dir", str(tmp_path / "o")]) == 2
    assert capsys.readouterr().err == "dralign train: error: GGUF file models/none.gguf does not exist\n"


def _parse(argv, tmp_path=None):
    p = argparse.ArgumentParser()
    p.add_argument("--config")
    add_arguments(p, TrainConfig)
    return from_args(TrainConfig, p.parse_args(argv))


def test_flags_are_derived_from_the_dataclasses(tmp_path):
    cfg = _parse(
        [
            "--model",
            "m",
            "--beta",
            "0.3",
            "--no-ref-cache",
            "--lora-target-modules",
            "q",
            "v",
            "--global-batch",
            "exact",
        ]
    )
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
    assert (
        main(
            [
                "train",
                "--model",
                str(tmp_path / "nope"),
                "--data",
                str(tmp_path / "missing.jsonl"),
                "--output-dir",
                str(tmp_path / "o"),
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert err.startswith("dralign train: error:") and "Traceback" not in err
    assert main(["train", "--method", "dpoo", "--model", "x", "--data", "y"]) == 2
    assert "valid presets" in capsys.readouterr().err


@pytest.mark.slow
def test_demo_runs_end_to_end_at_reduced_size(tmp_path, capsys):
    """`dralign demo` at a reduced size: f-DPO's divergences (DPO's frontier at two β and shorter
    training, forward KL and JS each on its own β grid) trained from one (briefly pretrained,
    cached) world LM on two seeds, the control computed in the same run; the tables print, and
    the plots, report and results exist."""
    from dralign_bench.shift import SCENARIOS
    from dralign_bench.shift.scenarios import FDPO_BETAS

    out_dir = tmp_path / "demo"
    argv = [
        "demo",
        "--seeds",
        "2",
        "--steps",
        "2",
        "--train-pairs",
        "32",
        "--eval-prompts",
        "4",
        "--eval-pairs",
        "8",
        "--max-new-tokens",
        "16",
        "--lm-steps",
        "8",
        "--cache-dir",
        str(tmp_path / "cache"),
        "--output-dir",
        str(out_dir),
    ]
    assert main(argv) == 0
    out = capsys.readouterr().out
    results = json.loads((out_dir / "results.json").read_text())
    fdpo = {f"mix/{m}[beta={b:g}]" for m, grid in FDPO_BETAS.items() for b in grid}
    assert {"start", "mix/dpo[beta=0.1]", "mix/dpo[beta=1]"} | fdpo <= set(results["runs"])
    assert sum(r.startswith("mix/dpo[beta=1,lr=") for r in results["runs"]) == len(SCENARIOS["divergence"].short)
    assert all(len(run["seeds"]) == 2 for run in results["runs"].values())
    assert len(results["claims"]) == 6  # per divergence: reward, entropy, calibration
    for claim in results["claims"]:
        assert set(claim["control"]) >= {"name", "value", "threshold", "passed"}
        assert claim["verdict"] in (
            "reproduced",
            "partly reproduced",
            "contradicted",
            "not significant",
            "underpowered",
            "invalid test",
        )
    for path in results["files"]["plots"] + [results["files"]["report"]]:
        assert Path(path).stat().st_size > 0
        assert path in out.replace("\n", "")
    assert "dralign demo" in (out_dir / "report.md").read_text()


@pytest.mark.slow
def test_bench_shift_sources_fits_density_ratios_and_gates_dora_on_its_control(tmp_path):
    """`dralign bench shift --scenarios sources` at a tiny size: the ratios are cross-fitted once
    per seed (AUC and ESS saved), DoRA and its tuned baselines are trained, the control reads the
    DPO runs on all rows and on the human rows, the oracle-weighted run and the AUC."""
    out_dir = tmp_path / "shift"
    argv = [
        "bench",
        "shift",
        "--scenarios",
        "sources",
        "--seeds",
        "2",
        "--validation-seeds",
        "0",
        "--steps",
        "2",
        "--train-pairs",
        "80",
        "--synthetic-fraction",
        "0.9",
        "--eval-prompts",
        "4",
        "--eval-pairs",
        "8",
        "--max-new-tokens",
        "8",
        "--betas",
        "0.1",
        "1",
        "--lm-steps",
        "8",
        "--cache-dir",
        str(tmp_path / "cache"),
        "--output-dir",
        str(out_dir),
    ]  # 8 human rows: enough for the ratio fit's 5 folds
    assert main(argv) == 0
    results = json.loads((out_dir / "results.json").read_text())
    assert {
        "human/dpo[beta=0.1]",
        "human/dpo[beta=1]",
        "sources/dora[lam=0.5]",
        "sources/dro[tau=0.5]",
        "sources/dora-reweight",
        "sources-oracle/dora-reweight",
    } <= set(results["runs"])
    assert len(results["density_ratios"]) == 2 and all(
        0.0 <= r["auc"] <= 1.0 and 0 < r["ess"] <= 1.0 and 0.0 <= r["oracle_auc"] <= 1.0
        for r in results["density_ratios"]
    )
    dora_claim = results["claims"][0]
    assert "AUC" in dora_claim["control"]["detail"] and dora_claim["comparisons"][0]["a"] == "sources/dora[lam=0.5]"
    assert results["power"]["all"]["comparisons"] == 3
    assert "Density ratios" in (out_dir / "report.md").read_text()
