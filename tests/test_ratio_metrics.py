"""dralign.stats (the ratio classifier's diagnostics) against hand-computed values."""

import itertools

import numpy as np
import pytest
import torch

from dralign.stats import brier_score, expected_calibration_error, roc_auc


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
