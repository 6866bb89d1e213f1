"""The shift world's data side: text generation, gold objectives, mixtures, labelling."""

import hashlib
import json
import math
import random

import numpy as np
import pytest

from dralign.eval.mixtures import geometric_mixture, linear_mixture
from dralign_bench import world as w
from dralign_bench.world import (
    GOLD_OBJECTIVES,
    assign_sources,
    bt_label,
    bt_probability,
    conciseness,
    flip_labels,
    formality,
    generate_corpus,
    generate_prompts,
    generate_responses,
    label_pairs,
    label_rows,
    make_mixture_reward,
    mixture_reward,
    prompt_pool,
    prompt_response_pairs,
    sentiment,
    specificity,
)

LEXICONS = (w.POSITIVE_WORDS, w.NEGATIVE_WORDS, w.FORMAL_WORDS, w.INFORMAL_WORDS, w.DETAIL_WORDS)


@pytest.fixture(scope="module")
def corpus():
    return generate_corpus(2000, seed=0)


def _response(text):
    return text.split(":", 1)[1].strip()


# --- text generation ------------------------------------------------------------------------


def test_corpus_deterministic_per_seed(corpus):
    assert generate_corpus(2000, seed=0) == corpus
    other = generate_corpus(2000, seed=1)
    assert other != corpus
    assert sum(a == b for a, b in zip(corpus, other)) < 10


def test_corpus_shape_and_variety(corpus):
    train = set(prompt_pool("train"))
    lengths = []
    for text in corpus:
        prompt, resp = text.split(": ", 1)
        assert prompt + ":" in train
        assert text == w.format_text(prompt + ":", resp)
        lengths.append(len(w.words(resp)))
    assert min(lengths) >= 5 and max(lengths) <= 40
    assert np.std(lengths) > 5  # varied lengths
    assert len(set(corpus)) > 0.99 * len(corpus)
    vocab = {t for text in corpus for t in w.words(text)}
    assert len(vocab) > 200
    rewards = np.array([[f(_response(t)) for f in GOLD_OBJECTIVES.values()] for t in corpus])
    assert np.all((rewards >= 0) & (rewards <= 1))
    # every gold reward varies across the corpus and spans a good part of its range
    assert np.all(rewards.std(axis=0) > 0.1)
    assert np.all(rewards.max(axis=0) - rewards.min(axis=0) > 0.6)
    # the documented correlations: cheerful writers are casual, details cost conciseness
    c = np.corrcoef(rewards.T)
    names = list(GOLD_OBJECTIVES)
    assert c[names.index("sentiment"), names.index("formality")] < -0.1
    assert c[names.index("conciseness"), names.index("specificity")] < -0.1


def _sha(obj):
    return hashlib.sha256(json.dumps(obj).encode()).hexdigest()


def test_human_text_pinned():
    # The world LM is pretrained on human text and cached under WORLD_VERSION: any change to the
    # human generator must change these hashes and bump WORLD_VERSION.
    assert w.WORLD_VERSION == "1"
    assert _sha(generate_corpus(200, seed=0)) == ("f78087d8d0ae6654928535419be993dc83d491379ca6c8861c14673e21088150")
    assert _sha(generate_responses(generate_prompts(200, seed=0), seed=0)) == (
        "bb82ac8e094dcade799e4fe56106e383f91b0789e0c67ffdc6e06899cfebc0a3"
    )
    assert _sha(prompt_response_pairs(generate_prompts(50, seed=1), seed=1)) == (
        "9ee693d0909cddf0c56629bf8e00b5160278dd86d8a1d22b51c717be9fe3dba2"
    )


def test_corpus_synthetic_fraction():
    human = generate_corpus(400, seed=2)
    texts = generate_corpus(400, seed=2, synthetic_fraction=1.0)
    length = {k: np.mean([len(w.words(_response(t))) for t in v]) for k, v in (("human", human), ("synthetic", texts))}
    assert length["synthetic"] > length["human"] + 4
    # at shift 0 the synthetic generator is the human one: the fraction no longer matters
    assert generate_corpus(100, seed=2, synthetic_fraction=1.0, shift=0.0) == generate_corpus(100, seed=2)
    with pytest.raises(ValueError):
        generate_corpus(3, seed=0, synthetic_fraction=1.5)


