"""dralign.data: tokenization, truncation, collation masks, fingerprint and batch order."""

import math

import pytest
import torch

from dralign.data import (
    DataError,
    PairExample,
    UnpairedExample,
    batch_indices,
    collate_pairs,
    collate_unpaired,
    load_preference_data,
    tokenize_pairs,
    truncate,
)
from dralign.modeling.tiny import tiny_tokenizer

BOS, EOS = 1, 2


class CharTokenizer:
    """One token per character (id = ord), BOS on special tokens: exact, predictable lengths."""

    bos_token_id, eos_token_id = BOS, EOS

    def __init__(self, pad_token_id=None):
        self.pad_token_id = pad_token_id

    def __call__(self, texts, add_special_tokens=True):
        prefix = [BOS] if add_special_tokens else []
        return {"input_ids": [prefix + [ord(ch) for ch in text] for text in texts]}


def ids(text):
    return [ord(ch) for ch in text]


# --------------------------------------------------------------------------- tokenization


def test_prompt_and_completion_ids_with_bos_and_single_eos():
    tok = CharTokenizer()
    data = tokenize_pairs([{"prompt": "ab", "chosen": "xy", "rejected": "z" + chr(EOS)}], tok)
    [e] = data.examples
    assert e.prompt_ids == (BOS, *ids("ab"))
    assert e.chosen_ids == (*ids("xy"), EOS)
    assert e.rejected_ids == (ord("z"), EOS)  # already ends with eos: not doubled
    assert data.pad_token_id == EOS  # no pad token: eos
    assert (
        tokenize_pairs([{"prompt": "ab", "chosen": "x", "rejected": "y"}], CharTokenizer(pad_token_id=0)).pad_token_id
        == 0
    )
    no_eos = tokenize_pairs([{"prompt": "ab", "chosen": "xy", "rejected": "z"}], tok, add_eos=False)
    assert no_eos.examples[0].chosen_ids == tuple(ids("xy"))


def test_truncation_sides_and_counts():
    tok = CharTokenizer()
    rows = [
        {"prompt": "abcdef", "chosen": "xyz", "rejected": "uv"},  # 7 + 4 / 3 tokens
        {"prompt": "ab", "chosen": "x", "rejected": "y"},  # fits
        {"prompt": "abcdefgh", "chosen": "xyzw", "rejected": "u"},
    ]  # 9 + 5 / 2
    data = tokenize_pairs(rows, tok, max_length=10, max_prompt_length=5, truncation_side="left")
    a, b, c = data.examples
    assert a.prompt_ids == tuple(ids("bcdef"))  # left: keeps the end (BOS is cut too)
    assert a.chosen_ids == tuple(ids("xyz")) + (EOS,) and a.rejected_ids == (*ids("uv"), EOS)
    assert b.prompt_ids == (BOS, *ids("ab"))
    assert c.prompt_ids == tuple(ids("defgh"))
    assert c.chosen_ids == tuple(ids("xyzw")) + (EOS,) and c.rejected_ids == (ord("u"), EOS)
    assert (data.report.truncated_prompt, data.report.truncated_completion) == (2, 0)

    right = tokenize_pairs(rows, tok, max_length=8, max_prompt_length=5, truncation_side="right")
    a, b, c = right.examples
    assert a.prompt_ids == (BOS, *ids("abcd"))
    assert a.chosen_ids == tuple(ids("xyz")) and a.rejected_ids == (*ids("uv"), EOS)  # 5+3 = 8
    assert c.chosen_ids == tuple(ids("xyz")) and c.rejected_ids == (ord("u"), EOS)
    assert (right.report.truncated_prompt, right.report.truncated_completion) == (2, 2)
    assert all(len(e.prompt_ids) + max(len(e.chosen_ids), len(e.rejected_ids)) <= 8 for e in right.examples)

    # no max_prompt_length: prompts are never cut, completions take the remaining room
    loose = tokenize_pairs(rows[:2], tok, max_length=9)
    assert loose.examples[0].prompt_ids == (BOS, *ids("abcdef"))
    assert loose.examples[0].chosen_ids == tuple(ids("xy"))
    assert (loose.report.truncated_prompt, loose.report.truncated_completion) == (0, 1)


