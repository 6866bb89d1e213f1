"""fit_density_ratios end to end: weights, pair rules, outputs, errors."""

import json
import os
import random

import pytest
import torch

from dralign.modeling.tiny import tiny_model, tiny_tokenizer
from dralign.ratio import (
    RatioFit,
    density_ratio,
    fit_density_ratios,
    pair_ratio,
    ratios_from_columns,
    response_source_from_policy,
)

WORDS = (
    "the quick brown fox jumps over lazy dog happy child reads good book please answer "
    "question politely weather terrible today thank you very much"
).split()


def _sentence(rng, n):
    return " " + " ".join(rng.choice(WORDS) for _ in range(n))


def _rows(n, target_frac, seed=0, marker=None):
    """Rows with source human/synthetic; with `marker`, human responses contain it."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        human = rng.random() < target_frac
        resp = [_sentence(rng, rng.randint(3, 6)) for _ in range(2)]
        if marker and human:
            resp = [r + " " + marker for r in resp]
        rows.append(
            {
                "prompt": "Human:" + _sentence(rng, 5) + " Assistant:",
                "chosen": resp[0],
                "rejected": resp[1],
                "source": "human" if human else "synthetic",
                "id": i,
            }
        )
    return rows


@pytest.fixture(scope="module")
def lm():
    tok = tiny_tokenizer()
    return tiny_model("llama", vocab_size=len(tok), seed=0), tok


def test_predictable_source_gives_high_auc_and_weight_one_over_prior(lm):
    model, tok = lm
    # every human response carries a marker word made of bytes no other text uses
    rows = _rows(120, 0.25, seed=1, marker="@@@@")
    fit = fit_density_ratios(rows, target="human", model=model, tokenizer=tok, folds=5)
    y = torch.tensor([r["source"] == "human" for r in rows])
    assert fit.prior == pytest.approx(y.double().mean().item())
    assert fit.auc >= 0.95
    target_w = fit.weight[y]
    bound = 1 / fit.prior
    assert abs(target_w.mean().item() - bound) <= 0.05 * bound
    assert abs(target_w.median().item() - bound) <= 0.1 * bound
    assert target_w.min() > 0.5 * bound
    assert fit.weight[~y].max() < 0.5
    assert fit.weight.max() <= 1 / fit.prior + 1e-12


def test_random_labels_give_chance_auc_and_unit_weights():
    g = torch.Generator().manual_seed(0)
    n = 400
    rows = [
        {
            "prompt": "p",
            "chosen": "a",
            "rejected": "b",
            "source": "human" if torch.rand(1, generator=g).item() < 0.3 else "synthetic",
        }
        for _ in range(n)
    ]
    feats = torch.randn(n, 16, generator=g)
    fit = fit_density_ratios(rows, target="human", features=feats, folds=5)
    assert abs(fit.auc - 0.5) < 0.15
    assert abs(fit.weight.mean().item() - 1.0) < 0.1
    assert fit.ece < 0.1


def test_random_labels_end_to_end_with_a_model(lm):
    model, tok = lm
    rows = _rows(200, 0.4, seed=2)
    rng = random.Random(5)
    for r in rows:  # sources independent of the text
        r["source"] = "human" if rng.random() < 0.4 else "synthetic"
    fit = fit_density_ratios(rows, target="human", model=model, tokenizer=tok, l2=1.0)
    assert abs(fit.auc - 0.5) < 0.15
    assert abs(fit.weight.mean().item() - 1.0) < 0.1


def _response_rows(n, seed=0):
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        pol = [rng.choice(["ref", "sup_a", "sup_b"]) for _ in range(2)]
        rows.append(
            {
                "prompt": "x",
                "chosen": "c",
                "rejected": "r",
                "meta": {"chosen_policy": pol[0], "rejected_policy": pol[1]},
            }
        )
    return rows


@pytest.mark.parametrize("rule", ["geometric", "product"])
def test_response_level_pair_rules(rule):
    rows = _response_rows(150)
    src = response_source_from_policy(["ref"])
    y = torch.tensor([src(r, "chosen") == "human" for r in rows] + [src(r, "rejected") == "human" for r in rows])
    g = torch.Generator().manual_seed(1)
    feats = torch.randn(300, 4, generator=g)
    feats[:, 0] += 6.0 * y  # the source is visible in the features
    fit = fit_density_ratios(
        rows, target="human", source_column=src, features=feats, response_level=True, pair_rule=rule
    )
    assert fit.level == "response" and fit.n_items == 300
    assert fit.prior == pytest.approx(y.double().mean().item())
    assert fit.auc > 0.9
    h = fit.item_prob / fit.prior
    expected = torch.sqrt(h[:150] * h[150:]) if rule == "geometric" else h[:150] * h[150:]
    assert torch.allclose(fit.weight, expected)
    assert torch.allclose(fit.response_prob[:, 1], fit.item_prob[150:])
    assert torch.allclose(fit.target_prob, torch.sqrt(fit.item_prob[:150] * fit.item_prob[150:]))
    bound = 1 / fit.prior if rule == "geometric" else 1 / fit.prior**2
    assert fit.weight.max() <= bound + 1e-9
    both = y[:150] & y[150:]
    neither = ~y[:150] & ~y[150:]
    mixed = y[:150] ^ y[150:]
    assert fit.weight[both].min() > fit.weight[neither].max()
    assert fit.weight[both].mean() > fit.weight[mixed].mean() > fit.weight[neither].mean()


def test_response_level_with_source_columns_and_clip():
    rows = _response_rows(100, seed=3)
    for r in rows:
        r["chosen_source"] = "human" if r["meta"]["chosen_policy"] == "ref" else "model"
        r["rejected_source"] = "human" if r["meta"]["rejected_policy"] == "ref" else "model"
    feats = torch.randn(200, 3, generator=torch.Generator().manual_seed(0))
    feats[:100, 0] += 4.0 * torch.tensor([r["chosen_source"] == "human" for r in rows])
    feats[100:, 0] += 4.0 * torch.tensor([r["rejected_source"] == "human" for r in rows])
    fit = fit_density_ratios(rows, target="human", features=feats, response_level=True, clip=1.5)
    assert fit.weight.max() <= 1.5
    assert (fit.weight == 1.5).any()
    assert fit.metrics()["ratio/clipped"] >= 1


def test_density_ratio_and_pair_ratio_values():
    h = density_ratio(torch.tensor([0.0, 0.25, 1.0]), 0.25)
    assert torch.allclose(h, torch.tensor([0.0, 1.0, 4.0], dtype=torch.float64))
    assert torch.allclose(density_ratio([1.0], 0.25, clip=2.0), torch.tensor([2.0], dtype=torch.float64))
    assert pair_ratio(4.0, 0.25).item() == pytest.approx(1.0)
    assert pair_ratio(4.0, 0.25, "product").item() == pytest.approx(1.0)
    assert pair_ratio(4.0, 1.0).item() == pytest.approx(2.0)
    assert pair_ratio(4.0, 1.0, "product").item() == pytest.approx(4.0)
    with pytest.raises(ValueError, match="pair_rule"):
        pair_ratio(1.0, 1.0, "mean")


def test_write_jsonl_atomic_and_complete(tmp_path):
    rows = _rows(60, 0.5, seed=4)
    feats = torch.randn(60, 5, generator=torch.Generator().manual_seed(0))
    fit = fit_density_ratios(rows, target={"human"}, features=feats, folds=3)
    out = fit.write_jsonl(tmp_path / "sub" / "w.jsonl", rows)
    written = [json.loads(line) for line in open(out)]
    assert len(written) == 60
    for row, w, p, orig in zip(written, fit.weight, fit.target_prob, rows):
        assert row["ratio"] == pytest.approx(w.item()) and row["target_prob"] == pytest.approx(p.item())
        assert {k: row[k] for k in orig} == orig
    assert sorted(os.listdir(tmp_path / "sub")) == ["w.jsonl"]  # no temp file left
    with pytest.raises(ValueError, match="rows"):
        fit.write_jsonl(tmp_path / "sub" / "bad.jsonl", rows[:10])
    assert sorted(os.listdir(tmp_path / "sub")) == ["w.jsonl"]
    text = fit.summary()
    assert "AUC" in text and "π_T" in text and "\n" not in text
    assert isinstance(fit, RatioFit) and fit.metrics()["ratio/rows"] == 60


def test_errors_name_the_row_and_field():
    rows = _rows(20, 0.5)
    feats = torch.randn(20, 3)
    bad = [dict(r) for r in rows]
    del bad[7]["rejected"]
    with pytest.raises(ValueError, match=r"row 7: missing field 'rejected'"):
        fit_density_ratios(bad, target="human", features=feats)
    bad = [dict(r) for r in rows]
    del bad[3]["source"]
    with pytest.raises(ValueError, match=r"row 3: missing source field 'source'"):
        fit_density_ratios(bad, target="human", features=feats)
    with pytest.raises(ValueError, match="exactly one"):
        fit_density_ratios(rows, target="human")
    with pytest.raises(ValueError, match=r"\[20, H\]"):
        fit_density_ratios(rows, target="human", features=torch.randn(40, 3))
    with pytest.raises(ValueError, match="needs at least"):
        fit_density_ratios(rows, target="nobody", features=feats)


def test_ratios_from_user_columns():
    assert torch.allclose(
        ratios_from_columns([{"ratio": 2}, {"ratio": 0.5}]), torch.tensor([2.0, 0.5], dtype=torch.float64)
    )
    w = ratios_from_columns([{"target_prob": 0.2}, {"target_prob": 0.6}])
    assert torch.allclose(w, torch.tensor([0.5, 1.5], dtype=torch.float64))  # prior = mean = 0.4
    with pytest.raises(ValueError, match="row 1"):
        ratios_from_columns([{"target_prob": 0.2}, {"x": 1}])


def test_model_path_and_encoder_path_are_loaded(tmp_path):
    from transformers import BertConfig, BertModel

    from dralign.modeling.tiny import save_tiny

    rows = _rows(40, 0.5, seed=6, marker="@@@@")
    lm_dir = save_tiny(tmp_path / "lm", "llama", seed=0)
    fit = fit_density_ratios(rows, target="human", model=lm_dir, folds=3)
    assert "lm" in fit.features and fit.auc > 0.9
    tok = tiny_tokenizer()
    torch.manual_seed(0)
    BertModel(
        BertConfig(
            vocab_size=len(tok),
            hidden_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=64,
            max_position_embeddings=128,
        )
    ).save_pretrained(tmp_path / "enc")
    tok.save_pretrained(tmp_path / "enc")
    fit = fit_density_ratios(rows, target="human", encoder=str(tmp_path / "enc"), folds=3, max_length=64)
    assert fit.features.startswith("encoder") and fit.weight.shape == (40,)
    assert fit.auc > 0.8
