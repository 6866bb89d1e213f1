"""Length groups (dralign.modeling.logps): rows of different lengths run as several forwards,
each cut to its own longest row, with the log-probs and gradients of one forward."""

from __future__ import annotations

import pytest
import torch

import dralign.modeling.logps as logps_module
from dralign.data import PairExample
from dralign.data.collate import collate_pairs, collate_shared_pairs
from dralign.modeling.logps import length_groups, pair_logps
from dralign.modeling.tiny import tiny_model
from helpers import VOCAB

# two short pairs and two long ones: splitting them saves most of the padding
LENGTHS = [(3, 2, 2), (30, 20, 25), (2, 3, 1), (28, 22, 24)]


def examples():
    g = torch.Generator().manual_seed(0)
    ids = lambda n: tuple(torch.randint(2, VOCAB, (n,), generator=g).tolist())
    return [PairExample(i, ids(p), ids(c), ids(r)) for i, (p, c, r) in enumerate(LENGTHS)]


def test_groups_split_short_rows_from_long_ones():
    assert length_groups([5, 50, 6, 52], hidden=64) == [[0, 2], [1, 3]]
    assert length_groups([50, 51, 52, 50], hidden=64) == [[0, 1, 2, 3]]  # < 5 % to save
    assert length_groups([5, 50, 6, 52], hidden=64, max_groups=1) == [[0, 1, 2, 3]]
    assert sorted(sum(length_groups([9, 1, 40, 3, 80, 22, 7], hidden=64), [])) == list(range(7))


@pytest.mark.parametrize("shared", [False, True])
@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_grouped_forwards_equal_one_forward(monkeypatch, arch, shared):
    if shared and arch == "gpt2":
        pytest.skip("prefix sharing: llama-style models")
    model = tiny_model(arch, vocab_size=VOCAB, seed=1).eval()  # no dropout: same values
    batch = (collate_shared_pairs if shared else collate_pairs)(examples(), 0)
    widths = []
    model.register_forward_pre_hook(
        lambda m, args, kwargs: widths.append(
            (kwargs.get("input_ids") if kwargs.get("input_ids") is not None else kwargs["inputs_embeds"]).shape[1]
        ),
        with_kwargs=True,
    )

    def run():
        model.zero_grad(set_to_none=True)
        lp = pair_logps(model, batch)
        (lp.chosen_sum - 0.5 * lp.rejected_sum).sum().backward()
        return lp, {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    grouped, grouped_grads = run()
    assert len(widths) == 2 and max(widths) == batch["input_ids"].shape[1] > min(widths)
    widths.clear()
    monkeypatch.setattr(logps_module, "MAX_GROUPS", 1)
    one, one_grads = run()
    assert len(widths) == 1
    for a, b in zip(grouped, one):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    for name in one_grads:
        torch.testing.assert_close(grouped_grads[name], one_grads[name], rtol=1e-4, atol=1e-5, msg=name)
