"""Preference and generation evaluation, shift sweeps and reward specs (dralign.eval)."""

from __future__ import annotations

import json
import math
import textwrap

import numpy as np
import pytest
import torch

from dralign.data import tokenize_pairs, tokenize_unpaired
from dralign.eval import metrics as M
from dralign.eval.evaluate import (
    generation_eval,
    preference_eval,
    shift_sweep,
    symmetric_ece,
    to_jsonable,
)
from dralign.eval.generate import Completions, completion_log_likelihoods, sample_completions
from dralign.eval.registry import register_reward
from dralign.eval.rewards import load_reward, text_reward
from dralign.modeling import FrozenReference, pair_logps
from dralign.modeling.tiny import tiny_model
from dralign.stats import MeanCI, brier_score, expected_calibration_error
from dralign_bench.world import formality, generate_prompts, sentiment
from dralign_bench.world.specs import world_reward


@pytest.fixture(autouse=True, scope="module")
def world_rewards():
    """world:... rewards, registered as the installed entry point does (the test does not rely
    on this checkout's metadata being installed)."""
    register_reward("world", world_reward)


@pytest.fixture(scope="module")
def start(world_tok):
    return tiny_model("llama", vocab_size=len(world_tok), hidden=32, layers=1, seed=0)


@pytest.fixture(scope="module")
def policy(world_tok):
    return tiny_model("llama", vocab_size=len(world_tok), hidden=32, layers=1, seed=1)


@pytest.fixture(scope="module")
def pairs(world_tok):
    rows = [
        {"prompt": "Describe the old harbor:", "chosen": " a lovely calm place.", "rejected": " a dull grey dock."},
        {"prompt": "Review the cafe:", "chosen": " great coffee!", "rejected": " awful."},
        {"prompt": "Tell me about the zoo:", "chosen": " happy animals everywhere.", "rejected": " sad cages."},
        {"prompt": "Write about the park:", "chosen": " nice trees.", "rejected": " boring and dirty paths."},
    ]
    return tokenize_pairs(rows, world_tok)


# ---------------------------------------------------------------------------------------------
# preference_eval
# ---------------------------------------------------------------------------------------------


def test_preference_eval_matches_hand_computation(policy, start, pairs, world_tok):
    beta = 0.5
    out = preference_eval(policy, start, pairs, beta=beta, batch_size=3, seed=1)
    batch = pairs.collate(range(4))
    with torch.no_grad():
        p, r = pair_logps(policy, batch), pair_logps(start, batch)
    margins = beta * ((p.chosen_sum - r.chosen_sum) - (p.rejected_sum - r.rejected_sum))
    margins = margins.double().numpy()
    probs = 1.0 / (1.0 + np.exp(-margins))
    assert out["n"] == 4 and out["beta"] == beta
    assert out["margin"].mean == pytest.approx(margins.mean(), abs=1e-5)
    assert out["accuracy"].mean == pytest.approx(np.mean((margins > 0) + 0.5 * (margins == 0)))
    assert out["accuracy"].mean == pytest.approx(M.preference_accuracy(margins))
    assert out["reward_chosen"].mean == pytest.approx(
        beta * (p.chosen_sum - r.chosen_sum).double().mean().item(), abs=1e-5
    )
    # calibration: consistent with the metric functions
    assert out["brier"].mean == pytest.approx(brier_score(probs, np.ones(4)), abs=1e-6)
    assert out["ece"].mean == pytest.approx(
        expected_calibration_error(np.r_[probs, 1 - probs], np.r_[np.ones(4), np.zeros(4)]), abs=1e-6
    )
    for key in ("accuracy", "margin", "ece", "brier"):
        ci = out[key]
        assert ci.low <= ci.mean <= ci.high and ci.n == 4 and ci.level == 0.95
    # deterministic intervals; a Reference object works like a model
    again = preference_eval(
        policy,
        FrozenReference(tiny_model("llama", vocab_size=len(world_tok), hidden=32, layers=1, seed=0)),
        pairs,
        beta=beta,
        seed=1,
    )
    assert again["margin"].mean == pytest.approx(out["margin"].mean, abs=1e-5)
    assert again["ece"] == out["ece"] and again["brier"].low == pytest.approx(out["brier"].low)


def test_preference_eval_of_the_reference_itself_is_uninformative(start, pairs):
    out = preference_eval(start, start, pairs, beta=0.1)
    assert out["margin"].mean == 0.0 and out["accuracy"].mean == 0.5
    assert out["brier"].mean == pytest.approx(0.25)
    assert out["ece"].mean == pytest.approx(0.0)  # p = ½ for every pair, right half the time


