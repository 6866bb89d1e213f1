"""Padding-free packing of prefix-shared pairs (collate_shared_pairs(pack=True)): the layout
contract, and per-pair log-probs and gradients identical to the unpacked layout."""

from __future__ import annotations

import pytest
import torch

from dralign.data import PairExample
from dralign.data.collate import (
    CHOSEN,
    PROMPT,
    REJECTED,
    collate_pairs,
    collate_shared_pairs,
    pack_rows,
    padding_fraction,
)
from dralign.modeling import pair_logps
from dralign.modeling.logps import shared_attention_mask, unshared_batch
from dralign.modeling.tiny import ARCHITECTURES
from helpers import VOCAB, pair_logp_grads

# row lengths 9, 13, 13, 11, 4, 6: packed into rows of at most 13
LENGTHS = [(3, 4, 2), (7, 1, 5), (1, 6, 6), (5, 5, 1), (1, 2, 1), (2, 2, 2)]


def examples(seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = lambda n: tuple(torch.randint(2, VOCAB, (n,), generator=g).tolist())
    return [PairExample(10 + i, ids(p), ids(c), ids(r)) for i, (p, c, r) in enumerate(LENGTHS)]


def test_first_fit_decreasing_by_hand():
    # 13 | 13 | 11 (+ nothing fits: 4 > 2) | 9 + 4 | 6
    assert pack_rows([9, 13, 13, 11, 4, 6], 13) == [[0, 4], [1], [2], [3], [5]]
    assert pack_rows([5, 5, 5], 10) == [[0, 1], [2]]
    assert pack_rows([12, 3], 10) == [[0], [1]]  # longer than the budget: a row of its own


def test_packed_layout_contract():
    ex = [PairExample(4, (1, 10), (20,), (30, 31)), PairExample(9, (1,), (21,), (33,))]
    batch = collate_shared_pairs(ex, pad_token_id=0, pack=True, budget=8)
    assert batch["input_ids"].tolist() == [[1, 10, 20, 30, 31, 1, 21, 33]]
    assert batch["segment_ids"].tolist() == [[PROMPT, PROMPT, CHOSEN, REJECTED, REJECTED, PROMPT, CHOSEN, REJECTED]]
    assert batch["position_ids"].tolist() == [[0, 1, 2, 2, 3, 0, 1, 1]]  # restart per pair
    assert batch["pair_ids"].tolist() == [[0, 0, 0, 0, 0, 1, 1, 1]]
    assert batch["index"].tolist() == [4, 9]
    allowed = shared_attention_mask(batch["segment_ids"], "sdpa", pair_ids=batch["pair_ids"])[0, 0]
    assert not allowed[5:, :5].any()  # the second pair never sees the first
    assert allowed[7].int().tolist() == [0, 0, 0, 0, 0, 1, 0, 1]  # rejected: its prompt and itself
    assert padding_fraction(batch) == 0.0
    unpacked = collate_shared_pairs(ex, pad_token_id=0)
    assert padding_fraction(unpacked) == pytest.approx(2 / 10)
    assert {k: v.tolist() for k, v in unshared_batch(batch).items()} == {
        k: v.tolist() for k, v in unshared_batch(unpacked).items()
    }


def test_packing_removes_rows_and_padding():
    ex = examples()
    packed, unpacked = collate_shared_pairs(ex, 0, pack=True), collate_shared_pairs(ex, 0)
    assert packed["input_ids"].shape[0] < unpacked["input_ids"].shape[0]
    assert packed["input_ids"].shape[1] == unpacked["input_ids"].shape[1]  # no row longer
    assert padding_fraction(packed) < padding_fraction(unpacked)


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_packed_logps_equal_unpacked_and_plain(float64_models, arch, attn):
    model = float64_models[arch, attn]
    ex = examples()
    packed = pair_logps(model, collate_shared_pairs(ex, 0, pack=True))
    for other in (collate_shared_pairs(ex, 0), collate_pairs(ex, 0)):
        for a, b in zip(packed, pair_logps(model, other)):
            torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
    assert packed.chosen_count.tolist() == [c for _, c, _ in LENGTHS]


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_packed_gradients_equal_unpacked(float64_models, arch):
    model = float64_models[arch, "sdpa"]
    weights = torch.tensor([1.0, -2.0, 0.5, 3.0, 1.5, -1.0], dtype=torch.float64)

    def grads(batch):
        return pair_logp_grads(model, batch, weights)

    ex = examples(seed=3)
    packed, unpacked = grads(collate_shared_pairs(ex, 0, pack=True)), grads(collate_shared_pairs(ex, 0))
    for name in unpacked:
        scale = unpacked[name].abs().max().item()
        torch.testing.assert_close(packed[name], unpacked[name], rtol=1e-5, atol=1e-6 * scale, msg=name)


def test_reference_cache_from_packed_batches_equals_unpacked(float64_models, tmp_path):
    """Every path that hands a batch to a model keeps `pair_ids` (a packed batch scored as rows
    would give one value per row, not per pair)."""
    from dralign.data import PreferenceData
    from dralign.data.report import DataReport
    from dralign.modeling import build_reference_cache

    model = float64_models["llama", "sdpa"]
    ex = [PairExample(i, e.prompt_ids, e.chosen_ids, e.rejected_ids) for i, e in enumerate(examples())]
    data = PreferenceData(ex, "pairs", 0, [], [], {}, DataReport("<memory>", "explicit", len(ex), len(ex)))
    caches = [
        build_reference_cache(
            model,
            data,
            lambda d, idx: collate_shared_pairs([d.examples[i] for i in idx], 0, pack=pack),  # noqa: B023 (called at once)
            tmp_path / str(pack),
            f"fp{pack}",
            batch_size=6,
        )
        for pack in (True, False)
    ]
    for a, b in zip(caches[0].lookup(torch.arange(len(ex))), caches[1].lookup(torch.arange(len(ex)))):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
