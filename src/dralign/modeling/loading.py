"""Loading and saving models and tokenizers (a folder, a Hub name or a GGUF file), LoRA
adapters, and attention-kernel capabilities."""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import warnings
from pathlib import Path
from typing import Any

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)
from transformers.pytorch_utils import Conv1D

from ..errors import BadInputError, BadOptionError, MissingExtraError, UnsupportedError
from .memory import limit_heap_retention

logger = logging.getLogger(__name__)

DTYPES: dict[str, str | torch.dtype] = {
    "auto": "auto",
    "float32": torch.float32,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
}


def resolve_dtype(dtype: str | torch.dtype) -> str | torch.dtype:
    """`"auto"` or a torch dtype, from a name in `DTYPES` or a torch dtype."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; choose one of {', '.join(DTYPES)}")
    return DTYPES[dtype]


GGUF_EXTRA = "pip install 'dralign[gguf]'"

# Deprecations that a user cannot act on, only these, by category and message: peft reads the
# model's `is_gradient_checkpointing` (transformers 5 renamed it). (The sampler passes the KV
# cache under the name the installed transformers takes: no `past_key_values` warning to hide.)
THIRD_PARTY_WARNINGS = ((FutureWarning, r"`is_gradient_checkpointing` is deprecated"),)


def quiet_third_party_warnings() -> None:
    """Ignore the warnings of `THIRD_PARTY_WARNINGS` (each by category and message start)."""
    for category, message in THIRD_PARTY_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category)


quiet_third_party_warnings()  # at import: every model dralign loads goes through this module


def is_gguf(name_or_path) -> bool:
    """Whether `name_or_path` names a GGUF file (by its `.gguf` suffix)."""
    return str(name_or_path).lower().endswith(".gguf")


def _gguf_location(path) -> tuple[str, dict]:
    """(folder, from_pretrained keyword arguments) of a local GGUF file, after checking that
    the file exists and that the `gguf` package is installed."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise FileNotFoundError(f"GGUF file {path} does not exist")
    try:
        import gguf  # noqa: F401  (transformers reads GGUF files with it)
    except ImportError:
        raise MissingExtraError(f"loading the GGUF file {path} needs the gguf package: {GGUF_EXTRA}") from None
    return str(file.parent), {"gguf_file": file.name}


class ModelNotFoundError(BadInputError, OSError):
    """A model name that is neither a local folder or file, nor in the Hugging Face cache, nor
    (asked once, without retries) on the hub; the message names the model."""


def check_model_exists(name_or_path: str) -> None:
    """Raise ModelNotFoundError naming `name_or_path` unless it can be loaded: a local path, a
    hub name in the local cache, or one the hub has. The hub is asked once (no retries, 10 s at
    most) and not at all under HF_HUB_OFFLINE=1: a missing model took 51 s of retried downloads
    (minutes with no network) and ended in a message that did not name it."""
    if Path(name_or_path).expanduser().exists():
        return
    from huggingface_hub import constants, model_info, try_to_load_from_cache
    from huggingface_hub.errors import HFValidationError, RepositoryNotFoundError

    where = f"model {name_or_path!r}"
    try:
        if isinstance(try_to_load_from_cache(name_or_path, "config.json"), str):
            return  # in the local Hugging Face cache
    except HFValidationError:
        raise ModelNotFoundError(
            f"{where}: no such local folder or file, and not a valid hub name (organisation/name)"
        ) from None
    if constants.HF_HUB_OFFLINE:
        raise ModelNotFoundError(
            f"{where}: no such local folder or file, and not in the Hugging "
            "Face cache (HF_HUB_OFFLINE is set, so the hub was not asked)"
        )
    try:
        model_info(name_or_path, timeout=10)
    except RepositoryNotFoundError:
        raise ModelNotFoundError(
            f"{where}: not found locally (no such folder or file, not in the "
            "Hugging Face cache) nor on the hub (a private model needs "
            "`huggingface-cli login`)"
        ) from None
    except Exception as err:  # no network, a proxy, a timeout: say so rather than retry for minutes
        reason = " ".join(str(err).split())[:120]
        raise ModelNotFoundError(
            f"{where}: not found locally (no such folder or file, not in the "
            f"Hugging Face cache), and the hub could not be asked ({reason})"
        ) from None


