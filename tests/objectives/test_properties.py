"""Property-based tests (hypothesis) of the objective algebra, issue 11 ("Tests"):

1. every preset's loss and gradient are finite for log-probs anywhere in [-1e4, 1e4], float32
   and bfloat16, with the metadata the preset needs;
2. weights are >= 0 and, where the aggregator is a distribution, sum to 1;
3. permuting the batch permutes losses and weights (sorting couplings: the multiset of
   losses is invariant);
4. the exact global batch: coefficients computed once on the full batch, backpropagated per
   random micro-batch, give the full-batch gradient;
5. explicit state is never mutated, and the same state gives the same output.
"""

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from dralign import Objective
from dralign.objectives import aggregators as agg
from dralign.objectives.params import params_of
from dralign.objectives.presets import PRESETS

D = torch.float64
FAST = settings(max_examples=40, deadline=None)
LOGP = st.floats(-1e4, 1e4, width=32, allow_nan=False, allow_infinity=False)
PRESET_NAMES = sorted(PRESETS)  # wdpo is included: its objective part (the penalty needs a model)


def floats(n, elements=LOGP):
    return st.lists(elements, min_size=n, max_size=n)


@st.composite
def batches(draw, obj: Objective, *, max_n=8, elements=LOGP, data_weights=True):
    """(pc, pr, rc, rr, kwargs) as float64 tensors, with the metadata `obj` needs: unequal
    chosen/rejected set sizes for aot_unpaired, group ids (and sometimes a state) for group DRO,
    density ratios for dora/reweight, sometimes data weights where the coupling allows them."""
    n = draw(st.integers(1, max_n))
    n_r = draw(st.integers(1, max_n)) if obj.unpaired else n
    pc, rc = (torch.tensor(draw(floats(n, elements)), dtype=D) for _ in range(2))
    pr, rr = (torch.tensor(draw(floats(n_r, elements)), dtype=D) for _ in range(2))
    kw = {}
    if obj.uses_group:
        num_groups = draw(st.integers(1, 3))
        kw["group"] = torch.tensor(draw(st.lists(st.integers(0, num_groups - 1), min_size=n, max_size=n)))
        if draw(st.booleans()):
            kw["state"] = obj.init_state(num_groups)
    if obj.uses_ratio:
        kw["ratio"] = torch.tensor(draw(floats(n, st.floats(0, 100, width=32))), dtype=D)
    if data_weights and not obj.components.coupling.sorts and draw(st.booleans()):
        kw["weight"] = torch.tensor(draw(floats(n, st.floats(0, 10, width=32))), dtype=D)
    return pc, pr, rc, rr, kw


def index_kwargs(kw, idx):
    """Per-example metadata restricted to `idx` (the state is not per example)."""
    return {k: (v if k == "state" else v[idx]) for k, v in kw.items()}


# ---------------------------------------------------------------- 1. finite loss and gradient
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("preset", PRESET_NAMES)
@FAST
@given(data=st.data())
def test_every_preset_is_finite_for_extreme_log_probs(preset, dtype, data):
    obj = Objective.from_preset(preset)
    pc, pr, rc, rr, kw = data.draw(batches(obj))
    pc, pr = (t.to(dtype).requires_grad_() for t in (pc, pr))
    rc, rr = rc.to(dtype), rr.to(dtype)
    out = obj(pc, pr, rc, rr, **kw)
    out.loss.backward()
    assert out.loss.dtype == torch.float32
    assert torch.isfinite(out.loss) and torch.isfinite(out.losses).all()
    assert torch.isfinite(out.weights).all() and torch.isfinite(out.margins).all()
    assert torch.isfinite(pc.grad.float()).all() and torch.isfinite(pr.grad.float()).all()
    assert all(math.isfinite(v) for v in out.metrics.values())
    assert all(torch.isfinite(q).all() for q in out.state.values())


# ---------------------------------------------------------------- 2. weights
@pytest.mark.parametrize("preset", PRESET_NAMES)
@FAST
@given(data=st.data())
def test_preset_weights_are_non_negative_and_a_distribution_where_promised(preset, data):
    obj = Objective.from_preset(preset)
    pc, pr, rc, rr, kw = data.draw(batches(obj, data_weights=False))
    out = obj(*(t.float() for t in (pc, pr, rc, rr)), **kw)
    assert out.weights.dtype == torch.float32 and out.weights.shape == out.losses.shape
    assert (out.weights >= 0).all()
    if obj.aggregator.distribution:
        assert out.weights.sum().item() == pytest.approx(1.0, abs=1e-5)


