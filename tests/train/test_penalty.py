"""Tests of WDPO's gradient penalty (dralign.train.penalty): finite difference against the exact
double backward, the penalty value against per-example autograd, ρ = 0 against plain DPO,
composition with robust aggregation and f-DPO scores, micro-batching, scaling, LoRA."""

from __future__ import annotations

import pytest
import torch

from dralign.modeling import apply_lora
from dralign.modeling.logps import pair_logps
from dralign.modeling.tiny import tiny_model
from dralign.objectives.objective import Objective
from dralign.train.penalty import check_penalty_mode, grad_sq, penalized_backward
from helpers import VOCAB, make_batch

RHO = 5.0  # large enough that the penalty gradient dominates (~100× the DPO gradient)


B = 3
BATCH = make_batch([3, 5, 4, 3, 4, 6], [4, 3, 5, 6, 2, 3])


def refs(dtype, seed=1):
    g = torch.Generator().manual_seed(seed)
    return (-torch.rand(B, generator=g, dtype=dtype) * 20 - 20, -torch.rand(B, generator=g, dtype=dtype) * 20 - 20)


_MODELS = {}


def model_of(arch="llama", dtype=torch.float64, attn="eager"):
    key = (arch, dtype, attn)
    if key not in _MODELS:
        m = tiny_model(arch, vocab_size=VOCAB, seed=0, attn_implementation=attn, dtype=dtype)
        m.eval()
        _MODELS[key] = m
    return _MODELS[key]


def flat_grad(model):
    return torch.cat(
        [
            (p.grad if p.grad is not None else torch.zeros_like(p)).flatten()
            for p in model.parameters()
            if p.requires_grad
        ]
    ).double()


def run(model, objective, batch=BATCH, ref=None, **kw):
    model.zero_grad(set_to_none=True)
    rc, rr = ref if ref is not None else refs(next(model.parameters()).dtype)
    result = penalized_backward(model, batch, rc, rr, objective, **kw)
    return result, flat_grad(model)


def penalty_grads(model, rho=RHO, **objective_kwargs):
    """(exact, finite-difference) gradients of the penalty alone (total minus ρ = 0)."""
    _, base = run(model, Objective(penalty="wasserstein", rho=0.0, **objective_kwargs))
    _, exact = run(model, Objective(penalty="wasserstein", rho=rho, penalty_mode="exact", **objective_kwargs))
    _, fd = run(model, Objective(penalty="wasserstein", rho=rho, **objective_kwargs))
    return exact - base, fd - base, base


def assert_agree(exact, fd, cos_min=0.999, rel_max=0.02):
    cos = torch.nn.functional.cosine_similarity(exact, fd, dim=0).item()
    rel = ((exact - fd).norm() / exact.norm()).item()
    assert cos >= cos_min and rel <= rel_max, (cos, rel)
    return cos, rel


def test_finite_difference_matches_exact_llama_float64():
    exact, fd, base = penalty_grads(model_of())
    assert exact.norm() > 10 * base.norm()  # the penalty part is what is compared
    cos, rel = assert_agree(exact, fd)
    assert rel < 5e-3  # measured ≈ 2.2e-3 (forward difference, ε₀ = 3.5e-4)


def test_finite_difference_matches_exact_llama_float32():
    exact, fd, _ = penalty_grads(model_of(dtype=torch.float32))
    assert_agree(exact, fd)


def test_finite_difference_is_not_trivially_close():
    """A wrong step (perturbing along a random direction) must fail the same comparison."""
    model = model_of()
    exact, fd, _ = penalty_grads(model)
    _, wrong = run(model, Objective(penalty="wasserstein", rho=RHO), fd_step=0.3)
    _, base = run(model, Objective(penalty="wasserstein", rho=0.0))
    with pytest.raises(AssertionError):
        assert_agree(exact, wrong - base, cos_min=0.9999, rel_max=0.02)


