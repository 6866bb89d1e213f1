"""The shift world, data side: a synthetic text world with a known gold reward (DESIGN §5).

Everything here is pure Python + NumPy, deterministic per seed, and needs no model:

* **Text.** Prompts such as ``"Describe the old harbor:"`` come from a fixed pool of
  8 templates × 8 modifiers × 40 topics = 2,560 prompts, split once and for all (with a fixed
  internal seed) into a *train* pool (80 %) and a disjoint *heldout* pool (20 %). Responses are
  1–6 short sentences (5–40 words) from a small grammar whose words carry the gold signals:
  sentiment words (positive/negative), register words (formal/informal), concrete details
  (numbers, colours, materials) and neutral filler. Each response first draws a latent style
  ("persona": positivity, formality, how often sentiment/register/detail slots are used, a
  target length), so the corpus is varied and its features are correlated the way text is:
  cheerful writers tend to be casual and critical ones formal (corr(sentiment, formality) < 0
  over the corpus), and specific answers are longer (specificity conflicts with conciseness).
  A causal LM trained on :func:`generate_corpus` therefore samples completions whose gold
  rewards vary, and pushing one reward up costs another.

* **Gold objectives** (:data:`GOLD_OBJECTIVES`): four pure functions ``str -> float`` in
  [0, 1], applied to the *response* text only (the prompt pool contains no lexicon word, so
  prompt + response gives the same sentiment, formality and specificity, but not the same
  conciseness). All are bag-of-words: case-insensitive, no negation handling.

* **Mixtures** r(α) = α r_a + (1−α) r_b and r_a^α r_b^(1−α), **Bradley–Terry labelling**,
  **label flipping** and **human vs synthetic sources** for the scenarios of §5.

Random streams: text generation uses :class:`random.Random` seeded with a string built from the
function name, the split/source and the user's seed (string seeds are hashed with SHA-512, so
they are stable across runs, platforms and Python versions ≥ 3.2); labelling uses
``numpy.random.default_rng(seed)``.
"""

from __future__ import annotations

import math
import random
import re
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

__all__ = [
    "DEFAULT_ALPHAS",
    "DETAIL_WORDS",
    "FORMAL_WORDS",
    "GOLD_OBJECTIVES",
    "INFORMAL_WORDS",
    "NEGATIVE_WORDS",
    "POSITIVE_WORDS",
    "SOURCES",
    "SYNTHETIC_MARKERS",
    "TOPICS",
    "WORLD_VERSION",
    "assign_sources",
    "bt_label",
    "bt_probability",
    "conciseness",
    "flip_labels",
    "format_text",
    "formality",
    "generate_corpus",
    "generate_prompts",
    "generate_response",
    "generate_responses",
    "geometric_mixture",
    "gold_rewards",
    "label_pairs",
    "label_rows",
    "linear_mixture",
    "make_mixture_reward",
    "mixture_reward",
    "prompt_pool",
    "prompt_response_pairs",
    "sentiment",
    "specificity",
    "text_features",
    "words",
]

# =============================================================================================
# Lexicons (disjoint; no prompt word and no synthetic marker is in any of them)
# =============================================================================================

POSITIVE_WORDS = frozenset("""
good great lovely wonderful happy pleasant delightful excellent beautiful joyful charming
cheerful peaceful brilliant fantastic superb nice welcoming
""".split())

NEGATIVE_WORDS = frozenset("""
bad awful terrible sad gloomy dull unpleasant horrible poor ugly miserable grim dreadful
boring dirty depressing disappointing nasty
""".split())

FORMAL_WORDS = frozenset("""
furthermore moreover consequently therefore additionally nevertheless indeed notably thus
hence regarding remarkably exceedingly considerably substantial numerous considerable
sufficient demonstrates merits consideration facilities regarded significant approximately
""".split())

INFORMAL_WORDS = frozenset("""
yeah anyway okay hey basically honestly super totally kinda sorta gonna wanna gotta lots
tons stuff folks nope yep lol
""".split())

_NUMBER_WORDS = ("two three four five six seven eight nine ten eleven twelve twenty thirty "
                 "forty hundred").split()
