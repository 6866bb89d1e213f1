"""The shift world's text: prompt pools and a small response grammar driven by a latent style.

Random streams use :class:`random.Random` seeded with a string built from the function name,
the split/source and the user's seed (string seeds are hashed with SHA-512: stable across runs,
platforms and Python versions).
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .gold import COLOURS, MATERIALS, NEGATIVE_WORDS, NUMBER_WORDS, POSITIVE_WORDS, words

SOURCES = ("human", "synthetic")

TOPICS = tuple(
    """
garden ocean city market library mountain kitchen train school forest river village festival
bakery bridge desert island castle farm park harbor museum theater station lake meadow cafe
stadium airport orchard valley lighthouse factory beach hotel concert zoo canal square tower
""".split()
)

_PROMPT_TEMPLATES = (
    "Write about the {m}{t}:",
    "Describe the {m}{t}:",
    "Tell me about the {m}{t}:",
    "Give your view of the {m}{t}:",
    "Say something about the {m}{t}:",
    "Write a note about the {m}{t}:",
    "Review the {m}{t}:",
    "Share a thought on the {m}{t}:",
)
_PROMPT_MODIFIERS = ("", "old ", "new ", "small ", "big ", "local ", "nearby ", "famous ")
_HELDOUT_FRACTION = 0.2
_SPLIT_SEED = "dralign-shift-world-prompt-split-v1"

# Bump when the human text changes (pinned by a hash in tests/bench/test_world.py): cached world
# LMs, pretrained on human text only, are keyed by it. The synthetic generator is not part of it.
WORLD_VERSION = "1"

#: The gap between the human and the synthetic source, in [0, 1]: 0 makes the synthetic
#: generator the human one (same draws, same text); 1 is the full synthetic style (warmer, more
#: formal, more detailed, longer; ``_SYNTHETIC_PERSONA_WEIGHTS`` and ``_SHIFT_*`` below). Both
#: sources share one grammar and vocabulary, so no word gives the source away. Tuned so that
#: DoRA's density-ratio classifier (``dralign ratio fit``: world-LM features, row level, 480
#: train-pool rows, 70 % synthetic, target human) reaches a cross-fitted AUC of about 0.8
#: (0.79–0.85 over seeds 0–5; 0.74 at shift 0.6, 0.84 at shift 1, 0.5 at shift 0).
SYNTHETIC_SHIFT = 0.8

# =============================================================================================
# Prompts
# =============================================================================================


def _rng(*parts: Any) -> random.Random:
    return random.Random("/".join(str(p) for p in parts))


def _build_pools() -> dict[str, tuple[str, ...]]:
    allp = [t.format(m=m, t=topic) for topic in TOPICS for m in _PROMPT_MODIFIERS for t in _PROMPT_TEMPLATES]
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
# The synthetic style at shift 1 (the shift s ∈ [0, 1] scales every change linearly): an
# assistant-like persona mix (mostly warm and formal, no grumpy writer), persona positivity
# +0.5 and formality +0.4 (means capped at 0.95), register rate ×1.5 and detail rate ×2
# (capped at 1), target length ×2 (capped at 40 words). Every value stays in the human range.
_SYNTHETIC_PERSONA_WEIGHTS = (0.10, 0.05, 0.70, 0.0, 0.15)
_SHIFT_POSITIVITY = 0.5
_SHIFT_FORMALITY = 0.4
_SHIFT_REGISTER = 0.5
_SHIFT_DETAIL = 1.0
_SHIFT_LENGTH = 1.0
_MIN_WORDS, _MAX_WORDS = 5, 40

_NEUTRAL_ADJ = "large small old new busy open wide tall long plain typical modern simple distant".split()
_NOUNS = (
    "people children visitors birds trees lamps paths windows benches shops boats doors tables signs flowers houses"
).split()
_VERBS = "visited saw passed explored left reached photographed watched".split()
_TIMES = ("in the morning", "at night", "every day", "last week", "after lunch", "on sunday", "in winter", "in spring")
_PLACES = ("near the gate", "by the water", "along the road", "behind the wall", "around the corner", "at the entrance")
_VAGUE_Q = ("some", "many", "a few", "several")
_FORMAL_MARKERS = (
    "furthermore,",
    "moreover,",
    "indeed,",
    "additionally,",
    "consequently,",
    "nevertheless,",
    "notably,",
    "thus,",
)
_INFORMAL_MARKERS = ("yeah,", "anyway,", "okay,", "hey,", "basically,", "honestly,")
_FORMAL_INTENS = ("remarkably", "exceedingly", "considerably")
_INFORMAL_INTENS = ("super", "totally", "kinda", "sorta")
_FORMAL_PHRASES = (
    "requires substantial attention",
    "offers numerous facilities",
    "demonstrates considerable character",
    "merits further consideration",
    "provides sufficient space",
    "is regarded as significant",
)
_INFORMAL_PHRASES = (
    "has lots of stuff",
    "is kinda big",
    "gets super crowded",
    "is gonna change soon",
    "is totally worth a look",
    "has tons of stuff going on",
    "is where folks hang out",
)

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
_SLOT_RE = re.compile(r"\{(\w+)\}")


@dataclass(frozen=True)
class _Style:
    positivity: float  # P(positive | sentiment word)
    formality: float  # P(formal | register word)
    sentiment_rate: float  # P(a sentiment slot gets a sentiment word rather than a neutral one)
    register_rate: float  # P(an optional register slot is filled)
    detail_rate: float  # P(an optional detail slot is filled / a quantity is a number)
    target_words: int


def _synthetic_shift(source: str, shift: float | None) -> float:
    """The gap used for `source`: 0 for human text, `shift` (default :data:`SYNTHETIC_SHIFT`)
    for synthetic text, validated to lie in [0, 1]."""
    if source not in SOURCES:
        raise ValueError(f"source must be one of {SOURCES}, got {source!r}")
    s = SYNTHETIC_SHIFT if shift is None else float(shift)
    if not 0.0 <= s <= 1.0:
        raise ValueError(f"shift must lie in [0, 1], got {shift}")
    return s if source == "synthetic" else 0.0


def _draw_style(rng: random.Random, shift: float = 0.0) -> _Style:
    """A latent style; `shift` ∈ [0, 1] moves it towards the synthetic source (see
    :data:`SYNTHETIC_SHIFT`). Every draw is made whatever the shift, and the shift
    only transforms drawn values, so shift 0 is the human generator, draw for draw."""
    weights = [(1.0 - shift) * w + shift * ws for (_, w, _, _), ws in zip(_PERSONAS, _SYNTHETIC_PERSONA_WEIGHTS)]
    u = rng.random()
    acc = 0.0
    for (name, _, mu_pos, mu_formal), w in zip(_PERSONAS, weights):  # noqa: B007 (the drawn persona, read after the loop)
        acc += w
        if u < acc:
            break
    mu_pos = min(0.95, mu_pos + _SHIFT_POSITIVITY * shift)
    mu_formal = min(0.95, mu_formal + _SHIFT_FORMALITY * shift)
    pos = rng.betavariate(_KAPPA * mu_pos, _KAPPA * (1.0 - mu_pos))
    formal = rng.betavariate(_KAPPA * mu_formal, _KAPPA * (1.0 - mu_formal))
    sent_rate = rng.uniform(0.0, 0.4) if name == "plain" else rng.uniform(0.3, 1.0)
    reg_rate = min(1.0, rng.uniform(0.2, 0.9) * (1.0 + _SHIFT_REGISTER * shift))
    det_rate = min(1.0, rng.uniform(0.0, 0.8) * (1.0 + _SHIFT_DETAIL * shift))
    target = int(round(math.exp(rng.uniform(math.log(_MIN_WORDS), math.log(_MAX_WORDS)))))
    if shift:  # longer, within the human range of target lengths
        target = int(min(_MAX_WORDS, round(target * (1.0 + _SHIFT_LENGTH * shift))))
    return _Style(pos, formal, sent_rate, reg_rate, det_rate, target)


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
            return rng.choice(NUMBER_WORDS[:12]) if rng.random() < st.detail_rate else rng.choice(_VAGUE_Q)
        if k == "D":
            if rng.random() < st.detail_rate:
                return rng.choice(COLOURS if rng.random() < 0.5 else MATERIALS)
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


_ON_TOPIC = {id(t): _on_topic(t) for t in (_EVALUATIVE, _DESCRIPTIVE)}


def _sentence(topic: str, st: _Style, rng: random.Random, first: bool) -> str:
    """One sentence; the first sentence of a response always names the topic."""
    if rng.random() < (0.7 if first else 0.45):
        pool = _EVALUATIVE
    else:
        pool = _DESCRIPTIVE
    tpl = rng.choice(_ON_TOPIC[id(pool)] if first else pool)
    return _fill(tpl, topic, st, rng)


def generate_response(prompt: str, rng: random.Random, source: str = "human", shift: float | None = None) -> str:
    """One response to `prompt`: 5–40 words, whose first sentence names the topic (the
    prompt's last word). `rng` is a :class:`random.Random`.

    Both sources use the same grammar and vocabulary; they differ only in the distribution of
    the latent style. ``source="human"``: the base style. ``source="synthetic"``: the style
    moved by `shift` ∈ [0, 1] (default :data:`SYNTHETIC_SHIFT`) towards warmer, more formal,
    more detailed and longer replies; at shift 0 it is the human generator, draw for draw.
    """
    st = _draw_style(rng, _synthetic_shift(source, shift))
    topic = _topic_of(prompt)
    parts: list[str] = []
    count = 0
    n_sentences = 0
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


def generate_responses(
    prompts: Sequence[str], seed: int = 0, source: str = "human", shift: float | None = None
) -> list[str]:
    """One response per prompt (see :func:`generate_response`), deterministic per (seed, source)."""
    rng = _rng("responses", source, seed)
    return [generate_response(p, rng, source, shift) for p in prompts]


def generate_corpus(n: int, seed: int = 0, synthetic_fraction: float = 0.0, shift: float | None = None) -> list[str]:
    """`n` training texts ``"<prompt> <response>"`` for the base LM, deterministic per seed.

    Prompts come from the *train* pool only (held-out prompts stay unseen). Each text is from
    the synthetic generator (at `shift`, default :data:`SYNTHETIC_SHIFT`) with probability
    `synthetic_fraction` (default 0: all human).
    """
    if not 0.0 <= synthetic_fraction <= 1.0:
        raise ValueError(f"synthetic_fraction must lie in [0, 1], got {synthetic_fraction}")
    prompts = generate_prompts(n, seed, "train")
    rng = _rng("corpus", seed)
    out = []
    for p in prompts:
        src = "synthetic" if rng.random() < synthetic_fraction else "human"
        out.append(format_text(p, generate_response(p, rng, src, shift)))
    return out


def prompt_response_pairs(
    prompts: Sequence[str], seed: int = 0, source: str = "human", shift: float | None = None
) -> list[dict[str, str]]:
    """Two independent responses per prompt from one source, deterministic per (seed, source).

    Returns rows ``{"prompt", "response_1", "response_2", "source"}`` — the input of
    :func:`label_rows`.
    """
    rng = _rng("pairs", source, seed)
    return [
        {
            "prompt": p,
            "response_1": generate_response(p, rng, source, shift),
            "response_2": generate_response(p, rng, source, shift),
            "source": source,
        }
        for p in prompts
    ]


def assign_sources(
    prompts: Sequence[str], synthetic_fraction: float = 0.5, seed: int = 0, shift: float | Sequence[float] | None = None
) -> list[dict[str, str]]:
    """Rows for the human-vs-synthetic scenario (DoRA): each prompt gets a source, and both of
    its responses come from that source's generator (synthetic at `shift`, default
    :data:`SYNTHETIC_SHIFT`: separable from human text by a classifier, held-out AUC ≈ 0.8
    with world-LM features, but by no single word). `shift` may also be one value per prompt
    (used where the row is synthetic): synthetic text at several distances from the human style.

    Exactly ``round(synthetic_fraction · n)`` rows (chosen uniformly at random, deterministic per
    seed) are ``"synthetic"``, the rest ``"human"``; row order follows `prompts`. Returns rows
    ``{"prompt", "response_1", "response_2", "source"}``.
    """
    if not 0.0 <= synthetic_fraction <= 1.0:
        raise ValueError(f"synthetic_fraction must lie in [0, 1], got {synthetic_fraction}")
    n = len(prompts)
    shifts = [shift] * n if shift is None or isinstance(shift, (int, float)) else list(shift)
    if len(shifts) != n:
        raise ValueError(f"shift: {len(shifts)} values for {n} prompts")
    k = int(round(synthetic_fraction * n))
    rng = _rng("sources", seed)
    synthetic = set(rng.sample(range(n), k))
    rows = []
    for i, (p, s) in enumerate(zip(prompts, shifts)):
        src = "synthetic" if i in synthetic else "human"
        rows.append(
            {
                "prompt": p,
                "response_1": generate_response(p, rng, src, s),
                "response_2": generate_response(p, rng, src, s),
                "source": src,
            }
        )
    return rows
