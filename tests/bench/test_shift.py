"""The shift-world benchmark's pieces: datasets, plan, controls, frontier comparisons, Holm,
verdicts, own-link calibration, the world LM cache."""

import math

import numpy as np
import pytest

from dralign.stats import holm, paired_t, student_t_cdf, student_t_quantile
from dralign_bench import world
from dralign_bench.shift import (
    SCENARIOS,
    ClaimSpec,
    Comparison,
    RunSpec,
    SeedMetrics,
    ShiftOptions,
    build_dataset,
    calibration_error,
    clean_accuracy,
    flip_control,
    holm_report,
    judge,
    learning_control,
    own_link_probs,
    plan,
    resolve,
    verdict,
)
from dralign_bench.shift.data import judge_reward, target_reward
from dralign_bench.shift.merge import judge_results, merge_results
from dralign_bench.shift.papers import evaluate_claims
from dralign_bench.shift.report import power_summary
from dralign_bench.shift.scenarios import frontier_runs
from dralign_bench.world_lm import WorldLMSpec, world_lm


def small(**kw):
    return resolve(ShiftOptions(train_pairs=40, flip_pairs=20, eval_pairs=16, **kw))


def m(r0=0.5, worst=0.4, kl=1.0, acc=0.7, calib=0.1, entropy=4.0) -> SeedMetrics:
    return SeedMetrics(
        curve=[worst, r0], r0=r0, worst=worst, kl=kl, entropy=entropy, distinct2=0.8, acc=acc, calib=calib
    )


# --------------------------------------------------------------------------------------------- data, plan


def test_datasets_are_deterministic_and_flips_unpaired_repaired_are_what_they_say():
    opts = small()
    for ds in ("mix", "clean", "flip", "unpaired", "repaired"):
        assert build_dataset(opts, ds, seed=3) == build_dataset(opts, ds, seed=3)
        assert build_dataset(opts, ds, seed=3) != build_dataset(opts, ds, seed=4)
    clean, flipped = build_dataset(opts, "clean", 2), build_dataset(opts, "flip", 2)
    assert len(clean) == 20 and sum(r["flipped"] for r in flipped) == round(0.3 * 20)
    mix, repaired = build_dataset(opts, "mix", 2), build_dataset(opts, "repaired", 2)
    assert [r["chosen"] for r in repaired] == [r["chosen"] for r in mix]
    assert all(r["rejected"] != p["rejected"] for r, p in zip(repaired, mix))  # never its own pair
    assert sorted(r["rejected"] for r in repaired) == sorted(r["rejected"] for r in mix)
    unpaired = build_dataset(opts, "unpaired", 2)
    assert [r["label"] for r in unpaired[:2]] == [True, False] and len(unpaired) == 2 * len(mix)


def test_full_profile_meets_the_power_floor_and_plans_frontier_tuned_and_fixed_runs():
    opts = resolve(ShiftOptions(full=True))
    assert opts.seeds >= 8 and opts.validation_seeds >= 2 and opts.eval_prompts >= 512 and opts.eval_pairs >= 1000
    val = plan(opts)
    assert RunSpec("labmix", "kldpo", (("tau", 0.05),)) in val and RunSpec("labmix", "kldpo", (("tau", 2.0),)) in val
    assert not any(r.method == "rdpo" for r in val)  # fixed runs are not tuned
    assert not any(r.dataset == "mix" and r.method.startswith("fdpo") for r in val)
    assert not [r for r in val if "lr" in dict(r.params)]  # the divergence frontier serves no choice
    chosen = {
        ("labmix", "kldpo"): 2.0,
        ("labmix", "wdpo"): 0.3,
        ("flip", "cdpo"): 0.3,
        ("flip", "drdpo"): 2.0,
        ("sources", "dora"): 0.5,
        ("sources", "dro"): 2.0,
    }
    test = plan(opts, chosen)
    ids = [r.id for r in test]
    assert len(ids) == len(set(ids))
    assert "labmix/kldpo[tau=2]" in ids and "labmix/kldpo[tau=0.05]" not in ids
    assert {
        f"{d}/dpo[beta={b:g}]" for b in opts.betas for d in ("mix", "labmix", "sources", "human", "repaired")
    } <= set(ids)
    assert {"repaired/dpo[beta=0.01]", "unpaired/aot-unpaired", "sources-oracle/dora-reweight"} <= set(ids)
    assert "flip/rdpo[label_smoothing=0.3]" in ids and "flip/rdpo[label_smoothing=0.1]" in ids  # true rate, mis-set
    assert {"flip/drdpo[drdpo_beta=2]", "sources/dora[lam=0.5]", "sources/dro[tau=2]", "sources/dora-reweight"} <= set(
        ids
    )
    # the divergence frontier reaches below the β grid's KL floor by shorter training; the others do not
    short = [r for r in frontier_runs(opts, SCENARIOS["divergence"]) if "lr" in dict(r.params)]
    assert [dict(r.params)["lr"] for r in short] == pytest.approx([0.25 * opts.lr, 0.5 * opts.lr])
    assert all(r.id in ids for r in short) and len(frontier_runs(opts, SCENARIOS["mixture"])) == len(opts.betas)
    with pytest.raises(ValueError, match="unknown scenario"):
        resolve(ShiftOptions(scenarios=["nonesuch"]))


