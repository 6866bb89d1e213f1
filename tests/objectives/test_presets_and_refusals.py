"""The objective's contract: nonsense refused with a reason, presets and their parameters,
the preset names of docs/design.md, TRL's metric names."""

import pytest
import torch

from dralign import Objective
from dralign.objectives.presets import PRESETS

D = torch.float64


def logp_batch(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(n, generator=g, dtype=D).mul(2) for _ in range(4)]


# ---------------------------------------------------------------- refusals
@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(divergence="js", coupling="aot"), "reverse-KL"),
        (dict(divergence="alpha", alpha=1.0), r"\(0, 1\)"),
        (dict(divergence="alpha", alpha=0.0), r"\(0, 1\)"),
        (dict(link="robust", label_smoothing=0.5), "1 - 2"),
        (dict(robust="kl", tau=0.0), "tau"),
        (dict(robust="kl", tau=-1.0), "tau"),
        (dict(link="hinge", label_smoothing=0.1), "label_smoothing not used"),
        (dict(coupling="aot", robust="dora"), "quantiles"),
        (dict(robust="bogus"), "choose one of"),
        (dict(beta=0.0), "beta"),
        (dict(robust="cvar", cvar_level=0.0), "cvar_level"),
    ],
)
def test_nonsense_is_refused_with_reason(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Objective(**kwargs)


def test_unknown_preset_lists_valid_ones():
    with pytest.raises(ValueError, match="valid presets: dpo, ipo"):
        Objective.from_preset("dpoo")
    with pytest.raises(ValueError, match="betta not used by preset 'dpo'"):
        Objective.from_preset("dpo", betta=0.1)


def test_preset_refuses_parameters_it_does_not_use():
    """dro is kldpo (an alias): lam is DoRA's, not its; the message names its parameters."""
    with pytest.raises(ValueError, match=r"lam not used by preset 'dro'.*beta, label_smoothing, tau"):
        Objective.from_preset("dro", lam=0.1)
    with pytest.raises(ValueError, match="cvar_level not used"):
        Objective.from_preset("dpo", cvar_level=0.1)
    assert PRESETS["dro"].alias_of == "kldpo" and PRESETS["dro"].choices == PRESETS["kldpo"].choices
    # a choice override brings its parameters with it
    assert Objective.from_preset("dpo", robust="kl", tau=0.5).parameters()["tau"] == 0.5
    # cdpo's default smoothing is dropped when the link no longer takes it
    assert "label_smoothing" not in Objective.from_preset("cdpo", link="hinge").parameters()


def test_sqrt_mean_penalty_couples_examples():
    assert not Objective.from_preset("wdpo").couples_examples
    assert Objective.from_preset("wdpo", penalty_form="sqrt_mean").couples_examples
    assert not Objective.from_preset("wdpo", rho=0.0, penalty_form="sqrt_mean").couples_examples


def test_rdpo_preset_refuses_half_smoothing():
    with pytest.raises(ValueError, match=r"\[0, 0.5\)"):
        Objective.from_preset("rdpo", label_smoothing=0.5)


def test_missing_metadata_is_an_error():
    pc, pr, rc, rr = logp_batch(4)
    with pytest.raises(ValueError, match="needs density ratios"):
        Objective.from_preset("dora")(pc, pr, rc, rr)
    with pytest.raises(ValueError, match="needs a group id"):
        Objective.from_preset("group-dro")(pc, pr, rc, rr)
    with pytest.raises(ValueError, match="does not use"):
        Objective.from_preset("dpo")(pc, pr, rc, rr, ratio=torch.ones(4, dtype=D))


def test_every_preset_named_in_design_exists():
    names = (
        "dpo ipo hinge cdpo rdpo fdpo-fkl fdpo-js fdpo-alpha aot aot-unpaired kldpo wdpo dora "
        "dora-reweight dro drdpo group-dro cvar"
    ).split()
    assert sorted(PRESETS) == sorted(names)
    assert Objective.from_preset("cdpo").parameters()["label_smoothing"] == 0.1
    assert Objective.from_preset("rdpo").link == "robust"
    assert Objective.from_preset("wdpo").penalty.name == "wasserstein"


def test_metrics_follow_trl_names():
    pc, pr, rc, rr = logp_batch(4)
    m = Objective.from_preset("kldpo", beta=0.5)(pc, pr, rc, rr).metrics
    assert m["rewards/chosen"] == pytest.approx(0.5 * (pc - rc).mean().item())
    assert m["rewards/accuracies"] == pytest.approx(((pc - rc) > (pr - rr)).double().mean().item())
    assert 0 < m["robust/ess"] <= 1 and m["robust/weight_max"] >= 1
