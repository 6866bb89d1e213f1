"""L2-regularised logistic regression on standardised features, and cross-fitting.

`LogisticHead` minimises, in float64 with L-BFGS (strong-Wolfe line search),

    L(w, b) = mean_i BCE(σ(zᵢ·w + b), yᵢ) + (l2/2)·‖w‖²,   zᵢ = (xᵢ − μ)/σ,

with μ, σ the per-feature mean and standard deviation of the *training* rows (σ floored so
constant features are harmless). The intercept b is not penalised, so with l2 → 0 the mean
fitted probability on the training rows matches the training prior (calibration-in-the-large).

`crossfit_probabilities` splits the rows into stratified folds and scores every row with a
head fitted on the other folds only, so each probability is held-out.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


def _labels(is_target) -> torch.Tensor:
    y = torch.as_tensor(is_target).reshape(-1)
    if y.dtype == torch.bool:
        return y.to(torch.float64)
    y = y.to(torch.float64)
    if not torch.all((y == 0) | (y == 1)):
        raise ValueError("labels must be 0/1 or booleans")
    return y


def _features(x) -> torch.Tensor:
    x = torch.as_tensor(x).detach().to("cpu", torch.float64)
    if x.dim() == 1:
        x = x[:, None]
    if x.dim() != 2:
        raise ValueError(f"features must be a 2-D [N, H] tensor, got shape {tuple(x.shape)}")
    if not torch.isfinite(x).all():
        bad = (~torch.isfinite(x)).any(dim=1).nonzero().reshape(-1)[:5].tolist()
        raise ValueError(f"features contain non-finite values (rows {bad}...)")
    return x


class LogisticHead:
    """Binary logistic regression: P(y=1 | x) = σ(((x − μ)/σ)·w + b).

    Args:
        l2: strength of the L2 penalty (l2/2)·‖w‖² added to the *mean* log-loss.
        max_iter: L-BFGS iterations.
    """

    def __init__(self, l2: float = 1e-2, max_iter: int = 500):
        if l2 < 0:
            raise ValueError("l2 must be >= 0")
        self.l2 = float(l2)
        self.max_iter = int(max_iter)
        self.mean: torch.Tensor | None = None
        self.scale: torch.Tensor | None = None
        self.coef: torch.Tensor | None = None
        self.intercept: torch.Tensor | None = None
        self.loss: float | None = None

    def fit(self, features, labels) -> LogisticHead:
        x = _features(features)
        y = _labels(labels)
        if x.shape[0] != y.shape[0]:
            raise ValueError(f"features have {x.shape[0]} rows but labels {y.shape[0]}")
        n_pos = int(y.sum().item())
        if n_pos == 0 or n_pos == y.numel():
            raise ValueError(f"need both classes to fit; got {n_pos} positive of {y.numel()}")
        self.mean = x.mean(dim=0)
        std = x.std(dim=0, unbiased=False)
        self.scale = torch.where(std > 1e-12 * (1.0 + self.mean.abs()), std, torch.ones_like(std))
        z = (x - self.mean) / self.scale
        prior = y.mean().clamp(1e-6, 1 - 1e-6)
        w = torch.zeros(z.shape[1], dtype=torch.float64, requires_grad=True)
        b = torch.log(prior / (1 - prior)).clone().requires_grad_(True)
        opt = torch.optim.LBFGS(
            [w, b],
            lr=1.0,
            max_iter=self.max_iter,
            history_size=20,
            tolerance_grad=1e-10,
            tolerance_change=1e-14,
            line_search_fn="strong_wolfe",
        )

        def closure():
            opt.zero_grad()
            logits = z @ w + b
            loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, y)
            loss = loss + 0.5 * self.l2 * (w * w).sum()
            loss.backward()
            return loss

        with torch.enable_grad():
            opt.step(closure)
            self.loss = float(closure().item())
        self.coef = w.detach()
        self.intercept = b.detach()
        return self

    def _check_fitted(self):
        if self.coef is None:
            raise RuntimeError("LogisticHead is not fitted; call fit() first")

    def decision_function(self, features) -> torch.Tensor:
        """The logit ((x − μ)/σ)·w + b, float64 [N]."""
        self._check_fitted()
        assert self.coef is not None and self.mean is not None and self.scale is not None  # fit() sets them
        assert self.intercept is not None
        x = _features(features)
        if x.shape[1] != self.coef.numel():
            raise ValueError(f"features have width {x.shape[1]}, head was fit on {self.coef.numel()}")
        return ((x - self.mean) / self.scale) @ self.coef + self.intercept

    def predict_proba(self, features) -> torch.Tensor:
        """P(target | x), float64 [N]."""
        return torch.sigmoid(self.decision_function(features))


def stratified_folds(labels, folds: int = 5, seed: int = 0) -> torch.Tensor:
    """Fold index in [0, folds) per row, stratified by label and deterministic for `seed`.

    Within each class the rows are shuffled and dealt round-robin; the second class continues
    the deal where the first stopped, so fold sizes differ by at most one overall.
    Raises ValueError when a class has fewer rows than folds.
    """
    y = _labels(labels)
    if folds < 2:
        raise ValueError("folds must be >= 2 for cross-fitting")
    gen = torch.Generator().manual_seed(int(seed))
    fold = torch.empty(y.numel(), dtype=torch.long)
    start = 0
    for cls in (0.0, 1.0):
        idx = (y == cls).nonzero().reshape(-1)
        if idx.numel() < folds:
            name = "target" if cls == 1.0 else "non-target"
            raise ValueError(
                f"cross-fitting with {folds} folds needs at least {folds} {name} "
                f"rows, got {idx.numel()}; use fewer folds or more data"
            )
        perm = idx[torch.randperm(idx.numel(), generator=gen)]
        fold[perm] = (torch.arange(idx.numel()) + start) % folds
        start = (start + idx.numel()) % folds
    return fold


@dataclass
class CrossFitResult:
    """Held-out probabilities from `crossfit_probabilities`.

    `prob[i]` = heads[fold[i]].predict_proba(features[i]), where heads[k] was fit on exactly the
    rows with fold != k (reproducible: `LogisticHead(l2).fit(features[fold != k], y[fold != k])`).
    """

    prob: torch.Tensor  # float64 [N], P(target) from a head that never saw the row
    fold: torch.Tensor  # long [N], the fold each row was held out in
    heads: list = field(repr=False)  # one fitted LogisticHead per fold
    folds: int = 5
    seed: int = 0
    l2: float = 1e-2

    def __len__(self):
        return self.prob.numel()


def crossfit_probabilities(
    features, is_target, *, folds: int = 5, seed: int = 0, l2: float = 1e-2, max_iter: int = 500, fold=None
) -> CrossFitResult:
    """Cross-fitted P(target | features): each row scored by a head fit on the other folds.

    Args:
        features: [N, H] features.
        is_target: [N] booleans / 0-1 labels (1 = target distribution).
        folds: number of stratified folds (>= 2).
        seed: fold-assignment seed.
        l2: L2 strength of every `LogisticHead`.
        fold: optional precomputed fold per row (ints in [0, folds)); default
            `stratified_folds(is_target, folds, seed)`. Note the default depends on the labels.
    Returns:
        a `CrossFitResult` with `.prob` [N] (float64) and `.fold` [N].
    """
    x = _features(features)
    y = _labels(is_target)
    if x.shape[0] != y.numel():
        raise ValueError(f"features have {x.shape[0]} rows but is_target {y.numel()}")
    if fold is None:
        fold = stratified_folds(y, folds, seed)
    else:
        fold = torch.as_tensor(fold, dtype=torch.long).reshape(-1)
        if fold.numel() != y.numel() or fold.min() < 0 or fold.max() >= folds:
            raise ValueError(f"fold must hold {y.numel()} ints in [0, {folds})")
    prob = torch.empty(y.numel(), dtype=torch.float64)
    heads = []
    for k in range(folds):
        held = fold == k
        head = LogisticHead(l2=l2, max_iter=max_iter).fit(x[~held], y[~held])
        prob[held] = head.predict_proba(x[held])
        heads.append(head)
    return CrossFitResult(prob=prob, fold=fold, heads=heads, folds=folds, seed=seed, l2=l2)
