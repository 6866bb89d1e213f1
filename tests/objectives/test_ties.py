"""A tied margin counts ½ in every accuracy dralign reports: the trainer's metric, the TRL
drop-in's, `dralign eval`'s and the real benchmark's."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dralign.eval.evaluate import preference_metrics
from dralign.objectives import Objective, preference_accuracy


def test_a_tie_counts_half_in_training_and_in_eval():
    pc = torch.tensor([-1.0, -2.0, -3.0, -4.0])
    pr = torch.tensor([-1.0, -2.5, -2.0, -4.0])
    ref = torch.zeros(4)
    # margins: 0 (tie), +0.5, -1, 0 (tie): accuracy (0.5 + 1 + 0 + 0.5) / 4
    out = Objective.from_preset("dpo", beta=0.1)(pc, pr, ref, ref)
    trained = float(out.metric_tensors["rewards/accuracies"])
    beta = 0.1
    evaluated = preference_metrics((beta * pc).numpy(), (beta * pr).numpy())["accuracy"].mean
    assert trained == pytest.approx(0.5) and evaluated == pytest.approx(trained)


def test_the_unpaired_metric_and_the_real_benchmark_follow_the_same_rule():
    from dralign_bench.real.score import pair_correct

    m = torch.tensor([0.0, 1.0, -1.0])
    assert preference_accuracy(m, torch.zeros(3)).tolist() == [0.5, 1.0, 0.0]
    policy = (np.array([-1.0, -1.0, -2.0]), np.array([-1.0, -2.0, -1.0]))
    reference = (np.zeros(3), np.zeros(3))
    assert pair_correct(policy, reference).tolist() == [0.5, 1.0, 0.0]
