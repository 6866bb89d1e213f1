"""Input that would train on nothing, or on nonsense, is refused by name (issue 18 items 10, 16):
DoRA ratios that are all 0, conversational responses with no assistant message, a TRL-bridge
column value that is not a number."""

from __future__ import annotations

import pytest

from dralign.cli import main
from dralign.data import DataError
from dralign.data.examples import RowMeta
from dralign.data.formats import validate_pairs
from dralign.data.metadata import density_ratios
from helpers import preference_rows, write_jsonl


def meta(ratio, row=0):
    return RowMeta(file="d.jsonl", row=row, ratio=ratio)


def test_all_zero_density_ratios_are_refused_naming_the_column():
    with pytest.raises(DataError, match=r"^d.jsonl: column 'h': every row's density ratio is 0"):
        density_ratios([meta(0.0, i) for i in range(4)], column="h")
    h, _ = density_ratios([meta(0.0), meta(2.0, 1)])  # one row with weight is training
    assert h.tolist() == [0.0, 2.0]


@pytest.mark.slow
def test_dora_with_every_ratio_zero_stops_before_training(tiny_model_dir, tmp_path, capsys):
    rows = [{**r, "ratio": 0.0} for r in preference_rows(8)]
    data = write_jsonl(tmp_path / "zero.jsonl", rows)
    model = tiny_model_dir("llama")
    capsys.readouterr()  # the fixture's own output
    code = main(
        [
            "train",
            "--model",
            model,
            "--data",
            str(data),
            "--method",
            "dora",
            "--batch-size",
            "4",
            "--max-length",
            "64",
            "--max-steps",
            "2",
            "--no-progress",
            "--output-dir",
            str(tmp_path / "out"),
        ]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    assert "column 'ratio'" in err and "every row's density ratio is 0" in err


@pytest.mark.parametrize("roles", [["system"], ["user"], ["system", "user"]])
def test_a_conversational_response_without_an_assistant_message_is_a_bad_row(roles):
    user = {"role": "user", "content": "hi"}
    good = [{"role": "assistant", "content": "hello"}]
    bad_response = [{"role": role, "content": f"be {role}"} for role in roles]
    rows = [
        {"prompt": [user], "chosen": good, "rejected": bad_response},
        {"prompt": [user], "chosen": good, "rejected": [{"role": "assistant", "content": "no"}]},
    ]
    fmt, records, bad = validate_pairs(rows)
    assert fmt == "conversational" and len(records) == 1
    assert [(b.row, b.field) for b in bad] == [(0, "rejected")]
    assert "no 'assistant' message" in bad[0].detail and roles[0] in bad[0].detail


def test_trl_bridge_names_the_row_without_a_target_prob():
    pytest.importorskip("trl")
    from datasets import Dataset

    import dralign
    from dralign.errors import BadInputError
    from dralign.integrations.trl import plan_columns

    train = Dataset.from_dict(
        {"prompt": ["p"] * 3, "chosen": ["a"] * 3, "rejected": ["b"] * 3, "target_prob": [0.2, None, 0.6]}
    )
    with pytest.raises(
        BadInputError,
        match=r"^training dataset row 1: column 'target_prob': a row "
        r"has None",
    ):
        plan_columns(dralign.Objective.from_preset("dora"), train)
    held_out = Dataset.from_dict({"target_prob": [0.5, None]})
    with pytest.raises(BadInputError, match=r"^eval dataset row 1: column 'target_prob'"):
        plan_columns(dralign.Objective.from_preset("dora"), train.select([0, 2]), [held_out])
    zeros = Dataset.from_dict({"prompt": ["p"] * 2, "chosen": ["a"] * 2, "rejected": ["b"] * 2, "ratio": [0.0, 0.0]})
    with pytest.raises(BadInputError, match="every training row's density ratio is 0"):
        plan_columns(dralign.Objective.from_preset("dora"), zeros)


@pytest.mark.parametrize("name, content", [("e.jsonl", ""), ("e.json", "[]"), ("e.csv", "prompt,chosen\n")])
def test_a_file_without_rows_is_one_line_naming_it(tmp_path, name, content):
    """It was '<no rows>: cannot detect the data format' (found by the fuzz target)."""
    from dralign.data import load_rows

    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(DataError, match=rf"^{path}: no rows"):
        load_rows(path)
