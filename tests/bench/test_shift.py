"""The shift-world benchmark's pieces: datasets, run plan, intervals, claims, the world LM cache."""

import numpy as np
import pytest

from dralign.eval.mixtures import geometric_mixture, linear_mixture
from dralign_bench import world
from dralign_bench.shift import (SCENARIOS, SeedEval, ShiftOptions, build_dataset, evaluate_claims,
                                 plan, resolve)
from dralign_bench.world_lm import WorldLMSpec, world_lm


def small(**kw):
    return resolve(ShiftOptions(train_pairs=40, eval_pairs=16, **kw))


def test_datasets_are_deterministic_per_seed_and_differ_across_seeds():
    opts = small()
    for ds in ("mix-linear", "mix-geometric", "sources", "unpaired", "flip-20", "flip-40"):
        assert build_dataset(opts, ds, seed=3) == build_dataset(opts, ds, seed=3)
        assert build_dataset(opts, ds, seed=3) != build_dataset(opts, ds, seed=4)


def test_mixture_labels_follow_the_training_mixture():
    opts = small()
    for ds, mix in (("mix-linear", linear_mixture), ("mix-geometric", geometric_mixture)):
        for row in build_dataset(opts, ds, seed=0):
            r = {k: mix(world.GOLD_OBJECTIVES["sentiment"](row[k]), world.GOLD_OBJECTIVES["formality"](row[k]), 0.7)
                 for k in ("chosen", "rejected")}
            assert row["reward_chosen"] == pytest.approx(r["chosen"])
            assert row["reward_rejected"] == pytest.approx(r["rejected"])


def test_sources_human_rows_use_the_target_labeller_and_synthetic_rows_the_judge():
    opts = small()
    rows = build_dataset(opts, "sources", seed=1)
    assert sum(r["source"] == "synthetic" for r in rows) == round(0.7 * len(rows))
    for row in rows:
        alpha = 0.7 if row["source"] == "human" else 0.2
        reward = world.make_mixture_reward("sentiment", "formality", alpha, "linear")
        assert row["reward_chosen"] == pytest.approx(reward(row["chosen"]))
    heldout = build_dataset(opts, "sources", seed=1, split="heldout")
    assert {r["source"] for r in heldout} == {"human"}


def test_flipped_and_unpaired_sets():
    opts = small()
    clean = build_dataset(opts, "mix-linear", seed=2)
    flipped = build_dataset(opts, "flip-40", seed=2)
    assert sum(r["flipped"] for r in flipped) == round(0.4 * len(clean))
    for c, f in zip(clean, flipped):
        assert (c["chosen"], c["rejected"]) == ((f["rejected"], f["chosen"]) if f["flipped"] else (f["chosen"], f["rejected"]))
    unpaired = build_dataset(opts, "unpaired", seed=2)
    assert len(unpaired) == 2 * len(clean)
    assert [r["completion"] for r in unpaired[:2]] == [clean[0]["chosen"], clean[0]["rejected"]]
    assert [r["label"] for r in unpaired[:2]] == [True, False]
    # held-out pairs are clean whatever the training set
    assert build_dataset(opts, "flip-40", seed=2, split="heldout") == build_dataset(opts, "mix-linear", seed=2, split="heldout")


def test_plan_shares_runs_and_every_scenario_is_covered():
    runs = plan(resolve(ShiftOptions(full=True)))
    assert len(runs) == len(set(runs))
    assert ("unpaired", "aot-unpaired") in runs and ("mix-linear", "aot-unpaired") not in runs
    assert ("flip-20", "rdpo") in runs and ("mix-linear", "rdpo") not in runs
    assert sum(1 for r in runs if r == ("mix-linear", "dpo")) == 1
    for s in SCENARIOS.values():
        assert all(m in {m for _, m in runs} for m in s.methods)
    assert plan(resolve(ShiftOptions(methods=["dpo", "aot-unpaired"], dataset="sources"))) == [
        ("sources", "dpo"), ("unpaired", "aot-unpaired")]


def test_bad_options_are_refused_with_the_reason():
    with pytest.raises(ValueError, match="unknown scenario 'mix'"):
        resolve(ShiftOptions(scenarios=["mix"]))
    with pytest.raises(ValueError, match="reward_a='tone'"):
        resolve(ShiftOptions(reward_a="tone"))
    with pytest.raises(ValueError, match="unknown method"):
        resolve(ShiftOptions(methods=["dpoo"]))
    with pytest.raises(ValueError, match="alpha0 must lie in"):
        resolve(ShiftOptions(alpha0=1.5))


def _fake_eval(level: float, n: int = 40, seed: int = 0, entropy: float = 4.0) -> SeedEval:
    rng = np.random.default_rng(seed)
    rewards = np.clip(level + 0.01 * rng.standard_normal((n, 11)), 0, 1)
    return SeedEval(rewards=rewards, wins=np.full((n, 11), 0.5), kl=np.zeros(n), length=np.full(n, 10.0),
                    token_entropy=entropy, distinct_1=0.5, distinct_2=0.8, accuracy=0.7, ece=0.05, brier=0.2)


def test_claims_verdicts_follow_the_intervals():
    opts = resolve(ShiftOptions())
    raw = {"sources/dora": [_fake_eval(0.6, seed=s) for s in range(3)],
           "sources/dro": [_fake_eval(0.5, seed=10 + s) for s in range(3)],
           "sources/dora-reweight": [_fake_eval(0.7, seed=20 + s) for s in range(3)]}
    claims = evaluate_claims(opts, raw)
    assert len(claims) == 1  # only the DoRA claim has its runs
    (claim,) = claims
    by_b = {c["b"]: c for c in claim["comparisons"]}
    assert by_b["sources/dro"]["verdict"] == "reproduced" and by_b["sources/dro"]["mean"] == pytest.approx(0.1, abs=0.01)
    assert by_b["sources/dora-reweight"]["verdict"] == "contradicted"
    assert claim["verdict"] == "partly reproduced"


def test_world_lm_is_trained_once_then_read_from_the_cache(tmp_path):
    spec = WorldLMSpec(hidden=32, layers=1, heads=2, vocab_size=300, corpus_size=200, steps=3, batch_size=8)
    path = world_lm(spec, tmp_path)
    stamp = (path / "pretraining.json").stat().st_mtime_ns
    assert world_lm(spec, tmp_path) == path
    assert (path / "pretraining.json").stat().st_mtime_ns == stamp
    assert WorldLMSpec(steps=4).key() != WorldLMSpec(steps=3).key()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".world-lm-")]  # no temporary left
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path)
    assert model.config.hidden_size == 32 and model.config.eos_token_id == tok.eos_token_id
