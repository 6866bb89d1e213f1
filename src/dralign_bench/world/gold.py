"""The shift world's gold objectives: lexicons, the four objectives ``str -> [0, 1]`` and their
mixtures (the world is described in :mod:`dralign_bench.world`).

All are bag-of-words on the *response* text: case-insensitive, no negation handling.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable

from dralign.eval.mixtures import check_alpha, mixture_fn

# =============================================================================================
# Lexicons (disjoint; no prompt word is in any of them)
# =============================================================================================

POSITIVE_WORDS = frozenset(
    """
good great lovely wonderful happy pleasant delightful excellent beautiful joyful charming
cheerful peaceful brilliant fantastic superb nice welcoming
""".split()
)

NEGATIVE_WORDS = frozenset(
    """
bad awful terrible sad gloomy dull unpleasant horrible poor ugly miserable grim dreadful
boring dirty depressing disappointing nasty
""".split()
)

FORMAL_WORDS = frozenset(
    """
furthermore moreover consequently therefore additionally nevertheless indeed notably thus
hence regarding remarkably exceedingly considerably substantial numerous considerable
sufficient demonstrates merits consideration facilities regarded significant approximately
""".split()
)

INFORMAL_WORDS = frozenset(
    """
yeah anyway okay hey basically honestly super totally kinda sorta gonna wanna gotta lots
tons stuff folks nope yep lol
""".split()
)

NUMBER_WORDS = ("two three four five six seven eight nine ten eleven twelve twenty thirty forty hundred").split()
COLOURS = "red blue green yellow white grey orange purple".split()
MATERIALS = "stone wooden glass iron brick copper marble".split()
#: Concrete-detail words counted by :func:`specificity` (any all-digit token counts too).
DETAIL_WORDS = frozenset(NUMBER_WORDS + COLOURS + MATERIALS)


_WORD_RE = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")


def words(text: str) -> list[str]:
    """The word tokens the gold objectives see: lower-cased runs of ``[a-z0-9]`` (with an
    optional ``'s``-style suffix); punctuation and other characters are separators."""
    return _WORD_RE.findall(text.lower())


def text_features(text: str) -> dict[str, int]:
    """Counts behind the gold objectives: ``n_words, n_positive, n_negative, n_formal,
    n_informal, n_detail``."""
    ws = words(text)
    return {
        "n_words": len(ws),
        "n_positive": sum(w in POSITIVE_WORDS for w in ws),
        "n_negative": sum(w in NEGATIVE_WORDS for w in ws),
        "n_formal": sum(w in FORMAL_WORDS for w in ws),
        "n_informal": sum(w in INFORMAL_WORDS for w in ws),
        "n_detail": sum(w in DETAIL_WORDS or w.isdigit() for w in ws),
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
# Mixtures of gold objectives
# =============================================================================================


def _objective(o: str | Callable[[str], float]) -> Callable[[str], float]:
    if callable(o):
        return o
    try:
        return GOLD_OBJECTIVES[o]
    except KeyError:
        raise ValueError(f"unknown gold objective {o!r}; known: {sorted(GOLD_OBJECTIVES)}") from None


def mixture_reward(
    text: str, a: str | Callable[[str], float], b: str | Callable[[str], float], alpha: float, kind: str = "linear"
) -> float:
    """The mixed gold reward of `text`: ``kind`` ∈ {"linear", "geometric"} applied to
    r_a(text), r_b(text) at α. `a`, `b` are names in :data:`GOLD_OBJECTIVES` or callables."""
    return float(mixture_fn(kind)(_objective(a)(text), _objective(b)(text), alpha))


def make_mixture_reward(
    a: str | Callable[[str], float], b: str | Callable[[str], float], alpha: float, kind: str = "linear"
) -> Callable[[str], float]:
    """``text -> mixture_reward(text, a, b, alpha, kind)``, e.g. the `reward_fn` of
    :func:`label_pairs`. Arguments are validated now, not at the first call."""
    check_alpha(alpha)
    fa, fb, mix = _objective(a), _objective(b), mixture_fn(kind)

    def reward(text: str) -> float:
        return float(mix(fa(text), fb(text), alpha))

    reward.__name__ = f"{kind}_mixture_{getattr(fa, '__name__', 'a')}_{getattr(fb, '__name__', 'b')}_{alpha:g}"
    return reward