def test_sources_dataset_labels_human_rows_by_the_target_and_synthetic_rows_by_the_judge():
    opts = small(synthetic_fraction=0.7, judge="conciseness")
    rows, human = build_dataset(opts, "sources", 5), build_dataset(opts, "human", 5)
    assert len(rows) == opts.train_pairs and sum(r["source"] == "synthetic" for r in rows) == round(0.7 * len(rows))
    assert human == [r for r in rows if r["source"] == "human"]
    prompts = world.generate_prompts(opts.train_pairs, seed=5, split="train")
    assert [r["prompt"] for r in rows] == prompts  # the original order
    target = target_reward(opts)
    for r in rows:  # each row's rewards come from its own labeller: the target, or the judge at the row's shift
        fn = target if r["source"] == "human" else judge_reward(opts, r["shift"])
        assert {r["reward_chosen"], r["reward_rejected"]} == {fn(r["chosen"]), fn(r["rejected"])}
        assert (r["shift"] == 0.0) == (r["source"] == "human")
    with pytest.raises(ValueError, match="synthetic_fraction"):
        small(synthetic_fraction=1.0)
    with pytest.raises(ValueError, match="judge"):
        small(judge="verbosity")


# --------------------------------------------------------------------------------------------- controls


def test_flip_control_needs_a_significant_accuracy_drop():
    clean = [m(acc=a) for a in (0.80, 0.82, 0.79, 0.81)]
    flipped = [m(acc=a) for a in (0.70, 0.73, 0.71, 0.70)]
    c = flip_control(clean, flipped)
    assert c["value"] == pytest.approx(np.mean([0.10, 0.09, 0.08, 0.11])) and c["passed"]
    noisy = [m(acc=a) for a in (0.90, 0.70, 0.95, 0.66)]
    assert not flip_control(clean, noisy)["passed"]  # mean drop but the interval covers 0


def test_learning_control_needs_dpo_to_raise_the_target_reward_above_the_start():
    start = [m(r0=r) for r in (0.50, 0.51, 0.50, 0.49)]
    learnt = [m(r0=r) for r in (0.55, 0.57, 0.54, 0.53)]  # gains 0.05, 0.06, 0.04, 0.04
    c = learning_control(learnt, start)
    assert c["value"] == pytest.approx(0.0475) and c["passed"]
    assert not learning_control([m(r0=r) for r in (0.51, 0.52, 0.50, 0.50)], start)["passed"]  # +0.0075 < 0.02
    assert not learning_control([m(r0=r) for r in (0.60, 0.45, 0.58, 0.44)], start)["passed"]  # interval covers 0


# --------------------------------------------------------------------------------------------- statistics


def test_student_t_and_paired_t_match_hand_values():
    assert student_t_quantile(0.975, 7) == pytest.approx(2.364624, abs=1e-5)
    assert student_t_quantile(0.975, 1) == pytest.approx(12.7062, abs=1e-3)
    assert student_t_cdf(0.0, 5) == 0.5 and student_t_cdf(-1.0, 3) == pytest.approx(1 - student_t_cdf(1.0, 3))
    d = [0.01, 0.03, 0.02, 0.00]
    t = paired_t(d)
    se = np.std(d, ddof=1) / 2
    assert t.diff == pytest.approx(0.015) and t.se == pytest.approx(se)
    q = student_t_quantile(0.975, 3)
    assert (t.low, t.high) == pytest.approx((0.015 - q * se, 0.015 + q * se))
    assert t.p == pytest.approx(2 * (1 - student_t_cdf(0.015 / se, 3)))


