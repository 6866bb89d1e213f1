"""Fit DoRA's density ratios on preference rows.

Rows carry a source label. A classifier c(x, y) = P(target | x, y) is cross-fitted on frozen
features; with target prior π_T (the fraction of target items in the fitting data) the weight

    h = c / π_T ∈ [0, 1/π_T]

is the density ratio dQ_target/dP_train of the training mixture P = π_T·Q_target + (1−π_T)·Q_other
(Bayes: c = π_T q / p, so q/p = c/π_T). It may be clipped at `clip`.

**Row level** (`response_level=False`): the label is the row's source; the classifier item is the
pair, featurised as [f(x, y⁺) ‖ f(x, y⁻)]; the row's weight is h.

**Response level** (`response_level=True`): each response has its own source (e.g. in tldr the
human-written `ref` summary vs model summaries); each row contributes two items, its chosen and
its rejected response, and the classifier is fit on responses. A pair's weight combines the two
responses' ratios h⁺ = h(x, y⁺), h⁻ = h(x, y⁻) by `pair_rule`:

* ``"product"``: h⁺·h⁻. If the two responses are drawn independently given the prompt, the
  pair's density ratio is exactly q(y⁺|x)q(y⁻|x) / p(y⁺|x)p(y⁻|x) = h⁺h⁻. It ranges over
  [0, 1/π_T²] and squares the variance of the weights; when target pairs are rare or absent
  (tldr has no human-vs-human pair) nearly every pair gets a weight far below 1.
* ``"geometric"`` (default): √(h⁺h⁻) = exp(mean log h). A monotone transform of the product —
  it orders pairs exactly as the exact ratio does — that keeps the scale of a single ratio
  ([0, 1/π_T], mean ≈ 1 when sources are independent of the pair) and halves the log-weights'
  spread, i.e. the product tempered by the power ½, a standard variance-reduction for
  importance weights. DoRA's λ·log mean exp(h·ℓ/λ) multiplies losses by h, so the weights'
  scale matters: the geometric mean keeps it comparable to row-level weights.

`clip` bounds the final weight (after the pair rule).
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import torch

from ..stats import brier_score, expected_calibration_error, roc_auc
from .classifier import crossfit_probabilities
from .features import encoder_features, load_encoder, response_features

PAIR_RULES = ("geometric", "product")
SIDES = ("chosen", "rejected")


def density_ratio(prob, prior: float, clip: float | None = None) -> torch.Tensor:
    """h = prob / prior (∈ [0, 1/prior]), optionally clipped at `clip`; float64."""
    if not 0.0 < prior < 1.0:
        raise ValueError(f"prior must lie in (0, 1), got {prior}")
    h = torch.as_tensor(prob, dtype=torch.float64) / prior
    return h if clip is None else h.clamp(max=float(clip))


def pair_ratio(h_chosen, h_rejected, rule: str = "geometric") -> torch.Tensor:
    """A pair's weight from its two responses' ratios: √(h⁺h⁻) (`geometric`) or h⁺h⁻ (`product`)."""
    a = torch.as_tensor(h_chosen, dtype=torch.float64)
    b = torch.as_tensor(h_rejected, dtype=torch.float64)
    if rule == "geometric":
        return torch.sqrt(a * b)
    if rule == "product":
        return a * b
    raise ValueError(f"unknown pair_rule {rule!r}; choose one of {', '.join(PAIR_RULES)}")


def response_source_from_policy(
    human_policies: Iterable[str] = ("ref",),
    *,
    human: str = "human",
    other: str = "model",
    meta_key: str = "meta",
    field_suffix: str = "_policy",
) -> Callable[[Mapping, str], str]:
    """A per-response source function for rows like summarize-from-feedback's.

    Returns ``fn(row, side)`` = `human` if ``row[meta_key][side + field_suffix]`` is one of
    `human_policies`, else `other` (side is ``"chosen"`` or ``"rejected"``).
    """
    humans = set(human_policies)

    def source(row: Mapping, side: str) -> str:
        meta = row.get(meta_key)
        key = side + field_suffix
        if not isinstance(meta, Mapping) or key not in meta:
            raise KeyError(f"{meta_key}.{key}")
        return human if meta[key] in humans else other

    return source


def ratios_from_columns(
    rows: Sequence[Mapping], *, prior: float | None = None, clip: float | None = None
) -> torch.Tensor:
    """Weights from user-supplied columns: `ratio` as is, else `target_prob` / prior.

    Without `prior`, it is estimated as the mean `target_prob` (a calibrated classifier's mean
    probability equals the target prior).
    """
    if rows and all("ratio" in r for r in rows):
        w = torch.tensor([_number(r["ratio"], i, "ratio") for i, r in enumerate(rows)], dtype=torch.float64)
        if (w < 0).any():
            raise ValueError(f"row {int((w < 0).nonzero()[0])}: field 'ratio' is negative")
        return w if clip is None else w.clamp(max=float(clip))
    missing = [i for i, r in enumerate(rows) if "target_prob" not in r]
    if missing:
        raise ValueError(f"row {missing[0]}: needs a 'ratio' or 'target_prob' field")
    p = torch.tensor([_number(r["target_prob"], i, "target_prob") for i, r in enumerate(rows)], dtype=torch.float64)
    if ((p < 0) | (p > 1)).any():
        raise ValueError(f"row {int(((p < 0) | (p > 1)).nonzero()[0])}: 'target_prob' not in [0, 1]")
    return density_ratio(p, float(p.mean()) if prior is None else prior, clip)


def _number(v, i, name) -> float:
    try:
        x = float(v)
    except (TypeError, ValueError):
        raise ValueError(f"row {i}: field {name!r} is not a number: {v!r}") from None
    if not math.isfinite(x):
        raise ValueError(f"row {i}: field {name!r} is not finite: {v!r}")
    return x


@dataclass
class RatioFit:
    """Result of `fit_density_ratios`: per-row probabilities and weights plus held-out quality.

    Per row (length N = number of input rows):
      target_prob — held-out P(target); at response level the geometric mean √(c⁺c⁻) of the two
                    responses' probabilities (the per-response ones are in `response_prob`).
      weight      — the density ratio used by DoRA (row: c/π_T; response: `pair_rule` of the
                    two c/π_T), clipped at `clip` if given.
    Classifier items (rows, or 2N responses ordered all chosen then all rejected):
      item_prob, item_is_target, fold.
    """

    target_prob: torch.Tensor
    weight: torch.Tensor
    auc: float
    ece: float
    brier: float
    prior: float
    n_folds: int
    level: str = "row"
    pair_rule: str | None = None
    clip: float | None = None
    target: str = ""
    features: str = ""
    l2: float = 1e-2
    seed: int = 0
    response_prob: torch.Tensor | None = None
    item_prob: torch.Tensor | None = field(default=None, repr=False)
    item_is_target: torch.Tensor | None = field(default=None, repr=False)
    fold: torch.Tensor | None = field(default=None, repr=False)

    @property
    def n_items(self) -> int:
        assert self.item_is_target is not None, "set by the fit"
        return int(self.item_is_target.numel())

    @property
    def n_target(self) -> int:
        assert self.item_is_target is not None, "set by the fit"
        return int(self.item_is_target.sum().item())

    @property
    def ess_fraction(self) -> float:
        """Kish effective sample size of the weights as a fraction of N: (Σw)²/(N·Σw²)."""
        w = self.weight
        s2 = float((w * w).sum())
        return float(w.sum()) ** 2 / (w.numel() * s2) if s2 > 0 else 0.0

    def metrics(self) -> dict[str, Any]:
        """Flat, JSON-ready metrics (`ratio/…` names, docs/design.md "Conventions")."""
        w = self.weight
        return {
            "ratio/auc": self.auc,
            "ratio/ece": self.ece,
            "ratio/brier": self.brier,
            "ratio/prior": self.prior,
            "ratio/folds": self.n_folds,
            "ratio/level": self.level,
            "ratio/items": self.n_items,
            "ratio/target_items": self.n_target,
            "ratio/rows": int(w.numel()),
            "ratio/mean": float(w.mean()),
            "ratio/min": float(w.min()),
            "ratio/max": float(w.max()),
            "ratio/ess_fraction": self.ess_fraction,
            "ratio/clipped": int((w >= self.clip).sum()) if self.clip is not None else 0,
        }

    def summary(self) -> str:
        """One paragraph: data, classifier, held-out quality, weights."""
        items = "responses" if self.level == "response" else "rows"
        w = self.weight
        bound = 1.0 / self.prior
        if self.level == "response":
            rule = (
                f"each pair's weight is the {self.pair_rule} "
                f"{'mean √(h⁺h⁻)' if self.pair_rule == 'geometric' else 'h⁺h⁻'} of its two "
                f"responses' ratios h = c/π_T"
            )
            bound = bound if self.pair_rule == "geometric" else bound**2
        else:
            rule = "each row's weight is h = c/π_T"
        clip = f", clipped at {self.clip:g} ({self.metrics()['ratio/clipped']} rows)" if self.clip else ""
        return (
            f"Density-ratio classifier ({self.level} level, target = {self.target}): "
            f"{self.n_items} {items}, {self.n_target} target (π_T = {self.prior:.3f}); "
            f"features: {self.features}; {self.n_folds}-fold cross-fitted logistic head "
            f"(l2 = {self.l2:g}, seed {self.seed}). Held-out AUC {self.auc:.3f}, "
            f"ECE {self.ece:.3f}, Brier {self.brier:.3f}. {rule[0].upper() + rule[1:]} "
            f"(bound {bound:.3g}{clip}): mean {float(w.mean()):.3f}, min {float(w.min()):.3f}, "
            f"max {float(w.max()):.3f}, effective sample size {100 * self.ess_fraction:.1f}% "
            f"of {w.numel()} rows."
        )

    def write_jsonl(self, path, rows: Sequence[Mapping]) -> str:
        """Write each input row plus `target_prob` and `ratio` (and, at response level,
        `target_prob_chosen` / `target_prob_rejected`) to `path` as JSON lines, atomically
        (a temporary file in the same folder, then `os.replace`). Returns the path."""
        rows = list(rows)
        if len(rows) != self.weight.numel():
            raise ValueError(f"{len(rows)} rows given but the fit has {self.weight.numel()}")
        path = os.fspath(path)
        folder = os.path.dirname(os.path.abspath(path))
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".ratio-", suffix=".jsonl.tmp", dir=folder)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                for i, row in enumerate(rows):
                    out = dict(row)
                    out["target_prob"] = float(self.target_prob[i])
                    out["ratio"] = float(self.weight[i])
                    if self.response_prob is not None:
                        out["target_prob_chosen"] = float(self.response_prob[i, 0])
                        out["target_prob_rejected"] = float(self.response_prob[i, 1])
                    f.write(json.dumps(out, ensure_ascii=False) + "\n")
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        return path


def _target_fn(target) -> tuple[Callable[[Any], bool], str]:
    if callable(target):
        return target, getattr(target, "__name__", "callable")
    if isinstance(target, str):
        return (lambda s: s == target), repr(target)
    values = set(target)
    if not values:
        raise ValueError("target must name at least one source")
    return (lambda s: s in values), "{" + ", ".join(sorted(map(repr, values))) + "}"


def _validate_rows(rows: Sequence[Mapping]):
    if not rows:
        raise ValueError("no rows to fit")
    for i, row in enumerate(rows):
        if not isinstance(row, Mapping):
            raise TypeError(f"row {i}: expected a dict, got {type(row).__name__}")
        for key in ("prompt", "chosen", "rejected"):
            if key not in row:
                raise ValueError(f"row {i}: missing field {key!r}")
            if not isinstance(row[key], str):
                raise ValueError(f"row {i}: field {key!r} must be a string, got {type(row[key]).__name__}")


def _labels(rows, source_column, response_level) -> list:
    labels = []
    sides = SIDES if response_level else (None,)
    for side in sides:
        for i, row in enumerate(rows):
            if callable(source_column):
                try:
                    labels.append(source_column(row, side) if response_level else source_column(row))
                except KeyError as e:
                    raise ValueError(
                        f"row {i}: no source for the {side or 'row'}: missing field {e.args[0]!r}"
                    ) from None
            else:
                key = f"{side}_{source_column}" if response_level else source_column
                if key not in row:
                    raise ValueError(f"row {i}: missing source field {key!r}")
                labels.append(row[key])
    return labels


def _load_causal(model, tokenizer):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    name = model if isinstance(model, (str, os.PathLike)) else getattr(model, "name_or_path", None)
    if isinstance(model, (str, os.PathLike)):
        model = AutoModelForCausalLM.from_pretrained(model)
    if tokenizer is None:
        if not name:
            raise ValueError("a tokenizer is needed with an in-memory model")
        tokenizer = AutoTokenizer.from_pretrained(name)
    elif isinstance(tokenizer, (str, os.PathLike)):
        tokenizer = AutoTokenizer.from_pretrained(tokenizer)
    return model, tokenizer, str(name) if name else type(model).__name__


@dataclass(frozen=True)
class FeatureOptions:
    """Where the classifier's features come from (exactly one of model, encoder, features)."""

    model: Any = None
    tokenizer: Any = None
    encoder: str | None = None
    features: torch.Tensor | None = None
    batch_size: int = 16
    max_length: int = 256
    progress: bool = False


