"""Each shift scenario's premise: the labeller mixture, the judge's agreement knob, the two-sided
controls with hand values, the oracle ratio, what the trainer saw, the tempered calibration and
the maps' plumbing."""

import math

import numpy as np
import pytest

from dralign_bench import world
from dralign_bench.shift import SeedMetrics, ShiftOptions, resolve
from dralign_bench.shift.calibration import fit_temperature, tempered_calibration_error
from dralign_bench.shift.controls import conflict_control, sources_control, unpaired_control
from dralign_bench.shift.data import (
    SHIFT_LEVELS,
    _synthetic_rows,
    agreement,
    build_dataset,
    judge_reward,
    judge_slope,
    target_reward,
)
from dralign_bench.shift.seen import completions_per_step


def small(**kw):
    return resolve(ShiftOptions(**{"train_pairs": 60, "flip_pairs": 20, "eval_pairs": 16, **kw}))


def m(r0=0.5, worst=0.4, kl=1.0) -> SeedMetrics:
    return SeedMetrics(curve=[worst, r0], r0=r0, worst=worst, kl=kl, entropy=4.0, distinct2=0.8, acc=0.7, calib=0.1)


# --------------------------------------------------------------------------------------------- data


def test_labeller_mixture_labels_each_pair_by_one_labeller_drawn_with_probability_alpha0():
    opts = small(alpha0=0.3, train_pairs=400)
    rows = build_dataset(opts, "labmix", 7)
    assert rows == build_dataset(opts, "labmix", 7) and len(rows) == 400
    share_a = np.mean([r["labeller"] == "a" for r in rows])
    assert abs(share_a - 0.3) < 4 * math.sqrt(0.3 * 0.7 / 400)
    fa, fb = world.GOLD_OBJECTIVES[opts.reward_a], world.GOLD_OBJECTIVES[opts.reward_b]
    for r in rows:  # the row's rewards are its own labeller's
        fn = fa if r["labeller"] == "a" else fb
        assert (r["reward_chosen"], r["reward_rejected"]) == (fn(r["chosen"]), fn(r["rejected"]))
    # α₀ = 1 is labeller a alone; the pairs are mix's pairs
    only_a = build_dataset(small(alpha0=1.0, train_pairs=50), "labmix", 7)
    assert all(r["labeller"] == "a" for r in only_a)
    mix = build_dataset(small(alpha0=1.0, train_pairs=50), "mix", 7)
    assert [r["prompt"] for r in only_a] == [r["prompt"] for r in mix]


@pytest.mark.parametrize("wanted", [0.6, 0.75, 0.9])
def test_the_judge_agrees_with_the_target_on_the_asked_share_of_synthetic_pairs(wanted):
    opts = small(judge_agreement=wanted)
    k = judge_slope(opts)
    assert k > 0.0
    synthetic = _synthetic_rows(1500, 31)  # fresh unlabelled pairs at drawn distances, not the calibration sample
    judged = [
        sum(agreement(target_reward(opts), judge_reward(opts, s), [r]) == 1.0 for r in synthetic if r["shift"] == s)
        for s in SHIFT_LEVELS
    ]
    counted = [
        sum(
            not math.isnan(agreement(target_reward(opts), judge_reward(opts, s), [r]))
            for r in synthetic
            if r["shift"] == s
        )
        for s in SHIFT_LEVELS
    ]
    assert sum(judged) / sum(counted) == pytest.approx(wanted, abs=0.03)
    assert judge_slope(small(judge_agreement=min(1.0, wanted + 0.05))) <= k  # more agreement, less lean
    shares = [j / c for j, c in zip(judged, counted)]
    assert shares[0] > shares[-1] + 0.1  # reliable on human-like text, misleading far from it


