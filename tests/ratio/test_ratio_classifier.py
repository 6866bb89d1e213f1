"""LogisticHead and cross-fitting (each row scored by a head that never saw it)."""

import pytest
import torch

from dralign.ratio import LogisticHead, crossfit_probabilities, stratified_folds
from dralign.stats import roc_auc


def _data(n=200, h=6, seed=0, signal=1.5):
    g = torch.Generator().manual_seed(seed)
    y = (torch.rand(n, generator=g) < 0.3).double()
    x = torch.randn(n, h, generator=g, dtype=torch.float64) * 3 + 10  # unstandardised
    x[:, 0] += signal * 3 * y
    return x, y


def test_head_is_at_its_optimum_and_calibrated_in_the_large():
    x, y = _data()
    head = LogisticHead(l2=0.1).fit(x, y)
    # stationarity of mean BCE + (l2/2)|w|² on standardised features
    w = head.coef.clone().requires_grad_(True)
    b = head.intercept.clone().requires_grad_(True)
    z = (x - head.mean) / head.scale
    loss = torch.nn.functional.binary_cross_entropy_with_logits(z @ w + b, y) + 0.05 * (w * w).sum()
    gw, gb = torch.autograd.grad(loss, [w, b])
    assert gw.abs().max() < 1e-6 and gb.abs() < 1e-6
    # unpenalised intercept ⇒ mean fitted probability = training prior
    assert head.predict_proba(x).mean().item() == pytest.approx(y.mean().item(), abs=1e-6)
    assert head.predict_proba(x).dtype == torch.float64


def test_head_l2_shrinks_and_learns_the_signal():
    x, y = _data()
    weak = LogisticHead(l2=10.0).fit(x, y)
    strong = LogisticHead(l2=1e-3).fit(x, y)
    assert weak.coef.norm() < strong.coef.norm()
    assert strong.coef[0].abs() == strong.coef.abs().max()
    assert roc_auc(strong.predict_proba(x), y) > 0.8


def test_head_handles_constant_features_and_checks_input():
    x, y = _data()
    x[:, 1] = 7.0
    head = LogisticHead().fit(x, y)
    assert torch.isfinite(head.predict_proba(x)).all()
    with pytest.raises(ValueError, match="both classes"):
        LogisticHead().fit(x, torch.ones(len(y)))
    with pytest.raises(ValueError, match="width"):
        head.predict_proba(x[:, :3])
    with pytest.raises(RuntimeError, match="not fitted"):
        LogisticHead().predict_proba(x)


def test_stratified_folds_balance_and_determinism():
    _, y = _data(n=103)
    fold = stratified_folds(y, 5, seed=3)
    assert torch.equal(fold, stratified_folds(y, 5, seed=3))
    assert not torch.equal(fold, stratified_folds(y, 5, seed=4))
    sizes = torch.bincount(fold, minlength=5)
    assert sizes.max() - sizes.min() <= 1
    for cls in (0, 1):
        per = torch.bincount(fold[y == cls], minlength=5)
        assert per.max() - per.min() <= 1
    with pytest.raises(ValueError, match="at least 5 target"):
        stratified_folds(torch.tensor([1, 1, 0, 0, 0, 0, 0]), 5)


def test_crossfit_rows_scored_by_heads_that_never_saw_them():
    x, y = _data(n=120)
    cf = crossfit_probabilities(x, y, folds=4, seed=1, l2=0.05)
    assert cf.prob.shape == (120,) and cf.fold.shape == (120,)
    for k in range(4):
        held = cf.fold == k
        # an independent refit on the other folds reproduces the held-out scores
        ref = LogisticHead(l2=0.05).fit(x[~held], y[~held]).predict_proba(x[held])
        assert torch.allclose(cf.prob[held], ref, atol=1e-8)
    # the in-sample score of a held-out row differs from its cross-fitted one
    full = LogisticHead(l2=0.05).fit(x, y).predict_proba(x)
    assert (full - cf.prob).abs().max() > 1e-4


def test_crossfit_own_label_does_not_change_own_score():
    x, y = _data(n=120)
    fold = stratified_folds(y, 4, seed=0)
    base = crossfit_probabilities(x, y, folds=4, fold=fold)
    for i in (0, 17, 63):
        flipped = y.clone()
        flipped[i] = 1 - flipped[i]
        other = crossfit_probabilities(x, flipped, folds=4, fold=fold)
        assert other.prob[i].item() == pytest.approx(base.prob[i].item(), abs=1e-10)
        # ...while rows of other folds, whose heads saw row i, do change
        others = fold != fold[i]
        assert (other.prob[others] - base.prob[others]).abs().max() > 1e-6


def test_crossfit_rejects_bad_fold():
    x, y = _data(n=20)
    with pytest.raises(ValueError, match="fold"):
        crossfit_probabilities(x, y, folds=2, fold=torch.full((20,), 3))