def test_prompt_splits_disjoint_and_fixed():
    train, held = prompt_pool("train"), prompt_pool("heldout")
    assert len(train) == 2048 and len(held) == 512
    assert not set(train) & set(held)
    # every topic appears in both splits: held-out prompts are unseen combinations
    assert {p.rstrip(":").split()[-1] for p in held} == set(w.TOPICS)
    a = generate_prompts(300, seed=0, split="heldout")
    assert a == generate_prompts(300, seed=0, split="heldout")
    assert a != generate_prompts(300, seed=1, split="heldout")
    assert set(a) <= set(held) and len(set(a)) == 300  # without replacement
    assert not set(generate_prompts(3000, seed=0, split="train")) & set(held)
    many = generate_prompts(1100, seed=0, split="heldout")  # > pool: balanced repetition
    counts = np.unique(many, return_counts=True)[1]
    assert len(many) == 1100 and counts.min() == 2 and counts.max() == 3
    with pytest.raises(ValueError):
        generate_prompts(3, seed=0, split="test")


def test_prompts_carry_no_gold_signal():
    for p in prompt_pool("train") + prompt_pool("heldout"):
        assert not any(t in lex for t in w.words(p) for lex in LEXICONS)
    # so objectives other than conciseness give the same value on prompt + response
    for text in generate_corpus(50, seed=3):
        for name in ("sentiment", "formality", "specificity"):
            assert GOLD_OBJECTIVES[name](text) == GOLD_OBJECTIVES[name](_response(text))


def test_responses_and_pairs_deterministic():
    prompts = generate_prompts(20, seed=0, split="heldout")
    assert generate_responses(prompts, seed=5) == generate_responses(prompts, seed=5)
    assert generate_responses(prompts, seed=5) != generate_responses(prompts, seed=6)
    rows = prompt_response_pairs(prompts, seed=1)
    assert rows == prompt_response_pairs(prompts, seed=1)
    assert [r["prompt"] for r in rows] == prompts
    assert all(r["response_1"] != r["response_2"] and r["source"] == "human" for r in rows)
    # the first sentence of every response names the prompt's topic
    many = generate_prompts(300, seed=0)
    for src in w.SOURCES:
        for p, r in zip(many, generate_responses(many, seed=0, source=src)):
            topic = p.rstrip(":").split()[-1]
            assert topic in w.words(r.split(".")[0]), (p, r)
    with pytest.raises(ValueError):
        w.generate_response("Describe the lake:", random.Random(0), source="robot")


# --- gold objectives --------------------------------------------------------------------------


def test_sentiment_responds_as_documented():
    assert sentiment("") == 0.5
    assert sentiment("The lake is old.") == 0.5
    assert sentiment("good and bad") == 0.5
    assert sentiment("It was lovely.") == pytest.approx(2 / 3)
    assert sentiment("Lovely, GREAT, wonderful!") == pytest.approx(0.8)
    assert sentiment("It was awful.") == pytest.approx(1 / 3)
    ladder = ["bad awful", "bad", "the lake", "good", "good great", "good great lovely"]
    vals = [sentiment(t) for t in ladder]
    assert all(a < b for a, b in zip(vals, vals[1:]))
    assert sentiment("good", smoothing=0.0) == 1.0


def test_formality_responds_as_documented():
    assert formality("the lake is old") == 0.5
    assert formality("Moreover, it demonstrates considerable character.") == pytest.approx(4 / 5)
    assert formality("yeah it is kinda big") == pytest.approx(1 / 4)
    ladder = ["yeah kinda stuff", "yeah", "", "moreover", "moreover indeed"]
    vals = [formality(t) for t in ladder]
    assert all(a < b for a, b in zip(vals, vals[1:]))
    assert formality("moreover yeah") == 0.5