def test_truncate_helper():
    assert truncate([1, 2, 3, 4], [[5, 6, 7], [8]], max_length=5, max_prompt_length=3, truncation_side="left") == (
        [2, 3, 4],
        [[5, 6], [8]],
        True,
        True,
    )
    assert truncate([1, 2, 3, 4], [[5]], max_length=6, max_prompt_length=None, truncation_side="left") == (
        [1, 2, 3, 4],
        [[5]],
        False,
        False,
    )


def test_long_prompt_is_cut_to_half_max_length_keeping_its_end_by_default():
    """A prompt of 3 × max_length trains with default options: cut to max_length // 2 = 4
    tokens, keeping its end; prompts that fit are left alone; the cut is counted."""
    tok = CharTokenizer()
    rows = [
        {"prompt": "abcdefghijklmnopqrstuvw", "chosen": "xyz", "rejected": "u"},  # 24 = 3 × 8
        {"prompt": "abcde", "chosen": "x", "rejected": "y"},
    ]  # 6: fits
    data = tokenize_pairs(rows, tok, max_length=8)
    long, short = data.examples
    assert long.prompt_ids == tuple(ids("tuvw"))
    assert long.chosen_ids == (*ids("xyz"), EOS) and long.rejected_ids == (ord("u"), EOS)
    assert short.prompt_ids == (BOS, *ids("abcde"))
    assert data.report.truncated_prompt == 1 and data.report.kept == 2
    assert data.settings["long_prompts"] == "cut"
    right = tokenize_pairs(rows, tok, max_length=8, truncation_side="right")
    assert right.examples[0].prompt_ids == (BOS, *ids("abc"))
    assert truncate([1] * 30, [[5]], max_length=10, max_prompt_length=None, truncation_side="left") == (
        [1] * 5,
        [[5]],
        True,
        False,
    )


def test_prompt_filling_max_length_and_identical_after_truncation_are_bad_rows():
    tok = CharTokenizer()
    rows = [
        {"prompt": "abcdefghij", "chosen": "x", "rejected": "y"},  # 11 prompt tokens
        {"prompt": "ab", "chosen": "same-start-1", "rejected": "same-start-2"},
        {"prompt": "ab", "chosen": "x", "rejected": "y"},
    ]
    with pytest.raises(DataError) as info:  # the strict behaviour: a long prompt is a bad row
        tokenize_pairs(rows, tok, max_length=8, long_prompts="strict")
    message = str(info.value)
    assert message.startswith(
        "2 bad row(s) out of 3 read from <memory> (chosen_equals_rejected: 1, prompt_fills_max_length: 1)"
    )
    assert (
        "<memory>: row 0, field 'prompt': prompt fills max_length: 11 prompt tokens leave no "
        "room for a completion within max_length=8; set --max-prompt-length"
    ) in message
    assert (
        "<memory>: row 1, field 'rejected': chosen and rejected are identical after "
        "tokenization and truncation to max_length=8"
    ) in message
    data = tokenize_pairs(rows, tok, max_length=8, on_bad_row="skip", long_prompts="strict")
    assert [e.row for e in data.examples] == [2]
    assert data.report.kept + data.report.n_skipped == data.report.rows_read == 3


def test_settings_are_checked():
    tok = CharTokenizer()
    rows = [{"prompt": "a", "chosen": "x", "rejected": "y"}]
    with pytest.raises(ValueError, match="max_prompt_length must be in"):
        tokenize_pairs(rows, tok, max_length=8, max_prompt_length=8)
    with pytest.raises(ValueError, match="truncation_side must be one of"):
        tokenize_pairs(rows, tok, truncation_side="middle")
    with pytest.raises(ValueError, match="long_prompts must be one of"):
        tokenize_pairs(rows, tok, long_prompts="never")


# --------------------------------------------------------------------------- collation