_COLOURS = "red blue green yellow white grey orange purple".split()
_MATERIALS = "stone wooden glass iron brick copper marble".split()
#: Concrete-detail words counted by :func:`specificity` (any all-digit token counts too).
DETAIL_WORDS = frozenset(_NUMBER_WORDS + _COLOURS + _MATERIALS)

#: Words (lower-case) that only the synthetic generator uses; none is in a gold lexicon.
SYNTHETIC_MARKERS = frozenset("""
certainly absolutely course sure thing overall truly essentially essence undeniably vibrant
tapestry delve realm
""".split())

SOURCES = ("human", "synthetic")

TOPICS = tuple("""
garden ocean city market library mountain kitchen train school forest river village festival
bakery bridge desert island castle farm park harbor museum theater station lake meadow cafe
stadium airport orchard valley lighthouse factory beach hotel concert zoo canal square tower
""".split())

_PROMPT_TEMPLATES = (
    "Write about the {m}{t}:", "Describe the {m}{t}:", "Tell me about the {m}{t}:",
    "Give your view of the {m}{t}:", "Say something about the {m}{t}:",
    "Write a note about the {m}{t}:", "Review the {m}{t}:", "Share a thought on the {m}{t}:",
)
_PROMPT_MODIFIERS = ("", "old ", "new ", "small ", "big ", "local ", "nearby ", "famous ")
_HELDOUT_FRACTION = 0.2
_SPLIT_SEED = "dralign-shift-world-prompt-split-v1"

#: The default grid of mixture weights α for shift sweeps.
# Bump when any text generator changes: cached world models are keyed by it.
WORLD_VERSION = "1"

DEFAULT_ALPHAS = tuple(round(0.1 * i, 1) for i in range(11))

_WORD_RE = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")


def words(text: str) -> list[str]:
    """The word tokens the gold objectives see: lower-cased runs of ``[a-z0-9]`` (with an
    optional ``'s``-style suffix); punctuation and other characters are separators."""
    return _WORD_RE.findall(text.lower())


def text_features(text: str) -> dict[str, int]:
    """Counts behind the gold objectives: ``n_words, n_positive, n_negative, n_formal,
    n_informal, n_detail, n_synthetic_markers``."""
    ws = words(text)
    return {
        "n_words": len(ws),
        "n_positive": sum(w in POSITIVE_WORDS for w in ws),
        "n_negative": sum(w in NEGATIVE_WORDS for w in ws),
        "n_formal": sum(w in FORMAL_WORDS for w in ws),
        "n_informal": sum(w in INFORMAL_WORDS for w in ws),
        "n_detail": sum(w in DETAIL_WORDS or w.isdigit() for w in ws),
        "n_synthetic_markers": sum(w in SYNTHETIC_MARKERS for w in ws),
    }


# =============================================================================================
# Gold objectives
# =============================================================================================

def sentiment(text: str, smoothing: float = 1.0) -> float:
    """Share of positive among sentiment words, Laplace-smoothed.

        sentiment = (n_pos + c) / (n_pos + n_neg + 2c),   c = `smoothing` (default 1)

    n_pos / n_neg count words of :data:`POSITIVE_WORDS` / :data:`NEGATIVE_WORDS`. Exactly 0.5
    when the text has no sentiment word (or as many positive as negative ones); strictly
    increasing in n_pos and decreasing in n_neg; in (0, 1) for c > 0 (e.g. 3 positive, 0
    negative → 0.8; 0 positive, 1 negative → 1/3). Other words do not matter.
    """
    f = text_features(text)
    p, n = f["n_positive"], f["n_negative"]
    return float((p + smoothing) / (p + n + 2.0 * smoothing))


def formality(text: str, smoothing: float = 1.0) -> float:
    """Share of formal among register words, Laplace-smoothed.

        formality = (n_formal + c) / (n_formal + n_informal + 2c),   c = `smoothing`

    n_formal / n_informal count words of :data:`FORMAL_WORDS` (``moreover``, ``substantial``,
    …) / :data:`INFORMAL_WORDS` (``yeah``, ``kinda``, …). 0.5 with no register word; strictly
    increasing in n_formal, decreasing in n_informal; in (0, 1) for c > 0.
    """
    f = text_features(text)
    a, b = f["n_formal"], f["n_informal"]
    return float((a + smoothing) / (a + b + 2.0 * smoothing))


