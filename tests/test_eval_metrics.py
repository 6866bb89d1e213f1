"""Metric functions against hand-computed values."""

import math

import numpy as np
import pytest
import torch

from dralign.eval.metrics import (
    distinct_n,
    mean_length,
    preference_accuracy,
    preference_probs,
    reward_margin_stats,
    sequence_kl_estimate,
    token_entropy,
    win_rate,
    worst_case,
)
from dralign.stats import MeanCI, bootstrap_ci, brier_score, expected_calibration_error


def test_preference_accuracy_ties_half():
    assert preference_accuracy([1.0, -1.0, 0.0, 2.0]) == pytest.approx((1 + 0 + 0.5 + 1) / 4)
    assert preference_accuracy(torch.tensor([0.5, 0.1])) == 1.0
    assert preference_accuracy(np.zeros(7)) == 0.5
    with pytest.raises(ValueError):
        preference_accuracy([])


def test_reward_margin_stats():
    s = reward_margin_stats(torch.tensor([1.0, -1.0, 3.0, 0.0]))
    assert s["mean"] == pytest.approx(0.75)
    assert s["std"] == pytest.approx(math.sqrt(((0.25) ** 2 + 1.75 ** 2 + 2.25 ** 2 + 0.75 ** 2) / 4))
    assert s["median"] == pytest.approx(0.5)
    assert (s["min"], s["max"], s["n"]) == (-1.0, 3.0, 4.0)
    assert s["accuracy"] == pytest.approx(2.5 / 4)


def test_preference_probs_stable():
    p = preference_probs([0.0, 2.0, -1000.0, 1000.0], beta=0.5)
    assert p[0] == 0.5
    assert p[1] == pytest.approx(1 / (1 + math.exp(-1.0)))
    assert p[2] == pytest.approx(0.0, abs=1e-200) and p[3] == 1.0
    assert np.all(np.isfinite(p))


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
        (0.1 + 0.8 + 0.4 + 0.4) / 6 + 2 / 6 * 0.45)
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


def test_brier():
    assert brier_score([0.1, 0.8, 0.5], [0, 1, 1]) == pytest.approx((0.01 + 0.04 + 0.25) / 3)
    assert brier_score(preference_probs([0.0]), [1]) == pytest.approx(0.25)


def test_win_rate():
    assert win_rate([1, 2, 3, 4], [0, 2, 5, 1]) == pytest.approx((1 + 0.5 + 0 + 1) / 4)
    # unpaired: a=[1,3] vs b=[2,3,0]: 1>2 no, 1>3 no, 1>0 yes; 3>2 yes, 3=3 half, 3>0 yes
    assert win_rate([1, 3], [2, 3, 0], paired=False) == pytest.approx(3.5 / 6)
    with pytest.raises(ValueError):
        win_rate([1, 2], [1, 2, 3])


def test_sequence_kl_estimate():
    pol = torch.tensor([-3.0, -5.0, -2.0])
    start = torch.tensor([-4.0, -4.5, -2.0])
    assert sequence_kl_estimate(pol, start) == pytest.approx((1.0 - 0.5 + 0.0) / 3)
    assert sequence_kl_estimate(pol, pol) == 0.0


def test_sequence_kl_estimate_matches_true_kl_monte_carlo():
    # categorical pi, pi_start: the estimator over samples from pi converges to KL(pi||pi_start)
    rng = np.random.default_rng(0)
    pi = np.array([0.6, 0.3, 0.1])
    ps = np.array([0.2, 0.3, 0.5])
    ys = rng.choice(3, size=20000, p=pi)
    est = sequence_kl_estimate(np.log(pi[ys]), np.log(ps[ys]))
    true = float(np.sum(pi * np.log(pi / ps)))
    assert est == pytest.approx(true, abs=0.03)


def test_token_entropy():
    # counts: 1→2, 2→1, 3→1 : H = −(.5 ln .5 + 2 · .25 ln .25)
    h = token_entropy([[1, 2], [1, 3]])
    assert h == pytest.approx(-(0.5 * math.log(0.5) + 2 * 0.25 * math.log(0.25)))
    assert token_entropy([[5, 5, 5]]) == 0.0
    assert token_entropy([]) == 0.0
    assert token_entropy(["a b", "c d"]) == pytest.approx(math.log(4))
    assert token_entropy([torch.tensor([1, 2]), torch.tensor([1, 3])]) == pytest.approx(h)


def test_distinct_n():
    seqs = [[1, 2, 3, 1, 2], [1, 2, 4]]
    # bigrams: (1,2),(2,3),(3,1),(1,2) | (1,2),(2,4) → 4 unique / 6 total
    assert distinct_n(seqs, 2) == pytest.approx(4 / 6)
    # unigrams: {1,2,3,4} / 8
    assert distinct_n(seqs, 1) == pytest.approx(4 / 8)
    # n-grams never cross sequences: [1],[2] have no bigram
    assert distinct_n([[1], [2]], 2) == 0.0
    assert distinct_n(["the cat sat", "the cat ran"], 2) == pytest.approx(3 / 4)
    assert distinct_n([[7, 7, 7, 7]], 3) == pytest.approx(1 / 2)


def test_mean_length():
    assert mean_length([[1, 2, 3], [4]]) == 2.0
    assert mean_length(["a b c d", "e f"]) == 3.0


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


def test_worst_case():
    assert worst_case({0.0: 0.7, 0.5: 0.4, 1.0: 0.6}) == (0.5, 0.4)
    assert worst_case({1.0: 0.3, 0.0: 0.3}) == (0.0, 0.3)  # tie → smallest alpha
    assert worst_case({0.0: 1.0, 1.0: 2.0}, higher_is_better=False) == (1.0, 2.0)
    with pytest.raises(ValueError):
        worst_case({})
    with pytest.raises(ValueError):
        worst_case({0.0: float("nan"), 1.0: 1.0})
