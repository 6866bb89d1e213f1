"""The length controls of held-out accuracy (`dralign.lengths`), against a hand-computed example:
the pick-the-longer baseline, length-matched pairs and chosen longer / shorter."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dralign.lengths import flat_length_metrics, length_matched, length_report, longer_wins, outcomes

CHOSEN = np.array([10, 10, 100, 50, 20, 30])
REJECTED = np.array([5, 10, 91, 56, 40, 30])
MARGINS = np.array([1.0, -1.0, 0.5, 2.0, -0.3, 0.0])


def test_outcomes_longer_baseline_and_matched_pairs_by_hand():
    assert outcomes(MARGINS).tolist() == [1.0, 0.0, 1.0, 1.0, 0.0, 0.5]
    assert longer_wins(CHOSEN, REJECTED).tolist() == [1.0, 0.5, 1.0, 0.0, 0.0, 0.5]
    # |ΔL| vs 10 % of the longer: 5 > 1; 0 <= 1; 9 <= 10; 6 > 5.6; 20 > 4; 0 <= 3
    assert length_matched(CHOSEN, REJECTED, 0.10).tolist() == [False, True, True, False, False, True]
    # at 20 %: 6 <= 11.2 joins
    assert length_matched(CHOSEN, REJECTED, 0.20).tolist() == [False, True, True, True, False, True]
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        length_matched(CHOSEN, REJECTED, 1.0)


def test_length_report_by_hand():
    r = length_report(outcomes(MARGINS), CHOSEN, REJECTED, tolerance=0.10)
    assert r["tolerance"] == 0.10
    assert r["longer_baseline"].mean == pytest.approx(3 / 6) and r["longer_baseline"].n == 6
    # matched pairs 1, 2, 5: outcomes 0, 1, ½
    assert r["length_matched"]["n"] == 3 and r["length_matched"]["accuracy"].mean == pytest.approx(0.5)
    # chosen longer: pairs 0, 2 (both right); chosen shorter: pairs 3 (right), 4 (wrong)
    assert r["chosen_longer"]["n"] == 2 and r["chosen_longer"]["accuracy"].mean == 1.0
    assert r["chosen_shorter"]["n"] == 2 and r["chosen_shorter"]["accuracy"].mean == 0.5
    assert r["equal_length"] == 2
    assert r["agrees_with_longer"] == pytest.approx(4 / 6)
    for block in (r["length_matched"], r["chosen_shorter"]):
        ci = block["accuracy"]
        assert ci.low <= ci.mean <= ci.high and ci.n == block["n"]


def test_an_empty_subset_has_no_accuracy_and_flat_metrics_are_nan():
    lengths = np.array([10, 20]), np.array([1, 2])  # chosen always longer, never matched
    r = length_report([1.0, 0.0], *lengths)
    assert r["length_matched"] == {"n": 0, "accuracy": None}
    assert r["chosen_shorter"] == {"n": 0, "accuracy": None}
    flat = flat_length_metrics(r, prefix="eval/length/")
    assert flat["eval/length/chosen_longer_accuracy"] == 0.5 and flat["eval/length/chosen_longer_n"] == 2
    assert math.isnan(flat["eval/length/length_matched_accuracy"])
    assert flat["eval/length/longer_baseline"] == 1.0
    with pytest.raises(ValueError, match="3 outcomes for 2"):
        length_report([1.0, 0.0, 1.0], *lengths)
