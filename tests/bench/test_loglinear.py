"""The exact log-linear world: closed forms against brute force, data, objectives, the runner."""

import json
import math

import numpy as np
import pytest
import torch

from dralign.objectives import Objective
from dralign_bench.loglinear import (
    LoglinearConfig,
    LoglinearOptions,
    Pairs,
    action_logps,
    expected_reward,
    fit,
    kl_dro_optimum,
    kl_to_reference,
    log_policy,
    loglog_slope,
    make_world,
    method_objective,
    objective_loss,
    optimal_value,
    optimum,
    pair_distribution,
    population_value,
    regularised_value,
    rewards,
    run_loglinear,
    sample_pairs,
)

BETA = 0.5


@pytest.fixture(scope="module")
def tiny():
    return make_world(3, states=3, actions=4, dim=3)


@pytest.fixture(scope="module")
def world():
    return make_world(0, states=6, actions=5, dim=4)


def test_closed_form_optimum_matches_brute_force(tiny):
    """Maximise E_π r − β KL(π‖π_ref) directly over each state's simplex (free softmax logits,
    independent of the θ class): the maximiser is π_{θ*} and the maximum is V*."""
    alpha = 0.3
    r = rewards(tiny, alpha)
    log_ref = torch.log_softmax(tiny.features @ tiny.theta_ref, -1)
    logits = torch.zeros_like(r, requires_grad=True)
    opt = torch.optim.LBFGS(
        [logits], max_iter=500, tolerance_grad=1e-12, tolerance_change=1e-15, line_search_fn="strong_wolfe"
    )

    def neg_j():
        opt.zero_grad()
        logp = torch.log_softmax(logits, -1)
        j = (logp.exp() * (r - BETA * (logp - log_ref))).sum(-1).mean()
        (-j).backward()
        return -j

    opt.step(neg_j)
    brute_policy = torch.softmax(logits.detach(), -1)
    star = optimum(tiny, alpha, BETA)
    assert torch.allclose(brute_policy, log_policy(tiny, star).exp(), atol=1e-7)
    assert -float(neg_j().detach()) == pytest.approx(optimal_value(tiny, alpha, BETA), abs=1e-10)
    assert regularised_value(tiny, star, alpha, BETA) == pytest.approx(optimal_value(tiny, alpha, BETA), abs=1e-12)
    # and no θ nearby does better
    g = torch.Generator().manual_seed(0)
    for _ in range(50):
        other = star + 0.3 * torch.randn(star.shape, generator=g, dtype=star.dtype)
        assert regularised_value(tiny, other, alpha, BETA) < optimal_value(tiny, alpha, BETA)


def test_log_probs_normalise_and_fed_features_agree(world):
    theta = torch.randn(4, dtype=torch.float64)
    assert torch.allclose(
        torch.logsumexp(log_policy(world, theta), -1), torch.zeros(6, dtype=torch.float64), atol=1e-12
    )
    pairs = sample_pairs(world, 50, 0.5, seed=1)
    table = action_logps(world, theta, pairs.state, pairs.chosen)
    fed = action_logps(world, theta, pairs.state, pairs.chosen, world.features[pairs.state, pairs.chosen])
    assert torch.allclose(table, fed, atol=1e-12)
    assert kl_to_reference(world, world.theta_ref) == pytest.approx(0.0, abs=1e-12)


def test_expected_reward_is_exact_and_matches_monte_carlo(world):
    theta, alpha = optimum(world, 0.7, BETA), 0.7
    rng = np.random.default_rng(0)
    probs = log_policy(world, theta).exp().numpy()
    r = rewards(world, alpha).numpy()
    s = rng.integers(world.states, size=200_000)
    a = (probs[s].cumsum(1) < rng.random(len(s))[:, None]).sum(1).clip(max=world.actions - 1)
    mc = r[s, a]
    assert expected_reward(world, theta, alpha) == pytest.approx(mc.mean(), abs=4 * mc.std() / math.sqrt(len(mc)))
    # linear in α: the worst case over a grid lies at an end
    values = [expected_reward(world, theta, x) for x in (0.0, 0.5, 1.0)]
    assert values[1] == pytest.approx((values[0] + values[2]) / 2, abs=1e-12)


def test_sampling_is_deterministic_per_seed(world):
    a, b, c = (sample_pairs(world, 300, 0.2, seed=s) for s in ([0, 300], [0, 300], [1, 300]))
    assert all(torch.equal(getattr(a, f), getattr(b, f)) for f in ("state", "chosen", "rejected"))
    assert not torch.equal(a.chosen, c.chosen)
    assert (a.chosen != a.rejected).all()


