"""`dralign.diagnose`: contradictory pairs, duplicates, leakage, the length baseline and the
advice rules on constructed files whose answers are computed by hand (lengths in bytes: no
tokenizer given)."""

from __future__ import annotations

import pytest

from dralign import diagnose
from dralign.diagnosis.advice import advise
from helpers import write_jsonl


def row(prompt, chosen, rejected, **extra):
    return {"prompt": prompt, "chosen": chosen, "rejected": rejected, **extra}


def quiet(path, **options):
    return diagnose(data=str(path), progress=False, log=lambda text: None, **options)


def test_contradictory_pairs_and_exact_duplicates(tmp_path):
    rows = [
        row("p1", " yes", " no"),
        row("p1", " no", " yes"),  # the same pair, labels swapped
        row("p1", " yes", " no"),  # an exact copy of the first row
        row("p2", " yes", " no"),  # another prompt: neither
        row("p3", " one", " two"),
        row("p3", " two", " one"),
        row("p3", " two", " one"),
    ]
    d = quiet(write_jsonl(tmp_path / "d.jsonl", rows))
    assert d.duplicates["exact"]["extra_copies"] == 2  # row 2 (of row 0) and row 6 (of row 5)
    con = d.duplicates["contradictory"]
    assert con["pairs"] == 2 and con["rows"] == 6
    # p1: 2 say yes ≻ no, 1 says no ≻ yes; p3: 1 vs 2 → at least 1 + 1 of 7 labels are wrong
    assert con["flip_rate_lower_bound"] == pytest.approx(2 / 7)


def test_no_contradiction_without_a_swap(tmp_path):
    rows = [row("p1", " yes", " no"), row("p1", " yes", " maybe"), row("p2", " no", " yes")]
    d = quiet(write_jsonl(tmp_path / "d.jsonl", rows))
    assert d.duplicates["contradictory"] == {"pairs": 0, "rows": 0, "flip_rate_lower_bound": 0.0}
    assert d.duplicates["exact"]["extra_copies"] == 0


def test_leakage_counts_shared_prompts_and_pairs(tmp_path):
    train = [row(f"p{i}", " good answer", " bad answer") for i in range(4)]
    held = [
        row("p1", " other", " answers"),  # shared prompt, new pair
        row("p2", " good answer", " bad answer"),  # shared prompt and pair
        row("p9", " good answer", " bad answer"),
    ]  # new prompt
    d = quiet(write_jsonl(tmp_path / "t.jsonl", train), eval=str(write_jsonl(tmp_path / "e.jsonl", held)))
    leak = d.leakage
    assert (leak["eval_rows"], leak["eval_rows_with_shared_prompt"], leak["shared_prompts"], leak["shared_pairs"]) == (
        3,
        2,
        2,
        1,
    )
    assert leak["fraction"] == pytest.approx(2 / 3)
    assert any(a.rule == "leakage" for a in d.advice)
    assert quiet(write_jsonl(tmp_path / "t.jsonl", train)).leakage is None


def test_length_baseline_by_hand(tmp_path):
    rows = [
        row("p1", " aaaa", " bb"),  # chosen longer: the longer pick is right (1)
        row("p2", " aaaaa", " b"),  # chosen longer (1)
        row("p3", " a", " bbbbbb"),  # chosen shorter (0)
        row("p4", " ab", " ba"),
    ]  # a tie (½)
    d = quiet(write_jsonl(tmp_path / "d.jsonl", rows))
    L = d.lengths
    assert L["unit"] == "bytes"
    assert L["chosen_longer_fraction"] == pytest.approx(2 / 4)
    assert L["longer_baseline_accuracy"].mean == pytest.approx((1 + 1 + 0 + 0.5) / 4)
    # +1 eos on both sides: differences 2, 4, -5, 0
    assert L["mean_length_difference"] == pytest.approx((2 + 4 - 5 + 0) / 4)
    assert L["prompts_cut"] is None  # bytes are not the tokens --max-length counts


def test_groups_counts_imbalance_and_per_group_bias(tmp_path):
    rows = (
        [row(f"a{i}", " long answer", " no", group="a") for i in range(6)]
        + [row(f"b{i}", " no", " long answer", group="b") for i in range(2)]
        + [row("c0", " x", " yy")]
    )
    g = quiet(write_jsonl(tmp_path / "d.jsonl", rows)).groups
    assert g["count"] == 2 and g["imbalance"] == pytest.approx(3.0) and g["without"] == 1
    assert g["by"]["a"]["longer_baseline_accuracy"].mean == 1.0
    assert g["by"]["b"]["longer_baseline_accuracy"].mean == 0.0


def flips(n: int, swapped: int) -> list[dict]:
    """`n` distinct pairs, and the first `swapped` of them again with the labels swapped."""
    rows = [row(f"question {i}", f" answer {i} is right", f" answer {i} is wrong") for i in range(n)]
    return rows + [row(r["prompt"], r["rejected"], r["chosen"]) for r in rows[:swapped]]