@dataclass(frozen=True)
class CrossFitOptions:
    """How the probabilities are cross-fitted and turned into weights."""

    folds: int = 5
    clip: float | None = None
    seed: int = 0
    response_level: bool = False
    pair_rule: str = "geometric"
    l2: float = 1e-2


def _split_options(options: dict) -> tuple[FeatureOptions, CrossFitOptions]:
    """The keyword options of `fit_density_ratios`, as its two option objects (TypeError on an
    unknown keyword, as for any function)."""
    names = {f.name for f in fields(FeatureOptions)}
    feature = {k: v for k, v in options.items() if k in names}
    try:
        return FeatureOptions(**feature), CrossFitOptions(**{k: v for k, v in options.items() if k not in names})
    except TypeError as err:
        raise TypeError(f"fit_density_ratios: {err}") from None


def fit_density_ratios(
    rows: Sequence[Mapping], *, target, source_column: str | Callable = "source", **options
) -> RatioFit:
    """Cross-fit P(target | x, y) on `rows` and turn it into DoRA weights (module docstring).

    Args:
        rows: dicts with string `prompt`, `chosen`, `rejected` and a source.
        target: the target source label, a collection of labels, or a predicate on labels.
        source_column: row level — the row's field holding its source, or ``fn(row) -> label``;
            response level — a suffix: ``row[f"{side}_{source_column}"]`` for side in chosen /
            rejected, or ``fn(row, side) -> label`` (see `response_source_from_policy`).
        options (`FeatureOptions`, `CrossFitOptions`):
        model, tokenizer: a causal LM (object or path; normally the reference model) whose
            response-pooled hidden states are the features (`response_features`).
        encoder: instead, an `AutoModel` encoder name/path (`encoder_features`).
        features: instead, precomputed features: [N, H] at row level, [2N, H] at response
            level (all chosen responses, then all rejected).
        folds, seed, l2: cross-fitting (`crossfit_probabilities`); response_level: sources per
            response.
        clip: maximum weight. pair_rule: `geometric` (default) or `product`.
        batch_size, max_length, progress: feature extraction (progress: a bar over its batches).
    """
    feat, cross = _split_options(options)
    rows = list(rows)
    _validate_rows(rows)
    if cross.pair_rule not in PAIR_RULES:
        raise ValueError(f"unknown pair_rule {cross.pair_rule!r}; choose one of {', '.join(PAIR_RULES)}")
    if cross.clip is not None and not cross.clip > 0:
        raise ValueError(f"clip must be positive, got {cross.clip}")
    is_target_fn, target_desc = _target_fn(target)
    labels = _labels(rows, source_column, cross.response_level)
    y = torch.tensor([bool(is_target_fn(s)) for s in labels])
    x, feat_desc = _features(rows, feat, cross.response_level)
    cf = crossfit_probabilities(x, y, folds=cross.folds, seed=cross.seed, l2=cross.l2)
    prob, prior = cf.prob, float(y.double().mean())
    target_prob, weight, response_prob = _weights(prob, prior, len(rows), cross)
    return RatioFit(
        target_prob=target_prob,
        weight=weight,
        auc=roc_auc(prob, y),
        ece=expected_calibration_error(prob, y),
        brier=brier_score(prob, y),
        prior=prior,
        n_folds=cross.folds,
        level="response" if cross.response_level else "row",
        pair_rule=cross.pair_rule if cross.response_level else None,
        clip=cross.clip,
        target=target_desc,
        features=feat_desc,
        l2=cross.l2,
        seed=cross.seed,
        response_prob=response_prob,
        item_prob=prob,
        item_is_target=y,
        fold=cf.fold,
    )