def test_collate_pairs_masks_exactly_the_completion_tokens():
    examples = [
        PairExample(0, (1, 10, 11), (20, 2), (30, 31, 32, 2), weight=0.5, group=1, ratio=2.0),
        PairExample(7, (1, 12), (21, 22, 2), (33, 2), target_prob=0.3),
    ]
    batch = collate_pairs(examples, pad_token_id=0)
    assert batch["input_ids"].tolist() == [
        [1, 10, 11, 20, 2, 0, 0],
        [1, 12, 21, 22, 2, 0, 0],
        [1, 10, 11, 30, 31, 32, 2],
        [1, 12, 33, 2, 0, 0, 0],
    ]
    assert batch["attention_mask"].tolist() == [
        [1, 1, 1, 1, 1, 0, 0],
        [1, 1, 1, 1, 1, 0, 0],
        [1] * 7,
        [1, 1, 1, 1, 0, 0, 0],
    ]
    assert batch["completion_mask"].int().tolist() == [
        [0, 0, 0, 1, 1, 0, 0],
        [0, 0, 1, 1, 1, 0, 0],
        [0, 0, 0, 1, 1, 1, 1],
        [0, 0, 1, 1, 0, 0, 0],
    ]
    assert batch["input_ids"].dtype == batch["attention_mask"].dtype == torch.long
    assert batch["completion_mask"].dtype == torch.bool
    assert batch["index"].tolist() == [0, 7] and batch["index"].dtype == torch.long
    assert batch["weight"].tolist() == [0.5, 1.0] and batch["weight"].dtype == torch.float
    assert batch["group"].tolist() == [1, -1]
    assert batch["ratio"][0].item() == 2.0 and math.isnan(batch["ratio"][1].item())
    assert math.isnan(batch["target_prob"][0].item())
    assert batch["target_prob"][1].item() == pytest.approx(0.3)


def test_collate_unpaired():
    examples = [UnpairedExample(0, (1, 5), (6, 2), True), UnpairedExample(1, (1, 5, 5, 5), (7, 2), False, weight=3.0)]
    batch = collate_unpaired(examples, pad_token_id=9)
    assert batch["input_ids"].tolist() == [[1, 5, 6, 2, 9, 9], [1, 5, 5, 5, 7, 2]]
    assert batch["completion_mask"].int().tolist() == [[0, 0, 1, 1, 0, 0], [0, 0, 0, 0, 1, 1]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 1, 0, 0], [1] * 6]
    assert batch["label"].tolist() == [True, False] and batch["label"].dtype == torch.bool
    assert batch["weight"].tolist() == [1.0, 3.0] and batch["group"].tolist() == [-1, -1]


def test_collated_real_tokenizer_batch_reads_back_the_completions():
    tok = tiny_tokenizer()
    rows = [
        {"prompt": "Human: what is two plus two? Assistant:", "chosen": " Two plus two is four.", "rejected": " Five."},
        {"prompt": "Please answer politely.", "chosen": " Thank you very much!", "rejected": " No!", "weight": 2},
    ]
    data = tokenize_pairs(rows, tok)
    batch = data.collate([1, 0])
    mask, input_ids = batch["completion_mask"], batch["input_ids"]
    expected = [data[1].chosen_ids, data[0].chosen_ids, data[1].rejected_ids, data[0].rejected_ids]
    for row, completion in enumerate(expected):
        assert input_ids[row][mask[row]].tolist() == list(completion)
    assert (input_ids[batch["attention_mask"] == 0] == tok.pad_token_id).all()
    assert not mask[batch["attention_mask"] == 0].any() and not mask[:, 0].any()
    assert batch["index"].tolist() == [1, 0] and batch["weight"].tolist() == [2.0, 1.0]


# --------------------------------------------------------------------------- fingerprint


def test_fingerprint_stable_and_sensitive():
    tok = CharTokenizer()
    rows = [
        {"prompt": "abc", "chosen": "x", "rejected": "y"},
        {"prompt": "de", "chosen": "long answer", "rejected": "short"},
    ]
    first = tokenize_pairs(rows, tok, max_length=64)
    fp = first.fingerprint()
    assert len(fp) == 64 and fp == first.fingerprint()
    assert tokenize_pairs(rows, tok, max_length=64).fingerprint() == fp
    assert tokenize_pairs(rows, tok, max_length=63).fingerprint() != fp  # nothing cut, still new
    assert tokenize_pairs(rows, tok, max_length=64, add_eos=False).fingerprint() != fp
    changed = [rows[0], {**rows[1], "rejected": "shorT"}]
    assert tokenize_pairs(changed, tok, max_length=64).fingerprint() != fp
    swapped = [{**rows[0], "chosen": "y", "rejected": "x"}, rows[1]]
    assert tokenize_pairs(swapped, tok, max_length=64).fingerprint() != fp


# --------------------------------------------------------------------------- batch order


