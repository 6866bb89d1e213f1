"""dralign.eval.mixtures: the linear and geometric mixtures of two rewards."""

import numpy as np
import pytest

from dralign.eval.mixtures import geometric_mixture, linear_mixture


def test_linear_mixture():
    assert linear_mixture(0.2, 0.8, 0.25) == pytest.approx(0.25 * 0.2 + 0.75 * 0.8)
    assert linear_mixture(0.2, 0.8, 1.0) == pytest.approx(0.2)
    assert linear_mixture(0.2, 0.8, 0.0) == pytest.approx(0.8)
    out = linear_mixture(np.array([0.0, 1.0]), np.array([1.0, 1.0]), 0.5)
    assert np.allclose(out, [0.5, 1.0])
    with pytest.raises(ValueError):
        linear_mixture(0.1, 0.2, 1.1)


def test_geometric_mixture():
    assert geometric_mixture(0.25, 0.64, 0.5) == pytest.approx(0.4)
    assert geometric_mixture(0.5, 0.9, 0.3) == pytest.approx(0.5**0.3 * 0.9**0.7)
    # 0^0 := 1: the endpoints are exactly the single rewards even when the other is 0
    assert geometric_mixture(0.3, 0.0, 1.0) == pytest.approx(0.3)
    assert geometric_mixture(0.0, 0.7, 0.0) == pytest.approx(0.7)
    assert geometric_mixture(0.0, 0.7, 0.5) == 0.0
    out = geometric_mixture(np.array([0.0, 0.25]), np.array([0.5, 1.0]), 1.0)
    assert np.allclose(out, [0.0, 0.25]) and np.all(np.isfinite(out))
    with pytest.raises(ValueError):
        geometric_mixture(-0.1, 0.5, 0.5)
