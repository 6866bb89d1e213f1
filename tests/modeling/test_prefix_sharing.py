"""Prefix sharing: one row [prompt | chosen | rejected] per pair with a 4-D mask gives the same
log-probs and gradients as the plain layout (chosen rows, then rejected); the cost model that
chooses it. Through the trainer: tests/train/test_train_prefix_sharing.py."""

from __future__ import annotations

import pytest
import torch

from dralign import Objective
from dralign.data import PairExample
from dralign.data.collate import CHOSEN, PAD, PROMPT, REJECTED, collate_pairs, collate_shared_pairs
from dralign.modeling import apply_lora, pair_logps
from dralign.modeling.logps import prefix_sharing_support, shared_attention_mask, shared_pair_logps, unshared_batch
from dralign.modeling.prefix_sharing import (
    ModelDims,
    choose_prefix_sharing,
    pair_forward_flops,
    prefix_sharing_cost_ratio,
)
from dralign.modeling.tiny import ARCHITECTURES, tiny_model
from dralign.train.penalty import penalized_backward
from helpers import pair_logp_grads

VOCAB = 384
# prompt, chosen, rejected lengths: varied prompts, chosen longer or shorter, padding in both layouts
LENGTHS = [(3, 4, 2), (7, 1, 5), (1, 6, 6), (5, 5, 1)]