def direct_penalty(model, objective, ref, weights_of=None):
    """ρ·Σ_i p_i‖∇_z ℓ_i‖² with one autograd.grad call per example."""
    rc, rr = ref
    embed = model.get_input_embeddings()
    ids, am, cm = BATCH["input_ids"], BATCH["attention_mask"], BATCH["completion_mask"]
    from dralign.modeling.logps import sequence_logps

    z = embed(ids).detach().requires_grad_(True)
    seq = sequence_logps(model, ids, am, cm, inputs_embeds=z)
    pc, pr = seq.sum[:B], seq.sum[B:]
    out = objective(pc.detach(), pr.detach(), rc, rr, update_state=False)
    losses = objective.losses(objective.margins(pc, pr, rc, rr))
    total = 0.0
    for i in range(B):
        (g,) = torch.autograd.grad(losses[i], z, retain_graph=True)
        others = [r for r in range(2 * B) if r not in (i, B + i)]
        assert g[others].abs().max() == 0  # ℓ_i depends on pair i's rows only
        total = total + out.weights[i] * g.pow(2).sum()
    return objective.penalty.rho * total


@pytest.mark.parametrize("mode", ["exact", "finite_difference"])
@pytest.mark.parametrize("robust", ["mean", "kl"])
def test_penalty_value_matches_per_example_autograd(mode, robust):
    model = model_of()
    ref = refs(torch.float64)
    obj = Objective(
        robust=robust, **({"tau": 0.5} if robust == "kl" else {}), penalty="wasserstein", rho=0.3, penalty_mode=mode
    )
    expected = direct_penalty(model, obj, ref)
    result, _ = run(model, obj, ref=ref)
    assert torch.allclose(result.penalty, expected, rtol=1e-6), (result.penalty, expected)
    assert result.metrics["penalty/wasserstein"] == pytest.approx(float(expected), rel=1e-6)
    assert torch.allclose(result.loss, result.objective + result.penalty)


@pytest.mark.parametrize("penalty", ["none", "rho0"])
def test_rho_zero_is_exactly_dpo(penalty):
    model = model_of()
    rc, rr = refs(torch.float64)
    model.zero_grad(set_to_none=True)
    lp = pair_logps(model, BATCH)
    out = Objective()(lp.chosen_sum, lp.rejected_sum, rc, rr)
    out.loss.backward()
    expected = flat_grad(model)
    obj = Objective() if penalty == "none" else Objective(penalty="wasserstein", rho=0.0)
    result, got = run(model, obj, ref=(rc, rr))
    assert torch.allclose(got, expected, rtol=1e-10, atol=1e-14)
    assert float(result.loss) == pytest.approx(float(out.loss.detach()), rel=1e-12)
    assert float(result.penalty) == 0.0


@pytest.mark.parametrize(
    "kwargs", [dict(robust="kl", tau=0.5), dict(divergence="js"), dict(divergence="js", robust="kl", tau=0.5)]
)
def test_composes_with_kl_robust_and_js_score(kwargs):
    exact, fd, _ = penalty_grads(model_of(), **kwargs)
    assert_agree(exact, fd)


def test_kl_robust_weights_the_penalty():
    """WDPO on KLDPO: the penalty is Σ p_i‖g_i‖² with the KL weights, not the plain mean."""
    model = model_of()
    ref = refs(torch.float64)
    kl = Objective(robust="kl", tau=0.2, penalty="wasserstein", rho=1.0, penalty_mode="exact")
    mean = Objective(penalty="wasserstein", rho=1.0, penalty_mode="exact")
    r_kl, _ = run(model, kl, ref=ref)
    r_mean, _ = run(model, mean, ref=ref)
    assert not torch.allclose(r_kl.penalty, r_mean.penalty, rtol=1e-3)
    assert torch.allclose(r_kl.penalty, direct_penalty(model, kl, ref), rtol=1e-6)


