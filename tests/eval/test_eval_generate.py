"""Seeded sampling and teacher-forced completion log-probs (dralign.eval.generate)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dralign.data import tokenize_pairs
from dralign.eval.generate import (
    Completions,
    Sampling,
    completion_log_likelihoods,
    draw_tokens,
    sample_completions,
    sampling_uniforms,
    tokenize_prompts,
)
from dralign.modeling.tiny import tiny_model, tiny_tokenizer
from dralign_bench.world import generate_corpus, generate_prompts

EOS_BOOST = 4.0


@pytest.fixture(scope="module")
def model(world_tok):
    return tiny_model("llama", vocab_size=len(world_tok), hidden=32, layers=1, seed=0)


@pytest.fixture(scope="module")
def eosy(world_tok):
    """A tiny model whose eos logit is raised by EOS_BOOST (a forward hook on the head), so
    that about a sixth of the steps end a completion."""
    m = tiny_model("llama", vocab_size=len(world_tok), hidden=32, layers=1, seed=2)

    def boost(module, inputs, output):
        output = output.clone()
        output[..., world_tok.eos_token_id] += EOS_BOOST
        return output

    m.lm_head.register_forward_hook(boost)
    return m


@pytest.fixture(scope="module")
def prompts():
    # different lengths, so batches are really left-padded
    return generate_prompts(5, seed=0, split="heldout") + ["Hi:"]


def hand_logp(model, prompt_ids: list[int], completion: list[int]) -> float:
    """Σ_t log_softmax(logits[t−1])[y_t] over the completion, from one unpadded forward."""
    ids = torch.tensor([prompt_ids + completion])
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=ids).logits[0].double(), dim=-1)
    n = len(prompt_ids)
    return float(sum(logp[n - 1 + j, y] for j, y in enumerate(completion)))


def test_sampling_is_deterministic_per_seed(model, world_tok, prompts):
    kw = dict(num_samples=2, max_new_tokens=10)
    a = sample_completions(model, world_tok, prompts, seed=7, **kw)
    b = sample_completions(model, world_tok, prompts, seed=7, **kw)
    c = sample_completions(model, world_tok, prompts, seed=8, **kw)
    assert a == b
    assert a.token_ids != c.token_ids
    assert len(a) == 2 * len(prompts)
    # prompt-major order
    assert a.prompts == [p for p in prompts for _ in range(2)]


def test_sampling_is_independent_of_batch_size_and_of_later_prompts(model, world_tok, prompts):
    kw = dict(num_samples=2, max_new_tokens=10, seed=3)
    full = sample_completions(model, world_tok, prompts, batch_size=64, **kw)
    for batch_size in (1, 3):
        assert sample_completions(model, world_tok, prompts, batch_size=batch_size, **kw) == full
    head = sample_completions(model, world_tok, prompts[:2], **kw)
    assert head.token_ids == full.token_ids[:4]


@pytest.mark.parametrize("arch", ["llama", "gpt2", "qwen2"])
def test_greedy_decoding_matches_full_forward_argmax(world_tok, prompts, arch):
    """The KV-cached, left-padded loop takes the same steps as recomputing from scratch."""
    model = tiny_model(arch, vocab_size=len(world_tok), hidden=32, layers=1, seed=3)
    model.eval()  # gpt2 has dropout
    c = sample_completions(model, world_tok, prompts, max_new_tokens=6, temperature=0.0, batch_size=4)
    for prompt_ids, ids, done in zip(tokenize_prompts(world_tok, prompts), c.token_ids, c.finished):
        seq = list(prompt_ids)
        expected = []
        for _ in range(6):
            with torch.no_grad():
                nxt = int(model(input_ids=torch.tensor([seq])).logits[0, -1].argmax())
            if nxt == world_tok.eos_token_id:
                break
            expected.append(nxt)
            seq.append(nxt)
        assert ids == expected
        assert done == (len(expected) < 6)


class NoCache(torch.nn.Module):
    """A model that returns no KV cache (the loop must then recompute the whole sequence)."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, **kwargs):
        kwargs.update(use_cache=False, past_key_values=None)
        return self.inner(**kwargs)


def test_sampling_without_a_kv_cache_gives_the_same_completions(model, world_tok, prompts):
    kw = dict(num_samples=2, max_new_tokens=5, seed=9)
    assert sample_completions(NoCache(model), world_tok, prompts, **kw) == sample_completions(
        model, world_tok, prompts, **kw
    )


def test_completions_stop_at_eos_and_exclude_it(eosy, world_tok, prompts):
    c = sample_completions(eosy, world_tok, prompts, num_samples=4, max_new_tokens=12, seed=1)
    assert any(c.finished) and not all(c.finished)
    for ids, done, text in zip(c.token_ids, c.finished, c.texts):
        assert world_tok.eos_token_id not in ids
        if not done:
            assert len(ids) == 12
        assert text == world_tok.decode(ids, skip_special_tokens=True)


def test_completion_logps_match_hand_computation(eosy, world_tok, prompts):
    c = sample_completions(eosy, world_tok, prompts, num_samples=2, max_new_tokens=8, seed=5)
    got = completion_log_likelihoods(eosy, world_tok, c.prompts, c.token_ids, append_eos=c.finished, batch_size=3)
    assert got.dtype == np.float64 and got.shape == (len(c),)
    prompt_ids = tokenize_prompts(world_tok, c.prompts)
    for k in range(len(c)):
        completion = c.token_ids[k] + ([world_tok.eos_token_id] if c.finished[k] else [])
        assert got[k] == pytest.approx(hand_logp(eosy, prompt_ids[k], completion), abs=1e-4)
    # default: eos appended to every completion (the training-data convention)
    all_eos = completion_log_likelihoods(eosy, world_tok, c.prompts, c.token_ids)
    k = c.finished.index(False)
    assert all_eos[k] == pytest.approx(
        hand_logp(eosy, prompt_ids[k], c.token_ids[k] + [world_tok.eos_token_id]), abs=1e-4
    )
    # batch size does not change the values
    np.testing.assert_allclose(
        completion_log_likelihoods(eosy, world_tok, c.prompts, c.token_ids, append_eos=c.finished, batch_size=64),
        got,
        atol=1e-5,
    )