def test_population_and_label_frequencies_match_bradley_terry(tiny):
    """Sampled (s, chosen, rejected) frequencies match the population masses q, which sum to 1,
    and P(a chosen | pair {a, b}) = σ(r(s,a) − r(s,b))."""
    alpha = 0.4
    support, mass = pair_distribution(tiny, alpha)
    assert float(mass.sum()) == pytest.approx(1.0, abs=1e-12)
    n = 400_000
    pairs = sample_pairs(tiny, n, alpha, seed=7)
    A = tiny.actions

    def key(p):
        return ((p.state * A + p.chosen) * A + p.rejected).numpy()

    counts = np.bincount(key(pairs), minlength=tiny.states * A * A)[key(support)]
    q = mass.numpy()
    assert counts.sum() == n
    assert np.all(np.abs(counts / n - q) <= 5 * np.sqrt(q * (1 - q) / n))
    rew = rewards(tiny, alpha)
    for s, a, b in ((0, 0, 1), (2, 3, 1)):
        wins = counts[key(support) == (s * A + a) * A + b][0]
        losses = counts[key(support) == (s * A + b) * A + a][0]
        p = float(torch.sigmoid(rew[s, a] - rew[s, b]))
        assert wins / (wins + losses) == pytest.approx(p, abs=5 * math.sqrt(p * (1 - p) / (wins + losses)))


def test_dpo_population_optimum_is_the_closed_form(world):
    support, mass = pair_distribution(world, 0.2)
    theta, grad = fit(method_objective("dpo", BETA), world, support, mass)
    assert grad < 1e-7
    assert torch.allclose(theta, optimum(world, 0.2, BETA), atol=1e-6)


@pytest.mark.parametrize("tau", [1.0, 0.3])
def test_kldpo_population_optimum_is_closed_form(world, tau):
    """θ_ref + τ/(1+τ)·φ/β: at τ = 1, DPO at twice β."""
    support, mass = pair_distribution(world, 0.2)
    theta, _ = fit(method_objective("kldpo", BETA, tau=tau), world, support, mass)
    assert torch.allclose(theta, kl_dro_optimum(world, 0.2, BETA, tau), atol=1e-6)
    if tau == 1.0:
        assert torch.allclose(theta, optimum(world, 0.2, 2 * BETA), atol=1e-6)


@pytest.mark.parametrize(
    "robust,kw", [("mean", {}), ("kl", {"tau": 0.7}), ("drdpo", {"drdpo_beta": 0.5}), ("cvar", {"cvar_level": 0.25})]
)
def test_population_value_with_uniform_mass_is_the_objectives_value(robust, kw):
    obj = Objective(robust=robust, beta=0.3, **kw)
    g = torch.Generator().manual_seed(0)
    pc, pr, rc, rr = (torch.randn(8, generator=g, dtype=torch.float64) for _ in range(4))
    losses = obj.losses(obj.margins(pc, pr, rc, rr))
    uniform = torch.full((8,), 1 / 8, dtype=torch.float64)
    assert float(population_value(obj, losses, uniform)) == pytest.approx(float(obj(pc, pr, rc, rr).loss), abs=1e-12)


@pytest.mark.parametrize("form", ["squared", "sqrt_mean"])
def test_wdpo_penalty_matches_hand_formula(tiny, form):
    """For DPO's loss ℓ = softplus(−βm), ∇_z log πθ(a|s; z) = (1 − πθ(a|s))·θ, so
    ‖∇_z ℓ_i‖² = β² σ(−βm_i)² ‖θ‖² [(1 − πθ(c|s))² + (1 − πθ(r|s))²]; S = its mean."""
    rho = 0.3
    pairs = Pairs(torch.tensor([0, 1, 2, 0, 1]), torch.tensor([0, 1, 2, 3, 0]), torch.tensor([1, 2, 3, 0, 3]))
    theta = torch.tensor([0.7, -1.2, 0.4], dtype=torch.float64)
    wdpo = method_objective("wdpo", BETA, rho=rho, penalty_form=form)
    dpo = method_objective("dpo", BETA)
    penalty = float((objective_loss(wdpo, tiny, theta, pairs) - objective_loss(dpo, tiny, theta, pairs)).detach())

    logp, logr = log_policy(tiny, theta), log_policy(tiny, tiny.theta_ref)
    s, c, r = pairs.state, pairs.chosen, pairs.rejected
    m = (logp[s, c] - logr[s, c]) - (logp[s, r] - logr[s, r])
    pi = logp.exp()
    sq = BETA**2 * torch.sigmoid(-BETA * m) ** 2 * theta.dot(theta) * ((1 - pi[s, c]) ** 2 + (1 - pi[s, r]) ** 2)
    expected = rho * (sq.mean() if form == "squared" else sq.mean().sqrt())
    assert penalty == pytest.approx(float(expected), rel=1e-10)


