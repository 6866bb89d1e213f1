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
from dralign.stats import brier_score


def test_preference_accuracy_ties_half():
    assert preference_accuracy([1.0, -1.0, 0.0, 2.0]) == pytest.approx((1 + 0 + 0.5 + 1) / 4)
    assert preference_accuracy(torch.tensor([0.5, 0.1])) == 1.0
    assert preference_accuracy(np.zeros(7)) == 0.5
    with pytest.raises(ValueError):
        preference_accuracy([])


def test_reward_margin_stats():
    s = reward_margin_stats(torch.tensor([1.0, -1.0, 3.0, 0.0]))
    assert s["mean"] == pytest.approx(0.75)
    assert s["std"] == pytest.approx(math.sqrt(((0.25) ** 2 + 1.75**2 + 2.25**2 + 0.75**2) / 4))
    assert s["median"] == pytest.approx(0.5)
    assert (s["min"], s["max"], s["n"]) == (-1.0, 3.0, 4.0)
    assert s["accuracy"] == pytest.approx(2.5 / 4)


def test_preference_probs_stable():
    p = preference_probs([0.0, 2.0, -1000.0, 1000.0], beta=0.5)
    assert p[0] == 0.5
    assert p[1] == pytest.approx(1 / (1 + math.exp(-1.0)))
    assert p[2] == pytest.approx(0.0, abs=1e-200) and p[3] == 1.0
    assert np.all(np.isfinite(p))


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


def test_worst_case():
    assert worst_case({0.0: 0.7, 0.5: 0.4, 1.0: 0.6}) == (0.5, 0.4)
    assert worst_case({1.0: 0.3, 0.0: 0.3}) == (0.0, 0.3)  # tie → smallest alpha
    assert worst_case({0.0: 1.0, 1.0: 2.0}, higher_is_better=False) == (1.0, 2.0)
    with pytest.raises(ValueError):
        worst_case({})
    with pytest.raises(ValueError):
        worst_case({0.0: float("nan"), 1.0: 1.0})
