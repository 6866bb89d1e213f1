"""The objective algebra against hand-derived values and independent formulas (float64)."""

import math

import pytest
import torch
import torch.nn.functional as F

from dralign import Objective
from dralign.objectives import aggregators as agg
from dralign.objectives import couplings, links, scores
from dralign.objectives.presets import PRESETS

D = torch.float64


def t(*x):
    return torch.tensor(x, dtype=D)


def logp_batch(n, seed=0, requires_grad=True):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(n, generator=g, dtype=D).mul(2).requires_grad_(requires_grad) for _ in range(4)]


# ---------------------------------------------------------------- scores
def test_scores_hand_values():
    assert scores.ReverseKL()(t(1.5)).item() == 1.5
    assert scores.ForwardKL()(t(0.0)).item() == pytest.approx(-1.0)
    assert scores.ForwardKL()(t(math.log(2))).item() == pytest.approx(-0.5)
    assert scores.JS()(t(0.0)).item() == pytest.approx(0.0, abs=1e-15)
    assert scores.JS()(t(50.0)).item() == pytest.approx(math.log(2))
    # (1 - 4^-0.5)/0.5 = 1
    assert scores.Alpha(0.5)(t(math.log(4))).item() == pytest.approx(1.0)


def test_js_is_log_of_2t_over_1_plus_t():
    u = torch.linspace(-5, 5, 11, dtype=D)
    tt = torch.exp(u)
    assert torch.allclose(scores.JS()(u), torch.log(2 * tt / (1 + tt)))


def test_alpha_limits_reverse_and_forward_kl():
    u = torch.linspace(-3, 3, 13, dtype=D)
    assert torch.allclose(scores.Alpha(1e-6)(u), u, atol=1e-4)
    # alpha -> 1: 1 - e^-u, forward KL up to the constant 1 (cancels in a margin)
    assert torch.allclose(scores.Alpha(1 - 1e-7)(u), 1 + scores.ForwardKL()(u), atol=1e-5)


def test_trl_alpha_coefficient_mapping():
    """TRL >= 0.29 scores alpha_divergence as (exp((c-1)u) - 1)/(c-1), c = f_alpha_divergence_coef."""
    u = torch.linspace(-4, 4, 17, dtype=D)
    for alpha in (0.1, 0.3, 0.5, 0.9):
        c = scores.trl_alpha_coef(alpha)
        trl = (torch.exp((c - 1) * u) - 1) / (c - 1)
        assert torch.allclose(scores.Alpha(alpha)(u), trl, atol=1e-12)


def test_capped_exp_is_exp_below_cap_and_c1_above():
    x = t(-3.0, 0.0, 10.0)
    assert torch.allclose(scores.capped_exp(x), torch.exp(x))
    big = t(scores.EXP_CAP + 5).requires_grad_()
    y = scores.capped_exp(big)
    y.backward()
    assert y.item() == pytest.approx(math.exp(scores.EXP_CAP) * 6)
    assert big.grad.item() == pytest.approx(math.exp(scores.EXP_CAP))


@pytest.mark.parametrize("name", ["reverse_kl", "forward_kl", "js", "alpha"])
def test_score_gradcheck(name):
    fn = scores.SCORES[name](alpha=0.3) if name == "alpha" else scores.SCORES[name]()
    assert torch.autograd.gradcheck(fn, (torch.randn(7, dtype=D, requires_grad=True),))


# ---------------------------------------------------------------- links
def test_links_hand_values():
    m, beta = t(2.0), 0.5
    sp = lambda x: math.log1p(math.exp(x))  # -log sigmoid(-x)
    assert links.Sigmoid(beta)(m).item() == pytest.approx(sp(-1.0))  # 0.3132616875...
    assert links.Sigmoid(beta)(m).item() == pytest.approx(0.31326168751822286)
    assert links.Sigmoid(beta, 0.1)(m).item() == pytest.approx(0.9 * sp(-1.0) + 0.1 * sp(1.0))
    assert links.Robust(beta, 0.1)(m).item() == pytest.approx((0.9 * sp(-1.0) - 0.1 * sp(1.0)) / 0.8)
    assert links.Hinge(beta)(m).item() == pytest.approx(0.0)
    assert links.Hinge(beta)(t(0.5)).item() == pytest.approx(0.75)
    assert links.IPO(beta)(m).item() == pytest.approx((2.0 - 1.0) ** 2)