AGG_PARAMS = st.fixed_dictionaries(
    {
        "tau": st.floats(0.05, 10),
        "drdpo_beta": st.floats(0.05, 10),
        "lam": st.floats(0.05, 10),
        "eta": st.floats(0, 1),
        "cvar_level": st.floats(0.01, 1),
        "chi2_radius": st.floats(0, 5),
    }
)


@pytest.mark.parametrize("robust", list(agg.AGGREGATORS))
@FAST
@given(data=st.data(), params=AGG_PARAMS)
def test_aggregator_weights_with_a_mass(robust, data, params):
    """Every aggregator directly, with random parameters, losses in [0, 1e4] (float32) and an
    optional probability mass: p >= 0, Σ p = 1 when `distribution`, value = Σ p ℓ where the
    value is the weighted mean (all but the log-sum-exp ones)."""
    cls = agg.AGGREGATORS[robust]
    a = cls(**{k: v for k, v in params.items() if k in {p.name for p in params_of(cls)}})
    n = data.draw(st.integers(1, 8))
    losses = torch.tensor(data.draw(floats(n, st.floats(0, 1e4, width=32))))
    kw = {}
    if data.draw(st.booleans()):
        m = torch.tensor(data.draw(floats(n, st.floats(0, 1))), dtype=D) + 1e-3
        kw["mass"] = m / m.sum()
    if a.uses_ratio:
        kw["ratio"] = torch.tensor(data.draw(floats(n, st.floats(0, 100, width=32))))
    if a.uses_group:
        kw["group"] = torch.tensor(data.draw(st.lists(st.integers(0, 2), min_size=n, max_size=n)))
        kw["state"] = a.init_state(3)
    p = a.weights(losses, **kw)
    value = a.value(losses, **kw)
    assert p.shape == losses.shape and torch.isfinite(p).all() and torch.isfinite(value)
    assert (p >= 0).all()
    if a.distribution:
        assert p.sum().item() == pytest.approx(1.0, abs=1e-5)
    if robust in ("mean", "kl_official", "reweight", "group", "cvar", "chi2"):
        assert value.item() == pytest.approx((p.double() * losses.double()).sum().item(), rel=1e-5, abs=1e-3)


# ---------------------------------------------------------------- 3. permutations
MODERATE = st.floats(-1e4, 1e4, allow_nan=False, allow_infinity=False)


@pytest.mark.parametrize("preset", PRESET_NAMES)
@FAST
@given(data=st.data())
def test_permuting_the_batch_permutes_losses_and_weights(preset, data):
    """float64, so that only the structure is tested (sums in another order differ by ulps)."""
    obj = Objective.from_preset(preset)
    pc, pr, rc, rr, kw = data.draw(batches(obj, elements=MODERATE))
    out = obj(pc, pr, rc, rr, **kw)
    perm = torch.tensor(data.draw(st.permutations(range(pc.numel()))))
    if obj.unpaired:  # the two sets are permuted independently
        perm_r = torch.tensor(data.draw(st.permutations(range(pr.numel()))))
        moved = obj(pc[perm], pr[perm_r], rc[perm], rr[perm_r], **kw)
    else:
        moved = obj(pc[perm], pr[perm], rc[perm], rr[perm], **index_kwargs(kw, perm))
    close = dict(rtol=1e-9, atol=1e-12)
    assert moved.loss.item() == pytest.approx(out.loss.item(), rel=1e-9, abs=1e-12)
    if obj.components.coupling.sorts:  # quantiles: the multiset of losses (already sorted)
        assert torch.allclose(torch.sort(moved.losses).values, torch.sort(out.losses).values, **close)
        assert torch.allclose(moved.weights, out.weights, **close)
    else:
        assert torch.allclose(moved.losses, out.losses[perm], **close)
        assert torch.allclose(moved.weights, out.weights[perm], **close)
        assert torch.allclose(moved.margins, out.margins[perm], **close)
    for k in out.state:  # group DRO's q: groups are carried along with their examples
        assert torch.allclose(moved.state[k], out.state[k], **close)


# ---------------------------------------------------------------- 4. exact global batch
GLOBAL = ["kldpo", "cvar", "drdpo", "group-dro", "aot", "dora"]
SMALL = st.floats(-3, 3, allow_nan=False)


