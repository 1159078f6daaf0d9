"""Truncation and sparsification: the certified bound caps the measured error."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
import torch

import polynet
from polynet import SLNN, MonomialIndex, NetworkPolynomial
from polynet.analysis.sparsify import sparsify
from polynet.polynomial.truncation import monomial_maxima, truncate

from ..conftest import trained_like


@pytest.fixture(scope="module")
def network_poly():
    net = trained_like(SLNN(3, [6, 4], [2, 2], 2, dtype=torch.float64), 3)
    X = np.random.default_rng(0).normal(0, 1, (300, 3))
    return polynet.expand(net), X


def test_bound_caps_the_measured_error_along_the_curve(network_poly):
    p, X = network_poly
    s = sparsify(p, X, rtol=1e-2)
    assert (s.max_errors <= s.bounds * (1 + 1e-9) + 1e-12).all()
    assert (s.rms_errors <= s.max_errors + 1e-15).all()
    assert s.bound <= s.tol and s.n_terms in s.terms and s.terms[-1] == p.n_terms
    assert s.bounds[-1] == 0 and np.all(np.diff(s.bounds) <= 0)
    # The fewest: one term less breaks the bound.
    fewer = truncate(p, terms=s.n_terms - 1, low=X.min(0), high=X.max(0))
    assert fewer.info["truncation"]["bound"] > s.tol
    kept = s.polynomial
    assert kept.n_terms == s.n_terms and kept.index == p.index
    err = float(np.abs(kept(X) - p(X)).max())
    assert err == pytest.approx(s.max_error, rel=1e-9, abs=1e-12) and err <= s.bound
    # Anywhere in the box, not only on the data.
    box = np.random.default_rng(1).uniform(X.min(0), X.max(0), (2000, 3))
    assert float(np.abs(kept(box) - p(box)).max()) <= s.bound
    assert "| terms kept |" in s.table()


def test_truncate_modes(network_poly):
    p, _ = network_poly
    low = truncate(p, degree=2)
    assert low.index == MonomialIndex(3, 2) and low.degree_bound == 2
    np.testing.assert_array_equal(low.coefficients, p.coefficients[:, : low.index.size])
    top = truncate(p, terms=5)
    assert top.n_terms == 5
    loose = truncate(p, tol=1e9)
    assert loose.n_terms == 0
    assert truncate(p, tol=0).n_terms == p.n_terms


def test_monomial_maxima_is_tight_per_monomial():
    idx = MonomialIndex(2, 2)
    m = monomial_maxima(idx, [-3, 0.5], [1, 2])
    # rows: 1, x0, x1, x0^2, x0 x1, x1^2 with |x0| <= 3 and |x1| <= 2
    np.testing.assert_allclose(m, [1, 3, 2, 9, 6, 4])


def test_exact_polynomial_stays_exact():
    idx = MonomialIndex(1, 2)
    p = NetworkPolynomial(idx, np.array([[Fraction(1), Fraction(1, 10), Fraction(1, 1000)]]))
    t = truncate(p, tol=0.01)
    assert t.exact and t.exact_coefficients[0].tolist() == [1, Fraction(1, 10), 0]
    d = truncate(p, degree=1)
    assert d.exact and d.exact_coefficients[0].tolist() == [1, Fraction(1, 10)]


def test_bad_arguments(network_poly):
    p, X = network_poly
    with pytest.raises(ValueError, match="give exactly one of terms=, tol=, degree=; got none"):
        truncate(p)
    with pytest.raises(ValueError, match="got terms, tol"):
        truncate(p, terms=3, tol=0.1)
    with pytest.raises(ValueError, match="tol must be a finite number >= 0.0"):
        truncate(p, tol=-1)
    with pytest.raises(ValueError, match=r"low\[1\] must be < high\[1\]"):
        truncate(p, terms=3, low=[0, 1, 0], high=[1, 1, 1])
    with pytest.raises(ValueError, match=r"X must have shape \(n_samples, 3\)"):
        sparsify(p, X[:, :2])
    with pytest.raises(ValueError, match="rtol must be a finite number > 0.0"):
        sparsify(p, rtol=0)
    with pytest.raises(TypeError, match="expected a NetworkPolynomial"):
        truncate(torch.zeros(3), terms=1)