def load_model(
    name_or_path: str,
    *,
    dtype: str | torch.dtype = "auto",
    attn_implementation: str | None = None,
    gradient_checkpointing: bool = False,
    trust_remote_code: bool = False,
) -> PreTrainedModel:
    """A causal LM from a local folder, a Hub name or a local `.gguf` file (local ones need no
    network).

    `dtype` "auto" keeps the checkpoint's dtype (a GGUF file's quantised blocks are unpacked
    into float32). A GGUF model is dequantised at load into a plain model of that dtype, which
    trains and saves like any other (its `name_or_path` is the file, so that an adapter config
    names where the base came from). `attn_implementation` ("eager", "sdpa",
    "flash_attention_2", …; None: the library default) picks the attention kernel — WDPO's
    exact penalty needs "eager". With `gradient_checkpointing`, activations are recomputed in
    the backward (non-reentrant) and the KV cache is turned off.

    Every command that loads a model comes here: on glibc, freed tensors of 1 MiB and more are
    from now on given back to the system (`dralign.modeling.memory`; peak RSS, not speed).
    """
    limit_heap_retention()
    extra: dict[str, Any]
    source, extra = str(name_or_path), {}
    if is_gguf(name_or_path):
        source, extra = _gguf_location(name_or_path)
        from transformers import GgufConfig

        # dequantize=True unpacks every block at load and leaves no quantizer on the model:
        # a model flagged quantized cannot be trained in full nor saved with save_pretrained
        extra["quantization_config"] = GgufConfig(dequantize=True)
        if dtype == "auto":
            dtype = torch.float32  # the blocks have no float dtype of their own
    else:
        check_model_exists(source)
    model = AutoModelForCausalLM.from_pretrained(
        source,
        dtype=resolve_dtype(dtype),
        attn_implementation=attn_implementation,
        trust_remote_code=trust_remote_code,
        **extra,
    )
    if extra:
        model.name_or_path = str(Path(name_or_path).expanduser())
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


def load_tokenizer(name_or_path: str, *, trust_remote_code: bool = False) -> PreTrainedTokenizerBase:
    """The tokenizer of a model; when it has no pad token, eos is used for padding (logged).

    Padding tokens never enter a loss here (the completion mask excludes them), so reusing eos
    is safe.
    """
    extra: dict[str, Any]
    source, extra = str(name_or_path), {}
    if is_gguf(name_or_path):  # the vocabulary, merges and chat template live in the file
        source, extra = _gguf_location(name_or_path)
    else:
        check_model_exists(source)
    tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code, **extra)
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise ValueError(
                f"tokenizer of {name_or_path!r} has neither a pad nor an eos token; "
                "set tokenizer.pad_token before batching"
            )
        tokenizer.pad_token = tokenizer.eos_token
        logger.info("tokenizer of %s has no pad token; padding with eos %r", name_or_path, tokenizer.eos_token)
    return tokenizer


def vocabulary_fingerprint(tokenizer) -> str:
    """sha256 of what makes two tokenizers' ids mean the same text: the vocabulary (token →
    id, added tokens included) and the special tokens with their ids."""
    # not the pad token: padded positions are masked out, and a GGUF copy often sets another one
    special = {
        k: [str(v), tokenizer.convert_tokens_to_ids(v) if isinstance(v, str) else None]
        for k, v in sorted(tokenizer.special_tokens_map.items())
        if k != "pad_token"
    }
    state = {"vocab": sorted(tokenizer.get_vocab().items()), "special": special}
    return hashlib.sha256(json.dumps(state, sort_keys=True, default=str).encode()).hexdigest()