def test_loglog_slope_recovers_a_power_law():
    n = [100, 400, 1600]
    fit_ = loglog_slope(n, [[3 * x**-0.5, 3 * x**-0.5] for x in n])
    assert fit_["slope"] == pytest.approx(-0.5, abs=1e-12)
    assert fit_["intercept"] == pytest.approx(math.log(3), abs=1e-12)


@pytest.mark.parametrize("method", ["aot", "dora", "group-dro", "nope"])
def test_methods_this_world_cannot_train_are_refused(method):
    with pytest.raises(ValueError, match="cannot run in the log-linear world|unknown method"):
        method_objective(method, BETA)


@pytest.mark.parametrize("tau", [1.0, 0.4])
def test_kldpo_is_dpo_at_beta_times_one_plus_tau_over_tau_under_realisability(world, tau):
    """The equivalence KLDPO(β, τ) ≡ DPO(β(1+τ)/τ): both population optima fitted numerically
    agree with each other and with the closed form θ_ref + φ/β′."""
    support, mass = pair_distribution(world, 0.2)
    kl, _ = fit(method_objective("kldpo", BETA, tau=tau), world, support, mass)
    dpo, grad = fit(method_objective("dpo", BETA * (1 + tau) / tau), world, support, mass)
    assert grad < 1e-7
    assert torch.allclose(kl, dpo, atol=1e-6)
    assert torch.allclose(dpo, optimum(world, 0.2, BETA * (1 + tau) / tau), atol=1e-6)


def test_misspecified_world_breaks_the_closed_forms():
    base, bent = (
        make_world(0, states=6, actions=5, dim=4),
        make_world(0, states=6, actions=5, dim=4, misspecification=1.0),
    )
    assert base.realisable and not bent.realisable
    assert torch.equal(base.features, bent.features) and torch.equal(base.phi, bent.phi)
    extra = rewards(bent, 0.3) - rewards(base, 0.3)
    assert torch.allclose(extra, 0.3 * bent.residual[0] + 0.7 * bent.residual[1])
    support, mass = pair_distribution(bent, 0.2)
    theta, grad = fit(method_objective("dpo", BETA), bent, support, mass)
    assert grad < 1e-6 and not torch.allclose(theta, optimum(bent, 0.2, BETA), atol=1e-3)
    with pytest.raises(ValueError, match="realisable"):
        kl_dro_optimum(bent, 0.2, BETA, 1.0)


def test_frontier_worst_at_interpolates_over_r0():
    from dralign_bench.loglinear.run import frontier_worst_at

    front = [{"r0": 0.5, "worst": -0.1}, {"r0": 0.3, "worst": 0.1}, {"r0": 0.7, "worst": -0.3}]
    assert frontier_worst_at(front, 0.4) == pytest.approx(0.0)
    assert frontier_worst_at(front, 0.9) == pytest.approx(-0.3)


@pytest.mark.parametrize(
    "bad,match",
    [
        ({"n_grid": [500]}, "n_grid"),
        ({"alpha0": 1.5}, "alpha0"),
        ({"actions": 1}, "actions"),
        ({"beta": 0.0}, "beta"),
        ({"methods": ["aot"]}, "log-linear world"),
    ],
)
def test_bad_options_are_refused(tmp_path, bad, match):
    with pytest.raises(ValueError, match=match):
        run_loglinear(LoglinearConfig(LoglinearOptions(output_dir=str(tmp_path), **bad)))


