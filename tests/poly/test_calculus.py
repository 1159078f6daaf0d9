"""Derivatives of the network polynomial equal torch.autograd on the network."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
import torch

import polynet
from polynet import SLNN, MonomialIndex, NetworkPolynomial
from polynet.polynomial.calculus import derivative, gradient

from ..conftest import trained_like


@pytest.mark.parametrize(("n", "hidden", "degrees"), [(3, [5], [3]), (2, [4, 3], [2, 2])])
def test_gradient_equals_autograd_of_the_network(n, hidden, degrees):
    net = trained_like(SLNN(n, hidden, degrees, 2, dtype=torch.float64), n)
    p = polynet.expand(net)
    grads = gradient(p)
    assert len(grads) == n
    x = torch.randn(50, n, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    for o in range(2):
        xr = x.clone().requires_grad_(True)
        (auto,) = torch.autograd.grad(net(xr)[:, o].sum(), xr)
        ours = torch.stack([g(x)[:, o] for g in grads], dim=1)
        torch.testing.assert_close(ours, auto, rtol=1e-9, atol=1e-10)
    assert all(g.index.degree == p.index.degree - 1 for g in grads)
    assert grads[0].degree_bound == p.degree_bound - 1


def test_second_derivative_and_names():
    idx = MonomialIndex(2, 3)  # p = x0^3 + 2 x0 x1
    c = torch.zeros(1, idx.size, dtype=torch.float64)
    c[0, idx.position([[3, 0], [1, 1]])] = torch.tensor([1.0, 2.0], dtype=torch.float64)
    p = NetworkPolynomial(idx, c)
    d2 = derivative(derivative(p, "x0"), 0)  # 6 x0
    x = torch.tensor([[1.5, -2.0]], dtype=torch.float64)
    assert d2(x).item() == pytest.approx(9.0)
    assert d2.info["derivative"] == ["x0", "x0"]
    assert derivative(p, 1)(x).item() == pytest.approx(3.0)


def test_exact_derivative():
    net = trained_like(SLNN(2, [3], [2], dtype=torch.float64), 2)
    p = polynet.expand(net, exact=True)
    d = derivative(p, 1)
    assert d.exact and all(isinstance(v, Fraction) for v in d.exact_coefficients.reshape(-1))
    np.testing.assert_allclose(
        d.coefficients.numpy(),
        derivative(polynet.expand(net), 1).coefficients.numpy(),
        rtol=1e-12,
        atol=1e-14,
    )


def test_constant_and_bad_variable():
    p = NetworkPolynomial(MonomialIndex(2, 0), torch.tensor([[4.0]]))
    assert derivative(p, 0).coefficients.tolist() == [[0.0]]
    with pytest.raises(ValueError, match="i must be < n_vars = 2, got 2"):
        derivative(p, 2)
    with pytest.raises(ValueError, match="variable 'z' is not one of"):
        derivative(p, "z")
    with pytest.raises(ValueError, match="i must be an integer >= 0"):
        derivative(p, 1.0)
