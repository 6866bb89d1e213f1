"""dralign.stats (the ratio classifier's and the evaluation's diagnostics, the benchmarks'
confidence intervals) against hand-computed values."""

import itertools
import math

import numpy as np
import pytest
import torch

from dralign.stats import MeanCI, bootstrap_ci, brier_score, expected_calibration_error, hierarchical_ci, roc_auc


def test_auc_hand_value():
    # positives {0.35, 0.8} vs negatives {0.1, 0.4}: 0.35>0.1, 0.35<0.4, 0.8>both → 3/4
    assert roc_auc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == pytest.approx(0.75)


def test_auc_ties_count_half():
    # positive 0.5 ties both negatives (½ + ½), positive 0.9 beats both (2) → 3/4
    assert roc_auc([0.5, 0.5, 0.5, 0.9], [1, 0, 0, 1]) == pytest.approx(0.75)
    assert roc_auc([0.3] * 5, [1, 0, 1, 0, 0]) == pytest.approx(0.5)


def test_auc_extremes_and_tensor_input():
    y = torch.tensor([True, False, True, False])
    assert roc_auc(torch.tensor([0.9, 0.1, 0.8, 0.2]), y) == 1.0
    assert roc_auc(torch.tensor([0.1, 0.9, 0.2, 0.8]), y) == 0.0


def test_auc_matches_brute_force_with_ties():
    rng = np.random.default_rng(0)
    s = np.round(rng.normal(size=60), 1)  # many ties
    y = rng.integers(0, 2, size=60)
    pos, neg = s[y == 1], s[y == 0]
    brute = np.mean([(a > b) + 0.5 * (a == b) for a, b in itertools.product(pos, neg)])
    assert roc_auc(s, y) == pytest.approx(brute, abs=1e-12)


def test_auc_needs_both_classes():
    with pytest.raises(ValueError, match="both classes"):
        roc_auc([0.1, 0.2], [1, 1])


def test_ece_hand_values():
    p, y = [0.1, 0.2, 0.7, 0.9], [0, 1, 1, 1]
    # 2 bins: [0.1, 0.2] → |0.5 − 0.15|·½ = 0.175; [0.7, 0.9] → |1 − 0.8|·½ = 0.1
    assert expected_calibration_error(p, y, bins=2) == pytest.approx(0.275)
    # 10 bins, one item each: (0.1 + 0.8 + 0.3 + 0.1) / 4
    assert expected_calibration_error(p, y, bins=10) == pytest.approx(0.325)
    # p = 1 falls in the last bin; a perfectly calibrated set has ECE 0
    assert expected_calibration_error([1.0, 1.0, 0.0], [1, 1, 0]) == pytest.approx(0.0)
    assert expected_calibration_error([0.5, 0.5], [0, 1], bins=10) == pytest.approx(0.0)


def test_brier_hand_value():
    assert brier_score([0.1, 0.2, 0.7, 0.9], [0, 1, 1, 1]) == pytest.approx(0.75 / 4)


def test_metrics_reject_bad_input():
    with pytest.raises(ValueError, match="length"):
        brier_score([0.1, 0.2], [1])
    with pytest.raises(ValueError, match="0/1"):
        brier_score([0.1, 0.2], [1, 2])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        expected_calibration_error([1.5, 0.2], [1, 0])


# --- calibration (from the evaluation's metrics) ----------------------------------------------


def test_ece_hand_computed_six_samples():
    # bins=2: [0, .5) holds p = .1, .2, .4 (labels 0, 1, 0): |1/3 − 0.7/3| = 0.1
    #         [.5, 1] holds p = .6, .9, 1.0 (labels 1, 1, 0): |2/3 − 2.5/3| = 0.5/3
    probs = [0.1, 0.2, 0.4, 0.6, 0.9, 1.0]
    labels = [0, 1, 0, 1, 1, 0]
    expected = 0.5 * 0.1 + 0.5 * (0.5 / 3)
    assert expected_calibration_error(probs, labels, bins=2) == pytest.approx(expected)
    # bins=10: .1, .2, .4, .6 are alone in their bins (|p − y| = .1, .8, .4, .4); the last bin
    # [.9, 1] holds p = .9 and 1.0 (labels 1, 0): |1/2 − 1.9/2| = .45, weight 2/6
    assert expected_calibration_error(probs, labels, bins=10) == pytest.approx(
        (0.1 + 0.8 + 0.4 + 0.4) / 6 + 2 / 6 * 0.45
    )
    # one bin: |mean y − mean p|
    assert expected_calibration_error(probs, labels, bins=1) == pytest.approx(abs(0.5 - 3.2 / 6))