def test_conciseness_responds_as_documented():
    def n_words(n):
        return " ".join(["lake"] * n)

    assert conciseness("") == 0.0
    assert conciseness(n_words(10)) == 1.0
    assert conciseness(n_words(5)) == pytest.approx(conciseness(n_words(20)))
    assert conciseness(n_words(5)) == pytest.approx(math.exp(-0.5 * (math.log(2) / 0.6) ** 2))
    vals = [conciseness(n_words(n)) for n in range(0, 41)]
    assert all(a < b for a, b in zip(vals[:10], vals[1:11]))  # increasing up to 10
    assert all(a > b for a, b in zip(vals[10:-1], vals[11:]))  # decreasing after
    assert vals[40] < 0.1
    # only the word count matters
    assert conciseness("good good good.") == conciseness("bad, bad; bad")


def test_specificity_responds_as_documented():
    assert specificity("the lake is lovely") == 0.0
    assert specificity("three boats") == pytest.approx(1 - math.exp(-0.5))
    assert specificity("three red boats") == pytest.approx(1 - math.exp(-1.0))
    assert specificity("There are 12 stone benches") == pytest.approx(1 - math.exp(-1.0))
    vals = [specificity(" ".join(["red"] * k)) for k in range(8)]
    assert all(a < b for a, b in zip(vals, vals[1:])) and vals[-1] < 1.0


def test_gold_objectives_in_unit_interval_on_any_text(corpus):
    rng = random.Random(0)
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789 ,.!?'\n"
    junk = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 300))) for _ in range(50)]
    junk += ["good " * 500, "moreover " * 100, "1 2 3 4 5 6 7 8 9" * 20, "é ü ∑ 中文"]
    assert len(GOLD_OBJECTIVES) >= 3
    for text in junk + corpus[:200]:
        r = w.gold_rewards(text)
        assert set(r) == set(GOLD_OBJECTIVES)
        assert all(0.0 <= v <= 1.0 and isinstance(v, float) for v in r.values())


# --- mixtures ----------------------------------------------------------------------------------


def test_mixture_reward():
    text = "Moreover, the lake is lovely. There are three stone boats."
    for kind, mix in (("linear", linear_mixture), ("geometric", geometric_mixture)):
        expected = mix(sentiment(text), formality(text), 0.3)
        assert mixture_reward(text, "sentiment", "formality", 0.3, kind) == pytest.approx(expected)
        fn = make_mixture_reward("sentiment", formality, 0.3, kind)
        assert fn(text) == pytest.approx(expected)
    with pytest.raises(ValueError):
        mixture_reward(text, "sentiment", "humour", 0.5)
    with pytest.raises(ValueError):
        make_mixture_reward("sentiment", "formality", 0.5, kind="harmonic")


# --- Bradley–Terry labelling ------------------------------------------------------------------


def test_bt_probability():
    assert bt_probability(0.6, 0.6, 0.1) == 0.5
    assert bt_probability(0.7, 0.6, 0.1) == pytest.approx(1 / (1 + math.exp(-1.0)))
    assert bt_probability(0.0, 1.0, 1e-6) == pytest.approx(0.0)  # no overflow
    assert bt_probability(0.7, 0.6, 0) == 1.0
    assert bt_probability(0.5, 0.6, 0) == 0.0
    assert bt_probability(0.6, 0.6, 0) == 0.5
    with pytest.raises(ValueError):
        bt_probability(0.1, 0.2, -1.0)


@pytest.mark.parametrize("r1,r2,temp", [(0.6, 0.55, 0.1), (0.2, 0.5, 0.25), (0.5, 0.5, 0.1)])
def test_bt_label_frequency_matches_sigmoid(r1, r2, temp):
    n = 20000
    p = 1 / (1 + math.exp(-(r1 - r2) / temp))
    se = math.sqrt(p * (1 - p) / n)
    rng = np.random.default_rng(0)
    freq = np.mean([bt_label(r1, r2, temperature=temp, rng=rng) for _ in range(n)])
    assert abs(freq - p) < 3 * se
    # the same through label_pairs, on responses whose reward is known
    reward = {"one": r1, "two": r2}.__getitem__
    rows = label_pairs(["q:"] * n, ["one"] * n, ["two"] * n, reward, temperature=temp, seed=1)
    freq = np.mean([r["first_preferred"] for r in rows])
    assert abs(freq - p) < 3 * se
    assert all(r["p_first"] == pytest.approx(p) for r in rows[:10])
    # python's random.Random works too
    rr = random.Random(0)
    freq = np.mean([bt_label(r1, r2, temperature=temp, rng=rr) for _ in range(n)])
    assert abs(freq - p) < 3 * se


