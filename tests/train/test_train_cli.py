"""`dralign train` through the command line: every preset end to end, learning, --help,
--config YAML, bad rows, real data."""

from __future__ import annotations

import gzip
import json
import random
import statistics
from pathlib import Path

import pytest
import torch
import yaml
from transformers import AutoModelForCausalLM

from dralign.cli import main
from dralign.objectives.presets import PRESETS
from helpers import NEGATIVE, POSITIVE, preference_rows, write_jsonl

FAST = ["--no-progress", "--max-length", "64", "--batch-size", "8"]


def train(*args: str) -> int:
    return main(["train", *FAST, *map(str, args)])


def metrics(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line]


PRESET_CASES = [
    # (preset, architecture, data fixture)
    ("dpo", "llama", "pref"),
    ("ipo", "gpt2", "pref"),
    ("hinge", "qwen2", "pref"),
    ("cdpo", "llama", "pref"),
    ("rdpo", "gpt2", "pref"),
    ("fdpo-fkl", "llama", "pref"),
    ("fdpo-js", "gpt2", "pref"),
    ("fdpo-alpha", "qwen2", "pref"),
    ("aot", "llama", "pref"),
    ("aot-unpaired", "gpt2", "unpaired"),
    ("kldpo", "llama", "pref"),
    ("dora", "gpt2", "pref"),
    ("dora-reweight", "llama", "pref"),
    ("dro", "qwen2", "pref"),
    ("drdpo", "llama", "pref"),
    ("group-dro", "gpt2", "pref"),
    ("cvar", "llama", "pref"),
]


def test_preset_cases_cover_every_preset_but_wdpo():
    assert {p for p, _, _ in PRESET_CASES} == set(PRESETS) - {"wdpo"}


@pytest.mark.parametrize("preset,arch,data", PRESET_CASES, ids=[c[0] for c in PRESET_CASES])
def test_every_preset_trains_and_saves(
    preset, arch, data, tiny_model_dir, pref_jsonl, unpaired_jsonl, tmp_path, capsys
):
    model = tiny_model_dir(arch)
    out = tmp_path / "out"
    rc = train(
        "--model",
        model,
        "--data",
        unpaired_jsonl if data == "unpaired" else pref_jsonl,
        "--method",
        preset,
        "--max-steps",
        2,
        "--grad-accum",
        2,
        "--lr",
        1e-3,
        "--output-dir",
        out,
    )
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert "completed: 2 steps" in captured.out
    rows = metrics(out)
    assert [r["step"] for r in rows] == [1, 2]
    assert all(torch.isfinite(torch.tensor(r["loss"])) and not r["skipped"] for r in rows)
    # the weights moved and the saved folder loads
    start = AutoModelForCausalLM.from_pretrained(model)
    trained = AutoModelForCausalLM.from_pretrained(out)
    assert type(trained) is type(start)
    diff = max((a - b).abs().max().item() for a, b in zip(start.state_dict().values(), trained.state_dict().values()))
    assert diff > 1e-6
    card = (out / "README.md").read_text()
    assert card.startswith(f"# out: {preset}\n")
    assert f"- method: `{preset}`" in card
    assert PRESETS[preset].paper in card
    resolved = yaml.safe_load((out / "config.yaml").read_text())
    assert resolved["method"]["method"] == preset


