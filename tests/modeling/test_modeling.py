"""Tests of dralign.modeling: log-probs, loading, LoRA, references, the reference cache."""

from __future__ import annotations

import logging
from functools import partial
from pathlib import Path

import pytest
import torch
import transformers

from dralign.modeling import (
    AdapterDisabledReference,
    CachedReference,
    FrozenReference,
    PairLogps,
    ReferenceCache,
    apply_lora,
    attention_supports_double_backward,
    build_reference_cache,
    completion_logps,
    eval_mode,
    load_model,
    load_tokenizer,
    model_fingerprint,
    pair_logps,
    sequence_logps,
    target_log_probs,
    unwrap,
)
from dralign.modeling.logps import supports_logits_mask
from dralign.modeling.tiny import ARCHITECTURES, tiny_model, tiny_tokenizer
from helpers import STORIES, VOCAB, make_batch


def model_inputs(batch):
    return batch["input_ids"], batch["attention_mask"], batch["completion_mask"]


def naive_sequence_logps(model, input_ids, attention_mask, completion_mask):
    """Reference implementation: full log_softmax, gather, mask, sum."""
    logits = model(input_ids=input_ids, attention_mask=attention_mask).logits[:, :-1]
    token_logps = torch.log_softmax(logits.double(), dim=-1).gather(2, input_ids[:, 1:, None]).squeeze(2)
    mask = completion_mask[:, 1:]
    return (token_logps * mask).sum(1), mask.sum(1)


@pytest.fixture(scope="module")
def float64_models():
    return {arch: tiny_model(arch, vocab_size=VOCAB, seed=1, dtype=torch.float64).eval() for arch in ARCHITECTURES}


# ---------------------------------------------------------------- log-probs


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_sequence_logps_equals_naive_reference(float64_models, arch):
    model = float64_models[arch]
    batch = make_batch([3, 5, 2, 4], [4, 2, 6, 1])
    assert supports_logits_mask(model)
    out = sequence_logps(model, *model_inputs(batch))
    want_sum, want_count = naive_sequence_logps(model, *model_inputs(batch))
    torch.testing.assert_close(out.sum, want_sum, rtol=0, atol=1e-10)
    assert out.count.tolist() == [4, 2, 6, 1] == want_count.tolist()
    torch.testing.assert_close(out.reduce(True), want_sum / want_count, rtol=0, atol=1e-10)


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_padding_does_not_change_a_sequence_logp(float64_models, arch):
    model = float64_models[arch]
    padded = make_batch([3, 6], [2, 7], length=20, seed=3)
    alone = {k: v[:1, :5] for k, v in padded.items() if k != "index"}
    in_batch = sequence_logps(model, padded["input_ids"], padded["attention_mask"], padded["completion_mask"])
    by_itself = sequence_logps(model, alone["input_ids"], alone["attention_mask"], alone["completion_mask"])
    torch.testing.assert_close(in_batch.sum[:1], by_itself.sum, rtol=0, atol=1e-10)
    assert in_batch.count[0] == by_itself.count[0] == 2