def test_robust_link_is_unbiased_under_flips():
    """rDPO: E over a flip with prob eps of the robust loss equals the clean DPO loss."""
    m, eps, beta = torch.linspace(-3, 3, 7, dtype=D), 0.2, 0.7
    expected = (1 - eps) * links.Robust(beta, eps)(m) + eps * links.Robust(beta, eps)(-m)
    assert torch.allclose(expected, links.Sigmoid(beta)(m))


@pytest.mark.parametrize("name", ["sigmoid", "robust", "hinge", "ipo"])
def test_link_gradcheck(name):
    m = torch.randn(6, dtype=D).add(3.0).requires_grad_()  # hinge kink at beta*m = 1 is avoided
    eps = 0.1 if name in ("sigmoid", "robust") else 0.0
    assert torch.autograd.gradcheck(
        lambda x: links.LINKS[name](0.1, eps)(x) if eps else links.LINKS[name](0.1)(x), (m,)
    )


# ---------------------------------------------------------------- aggregators: values
def test_aggregator_hand_values():
    l = t(1.0, 2.0, 3.0)
    e = [math.exp(v) for v in (1, 2, 3)]
    assert agg.Mean().value(l).item() == pytest.approx(2.0)
    assert agg.KL(tau=1.0).value(l).item() == pytest.approx(math.log(sum(e) / 3))
    assert torch.allclose(agg.KL(tau=1.0).weights(l), t(*e) / sum(e))
    en = [math.exp(-v / 2) for v in (1, 2, 3)]
    assert agg.DrDPO(drdpo_beta=2.0).value(l).item() == pytest.approx(-2 * math.log(sum(en) / 3))
    h = t(0.5, 1.0, 2.0)
    eh = [math.exp(v) for v in (0.5, 2.0, 6.0)]
    assert agg.DoRA(lam=1.0).value(l, ratio=h).item() == pytest.approx(math.log(sum(eh) / 3))
    assert agg.Reweight().value(l, ratio=h).item() == pytest.approx((0.5 + 2 + 6) / 3)
    assert agg.CVaR(cvar_level=0.5).value(t(1.0, 5.0, 3.0, 2.0)).item() == pytest.approx(4.0)
    assert agg.CVaR(cvar_level=0.3).value(t(1.0, 5.0, 3.0, 2.0)).item() == pytest.approx(4.0)  # ceil(1.2)=2
    w = [min(math.exp(v - 2.0), 10.0) for v in (1, 2, 3)]
    assert agg.KLOfficial(tau=1.0).value(l).item() == pytest.approx(sum(wi * v for wi, v in zip(w, (1, 2, 3))) / 3)
    assert agg.KLOfficial(tau=0.1).weights(l)[2].item() == pytest.approx(10.0 / 3)  # clipped


def _chi2_dual(l, r):
    """Independent formula: sup = inf_eta sqrt(1+2r) * sqrt(mean((l-eta)_+^2)) + eta."""
    etas = torch.linspace(float(l.min()) - 20, float(l.max()), 200001, dtype=D)
    vals = math.sqrt(1 + 2 * r) * torch.sqrt(((l[None, :] - etas[:, None]).clamp(min=0) ** 2).mean(1)) + etas
    return vals.min().item()


@pytest.mark.parametrize("r", [0.05, 0.5, 2.0])
def test_chi2_matches_its_dual(r):
    l = t(0.3, 1.2, 0.7, 2.5, 1.9, 0.1)
    a = agg.Chi2(chi2_radius=r)
    p = a.weights(l)
    assert p.sum().item() == pytest.approx(1.0)
    assert (p >= 0).all()
    assert ((6 * p - 1) ** 2).mean().item() / 2 == pytest.approx(r, rel=1e-6)  # constraint tight
    assert a.value(l).item() == pytest.approx(_chi2_dual(l, r), abs=1e-4)