def test_agreement_by_hand_and_an_impossible_agreement_is_refused():
    rows = [
        {"response_1": "a", "response_2": "bb"},
        {"response_1": "ccc", "response_2": "d"},
        {"response_1": "ee", "response_2": "ff"},
    ]  # the last is tied under length: dropped
    assert agreement(len, lambda t: -len(t), rows) == 0.0 and agreement(len, len, rows) == 1.0
    with pytest.raises(ValueError, match="agrees with the target on"):  # refused when the options resolve
        resolve(ShiftOptions(scenarios=["sources"], judge_agreement=0.05))
    resolve(ShiftOptions(scenarios=["flips"], judge_agreement=0.05))  # no judge in this run: no refusal


def test_sources_rows_scarce_human_and_the_oracle_dataset_has_the_same_rows():
    opts = small(synthetic_fraction=0.9)
    rows = build_dataset(opts, "sources", 4)
    assert sum(r["source"] == "human" for r in rows) == round(0.1 * len(rows))
    assert build_dataset(opts, "sources-oracle", 4) == rows
    for r in rows:
        if r["source"] == "synthetic":
            judge = judge_reward(opts, r["shift"])
            assert {r["reward_chosen"], r["reward_rejected"]} == {judge(r["chosen"]), judge(r["rejected"])}


# --------------------------------------------------------------------------------------------- controls


def test_conflict_control_needs_dpo_below_the_start_models_worst_case():
    start = [m(worst=w) for w in (0.40, 0.42, 0.41, 0.40)]
    below = [m(r0=0.7, worst=w) for w in (0.35, 0.38, 0.36, 0.37)]  # 0.05, 0.04, 0.05, 0.03
    c = conflict_control(below, start)
    assert c["value"] == pytest.approx(0.0425) and c["passed"]
    # a large drop from DPO's own r(α₀) is not a loss if the worst case stays above the start's
    gain = [m(r0=0.9, worst=w) for w in (0.41, 0.43, 0.42, 0.41)]
    assert (
        conflict_control(gain, start)["value"] == pytest.approx(-0.01) and not conflict_control(gain, start)["passed"]
    )
    noisy = [m(worst=w) for w in (0.20, 0.50, 0.30, 0.45)]  # mean gap 0.045 but the interval covers 0
    assert not conflict_control(noisy, start)["passed"]


def test_sources_control_is_two_sided():
    human = [m(r0=r) for r in (0.50, 0.52, 0.51, 0.49)]
    all_rows = [m(r0=r) for r in (0.55, 0.56, 0.57, 0.54)]  # useful: +0.05, +0.04, +0.06, +0.05
    oracle = [m(r0=r) for r in (0.58, 0.59, 0.59, 0.57)]  # shifted: +0.03, +0.03, +0.02, +0.03
    aucs = [0.8, 0.82, 0.78, 0.8]
    c = sources_control(all_rows, human, oracle, aucs)
    assert c["passed"] and c["value"] == pytest.approx(min(0.05, 0.0275))
    assert not sources_control(human, all_rows, oracle, aucs)["passed"]  # synthetic rows hurt: not useful
    assert not sources_control(all_rows, human, all_rows, aucs)["passed"]  # oracle weighting gains nothing
    assert not sources_control(all_rows, human, oracle, [0.97, 0.99, 0.98, 0.99])["passed"]  # no overlap


def test_unpaired_control_counts_what_the_trainers_saw_per_step():
    assert completions_per_step(32, unpaired=False) == 64 and completions_per_step(64, unpaired=True) == 64
    assert unpaired_control([64] * 5, [64] * 5)["passed"]
    c = unpaired_control([64, 64, 48], [64, 64, 64])  # a short last step on one side
    assert not c["passed"] and c["value"] == 48
    assert not unpaired_control([32] * 4, [32] * 4)["passed"]  # too few values to sort
    assert not unpaired_control([], [])["passed"]  # nothing counted is no evidence


# --------------------------------------------------------------------------------------------- calibration


def test_fit_temperature_recovers_the_scale_of_a_shrunk_link():
    z = np.linspace(-3, 3, 41)
    p = 1 / (1 + np.exp(-z))
    assert fit_temperature(0.01 * z, p) == pytest.approx(100.0, rel=1e-4)
    assert fit_temperature(np.zeros(5), p[:5]) == 1.0