def test_prompts_tokenized_as_training_tokenizes_them(world_tok, prompts):
    """With a tokenizer that adds a BOS, prompts get it exactly as in tokenize_pairs."""
    from tokenizers.processors import TemplateProcessing

    bos_tok = tiny_tokenizer(generate_corpus(50, seed=1), vocab_size=300)
    bos_tok._tokenizer.post_processor = TemplateProcessing(
        single="<|pad|> $A", special_tokens=[("<|pad|>", bos_tok.pad_token_id)]
    )
    rows = [{"prompt": p, "chosen": " good.", "rejected": " bad."} for p in prompts]
    data = tokenize_pairs(rows, bos_tok)
    ids = tokenize_prompts(bos_tok, prompts)
    assert all(i[0] == bos_tok.pad_token_id for i in ids)
    assert ids == [list(e.prompt_ids) for e in data.examples]
    assert tokenize_prompts(bos_tok, prompts, add_special_tokens=False)[0] == ids[0][1:]
    cut = tokenize_prompts(world_tok, prompts, max_prompt_length=2)
    assert cut[0] == tokenize_prompts(world_tok, prompts)[0][-2:]


def test_draw_tokens_inverse_cdf_temperature_and_top_p():
    logits = torch.log(torch.tensor([[0.1, 0.2, 0.3, 0.4]] * 4))
    u = torch.tensor([0.05, 0.15, 0.45, 0.95], dtype=torch.float64)
    assert draw_tokens(logits, u).tolist() == [0, 1, 2, 3]
    assert draw_tokens(logits, u, temperature=0.0).tolist() == [3, 3, 3, 3]
    # top_p 0.5: the mass before token 3 is 0, before token 2 is 0.4 < 0.5 → keep {3, 2}
    assert draw_tokens(logits, u, top_p=0.5).tolist() == [2, 2, 3, 3]
    assert draw_tokens(logits, u, top_p=0.01).tolist() == [3, 3, 3, 3]
    # a very low temperature is nearly greedy
    assert draw_tokens(logits, u, temperature=0.01).tolist() == [3, 3, 3, 3]


def test_sampling_frequencies_follow_the_model(model, world_tok):
    """One-token samples from the same prompt follow softmax(logits) (inverse CDF is exact)."""
    n = 4000
    u = sampling_uniforms(n, 1, seed=0)[:, 0]
    logits = torch.randn(1, 50, generator=torch.Generator().manual_seed(0)).expand(n, 50)
    drawn = draw_tokens(logits, torch.from_numpy(u))
    freq = np.bincount(drawn.numpy(), minlength=50) / n
    p = torch.softmax(logits[0].double(), -1).numpy()
    assert np.abs(freq - p).max() < 0.03


def test_sampling_options_and_their_keywords_are_one_setting(model, world_tok):
    """`sampling=Sampling(...)` and its fields as keywords sample the same; keywords replace
    the given options' fields; a keyword that is no field is refused."""
    prompts = ["Hi:", "Tell me:"]
    by_keywords = sample_completions(model, world_tok, prompts, num_samples=2, max_new_tokens=4, seed=3)
    options = Sampling(num_samples=2, max_new_tokens=4, seed=3)
    assert sample_completions(model, world_tok, prompts, sampling=options) == by_keywords
    other_seed = sample_completions(model, world_tok, prompts, sampling=options, seed=4)
    assert other_seed == sample_completions(model, world_tok, prompts, num_samples=2, max_new_tokens=4, seed=4)
    with pytest.raises(TypeError):
        sample_completions(model, world_tok, prompts, sampels=2)


def test_bad_arguments(model, world_tok):
    with pytest.raises(ValueError, match="zero tokens"):
        sample_completions(model, world_tok, ["ok", ""], max_new_tokens=2)
    with pytest.raises(ValueError, match="num_samples"):
        sample_completions(model, world_tok, ["ok"], num_samples=0)
    with pytest.raises(ValueError, match="top_p"):
        sample_completions(model, world_tok, ["ok"], top_p=0.0)
    with pytest.raises(ValueError, match="temperature"):
        sample_completions(model, world_tok, ["ok"], temperature=-1.0)
    with pytest.raises(TypeError):
        sample_completions(model, world_tok, "one string", max_new_tokens=2)
    with pytest.raises(ValueError, match="completions"):
        completion_log_likelihoods(model, world_tok, ["a", "b"], [[1]])


def test_completions_ended_at_eos_defaults_to_true():
    c = Completions(prompts=["p"], texts=["t"], token_ids=[[5]])
    assert c.ended_at_eos == [True]
    assert Completions(["p"], ["t"], [[5]], [False]).ended_at_eos == [False]


def test_model_mode_is_restored(model, world_tok):
    model.train()
    sample_completions(model, world_tok, ["Hi:"], max_new_tokens=2)
    completion_log_likelihoods(model, world_tok, ["Hi:"], [[5]])
    assert model.training
    model.eval()