def test_symmetric_ece_hand_values():
    # every pair at p = 0.8: bins 8 (p=.8, all labels 1) and 1 (p=.2, all labels 0)
    assert symmetric_ece([0.8, 0.8]) == pytest.approx(0.2)
    # one pair at 0.7, one at 0.3: the 0.7 bin holds (0.7, 1) and the mirrored (0.7, 0), so
    # its accuracy is ½ (the model is right half the time when it says 70 %); same at 0.3
    assert symmetric_ece([0.7, 0.3]) == pytest.approx(0.2)
    assert symmetric_ece([0.5]) == 0.0


def test_preference_eval_refuses_bad_input(policy, world_tok, pairs):
    with pytest.raises(ValueError, match="reference"):
        preference_eval(policy, None, pairs, beta=0.1)
    unpaired = tokenize_unpaired([{"prompt": "Hi:", "completion": " good", "label": True}], world_tok)
    with pytest.raises(ValueError, match="paired"):
        preference_eval(policy, policy, unpaired, beta=0.1)


# ---------------------------------------------------------------------------------------------
# generation_eval
# ---------------------------------------------------------------------------------------------

REWARDS = {"sentiment": text_reward(sentiment), "length": text_reward(lambda t: len(t))}


def test_generation_eval_against_itself(start, world_tok):
    prompts = generate_prompts(4, seed=0, split="heldout")
    out = generation_eval(start, start, world_tok, prompts, rewards=REWARDS, num_samples=2, max_new_tokens=8, seed=3)
    kl = out["kl"]
    assert (kl.mean, kl.low, kl.high) == (0.0, 0.0, 0.0)
    assert kl.n == 4  # bootstrap units are prompts
    for name in REWARDS:
        r = out["rewards"][name]
        assert r["win_rate"].mean == 0.5 and r["win_rate"].low == r["win_rate"].high == 0.5
        assert r["policy"] == r["start"]
    assert out["start"]["distinct_1"] == out["distinct_1"]
    assert out["n_prompts"] == 4 and out["num_samples"] == 2
    json.dumps(to_jsonable(out))


def test_generation_eval_values_match_their_definitions(policy, start, world_tok):
    prompts = generate_prompts(3, seed=1, split="heldout")
    kw = dict(num_samples=2, max_new_tokens=8, seed=4)
    pc = sample_completions(policy, world_tok, prompts, **kw)
    sc = sample_completions(start, world_tok, prompts, **kw)
    out = generation_eval(policy, start, world_tok, prompts, rewards=REWARDS, **kw)
    lp = completion_log_likelihoods(policy, world_tok, pc.prompts, pc.token_ids, append_eos=pc.finished)
    ls = completion_log_likelihoods(start, world_tok, pc.prompts, pc.token_ids, append_eos=pc.finished)
    assert out["kl"].mean == pytest.approx(M.sequence_kl_estimate(lp, ls), abs=1e-9)
    rl_p = np.array([len(t) for t in pc.texts], float)
    rl_s = np.array([len(t) for t in sc.texts], float)
    assert out["rewards"]["length"]["policy"].mean == pytest.approx(rl_p.mean())
    assert out["rewards"]["length"]["win_rate"].mean == pytest.approx(M.win_rate(rl_p, rl_s))
    assert out["token_entropy"] == pytest.approx(M.token_entropy(pc.token_ids))
    assert out["distinct_2"] == pytest.approx(M.distinct_n(pc.token_ids, 2))
    assert out["length"].mean == pytest.approx(M.mean_length(pc.token_ids))
    assert out["eos_rate"] == pytest.approx(np.mean(pc.finished))
    # reusing the completions gives the same result
    again = generation_eval(
        policy, start, world_tok, prompts, rewards=REWARDS, policy_completions=pc, start_completions=sc, **kw
    )
    assert again == out


def test_generation_eval_without_start_and_with_mismatched_completions(policy, world_tok):
    prompts = ["Hi:", "Review the cafe:"]
    out = generation_eval(policy, None, world_tok, prompts, rewards=REWARDS, max_new_tokens=4)
    assert out["kl"] is None and out["start"] is None
    assert out["rewards"]["sentiment"]["win_rate"] is None
    wrong = Completions(prompts=["Hi:"], texts=["x"], token_ids=[[5]])
    with pytest.raises(ValueError, match="prompt-major"):
        generation_eval(policy, None, world_tok, prompts, rewards=REWARDS, policy_completions=wrong)


# ---------------------------------------------------------------------------------------------
# shift_sweep
# ---------------------------------------------------------------------------------------------


def const_reward(values):
    values = np.asarray(values, float)
    return lambda prompts, responses: values[: len(responses)]