def test_tempered_calibration_ignores_the_links_scale_but_not_its_shape():
    z = np.linspace(-3, 3, 200)
    p = 1 / (1 + np.exp(-z))
    tiny = 1 / (1 + np.exp(-0.003 * z))  # σ(β·Δs) at a small β: ≈ ½ whatever was learned
    assert np.mean(np.abs(tiny - p)) > 0.15 and tempered_calibration_error(tiny, p) < 1e-6
    wrong = 1 / (1 + np.exp(-np.sign(z) * z**2))  # a different shape: no scale fixes it
    assert tempered_calibration_error(wrong, p) > 0.02
    # fitted on even pairs, measured on odd ones: hand case with two pairs
    assert tempered_calibration_error(np.array([0.5, 0.7]), np.array([0.5, 0.6])) == pytest.approx(0.1)


# --------------------------------------------------------------------------------------------- maps


def test_maps_plumbing_on_a_fake_trainer(tmp_path):
    """Every cell trains its scenario's runs per seed; the gain is the method minus its best
    baseline (frontier at matched x, or another baseline); the control and PNG come along, and
    `maps` lands in an existing results.json without touching its other keys."""
    import json

    from dralign_bench.shift.maps import MAPS, in_turn, map_names, run_maps

    opts = resolve(ShiftOptions(maps=True, seeds=3, seed_offset=500, output_dir=str(tmp_path), betas=[0.1, 1.0]))
    assert opts.seeds == 3 and opts.validation_seeds == 0
    (tmp_path / "results.json").write_text(json.dumps({"claims": ["kept"]}))
    calls = []

    def fake(o, runs, seed):
        calls.append((o.synthetic_fraction, o.judge_agreement, o.flip_rate, seed, len(runs)))
        got = {}
        for r in runs:
            beta = dict(r.params).get("beta")
            kl = {0.1: 4.0, 1.0: 1.0}.get(beta, 2.0)
            r0 = {0.1: 0.60, 1.0: 0.54}.get(beta, 0.55)
            if r.dataset == "human":
                r0 -= 0.05  # DPO on the human rows: below DPO on all rows (synthetic rows useful)
            if r.method == "dora":
                r0 = 0.58 + 0.1 * o.judge_agreement + 0.001 * (seed - 500)
            if r.dataset == "sources-oracle":
                r0 = 0.60 + 0.01 * (seed - 500)
            acc = (
                0.7
                + (0.05 + 0.001 * (seed - 500) if r.method == "rdpo" else 0.0)
                - (0.1 * o.flip_rate if r.dataset == "flip" else 0)
            )
            got[r.id] = SeedMetrics(curve=[r0], r0=r0, worst=r0, kl=kl, entropy=4.0, distinct2=0.8, acc=acc, calib=0.1)
        return got, [0.8]

    maps = run_maps(opts, in_turn(opts, fake))
    dora, rdpo = maps["dora"], maps["rdpo"]
    assert len(dora["cells"]) == 12 and len(rdpo["cells"]) == 4
    assert len(calls) == (12 + 4) * 3 and {c[3] for c in calls} == {500, 501, 502}  # the test seeds from --seed-offset
    assert dora["seed_values"] == rdpo["seed_values"] == [500, 501, 502]
    cell = next(c for c in dora["cells"] if c["coords"] == {"human_fraction": 0.05, "judge_agreement": 0.75})
    # frontier at KL 2: between (1, 0.54) and (4, 0.60) → 0.56; reweight and KL-DRO at 0.55; DoRA 0.655 + 0.001·s
    assert cell["gain"] == pytest.approx(0.655 + 0.001 - 0.56) and cell["seeds"] == 3
    assert cell["ci"][0] < cell["gain"] < cell["ci"][1]
    # useful: sources DPO − human DPO = 0.05; shifted: oracle (0.60 + 0.01 s) − 0.60 → 0.01 mean, passes only by ≥ 0.01
    assert cell["control"]["value"] == pytest.approx(0.01)
    first = rdpo["cells"][0]
    assert first["coords"] == {"flip_rate": 0.1} and first["method"] == "flip/rdpo[label_smoothing=0.1]"
    assert first["gain"] == pytest.approx(0.05 + 0.001) and first["control"]["name"].startswith("DPO's accuracy drop")
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["claims"] == ["kept"] and set(saved["maps"]) == set(MAPS)
    assert map_names(resolve(ShiftOptions(maps=True, scenarios=["flips"]))) == ["rdpo"]  # --scenarios picks the maps
    assert (tmp_path / "map-dora.png").stat().st_size > 5_000 and (tmp_path / "map-rdpo.png").exists()
    from dralign_bench.shift.outputs import _map_lines  # the report's tables read the same records (1-D maps too)

    text = "\n".join(_map_lines({"maps": maps}))
    assert "| 0.05 | +0.0" in text and "| 0.1 | +0.051 [" in text
    assert dora["parameters"]["source"].startswith("each grid's first value")
    assert "Seeds [500, 501, 502] in every cell; parameters sources/dora 0.5" in text