def conditional_rows(n: int = 64, seed: int = 0) -> list[dict]:
    """Pairs whose preferred word class (positive or negative words) is named in the prompt, so
    that the preference must be learnt from the prompt (one gradient step does not solve it)."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        happy = i % 2 == 0
        pos = " " + " ".join(rng.choices(POSITIVE, k=3)) + "."
        neg = " " + " ".join(rng.choices(NEGATIVE, k=3)) + "."
        rows.append(
            {
                "prompt": f"Human: answer {i} in a {'happy' if happy else 'sad'} way. Assistant:",
                "chosen": pos if happy else neg,
                "rejected": neg if happy else pos,
            }
        )
    return rows


def test_dpo_learns_the_preference(tiny_model_dir, tmp_path, capsys):
    """48 AdamW steps: the loss falls and the training-pair preference accuracy rises (means of
    the first 5 vs the last 5 steps). Also measures throughput (pairs/s, printed)."""
    data = write_jsonl(tmp_path / "conditional.jsonl", conditional_rows())
    out = tmp_path / "out"
    rc = train(
        "--model",
        tiny_model_dir("llama"),
        "--data",
        data,
        "--method",
        "dpo",
        "--max-steps",
        48,
        "--lr",
        3e-4,
        "--scheduler",
        "constant",
        "--output-dir",
        out,
    )
    assert rc == 0, capsys.readouterr().err
    rows = metrics(out)
    assert [r["step"] for r in rows] == list(range(1, 49))

    def mean(key, part):
        return statistics.fmean(r[key] for r in part)

    first, last = rows[:5], rows[-5:]
    # measured: loss 0.689 -> 0.217, accuracy 0.475 -> 1.0, last margins 1.44
    assert mean("loss", last) < mean("loss", first) - 0.3, (mean("loss", first), mean("loss", last))
    assert mean("rewards/accuracies", first) < 0.7
    assert mean("rewards/accuracies", last) >= 0.9
    assert mean("rewards/margins", last) > 0.5
    pairs_per_s = statistics.median(r["pairs_per_s"] for r in rows)
    with capsys.disabled():
        print(f"\n[dpo throughput] tiny llama, batch 8, max_length 64: {pairs_per_s:.1f} pairs/s (median)")


def test_help_shows_grouped_sections(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for section in ("model:", "data:", "method:", "optim:", "logging:"):
        assert section in text
    method_part = text.split("method:")[1].split("optim:")[0]
    assert "--beta" in method_part and "--tau" in method_part
    assert "--lr" in text.split("optim:")[1].split("logging:")[0]
    assert "--resume" in text.split("logging:")[1]


def test_yaml_config_and_command_line_override(tiny_model_dir, pref_jsonl, tmp_path, capsys):
    config = tmp_path / "run.yaml"
    out = tmp_path / "out"
    config.write_text(
        yaml.safe_dump(
            {
                "model": tiny_model_dir("llama"),
                "data": str(pref_jsonl),
                "method": "kldpo",
                "beta": 0.3,
                "tau": 2.0,
                "max_steps": 1,
                "output_dir": str(out),
            }
        )
    )
    rc = train("--config", config, "--beta", "0.2")
    assert rc == 0, capsys.readouterr().err
    resolved = yaml.safe_load((out / "config.yaml").read_text())
    assert resolved["method"]["beta"] == 0.2  # command line wins
    assert resolved["method"]["tau"] == 2.0  # from YAML
    assert resolved["method"]["method"] == "kldpo"
    assert resolved["optim"]["max_steps"] == 1
    assert "beta=0.2" in (out / "README.md").read_text()
    # a bad value in the YAML file names the file
    config.write_text(yaml.safe_dump({"beta": "lots"}))
    assert train("--config", config, "--model", "x", "--data", "y") == 2
    err = capsys.readouterr().err
    assert str(config) in err and "beta" in err and "Traceback" not in err


# ----------------------------------------------------------------------------- bad rows
BAD_ROWS = {  # 0-based row -> field named in the message
    3: "chosen",  # missing
    7: "prompt",  # empty string
    11: None,  # invalid JSON
    15: "rejected",  # chosen == rejected
    19: "weight",  # negative weight
}


def bad_file(path: Path) -> Path:
    rows = preference_rows(40)
    for r in rows:
        r.pop("ratio"), r.pop("group")
    del rows[3]["chosen"]
    rows[7]["prompt"] = ""
    rows[11] = '{"prompt": "broken", "chosen": '
    rows[15]["rejected"] = rows[15]["chosen"]
    rows[19]["weight"] = -1.0
    return write_jsonl(path, rows)


def test_bad_rows_exit_2_naming_file_row_and_field(tiny_model_dir, tmp_path, capsys):
    data = bad_file(tmp_path / "bad.jsonl")
    rc = train("--model", tiny_model_dir("llama"), "--data", data, "--max-steps", 1, "--output-dir", tmp_path / "out")
    err = capsys.readouterr().err
    assert rc == 2
    assert "Traceback" not in err
    assert "5 bad row(s) out of 40" in err
    lines = err.splitlines()
    for row, field in BAD_ROWS.items():
        line = next((x for x in lines if f"row {row} (line {row + 1})" in x), None)
        assert line is not None, f"row {row} not named in:\n{err}"
        assert str(data) in line
        assert (f"field {field!r}" if field else "whole row") in line


def test_bad_rows_skipped_with_a_count(tiny_model_dir, tmp_path, capsys):
    data = bad_file(tmp_path / "bad.jsonl")
    out = tmp_path / "out"
    rc = train(
        "--model",
        tiny_model_dir("llama"),
        "--data",
        data,
        "--max-steps",
        2,
        "--on-bad-row",
        "skip",
        "--output-dir",
        out,
    )
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert "Read 40 rows" in captured.out and "kept 35, skipped 5" in captured.out
    for reason in ("missing_field: 1", "empty: 1", "invalid_json: 1", "chosen_equals_rejected: 1", "out_of_range: 1"):
        assert reason in captured.out
    assert len(metrics(out)) == 2


# ----------------------------------------------------------------------------- real data
def _first_rows(path: Path, n: int) -> list[dict]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt") as fh:
        return [json.loads(line) for line, _ in zip(fh, range(n))]


def test_real_model_on_hh_rlhf_implicit_prompts(shared_data, tmp_path, capsys):
    from dralign.data import load_rows, validate_pairs

    model = shared_data / "models" / "stories260K"
    source = shared_data / "hh-rlhf" / "harmless-base_test.jsonl.gz"
    rows = load_rows(source)
    _, _, bad = validate_pairs(rows)
    # the 4 special rows of this file: the chosen text is only the shared prompt (a prefix of
    # the rejected text), so no chosen completion is left after removing the prompt
    no_prefix = [b.row for b in bad]
    assert len(no_prefix) == 4 and {b.reason for b in bad} == {"empty"}, bad
    keep = sorted(set(range(36)) | set(no_prefix))
    subset = write_jsonl(tmp_path / "hh.jsonl", [rows[i].data for i in keep])
    new_rows = [keep.index(i) for i in no_prefix]

    common = [
        "--model",
        model,
        "--data",
        subset,
        "--max-length",
        128,
        "--max-prompt-length",
        96,
        "--batch-size",
        4,
        "--max-steps",
        2,
        "--lr",
        1e-3,
    ]
    rc = train(*common, "--output-dir", tmp_path / "err")
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err
    assert "4 bad row(s) out of 40" in err and "empty: 4" in err
    for row in new_rows:
        assert f"row {row} (line {row + 1})" in err

    out = tmp_path / "out"
    rc = train(*common, "--on-bad-row", "skip", "--output-dir", out)
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert "format implicit" in captured.out and "kept 36, skipped 4 (empty: 4)" in captured.out
    assert len(metrics(out)) == 2
    assert AutoModelForCausalLM.from_pretrained(out).config.model_type == "llama"


def test_real_model_on_ultrafeedback(shared_data, tmp_path, capsys):
    model = shared_data / "models" / "stories260K"
    subset = write_jsonl(tmp_path / "uf.jsonl", _first_rows(shared_data / "ultrafeedback" / "train1000.jsonl", 32))
    out = tmp_path / "out"
    rc = train(
        "--model",
        model,
        "--data",
        subset,
        "--method",
        "group-dro",
        "--max-length",
        128,
        "--max-prompt-length",
        64,
        "--batch-size",
        4,
        "--grad-accum",
        2,
        "--max-steps",
        2,
        "--lr",
        1e-3,
        "--output-dir",
        out,
    )
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert "Read 32 rows" in captured.out and "format explicit" in captured.out
    rows = metrics(out)
    assert len(rows) == 2 and all(0 < r["loss"] < 10 for r in rows)
    assert AutoModelForCausalLM.from_pretrained(out).config.model_type == "llama"