def conciseness(text: str, target: float = 10.0, width: float = 0.6) -> float:
    """A log-normal-shaped bump in the word count L = len(:func:`words`(text)).

        conciseness = exp(−½ · (ln(L / target) / width)²)   for L ≥ 1;   0 for L = 0

    Equals 1 at L = target (10 words), is increasing for L < target and decreasing for
    L > target, symmetric in the ratio L/target (5 and 20 words both give ≈ 0.51; 30 words
    ≈ 0.19; 40 words ≈ 0.07; 1 word ≈ 0.0006). Only the word count matters.
    """
    n = len(words(text))
    if n == 0:
        return 0.0
    z = math.log(n / target) / width
    return float(math.exp(-0.5 * z * z))


def specificity(text: str, scale: float = 2.0) -> float:
    """Saturating count of concrete details.

        specificity = 1 − exp(−n_detail / scale)   (scale = 2)

    n_detail counts words of :data:`DETAIL_WORDS` (number words, colours, materials) and
    all-digit tokens. 0 with no detail; 1 detail ≈ 0.39, 2 ≈ 0.63, 4 ≈ 0.86; strictly
    increasing in n_detail, never reaching 1. Details cost words, so it trades off against
    :func:`conciseness`.
    """
    n = text_features(text)["n_detail"]
    return float(1.0 - math.exp(-n / scale))


#: The gold objectives by name; each maps a response text to a float in [0, 1].
GOLD_OBJECTIVES: dict[str, Callable[[str], float]] = {
    "sentiment": sentiment,
    "formality": formality,
    "conciseness": conciseness,
    "specificity": specificity,
}


def gold_rewards(text: str) -> dict[str, float]:
    """Every gold objective of `text`: ``{name: value}`` in :data:`GOLD_OBJECTIVES` order."""
    return {name: fn(text) for name, fn in GOLD_OBJECTIVES.items()}


# =============================================================================================
# Mixtures
# =============================================================================================

def _check_alpha(alpha: float) -> None:
    if not 0.0 <= float(alpha) <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1], got {alpha}")


def _scalar_or_array(x: np.ndarray, *inputs: Any) -> Any:
    return float(x) if all(np.ndim(i) == 0 for i in inputs) else x


def linear_mixture(r_a: Any, r_b: Any, alpha: float) -> Any:
    """r(α) = α·r_a + (1 − α)·r_b, for α ∈ [0, 1]. Floats in → float out; arrays broadcast."""
    _check_alpha(alpha)
    out = alpha * np.asarray(r_a, dtype=np.float64) + (1.0 - alpha) * np.asarray(r_b, np.float64)
    return _scalar_or_array(out, r_a, r_b)


def geometric_mixture(r_a: Any, r_b: Any, alpha: float) -> Any:
    """r(α) = r_a^α · r_b^(1−α), for α ∈ [0, 1] and rewards ≥ 0, with 0^0 := 1.

    So α = 1 gives exactly r_a and α = 0 exactly r_b even where the other reward is 0; for
    0 < α < 1 a zero in either reward gives 0 (the geometric mixture demands both objectives).
    Floats in → float out; arrays broadcast.
    """
    _check_alpha(alpha)
    a = np.asarray(r_a, dtype=np.float64)
    b = np.asarray(r_b, dtype=np.float64)
    if np.any(a < 0) or np.any(b < 0):
        raise ValueError("geometric_mixture needs non-negative rewards")
    with np.errstate(divide="ignore", invalid="ignore"):
        pa = np.ones_like(a) if alpha == 0 else np.power(a, alpha)
        pb = np.ones_like(b) if alpha == 1 else np.power(b, 1.0 - alpha)
    return _scalar_or_array(pa * pb, r_a, r_b)


_MIXTURES = {"linear": linear_mixture, "geometric": geometric_mixture}


def _objective(o: str | Callable[[str], float]) -> Callable[[str], float]:
    if callable(o):
        return o
    try:
        return GOLD_OBJECTIVES[o]
    except KeyError:
        raise ValueError(f"unknown gold objective {o!r}; known: {sorted(GOLD_OBJECTIVES)}") from None