def test_chi2_small_radius_is_mean_plus_sqrt_2r_var():
    l = t(1.0, 1.1, 0.9, 1.05)
    r = 1e-3
    approx = l.mean() + torch.sqrt(2 * r * l.var(unbiased=False))
    assert agg.Chi2(chi2_radius=r).value(l).item() == pytest.approx(approx.item(), rel=1e-9)


def test_group_dro_q_over_three_steps_by_hand():
    eta = 0.5
    a = agg.GroupDRO(eta=eta)
    state = a.init_state(3)
    steps = [
        (t(1.0, 2.0, 3.0, 4.0), torch.tensor([0, 0, 1, 1])),  # group 2 absent
        (t(2.0, 0.0, 6.0), torch.tensor([2, 1, 2])),  # group 0 absent
        (t(1.0, 1.0, 1.0), torch.tensor([0, 1, 2])),
    ]
    q = [1 / 3, 1 / 3, 1 / 3]
    for losses, group in steps:
        means = {}
        for g in range(3):
            sel = [float(x) for x, gg in zip(losses, group) if int(gg) == g]
            if sel:
                means[g] = sum(sel) / len(sel)
        q = [qi * math.exp(eta * means[g]) if g in means else qi for g, qi in enumerate(q)]
        q = [qi / sum(q) for qi in q]
        before = state
        state = a.update(losses, group=group, state=state)
        assert state["q"].tolist() == pytest.approx(q, rel=1e-12)
        assert before is not state and before["q"] is not state["q"]  # nothing mutated
        mass = sum(q[g] for g in means)
        assert a.value(losses, group=group, state=state).item() == pytest.approx(
            sum(q[g] * means[g] for g in means) / mass
        )


def test_cvar_level_one_is_mean():
    l = torch.rand(9, dtype=D)
    assert agg.CVaR(cvar_level=1.0).value(l).item() == pytest.approx(l.mean().item())


# ---------------------------------------------------------------- aggregators: gradients
def _independent_objective(robust, l, ratio=None):
    """Each aggregator's objective written directly, differentiable in l (weights NOT detached
    where the objective itself depends on them)."""
    n = l.numel()
    if robust == "mean":
        return l.mean()
    if robust == "kl":
        return 0.7 * (torch.logsumexp(l / 0.7, 0) - math.log(n))
    if robust == "drdpo":
        return -1.3 * (torch.logsumexp(-l / 1.3, 0) - math.log(n))
    if robust == "dora":
        return 0.8 * (torch.logsumexp(ratio * l / 0.8, 0) - math.log(n))
    if robust == "reweight":
        return (ratio * l).mean()
    if robust == "cvar":
        return torch.topk(l, 3).values.mean()
    if robust == "kl_official":  # the released code holds w fixed
        w = torch.exp((l - l.mean()) / 0.7).clamp(max=10).detach()
        return (w * l).mean()
    if robust == "group":  # q fixed within a step
        return None
    if robust == "chi2":  # Danskin: the gradient is p* at the maximiser
        return None
    raise AssertionError(robust)


PARAMS = dict(tau=0.7, drdpo_beta=1.3, lam=0.8, cvar_level=0.3, eta=0.1, chi2_radius=0.4)


@pytest.mark.parametrize("robust", list(agg.AGGREGATORS))
def test_gradient_is_sum_of_weights_times_loss_gradients(robust):
    pc, pr, rc, rr = logp_batch(8, seed=1)
    ratio = torch.rand(8, dtype=D) + 0.5
    group = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    obj = Objective(
        robust=robust, beta=0.5, **{k: v for k, v in PARAMS.items() if k in Objective(robust=robust).parameters()}
    )
    kw = {}
    if obj.uses_ratio:
        kw["ratio"] = ratio
    if obj.uses_group:
        kw["group"] = group
    out = obj(pc, pr, rc, rr, **kw)
    g_loss = torch.autograd.grad(out.loss, (pc, pr))
    # per-example losses recomputed with grad: Σ p_i ∇ℓ_i
    l = obj.losses(obj.margins(pc, pr, rc, rr))
    g_sum = torch.autograd.grad((out.weights * l).sum(), (pc, pr), retain_graph=True)
    for a, b in zip(g_loss, g_sum):
        assert torch.allclose(a, b, atol=1e-12)
    # ... and Σ p_i ∇ℓ_i is the true gradient of the objective's own formula
    direct = _independent_objective(robust, l, ratio)
    if direct is not None:
        assert out.loss.item() == pytest.approx(direct.item(), rel=1e-10)
        g_direct = torch.autograd.grad(direct, (pc, pr))
        for a, b in zip(g_loss, g_direct):
            assert torch.allclose(a, b, atol=1e-10)