@pytest.mark.parametrize("preset", GLOBAL)
@FAST
@given(data=st.data())
def test_micro_batches_with_full_batch_coefficients_give_the_full_gradient(preset, data):
    """log π = -softplus(X θ)·5 (a non-linear model shared by all micro-batches): Σ over a random
    split of Σ c·log π, c from `coefficients` on the full batch, has the full loss's gradient."""
    obj = Objective.from_preset(preset)
    n = data.draw(st.integers(2, 10))
    dim = 3
    xc, xr = (torch.tensor(data.draw(floats(n * dim, SMALL)), dtype=D).view(n, dim) for _ in range(2))
    theta = torch.tensor(data.draw(floats(dim, SMALL)), dtype=D, requires_grad=True)
    rc, rr = (torch.tensor(data.draw(floats(n, st.floats(-20, 0))), dtype=D) for _ in range(2))
    kw = {}
    if obj.uses_group:
        kw["group"] = torch.tensor(data.draw(st.lists(st.integers(0, 2), min_size=n, max_size=n)))
        kw["state"] = obj.init_state(3)
    if obj.uses_ratio:
        kw["ratio"] = torch.tensor(data.draw(floats(n, st.floats(0, 5))), dtype=D)

    def logp(x):
        return -5 * F.softplus(x @ theta)

    full = obj(logp(xc), logp(xr), rc, rr, **kw)
    g_full = torch.autograd.grad(full.loss, theta)[0]
    with torch.no_grad():
        pc, pr = logp(xc), logp(xr)
    out, cc, cr = obj.coefficients(pc, pr, rc, rr, **kw)
    assert out.loss.item() == pytest.approx(full.loss.item(), rel=1e-12, abs=1e-12)
    cuts = sorted(data.draw(st.sets(st.integers(1, n - 1), max_size=n - 1)))
    sizes = [b - a for a, b in zip([0] + cuts, cuts + [n])]
    order = torch.tensor(data.draw(st.permutations(range(n))))  # micro-batches need not be contiguous
    g_micro = torch.zeros_like(g_full)
    for idx in order.split(sizes):
        share = (cc[idx] * logp(xc[idx])).sum() + (cr[idx] * logp(xr[idx])).sum()
        g_micro += torch.autograd.grad(share, theta)[0]
    assert torch.allclose(g_micro, g_full, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("preset", PRESET_NAMES)
@FAST
@given(data=st.data())
def test_coefficients_are_the_gradient_of_the_loss(preset, data):
    """`coefficients` = autograd of `obj(...).loss` w.r.t. the policy log-probs (float64); for
    the paired logistic presets also the hand formula c⁺ = -c⁻ = -β p σ(-β m)."""
    obj = Objective.from_preset(preset)
    pc, pr, rc, rr, kw = data.draw(batches(obj, elements=st.floats(-50, 50)))
    pc, pr = pc.requires_grad_(), pr.requires_grad_()
    out = obj(pc, pr, rc, rr, **kw)
    g_c, g_r = torch.autograd.grad(out.loss, (pc, pr), allow_unused=True)
    lin, cc, cr = obj.coefficients(pc, pr, rc, rr, **kw)
    assert lin.loss.item() == pytest.approx(out.loss.item(), rel=1e-12, abs=1e-12)
    assert torch.allclose(cc, torch.zeros_like(pc) if g_c is None else g_c, rtol=1e-12, atol=1e-15)
    assert torch.allclose(cr, torch.zeros_like(pr) if g_r is None else g_r, rtol=1e-12, atol=1e-15)
    link = obj.components.link
    if (obj.coupling, obj.divergence, link.name) == ("paired", "reverse_kl", "sigmoid") and link.label_smoothing == 0:
        hand = -obj.beta * out.weights * torch.sigmoid(-obj.beta * out.margins)
        assert torch.allclose(cc, hand, rtol=1e-9, atol=1e-15)
        assert torch.allclose(cr, -hand, rtol=1e-9, atol=1e-15)


# ---------------------------------------------------------------- 5. explicit state
@FAST
@given(data=st.data(), eta=st.floats(0, 2))
def test_state_is_never_mutated_and_the_same_state_gives_the_same_output(data, eta):
    obj = Objective.from_preset("group-dro", eta=eta)
    pc, pr, rc, rr, kw = data.draw(batches(obj, elements=st.floats(-1e3, 1e3)))
    q = torch.tensor(data.draw(floats(3, st.floats(0.01, 1))), dtype=D)
    state = {"q": q / q.sum()}
    kw.pop("state", None)
    before = {k: v.clone() for k, v in state.items()}
    first = obj(pc, pr, rc, rr, **kw, state=state)
    second = obj(pc, pr, rc, rr, **kw, state=state)
    lin = obj.coefficients(pc, pr, rc, rr, **kw, state=state)[0]
    frozen = obj(pc, pr, rc, rr, **kw, state=state, update_state=False)
    assert state.keys() == before.keys()
    assert all(torch.equal(state[k], before[k]) for k in state)
    assert first.state is not state and first.state["q"] is not state["q"]
    assert frozen.state is state
    for other in (second, lin):
        assert torch.equal(other.loss.detach(), first.loss.detach())
        assert torch.equal(other.weights, first.weights)
        assert torch.equal(other.state["q"], first.state["q"])
    assert first.state["q"].sum().item() == pytest.approx(1.0, abs=1e-12)
    assert (first.state["q"] >= 0).all()


@pytest.mark.parametrize("preset", [p for p in PRESET_NAMES if p != "group-dro"])
def test_stateless_presets_have_empty_state(preset):
    obj = Objective.from_preset(preset)
    assert obj.init_state(3) == {} and not obj.aggregator.stateful


# ---------------------------------------------------------------- regressions found by the properties
def test_cvar_tied_losses_share_their_weight():
    """At step 0 (policy = reference) every loss is ln 2: CVaR used to put all weight on the
    first ⌈a·n⌉ positions; tied losses now share it (in proportion to their mass)."""
    zeros = torch.zeros(4, dtype=D)
    out = Objective.from_preset("cvar", cvar_level=0.25)(zeros, zeros, zeros, zeros)
    assert out.weights.tolist() == pytest.approx([0.25] * 4)
    assert out.loss.item() == pytest.approx(math.log(2))
    cvar = agg.CVaR(cvar_level=0.5)  # tail mass 0.5 inside a tie of mass 0.75: shared 2:1
    mass = torch.tensor([0.5, 0.25, 0.25], dtype=D)
    p = cvar.weights(torch.tensor([1.0, 1.0, 0.0], dtype=D), mass=mass)
    assert p.tolist() == pytest.approx([2 / 3, 1 / 3, 0.0])
    assert cvar.value(torch.tensor([1.0, 1.0, 0.0], dtype=D), mass=mass).item() == pytest.approx(1.0)


def test_chi2_tiny_radius_is_the_mean_not_nan():
    """η = mean − sqrt(var/2r) overflowed to −inf for a tiny radius, giving NaN weights; the
    closed form p = m(1 + (ℓ − mean)·sqrt(2r/var)) is written without η."""
    losses = torch.tensor([0.0, 179.0])
    for r in (2.2e-305, 1e-20):
        p = agg.Chi2(chi2_radius=r).weights(losses)
        assert p.tolist() == pytest.approx([0.5, 0.5])
    # unchanged in the ordinary regime: p_i = (1 + (ℓ_i − mean)·sqrt(2r/var))/n by hand
    p = agg.Chi2(chi2_radius=0.01).weights(torch.tensor([1.0, 2.0, 3.0], dtype=D))
    s = math.sqrt(2 * 0.01 / (2 / 3))
    assert p.tolist() == pytest.approx([(1 - s) / 3, 1 / 3, (1 + s) / 3], rel=1e-12)


def test_group_dro_step_does_not_overflow():
    """q·exp(η L_g) overflowed to inf (then NaN) once η·L_g > 709; the update is done in log
    space, equal to the multiplicative formula where that one is finite."""
    g = agg.GroupDRO(eta=2.0)
    group = torch.tensor([0, 1])
    q = g.update(torch.tensor([400.0, 0.0], dtype=D), group=group, state=g.init_state(2))["q"]
    assert torch.isfinite(q).all() and q.tolist() == pytest.approx([1.0, 0.0])
    g = agg.GroupDRO(eta=0.5)
    q = g.update(torch.tensor([1.0, 2.0], dtype=D), group=group, state={"q": torch.tensor([0.3, 0.7], dtype=D)})["q"]
    hand = torch.tensor([0.3 * math.exp(0.5), 0.7 * math.exp(1.0)], dtype=D)
    assert torch.allclose(q, hand / hand.sum(), rtol=1e-14)
