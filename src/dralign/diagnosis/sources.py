"""Sources against a named target: DoRA's density-ratio classifier, fitted by the code of
`dralign ratio fit` (`dralign.ratio.fit_density_ratios`: cross-fitted logistic head, held-out
AUC, ECE, Brier, ratios h = c/π_T and their effective sample size) on features of the
tokenised pairs.

Features: per pair, hashed bags of token ids of the prompt, the chosen and the rejected
response (log1p counts in `BUCKETS` buckets each) and their log lengths. They need no model, so
the fit takes seconds; `dralign ratio fit --model` fits on a model's hidden states instead, which
can only separate sources better (its AUC is at least as informative as this one's)."""

from __future__ import annotations

import numpy as np

from ..errors import BadOptionError
from .measure import FIELDS, NO_NAME, names_of

BUCKETS = 64  # per field: 3·64 + 3 features; enough to tell vocabularies apart, cheap to fit
MAX_FIT_ROWS = 20_000  # judgement: a 20k-row subsample puts the AUC's standard error near 0.005


def hashed_features(data, rows: np.ndarray) -> np.ndarray:
    """[len(rows), 3·BUCKETS + 3] float32 features of the pairs `rows` of `data`."""
    t, out = data.examples, []
    for field in FIELDS:
        flat, offsets = t.arrays[field], t.arrays[f"{field}.offsets"]
        starts, ends = offsets[rows], offsets[rows + 1]
        lengths = ends - starts
        owner = np.repeat(np.arange(rows.size), lengths)
        positions = (
            np.concatenate([np.arange(a, b) for a, b in zip(starts, ends)]) if rows.size else np.zeros(0, np.int64)
        )
        bucket = (flat[positions].astype(np.uint64) * np.uint64(2654435761)) % np.uint64(BUCKETS)
        counts = np.bincount(owner * BUCKETS + bucket.astype(np.int64), minlength=rows.size * BUCKETS)
        out.append(np.log1p(counts.reshape(rows.size, BUCKETS)))
        out.append(np.log1p(lengths)[:, None])
    return np.concatenate(out, axis=1).astype(np.float32)


def sources_report(data, target: list[str], seed: int) -> dict:
    """The `sources` section: counts per source, and with `target` the ratio fit's AUC, ECE,
    Brier, target prior, effective sample size and weight range."""
    names = data.source_names
    labels = np.asarray(names_of(data, "source"), dtype=object) if names else None
    counts = {n: int((labels == n).sum()) for n in [*names, NO_NAME]} if names else {}
    out: dict = {"counts": {k: v for k, v in counts.items() if v}, "target": list(target)}
    if not target:
        return out
    if not names:
        raise BadOptionError(f"--target {' '.join(target)}: the data has no source column (set --source-column)")
    assert labels is not None  # names is non-empty here
    unknown = [t for t in target if t not in names]
    if unknown:
        raise BadOptionError(f"--target {', '.join(unknown)}: not a source of the data (sources: {', '.join(names)})")
    rows = np.flatnonzero(labels != NO_NAME)
    if rows.size > MAX_FIT_ROWS:
        rows = np.sort(np.random.default_rng(seed).choice(rows, MAX_FIT_ROWS, replace=False))
    is_target = np.isin(labels[rows], target)
    if is_target.all() or not is_target.any():
        out["note"] = (
            "every source row is " + ("a target" if is_target.all() else "not a target") + ": nothing to separate"
        )
        return out
    return {**out, **_fit(data, rows, labels[rows], target, seed)}


def _fit(data, rows: np.ndarray, labels: np.ndarray, target: list[str], seed: int) -> dict:
    """The fit of `dralign ratio fit` on hashed features of `rows`; its metrics."""
    import torch

    from ..ratio import fit_density_ratios

    items = [{"prompt": "", "chosen": "", "rejected": "", "source": s} for s in labels]  # texts unused: features given
    fit = fit_density_ratios(
        items, target=set(target), features=torch.from_numpy(hashed_features(data, rows)), seed=seed
    )
    m = fit.metrics()
    return {
        "auc": fit.auc,
        "ece": fit.ece,
        "brier": fit.brier,
        "prior": fit.prior,
        "ess": fit.ess_fraction,
        "weight_max": m["ratio/max"],
        "weight_min": m["ratio/min"],
        "rows_fitted": int(rows.size),
        "folds": fit.n_folds,
        "features": f"hashed token bags ({BUCKETS} buckets per field) + log lengths",
    }