def test_sqrt_mean_form():
    model = model_of()
    exact, fd, _ = penalty_grads(model, penalty_form="sqrt_mean")
    assert_agree(exact, fd)
    ref = refs(torch.float64)
    sq, _ = run(model, Objective(penalty="wasserstein", rho=0.3, penalty_mode="exact"), ref=ref)
    rt, _ = run(
        model, Objective(penalty="wasserstein", rho=0.3, penalty_mode="exact", penalty_form="sqrt_mean"), ref=ref
    )
    assert torch.allclose(rt.penalty, 0.3 * torch.sqrt(sq.penalty / 0.3), rtol=1e-10)


def test_exact_mode_on_sdpa_raises_clear_error():
    model = model_of(attn="sdpa")
    obj = Objective(penalty="wasserstein", penalty_mode="exact")
    with pytest.raises(ValueError, match="attn_implementation='eager'.*finite_difference"):
        check_penalty_mode(model, obj)
    with pytest.raises(ValueError, match="eager"):
        run(model, obj)
    check_penalty_mode(model, Objective(penalty="wasserstein"))  # FD runs on any kernel
    check_penalty_mode(model_of(), obj)
    run(model, Objective(penalty="wasserstein", rho=0.1))


def test_sorting_couplings_refused():
    with pytest.raises(ValueError, match="sorting coupling"):
        check_penalty_mode(model_of(), Objective(coupling="aot", penalty="wasserstein"))


def test_gpt2_with_dropout():
    """gpt2 (embedding lookup via wte, positions added inside): FD matches exact, in train mode
    with dropout, which needs the same dropout masks in both finite-difference passes."""
    model = tiny_model("gpt2", vocab_size=VOCAB, seed=0, attn_implementation="eager", dtype=torch.float64)
    model.train()
    grads = {}
    for name, rho, mode in [
        ("base", 0.0, "finite_difference"),
        ("exact", RHO, "exact"),
        ("fd", RHO, "finite_difference"),
    ]:
        torch.manual_seed(123)
        _, grads[name] = run(model, Objective(penalty="wasserstein", rho=rho, penalty_mode=mode))
    assert_agree(grads["exact"] - grads["base"], grads["fd"] - grads["base"])


def test_scale_backward_and_accumulation():
    """Gradients scale with `scale` and with a `backward` that scales the loss (fp16 loss
    scaling), the penalty value does not; a second call accumulates onto existing grads."""
    model = model_of()
    obj = Objective(robust="kl", tau=0.5, penalty="wasserstein", rho=RHO)
    r1, g1 = run(model, obj)
    r2, g2 = run(model, obj, scale=0.5, backward=lambda t: (t * 7.0).backward())
    # (llama's RMSNorm runs in float32 even in a float64 model: agreement to ~1e-9)
    assert torch.allclose(r1.penalty, r2.penalty, rtol=1e-7)
    # the finite difference amplifies that rounding by 2ρ/ε: compare in norm
    assert (g2 - 3.5 * g1).norm() < 1e-3 * (3.5 * g1).norm()
    rc, rr = refs(torch.float64)
    penalized_backward(model, BATCH, rc, rr, obj)  # on top of the 3.5× grads left by run()
    assert (flat_grad(model) - 4.5 * g1).norm() < 1e-3 * (4.5 * g1).norm()


def test_micro_batches_with_global_weights_match_full_batch():
    """Exact global batch: weights p over the whole batch, each micro-batch backpropagates
    Σ_{i∈micro} p_i(ℓ_i + ρ‖g_i‖²); the sum equals the full-batch penalised gradient."""
    model = model_of()
    rc, rr = refs(torch.float64)
    obj = Objective(robust="kl", tau=0.5, penalty="wasserstein", rho=RHO, penalty_mode="exact")
    full, g_full = run(model, obj, ref=(rc, rr))
    p = full.output.weights
    model.zero_grad(set_to_none=True)
    penalties = []
    for rows in ([0, 1], [2]):
        idx = torch.tensor(rows)
        sub = {
            k: torch.cat([BATCH[k][idx], BATCH[k][idx + B]]) for k in ("input_ids", "attention_mask", "completion_mask")
        }
        r = penalized_backward(model, sub, rc[idx], rr[idx], obj, weights=p[idx])
        penalties.append(r.penalty)
    assert torch.allclose(flat_grad(model), g_full, rtol=1e-9, atol=1e-12)
    assert torch.allclose(sum(penalties), full.penalty, rtol=1e-9)