def test_maps_take_the_full_runs_validation_choices_from_the_output_folder(tmp_path):
    """With a full run's results.json in the output folder, a map trains DoRA and KL-DRO at the
    parameters that run chose on its validation seeds, never at a value it did not choose."""
    import json

    from dralign_bench.shift.maps import MAPS, map_parameters, map_runs

    opts = resolve(ShiftOptions(maps=True, seeds=2, output_dir=str(tmp_path), betas=[0.1, 1.0]))
    assert map_parameters(opts, MAPS["dora"])[0] == {("sources", "dora"): 0.5, ("sources", "dro"): 0.5}
    selection = {
        "sources/dora": {"param": "lam", "chosen": 2.0},
        "sources/dro": {"param": "tau", "chosen": 0.5},
        "flip/cdpo": {"param": "label_smoothing", "chosen": 0.3},
    }
    results = {"selection": selection, "options": {"validation_seed_values": [1000, 1001]}}
    (tmp_path / "results.json").write_text(json.dumps(results))
    chosen, source = map_parameters(opts, MAPS["dora"])
    assert chosen == {("sources", "dora"): 2.0, ("sources", "dro"): 0.5} and "[1000, 1001]" in source
    _, method, baselines, _ = map_runs(opts, MAPS["dora"])
    assert method.id == "sources/dora[lam=2]" and baselines[1].id == "sources/dro[tau=0.5]"


def test_train_counting_reports_the_completions_each_step_drew(tiny_model_dir, pref_jsonl, unpaired_jsonl, tmp_path):
    """The counts come from the training loop: a pair is two completions, an unpaired row one."""
    from dralign.config import build
    from dralign.train.config import TrainConfig
    from dralign_bench.shift.seen import train_counting

    def cfg(data, method, batch, out):
        return build(
            TrainConfig,
            dict(
                model=tiny_model_dir("llama"),
                data=str(data),
                method=method,
                output_dir=str(tmp_path / out),
                max_steps=2,
                batch_size=batch,
                progress=False,
                max_length=64,
            ),
        )

    _, paired = train_counting(cfg(pref_jsonl, "dpo", 4, "p"))
    _, unpaired = train_counting(cfg(unpaired_jsonl, "aot-unpaired", 8, "u"))
    assert paired == [8, 8] and unpaired == [8, 8]
    assert unpaired_control(unpaired, paired, minimum=8)["passed"]


