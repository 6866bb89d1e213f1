"""WDPO's shared-prompt penalty (`--penalty-layout shared`, dralign.train.penalty): its value
against the per-sequence gradients plus the prompt's cross term, and the finite difference
against the exact double backward, on prefix-shared batches."""

from __future__ import annotations

import pytest
import torch

from dralign.data import PairExample
from dralign.data.collate import collate_pairs, collate_shared_pairs
from dralign.modeling.logps import sequence_logps
from dralign.modeling.prefix_sharing import choose_prefix_sharing
from dralign.modeling.tiny import tiny_model
from dralign.objectives.objective import Objective
from dralign.train.penalty import grad_sq, penalized_backward
from helpers import VOCAB

LENGTHS = [(3, 4, 2), (6, 2, 5), (2, 5, 4)]
B = len(LENGTHS)


def examples(seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = lambda n: tuple(torch.randint(2, VOCAB, (n,), generator=g).tolist())
    return [PairExample(i, ids(p), ids(c), ids(r)) for i, (p, c, r) in enumerate(LENGTHS)]


def refs():
    g = torch.Generator().manual_seed(1)
    return (
        -torch.rand(B, generator=g, dtype=torch.float64) * 20 - 20,
        -torch.rand(B, generator=g, dtype=torch.float64) * 20 - 20,
    )


@pytest.fixture(scope="module")
def model():
    return tiny_model("llama", vocab_size=VOCAB, seed=0, attn_implementation="eager", dtype=torch.float64).eval()


def per_sequence_gradients(model, objective, ref):
    """Per pair, ∇ℓ_i with respect to the plain layout's chosen row and rejected row embeddings."""
    batch = collate_pairs(examples(), 0)
    ids = batch["input_ids"]
    z = model.get_input_embeddings()(ids).detach().requires_grad_(True)
    seq = sequence_logps(model, ids, batch["attention_mask"], batch["completion_mask"], inputs_embeds=z)
    losses = objective.losses(objective.margins(seq.sum[:B], seq.sum[B:], *ref))
    grads = []
    for i in range(B):
        (g,) = torch.autograd.grad(losses[i], z, retain_graph=True)
        grads.append((g[i], g[B + i]))
    return grads


def test_shared_penalty_is_the_per_sequence_one_plus_the_prompt_cross_term(model):
    """‖g_i‖² = ‖g^c_x + g^r_x‖² + ‖g^c_y⁺‖² + ‖g^r_y⁻‖² from the plain layout's row gradients
    (mean aggregator: p_i = 1/B)."""
    ref = refs()
    objective = Objective(penalty="wasserstein", rho=0.3)
    expected = 0.0
    for (gc, gr), (p, c, r) in zip(per_sequence_gradients(model, objective, ref), LENGTHS):
        prompt = gc[:p] + gr[:p]
        expected += (prompt.pow(2).sum() + gc[p : p + c].pow(2).sum() + gr[p : p + r].pow(2).sum()) / B
    shared = collate_shared_pairs(examples(), 0)
    result = penalized_backward(model, shared, *ref, objective, shared_prompt=True)
    torch.testing.assert_close(result.grad_sq, torch.as_tensor(expected), rtol=1e-6, atol=0)
    weights = torch.full((B,), 1.0 / B, dtype=torch.float64)
    # two passes of the same float64 model, whose RMSNorm runs in float32: they agreed to 5e-9, not 1e-9
    torch.testing.assert_close(
        grad_sq(model, shared, *ref, objective, weights=weights, shared_prompt=True), result.grad_sq, rtol=1e-7, atol=0
    )
    per_sequence = penalized_backward(model, collate_pairs(examples(), 0), *ref, objective)
    assert abs(float(per_sequence.grad_sq) - float(expected)) > 1e-3 * float(expected)  # a different penalty


def flat_grad(model):
    return torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])


def test_shared_finite_difference_matches_exact(model):
    ref, shared = refs(), collate_shared_pairs(examples(), 0)

    def grads(**kw):
        model.zero_grad(set_to_none=True)
        penalized_backward(model, shared, *ref, Objective(penalty="wasserstein", **kw), shared_prompt=True)
        return flat_grad(model)

    base = grads(rho=0.0)
    exact, fd = grads(rho=5.0, penalty_mode="exact") - base, grads(rho=5.0) - base
    assert exact.norm() > 10 * base.norm()
    rel = ((exact - fd).norm() / exact.norm()).item()
    assert rel < 5e-3, rel


def test_layouts_must_match_the_penalty(model):
    ref = refs()
    with pytest.raises(ValueError, match="takes a prefix-shared batch"):
        penalized_backward(model, collate_pairs(examples(), 0), *ref, Objective.from_preset("wdpo"), shared_prompt=True)


class _Data:
    examples = examples()


def test_the_shared_penalty_turns_prefix_sharing_on(model):
    use, why = choose_prefix_sharing("auto", model, _Data, True, False, penalty_layout="shared")
    assert use and "shared-prompt" in why
    with pytest.raises(ValueError, match="needs prefix sharing"):
        choose_prefix_sharing("off", model, _Data, True, False, penalty_layout="shared")
    assert not choose_prefix_sharing("auto", model, _Data, True, False)[0]  # per_sequence


def test_packed_batches_give_the_same_shared_penalty(model):
    ref, objective = refs(), Objective(penalty="wasserstein", rho=0.3)
    unpacked = penalized_backward(model, collate_shared_pairs(examples(), 0), *ref, objective, shared_prompt=True)
    packed_batch = collate_shared_pairs(examples(), 0, pack=True, budget=40)
    assert packed_batch["input_ids"].shape[0] < B
    packed = penalized_backward(model, packed_batch, *ref, objective, shared_prompt=True)
    torch.testing.assert_close(packed.grad_sq, unpacked.grad_sq, rtol=1e-6, atol=0)
    torch.testing.assert_close(packed.loss, unpacked.loss, rtol=1e-6, atol=0)  # float32 softmax in eager llama
