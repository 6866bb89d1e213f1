"""A huge text is cut by characters before it is tokenised (issue 18 item 14): a 50 MB prompt
took 163 s and 7 GB because the whole of it went through the tokenizer. The cut keeps the
token result: rows within the bound are untouched, and rows over it give the same ids."""

from __future__ import annotations

import pytest

from dralign.data import tokenize as T
from dralign.data.tokenize import char_bound, tokenize_pairs, tokenize_unpaired

WORDS = "the quick brown fox jumps over a lazy dog while seven wizards quietly hex".split()


def text(n_words: int, offset: int = 0) -> str:
    return " ".join(WORDS[(i * 7 + offset) % len(WORDS)] + str(i % 13) for i in range(n_words))


class Recording:
    """The tokenizer, recording the longest text it was asked to tokenise."""

    def __init__(self, tok):
        self.tok, self.longest = tok, 0

    def __call__(self, texts, **kwargs):
        self.longest = max([self.longest, *map(len, texts)])
        return self.tok(texts, **kwargs)

    def __getattr__(self, name):
        return getattr(self.tok, name)


def pairs(prompt_words: int, completion_words: int):
    return [
        {
            "prompt": text(prompt_words),
            "chosen": " " + text(completion_words, 1),
            "rejected": " " + text(completion_words, 2),
        },
        {"prompt": "short question?", "chosen": " yes", "rejected": " no"},
    ]


@pytest.mark.parametrize("side", ["left", "right"])
def test_a_text_over_the_bound_tokenises_to_the_same_ids_as_before(tok, monkeypatch, side):
    max_length = 32
    bound = char_bound(tok, max_length)
    rows = pairs(prompt_words=bound // 2, completion_words=bound // 3)  # each text > 2 bounds long
    assert len(rows[0]["prompt"]) > 2 * bound and len(rows[0]["chosen"]) > 2 * bound
    recording = Recording(tok)
    cut = tokenize_pairs(rows, recording, max_length=max_length, truncation_side=side)
    assert recording.longest <= bound  # the tokenizer never saw the whole text
    monkeypatch.setattr(T, "char_bound", lambda *_: 10**12)  # as before: no cut by characters
    whole = tokenize_pairs(rows, tok, max_length=max_length, truncation_side=side)
    for field in ("prompt_ids", "chosen_ids", "rejected_ids"):
        assert [list(getattr(e, field)) for e in cut.examples] == [list(getattr(e, field)) for e in whole.examples], (
            field
        )
    assert (
        (cut.report.truncated_prompt, cut.report.truncated_completion)
        == (whole.report.truncated_prompt, whole.report.truncated_completion)
        == (1, 1)
    )


def test_unpaired_completions_are_cut_by_characters_too(tok):
    bound = char_bound(tok, 32)
    rows = [{"prompt": text(bound // 2), "completion": " " + text(bound // 2, 3), "label": True}]
    recording = Recording(tok)
    data = tokenize_unpaired(rows, recording, max_length=32)
    assert recording.longest <= bound and len(data.examples) == 1


def test_texts_within_the_bound_are_not_cut(tok):
    bound = char_bound(tok, 32)
    prompt = "x" * bound
    assert T.cut_text(prompt, bound, keep_end=True) is prompt
    assert T.cut_text(prompt + "yz", bound, keep_end=True) == "x" * (bound - 2) + "yz"
    assert T.cut_text("ab" + prompt, bound, keep_end=False) == "ab" + "x" * (bound - 2)
