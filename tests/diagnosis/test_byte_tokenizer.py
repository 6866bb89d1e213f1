"""diagnose's byte tokenizer gives the loader its ids as a table lookup of the UTF-8 bytes
(`ByteTokenizer.encode_flat`); they must be the ids calling the tokenizer gives, special-token
strings and every kind of character included."""

from __future__ import annotations

import json

import numpy as np

from dralign.diagnosis.read import byte_tokenizer
from helpers import SHARED_DATA


def split(flat, lengths):
    ends = np.cumsum(lengths)
    return [flat[e - n : e].tolist() for e, n in zip(ends, lengths)]


def test_encode_flat_gives_the_ids_of_calling_the_tokenizer():
    tok = byte_tokenizer()
    texts = [
        "",
        "plain",
        "é漢字🙂\x00\x7f\u0800\uffff\U0010ffff",
        "ends with<|endoftext|>",
        "<|pad|>mid<|endoftext|>dle",
        "<|endoftext",
        "\n\nHuman: hi\n\nAssistant: ok",
    ]
    tldr = SHARED_DATA / "summarize-from-feedback" / "tldr_batch18.jsonl"
    if tldr.is_file():  # real text when the shared data is here
        rows = [json.loads(line) for line in tldr.read_text().splitlines()[:50]]
        texts += [r[k] for r in rows for k in ("prompt", "chosen", "rejected")]
    for special in (True, False):
        flat, lengths = type(tok).encode_flat(tok, texts, add_special_tokens=special)
        assert flat.dtype == np.int32 and len(lengths) == len(texts)
        assert split(flat, lengths) == tok(texts, add_special_tokens=special)["input_ids"]
    assert split(*tok.encode_flat(["<|endoftext|>"]))[0] == [tok.eos_token_id]  # the added token, not its bytes