class TokenizerMismatchError(UnsupportedError):
    """A model and its reference whose tokenizers differ: their log-probs are of different texts."""


def check_same_tokenizer(
    model_tokenizer,
    reference_tokenizer,
    model: str,
    reference: str,
    flags: tuple[str, str] = ("--model", "--ref-model"),
) -> None:
    """Refuse a policy and a reference whose vocabularies or special tokens differ (a renumbered
    vocabulary of the same size included): log π − log π_ref compares ids, not words."""
    if vocabulary_fingerprint(model_tokenizer) == vocabulary_fingerprint(reference_tokenizer):
        return
    sizes = (len(model_tokenizer), len(reference_tokenizer))
    what = (
        f"{sizes[0]} vs {sizes[1]} tokens"
        if sizes[0] != sizes[1]
        else f"the same size, {sizes[0]} tokens, but other ids or special tokens"
    )
    raise TokenizerMismatchError(
        f"{flags[0]} {model} and {flags[1]} {reference} have different tokenizers "
        f"({what}); the reference must share the model's tokenizer"
    )


def save_model(
    model: PreTrainedModel, folder: str | Path, state_dict: dict | None = None, merge: bool | None = None
) -> None:
    """Write `model` as a folder that `from_pretrained` loads (safetensors); `state_dict`, when
    given, holds the full weights (gathered from FSDP shards by the caller).

    A LoRA adapter is merged into a copy of the base and the whole model saved when `merge`;
    otherwise the adapter alone is saved (`adapter_model.safetensors`, `adapter_config.json`
    naming its base). `merge` None: merged over a base loaded from a GGUF file (which an adapter
    config cannot name for `from_pretrained`), the adapter alone over any other base.
    """
    from peft import PeftModel

    if merge is None:
        merge = isinstance(model, PeftModel) and is_gguf(model.get_base_model().name_or_path)
    if isinstance(model, PeftModel) and merge:
        model = copy.deepcopy(model).merge_and_unload()  # a copy: the trained adapter stays as it was
    kwargs: dict[str, Any] = {"state_dict": state_dict} if state_dict else {}
    model.save_pretrained(folder, safe_serialization=True, **kwargs)


def apply_lora(
    model: PreTrainedModel,
    r: int = 8,
    alpha: int = 16,
    dropout: float = 0.0,
    target_modules: str | list[str] | None = None,
):
    """Wrap `model` in a PEFT LoRA adapter; only the adapter's parameters stay trainable.

    `target_modules` None adapts every linear layer but the output head ("all-linear"), which
    covers llama, qwen2 and gpt2 (whose `Conv1D` projections get `fan_in_fan_out`). Returns the
    `PeftModel`; `AdapterDisabledReference` turns it into its own reference.
    """
    from peft import LoraConfig, PeftModel, get_peft_model

    if isinstance(model, PeftModel):
        raise ValueError("model already has a PEFT adapter; apply LoRA to the base model")
    uses_conv1d = any(isinstance(m, Conv1D) for m in model.modules())  # gpt2 stores W transposed
    widest = max((min(m.weight.shape) for m in model.modules() if isinstance(m, (torch.nn.Linear, Conv1D))), default=0)
    if r > widest:  # a rank past min(in, out) adds nothing, and a huge one exhausted memory
        raise BadOptionError(
            f"lora_r (--lora-r) {r} is above the rank any layer of the model can "
            f"have ({widest}, its widest min(in, out)); choose at most {widest}"
        )
    config = LoraConfig(
        r=r,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=target_modules or "all-linear",
        task_type="CAUSAL_LM",
        fan_in_fan_out=uses_conv1d,
    )
    return get_peft_model(model, config)


def attention_supports_double_backward(model: torch.nn.Module) -> bool:
    """Whether the model's attention kernel can be differentiated twice (needed by WDPO's exact
    penalty): only "eager" attention can; SDPA and flash kernels have no double backward."""
    return getattr(model.config, "_attn_implementation", None) == "eager"
