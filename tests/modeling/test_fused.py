"""Fused log-probs (dralign.modeling.fused): equal to the plain logits path in value and
gradient, with no [tokens × vocab] logits kept, for tied/untied heads, LoRA heads, autocast,
prefix sharing and double backward."""

from __future__ import annotations

from contextlib import contextmanager

import pytest
import torch

import dralign.modeling.logps as logps_module
from dralign.data import PairExample
from dralign.data.collate import collate_pairs, collate_shared_pairs
from dralign.modeling import apply_lora, pair_logps, sequence_logps
from dralign.modeling.fused import fused_head, head_target_log_probs
from dralign.modeling.tiny import ARCHITECTURES, tiny_model
from helpers import VOCAB, make_batch

LENGTHS = [(3, 4, 2), (7, 1, 5), (1, 6, 6), (5, 5, 1)]


def examples(seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = lambda n: tuple(torch.randint(2, VOCAB, (n,), generator=g).tolist())
    return [PairExample(i, ids(p), ids(c), ids(r)) for i, (p, c, r) in enumerate(LENGTHS)]


@pytest.fixture(autouse=True)
def recompute_always(monkeypatch):
    """The chunked, recomputing path even for batches small enough to keep their logits."""
    monkeypatch.setattr(logps_module, "RETAIN_ELEMENTS", 0)


@contextmanager
def plain_path(monkeypatch):
    """The plain computation (logits, then log-softmax) instead of the fused one."""
    with monkeypatch.context() as m:
        m.setattr(logps_module, "fused_head", lambda model: None)
        yield


def value_and_grads(model, batch, upstream: str):
    """Weighted pair log-probs, and the gradients of the head weight, an upstream parameter
    and the input embeddings (hidden states of layer 0)."""
    model.zero_grad(set_to_none=True)
    z = model.get_input_embeddings()(batch["input_ids"]).detach().requires_grad_()
    if "segment_ids" in batch:
        lp = logps_module.shared_pair_logps(model, batch, inputs_embeds=z)
    else:
        seq = sequence_logps(
            model, batch["input_ids"], batch["attention_mask"], batch["completion_mask"], inputs_embeds=z
        )
        lp = logps_module.split_pairs(seq)
    weights = torch.tensor([1.0, -2.0, 0.5, 3.0])
    ((lp.chosen_sum - 0.7 * lp.rejected_sum) * weights).sum().backward()
    params = dict(model.named_parameters())
    head = model.get_output_embeddings().weight
    return (
        torch.stack([lp.chosen_sum, lp.rejected_sum]),
        head.grad.clone(),
        params[upstream].grad.clone(),
        z.grad.clone(),
    )


UPSTREAM = {
    "llama": "model.layers.0.mlp.up_proj.weight",
    "qwen2": "model.layers.0.mlp.up_proj.weight",
    "gpt2": "transformer.h.0.mlp.c_fc.weight",
}


@pytest.mark.parametrize("shared", [False, True])
@pytest.mark.parametrize("tied", [False, True])
@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_fused_equals_plain_in_value_and_gradient(monkeypatch, arch, tied, shared):
    model = tiny_model(arch, vocab_size=VOCAB, seed=1, tie_embeddings=tied).eval()
    assert fused_head(model) is model.get_output_embeddings()
    assert (model.get_output_embeddings().weight is model.get_input_embeddings().weight) == tied
    ex = examples()
    batch = collate_shared_pairs(ex, 0) if shared else collate_pairs(ex, 0)
    fused = value_and_grads(model, batch, UPSTREAM[arch])
    with plain_path(monkeypatch):
        plain = value_and_grads(model, batch, UPSTREAM[arch])
    for name, a, b in zip(("value", "head weight", "upstream", "hidden"), fused, plain):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5, msg=name)


def test_no_full_logits_tensor_is_made(monkeypatch):
    """Chunks of 2 rows: the head never sees more than 2 positions at once in either pass."""
    monkeypatch.setattr(logps_module, "CHUNK_ELEMENTS", 2 * VOCAB)
    model = tiny_model("llama", vocab_size=VOCAB, seed=1)
    head = model.get_output_embeddings()
    rows_seen = []
    head.register_forward_hook(lambda m, args, out: rows_seen.append(out.shape[:-1].numel()))
    batch = make_batch([3, 5, 2, 4], [4, 2, 6, 1])
    seq = sequence_logps(model, batch["input_ids"], batch["attention_mask"], batch["completion_mask"])
    seq.sum.sum().backward()
    assert max(rows_seen) == 2 and sum(rows_seen) == 2 * int(seq.count.sum())  # forward + recompute


def lora_model(dropout):
    base = tiny_model("qwen2", vocab_size=VOCAB, seed=2)
    model = apply_lora(base, r=4, dropout=dropout, target_modules=["lm_head", "q_proj"])
    for module in model.modules():  # a non-zero adapter
        if hasattr(module, "lora_B"):
            for weight in module.lora_B.values():
                torch.nn.init.normal_(weight.weight, std=0.1)
    return model