def test_holm_step_down_by_hand():
    # sorted 0.01, 0.03, 0.04, 0.5 → ×4, ×3, ×2, ×1 = 0.04, 0.09, 0.08→0.09 (monotone), 0.5
    assert holm([0.01, 0.04, 0.03, 0.5]) == pytest.approx([0.04, 0.09, 0.09, 0.5])
    assert holm([0.3, 0.6]) == pytest.approx([0.6, 0.6])
    out = holm([float("nan"), 0.02])
    assert math.isnan(out[0]) and out[1] == pytest.approx(0.02)


def test_judge_compares_with_the_frontier_per_seed_applies_holm_and_gates_on_the_control():
    front = {
        f"mix/dpo[beta={b}]": [m(r0=0.50 + 0.1 * k, worst=0.40 - 0.1 * k) for _ in range(4)]
        for k, b in enumerate((0.3, 0.1, 0.03))
    }
    # the frontier at r0 = 0.55 has worst 0.35; the method has 0.38 ± noise → +0.03
    rob = [m(r0=0.55, worst=0.38 + e) for e in (0.001, -0.002, 0.0, 0.001)]
    metrics = {**front, "mix/kldpo[tau=1]": rob}
    spec = ClaimSpec("mixture", "p", "c", (Comparison("mix/kldpo[tau=1]", "dpo-frontier", "worst", "r0"),), 0.01)
    ok = {"passed": True}
    claim = judge(spec, metrics, list(front), ok)
    (row,) = claim["comparisons"]
    assert row["diff"] == pytest.approx(0.03) and row["p_holm"] == pytest.approx(row["p"])
    assert claim["verdict"] == "reproduced"
    assert judge(spec, metrics, list(front), {"passed": False})["verdict"] == "invalid test"
    two = ClaimSpec("mixture", "p", "c", spec.comparisons * 2, 0.01)
    rows = judge(two, metrics, list(front), ok)["comparisons"]
    assert rows[0]["p_holm"] == pytest.approx(min(1.0, 2 * rows[0]["p"]))


def test_verdict_classes():
    sig = lambda d: {"diff": d, "p_holm_report": 0.01}  # noqa: E731
    ns = {"diff": 0.01, "p_holm_report": 0.4}
    assert verdict([sig(0.1), sig(0.2)], True) == "reproduced"
    assert verdict([sig(0.1), ns], True) == "partly reproduced"
    assert verdict([sig(-0.1), ns], True) == "contradicted"
    assert verdict([sig(0.1), sig(-0.1)], True) == "contradicted"  # evidence against outweighs a partial hit
    assert verdict([ns, ns], True) == "not significant"
    assert verdict([ns, ns], True, underpowered=True) == "underpowered"
    assert verdict([sig(0.1)], True, underpowered=True) == "reproduced"  # significance outranks power
    assert verdict([sig(0.1)], False) == "invalid test"


def test_power_summary_is_the_median_half_width_on_the_probability_scale():
    row = lambda metric, hw, se: {"metric": metric, "diff": 0.1, "ci": [0.1 - hw, 0.1 + hw], "se": se}  # noqa: E731
    claims = [
        {
            "control": {"passed": True},
            "comparisons": [row("r0 at matched kl", 0.01, 0.004), row("entropy at matched r0", 0.2, 0.08)],
        },
        {"control": {"passed": False}, "comparisons": [row("acc", 0.03, 0.012), row("worst", 0.02, 0.008)]},
    ]
    p = power_summary(claims)
    assert p["probability_scale"]["median_half_width"] == pytest.approx(0.02)
    assert p["probability_scale"]["comparisons"] == 3 and p["probability_scale"]["median_se"] == pytest.approx(0.008)
    assert p["probability_scale_control_passed"]["median_half_width"] == pytest.approx(0.01)
    assert p["all"]["median_half_width"] == pytest.approx(0.025)
    claims[0]["overlap"] = {"passed": False}  # an invalid test by its overlap control counts as not passed
    claims[1]["comparisons"].append({**row("acc", 0.0, float("nan")), "ci": [float("nan")] * 2})  # no interval
    p = power_summary(claims)
    assert p["probability_scale_control_passed"]["comparisons"] == 0 and p["probability_scale"]["comparisons"] == 3