def test_label_pairs_rows_and_determinism():
    pr = prompt_response_pairs(generate_prompts(200, seed=0), seed=0)
    args = ([r["prompt"] for r in pr], [r["response_1"] for r in pr], [r["response_2"] for r in pr])
    fn = make_mixture_reward("sentiment", "conciseness", 0.5)
    rows = label_pairs(*args, fn, temperature=0.1, seed=7)
    assert rows == label_pairs(*args, fn, temperature=0.1, seed=7)
    assert rows != label_pairs(*args, fn, temperature=0.1, seed=8)
    for row, p, y1, y2 in zip(rows, *args):
        assert row["prompt"] == p
        assert (row["chosen"], row["rejected"]) == ((y1, y2) if row["first_preferred"] else (y2, y1))
        assert row["reward_chosen"] == fn(row["chosen"])
        assert row["reward_rejected"] == fn(row["rejected"])
        assert row["p_first"] == pytest.approx(bt_probability(fn(y1), fn(y2), 0.1))
    # labels track the gold reward: the chosen response is usually the better one
    better = np.mean([r["reward_chosen"] > r["reward_rejected"] for r in rows])
    assert better > 0.6
    # temperature 0: the chosen one is never worse
    hard = label_pairs(*args, fn, temperature=0, seed=0)
    assert all(r["reward_chosen"] >= r["reward_rejected"] for r in hard)
    with pytest.raises(ValueError):
        label_pairs(["a"], ["b"], [], fn)


def test_label_rows_carries_source():
    rows = assign_sources(generate_prompts(40, seed=0), synthetic_fraction=0.5, seed=0)
    lab = label_rows(rows, w.sentiment, temperature=0.1, seed=0)
    assert [r["source"] for r in lab] == [r["source"] for r in rows]
    assert all({r["chosen"], r["rejected"]} == {s["response_1"], s["response_2"]} for r, s in zip(lab, rows))
    assert "response_1" not in lab[0]


def test_flip_labels():
    rows = label_pairs(
        *zip(*[(f"p{i}:", f"a{i}", f"b{i}") for i in range(1000)]),
        reward_fn=lambda t: 1.0 if t.startswith("a") else 0.0,
        temperature=0,
        seed=0,
    )
    original = [dict(r) for r in rows]
    flipped = flip_labels(rows, rate=0.2, seed=3)
    assert rows == original  # input untouched
    assert sum(r["flipped"] for r in flipped) == 200
    assert flipped == flip_labels(rows, rate=0.2, seed=3)
    assert flipped != flip_labels(rows, rate=0.2, seed=4)
    for r, o in zip(flipped, rows):
        if r["flipped"]:
            assert (r["chosen"], r["rejected"]) == (o["rejected"], o["chosen"])
            assert r["reward_chosen"] == o["reward_rejected"]
            assert r["first_preferred"] != o["first_preferred"]
            assert r["p_first"] == o["p_first"]
        else:
            assert {k: v for k, v in r.items() if k != "flipped"} == o
    # the observed wrong-label rate is the requested one
    assert np.mean([r["reward_chosen"] < r["reward_rejected"] for r in flipped]) == 0.2
    assert not any(r["flipped"] for r in flip_labels(rows, rate=0.0, seed=0))
    assert all(r["flipped"] for r in flip_labels(rows, rate=1.0, seed=0))
    with pytest.raises(ValueError):
        flip_labels(rows, rate=-0.1)


