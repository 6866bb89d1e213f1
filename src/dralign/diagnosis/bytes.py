"""The byte tokenizer of `dralign diagnose` (lengths in UTF-8 bytes when neither --model nor
--tokenizer is given), with a fast path for the loader: its ids are a table lookup of the bytes."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from transformers import PreTrainedTokenizerFast

# every byte UTF-8 holds: U+0000–U+07FF (one- and two-byte characters, every continuation byte),
# then a character of each three-byte lead (E0–EF) and each four-byte lead (F0–F4)
_ALL_BYTES = "".join(
    map(chr, [*range(0x800), 0x800, *range(0x1000, 0x10000, 0x1000), 0x10000, 0x40000, 0x80000, 0xC0000, 0x100000])
)


class ByteTokenizer(PreTrainedTokenizerFast):
    """A fast tokenizer whose tokens are UTF-8 bytes, plus its added tokens (`byte_tokenizer`)."""

    _table: np.ndarray | None = None

    def byte_table(self) -> np.ndarray:
        """Each byte's id, read from the tokenizer itself (−1 for bytes UTF-8 never holds)."""
        if self._table is None:
            ids = self.backend_tokenizer.encode(_ALL_BYTES, add_special_tokens=False).ids
            data = np.frombuffer(_ALL_BYTES.encode("utf-8"), np.uint8)
            if len(ids) != len(data):
                raise ValueError("not a byte tokenizer: its tokens are not the UTF-8 bytes")
            table = np.full(256, -1, np.int64)
            table[data] = ids
            if (table[data] != ids).any():
                raise ValueError("not a byte tokenizer: a byte has two ids")
            self._table = table
        return self._table

    def encode_flat(self, texts: Sequence[str], add_special_tokens: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """(ids of `texts` one after the other, each text's length): what
        ``self(texts, add_special_tokens=...)["input_ids"]`` holds, as arrays. A text holding an
        added token's string, or one that is not valid UTF-8, goes through the tokenizer."""
        texts = list(texts)
        added = list(self.get_added_vocab())
        joined = "\x00".join(texts)  # an added token found here lies within one text (none holds \x00)
        odd = [i for i, t in enumerate(texts) if any(a in t for a in added)] if any(a in joined for a in added) else []
        skip = set(odd)
        try:
            encoded = [b"" if i in skip else t.encode("utf-8") for i, t in enumerate(texts)]
        except UnicodeEncodeError:
            odd, encoded = list(range(len(texts))), [b""] * len(texts)
        lengths = np.fromiter(map(len, encoded), np.int64, len(encoded))
        flat = self.byte_table()[np.frombuffer(b"".join(encoded), np.uint8)].astype(np.int32)
        post = self.backend_tokenizer.post_processor
        if add_special_tokens and post is not None and post.num_special_tokens_to_add(False):
            odd = list(range(len(texts)))  # special tokens added: leave them to the tokenizer
        if odd:
            pieces = np.split(flat, np.cumsum(lengths)[:-1])
            called = self([texts[i] for i in odd], add_special_tokens=add_special_tokens)["input_ids"]
            for i, ids in zip(odd, called):
                pieces[i], lengths[i] = np.asarray(ids, np.int32), len(ids)
            flat = np.concatenate(pieces).astype(np.int32) if pieces else flat
        return flat, lengths


def byte_tokenizer(chat_template: str) -> ByteTokenizer:
    """A tokenizer whose tokens are UTF-8 bytes (plus an eos and a pad token), built offline,
    rendering conversations with `chat_template`."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {ch: i for i, ch in enumerate(sorted(alphabet))}
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    backend.decoder = decoders.ByteLevel()
    tok = ByteTokenizer(tokenizer_object=backend)
    tok.add_special_tokens({"eos_token": "<|endoftext|>", "pad_token": "<|pad|>"})
    tok.chat_template = chat_template
    return tok