def mixture_reward(text: str, a: str | Callable[[str], float], b: str | Callable[[str], float],
                   alpha: float, kind: str = "linear") -> float:
    """The mixed gold reward of `text`: ``kind`` ∈ {"linear", "geometric"} applied to
    r_a(text), r_b(text) at α. `a`, `b` are names in :data:`GOLD_OBJECTIVES` or callables."""
    if kind not in _MIXTURES:
        raise ValueError(f"unknown mixture kind {kind!r}; use 'linear' or 'geometric'")
    return float(_MIXTURES[kind](_objective(a)(text), _objective(b)(text), alpha))


def make_mixture_reward(a: str | Callable[[str], float], b: str | Callable[[str], float],
                        alpha: float, kind: str = "linear") -> Callable[[str], float]:
    """``text -> mixture_reward(text, a, b, alpha, kind)``, e.g. the `reward_fn` of
    :func:`label_pairs`. Arguments are validated now, not at the first call."""
    _check_alpha(alpha)
    if kind not in _MIXTURES:
        raise ValueError(f"unknown mixture kind {kind!r}; use 'linear' or 'geometric'")
    fa, fb, mix = _objective(a), _objective(b), _MIXTURES[kind]

    def reward(text: str) -> float:
        return float(mix(fa(text), fb(text), alpha))

    reward.__name__ = f"{kind}_mixture_{getattr(fa, '__name__', 'a')}_{getattr(fb, '__name__', 'b')}_{alpha:g}"
    return reward


# =============================================================================================
# Prompts
# =============================================================================================

def _rng(*parts: Any) -> random.Random:
    return random.Random("/".join(str(p) for p in parts))


def _build_pools() -> dict[str, tuple[str, ...]]:
    allp = [t.format(m=m, t=topic) for topic in TOPICS for m in _PROMPT_MODIFIERS
            for t in _PROMPT_TEMPLATES]
    _rng(_SPLIT_SEED).shuffle(allp)
    k = int(round(_HELDOUT_FRACTION * len(allp)))
    return {"heldout": tuple(sorted(allp[:k])), "train": tuple(sorted(allp[k:]))}


_POOLS = _build_pools()


def prompt_pool(split: str = "train") -> tuple[str, ...]:
    """All prompts of a split (sorted): "train" (2,048) or "heldout" (512), disjoint, fixed
    independently of any seed. Every topic and template occurs in both splits; the held-out
    prompts are unseen *combinations*."""
    if split not in _POOLS:
        raise ValueError(f"split must be 'train' or 'heldout', got {split!r}")
    return _POOLS[split]


