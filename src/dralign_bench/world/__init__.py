"""The shift world, data side: a synthetic text world with a known gold reward, the ground
truth of `dralign bench shift` (:mod:`dralign_bench.shift`).

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

* **Sources.** The *synthetic* source uses the same grammar and vocabulary as the human one;
  only its style distribution differs (warmer, more formal, more detailed, longer), by a
  single knob :data:`SYNTHETIC_SHIFT` ∈ [0, 1] (0: the human generator itself) tuned so that
  DoRA's density-ratio classifier separates the sources well but not perfectly (held-out
  AUC ≈ 0.8). :func:`assign_sources` builds the scenario's rows.

* **Gold objectives** (:data:`GOLD_OBJECTIVES`): four pure functions ``str -> float`` in
  [0, 1], applied to the *response* text only (the prompt pool contains no lexicon word, so
  prompt + response gives the same sentiment, formality and specificity, but not the same
  conciseness). All are bag-of-words: case-insensitive, no negation handling.

* **Mixtures** (:mod:`dralign.eval.mixtures`) r(α) = α r_a + (1−α) r_b and r_a^α r_b^(1−α), **Bradley–Terry labelling**,
  **label flipping** and **human vs synthetic sources** for the
  scenarios of :mod:`dralign_bench.shift`.

Random streams: text generation uses :class:`random.Random` seeded with a string built from the
function name, the split/source and the user's seed (string seeds are hashed with SHA-512, so
they are stable across runs, platforms and Python versions ≥ 3.2); labelling uses
``numpy.random.default_rng(seed)``.

Modules: :mod:`.gold` (lexicons, objectives, mixed rewards), :mod:`.text` (prompts, responses,
corpora, sources), :mod:`.labels` (Bradley–Terry labels, flips).
"""

from __future__ import annotations

from .gold import (
    DETAIL_WORDS,
    FORMAL_WORDS,
    GOLD_OBJECTIVES,
    INFORMAL_WORDS,
    NEGATIVE_WORDS,
    POSITIVE_WORDS,
    conciseness,
    formality,
    gold_rewards,
    make_mixture_reward,
    mixture_reward,
    sentiment,
    specificity,
    text_features,
    words,
)
from .labels import bt_label, bt_probability, flip_labels, label_pairs, label_rows
from .text import (
    SOURCES,
    SYNTHETIC_SHIFT,
    TOPICS,
    WORLD_VERSION,
    assign_sources,
    format_text,
    generate_corpus,
    generate_prompts,
    generate_response,
    generate_responses,
    prompt_pool,
    prompt_response_pairs,
)

__all__ = [
    "DETAIL_WORDS",
    "FORMAL_WORDS",
    "GOLD_OBJECTIVES",
    "INFORMAL_WORDS",
    "NEGATIVE_WORDS",
    "POSITIVE_WORDS",
    "SOURCES",
    "SYNTHETIC_SHIFT",
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
    "gold_rewards",
    "label_pairs",
    "label_rows",
    "make_mixture_reward",
    "mixture_reward",
    "prompt_pool",
    "prompt_response_pairs",
    "sentiment",
    "specificity",
    "text_features",
    "words",
]