def test_run_loglinear_reduced(tmp_path):
    opts = LoglinearOptions(seeds=[0, 1], n_grid=[250, 1000, 4000], output_dir=str(tmp_path))
    run_loglinear(LoglinearConfig(opts))
    saved = json.loads((tmp_path / "results.json").read_text())
    assert (tmp_path / "loglinear.png").stat().st_size > 10_000
    report = (tmp_path / "report.md").read_text()
    assert "| dpo |" in report and "kldpo" in report and "wdpo" in report
    assert set(saved["methods"]) == {"dpo", "kldpo", "wdpo"}
    for rec in saved["methods"].values():
        assert set(rec["slopes"]) == {"to_optimum", "to_own_optimum"}
        assert len(rec["reward"]) == 2 and len(rec["reward"][0]) == len(opts.alphas)
        assert rec["max_grad_norm"] < 1e-5
    assert saved["methods"]["dpo"]["slopes"]["to_own_optimum"]["slope"] < 0
    assert saved["methods"]["dpo"]["bias"]["mean"] < 1e-6
    kl = saved["methods"]["kldpo"]
    assert kl["bias"]["mean"] == pytest.approx(kl["theory_bias"]["mean"], abs=1e-6)
    assert set(saved["comparison"]) == {"kldpo", "wdpo"}
    # realisable: KLDPO is a point of DPO's β-frontier, its frontier gain ≈ 0 at the population optimum
    assert abs(kl["frontier_gain_population"]["mean"]) < 0.01
    assert "β-frontier" in report


def test_labeller_mixture_population_is_a_mixture_of_two_bradley_terry_labellers(tiny):
    """P(c ≻ r) = α σ(r_1(s,c) − r_1(s,r)) + (1 − α) σ(r_2(s,c) − r_2(s,r)), read off the masses of
    a pair's two orientations; sampled labels follow it; and no reward's BT matches it."""
    alpha = 0.3
    support, mass = pair_distribution(tiny, alpha, labels="labeller_mixture")
    assert float(mass.sum()) == pytest.approx(1.0, abs=1e-12)
    A = tiny.actions
    index = {
        (int(s), int(c), int(r)): k for k, (s, c, r) in enumerate(zip(support.state, support.chosen, support.rejected))
    }
    r1, r2 = rewards(tiny, 1.0), rewards(tiny, 0.0)
    for s, a, b in ((0, 0, 1), (2, 3, 1), (1, 2, 0)):
        win, lose = float(mass[index[(s, a, b)]]), float(mass[index[(s, b, a)]])
        want = alpha * torch.sigmoid(r1[s, a] - r1[s, b]) + (1 - alpha) * torch.sigmoid(r2[s, a] - r2[s, b])
        assert win / (win + lose) == pytest.approx(float(want), abs=1e-12)
    pairs = sample_pairs(tiny, 200_000, alpha, seed=3, labels="labeller_mixture")
    key = lambda p: ((p.state * A + p.chosen) * A + p.rejected).numpy()  # noqa: E731
    counts = np.bincount(key(pairs), minlength=tiny.states * A * A)[key(support)]
    q = mass.numpy()
    assert np.all(np.abs(counts / 200_000 - q) <= 5 * np.sqrt(q * (1 - q) / 200_000))
    with pytest.raises(ValueError, match="labels"):
        pair_distribution(tiny, alpha, labels="nonesuch")


def test_run_loglinear_labeller_mixture_reports_the_control_and_regret(tmp_path):
    opts = LoglinearOptions(
        seeds=[0, 1],
        n_grid=[500, 2000],
        methods=["dpo", "kldpo"],
        labels="labeller_mixture",
        alpha0=0.1,
        reward_cosine=-0.8,
        alphas=[0.0, 0.1, 0.5, 1.0],
        output_dir=str(tmp_path),
    )
    saved = run_loglinear(LoglinearConfig(opts))
    ctl = saved["control"]
    refs = [min(r) for r in saved["reference"]["reward"]]
    dpo = [min(r) for r in saved["methods"]["dpo"]["reward"]]
    assert ctl["per_seed"] == pytest.approx([a - b for a, b in zip(refs, dpo)])
    assert ctl["value"] == pytest.approx(np.mean(ctl["per_seed"])) and ctl["passed"] == (ctl["value"] >= 0.03)
    for name in ("dpo", "kldpo"):
        rec = saved["methods"][name]
        assert len(rec["regret"]) == len(opts.alphas) and rec["max_regret"]["mean"] >= max(rec["regret"]) - 1e-12
        assert "theory_bias" not in rec  # KLDPO's closed form needs BT labels
    # DPO trained at α₀ on 2,000 pairs is close to DPO's population optimum at α₀: small regret there
    assert abs(saved["methods"]["dpo"]["regret"][1]) < 0.05
    assert "labeller mixture" in (tmp_path / "report.md").read_text()