def test_lora_on_the_head_matches_plain(monkeypatch):
    model = lora_model(dropout=0.0)
    head = fused_head(model)
    assert head is not None and not isinstance(head, torch.nn.Linear)  # PEFT's wrapper
    batch = collate_shared_pairs(examples(seed=4), 0)

    def run():
        model.zero_grad(set_to_none=True)
        lp = pair_logps(model, batch)
        (lp.chosen_sum - 0.5 * lp.rejected_sum).sum().backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        return lp.chosen_sum.detach(), grads

    fused_value, fused_grads = run()
    with plain_path(monkeypatch):
        plain_value, plain_grads = run()
    torch.testing.assert_close(fused_value, plain_value, rtol=1e-5, atol=1e-5)
    assert fused_grads.keys() == plain_grads.keys() and any("lm_head" in n for n in fused_grads)
    for name in plain_grads:
        torch.testing.assert_close(fused_grads[name], plain_grads[name], rtol=1e-5, atol=1e-5, msg=name)


def test_lora_head_dropout_masks_are_replayed_in_backward():
    """With dropout on, the recomputed logits use the forward's masks: the gradient equals the
    one of the plain formula under the same seed (a fresh mask would change it)."""
    model = lora_model(dropout=0.5).train()
    head = fused_head(model)
    hidden = torch.randn(6, 64, requires_grad=True)
    targets = torch.randint(0, VOCAB, (6,))
    lora_a = next(p for n, p in model.named_parameters() if "lm_head" in n and "lora_A" in n)

    def run(fn):
        torch.manual_seed(11)
        hidden.grad, lora_a.grad = None, None
        out = fn()
        (out * torch.arange(1.0, 7.0)).sum().backward()
        return out.detach(), hidden.grad.clone(), lora_a.grad.clone()

    fused = run(lambda: head_target_log_probs(hidden, head, targets, chunk_elements=1 << 20))
    plain = run(lambda: torch.log_softmax(head(hidden), -1).gather(1, targets[:, None]).squeeze(1))
    for a, b in zip(fused, plain):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_bfloat16_autocast_matches_plain(monkeypatch):
    model = tiny_model("llama", vocab_size=VOCAB, seed=3)
    batch = make_batch([3, 5], [4, 2])

    def run():
        model.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            seq = sequence_logps(model, batch["input_ids"], batch["attention_mask"], batch["completion_mask"])
        seq.sum.sum().backward()
        return seq.sum.detach(), model.lm_head.weight.grad.clone()

    fused = run()
    with plain_path(monkeypatch):
        plain = run()
    assert fused[0].dtype == torch.float32
    torch.testing.assert_close(fused[0], plain[0], rtol=0, atol=1e-5)
    torch.testing.assert_close(fused[1], plain[1], rtol=1e-3, atol=1e-3)


def test_head_log_probs_are_twice_differentiable():
    head = torch.nn.Linear(5, 9, dtype=torch.float64)
    hidden = torch.randn(7, 5, dtype=torch.float64, requires_grad=True)
    targets = torch.randint(0, 9, (7,))

    def f(h, w, b):
        with torch.no_grad():
            head.weight.copy_(w)
            head.bias.copy_(b)
        # w and b enter through the head's own parameters: check against the plain formula
        return head_target_log_probs(h, head, targets, chunk_elements=18)  # chunks of 2 rows

    want = torch.log_softmax(head(hidden), -1).gather(1, targets[:, None]).squeeze(1)
    torch.testing.assert_close(
        f(hidden, head.weight.detach().clone(), head.bias.detach().clone()), want, rtol=0, atol=1e-12
    )
    chunked = lambda h: head_target_log_probs(h, head, targets, chunk_elements=18)
    assert torch.autograd.gradcheck(chunked, (hidden,))
    assert torch.autograd.gradgradcheck(chunked, (hidden,))
    # the head weight's gradient, and its gradient through a double backward
    out = chunked(hidden)
    (g,) = torch.autograd.grad(out.sum(), hidden, create_graph=True)
    (gw,) = torch.autograd.grad(g.pow(2).sum(), head.weight)
    plain = torch.log_softmax(head(hidden), -1).gather(1, targets[:, None]).squeeze(1)
    (pg,) = torch.autograd.grad(plain.sum(), hidden, create_graph=True)
    (pgw,) = torch.autograd.grad(pg.pow(2).sum(), head.weight)
    torch.testing.assert_close(gw, pgw, rtol=1e-10, atol=1e-12)


def test_models_with_processed_logits_take_the_plain_path():
    model = tiny_model("llama", vocab_size=VOCAB)
    model.config.model_type = "gemma2"  # soft-caps its logits after the head
    assert fused_head(model) is None


@pytest.mark.parametrize("tied", [False, True])
def test_small_batches_keep_their_logits_instead_of_recomputing(monkeypatch, tied):
    """Logits that fit in one chunk and in RETAIN_ELEMENTS are computed once (no recomputation
    in backward), with the values and gradients of the recomputing path."""
    model = tiny_model("llama", vocab_size=VOCAB, seed=1, tie_embeddings=tied).eval()
    batch = collate_shared_pairs(examples(), 0)
    head = model.get_output_embeddings()
    rows_seen = []
    handle = head.register_forward_hook(lambda m, args, out: rows_seen.append(out.shape[:-1].numel()))
    recomputed = value_and_grads(model, batch, UPSTREAM["llama"])
    tokens = sum(c + r for _, c, r in LENGTHS)
    assert sum(rows_seen) == 2 * tokens  # forward + recompute
    rows_seen.clear()
    monkeypatch.setattr(logps_module, "RETAIN_ELEMENTS", tokens * VOCAB)
    kept = value_and_grads(model, batch, UPSTREAM["llama"])
    handle.remove()
    assert sum(rows_seen) == tokens  # once, in the forward
    for name, a, b in zip(("value", "head weight", "upstream", "hidden"), kept, recomputed):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=name)