def test_oracle_ratio_is_a_classifier_fitted_on_twenty_times_more_rows_of_another_seed(
    tiny_model_dir, tmp_path, monkeypatch
):
    import json

    from dralign.modeling import load_model, load_tokenizer
    from dralign_bench.shift import data as data_mod
    from dralign_bench.shift import oracle

    opts = small(train_pairs=20, synthetic_fraction=0.7)
    rows = build_dataset(opts, "sources", 3)
    drawn = []
    real = data_mod.build_dataset
    monkeypatch.setattr(data_mod, "build_dataset", lambda o, d, s: drawn.append((o.train_pairs, d, s)) or real(o, d, s))
    path = tmp_path / "oracle.jsonl"
    model_dir = tiny_model_dir("llama")
    info = oracle.write_oracle_file(opts, rows, path, load_model(model_dir), load_tokenizer(model_dir))
    assert drawn == [(oracle.ORACLE_FACTOR * 20, "sources", oracle.ORACLE_SEED)] and oracle.ORACLE_FACTOR >= 20
    out = [json.loads(line) for line in path.read_text().splitlines()]
    prior = np.mean([r["source"] == "human" for r in rows])
    assert [{k: v for k, v in r.items() if k not in ("target_prob", "ratio")} for r in out] == rows
    assert all(0 < r["target_prob"] < 1 and r["ratio"] == pytest.approx(r["target_prob"] / prior) for r in out)
    assert 0.0 <= info["oracle_auc"] <= 1.0 and "20×" in info["oracle"]


def test_mixture_regret_against_dpo_trained_at_each_alpha_by_hand():
    from dralign_bench.shift.papers import mixture_regret

    opts = resolve(ShiftOptions(scenarios=["mixture"], alphas=[0.0, 0.1, 0.5, 1.0], alpha0=0.1))
    curve = lambda *v: SeedMetrics(
        curve=list(v),
        r0=v[1],
        worst=min(v),
        kl=1.0,
        entropy=4.0,
        distinct2=0.8,  # noqa: E731
        acc=0.7,
        calib=0.1,
    )
    metrics = {
        "labmix-a0/dpo": [curve(0.9, 0.5, 0.4, 0.1)] * 2,
        "labmix-a0.5/dpo": [curve(0.5, 0.5, 0.7, 0.5)] * 2,
        "labmix-a1/dpo": [curve(0.1, 0.2, 0.5, 0.8)] * 2,
        "labmix/dpo[beta=0.1]": [curve(0.8, 0.75, 0.5, 0.2)] * 2,
        "labmix/kldpo[tau=0.05]": [curve(0.6, 0.6, 0.6, 0.5), curve(0.6, 0.7, 0.6, 0.3)],
        "mix/dpo": [curve(0, 0, 0, 0)],
    }
    out = mixture_regret(opts, metrics)
    assert set(out) == {k for k in metrics if k.startswith("labmix")}
    assert out["labmix/kldpo[tau=0.05]"] == pytest.approx({"0": 0.3, "0.1": 0.1, "0.5": 0.1, "1": 0.4})
    assert out["labmix/dpo[beta=0.1]"]["0.1"] == 0.0
    rows, other = build_dataset(small(), "labmix-a1", 2), build_dataset(small(alpha0=1.0), "labmix", 2)
    assert rows == other  # labmix-aA is labmix at α₀ = A
    assert mixture_regret(resolve(ShiftOptions(scenarios=["flips"])), metrics) == {}


def test_the_mixture_scenario_trains_twice_as_long_and_only_it():
    from dralign_bench.shift import RunSpec
    from dralign_bench.shift.scenarios import steps_of

    opts = small(steps=30)
    assert steps_of(opts, RunSpec("labmix", "kldpo", (("tau", 0.05),))) == 60
    assert steps_of(opts, RunSpec("labmix-a0.5", "dpo")) == 60
    assert steps_of(opts, RunSpec("mix", "dpo", (("beta", 0.1),))) == 30
    assert steps_of(opts, RunSpec("sources", "dora", (("lam", 0.5),))) == 30


def test_human_rows_count_matches_the_dataset():
    from dralign_bench.shift.data import human_rows

    for frac, n in ((0.9, 80), (0.95, 128), (0.7, 60)):
        opts = small(synthetic_fraction=frac, train_pairs=n)
        assert human_rows(opts) == len(build_dataset(opts, "human", 1))
