"""Frozen features: response-pooled causal-LM hidden states and HF encoder features."""

import pytest
import torch

from dralign.modeling.tiny import tiny_model
from dralign.ratio import encoder_features, response_features

PROMPTS = ["Human: what is two plus two? Assistant:", "The weather is", "", "Please answer"]
RESPONSES = [" Two plus two is four.", " terrible today, sadly.", " A happy child.", ""]


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_response_features_shape_and_determinism(tok, arch):
    model = tiny_model(arch, vocab_size=len(tok), seed=0)
    model.train()
    f = response_features(PROMPTS, RESPONSES, model, tok, batch_size=3)
    assert f.shape == (4, 64) and f.dtype == torch.float32 and not f.requires_grad
    assert torch.isfinite(f).all()
    assert model.training  # the training flag is restored
    assert torch.equal(f, response_features(PROMPTS, RESPONSES, model, tok, batch_size=3))


def _manual(model, tok, prompt, response):
    p = tok(prompt, add_special_tokens=False)["input_ids"]
    r = tok(response, add_special_tokens=False)["input_ids"]
    ids = torch.tensor([p + r])
    with torch.no_grad():
        h = model(input_ids=ids, output_hidden_states=True).hidden_states[-1][0]
    return h[len(p) :].mean(0)


def test_pools_exactly_the_response_positions_and_ignores_padding(tok):
    model = tiny_model("llama", vocab_size=len(tok), seed=1)
    f = response_features(PROMPTS, RESPONSES, model, tok, batch_size=4)  # padded batch
    for i in range(3):
        assert torch.allclose(f[i], _manual(model, tok, PROMPTS[i], RESPONSES[i]), atol=1e-5)
        alone = response_features(PROMPTS[i : i + 1], RESPONSES[i : i + 1], model, tok)
        assert torch.allclose(f[i], alone[0], atol=1e-5)
    # the prompt is context: it changes the response's features
    g = response_features(["Something else entirely"], RESPONSES[:1], model, tok)
    assert (g[0] - f[0]).abs().max() > 1e-4


def test_empty_response_pools_last_context_token(tok):
    model = tiny_model("llama", vocab_size=len(tok), seed=1)
    f = response_features(["Please answer", ""], ["", ""], model, tok)
    p = tok("Please answer", add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        h = model(input_ids=torch.tensor([p]), output_hidden_states=True).hidden_states[-1][0]
    assert torch.allclose(f[0], h[-1], atol=1e-5)
    assert torch.isfinite(f[1]).all()


def test_truncation_keeps_the_response_and_the_prompt_tail(tok):
    model = tiny_model("llama", vocab_size=len(tok), seed=2)
    prompt = "The quick brown fox jumps over the lazy dog. " * 10
    response = " A happy child reads a good book."
    p = tok(prompt, add_special_tokens=False)["input_ids"]
    r = tok(response, add_special_tokens=False)["input_ids"]
    max_length = len(r) + 5
    f = response_features([prompt], [response], model, tok, max_length=max_length)
    ids = torch.tensor([p[-5:] + r])
    with torch.no_grad():
        h = model(input_ids=ids, output_hidden_states=True).hidden_states[-1][0]
    assert torch.allclose(f[0], h[5:].mean(0), atol=1e-5)


def test_length_mismatch_raises(tok):
    model = tiny_model("llama", vocab_size=len(tok), seed=0)
    with pytest.raises(ValueError, match="prompts"):
        response_features(["a", "b"], ["c"], model, tok)


def test_encoder_features_with_a_local_tiny_bert(tok, tmp_path):
    from transformers import BertConfig, BertModel

    config = BertConfig(
        vocab_size=len(tok),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
        pad_token_id=tok.pad_token_id,
    )
    torch.manual_seed(0)
    BertModel(config).save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    f = encoder_features(PROMPTS, RESPONSES, str(tmp_path), batch_size=4, max_length=32)
    assert f.shape == (4, 32) and f.dtype == torch.float32 and torch.isfinite(f).all()
    # padding-invariant: a row alone gives the same features as in a padded batch
    alone = encoder_features(PROMPTS[1:2], RESPONSES[1:2], str(tmp_path), max_length=32)
    assert torch.allclose(f[1], alone[0], atol=1e-5)
    # the response matters
    other = encoder_features(PROMPTS[1:2], [" good book"], str(tmp_path), max_length=32)
    assert (other[0] - f[1]).abs().max() > 1e-4