def examples(lengths=LENGTHS, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = lambda n: tuple(torch.randint(2, VOCAB, (n,), generator=g).tolist())
    return [PairExample(i, ids(p), ids(c), ids(r)) for i, (p, c, r) in enumerate(lengths)]


def test_shared_layout_contract():
    ex = [PairExample(4, (1, 10, 11), (20, 2), (30, 31, 2)), PairExample(9, (1, 12), (21, 2), (33, 2))]
    batch = collate_shared_pairs(ex, pad_token_id=0)
    assert batch["input_ids"].tolist() == [[1, 10, 11, 20, 2, 30, 31, 2], [1, 12, 21, 2, 33, 2, 0, 0]]
    assert batch["segment_ids"].tolist() == [
        [PROMPT] * 3 + [CHOSEN] * 2 + [REJECTED] * 3,
        [PROMPT] * 2 + [CHOSEN] * 2 + [REJECTED] * 2 + [PAD] * 2,
    ]
    assert batch["position_ids"].tolist() == [[0, 1, 2, 3, 4, 3, 4, 5], [0, 1, 2, 3, 2, 3, 0, 0]]
    assert batch["attention_mask"].tolist() == [[1] * 8, [1] * 6 + [0, 0]]
    assert batch["completion_mask"].int().tolist() == [[0, 0, 0, 1, 1, 1, 1, 1], [0, 0, 1, 1, 1, 1, 0, 0]]
    assert batch["index"].tolist() == [4, 9]


def test_cost_model_by_hand():
    """Body N = 10, width 1, 1 layer; P, C, R = 3, 2, 3. Shared: 2·10·8 + 4·8² = 416; plain:
    2·10·11 + 4·(5² + 6²) = 464."""
    dims = ModelDims(body=10, hidden=1, layers=1)
    assert pair_forward_flops(dims, 3, 2, 3, shared=True) == 416
    assert pair_forward_flops(dims, 3, 2, 3, shared=False) == 464


class _Data:
    def __init__(self, lengths):
        self.examples = examples(lengths)


def test_choose_prefix_sharing_decides_from_the_one_cost_model():
    model = tiny_model("llama", vocab_size=VOCAB)
    long_prompts, short_prompts = _Data([(40, 3, 3)] * 4), _Data([(1, 30, 30)] * 4)
    assert prefix_sharing_cost_ratio(model, long_prompts.examples) < 0.95
    assert choose_prefix_sharing("auto", model, long_prompts, False, False)[0] is True
    use, why = choose_prefix_sharing("auto", model, short_prompts, False, False)
    assert not use and "too short" in why
    assert choose_prefix_sharing("off", model, long_prompts, False, False) == (False, "off")
    assert not choose_prefix_sharing("on", model, long_prompts, False, True)[0]  # unpaired
    assert not choose_prefix_sharing("auto", model, long_prompts, True, False)[0]  # penalty
    with pytest.raises(ValueError, match="Wasserstein penalty"):
        choose_prefix_sharing("on", model, long_prompts, True, False)
    with pytest.raises(ValueError, match="must be one of"):
        choose_prefix_sharing("maybe", model, long_prompts, False, False)


def test_rejected_tokens_never_see_chosen_tokens():
    batch = collate_shared_pairs([PairExample(0, (5, 6), (7, 8), (9,))], pad_token_id=0)
    allowed = shared_attention_mask(batch["segment_ids"], "sdpa")[0, 0]
    assert allowed.int().tolist() == [
        [1, 0, 0, 0, 0],
        [1, 1, 0, 0, 0],
        [1, 1, 1, 0, 0],
        [1, 1, 1, 1, 0],
        [1, 1, 0, 0, 1],
    ]
    additive = shared_attention_mask(batch["segment_ids"], "eager", torch.float64)[0, 0]
    assert (additive[allowed] == 0).all() and (additive[~allowed] == torch.finfo(torch.float64).min).all()


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_shared_logps_equal_plain_logps(float64_models, arch, attn):
    model = float64_models[arch, attn]
    assert prefix_sharing_support(model) is None
    ex = examples()
    plain, shared = pair_logps(model, collate_pairs(ex, 0)), pair_logps(model, collate_shared_pairs(ex, 0))
    # llama/qwen2 eager run the softmax in float32 even in a float64 model: ~1e-8 apart
    for a, b in zip(plain, shared):
        torch.testing.assert_close(b, a, rtol=0, atol=1e-6)
    assert shared.chosen_count.tolist() == [c for _, c, _ in LENGTHS]
    assert shared.rejected_count.tolist() == [r for _, _, r in LENGTHS]


@pytest.mark.parametrize("arch,attn", [("llama", "sdpa"), ("gpt2", "eager"), ("qwen2", "sdpa")])
def test_shared_gradients_equal_plain_gradients(float64_models, arch, attn):
    model = float64_models[arch, attn]
    weights = torch.tensor([1.0, -2.0, 0.5, 3.0], dtype=torch.float64)

    def grads(batch):
        return pair_logp_grads(model, batch, weights)

    ex = examples(seed=3)
    plain, shared = grads(collate_pairs(ex, 0)), grads(collate_shared_pairs(ex, 0))
    assert plain.keys() == shared.keys()
    for name in plain:  # llama/qwen2 norms run in float32 even in float64: ~1e-7 relative
        scale = plain[name].abs().max().item()
        torch.testing.assert_close(shared[name], plain[name], rtol=1e-5, atol=1e-6 * scale, msg=name)


def test_lora_model_takes_the_shared_layout():
    model = apply_lora(tiny_model("qwen2", vocab_size=VOCAB, seed=2, dtype=torch.float64), r=4).eval()
    for module in model.modules():  # a non-zero adapter
        if hasattr(module, "lora_B"):
            for weight in module.lora_B.values():
                torch.nn.init.normal_(weight.weight, std=0.1)
    assert prefix_sharing_support(model) is None
    ex = examples(seed=5)
    for a, b in zip(pair_logps(model, collate_pairs(ex, 0)), pair_logps(model, collate_shared_pairs(ex, 0))):
        torch.testing.assert_close(b, a, rtol=0, atol=1e-9)


def test_unsupported_kernel_is_reported_and_the_batch_unshared(monkeypatch):
    """A model that cannot take the layout (e.g. a separate reference model on a flash kernel)
    scores a shared batch through its plain layout; `shared_pair_logps` itself refuses."""
    model = tiny_model("llama", vocab_size=VOCAB).eval()
    ex = examples()
    shared, plain = collate_shared_pairs(ex, 0), collate_pairs(ex, 0)
    assert {k: v.tolist() for k, v in unshared_batch(shared).items()} == {
        k: plain[k].tolist() for k in ("input_ids", "attention_mask", "completion_mask")
    }
    model.config._attn_implementation = "flash_attention_2"  # only the name is read
    assert "flash_attention_2" in prefix_sharing_support(model)
    with pytest.raises(ValueError, match="prefix sharing is not available"):
        shared_pair_logps(model, shared)
    model.config._attn_implementation = "sdpa"  # flash is not installed: pretend sdpa is unsupported
    monkeypatch.setattr("dralign.modeling.logps.prefix_sharing_support", lambda model: "unsupported")
    for a, b in zip(pair_logps(model, shared), pair_logps(model, plain)):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_penalty_refuses_a_shared_batch():
    model = tiny_model("llama", vocab_size=VOCAB)
    batch = collate_shared_pairs(examples(), 0)
    zeros = torch.zeros(len(LENGTHS))
    with pytest.raises(ValueError, match="prefix-shared"):
        penalized_backward(model, batch, zeros, zeros, Objective.from_preset("wdpo"))
