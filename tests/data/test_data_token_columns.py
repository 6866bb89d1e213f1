"""The loader tokenises a chunk at a time on columns (`dralign.data.tokenize`, with
`dralign.data.encode`: the Rust backend called directly, truncation and the bad-row checks on
arrays). Its examples, bad rows and cut counts must be those of the documented rules applied one
row at a time: the tokenizer called on each text, eos appended, then `truncate` and the checks."""

from __future__ import annotations

import random

import pytest

from dralign.data import report as R
from dralign.data import tokenize as T
from dralign.data.encode import backend_of, encode
from dralign.data.formats import as_rows, validate_pairs, validate_unpaired
from dralign.data.tokenize import tokenize_pairs, tokenize_unpaired, truncate
from helpers import SHARED_DATA

WORDS = "a the cat dog sat ran é 漢 🙂 <|endoftext|> <|pad|> quickly !".split()


def random_rows(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    text = lambda k: " ".join(rng.choices(WORDS, k=rng.randint(0, k)))  # noqa: E731  # may be empty
    rows = []
    for _ in range(n):
        chosen = text(12)
        rejected = chosen if rng.random() < 0.1 else text(12)  # some identical pairs
        rows.append({"prompt": text(30), "chosen": chosen, "rejected": rejected})
    return rows


def by_the_rules(tok, rows, fields, max_length, max_prompt_length, side, long_prompts, add_eos):
    """(examples as tuples of id lists, {row: reason}, prompts cut, rows with a completion cut)."""
    examples, cuts = [], [0, 0]
    eos = tok.eos_token_id
    if len(fields) == 2:
        _, records, invalid = validate_pairs(as_rows(rows))
    else:
        records, invalid = validate_unpaired(as_rows(rows))
    bad = {b.row: b.reason for b in invalid}  # the rows validation refuses (e.g. empty texts)
    for record in records:
        i = record.row
        prompt = tok([record.prompt])["input_ids"][0]
        completions = [tok([getattr(record, f)], add_special_tokens=False)["input_ids"][0] for f in fields]
        if add_eos:
            completions = [c if c and c[-1] == eos else [*c, eos] for c in completions]
        p, cs, p_cut, c_cut = truncate(
            prompt,
            completions,
            max_length=max_length,
            max_prompt_length=max_prompt_length,
            truncation_side=side,
            long_prompts=long_prompts,
        )
        if not p:
            bad[i] = R.EMPTY
        elif len(p) >= max_length:
            bad[i] = R.PROMPT_FILLS_MAX_LENGTH
        elif not all(cs):
            bad[i] = R.EMPTY
        elif len(cs) == 2 and cs[0] == cs[1]:
            bad[i] = R.CHOSEN_EQUALS_REJECTED
        else:
            examples.append((p, *cs))
            cuts[0] += p_cut
            cuts[1] += c_cut
    return examples, bad, cuts


SETTINGS = [
    (16, None, "left", "cut", True),
    (16, 6, "right", "cut", True),
    (24, None, "left", "strict", False),
    (12, 4, "left", "strict", True),
    (40, None, "right", "cut", False),
]


@pytest.mark.parametrize("setting", SETTINGS)
@pytest.mark.parametrize("unpaired", [False, True])
def test_columns_give_the_rules_row_by_row(tok, monkeypatch, setting, unpaired):
    monkeypatch.setattr(T, "CHUNK", 37)  # several chunks, one partly filled
    max_length, max_prompt_length, side, long_prompts, add_eos = setting
    rows = random_rows(150, seed=max_length + unpaired)
    fields = ("completion",) if unpaired else ("chosen", "rejected")
    if unpaired:
        rows = [{"prompt": r["prompt"], "completion": r["chosen"], "label": i % 2 == 0} for i, r in enumerate(rows)]
    run = tokenize_unpaired if unpaired else tokenize_pairs
    data = run(
        rows,
        tok,
        on_bad_row="skip",
        max_length=max_length,
        max_prompt_length=max_prompt_length,
        truncation_side=side,
        long_prompts=long_prompts,
        add_eos=add_eos,
    )
    examples, bad, cuts = by_the_rules(tok, rows, fields, *setting)
    refused_by_tokens = len(bad) - len([b for b in data.report.bad_rows if b.reason == R.EMPTY])
    assert examples and (unpaired or refused_by_tokens > 0)  # the pairs exercise the token-level checks
    id_fields = ("prompt_ids", *(f"{f}_ids" for f in fields))
    assert [tuple(list(getattr(e, f)) for f in id_fields) for e in data.examples] == examples
    assert {b.row: b.reason for b in data.report.bad_rows} == bad
    assert [data.report.truncated_prompt, data.report.truncated_completion] == cuts


def test_the_backend_is_used_only_where_it_gives_the_call(tok):
    texts = [" ".join(WORDS[: k + 1]) for k in range(len(WORDS))] + [""]
    assert backend_of(tok) is tok.backend_tokenizer
    for special in (True, False):
        ids = encode(tok, texts, special)
        called = tok(texts, add_special_tokens=special)["input_ids"]
        assert [ids.flat[s : s + n].tolist() for s, n in zip(ids.starts, ids.lengths)] == called

    class Custom(type(tok)):  # a class that changes how calling it encodes
        def _encode_plus(self, *args, **kwargs):
            return super()._encode_plus(*args, **kwargs)

    from tokenizers import Tokenizer

    copy = lambda: Tokenizer.from_str(tok.backend_tokenizer.to_str())  # noqa: E731  # `tok` stays as it is
    custom = Custom(tokenizer_object=copy())
    assert backend_of(custom) is None
    truncating = type(tok)(tokenizer_object=copy())
    truncating.backend_tokenizer.enable_truncation(4)
    assert backend_of(truncating) is None  # calling it resets the truncation: call it


def test_a_real_tokenizer_through_the_backend(tok):
    folder = SHARED_DATA / "models" / "stories260K"
    if not folder.is_dir():
        pytest.skip("stories260K is absent")
    from transformers import AutoTokenizer

    stories = AutoTokenizer.from_pretrained(str(folder))
    texts = ["Once upon a time", " there was a cat.", "", " é漢🙂 </s> <s>"]
    for special in (True, False):
        ids = encode(stories, texts, special)
        assert [ids.flat[s : s + n].tolist() for s, n in zip(ids.starts, ids.lengths)] == stories(
            texts, add_special_tokens=special
        )["input_ids"]
