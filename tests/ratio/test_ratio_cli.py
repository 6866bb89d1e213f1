"""`dralign ratio fit` and `dralign train --method dora` end to end through the CLI."""

import json

import pytest
import torch

from dralign.cli import main
from dralign.modeling.tiny import save_tiny
from helpers import SHARED_DATA


@pytest.fixture(scope="module")
def marked(tmp_path_factory):
    """Rows whose source is perfectly predictable from the text (human responses carry @@@@)."""
    root = tmp_path_factory.mktemp("ratio")
    model = save_tiny(root / "m", "llama", texts=["hello world @@@@ the cat sat"] * 4)
    rows = []
    for i in range(60):
        human = i % 3 == 0
        tag = " @@@@" if human else ""
        rows.append(
            {
                "prompt": f"say thing {i}:",
                "chosen": f" good answer {i}{tag}",
                "rejected": f" bad answer {i}{tag}",
                "source": "human" if human else "synthetic",
            }
        )
    data = root / "rows.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root, model, data


def test_ratio_fit_writes_weights_train_reads_them(marked, capsys):
    root, model, data = marked
    out = root / "rows.ratios.jsonl"
    assert (
        main(
            [
                "ratio",
                "fit",
                "--data",
                str(data),
                "--model",
                model,
                "--target",
                "human",
                "--folds",
                "3",
                "--output",
                str(out),
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    auc = float(printed.split("Held-out AUC ")[1].split(",")[0])
    assert auc >= 0.95
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 60 and all("ratio" in r and "target_prob" in r for r in rows)
    human = torch.tensor([r["ratio"] for r in rows if r["source"] == "human"])
    assert human.mean().item() == pytest.approx(3.0, rel=0.1)  # 1 / pi_T with pi_T = 1/3
    assert (
        main(
            [
                "train",
                "--model",
                model,
                "--data",
                str(out),
                "--method",
                "dora",
                "--max-steps",
                "2",
                "--batch-size",
                "4",
                "--output-dir",
                str(root / "dora"),
                "--no-progress",
            ]
        )
        == 0
    )
    assert (root / "dora" / "model.safetensors").exists()


def test_train_dora_fits_ratios_inline(marked, capsys):
    root, model, data = marked
    assert (
        main(
            [
                "train",
                "--model",
                model,
                "--data",
                str(data),
                "--method",
                "dora",
                "--ratio-target",
                "human",
                "--max-steps",
                "2",
                "--batch-size",
                "4",
                "--output-dir",
                str(root / "inline"),
                "--no-progress",
            ]
        )
        == 0
    )
    assert "Held-out AUC" in capsys.readouterr().out


def test_dora_without_ratios_names_the_row(marked, capsys):
    root, model, data = marked
    assert (
        main(
            [
                "train",
                "--model",
                model,
                "--data",
                str(data),
                "--method",
                "dora",
                "--max-steps",
                "1",
                "--output-dir",
                str(root / "none"),
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "rows.jsonl row 0" in err and "ratio fit" in err


@pytest.mark.skipif(not (SHARED_DATA / "summarize-from-feedback").exists(), reason="../shared/data is absent")
def test_ratio_fit_on_real_human_vs_model_summaries(tmp_path, capsys):
    """summarize-from-feedback batch 18: human-written `ref` summaries vs model summaries,
    stories260K features. Measured held-out AUC: 0.737 (max_length 64, 5 folds)."""
    out = tmp_path / "tldr.ratios.jsonl"
    assert (
        main(
            [
                "ratio",
                "fit",
                "--data",
                str(SHARED_DATA / "summarize-from-feedback" / "tldr_batch18.jsonl"),
                "--model",
                str(SHARED_DATA / "models" / "stories260K"),
                "--response-level",
                "--chosen-source-column",
                "meta.chosen_policy",
                "--rejected-source-column",
                "meta.rejected_policy",
                "--target",
                "ref",
                "--max-length",
                "64",
                "--output",
                str(out),
            ]
        )
        == 0
    )
    auc = float(capsys.readouterr().out.split("Held-out AUC ")[1].split(",")[0])
    assert auc > 0.65
    assert len(out.read_text().splitlines()) == 674


def test_ratio_fit_names_a_bad_row_and_does_not_crash(marked, tmp_path, capsys):
    root, model, data = marked
    rows = [json.loads(line) for line in data.read_text().splitlines()]
    rows[7]["chosen"] = ""
    bad = tmp_path / "bad.jsonl"
    bad.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main(["ratio", "fit", "--data", str(bad), "--model", model, "--target", "human", "--folds", "3"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("dralign ratio: error:") and "Traceback" not in err
    assert "row 7 (line 8), field 'chosen'" in err and str(bad) in err


def test_inline_ratio_fit_reads_the_users_columns_and_max_length(tmp_path, monkeypatch):
    """`--ratio-target` fits on the rows the trainer reads: the user's --prompt-column etc. and
    --max-length reach the features (they were dropped: default columns, max_length 256)."""
    import dralign.ratio.fit as fit_module
    from dralign.config import build
    from dralign.ratio.prepare import with_fitted_ratios
    from dralign.train.config import TrainConfig

    rows = [
        {"question": f"q {i}", "good": f"yes {i}", "bad": f"no {i}", "origin": "human" if i % 2 else "web"}
        for i in range(8)
    ]
    data = tmp_path / "rows.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    seen = {}

    class Stop(Exception):
        pass

    def spy(rows, **kwargs):
        seen.update(rows=rows, **kwargs)
        raise Stop

    monkeypatch.setattr(fit_module, "fit_density_ratios", spy)
    model = save_tiny(tmp_path / "m", "llama")
    cfg = build(
        TrainConfig,
        {
            "model": model,
            "data": str(data),
            "method": "dora",
            "ratio_target": ["human"],
            "prompt_column": "question",
            "chosen_column": "good",
            "rejected_column": "bad",
            "source_column": "origin",
            "max_length": 64,
            "output_dir": str(tmp_path / "out"),
        },
    )
    with pytest.raises(Stop):
        with_fitted_ratios(cfg, log=lambda *_: None)
    assert seen["max_length"] == 64
    assert [r["prompt"] for r in seen["rows"]] == [r["question"] for r in rows]
    assert [r["chosen"] for r in seen["rows"]] == [r["good"] for r in rows]
    assert [r["source"] for r in seen["rows"]] == [r["origin"] for r in rows]