def test_ece_perfect_and_torch_input():
    p = torch.tensor([0.5, 0.5, 0.5, 0.5])
    y = torch.tensor([1, 0, 1, 0])
    assert expected_calibration_error(p, y) == pytest.approx(0.0)
    with pytest.raises(ValueError):
        expected_calibration_error([0.2, 1.2], [0, 1])
    with pytest.raises(ValueError):
        expected_calibration_error([0.2], [0, 1])


# --- bootstrap intervals --------------------------------------------------------------------


def test_bootstrap_ci_contains_estimate_deterministic_and_shrinks():
    rng = np.random.default_rng(1)
    small = rng.normal(size=30)
    big = rng.normal(size=3000)
    est, lo, hi = bootstrap_ci(small, seed=3)
    assert est == pytest.approx(small.mean())
    assert lo < est < hi
    assert bootstrap_ci(small, seed=3) == (est, lo, hi)
    assert bootstrap_ci(small, seed=4) != (est, lo, hi)
    e2, lo2, hi2 = bootstrap_ci(big, seed=3)
    assert lo2 < e2 < hi2
    assert hi2 - lo2 < (hi - lo) / 3  # ~ 1/sqrt(100) = 1/10 the width
    # level: a wider level gives a wider interval
    _, lo9, hi9 = bootstrap_ci(small, level=0.99, seed=3)
    assert lo9 <= lo and hi9 >= hi
    # width matches the normal approximation 2·1.96·sd/sqrt(n)
    sd = big.std() / math.sqrt(big.size)
    assert (hi2 - lo2) == pytest.approx(2 * 1.96 * sd, rel=0.15)


def test_bootstrap_ci_custom_stat_and_degenerate():
    v = np.arange(10.0)
    est, lo, hi = bootstrap_ci(v, stat=np.median, n_resamples=200)
    assert est == 4.5 and lo <= est <= hi
    assert bootstrap_ci([2.0]) == (2.0, 2.0, 2.0)
    with pytest.raises(ValueError):
        bootstrap_ci([])


def test_mean_ci():
    ci = MeanCI.from_values([1.0, 2.0, 3.0, 4.0], seed=0)
    assert ci.mean == 2.5 and ci.n == 4 and ci.level == 0.95
    assert ci.low < 2.5 < ci.high
    assert ci.half_width == pytest.approx((ci.high - ci.low) / 2)
    d = ci.as_dict()
    assert set(d) == {"mean", "low", "high", "n", "level"}
    assert "2.5" in str(ci)


def test_hierarchical_ci_estimate_and_special_cases():
    rng = np.random.default_rng(0)
    groups = [rng.normal(m, 1.0, size=(50, 3)) for m in (0.0, 1.0, 2.0)]
    est, lo, hi = hierarchical_ci(groups)
    np.testing.assert_allclose(est, np.mean([g.mean(0) for g in groups], axis=0))
    assert np.all(lo < est) and np.all(est < hi)
    # a statistic of the mean curve: the worst point
    w, wlo, whi = hierarchical_ci(groups, stat=lambda m: m.min(axis=-1))
    assert w == pytest.approx(est.min()) and wlo <= w <= whi
    # one unit per seed: a plain bootstrap over the seeds
    seeds = [[v] for v in (0.3, 0.5, 0.9, 0.1)]
    e, l, h = hierarchical_ci(seeds, n_resamples=2000)
    assert float(e) == pytest.approx(0.45)
    _, bl, bh = bootstrap_ci([0.3, 0.5, 0.9, 0.1], n_resamples=2000)
    assert abs(float(l) - bl) < 0.05 and abs(float(h) - bh) < 0.05
    # one seed of constant values: no uncertainty
    assert hierarchical_ci([np.full((10, 1), 0.7)])[1:] == (pytest.approx(0.7), pytest.approx(0.7))
    # a paired comparison of a method with itself is exactly 0
    d = hierarchical_ci([[0.2], [0.4]], other=[[0.2], [0.4]])
    assert [float(x) for x in d] == [0.0, 0.0, 0.0]