def test_label_noise_advice_fires_on_swapped_pairs_and_not_on_the_control(tmp_path):
    noisy = quiet(write_jsonl(tmp_path / "noisy.jsonl", flips(40, 4)))
    control = quiet(write_jsonl(tmp_path / "control.jsonl", flips(44, 0)))
    fired = [a for a in noisy.advice if a.rule == "label_noise"]
    assert len(fired) == 1 and "rdpo" in fired[0].recommendation
    assert noisy.duplicates["contradictory"]["flip_rate_lower_bound"] == pytest.approx(4 / 44)
    # the evidence is named: claims of the flips scenario with their verdicts
    assert fired[0].evidence and all(e["claim"].endswith("flips") and e["verdict"] for e in fired[0].evidence)
    assert not [a for a in control.advice if a.rule == "label_noise"]


def test_advice_never_recommends_what_the_evidence_contradicts(tmp_path):
    d = quiet(write_jsonl(tmp_path / "noisy.jsonl", flips(40, 4)))
    measured = {
        k: getattr(d, k) for k in ("rows", "duplicates", "leakage", "lengths", "groups", "sources", "label_signal")
    }
    claim = {"scenario": "flips", "paper": "rDPO", "claim": "rDPO helps", "verdict": "contradicted"}
    item = next(a for a in advise(measured, {"claims": {"claim-x-flips": claim}}) if a.rule == "label_noise")
    assert item.recommendation.startswith("none") and "claim-x-flips" in item.recommendation
    supported = {"claims": {"claim-x-flips": {**claim, "verdict": "reproduced"}}}
    assert "rdpo" in next(a for a in advise(measured, supported) if a.rule == "label_noise").recommendation
    none = next(a for a in advise(measured, {"claims": {}}) if a.rule == "label_noise")
    assert none.evidence == "no evidence in this project yet"


def test_imbalanced_groups_advice_and_its_control(tmp_path):
    def data(n_b):
        return [row(f"a{i}", " yes", " no", group="a") for i in range(12)] + [
            row(f"b{i}", " yes", " no", group="b") for i in range(n_b)
        ]

    rules = lambda d: {a.rule for a in d.advice}
    assert "groups" in rules(quiet(write_jsonl(tmp_path / "x.jsonl", data(3))))
    assert "groups" not in rules(quiet(write_jsonl(tmp_path / "y.jsonl", data(10))))


def test_sources_fit_separates_distinct_vocabularies(tmp_path):
    rows = [
        row(f"tell me about cats {i}", " cats purr and sleep a lot", " cats bark", source="human") for i in range(40)
    ] + [row(f"QUERY {i}: DOGS?", " DOGS RUN FAST 123", " DOGS MEOW 456", source="model") for i in range(60)]
    d = quiet(write_jsonl(tmp_path / "s.jsonl", rows), target=["human"])
    s = d.sources
    assert s["counts"] == {"human": 40, "model": 60}
    assert s["auc"] > 0.95 and s["prior"] == pytest.approx(0.4)
    assert 0 < s["ess"] <= 1
    item = next(a for a in d.advice if a.rule == "sources")  # the rule fires; DoRA unless the evidence contradicts it
    against = [e for e in item.evidence if isinstance(e, dict) and e["verdict"] == "contradicted"]
    assert ("--method dora" in item.recommendation) == (not against)
    assert not against or item.recommendation.startswith("none: the evidence contradicts")


def test_unknown_target_is_one_line(tmp_path):
    from dralign.errors import BadOptionError

    path = write_jsonl(tmp_path / "s.jsonl", [row("p", " a", " b", source="x"), row("q", " a", " b", source="y")])
    with pytest.raises(BadOptionError, match="--target z: not a source of the data"):
        quiet(path, target=["z"])


def test_outcome_interval_matches_the_resampling_bootstrap():
    import numpy as np

    from dralign.diagnosis.measure import outcome_ci
    from dralign.stats import MeanCI

    values = np.random.default_rng(3).choice([0.0, 0.5, 1.0], size=400, p=[0.3, 0.1, 0.6])
    fast, slow = outcome_ci(values, seed=0), MeanCI.from_values(values, seed=0)
    assert fast.mean == slow.mean and fast.n == slow.n == 400
    # the same bootstrap distribution, other random numbers: the bounds agree to Monte-Carlo error
    assert abs(fast.low - slow.low) < 0.015 and abs(fast.high - slow.high) < 0.015
    assert fast.high - fast.low == pytest.approx(slow.high - slow.low, abs=0.02)
    one = outcome_ci(np.array([1.0]), seed=0)
    assert (one.low, one.mean, one.high) == (1.0, 1.0, 1.0)
    with pytest.raises(ValueError, match="0, 0.5 or 1"):
        outcome_ci(np.array([0.3]), seed=0)


def test_refusals_before_reading(tmp_path):
    from dralign.diagnosis import DiagnoseConfig
    from dralign.errors import BadOptionError

    path = write_jsonl(tmp_path / "u.jsonl", [{"prompt": "p", "completion": " a", "label": True}])
    with pytest.raises(BadOptionError, match="--format unpaired: diagnose reads preference pairs"):
        quiet(path, format="unpaired")
    with pytest.raises(BadOptionError, match="pass --data"):
        diagnose(progress=False, log=lambda text: None)
    with pytest.raises(TypeError, match="not both"):
        diagnose(DiagnoseConfig(), data=str(path))