def _features(rows: list, feat: FeatureOptions, response_level: bool) -> tuple[torch.Tensor, str]:
    """(features [N or 2N, H], a description of them) from exactly one source."""
    n = len(rows)
    n_items = 2 * n if response_level else n
    given = [
        k for k, v in (("model", feat.model), ("encoder", feat.encoder), ("features", feat.features)) if v is not None
    ]
    if len(given) != 1:
        raise ValueError(
            f"give exactly one of model (with tokenizer), encoder or features; got {', '.join(given) or 'none'}"
        )
    if feat.features is not None:
        x = torch.as_tensor(feat.features)
        if x.dim() != 2 or x.shape[0] != n_items:
            raise ValueError(
                f"features must be [{n_items}, H] for {n} rows at "
                f"{'response' if response_level else 'row'} level, "
                f"got {tuple(x.shape)}"
            )
        return x, f"precomputed (H = {x.shape[1]})"
    prompts = [r["prompt"] for r in rows] * 2
    responses = [r["chosen"] for r in rows] + [r["rejected"] for r in rows]
    extract: dict[str, Any] = dict(batch_size=feat.batch_size, max_length=feat.max_length, progress=feat.progress)
    if feat.model is not None:
        model, tokenizer, name = _load_causal(feat.model, feat.tokenizer)
        f = response_features(prompts, responses, model, tokenizer, **extract)
        desc = (
            f"{name} final hidden states mean-pooled over response tokens "
            f"(H = {f.shape[1]}, max_length {feat.max_length})"
        )
    else:
        assert feat.encoder is not None  # exactly one source was given (checked above)
        enc_model, enc_tok = load_encoder(feat.encoder)
        f = encoder_features(prompts, responses, model=enc_model, tokenizer=enc_tok, **extract)
        desc = f"encoder {feat.encoder} mean-pooled (H = {f.shape[1]}, max_length {feat.max_length})"
    if response_level:
        return f, desc
    return torch.cat([f[:n], f[n:]], dim=1), desc + ", [chosen ‖ rejected] per row"


def _weights(prob: torch.Tensor, prior: float, n: int, cross: CrossFitOptions):
    """(target_prob [N], weight [N], response_prob [N, 2] or None) from the cross-fitted
    probabilities: h = c/π_T per item, a pair's weight by the pair rule at response level."""
    if cross.response_level:
        response_prob = torch.stack([prob[:n], prob[n:]], dim=1)
        h = density_ratio(response_prob, prior)
        weight = pair_ratio(h[:, 0], h[:, 1], cross.pair_rule)
        target_prob = torch.sqrt(response_prob[:, 0] * response_prob[:, 1])
    else:
        response_prob, weight, target_prob = None, density_ratio(prob, prior), prob
    if cross.clip is not None:
        weight = weight.clamp(max=float(cross.clip))
    return target_prob, weight, response_prob
