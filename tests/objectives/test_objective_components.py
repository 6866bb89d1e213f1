"""The components' declarations (parameters once, with help and range) and the aggregators'
probability mass."""

import pytest
import torch

from dralign import Objective
from dralign.objectives import aggregators as agg

D = torch.float64


def logp_batch(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(n, generator=g, dtype=D) * 3 - 10 for _ in range(4))


def test_parameters_are_declared_once_with_help_and_range():
    from dralign.objectives import parameters

    specs = parameters()
    assert list(specs)[:4] == ["beta", "label_smoothing", "alpha", "tau"]
    assert specs["tau"].default == 1.0 and specs["tau"].used_by == ("robust=kl", "robust=kl_official")
    assert specs["label_smoothing"].preset_defaults == {"cdpo": 0.1, "rdpo": 0.1}
    assert specs["penalty_form"].choices == ("squared", "sqrt_mean")
    assert all(s.help for s in specs.values())
    assert specs["beta"].validate(0.2) == 0.2
    for bad in (0.0, float("inf"), float("nan"), "x"):
        with pytest.raises(ValueError, match="beta must be"):
            specs["beta"].validate(bad)
    # the objective reports only what it uses; the model card reads this
    assert Objective.from_preset("dpo").parameters() == {"beta": 0.1, "label_smoothing": 0.0}
    assert Objective.from_preset("wdpo", rho=2.0, penalty_form="sqrt_mean").parameters() == {
        "beta": 0.1,
        "label_smoothing": 0.0,
        "rho": 2.0,
        "penalty_form": "sqrt_mean",
        "penalty_mode": "finite_difference",
    }
    # the docstring carries the one formula string
    assert agg.KL.formula in agg.KL.__doc__ and "2502.01930" in agg.KL.__doc__


@pytest.mark.parametrize("robust", ["mean", "kl", "kl_official", "drdpo", "dora", "reweight", "group", "cvar", "chi2"])
def test_mass_equals_the_aggregator_on_the_expanded_batch(robust):
    """mass = counts/n of a batch with duplicated rows: value equals the aggregator on the
    expanded batch, and each row's weight the summed weights of its copies (cvar_level·n whole)."""
    g = torch.Generator().manual_seed(3)
    losses = torch.rand(4, generator=g, dtype=D) * 3
    counts = torch.tensor([1, 3, 2, 4])
    rows = torch.arange(4).repeat_interleave(counts)
    ratio, group = torch.rand(4, generator=g, dtype=D) + 0.5, torch.tensor([0, 1, 0, 1])
    a = agg.AGGREGATORS[robust](
        **{"kl": {"tau": 0.7}, "cvar": {"cvar_level": 0.3}, "chi2": {"chi2_radius": 0.2}}.get(robust, {})
    )
    kw = lambda idx: (
        ({"ratio": ratio[idx]} if a.uses_ratio else {})
        | ({"group": group[idx], "state": {"q": torch.tensor([0.3, 0.7], dtype=D)}} if a.uses_group else {})
    )
    mass = counts.double() / counts.sum()
    value = a.value(losses, mass=mass, **kw(torch.arange(4)))
    p = a.weights(losses, mass=mass, **kw(torch.arange(4)))
    big_value = a.value(losses[rows], **kw(rows))
    big_p = torch.zeros(4, dtype=D).index_add_(0, rows, a.weights(losses[rows], **kw(rows)))
    assert value.item() == pytest.approx(big_value.item(), rel=1e-9)
    assert torch.allclose(p, big_p, atol=1e-9)


def test_group_dro_state_is_explicit_and_plain():
    """Objective-level state: init_state, out.state advanced, update_state=False leaves it,
    and the state is a dict of tensors (saved without pickle)."""
    obj = Objective.from_preset("group-dro", eta=1.0)
    state = obj.init_state(num_groups=2)
    assert set(state) == {"q"} and torch.equal(state["q"], torch.full((2,), 0.5, dtype=torch.float64))
    pc, pr, rc, rr = logp_batch(4)
    group = torch.tensor([0, 1, 0, 1])
    out = obj(pc, pr, rc, rr, group=group, state=state)
    assert torch.equal(state["q"], torch.full((2,), 0.5, dtype=torch.float64))  # not mutated
    assert not torch.equal(out.state["q"], state["q"])
    frozen = obj(pc, pr, rc, rr, group=group, state=out.state, update_state=False)
    assert frozen.state is out.state
    assert Objective.from_preset("dpo").init_state() == {}
    with pytest.raises(ValueError, match="num_groups"):
        obj.init_state()


def test_metric_tensors_are_public():
    out = Objective.from_preset("kldpo")(*logp_batch(4))
    assert set(out.metric_tensors) == set(out.metrics)
    assert all(torch.is_tensor(v) and v.dim() == 0 for v in out.metric_tensors.values())