# --- human vs synthetic sources ---------------------------------------------------------------


def test_assign_sources_fraction_and_determinism():
    prompts = generate_prompts(600, seed=0)
    rows = assign_sources(prompts, synthetic_fraction=0.3, seed=0)
    assert rows == assign_sources(prompts, synthetic_fraction=0.3, seed=0)
    assert rows != assign_sources(prompts, synthetic_fraction=0.3, seed=1)
    assert rows != assign_sources(prompts, synthetic_fraction=0.3, seed=0, shift=0.2)
    assert [r["prompt"] for r in rows] == prompts
    assert sum(r["source"] == "synthetic" for r in rows) == 180
    texts = [r[k] for r in rows for k in ("response_1", "response_2")]
    assert all(5 <= len(w.words(t)) <= 40 for t in texts)
    with pytest.raises(ValueError):
        assign_sources(prompts, synthetic_fraction=2.0)
    with pytest.raises(ValueError):
        assign_sources(prompts, synthetic_fraction=0.3, shift=1.5)
    # one shift per prompt: a constant list is the scalar; a list that differs changes those synthetic rows
    assert assign_sources(prompts, synthetic_fraction=0.3, seed=0, shift=[0.2] * 600) == assign_sources(
        prompts, synthetic_fraction=0.3, seed=0, shift=0.2
    )
    first = next(i for i, r in enumerate(rows) if r["source"] == "synthetic")
    per_row = assign_sources(
        prompts, synthetic_fraction=0.3, seed=0, shift=[0.2 if i == first else None for i in range(600)]
    )
    assert per_row[:first] == rows[:first] and per_row[first]["response_1"] != rows[first]["response_1"]
    with pytest.raises(ValueError, match="600 prompts"):
        assign_sources(prompts, synthetic_fraction=0.3, shift=[0.2] * 5)


@pytest.fixture(scope="module")
def by_source():
    prompts = generate_prompts(2000, seed=0)
    return {s: generate_responses(prompts, seed=0, source=s) for s in w.SOURCES}


def test_sources_share_every_word(by_source):
    """Marker-free: over 2,000 responses per source, no word occurs only in synthetic text, and
    no word's presence separates the sources well (a one-word classifier's per-response AUC is
    ½ + (df_synthetic − df_human)/2 ≤ 0.625)."""
    docs = {s: [set(w.words(t)) for t in texts] for s, texts in by_source.items()}
    vocab = {s: set().union(*d) for s, d in docs.items()}
    assert vocab["synthetic"] <= vocab["human"]
    for word in vocab["human"]:
        df = {s: np.mean([word in d for d in docs[s]]) for s in w.SOURCES}
        assert abs(df["synthetic"] - df["human"]) < 0.25, word


def test_shift_zero_is_the_human_generator():
    prompts = generate_prompts(50, seed=4)
    for k, p in enumerate(prompts):
        assert w.generate_response(p, random.Random(k), "synthetic", shift=0.0) == w.generate_response(
            p, random.Random(k), "human"
        )
    # the human source ignores the knob
    assert generate_responses(prompts, seed=3, source="human", shift=1.0) == generate_responses(prompts, seed=3)


def test_shift_moves_the_style():
    """The knob moves every documented statistic of synthetic text monotonically away from the
    human one: warmer, more formal, more detailed, longer."""
    prompts = generate_prompts(1500, seed=1)
    stats = []
    for shift in (0.0, 0.4, 0.8):
        texts = generate_responses(prompts, seed=1, source="synthetic", shift=shift)
        stats.append(
            [np.mean([f(t) for t in texts]) for f in (sentiment, formality, specificity)]
            + [np.mean([len(w.words(t)) for t in texts])]
        )
    stats = np.array(stats)
    assert np.all(np.diff(stats, axis=0) > 0), stats
    assert np.all(stats[-1, :3] - stats[0, :3] > 0.1) and stats[-1, 3] - stats[0, 3] > 5
    assert w.SYNTHETIC_SHIFT == 0.8  # the tuned default (docstring of SYNTHETIC_SHIFT)