@pytest.mark.parametrize("robust", ["mean", "kl", "drdpo", "dora", "reweight", "chi2", "cvar"])
def test_objective_gradcheck(robust):
    """Analytic Σ p∇ℓ against finite differences of the objective's value."""
    pc, pr, rc, rr = logp_batch(6, seed=2)
    ratio = torch.rand(6, dtype=D) + 0.5
    obj = Objective(
        robust=robust, beta=0.5, **{k: v for k, v in PARAMS.items() if k in Objective(robust=robust).parameters()}
    )
    kw = {"ratio": ratio} if obj.uses_ratio else {}
    assert torch.autograd.gradcheck(lambda a, b: obj(a, b, rc, rr, **kw).loss, (pc, pr))


@pytest.mark.parametrize(
    "divergence,coupling,link",
    [
        ("reverse_kl", "paired", "sigmoid"),
        ("forward_kl", "paired", "robust"),
        ("js", "paired", "ipo"),
        ("alpha", "paired", "sigmoid"),
        ("reverse_kl", "aot", "sigmoid"),
        ("js", "aot_unpaired", "sigmoid"),
    ],
)
def test_composed_gradcheck(divergence, coupling, link):
    pc, pr, rc, rr = logp_batch(5, seed=3)
    eps = 0.1 if link != "ipo" else 0.0
    obj = Objective(divergence, coupling, link, "kl", beta=0.3, **({"label_smoothing": eps} if eps else {}))
    assert torch.autograd.gradcheck(lambda a, b: obj(a, b, rc, rr).loss, (pc, pr))


# ---------------------------------------------------------------- limits and equalities
def test_limits_equal_dpo():
    pc, pr, rc, rr = logp_batch(10, seed=4)
    dpo = Objective.from_preset("dpo")(pc, pr, rc, rr)
    g_dpo = torch.autograd.grad(dpo.loss, pc)[0]
    for name, kw in (("kldpo", {"tau": 1e7}), ("drdpo", {"drdpo_beta": 1e7})):
        out = Objective.from_preset(name, **kw)(pc, pr, rc, rr)
        assert out.loss.item() == pytest.approx(dpo.loss.item(), rel=1e-6)
        assert torch.allclose(torch.autograd.grad(out.loss, pc)[0], g_dpo, rtol=1e-5, atol=1e-9)


def test_dora_with_unit_ratios_is_dro():
    pc, pr, rc, rr = logp_batch(10, seed=5)
    dora = Objective.from_preset("dora", lam=0.6)(pc, pr, rc, rr, ratio=torch.ones(10, dtype=D))
    dro = Objective.from_preset("dro", tau=0.6)(pc, pr, rc, rr)
    assert dora.loss.item() == pytest.approx(dro.loss.item(), rel=1e-12)
    assert torch.allclose(dora.weights, dro.weights)


def test_reweight_with_unit_ratios_is_dpo():
    pc, pr, rc, rr = logp_batch(7, seed=6)
    a = Objective.from_preset("dora-reweight")(pc, pr, rc, rr, ratio=torch.ones(7, dtype=D))
    assert a.loss.item() == pytest.approx(Objective.from_preset("dpo")(pc, pr, rc, rr).loss.item())


def test_data_weights_scale_losses():
    pc, pr, rc, rr = logp_batch(4, seed=7)
    w = t(0.0, 1.0, 2.0, 1.0)
    out = Objective.from_preset("dpo")(pc, pr, rc, rr, weight=w)
    assert out.loss.item() == pytest.approx((w * out.losses).mean().item())
    assert torch.allclose(out.weights, w / 4)