def test_shift_sweep_linear_and_worst_case():
    ra, rb = np.array([1.0, 0.0, 0.5, 0.2]), np.array([0.0, 0.2, 0.1, 0.3])
    base_a, base_b = np.array([0.5] * 4), np.array([0.1] * 4)
    alphas = [0.0, 0.25, 0.5, 1.0]
    resp = ["a", "b", "c", "d"]

    def reward_a(prompts, responses):
        return ra if responses == resp else base_a

    def reward_b(prompts, responses):
        return rb if responses == resp else base_b

    out = shift_sweep(["p"] * 4, resp, reward_a, reward_b, alphas, baseline_responses=["w", "x", "y", "z"], seed=2)
    means = {a: (a * ra + (1 - a) * rb).mean() for a in alphas}
    for a in alphas:
        assert out["reward"][a].mean == pytest.approx(means[a])
        mixed, base = a * ra + (1 - a) * rb, a * base_a + (1 - a) * base_b
        assert out["win_rate"][a].mean == pytest.approx(M.win_rate(mixed, base))
    worst = min(alphas, key=lambda a: means[a])
    assert out["worst"]["alpha"] == worst == 0.0
    assert out["worst"]["reward"] == out["reward"][worst]
    assert out["average"].mean == pytest.approx(np.mean(list(means.values())))
    assert out["worst_win_rate"]["alpha"] == min(alphas, key=lambda a: out["win_rate"][a].mean)
    js = to_jsonable(out)
    assert set(js["reward"]) == {"0.0", "0.25", "0.5", "1.0"}
    json.dumps(js, allow_nan=False)


def test_shift_sweep_geometric_and_errors():
    ra, rb = np.array([0.9, 0.4, 0.0]), np.array([0.1, 0.6, 0.5])
    out = shift_sweep(
        ["p"] * 3, ["a", "b", "c"], const_reward(ra), const_reward(rb), [0.0, 0.3, 1.0], mixture="geometric"
    )
    for a in (0.0, 0.3, 1.0):
        expected = np.where(a == 0, rb, np.where(a == 1, ra, ra**a * rb ** (1 - a)))
        assert out["reward"][a].mean == pytest.approx(expected.mean())
    assert out["worst"]["alpha"] == min((0.0, 0.3, 1.0), key=lambda a: out["reward"][a].mean)
    assert "win_rate" not in out
    with pytest.raises(ValueError, match="mixture"):
        shift_sweep(["p"], ["a"], const_reward([1]), const_reward([1]), [0.5], mixture="nope")
    with pytest.raises(ValueError, match="alpha"):
        shift_sweep(["p"], ["a"], const_reward([1]), const_reward([1]), [1.5])
    with pytest.raises(ValueError, match="at least one alpha"):
        shift_sweep(["p"], ["a"], const_reward([1]), const_reward([1]), [])


def test_to_jsonable():
    ci = MeanCI(1.0, 0.5, 1.5, 3)
    out = to_jsonable({0.5: ci, "x": (np.float32(2.0), float("nan")), "a": np.arange(2)})
    assert out == {"0.5": {"mean": 1.0, "low": 0.5, "high": 1.5, "n": 3, "level": 0.95}, "x": [2.0, None], "a": [0, 1]}
    json.dumps(out, allow_nan=False)


# ---------------------------------------------------------------------------------------------
# Rewards
# ---------------------------------------------------------------------------------------------

TEXTS = [" a lovely happy day.", " furthermore the dull grey stone wall.", " okay."]


def test_world_reward_specs():
    prompts = ["p"] * 3
    r = load_reward("world:sentiment")(prompts, TEXTS)
    assert r.dtype == np.float64
    np.testing.assert_allclose(r, [sentiment(t) for t in TEXTS])
    mix = load_reward("world:mix:sentiment,formality,0.3")(prompts, TEXTS)
    np.testing.assert_allclose(mix, [0.3 * sentiment(t) + 0.7 * formality(t) for t in TEXTS])
    geo = load_reward("world:mix:sentiment,formality,0.3,geometric")(prompts, TEXTS)
    np.testing.assert_allclose(geo, [sentiment(t) ** 0.3 * formality(t) ** 0.7 for t in TEXTS])


