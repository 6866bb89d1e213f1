"""WDPO through the trainer: SDPA end to end, exact-mode refusal, composition with KLDPO."""

import json

import pytest
import torch
from safetensors.torch import load_file

from dralign.cli import main
from helpers import write_jsonl


@pytest.fixture(scope="module")
def setup(tmp_path_factory, tiny_model_dir):
    root = tmp_path_factory.mktemp("wdpo")
    model = tiny_model_dir("llama")
    rows = [{"prompt": f"item {i}:", "chosen": " good nice great", "rejected": " bad awful poor"} for i in range(16)]
    data = write_jsonl(root / "d.jsonl", rows)
    return root, model, data


def _run(root, model, data, name, *extra):
    out = root / name
    code = main(
        [
            "train",
            "--model",
            model,
            "--data",
            str(data),
            "--output-dir",
            str(out),
            "--max-steps",
            "1",
            "--batch-size",
            "8",
            "--optimizer",
            "sgd",
            "--lr",
            "0.5",
            "--scheduler",
            "constant",
            "--max-grad-norm",
            "0",
            "--no-progress",
            *extra,
        ]
    )
    return code, out


def test_wdpo_trains_on_sdpa_and_logs_the_penalty(setup):
    root, model, data = setup
    code, out = _run(root, model, data, "fd", "--method", "wdpo", "--rho", "0.5")
    assert code == 0
    record = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    assert record["penalty/wasserstein"] > 0


def test_exact_penalty_on_sdpa_fails_before_training(setup, capsys):
    root, model, data = setup
    code, out = _run(root, model, data, "exact-sdpa", "--method", "wdpo", "--penalty-mode", "exact")
    assert code == 2 and "eager" in capsys.readouterr().err
    assert not (out / "metrics.jsonl").exists()


def test_finite_difference_update_matches_exact_update(setup):
    root, model, data = setup
    _, fd = _run(root, model, data, "fd-eager", "--method", "wdpo", "--rho", "2.0", "--attn-implementation", "eager")
    _, ex = _run(
        root,
        model,
        data,
        "ex-eager",
        "--method",
        "wdpo",
        "--rho",
        "2.0",
        "--attn-implementation",
        "eager",
        "--penalty-mode",
        "exact",
    )
    _, dpo = _run(root, model, data, "dpo-eager", "--method", "dpo", "--attn-implementation", "eager")
    a, b, base = (load_file(str(d / "model.safetensors")) for d in (fd, ex, dpo))
    da = torch.cat([(a[k] - base[k]).flatten() for k in base])  # the penalty's share of the update
    db = torch.cat([(b[k] - base[k]).flatten() for k in base])
    assert db.norm() > 0
    assert torch.nn.functional.cosine_similarity(da, db, dim=0) > 0.99


def test_wdpo_on_kldpo_with_accumulation_equals_one_batch(setup):
    """Exact penalty: 4 micro-batches of 2 = one batch of 8 (the finite-difference step is chosen
    per micro-batch, so there the two agree only to the FD error, ~1e-3 relative)."""
    root, model, data = setup
    common = (
        "--method",
        "kldpo",
        "--penalty",
        "wasserstein",
        "--rho",
        "1.0",
        "--tau",
        "0.5",
        "--penalty-mode",
        "exact",
        "--attn-implementation",
        "eager",
    )
    _, one = _run(root, model, data, "kw1", *common)
    _, four = _run(root, model, data, "kw4", *common, "--batch-size", "2", "--grad-accum", "4")
    a, b = (load_file(str(d / "model.safetensors")) for d in (one, four))
    assert max((a[k] - b[k]).abs().max().item() for k in a) < 1e-5


def test_sqrt_mean_penalty_under_accumulation_equals_one_big_batch(setup):
    """ρ·√S with S over the effective batch: 2 micro-batches of 4 give the update of one batch of
    8 (exact mode, eager attention; the trainer gathers S before the micro-batches' backward)."""
    root, model, data = setup
    common = (
        "--method",
        "wdpo",
        "--rho",
        "5",
        "--penalty-form",
        "sqrt_mean",
        "--penalty-mode",
        "exact",
        "--attn-implementation",
        "eager",
        "--dtype",
        "float32",
        "--prefix-sharing",
        "off",
    )
    code, big = _run(root, model, data, "sqrt-big", *common)
    assert code == 0
    code, split = (
        main(
            [
                "train",
                "--model",
                model,
                "--data",
                str(data),
                "--output-dir",
                str(root / "sqrt-split"),
                "--max-steps",
                "1",
                "--batch-size",
                "4",
                "--grad-accum",
                "2",
                "--optimizer",
                "sgd",
                "--lr",
                "0.5",
                "--scheduler",
                "constant",
                "--max-grad-norm",
                "0",
                "--no-progress",
                *common,
            ]
        ),
        root / "sqrt-split",
    )
    assert code == 0
    a, b = load_file(str(big / "model.safetensors")), load_file(str(split / "model.safetensors"))
    start = load_file(str(next(p for p in __import__("pathlib").Path(model).glob("*.safetensors"))))
    moved = max(float((a[k] - start[k]).abs().max()) for k in a if k in start)
    assert moved > 1e-4  # the step did something
    assert max(float((a[k] - b[k]).abs().max()) for k in a) < 1e-5