class _NoLogitsMaskModel(torch.nn.Module):
    """A model whose forward has no `logits_to_keep`: exercises the logits-then-slice path."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, input_ids=None, attention_mask=None, use_cache=None, inputs_embeds=None):
        return self.inner(
            input_ids=input_ids, attention_mask=attention_mask, use_cache=use_cache, inputs_embeds=inputs_embeds
        )


def test_model_without_logits_mask_gives_the_same_logps(float64_models):
    model = float64_models["llama"]
    wrapped = _NoLogitsMaskModel(model)
    assert not supports_logits_mask(wrapped)
    batch = make_batch([2, 4], [5, 3])
    args = (batch["input_ids"], batch["attention_mask"], batch["completion_mask"])
    torch.testing.assert_close(sequence_logps(wrapped, *args).sum, sequence_logps(model, *args).sum, rtol=0, atol=1e-10)


def test_inputs_embeds_replace_the_embedding_lookup(float64_models):
    model = float64_models["qwen2"]
    batch = make_batch([2, 4], [5, 3])
    args = (batch["input_ids"], batch["attention_mask"], batch["completion_mask"])
    embeds = model.get_input_embeddings()(batch["input_ids"])
    torch.testing.assert_close(
        sequence_logps(model, *args, inputs_embeds=embeds).sum, sequence_logps(model, *args).sum, rtol=0, atol=1e-12
    )


def test_pair_logps_splits_chosen_then_rejected(float64_models):
    model = float64_models["gpt2"]
    batch = make_batch([3, 2, 3, 2], [2, 4, 5, 1])
    full = sequence_logps(model, *model_inputs(batch))
    chosen_sum, rejected_sum, chosen_count, rejected_count = pair_logps(model, batch)
    assert torch.equal(chosen_sum, full.sum[:2]) and torch.equal(rejected_sum, full.sum[2:])
    assert chosen_count.tolist() == [2, 4] and rejected_count.tolist() == [5, 1]


def test_completion_at_position_zero_is_refused(float64_models):
    batch = make_batch([2], [3])
    batch["completion_mask"][0, 0] = True
    with pytest.raises(ValueError, match="position 0"):
        sequence_logps(float64_models["llama"], batch["input_ids"], batch["attention_mask"], batch["completion_mask"])


def test_target_log_probs_is_exact_and_twice_differentiable():
    chunked = partial(target_log_probs, chunk_elements=20)  # several chunks of 2 rows
    logits = torch.randn(7, 9, dtype=torch.float64, requires_grad=True)
    targets = torch.randint(0, 9, (7,))
    want = torch.log_softmax(logits, -1).gather(1, targets[:, None]).squeeze(1)
    torch.testing.assert_close(chunked(logits, targets), want, rtol=0, atol=1e-12)
    assert torch.autograd.gradcheck(chunked, (logits, targets))
    assert torch.autograd.gradgradcheck(chunked, (logits, targets))


def test_bfloat16_logits_give_float32_logps_and_bfloat16_grads():
    logits = torch.randn(5, 11).bfloat16().requires_grad_()
    targets = torch.randint(0, 11, (5,))
    out = target_log_probs(logits, targets)
    assert out.dtype == torch.float32
    want = torch.log_softmax(logits.float(), -1).gather(1, targets[:, None]).squeeze(1)
    torch.testing.assert_close(out, want)
    out.sum().backward()
    assert logits.grad.dtype == torch.bfloat16


def test_bfloat16_model_logps_are_float32():
    model = tiny_model("llama", vocab_size=VOCAB, seed=1, dtype=torch.bfloat16).eval()
    batch = make_batch([3, 2], [4, 4])
    out = sequence_logps(model, *model_inputs(batch))
    assert out.sum.dtype == torch.float32 and torch.isfinite(out.sum).all()


def test_eager_attention_supports_double_backward_and_sdpa_is_reported_not_to():
    eager = tiny_model("llama", vocab_size=VOCAB, attn_implementation="eager")
    assert attention_supports_double_backward(eager)
    assert attention_supports_double_backward(apply_lora(eager))
    assert not attention_supports_double_backward(tiny_model("llama", vocab_size=VOCAB, attn_implementation="sdpa"))
    # The exact WDPO penalty differentiates ‖∇_z ℓ‖² with respect to the weights.
    model = tiny_model("gpt2", vocab_size=VOCAB, attn_implementation="eager").eval()
    batch = make_batch([2, 3], [3, 2])
    embeds = model.get_input_embeddings()(batch["input_ids"]).detach().requires_grad_()
    out = sequence_logps(
        model, batch["input_ids"], batch["attention_mask"], batch["completion_mask"], inputs_embeds=embeds
    )
    (grad_z,) = torch.autograd.grad(out.sum.sum(), embeds, create_graph=True)
    grad_z.pow(2).sum().backward()
    assert model.lm_head.weight.grad.abs().sum() > 0


# ---------------------------------------------------------------- loading and LoRA


def test_load_model_and_tokenizer_from_a_tiny_folder(tiny_model_dir):
    folder = tiny_model_dir("qwen2")
    model = load_model(folder, dtype="bfloat16", attn_implementation="eager", gradient_checkpointing=True)
    assert model.dtype == torch.bfloat16
    assert model.config._attn_implementation == "eager"
    assert model.is_activation_checkpointing and model.config.use_cache is False
    assert load_model(folder).dtype == torch.float32  # "auto": the checkpoint's dtype
    tokenizer = load_tokenizer(folder)
    assert tokenizer.pad_token == "<|pad|>"
    with pytest.raises(ValueError, match="unknown dtype"):
        load_model(folder, dtype="float8")


def test_load_tokenizer_pads_with_eos_when_unset(tmp_path, caplog):
    tokenizer = tiny_tokenizer()
    tokenizer.pad_token = None
    tokenizer.save_pretrained(tmp_path)
    with caplog.at_level(logging.INFO, logger="dralign.modeling.loading"):
        loaded = load_tokenizer(str(tmp_path))
    assert loaded.pad_token == loaded.eos_token == "<|endoftext|>"
    assert "no pad token" in caplog.text


@pytest.mark.skipif(not STORIES.is_dir(), reason=f"stories260K not present at {STORIES}")
def test_load_stories260k_offline():
    model = load_model(str(STORIES), dtype="float32")
    tokenizer = load_tokenizer(str(STORIES))
    ids = tokenizer(["Once upon a time there was a little girl."], return_tensors="pt")["input_ids"]
    completion = torch.zeros_like(ids, dtype=torch.bool)
    completion[:, 4:] = True
    out = sequence_logps(model.eval(), ids, torch.ones_like(ids), completion)
    # A trained model finds its own domain far likelier than uniform (log 512 ≈ 6.2 per token).
    assert (out.sum / out.count).item() > -4.0


ADAPTED = {
    "llama": {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"},
    "qwen2": {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"},
    "gpt2": {"c_attn", "c_proj", "c_fc"},
}


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_apply_lora_trains_only_the_adapter(arch):
    model = apply_lora(tiny_model(arch, vocab_size=VOCAB), r=4, alpha=8)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    frozen = [n for n, p in model.named_parameters() if not p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    assert frozen and not any("lora_" in n for n in frozen)
    # names end in <layer>.lora_A.default.weight: every attention and MLP projection is adapted
    assert {n.split(".")[-3] for n in trainable} == {"lora_A", "lora_B"}
    assert {n.split(".")[-4] for n in trainable} == ADAPTED[arch]
    with pytest.raises(ValueError, match="already has a PEFT adapter"):
        apply_lora(model)


# ---------------------------------------------------------------- references


def _perturb_(model, scale=0.05, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(scale * torch.randn(p.shape, generator=g, dtype=p.dtype))


def test_frozen_reference_keeps_the_start_weights():
    policy = tiny_model("llama", vocab_size=VOCAB, seed=2, dtype=torch.float64)
    batch = make_batch([3, 2, 4, 2], [2, 3, 1, 4])
    start = pair_logps(policy.eval(), batch)
    reference = FrozenReference.from_policy(policy.train())
    _perturb_(policy)
    ref = reference.logps(batch)
    for got, want in zip(ref, start):
        torch.testing.assert_close(got, want.detach(), rtol=0, atol=1e-12)
    assert not ref.chosen_sum.requires_grad
    assert not any(p.requires_grad for p in reference.model.parameters())
    assert policy.training and not reference.model.training


def test_adapter_disabled_reference_is_the_base_model():
    base = tiny_model("gpt2", vocab_size=VOCAB, seed=2, dtype=torch.float64)
    batch = make_batch([3, 2, 4, 2], [2, 3, 1, 4])
    base_logps = pair_logps(base.eval(), batch)
    policy = apply_lora(base, r=4)
    _perturb_(policy)  # the adapter now changes the policy
    policy.train()
    ref = AdapterDisabledReference(policy).logps(batch)
    for got, want in zip(ref, base_logps):
        torch.testing.assert_close(got, want.detach(), rtol=0, atol=1e-12)
    assert policy.training  # the policy's mode is restored
    assert not torch.allclose(pair_logps(policy.eval(), batch).chosen_sum, ref.chosen_sum)
    with pytest.raises(TypeError, match="not a PEFT model"):
        AdapterDisabledReference(base)


# ---------------------------------------------------------------- reference cache


@pytest.fixture()
def reference_and_batches():
    model = tiny_model("llama", vocab_size=VOCAB, seed=4)
    batches = []
    for k in range(3):
        batch = make_batch([2, 3, 4, 2], [3, 2, 2, 5], seed=k)
        batch["index"] = torch.tensor([2 * k + 1, 2 * k])  # out of order on purpose
        batches.append(batch)
    return FrozenReference(model), batches


def build(reference, batches, path, fingerprint, **kwargs):
    """The one cache builder over ready-made batches (one per collate call)."""
    return build_reference_cache(
        reference.model,
        batches,
        lambda data, idx: data[idx[0]],
        path,
        fingerprint,
        batch_size=1,
        log=lambda *_: None,
        **kwargs,
    )


def test_cache_values_equal_the_live_reference(tmp_path, reference_and_batches):
    reference, batches = reference_and_batches
    built = build(reference, batches, tmp_path, "fp-1", progress=True)
    assert len(built) == 6
    loaded = ReferenceCache.load(tmp_path, "fp-1")
    assert loaded is not None
    cached = CachedReference(loaded)
    for batch in batches:
        for got, want in zip(cached.logps(batch), reference.logps(batch)):
            assert torch.equal(got, want)
    assert [p.name for p in tmp_path.iterdir()] == [ReferenceCache.file_for(tmp_path, "fp-1").name]


def test_cache_with_another_fingerprint_is_not_used(tmp_path, reference_and_batches):
    reference, batches = reference_and_batches
    built = build(reference, batches, tmp_path, "fp-1")
    assert ReferenceCache.load(tmp_path, "fp-2") is None
    assert ReferenceCache.load(tmp_path / "missing", "fp-1") is None
    # A file whose stored fingerprint disagrees with its name is refused too.
    ReferenceCache.file_for(tmp_path, "fp-1").rename(ReferenceCache.file_for(tmp_path, "fp-3"))
    assert ReferenceCache.load(tmp_path, "fp-3") is None
    assert built.fingerprint == "fp-1"


def test_cached_reference_never_constructs_a_model(tmp_path, reference_and_batches, monkeypatch):
    reference, batches = reference_and_batches
    build(reference, batches, tmp_path, "fp")

    def refuse(*args, **kwargs):
        raise AssertionError("a model was constructed")

    monkeypatch.setattr(transformers.PreTrainedModel, "__init__", refuse)
    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", refuse)
    cached = CachedReference(ReferenceCache.load(tmp_path, "fp"))
    out = cached.logps({"index": torch.tensor([5, 0])})
    assert out.chosen_sum.shape == (2,)


def test_cache_refuses_examples_it_does_not_hold(tmp_path, reference_and_batches):
    reference, batches = reference_and_batches
    cache = build(reference, batches[1:], tmp_path, "fp")  # examples 2..5
    with pytest.raises(KeyError, match="not in the reference cache"):
        CachedReference(cache).logps({"index": torch.tensor([0, 3])})
    with pytest.raises(KeyError, match="outside the reference cache"):
        CachedReference(cache).logps({"index": torch.tensor([9])})


def test_model_fingerprint_tracks_weights_and_config(tiny_model_dir):
    folder_a = tiny_model_dir("llama", seed=0)
    folder_b = tiny_model_dir("llama", seed=1)
    assert model_fingerprint(folder_a) == model_fingerprint(Path(folder_a))
    assert model_fingerprint(folder_a) != model_fingerprint(folder_b)
    assert model_fingerprint("org/some-model") != model_fingerprint("org/other-model")

    model = tiny_model("gpt2", vocab_size=VOCAB, seed=0)
    before = model_fingerprint(model)
    assert before == model_fingerprint(tiny_model("gpt2", vocab_size=VOCAB, seed=0))
    with torch.no_grad():
        model.transformer.h[0].mlp.c_fc.weight[3, 5] += 1e-3
    assert model_fingerprint(model) != before


def _values_offset(file):
    """Where the tensor bytes of a safetensors file start (8-byte header size, then JSON)."""
    return 8 + int.from_bytes(file.read_bytes()[:8], "little")


def test_truncated_cache_is_refused_with_one_line_and_rebuilt(tmp_path, reference_and_batches, caplog):
    reference, batches = reference_and_batches
    build(reference, batches, tmp_path, "fp")
    file = ReferenceCache.file_for(tmp_path, "fp")
    file.write_bytes(file.read_bytes()[:-20])
    with caplog.at_level(logging.WARNING, logger="dralign.modeling.cache"):
        assert ReferenceCache.load(tmp_path, "fp") is None
    [record] = caplog.records
    assert "unreadable" in record.getMessage() and "rebuilt" in record.getMessage()
    assert "\n" not in record.getMessage() and record.exc_info is None
    build(reference, batches, tmp_path, "fp")  # what the trainer does next
    assert ReferenceCache.load(tmp_path, "fp") is not None


def test_altered_cache_values_fail_the_checksum(tmp_path, reference_and_batches, caplog):
    reference, batches = reference_and_batches
    built = build(reference, batches, tmp_path, "fp")
    file = ReferenceCache.file_for(tmp_path, "fp")
    data = bytearray(file.read_bytes())
    start = _values_offset(file)
    data[start + 4 : start + 8] = bytes(b ^ 0x5A for b in data[start + 4 : start + 8])
    file.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING, logger="dralign.modeling.cache"):
        assert ReferenceCache.load(tmp_path, "fp") is None
    assert "failed verification" in caplog.text
    # the intact file loads, with exactly the values built
    built.save(tmp_path)
    loaded = ReferenceCache.load(tmp_path, "fp")
    assert all(torch.equal(getattr(loaded, f), getattr(built, f)) for f in PairLogps._fields)


def test_cache_of_unpaired_data_reads_back_split_by_label(tmp_path):
    model = tiny_model("llama", vocab_size=VOCAB, seed=4)
    batch = make_batch([2, 3, 4, 2], [3, 2, 2, 5], seed=0)
    batch["index"] = torch.tensor([0, 1, 2, 3])
    batch["label"] = torch.tensor([True, False, False, True])
    cache = build(FrozenReference(model), [batch], tmp_path, "fp")
    seq = sequence_logps(model.eval(), batch["input_ids"], batch["attention_mask"], batch["completion_mask"])
    out = CachedReference(cache).logps(batch)
    assert torch.allclose(out.chosen_sum, seq.sum[[0, 3]]) and torch.allclose(out.rejected_sum, seq.sum[[1, 2]])
    assert out.chosen_count.tolist() == seq.count[[0, 3]].tolist()


def test_length_normalisation_by_hand():
    lp = PairLogps(torch.tensor([-6.0, -1.0]), torch.tensor([-4.0, 0.0]), torch.tensor([3, 2]), torch.tensor([2, 0]))
    assert lp.reduce(False) == (lp.chosen_sum, lp.rejected_sum)
    chosen, rejected = lp.reduce(True)
    assert chosen.tolist() == [-2.0, -0.5] and rejected.tolist() == [-2.0, 0.0]  # count 0 -> 0


def test_completion_logps_sums_counts_and_ld_alpha():
    per_token = torch.tensor([[-1.0, -1.0, -1.0], [-1.0, -1.0, float("-inf")]])
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    out = completion_logps(per_token, mask)
    assert out.sum.tolist() == [-3.0, -2.0] and out.count.tolist() == [3, 2]
    # LD-DPO: the chosen row's third token is past the rejected one's length: it counts 0.5
    assert completion_logps(per_token, mask, ld_alpha=0.5).sum.tolist() == [-2.5, -2.0]


def test_eval_mode_restores_the_mode_and_unwrap_finds_the_model():
    model = tiny_model("gpt2", vocab_size=VOCAB).train()
    with pytest.raises(RuntimeError):
        with eval_mode(model):
            assert not model.training
            raise RuntimeError
    assert model.training
    assert unwrap(model) is model
    lora = apply_lora(model, r=2)
    assert unwrap(lora) is lora.get_base_model()