def test_batch_indices_deterministic_per_seed_and_epoch():
    a = batch_indices(10, 3, seed=1, epoch=0)
    assert a == batch_indices(10, 3, seed=1, epoch=0)
    assert a != batch_indices(10, 3, seed=1, epoch=1)
    assert a != batch_indices(10, 3, seed=2, epoch=0)
    assert [len(b) for b in a] == [3, 3, 3, 1]
    assert sorted(i for b in a for i in b) == list(range(10))
    assert all(isinstance(i, int) for b in a for i in b)
    assert batch_indices(10, 3, seed=1, epoch=0, drop_last=True) == a[:3]
    assert batch_indices(5, 2, seed=0, epoch=0, shuffle=False) == [[0, 1], [2, 3], [4]]
    assert batch_indices(0, 2, seed=0, epoch=0) == []


def test_batch_indices_group_by_length():
    lengths = [5, 50, 7, 48, 6, 52, 8, 49]
    batches = batch_indices(8, 2, seed=3, epoch=0, group_by_length=lengths)
    assert sorted(i for b in batches for i in b) == list(range(8))
    # one mega-batch: sorted longest first, cut into pairs, pairs shuffled
    assert sorted(batches) == sorted([[5, 1], [7, 3], [6, 2], [4, 0]])
    assert batches == batch_indices(8, 2, seed=3, epoch=0, group_by_length=lengths)
    with pytest.raises(ValueError, match="3 lengths for 8 examples"):
        batch_indices(8, 2, seed=0, epoch=0, group_by_length=[1, 2, 3])


def test_load_preference_data_end_to_end(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"prompt": "p", "chosen": "a", "rejected": "b", "group": "g"}\n')
    data = load_preference_data(path, CharTokenizer(), max_length=16)
    assert len(data) == 1 and data[0].file == str(path) and data.group_names == ["g"]
    assert data.lengths() == [1 + 1 + 2]


# --------------------------------------------------------------------------- metadata


def test_group_numbering_one_rule_known_names_first_then_integers_numerically_then_strings():
    from dralign.data import number_names

    names, ids = number_names([], ["b", 10, "2", None, "a", 2, "-1"])
    assert names == ["-1", "2", "10", "a", "b"]  # integers numerically ("2" < "10"), then strings
    assert ids == {"-1": 0, "2": 1, "10": 2, "a": 3, "b": 4}
    names, ids = number_names(["south", "north"], ["north", "east"])  # held-out: training ids kept
    assert ids == {"south": 0, "north": 1, "east": 2}
    names, ids = number_names(["south", "north"], ["north", "east"], extend=False)
    assert names == ["south", "north"] and "east" not in ids  # an unseen held-out group: no group
    tok = CharTokenizer()
    rows = [{"prompt": "a", "chosen": "x", "rejected": "y", "group": g} for g in ("10", "9", "x")]
    assert tokenize_pairs(rows, tok).group_names == ["9", "10", "x"]


def test_density_ratios_use_the_training_prior_for_held_out_rows():
    from dralign.data import density_ratios

    train = [PairExample(i, (1,), (2,), (3,), target_prob=p) for i, p in enumerate([0.2, 0.6])]
    held_out = [PairExample(0, (1,), (2,), (3,), target_prob=0.8)]
    h, prior = density_ratios(train)
    assert prior == pytest.approx(0.4) and h.tolist() == pytest.approx([0.5, 1.5])
    h_eval, same = density_ratios(held_out, prior)  # 0.8 / 0.4, not 0.8 / 0.8 (its own mean)
    assert same == prior and h_eval.tolist() == pytest.approx([2.0])
    given = [PairExample(0, (1,), (2,), (3,), ratio=3.0, target_prob=0.1)]
    assert density_ratios(given)[0].tolist() == [3.0]  # a ratio wins over a target_prob
    with pytest.raises(DataError, match="row 7: the method needs a density ratio"):
        density_ratios([PairExample(0, (1,), (2,), (3,), row=7, file="f.jsonl")])
    with pytest.raises(DataError, match="averages to 0"):
        density_ratios([PairExample(0, (1,), (2,), (3,), target_prob=0.0)])


def test_require_groups_names_the_first_row_without_one():
    from dralign.data import require_groups

    rows = [PairExample(0, (1,), (2,), (3,), group=0), PairExample(1, (1,), (2,), (3,), row=4, file="d.jsonl")]
    with pytest.raises(DataError, match=r"d.jsonl row 4: field 'grp': group-dro needs a group"):
        require_groups(rows, ["a"], column="grp", method="group-dro")
    assert require_groups(rows[:1], ["a", "b"]) == 2