def test_module_function_rewards(tmp_path, monkeypatch):
    (tmp_path / "my_rewards_mod.py").write_text(
        textwrap.dedent("""
        def per_text(text):
            return float(len(text))

        def batched(prompts, responses):
            return [len(p) + len(r) for p, r in zip(prompts, responses)]

        def declared(*args):  # no required argument: batched only by declaration
            prompts, responses = args
            return [7.0] * len(responses)
        declared.batched = True

        def nan_reward(text):
            return float("nan")

        class Holder:
            @staticmethod
            def score(text):
                return 1.0

        NOT_CALLABLE = 3
    """)
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    prompts = ["ab", "c", ""]
    np.testing.assert_allclose(load_reward("my_rewards_mod:per_text")(prompts, TEXTS), [len(t) for t in TEXTS])
    np.testing.assert_allclose(
        load_reward("my_rewards_mod:batched")(prompts, TEXTS), [len(p) + len(t) for p, t in zip(prompts, TEXTS)]
    )
    np.testing.assert_allclose(load_reward("my_rewards_mod:Holder.score")(prompts, TEXTS), 1.0)
    np.testing.assert_allclose(load_reward("my_rewards_mod:declared")(prompts, TEXTS), 7.0)
    with pytest.raises(ValueError, match="non-finite"):
        load_reward("my_rewards_mod:nan_reward")(prompts, TEXTS)
    with pytest.raises(ValueError, match="not a callable"):
        load_reward("my_rewards_mod:NOT_CALLABLE")
    with pytest.raises(ValueError, match="no attribute"):
        load_reward("my_rewards_mod:missing")


@pytest.mark.parametrize(
    "spec, message",
    [
        ("world:nope", "unknown gold objective 'nope'"),
        ("world:mix:sentiment,formality", "world:mix:A,B,ALPHA"),
        ("world:mix:sentiment,formality,2", "alpha must lie in"),
        ("world:mix:sentiment,formality,x", "not a number"),
        ("world:mix:sentiment,formality,0.5,cubic", "mixture kind"),
        ("no_such_module_xyz:fn", "cannot import module"),
        ("a:b:c", "neither world"),
        ("./no/such/model", "no such model folder"),
        ("", "empty"),
    ],
)
def test_bad_reward_specs(spec, message):
    with pytest.raises(ValueError, match=message) as info:
        load_reward(spec)
    assert "A reward is one of" in str(info.value)
    assert repr(spec) in str(info.value)


def test_bad_reward_spec_file_is_not_a_model(tmp_path):
    f = tmp_path / "notes.txt"
    f.write_text("x")
    with pytest.raises(ValueError, match="a file, not a model folder"):
        load_reward(str(f))


@pytest.mark.parametrize("num_labels", [1, 2])
def test_hf_sequence_classification_reward(tmp_path, world_tok, num_labels):
    from transformers import LlamaConfig, LlamaForSequenceClassification

    config = LlamaConfig(
        vocab_size=len(world_tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        num_labels=num_labels,
        pad_token_id=world_tok.pad_token_id,
    )
    torch.manual_seed(0)
    rm = LlamaForSequenceClassification(config).eval()
    rm.save_pretrained(tmp_path / "rm")
    world_tok.save_pretrained(tmp_path / "rm")
    prompts = ["Review the cafe:", "Hi:", "Describe the old harbor:"]
    got = load_reward(str(tmp_path / "rm"), device="cpu", batch_size=2)(prompts, TEXTS)
    expected = []
    for p, t in zip(prompts, TEXTS):
        with torch.no_grad():
            logits = rm(**world_tok(p + t, return_tensors="pt")).logits[0].double()
        expected.append(float(logits[0] if num_labels == 1 else logits[1] - logits[0]))
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_hf_reward_refuses_other_heads(tmp_path, world_tok):
    from transformers import LlamaConfig, LlamaForSequenceClassification

    config = LlamaConfig(
        vocab_size=len(world_tok),
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        num_labels=3,
        pad_token_id=world_tok.pad_token_id,
    )
    LlamaForSequenceClassification(config).save_pretrained(tmp_path / "rm3")
    world_tok.save_pretrained(tmp_path / "rm3")
    with pytest.raises(ValueError, match="3 labels"):
        load_reward(str(tmp_path / "rm3"))


def test_hf_reward_refuses_a_causal_lm(tmp_path, world_tok):
    """A causal LM folder would load with a random classification head: refused."""
    from dralign.modeling.tiny import save_tiny

    path = save_tiny(tmp_path / "lm", "llama", hidden=16, layers=1, heads=2)
    with pytest.raises(ValueError, match="lacks trained weights of the classification head"):
        load_reward(path)


def test_reward_length_is_checked():
    from dralign.eval.rewards import batched_reward

    with pytest.raises(ValueError, match="returned 1 values for 2"):
        batched_reward(lambda p, r: [1.0], name="short")(["a", "b"], ["x", "y"])
    assert math.isclose(text_reward(len)(["a"], ["xyz"])[0], 3.0)
