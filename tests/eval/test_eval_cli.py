"""`dralign eval` options and `run_eval` end to end on tiny saved models."""

from __future__ import annotations

import argparse
import dataclasses
import io
import json

import pytest
from rich.console import Console

from dralign.config import ConfigError, add_arguments, from_args
from dralign.data import DataError
from dralign.eval.cli import EvalConfig, EvalDataOptions, EvalOptions, load_prompts, run_eval
from dralign.eval.registry import register_prompts, register_reward
from dralign.modeling.tiny import save_tiny
from dralign_bench.world import generate_corpus, generate_prompts
from dralign_bench.world.specs import world_prompts, world_reward
from helpers import write_jsonl


@pytest.fixture(autouse=True, scope="module")
def world_specs():
    """world:... rewards and prompts, registered as the installed entry points do (the test does
    not rely on this checkout's metadata being installed)."""
    register_reward("world", world_reward)
    register_prompts("world", world_prompts)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval_models")
    texts = generate_corpus(150, seed=0)
    kw = dict(arch="llama", texts=texts, hidden=32, layers=1, heads=2)
    return {"start": save_tiny(root / "start", seed=0, **kw), "policy": save_tiny(root / "policy", seed=1, **kw)}


@pytest.fixture(scope="module")
def pairs_file(tmp_path_factory):
    rows = [
        {"prompt": p, "chosen": " a lovely happy place.", "rejected": " a dull sad place."}
        for p in generate_prompts(5, seed=0, split="heldout")
    ]
    return write_jsonl(tmp_path_factory.mktemp("eval_data") / "heldout.jsonl", rows)


def quiet_console():
    return Console(file=io.StringIO(), width=160, force_terminal=False)


DATA_OPTIONS = {f.name for f in dataclasses.fields(EvalDataOptions)}


def config(**kw) -> EvalConfig:
    """An EvalConfig from flat options, as the command line builds it."""
    return EvalConfig(
        eval=EvalOptions(**{k: v for k, v in kw.items() if k not in DATA_OPTIONS}),
        data=EvalDataOptions(**{k: v for k, v in kw.items() if k in DATA_OPTIONS}),
    )


def test_run_eval_end_to_end_writes_json(models, pairs_file, tmp_path):
    output = tmp_path / "out" / "eval.json"
    console = quiet_console()
    results = run_eval(
        config(
            model=models["policy"],
            reference=models["start"],
            data=str(pairs_file),
            prompts="world:heldout:3",
            reward=["world:sentiment", "world:conciseness"],
            reward_b="world:formality",
            alphas=[0.0, 0.5, 1.0],
            num_samples=2,
            max_new_tokens=6,
            batch_size=4,
            output=str(output),
        ),
        console=console,
    )
    js = json.loads(output.read_text())
    assert set(js) == {"model", "reference", "data", "preference", "generation", "shift_sweep", "config"}
    assert js["data"]["kept"] == 5 and js["data"]["skipped"] == 0
    assert set(js["preference"]) >= {"accuracy", "margin", "ece", "brier", "n"}
    assert js["preference"]["n"] == 5
    assert set(js["preference"]["accuracy"]) == {"mean", "low", "high", "n", "level"}
    gen = js["generation"]
    assert set(gen["rewards"]) == {"world:sentiment", "world:conciseness"}
    assert set(gen["rewards"]["world:sentiment"]) == {"policy", "start", "win_rate"}
    for key in ("kl", "length"):
        assert set(gen[key]) == {"mean", "low", "high", "n", "level"}
    for key in ("token_entropy", "distinct_1", "distinct_2", "eos_rate"):
        assert isinstance(gen[key], float)
    assert gen["n_prompts"] == 3 and gen["num_samples"] == 2
    sweep = js["shift_sweep"]
    assert set(sweep["reward"]) == set(sweep["win_rate"]) == {"0.0", "0.5", "1.0"}
    assert sweep["worst"]["alpha"] in (0.0, 0.5, 1.0)
    assert sweep["reward_a"] == "world:sentiment" and sweep["reward_b"] == "world:formality"
    assert js["config"]["eval"]["num_samples"] == 2
    # the returned results hold the same numbers
    assert results["generation"]["kl"].mean == gen["kl"]["mean"]
    table = console.file.getvalue()
    for text in (
        "accuracy",
        "ece",
        "world:sentiment: win rate vs start",
        "KL(policy || start)",
        "distinct_2",
        "worst: r(alpha=",
        "95% interval",
    ):
        assert text in table