def test_lora_frozen_embeddings():
    """With LoRA the embedding is frozen; z still carries a gradient and FD matches exact on the
    adapter parameters."""
    model = apply_lora(tiny_model("llama", vocab_size=VOCAB, seed=0, attn_implementation="eager", dtype=torch.float64))
    model.eval()
    for layer in model.modules():  # LoRA's B starts at zero; make the adapters non-trivial
        if hasattr(layer, "lora_B"):
            torch.nn.init.normal_(layer.lora_B["default"].weight, std=0.05)
    assert not model.get_input_embeddings().weight.requires_grad
    exact, fd, base = penalty_grads(model)
    assert exact.norm() > 0
    assert_agree(exact, fd)


def test_bfloat16_autocast_uses_a_coarser_step():
    """Under bfloat16 autocast the default step is 1e-2 (√eps of float32 would be rounding
    noise); FD still points the same way as the exact penalty gradient."""
    model = model_of(dtype=torch.float32)
    ref = refs(torch.float32)
    grads = {}
    for name, rho, mode in [
        ("base", 0.0, "finite_difference"),
        ("exact", RHO, "exact"),
        ("fd", RHO, "finite_difference"),
    ]:
        result, grads[name] = run(
            model,
            Objective(penalty="wasserstein", rho=rho, penalty_mode=mode),
            ref=ref,
            autocast=lambda: torch.autocast("cpu", dtype=torch.bfloat16),
        )
    assert result.fd_eps > 0
    assert_agree(grads["exact"] - grads["base"], grads["fd"] - grads["base"], cos_min=0.98, rel_max=0.3)


def test_sqrt_mean_two_micro_batches_of_two_equal_one_batch_of_four():
    """sqrt_mean couples examples through S: with S_total measured over the effective batch
    (`grad_sq` per micro-batch, summed) and passed as `penalty_total`, 2 micro-batches of 2 give
    the gradient and penalty of one batch of 4 (exact mode, float64 tiny llama, ρ = 5). Without
    penalty_total each micro-batch uses its own S (the old behaviour): a different update."""
    model = model_of()
    batch = make_batch([3, 5, 4, 2, 3, 4, 6, 5], [4, 3, 5, 3, 6, 2, 3, 4], seed=5)
    g = torch.Generator().manual_seed(7)
    rc, rr = (-torch.rand(4, generator=g, dtype=torch.float64) * 20 - 20 for _ in range(2))
    obj = Objective(
        robust="kl", tau=0.5, penalty="wasserstein", rho=RHO, penalty_mode="exact", penalty_form="sqrt_mean"
    )
    assert obj.couples_examples
    full, g_full = run(model, obj, batch=batch, ref=(rc, rr))
    p = full.output.weights

    def sub(rows):
        idx = torch.tensor(rows)
        return idx, {
            k: torch.cat([batch[k][idx], batch[k][idx + 4]]) for k in ("input_ids", "attention_mask", "completion_mask")
        }

    parts = [sub([0, 1]), sub([2, 3])]
    s_total = sum(grad_sq(model, b, rc[i], rr[i], obj, weights=p[i]) for i, b in parts)
    assert torch.allclose(s_total, full.grad_sq, rtol=1e-12)

    def split(total):
        model.zero_grad(set_to_none=True)
        pens = [
            penalized_backward(model, b, rc[i], rr[i], obj, weights=p[i], penalty_total=total).penalty for i, b in parts
        ]
        return sum(pens), flat_grad(model)

    pen, g_split = split(s_total)
    assert (g_split - g_full).abs().max() < 1e-10
    assert torch.allclose(pen, full.penalty, rtol=1e-12)
    _, g_local = split(None)  # each micro-batch's own S: not the big batch's update
    assert (g_local - g_full).norm() > 1e-3 * g_full.norm()
