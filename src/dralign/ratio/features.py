"""Frozen text features for the density-ratio classifier.

`response_features` — the default features: a causal LM (normally the reference model)
reads ``[BOS] + prompt + response`` and the *final hidden states* (the output of the last
decoder block after the final norm, i.e. what the LM head reads) are averaged over the
**response token positions only**. The prompt is context (every response position attends to
it) but its positions are not pooled. Details, so that features are reproducible:

* prompt and response are tokenized separately, without special tokens, and concatenated;
  a BOS token is prepended when the tokenizer normally adds one (e.g. Llama);
* when the sequence exceeds `max_length`, the prompt is truncated from the *left* (its end,
  nearest the response, is kept); a response longer than the budget keeps its first tokens
  and then the prompt is dropped entirely;
* an empty response has no positions to pool: the last context position is pooled instead
  (a row whose prompt and response are both empty reads a single EOS token);
* no gradient, `model.eval()` for the pass (the training flag is restored), float32 output.

`encoder_features` — any Hugging Face `AutoModel` encoder (BERT-like; the encoder of an
encoder-decoder) by name or path: the tokenizer's pair encoding of (prompt, response),
truncated ``longest_first`` to `max_length`, mean-pooled over all non-padding tokens of the
last hidden state.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..modeling.wrappers import eval_mode


def _check_texts(texts_prompt: Sequence[str], texts_response: Sequence[str]):
    if len(texts_prompt) != len(texts_response):
        raise ValueError(f"{len(texts_prompt)} prompts but {len(texts_response)} responses")
    for name, texts in (("prompt", texts_prompt), ("response", texts_response)):
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise TypeError(f"{name} {i} is {type(t).__name__}, expected str")


def _device_of(model) -> torch.device:
    try:
        return next(model.parameters()).device
    except StopIteration:  # pragma: no cover
        return torch.device("cpu")


def _bos_prefix(tokenizer) -> list[int]:
    bos = getattr(tokenizer, "bos_token_id", None)
    if bos is None:
        return []
    ids = tokenizer("a", add_special_tokens=True)["input_ids"]
    return [bos] if ids and ids[0] == bos else []


def _backbone(model):
    prefix = getattr(model, "base_model_prefix", None)
    sub = getattr(model, prefix, None) if prefix else None
    return sub if isinstance(sub, torch.nn.Module) and sub is not model else None


def _last_hidden(model, backbone, input_ids, attention_mask) -> torch.Tensor:
    if backbone is not None:
        out = backbone(input_ids=input_ids, attention_mask=attention_mask)
        h = getattr(out, "last_hidden_state", None)
        return h if h is not None else out[0]
    out = model(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True)
    return out.hidden_states[-1]


def _batches(n: int, batch_size: int, progress: bool, description: str):
    """Batch start indices, with a progress bar when asked (long on real data and CPU)."""
    starts = range(0, n, batch_size)
    if progress:
        from ..console import track  # a bar on a terminal, plain lines in a log

        return track(starts, description, unit="batch")
    return starts


@torch.no_grad()
def response_features(
    texts_prompt: Sequence[str],
    texts_response: Sequence[str],
    model,
    tokenizer,
    *,
    batch_size: int = 16,
    max_length: int = 256,
    progress: bool = False,
) -> torch.Tensor:
    """Mean-pooled final hidden states of a causal LM over the response tokens → float32 [N, H].

    See the module docstring for exactly what is tokenized, truncated and pooled.
    """
    _check_texts(texts_prompt, texts_response)
    n = len(texts_prompt)
    if max_length < 2:
        raise ValueError("max_length must be >= 2")
    prefix = _bos_prefix(tokenizer)
    eos = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else 0
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    if n == 0:
        hidden = getattr(getattr(model, "config", None), "hidden_size", 0)
        return torch.zeros(0, hidden)
    p_ids = tokenizer(list(texts_prompt), add_special_tokens=False, verbose=False)["input_ids"]
    r_ids = tokenizer(list(texts_response), add_special_tokens=False, verbose=False)["input_ids"]

    seqs, starts = [], []  # token ids, index of the first pooled position
    budget = max_length - len(prefix)
    for p, r in zip(p_ids, r_ids):
        r = list(r)[:budget]
        room = budget - len(r)
        p = list(p)[len(p) - room :] if room > 0 else []
        ctx = prefix + p
        if r:
            seqs.append(ctx + r)
            starts.append(len(ctx))
        elif ctx:
            seqs.append(ctx)
            starts.append(len(ctx) - 1)
        else:
            seqs.append([eos])
            starts.append(0)

    device = _device_of(model)
    backbone = _backbone(model)
    order = sorted(range(n), key=lambda i: len(seqs[i]))
    out = torch.empty(n, 0)
    with eval_mode(model):
        for b in _batches(n, batch_size, progress, "ratio features"):
            idx = order[b : b + batch_size]
            width = max(len(seqs[i]) for i in idx)
            ids = torch.full((len(idx), width), pad, dtype=torch.long)
            attn = torch.zeros(len(idx), width, dtype=torch.long)
            pool = torch.zeros(len(idx), width, dtype=torch.float32)
            for j, i in enumerate(idx):
                L = len(seqs[i])
                ids[j, :L] = torch.tensor(seqs[i])
                attn[j, :L] = 1
                pool[j, starts[i] : L] = 1.0
            h = _last_hidden(model, backbone, ids.to(device), attn.to(device)).float().cpu()
            feats = (h * pool[..., None]).sum(1) / pool.sum(1, keepdim=True)
            if out.shape[1] == 0:
                out = torch.empty(n, feats.shape[1])
            out[idx] = feats
    return out


def load_encoder(encoder_name: str):
    """`(AutoModel, AutoTokenizer)` for an encoder name or local path, in eval mode."""
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(encoder_name)
    model = AutoModel.from_pretrained(encoder_name)
    model.eval()
    return model, tokenizer


@torch.no_grad()
def encoder_features(
    texts_prompt: Sequence[str],
    texts_response: Sequence[str],
    encoder_name: str | None = None,
    *,
    model=None,
    tokenizer=None,
    batch_size: int = 16,
    max_length: int = 256,
    progress: bool = False,
) -> torch.Tensor:
    """Mean-pooled last hidden states of a Hugging Face encoder over (prompt, response) → [N, H].

    Give `encoder_name` (hub name or local folder, loaded with `AutoModel`/`AutoTokenizer`),
    or an already loaded `model` and `tokenizer`.
    """
    _check_texts(texts_prompt, texts_response)
    if model is None or tokenizer is None:
        if encoder_name is None:
            raise ValueError("encoder_features needs encoder_name or both model and tokenizer")
        loaded_model, loaded_tok = load_encoder(encoder_name)
        model = model if model is not None else loaded_model
        tokenizer = tokenizer if tokenizer is not None else loaded_tok
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    encoder = (
        model.get_encoder()
        if hasattr(model, "get_encoder") and getattr(model.config, "is_encoder_decoder", False)
        else model
    )
    device = _device_of(model)
    n = len(texts_prompt)
    chunks = []
    with eval_mode(model):
        for b in _batches(n, batch_size, progress, "ratio features"):
            enc = tokenizer(
                list(texts_prompt[b : b + batch_size]),
                list(texts_response[b : b + batch_size]),
                truncation="longest_first",
                max_length=max_length,
                padding=True,
                return_tensors="pt",
            )
            attn = enc["attention_mask"]
            kwargs = {"input_ids": enc["input_ids"].to(device), "attention_mask": attn.to(device)}
            if "token_type_ids" in enc and "token_type_ids" in _forward_args(encoder):
                kwargs["token_type_ids"] = enc["token_type_ids"].to(device)
            out = encoder(**kwargs)
            h = (out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]).float().cpu()
            m = attn.float()[..., None]
            chunks.append((h * m).sum(1) / m.sum(1).clamp_min(1.0))
    if not chunks:
        return torch.zeros(0, getattr(model.config, "hidden_size", 0))
    return torch.cat(chunks)


def _forward_args(module) -> set[str]:
    import inspect

    try:
        return set(inspect.signature(module.forward).parameters)
    except (TypeError, ValueError):  # pragma: no cover
        return set()
