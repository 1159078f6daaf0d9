"""The orthogonal-basis view: evaluating the converted coefficients gives the polynomial back."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
import torch
from numpy.polynomial import chebyshev, hermite_e, legendre

import polynet
from polynet import SLNN
from polynet.analysis import orthogonal_coefficients
from polynet.analysis.orthogonal import FAMILIES, univariate_matrix

from ..conftest import trained_like

VAL = {"legendre": legendre.legval, "hermite": hermite_e.hermeval, "chebyshev": chebyshev.chebval}
NORM = {"legendre": lambda k: 1 / (2 * k + 1), "hermite": lambda k: float(np.prod(range(1, k + 1)))}


def evaluate(coef, exponents, basis, u, normalized):
    """Σ_r coef[r] ∏_v ψ_{e[r, v]}(u_v), the slow way."""
    out = np.zeros(len(u))
    for c, e in zip(coef, exponents):
        term = np.full(len(u), float(c))
        for v, k in enumerate(e):
            unit = np.eye(k + 1)[k]
            if normalized:
                unit = unit / np.sqrt(NORM[basis](k) if basis in NORM else (1.0 if k == 0 else 0.5))
            term = term * VAL[basis](u[:, v], unit)
        out += term
    return out


@pytest.mark.parametrize("basis", ["legendre", "hermite", "chebyshev"])
@pytest.mark.parametrize("normalized", [True, False])
def test_view_evaluates_to_the_polynomial(basis, normalized):
    net = trained_like(SLNN(3, [4], [3], dtype=torch.float64), 3)
    p = polynet.expand(net)
    if basis == "hermite":
        shift, scale = np.array([0.3, -1.0, 0.0]), np.array([1.5, 0.5, 2.0])
        coef = orthogonal_coefficients(p, basis, mean=shift, std=scale, normalized=normalized)
    else:
        low, high = np.array([-1.0, 0.0, -3.0]), np.array([1.0, 2.0, 1.0])
        shift, scale = (low + high) / 2, (high - low) / 2
        coef = orthogonal_coefficients(p, basis, low=low, high=high, normalized=normalized)
    u = np.random.default_rng(0).uniform(-1, 1, (20, 3))
    x = shift + scale * u
    expected = p(torch.from_numpy(x)).numpy()[:, 0]
    got = evaluate(coef[0], p.exponents, basis, u, normalized)
    np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("basis", sorted(FAMILIES))
def test_exact_univariate_matrix_equals_numpy(basis):
    fam = FAMILIES[basis]
    exact = univariate_matrix(fam, 6, Fraction(1, 3), Fraction(5, 2), exact=True)
    assert all(isinstance(v, Fraction) for v in exact.reshape(-1))
    np.testing.assert_allclose(
        exact.astype(float), univariate_matrix(fam, 6, 1 / 3, 2.5), rtol=1e-12, atol=1e-12
    )


def test_exact_view_matches_float_view():
    net = trained_like(SLNN(2, [3], [2], dtype=torch.float64), 2)
    p = polynet.expand(net, exact=True)
    exact = orthogonal_coefficients(p, "hermite", mean=0.5, std=2, normalized=False, exact=True)
    floats = orthogonal_coefficients(p, "hermite", mean=0.5, std=2, normalized=False)
    np.testing.assert_allclose(exact.astype(float), floats, rtol=1e-12, atol=1e-14)


def test_bad_arguments():
    p = polynet.expand(trained_like(SLNN(2, [3], [2], dtype=torch.float64), 2))
    with pytest.raises(ValueError, match="basis must be one of"):
        orthogonal_coefficients(p, "laguerre")
    exact = polynet.expand(SLNN(2, [2], [2]).eval(), exact=True)
    with pytest.raises(ValueError, match="pass normalized=False"):
        orthogonal_coefficients(exact, exact=True)
    with pytest.raises(ValueError, match="mean and std describe"):
        orthogonal_coefficients(p, "legendre", mean=0.0)
