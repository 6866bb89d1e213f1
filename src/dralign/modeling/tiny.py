"""Tiny models and tokenizers built offline, for tests, the demo and the shift world.

Nothing here downloads: tokenizers are trained on the fly with 🤗 `tokenizers`, models are
built from configs with random weights.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from transformers import (
    AutoModelForCausalLM,
    GPT2Config,
    LlamaConfig,
    PreTrainedModel,
    PreTrainedTokenizerFast,
    Qwen2Config,
)

ARCHITECTURES = ("llama", "gpt2", "qwen2")

_DEFAULT_CORPUS = (
    "The quick brown fox jumps over the lazy dog. A happy child reads a good book. "
    "Please answer the question politely and briefly. The weather is terrible today. "
    "Human: what is two plus two? Assistant: Two plus two is four. Thank you very much! "
    "0123456789 ,.;:!?'\"()[]{}<>-_=+*/\\|@#$%^&~`\n\t"
)

# A minimal chat template so that conversational data can be rendered offline.
CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}{{ eos_token }}{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def tiny_tokenizer(
    texts: Iterable[str] | None = None, vocab_size: int = 384, chat_template: bool = True
) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer trained on `texts` (default: a small built-in corpus).

    Byte-level, so every string round-trips; deterministic for the same texts.
    Special tokens: `<|endoftext|>` (eos), `<|pad|>` (pad).
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    corpus = list(texts) if texts is not None else [_DEFAULT_CORPUS] * 4
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<|endoftext|>", "<|pad|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(corpus, trainer)
    tok = PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<|endoftext|>", pad_token="<|pad|>")
    if chat_template:
        tok.chat_template = CHAT_TEMPLATE
    return tok


def tiny_config(
    arch: str,
    vocab_size: int,
    hidden: int = 64,
    layers: int = 2,
    heads: int = 4,
    max_positions: int = 512,
    tie_embeddings: bool = False,
):
    """A small config of a real architecture (`llama`, `gpt2` or `qwen2`)."""
    if arch == "llama":
        return LlamaConfig(
            vocab_size=vocab_size,
            hidden_size=hidden,
            intermediate_size=2 * hidden,
            num_hidden_layers=layers,
            num_attention_heads=heads,
            num_key_value_heads=max(1, heads // 2),
            max_position_embeddings=max_positions,
            tie_word_embeddings=tie_embeddings,
        )
    if arch == "qwen2":
        return Qwen2Config(
            vocab_size=vocab_size,
            hidden_size=hidden,
            intermediate_size=2 * hidden,
            num_hidden_layers=layers,
            num_attention_heads=heads,
            num_key_value_heads=max(1, heads // 2),
            max_position_embeddings=max_positions,
            tie_word_embeddings=tie_embeddings,
        )
    if arch == "gpt2":
        return GPT2Config(
            vocab_size=vocab_size,
            n_embd=hidden,
            n_layer=layers,
            n_head=heads,
            n_positions=max_positions,
            tie_word_embeddings=tie_embeddings,
            bos_token_id=0,
            eos_token_id=0,
        )
    raise ValueError(f"unknown architecture {arch!r}; choose one of {', '.join(ARCHITECTURES)}")


def tiny_model(
    arch: str = "llama",
    vocab_size: int = 384,
    seed: int = 0,
    attn_implementation: str = "sdpa",
    dtype: torch.dtype = torch.float32,
    **config_kwargs,
) -> PreTrainedModel:
    """A randomly initialised causal LM of `arch`, deterministic for `seed`."""
    config = tiny_config(arch, vocab_size, **config_kwargs)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, attn_implementation=attn_implementation)
    return model.to(dtype)


def save_tiny(path, arch: str = "llama", seed: int = 0, texts: Iterable[str] | None = None, **config_kwargs) -> str:
    """Write a tiny model and its tokenizer to `path` as a Hugging Face folder; returns `path`."""
    tok = tiny_tokenizer(texts)
    model = tiny_model(arch, vocab_size=len(tok), seed=seed, **config_kwargs)
    model.config.eos_token_id = tok.eos_token_id
    model.config.pad_token_id = tok.pad_token_id
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return str(path)
