"""Density-ratio estimation for DoRA, a data-preparation step before training (docs/design.md,
"Data flow").

    fit = fit_density_ratios(rows, target="human", model=ref_model, tokenizer=tok)
    print(fit.summary()); fit.write_jsonl("weights.jsonl", rows)   # adds target_prob, ratio

Pieces, usable alone: `response_features` / `encoder_features` (frozen features),
`LogisticHead` and `crossfit_probabilities` (the classifier), `density_ratio` and
`pair_ratio` (probabilities → weights). Its held-out quality is measured with
:mod:`dralign.stats` (`roc_auc`, `expected_calibration_error`, `brier_score`).
"""

from .classifier import CrossFitResult, LogisticHead, crossfit_probabilities, stratified_folds
from .features import encoder_features, load_encoder, response_features
from .fit import (
    PAIR_RULES,
    RatioFit,
    density_ratio,
    fit_density_ratios,
    pair_ratio,
    ratios_from_columns,
    response_source_from_policy,
)

__all__ = [
    "CrossFitResult",
    "LogisticHead",
    "crossfit_probabilities",
    "stratified_folds",
    "encoder_features",
    "load_encoder",
    "response_features",
    "PAIR_RULES",
    "RatioFit",
    "density_ratio",
    "fit_density_ratios",
    "pair_ratio",
    "ratios_from_columns",
    "response_source_from_policy",
]
