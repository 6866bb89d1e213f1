"""Loading models and tokenizers, LoRA adapters, and attention-kernel capabilities."""

from __future__ import annotations

import logging

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)
from transformers.pytorch_utils import Conv1D

logger = logging.getLogger(__name__)

DTYPES = {"auto": "auto", "float32": torch.float32, "bfloat16": torch.bfloat16,
          "float16": torch.float16}


def resolve_dtype(dtype: str | torch.dtype) -> str | torch.dtype:
    """`"auto"` or a torch dtype, from a name in `DTYPES` or a torch dtype."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; choose one of {', '.join(DTYPES)}")
    return DTYPES[dtype]


def load_model(name_or_path: str, *, dtype: str | torch.dtype = "auto",
               attn_implementation: str | None = None, gradient_checkpointing: bool = False,
               trust_remote_code: bool = False) -> PreTrainedModel:
    """A causal LM from a local folder or a Hub name (a local folder needs no network).

    `dtype` "auto" keeps the checkpoint's dtype. `attn_implementation` ("eager", "sdpa",
    "flash_attention_2", …; None: the library default) picks the attention kernel — WDPO's
    exact penalty needs "eager". With `gradient_checkpointing`, activations are recomputed in
    the backward (non-reentrant) and the KV cache is turned off.
    """
    model = AutoModelForCausalLM.from_pretrained(
        name_or_path, dtype=resolve_dtype(dtype), attn_implementation=attn_implementation,
        trust_remote_code=trust_remote_code)
    if gradient_checkpointing:
        enable_gradient_checkpointing(model)
    return model


def enable_gradient_checkpointing(model: PreTrainedModel) -> None:
    """Non-reentrant activation checkpointing, with the KV cache (useless in training) off."""
    kwargs = {"use_reentrant": False}
    if hasattr(model, "activation_checkpointing_enable"):  # transformers ≥ 5.23
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    model.config.use_cache = False


def load_tokenizer(name_or_path: str, *,
                   trust_remote_code: bool = False) -> PreTrainedTokenizerBase:
    """The tokenizer of a model; when it has no pad token, eos is used for padding (logged).

    Padding tokens never enter a loss here (the completion mask excludes them), so reusing eos
    is safe.
    """
    tokenizer = AutoTokenizer.from_pretrained(name_or_path, trust_remote_code=trust_remote_code)
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise ValueError(f"tokenizer of {name_or_path!r} has neither a pad nor an eos token; "
                             "set tokenizer.pad_token before batching")
        tokenizer.pad_token = tokenizer.eos_token
        logger.info("tokenizer of %s has no pad token; padding with eos %r",
                    name_or_path, tokenizer.eos_token)
    return tokenizer


def apply_lora(model: PreTrainedModel, r: int = 8, alpha: int = 16, dropout: float = 0.0,
               target_modules: str | list[str] | None = None):
    """Wrap `model` in a PEFT LoRA adapter; only the adapter's parameters stay trainable.

    `target_modules` None adapts every linear layer but the output head ("all-linear"), which
    covers llama, qwen2 and gpt2 (whose `Conv1D` projections get `fan_in_fan_out`). Returns the
    `PeftModel`; `AdapterDisabledReference` turns it into its own reference.
    """
    from peft import LoraConfig, PeftModel, get_peft_model

    if isinstance(model, PeftModel):
        raise ValueError("model already has a PEFT adapter; apply LoRA to the base model")
    uses_conv1d = any(isinstance(m, Conv1D) for m in model.modules())  # gpt2 stores W transposed
    config = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout,
                        target_modules=target_modules or "all-linear", task_type="CAUSAL_LM",
                        fan_in_fan_out=uses_conv1d)
    return get_peft_model(model, config)


def attention_supports_double_backward(model: torch.nn.Module) -> bool:
    """Whether the model's attention kernel can be differentiated twice (needed by WDPO's exact
    penalty): only "eager" attention can; SDPA and flash kernels have no double backward."""
    return getattr(model.config, "_attn_implementation", None) == "eager"