# ---------------------------------------------------------------- AOT
def test_aot_paired_matches_definition_and_is_permutation_invariant():
    pc, pr, rc, rr = logp_batch(9, seed=8)
    obj = Objective.from_preset("aot", beta=0.2, label_smoothing=0.05)
    out = obj(pc, pr, rc, rr)
    a = torch.sort(pc - pr).values
    b = torch.sort(rc - rr).values
    delta = 0.2 * (a - b)
    expected = (0.95 * -F.logsigmoid(delta) + 0.05 * -F.logsigmoid(-delta)).mean()
    assert out.loss.item() == pytest.approx(expected.item(), rel=1e-12)
    perm = torch.randperm(9, generator=torch.Generator().manual_seed(0))
    assert obj(pc[perm], pr[perm], rc[perm], rr[perm]).loss.item() == pytest.approx(out.loss.item(), rel=1e-12)


def test_aot_unpaired_equal_counts_is_plain_sorting_and_permutation_invariant():
    pc, pr, rc, rr = logp_batch(8, seed=9)
    obj = Objective("js", "aot_unpaired", beta=0.4)
    m = obj.margins(pc, pr, rc, rr)
    s = scores.JS()
    expected = torch.sort(s(pc - rc)).values - torch.sort(s(pr - rr)).values
    assert torch.allclose(m, expected)
    p1, p2 = torch.randperm(8), torch.randperm(8)  # chosen and rejected permuted independently
    assert torch.allclose(obj.margins(pc[p1], pr[p2], rc[p1], rr[p2]), m)


def test_aot_unpaired_unequal_counts_is_the_exact_monotone_transport():
    """Hand-derived: chosen scores s+ = (0, 2), rejected s- = (-1, 0.5, 1) (reverse KL, ref 0).
    CDF breakpoints: chosen {1/2, 1}, rejected {1/3, 2/3, 1}; merged (0,1/3], (1/3,1/2],
    (1/2,2/3], (2/3,1] pair (s+_0,s-_0), (s+_0,s-_1), (s+_1,s-_1), (s+_1,s-_2) with masses
    1/3, 1/6, 1/6, 1/3: margins 1, -0.5, 1.5, 1. The midpoint rule (K = 3 levels 1/6, 1/2, 5/6)
    would pair (0,0), (1,1), (1,2): margins 1, 1.5, 1 at 1/3 each -- another loss."""
    pc, pr = t(2.0, 0.0), t(0.5, -1.0, 1.0)
    rc, rr = torch.zeros(2, dtype=D), torch.zeros(3, dtype=D)
    obj = Objective(coupling="aot_unpaired", beta=1.0)
    out = obj(pc, pr, rc, rr)
    assert out.margins.tolist() == [1.0, -0.5, 1.5, 1.0]
    mass = [1 / 3, 1 / 6, 1 / 6, 1 / 3]
    assert out.weights.tolist() == pytest.approx(mass, abs=1e-15)
    sp = lambda x: math.log1p(math.exp(-x))  # -log sigmoid
    expected = sum(w * sp(m) for w, m in zip(mass, (1.0, -0.5, 1.5, 1.0)))
    assert out.loss.item() == pytest.approx(expected, rel=1e-14)
    midpoint = (sp(1.0) + sp(1.5) + sp(1.0)) / 3
    assert abs(out.loss.item() - midpoint) > 0.05
    # independent check: replicate to 6 vs 6 atoms (lcm), where plain sorting is exact
    big = obj(pc.repeat_interleave(3), pr.repeat_interleave(2), torch.zeros(6, dtype=D), torch.zeros(6, dtype=D))
    assert big.loss.item() == pytest.approx(out.loss.item(), rel=1e-14)
    # gradients too (the transport is piecewise fixed)
    g = torch.autograd.grad(obj(pc.requires_grad_(), pr, rc, rr).loss, pc)[0]
    g_big = torch.autograd.grad(
        obj(pc.repeat_interleave(3), pr.repeat_interleave(2), torch.zeros(6, dtype=D), torch.zeros(6, dtype=D)).loss, pc
    )[0]
    assert torch.allclose(g, g_big, atol=1e-14)