def test_merge_judges_the_claims_again_from_the_merged_runs():
    opts = resolve(ShiftOptions(scenarios=["mixture"], seeds=3, validation_seeds=0))
    rng = np.random.default_rng(0)
    runs = {
        r.id: [m(r0=0.6 + rng.normal(0, 0.01), worst=0.5 + rng.normal(0, 0.01), kl=k + 1.0) for _ in range(3)]
        for k, r in enumerate(plan(opts, {("labmix", "kldpo"): 0.05, ("labmix", "wdpo"): 0.05}))
    }
    runs["start"] = [m(r0=0.5, worst=0.55 + rng.normal(0, 0.01), kl=0.0) for _ in range(3)]
    from dataclasses import asdict

    prov = {
        "commit": "abc",
        "dirty": False,
        "diff_sha256": None,
        "versions": {},
        "started": "2026-01-01T00:00:00+00:00",
        "finished": "2026-01-01T00:10:00+00:00",
        "wall_seconds": 600.0,
    }
    doc = lambda sc: {
        "options": {**asdict(opts), "scenarios": sc, "test_seeds": 3},
        "scenarios": {},  # noqa: E731
        "provenance": prov,
        "selection": {},
        "validation_runs": {},
        "claims": [{"stale": True}],
        "seconds": 1.0,
        "command": "x",
        "runs": {k: {"seeds": [asdict(x) for x in v]} for k, v in runs.items()},
    }
    merged = merge_results([doc(["mixture"]), doc([])])
    chosen = {("labmix", "kldpo"): 0.05, ("labmix", "wdpo"): 0.05}  # the grids' first values: no validation seeds
    assert merged["claims"] == holm_report(evaluate_claims(opts, runs, chosen)) == judge_results(merged)
    assert merged["seconds"] == 600.0 and merged["provenance"]["commit"] == "abc"
    assert merged["claims"][0]["control"]["name"].startswith("the start model's worst-case")


# --------------------------------------------------------------------------------------------- own link


def test_own_link_probabilities_use_each_divergences_score():
    u1, u2, beta = np.array([0.5, -1.0]), np.array([0.0, 2.0]), 0.3
    sig = lambda z: 1 / (1 + np.exp(-z))  # noqa: E731
    assert own_link_probs(u1, u2, "reverse_kl", beta) == pytest.approx(sig(beta * (u1 - u2)))
    assert own_link_probs(u1, u2, "forward_kl", beta) == pytest.approx(sig(beta * (-np.exp(-u1) + np.exp(-u2))))
    js = lambda u: np.log(2) - np.log1p(np.exp(-u))  # noqa: E731
    assert own_link_probs(u1, u2, "js", beta) == pytest.approx(sig(beta * (js(u1) - js(u2))))


def test_calibration_error_against_the_known_preference_probability_and_clean_accuracy():
    r1, r2, T = np.array([0.6, 0.5]), np.array([0.5, 0.5]), 0.1
    p = np.array([1 / (1 + math.exp(-1.0)), 0.5])
    # after a temperature fitted on pair 0 (logit 0.7 scaled to p's logit 1.0), measured on pair 1
    t = 1.0 / math.log(0.7 / 0.3)
    assert calibration_error(np.array([0.7, 0.4]), r1, r2, T) == pytest.approx(abs(1 / (1 + (0.6 / 0.4) ** t) - p[1]))
    # gold ties dropped; u ties count ½
    assert clean_accuracy(
        np.array([1.0, 0.0, 2.0, 1.0]),
        np.array([0.0, 1.0, 2.0, 5.0]),
        np.array([0.9, 0.9, 0.2, 0.3]),
        np.array([0.1, 0.1, 0.1, 0.3]),
    ) == pytest.approx(1.5 / 3)


# --------------------------------------------------------------------------------------------- world LM


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


def test_job_cost_weights_each_run_by_its_steps():
    """--jobs schedules the longest scenarios first: mixture's runs train twice the steps, so they count twice."""
    from dralign_bench.shift.parallel import job_cost
    from dralign_bench.shift.scenarios import default_choices

    mix, flips = (resolve(ShiftOptions(full=True, scenarios=[s])) for s in ("mixture", "flips"))
    runs = len(plan(mix, default_choices(mix))) * mix.seeds + len(plan(mix)) * mix.validation_seeds
    assert job_cost(mix) == 2 * runs
    assert (
        job_cost(flips)
        == len(plan(flips, default_choices(flips))) * flips.seeds + len(plan(flips)) * flips.validation_seeds
    )