def generate_prompts(n: int, seed: int = 0, split: str = "train") -> list[str]:
    """`n` prompts from the `split` pool, deterministic per (seed, split).

    Sampled without replacement while n ≤ pool size; beyond that, whole shuffled copies of the
    pool are concatenated (every prompt appears ⌊n/|pool|⌋ or ⌈n/|pool|⌉ times).
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    pool = list(prompt_pool(split))
    rng = _rng("prompts", split, seed)
    out: list[str] = []
    while len(out) < n:
        perm = pool[:]
        rng.shuffle(perm)
        out.extend(perm[: n - len(out)])
    return out


def _topic_of(prompt: str) -> str:
    ws = words(prompt)
    return ws[-1] if ws else "place"


def format_text(prompt: str, response: str) -> str:
    """A corpus text: ``prompt + " " + response`` (no EOS; the tokenizer adds it)."""
    return f"{prompt} {response}"


# =============================================================================================
# Responses: a small grammar driven by a latent style
# =============================================================================================

# persona: (weight, mean positivity, mean formality); positivity and formality are drawn from
# Beta(κμ, κ(1−μ)) around these means, so over the corpus they are negatively correlated.
_PERSONAS = (
    ("cheerful_casual", 0.30, 0.85, 0.15),
    ("critical_formal", 0.30, 0.15, 0.85),
    ("warm_formal", 0.10, 0.80, 0.80),
    ("grumpy_casual", 0.10, 0.20, 0.20),
    ("plain", 0.20, 0.50, 0.50),
)
_KAPPA = 6.0
_MIN_WORDS, _MAX_WORDS = 5, 40

_NEUTRAL_ADJ = "large small old new busy open wide tall long plain typical modern simple distant".split()
_NOUNS = ("people children visitors birds trees lamps paths windows benches shops boats doors "
          "tables signs flowers houses").split()
_VERBS = "visited saw passed explored left reached photographed watched".split()
_TIMES = ("in the morning", "at night", "every day", "last week", "after lunch", "on sunday",
          "in winter", "in spring")
_PLACES = ("near the gate", "by the water", "along the road", "behind the wall",
           "around the corner", "at the entrance")
_VAGUE_Q = ("some", "many", "a few", "several")
_FORMAL_MARKERS = ("furthermore,", "moreover,", "indeed,", "additionally,", "consequently,",
                   "nevertheless,", "notably,", "thus,")
_INFORMAL_MARKERS = ("yeah,", "anyway,", "okay,", "hey,", "basically,", "honestly,")
_FORMAL_INTENS = ("remarkably", "exceedingly", "considerably")
_INFORMAL_INTENS = ("super", "totally", "kinda", "sorta")
_FORMAL_PHRASES = ("requires substantial attention", "offers numerous facilities",
                   "demonstrates considerable character", "merits further consideration",
                   "provides sufficient space", "is regarded as significant")
_INFORMAL_PHRASES = ("has lots of stuff", "is kinda big", "gets super crowded",
                     "is gonna change soon", "is totally worth a look",
                     "has tons of stuff going on", "is where folks hang out")

_EVALUATIVE = (
    "{R} the {T} is {I} {S}.",
    "{R} the {T} was {I} {S} and {S}.",
    "{R} i found the {T} {I} {S}.",
    "{R} it felt {I} {S} {TIME}.",
    "{R} the {D} {N} looked {I} {S}.",
    "{R} the {N} {P} were {S}.",
)
_DESCRIPTIVE = (
    "{R} there are {Q} {D} {N} {P}.",
    "{R} we {V} the {T} {TIME}.",
    "{R} the {T} {RP}.",
    "{R} it has {Q} {D} {N} and {Q} {D} {N}.",
    "{R} we {V} it with {Q} friends.",
    "{R} this {T} {RP}.",
)
_SYNTHETIC_TEMPLATES = (
    "overall, the {T} is truly {S}.",
    "in essence, the {T} is a vibrant tapestry of {D} {N}.",
    "it is undeniably {S} to delve into the {T}.",
    "essentially, the {T} offers a realm of {Q} {D} {N}.",
)
_SYNTHETIC_OPENERS = ("Certainly!", "Of course!", "Absolutely!", "Sure thing!")
_SLOT_RE = re.compile(r"\{(\w+)\}")


@dataclass(frozen=True)
class _Style:
    positivity: float      # P(positive | sentiment word)
    formality: float       # P(formal | register word)
    sentiment_rate: float  # P(a sentiment slot gets a sentiment word rather than a neutral one)
    register_rate: float   # P(an optional register slot is filled)
    detail_rate: float     # P(an optional detail slot is filled / a quantity is a number)
    target_words: int
    source: str


def _draw_style(rng: random.Random, source: str) -> _Style:
    u = rng.random()
    acc = 0.0
    for name, w, mu_pos, mu_formal in _PERSONAS:
        acc += w
        if u < acc:
            break
    if source == "synthetic":  # synthetic responses are more upbeat
        mu_pos = min(0.95, mu_pos + 0.2)
    pos = rng.betavariate(_KAPPA * mu_pos, _KAPPA * (1.0 - mu_pos))
    formal = rng.betavariate(_KAPPA * mu_formal, _KAPPA * (1.0 - mu_formal))
    sent_rate = rng.uniform(0.0, 0.4) if name == "plain" else rng.uniform(0.3, 1.0)
    reg_rate = rng.uniform(0.2, 0.9)
    det_rate = rng.uniform(0.0, 0.8)
    target = int(round(math.exp(rng.uniform(math.log(_MIN_WORDS), math.log(_MAX_WORDS)))))
    if source == "synthetic":  # and longer
        target = int(min(_MAX_WORDS, max(12, round(1.5 * target))))
    return _Style(pos, formal, sent_rate, reg_rate, det_rate, target, source)


def _fill(template: str, topic: str, st: _Style, rng: random.Random) -> str:
    def slot(m: re.Match) -> str:
        k = m.group(1)
        if k == "T":
            return topic
        if k == "S":
            if rng.random() < st.sentiment_rate:
                lex = _POS_LIST if rng.random() < st.positivity else _NEG_LIST
                return rng.choice(lex)
            return rng.choice(_NEUTRAL_ADJ)
        if k == "I":
            if st.source == "synthetic" and rng.random() < 0.3:
                return "truly"
            if rng.random() < 0.5 * st.register_rate:
                return rng.choice(_FORMAL_INTENS if rng.random() < st.formality else _INFORMAL_INTENS)
            return ""
        if k == "R":
            if rng.random() < st.register_rate:
                return rng.choice(_FORMAL_MARKERS if rng.random() < st.formality else _INFORMAL_MARKERS)
            return ""
        if k == "RP":
            return rng.choice(_FORMAL_PHRASES if rng.random() < st.formality else _INFORMAL_PHRASES)
        if k == "Q":
            return rng.choice(_NUMBER_WORDS[:12]) if rng.random() < st.detail_rate else rng.choice(_VAGUE_Q)
        if k == "D":
            if rng.random() < st.detail_rate:
                return rng.choice(_COLOURS if rng.random() < 0.5 else _MATERIALS)
            return ""
        if k == "N":
            return rng.choice(_NOUNS)
        if k == "V":
            return rng.choice(_VERBS)
        if k == "TIME":
            return rng.choice(_TIMES)
        if k == "P":
            return rng.choice(_PLACES)
        raise KeyError(k)  # pragma: no cover - templates are fixed

    s = " ".join(_SLOT_RE.sub(slot, template).split())
    s = s.replace(" .", ".").replace(" i ", " I ")
    if s.startswith("i "):
        s = "I " + s[2:]
    return s[0].upper() + s[1:]


_POS_LIST = sorted(POSITIVE_WORDS)
_NEG_LIST = sorted(NEGATIVE_WORDS)


def _on_topic(templates: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(t for t in templates if "{T}" in t)


_ON_TOPIC = {id(t): _on_topic(t) for t in (_EVALUATIVE, _DESCRIPTIVE, _SYNTHETIC_TEMPLATES)}


def _sentence(topic: str, st: _Style, rng: random.Random, first: bool) -> str:
    """One sentence; the first sentence of a response always names the topic."""
    if st.source == "synthetic" and rng.random() < 0.35:
        pool = _SYNTHETIC_TEMPLATES
    elif rng.random() < (0.7 if first else 0.45):
        pool = _EVALUATIVE
    else:
        pool = _DESCRIPTIVE
    tpl = rng.choice(_ON_TOPIC[id(pool)] if first else pool)
    return _fill(tpl, topic, st, rng)


def generate_response(prompt: str, rng: random.Random, source: str = "human") -> str:
    """One response to `prompt`: 5–40 words, whose first sentence names the topic (the
    prompt's last word).

    ``source="human"``: the base grammar. ``source="synthetic"``: detectably different text —
    usually opens with "Certainly!"/"Of course!"/…, uses the :data:`SYNTHETIC_MARKERS`
    ("overall", "truly", "vibrant tapestry", "delve", …), is longer (target length ×1.5, at
    least 12 words) and more positive (persona positivity +0.2). `rng` is a
    :class:`random.Random`.
    """
    if source not in SOURCES:
        raise ValueError(f"source must be one of {SOURCES}, got {source!r}")
    st = _draw_style(rng, source)
    topic = _topic_of(prompt)
    parts: list[str] = []
    count = 0
    n_sentences = 0
    if source == "synthetic" and rng.random() < 0.8:
        opener = rng.choice(_SYNTHETIC_OPENERS)
        parts.append(opener)
        count += len(words(opener))
    tries = 0
    while count < st.target_words and tries < 50:
        tries += 1
        s = _sentence(topic, st, rng, first=n_sentences == 0)
        k = len(words(s))
        if count + k > _MAX_WORDS:
            if count >= _MIN_WORDS:
                break
            continue
        parts.append(s)
        count += k
        n_sentences += 1
    while count < _MIN_WORDS:  # every sentence has <= 14 words, so this stays <= 40
        s = _sentence(topic, st, rng, first=n_sentences == 0)
        n_sentences += 1
        parts.append(s)
        count += len(words(s))
    return " ".join(parts)


def generate_responses(prompts: Sequence[str], seed: int = 0, source: str = "human") -> list[str]:
    """One response per prompt (see :func:`generate_response`), deterministic per (seed, source)."""
    rng = _rng("responses", source, seed)
    return [generate_response(p, rng, source) for p in prompts]


def generate_corpus(n: int, seed: int = 0, synthetic_fraction: float = 0.0) -> list[str]:
    """`n` training texts ``"<prompt> <response>"`` for the base LM, deterministic per seed.

    Prompts come from the *train* pool only (held-out prompts stay unseen). Each text is from
    the synthetic generator with probability `synthetic_fraction` (default 0: all human).
    """
    if not 0.0 <= synthetic_fraction <= 1.0:
        raise ValueError(f"synthetic_fraction must lie in [0, 1], got {synthetic_fraction}")
    prompts = generate_prompts(n, seed, "train")
    rng = _rng("corpus", seed)
    out = []
    for p in prompts:
        src = "synthetic" if rng.random() < synthetic_fraction else "human"
        out.append(format_text(p, generate_response(p, rng, src)))
    return out


def prompt_response_pairs(prompts: Sequence[str], seed: int = 0,
                          source: str = "human") -> list[dict[str, str]]:
    """Two independent responses per prompt from one source, deterministic per (seed, source).

    Returns rows ``{"prompt", "response_1", "response_2", "source"}`` — the input of
    :func:`label_rows`.
    """
    rng = _rng("pairs", source, seed)
    return [{"prompt": p, "response_1": generate_response(p, rng, source),
             "response_2": generate_response(p, rng, source), "source": source} for p in prompts]


def assign_sources(prompts: Sequence[str], synthetic_fraction: float = 0.5,
                   seed: int = 0) -> list[dict[str, str]]:
    """Rows for the human-vs-synthetic scenario (DoRA): each prompt gets a source, and both of
    its responses come from that source's generator.

    Exactly ``round(synthetic_fraction · n)`` rows (chosen uniformly at random, deterministic per
    seed) are ``"synthetic"``, the rest ``"human"``; row order follows `prompts`. Returns rows
    ``{"prompt", "response_1", "response_2", "source"}``.
    """
    if not 0.0 <= synthetic_fraction <= 1.0:
        raise ValueError(f"synthetic_fraction must lie in [0, 1], got {synthetic_fraction}")
    n = len(prompts)
    k = int(round(synthetic_fraction * n))
    rng = _rng("sources", seed)
    synthetic = set(rng.sample(range(n), k))
    rows = []
    for i, p in enumerate(prompts):
        src = "synthetic" if i in synthetic else "human"
        rows.append({"prompt": p, "response_1": generate_response(p, rng, src),
                     "response_2": generate_response(p, rng, src), "source": src})
    return rows


# =============================================================================================
# Bradley–Terry labelling and label noise
# =============================================================================================

def bt_probability(reward_1: float, reward_2: float, temperature: float) -> float:
    """P(1 ≻ 2) = σ((r1 − r2) / T) = 1 / (1 + exp(−(r1 − r2)/T)), computed stably.

    T = 0 is the hard limit: 1 if r1 > r2, 0 if r1 < r2, ½ on a tie.
    """
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    d = float(reward_1) - float(reward_2)
    if temperature == 0:
        return 1.0 if d > 0 else 0.0 if d < 0 else 0.5
    z = d / temperature
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    ez = math.exp(z)
    return ez / (1.0 + ez)


def bt_label(reward_1: float, reward_2: float, *, temperature: float, rng: Any) -> bool:
    """Draw a Bradley–Terry label: True (response 1 preferred) with probability
    σ((r1 − r2)/temperature). Consumes exactly one ``rng.random()`` (a NumPy Generator or a
    :class:`random.Random`)."""
    return bool(rng.random() < bt_probability(reward_1, reward_2, temperature))


def label_pairs(prompts: Sequence[str], responses_1: Sequence[str], responses_2: Sequence[str],
                reward_fn: Callable[[str], float], temperature: float = 0.1,
                seed: int = 0) -> list[dict[str, Any]]:
    """Label each pair by Bradley–Terry on ``reward_fn(response)``, deterministic per seed.

    For pair i, r1 = reward_fn(responses_1[i]), r2 = reward_fn(responses_2[i]),
    p_first = σ((r1 − r2)/temperature), and response 1 is chosen iff u_i < p_first with
    u_i ~ U(0, 1) from ``numpy.random.default_rng(seed)`` (one draw per pair, in order).
    Rows: ``{"prompt", "chosen", "rejected", "p_first", "first_preferred", "reward_chosen",
    "reward_rejected"}``; invariant: chosen is response 1 iff first_preferred.
    Rewards lie in [0, 1], so temperature 0.1 makes a 0.1 reward gap a 73 % preference.
    """
    if not len(prompts) == len(responses_1) == len(responses_2):
        raise ValueError(f"prompts, responses_1, responses_2 differ in length: "
                         f"{len(prompts)}, {len(responses_1)}, {len(responses_2)}")
    rng = np.random.default_rng(seed)
    rows = []
    for p, y1, y2 in zip(prompts, responses_1, responses_2):
        r1, r2 = float(reward_fn(y1)), float(reward_fn(y2))
        p_first = bt_probability(r1, r2, temperature)
        first = bool(rng.random() < p_first)
        rows.append({
            "prompt": p,
            "chosen": y1 if first else y2,
            "rejected": y2 if first else y1,
            "p_first": p_first,
            "first_preferred": first,
            "reward_chosen": r1 if first else r2,
            "reward_rejected": r2 if first else r1,
        })
    return rows


def label_rows(rows: Iterable[Mapping[str, Any]], reward_fn: Callable[[str], float],
               temperature: float = 0.1, seed: int = 0) -> list[dict[str, Any]]:
    """:func:`label_pairs` on rows ``{"prompt", "response_1", "response_2", ...}`` (from
    :func:`prompt_response_pairs` or :func:`assign_sources`); every other key (e.g. ``source``)
    is carried over to the labelled row."""
    rows = list(rows)
    labelled = label_pairs([r["prompt"] for r in rows], [r["response_1"] for r in rows],
                           [r["response_2"] for r in rows], reward_fn, temperature, seed)
    out = []
    for src, lab in zip(rows, labelled):
        extra = {k: v for k, v in src.items() if k not in ("prompt", "response_1", "response_2")}
        out.append({**lab, **extra})
    return out


def flip_labels(rows: Sequence[Mapping[str, Any]], rate: float, seed: int = 0) -> list[dict[str, Any]]:
    """The flipped-label scenario: swap chosen and rejected in exactly ``round(rate · n)`` rows,
    chosen uniformly at random (deterministic per seed).

    Returns new rows (the input is not modified), each with ``"flipped": bool``. In flipped
    rows ``reward_chosen``/``reward_rejected`` are swapped too and ``first_preferred`` is
    negated, when present; ``p_first`` (a property of the pair) is unchanged.
    """
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"rate must lie in [0, 1], got {rate}")
    n = len(rows)
    k = int(round(rate * n))
    flip = set(np.random.default_rng(seed).choice(n, size=k, replace=False).tolist()) if k else set()
    out = []
    for i, r in enumerate(rows):
        row = dict(r)
        if i in flip:
            row["chosen"], row["rejected"] = r["rejected"], r["chosen"]
            if "reward_chosen" in r and "reward_rejected" in r:
                row["reward_chosen"], row["reward_rejected"] = r["reward_rejected"], r["reward_chosen"]
            if "first_preferred" in r:
                row["first_preferred"] = not r["first_preferred"]
        row["flipped"] = i in flip
        out.append(row)
    return out
