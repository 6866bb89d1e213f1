"""`make bench-gpu` (`python -m dralign_bench.gpu`): run on CPU with a tiny model (the GPU run
needs a GPU machine), the real shapes' parameter counts, and the FSDP check's commands."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM

from dralign_bench.gpu import FSDP_CONFIG, SHAPES, fsdp_commands, parse_args, run


@pytest.mark.parametrize("shape, parameters", [("qwen2-0.5b", 494_032_768), ("smollm2-135m", 134_515_008)])
def test_shapes_have_the_real_models_parameter_counts(shape, parameters):
    """The published parameter counts of Qwen2-0.5B and SmolLM2-135M (tied embeddings)."""
    values = dict(SHAPES[shape])
    config = AutoConfig.for_model(values.pop("model_type"), **values)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    assert sum(p.numel() for p in model.parameters()) == parameters


def test_fsdp_commands_split_one_batch_over_two_processes(tmp_path):
    one, two = fsdp_commands("M", "R", "D.jsonl", tmp_path, 128)
    assert one[one.index("--batch-size") + 1] == "8" and two[two.index("--batch-size") + 1] == "4"
    assert "launch" in two and str(tmp_path / "fsdp2.yaml") in two
    config = (tmp_path / "fsdp2.yaml").read_text()
    assert config == FSDP_CONFIG and "distributed_type: FSDP" in config and "num_processes: 2" in config
    assert one[one.index("--method") + 1] == two[two.index("--method") + 1] == "kldpo"


def test_gpu_refuses_without_a_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit, match="no GPU"):
        run(parse_args([]))


@pytest.mark.slow
def test_tiny_run_on_cpu_reports_both_trainers(tmp_path):
    pytest.importorskip("trl")
    out = tmp_path / "gpu.json"
    results = run(
        parse_args(
            ["--device", "cpu", "--tiny", "--threads", "1", "--json", str(out), "--work-dir", str(tmp_path / "work")]
        ),
        log=lambda *a: None,
    )
    assert json.loads(out.read_text()) == json.loads(json.dumps(results))
    c = results["compare"]
    assert c["dralign_pairs_per_s"] > 0 and c["trl_pairs_per_s"] > 0
    assert c["ratio_vs_trl"] == pytest.approx(c["dralign_pairs_per_s"] / c["trl_pairs_per_s"])
    # > 0 only: on a CPU a bf16 n×n matmul is no upper bound of the training step's kernels
    # (MFU 1.34 at f79ae48 and 1.73 now on an idle 2-core machine); on a GPU the peak bounds it
    assert c["dralign_mfu"] > 0
    assert c["tokens_identical"] and c["timed_steps_each"] == 2
    assert c["dralign_peak_gpu_mb"] is None  # no GPU memory on CPU
    assert results["model"]["shape"] == "tiny" and results["model"]["vocab_size"] == SHAPES["tiny"]["vocab_size"]
    assert "skipped" in results["fsdp"]