@pytest.mark.parametrize("n_c,n_r", [(3, 6), (4, 6), (5, 3), (1, 4), (7, 7)])
def test_monotone_transport_is_a_coupling(n_c, n_r):
    i, j, mass = couplings.monotone_transport(n_c, n_r)
    assert mass.sum().item() == pytest.approx(1.0) and (mass > 0).all()
    assert torch.bincount(i, weights=mass, minlength=n_c).tolist() == pytest.approx([1 / n_c] * n_c)
    assert torch.bincount(j, weights=mass, minlength=n_r).tolist() == pytest.approx([1 / n_r] * n_r)
    assert (i.diff() >= 0).all() and (j.diff() >= 0).all()  # monotone
    if n_c == n_r:
        assert i.tolist() == j.tolist() == list(range(n_c))


# ---------------------------------------------------------------- numerics
@pytest.mark.parametrize("preset", sorted(PRESETS))
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_extreme_margins_stay_finite(preset, dtype):
    u = torch.tensor([-1e4, -100.0, -1.0, 0.0, 1.0, 100.0, 1e4])
    pc = u.clone().to(dtype).requires_grad_()
    pr = (-u).clone().to(dtype).requires_grad_()
    ref = torch.zeros(7, dtype=dtype)
    obj = Objective.from_preset(preset, **({"alpha": 0.5} if preset == "fdpo-alpha" else {}))
    kw = {}
    if obj.uses_ratio:
        kw["ratio"] = torch.full((7,), 1.5)
    if obj.uses_group:
        kw["group"] = torch.tensor([0, 1, 0, 1, 0, 1, 0])
    out = obj(pc, pr, ref, ref, **kw)
    assert out.loss.dtype == torch.float32
    out.loss.backward()
    assert torch.isfinite(out.loss) and torch.isfinite(out.losses).all()
    assert torch.isfinite(pc.grad.float()).all() and torch.isfinite(pr.grad.float()).all()
    assert all(math.isfinite(v) for v in out.metrics.values())


# ---------------------------------------------------------------- global batch linearisation
@pytest.mark.parametrize("preset", ["kldpo", "aot", "aot-unpaired", "cvar", "dora", "group-dro", "drdpo"])
def test_micro_batch_coefficients_reproduce_full_batch_gradient(preset):
    """log-probs = X θ: the full-batch gradient equals the sum over 4 micro-batches of
    Σ c·log π with coefficients computed once over the full batch."""
    g = torch.Generator().manual_seed(11)
    xc, xr = torch.randn(8, 5, generator=g, dtype=D), torch.randn(8, 5, generator=g, dtype=D)
    theta = torch.randn(5, generator=g, dtype=D, requires_grad=True)
    rc, rr = torch.randn(8, generator=g, dtype=D), torch.randn(8, generator=g, dtype=D)
    kw = {"ratio": torch.rand(8, generator=g, dtype=D) + 0.5} if preset == "dora" else {}
    if preset == "group-dro":
        kw["group"] = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    full = Objective.from_preset(preset)(xc @ theta, xr @ theta, rc, rr, **kw)
    g_full = torch.autograd.grad(full.loss, theta)[0]
    obj = Objective.from_preset(preset)
    with torch.no_grad():
        pc, pr = xc @ theta, xr @ theta
    out, cc, cr = obj.coefficients(pc, pr, rc, rr, **kw)
    assert out.loss.item() == pytest.approx(full.loss.item(), rel=1e-12)
    g_micro = torch.zeros(5, dtype=D)
    for idx in torch.arange(8).split(2):
        surrogate = (cc[idx] * (xc[idx] @ theta)).sum() + (cr[idx] * (xr[idx] @ theta)).sum()
        g_micro += torch.autograd.grad(surrogate, theta)[0]
    assert torch.allclose(g_micro, g_full, atol=1e-12)
    # the local (per micro-batch) method is genuinely different for these objectives
    local = sum(
        torch.autograd.grad(
            Objective.from_preset(preset)(
                xc[i] @ theta, xr[i] @ theta, rc[i], rr[i], **{k: v[i] for k, v in kw.items()}
            ).loss
            / 4,
            theta,
        )[0]
        for i in torch.arange(8).split(2)
    )
    assert not torch.allclose(local, g_full, atol=1e-6)
