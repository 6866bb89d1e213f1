"""Non-finite losses never reach the weights: the step is skipped and counted; K in a row abort."""

import json

import pytest
import torch
from safetensors.torch import load_file

from dralign.config import build
from dralign.train import TrainConfig, TrainingError, train
from helpers import write_jsonl


@pytest.fixture(scope="module")
def setup(tmp_path_factory, tiny_model_dir):
    root = tmp_path_factory.mktemp("nonfinite")
    model = tiny_model_dir("llama")
    rows = [{"prompt": f"item {i}:", "chosen": " good nice", "rejected": " bad awful"} for i in range(16)]
    data = write_jsonl(root / "d.jsonl", rows)
    return root, model, data


def _cfg(root, model, data, name, **kw):
    return build(
        TrainConfig,
        dict(model=model, data=str(data), output_dir=str(root / name), batch_size=8, lr=1e-2, progress=False, **kw),
    )


def _poison(bad_steps):
    """An after-backward hook that makes the gradient NaN on the given (0-based) steps."""

    def hook(step, model):
        if step in bad_steps:
            for p in model.parameters():
                if p.grad is not None:
                    p.grad.fill_(float("nan"))

    return [hook]


def test_nonfinite_step_is_skipped_and_counted(setup):
    root, model, data = setup
    result = train(_cfg(root, model, data, "skip", max_steps=3), after_backward=_poison({1}))
    assert result.skipped_steps == 1 and result.status == "completed"
    records = [json.loads(line) for line in (root / "skip" / "metrics.jsonl").read_text().splitlines()]
    assert [r["skipped"] for r in records] == [False, True, False]
    weights = load_file(str(root / "skip" / "model.safetensors"))
    assert all(torch.isfinite(w).all() for w in weights.values())


def test_consecutive_nonfinite_steps_abort_with_a_clear_message(setup):
    root, model, data = setup
    with pytest.raises(TrainingError, match="3 consecutive steps had a non-finite"):
        train(_cfg(root, model, data, "abort", max_steps=5, max_bad_steps=3), after_backward=_poison({0, 1, 2}))


def test_float16_weights_advice_names_what_works(setup):
    """NaN steps with --dtype float16 advise bf16 or fp32 weights, not a setting already in use."""
    root, model, data = setup
    with pytest.raises(TrainingError) as e:
        train(
            _cfg(root, model, data, "fp16", max_steps=3, max_bad_steps=2, dtype="float16"),
            after_backward=_poison({0, 1, 2}),
        )
    assert "--dtype bfloat16 or float32" in str(e.value) and "--mixed-precision no" not in str(e.value)