def test_run_eval_without_reference_reports_policy_metrics_only(models, tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("Describe the old harbor:\n\nReview the cafe:\n")
    console = quiet_console()
    results = run_eval(
        config(model=models["policy"], prompts=str(prompts), reward=["world:sentiment"], max_new_tokens=4),
        console=console,
    )
    gen = results["generation"]
    assert gen["n_prompts"] == 2
    assert gen["kl"] is None and gen["rewards"]["world:sentiment"]["win_rate"] is None
    assert "needs --reference" in console.file.getvalue()
    assert "preference" not in results and "shift_sweep" not in results


@pytest.mark.parametrize(
    "kw, message",
    [
        ({}, "--model"),
        ({"model": "m"}, "nothing to evaluate"),
        ({"model": "m", "data": "d.jsonl"}, "--data needs --reference"),
        ({"model": "m", "prompts": "world:heldout:2", "reward_b": "world:formality"}, "--reward-b needs --reward"),
        ({"model": "m", "data": "d.jsonl", "reference": "r", "reward": ["world:sentiment"]}, "pass --prompts"),
        ({"model": "m", "prompts": "world:heldout:2", "num_samples": 0}, "--num-samples"),
        ({"model": "m", "prompts": "world:heldout:2", "reward": ["world:nope"]}, "unknown gold objective"),
    ],
)
def test_run_eval_refuses_bad_options_before_loading(kw, message):
    with pytest.raises(ValueError, match=message):
        run_eval(config(**kw), console=quiet_console())


def test_run_eval_bad_prompts_spec(models):
    with pytest.raises(ValueError, match="world:heldout:N"):
        run_eval(config(model=models["policy"], prompts="world:test:3"), console=quiet_console())
    with pytest.raises(DataError, match="not found"):
        run_eval(config(model=models["policy"], prompts="missing.jsonl"), console=quiet_console())


def test_load_prompts(tmp_path, models):
    from dralign.modeling import load_tokenizer

    assert load_prompts("world:heldout:4", seed=1)[0] == generate_prompts(4, 1, "heldout")
    table = write_jsonl(tmp_path / "p.jsonl", [{"prompt": "a:"}, {"prompt": "b:"}])
    assert load_prompts(str(table)) == (["a:", "b:"], False)
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"prompt": "a:"}, {"text": "b:"}])
    with pytest.raises(DataError, match=r"bad.jsonl: row 1 \(line 2\): no 'prompt' field"):
        load_prompts(str(bad))
    texts = write_jsonl(tmp_path / "t.jsonl", [{"text": "c:"}])
    assert load_prompts(str(texts), column="text") == (["c:"], False)
    tok = load_tokenizer(models["policy"])  # tiny tokenizers carry a chat template
    chat = write_jsonl(tmp_path / "chat.jsonl", [{"prompt": [{"role": "user", "content": "Review the cafe"}]}])
    prompts, rendered = load_prompts(str(chat), tokenizer=tok)
    assert rendered and prompts == ["<|user|>Review the cafe<|endoftext|><|assistant|>"]
    with pytest.raises(DataError, match="non-empty string"):
        load_prompts(str(write_jsonl(tmp_path / "e.jsonl", [{"prompt": ""}])))


def test_options_derive_flags_and_yaml(tmp_path):
    parser = argparse.ArgumentParser()
    parser.add_argument("--config")
    add_arguments(parser, EvalConfig)
    yaml_file = tmp_path / "eval.yaml"
    yaml_file.write_text("model: m\nbeta: 0.2\nreward: [world:sentiment]\n")
    args = parser.parse_args(
        [
            "--config",
            str(yaml_file),
            "--prompts",
            "world:heldout:8",
            "--reward",
            "world:sentiment",
            "world:formality",
            "--reward-b",
            "world:conciseness",
            "--alphas",
            "0",
            "0.5",
            "1",
            "--mixture",
            "geometric",
            "--num-samples",
            "3",
        ]
    )
    opts = from_args(EvalConfig, args).eval
    assert opts.model == "m" and opts.beta == 0.2
    assert opts.reward == ["world:sentiment", "world:formality"]
    assert opts.alphas == [0.0, 0.5, 1.0] and opts.mixture == "geometric"
    assert opts.num_samples == 3 and opts.output is None
    assert EvalOptions().alphas == [round(0.1 * i, 1) for i in range(11)]
    with pytest.raises(ConfigError, match="beta"):
        from_args(EvalConfig, parser.parse_args(["--beta", "high"]))


def test_skipped_rows_are_counted_in_the_output_and_printed(models, pairs_file, tmp_path):
    """--on-bad-row skip never drops a row without a word: read/kept/skipped in the JSON and
    on the console (issue: nothing lost silently)."""
    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        pairs_file.read_text() + json.dumps({"prompt": "p", "chosen": "", "rejected": "x"}) + "\n" + "{not json\n"
    )
    output = tmp_path / "eval.json"
    console = quiet_console()
    run_eval(
        config(
            model=models["policy"],
            reference=models["start"],
            data=str(bad),
            on_bad_row="skip",
            batch_size=4,
            output=str(output),
        ),
        console=console,
    )
    data = json.loads(output.read_text())["data"]
    assert (data["rows_read"], data["kept"], data["skipped"]) == (7, 5, 2)
    assert sum(data["skipped_by_reason"].values()) == 2
    assert "kept 5, skipped 2" in console.file.getvalue()


def test_long_prompts_are_cut_and_counted_as_in_training(models, tmp_path):
    rows = [{"prompt": "word " * 300, "chosen": " a lovely happy place.", "rejected": " a dull sad place."}] * 3
    data = write_jsonl(tmp_path / "long.jsonl", rows)
    output = tmp_path / "eval.json"
    run_eval(
        config(
            model=models["policy"],
            reference=models["start"],
            data=str(data),
            max_length=64,
            batch_size=4,
            output=str(output),
        ),
        console=quiet_console(),
    )
    js = json.loads(output.read_text())
    assert js["data"]["kept"] == 3 and js["data"]["truncated_prompt"] == 3
    assert js["preference"]["n"] == 3
