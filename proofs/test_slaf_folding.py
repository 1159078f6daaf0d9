"""Check of the SLAF folding lemma (proofs/slaf_folding.md)."""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable

import numpy as np
import pytest
import sympy
import torch

import polynet

from .symbolic import basis_matrix

BASES = ["taylor", "chebyshev", "legendre"]
#: Float64 agreement of two routes to the same coefficients (closed form vs polynomial()).
RTOL = 1e-12

z = sympy.Symbol("z")
SYMPY_BASIS: dict[str, Callable[[int], sympy.Expr]] = {
    "taylor": lambda i: z**i,
    "chebyshev": lambda i: sympy.chebyshevt(i, z),
    "legendre": lambda i: sympy.legendre(i, z),
}


def _symbols(k: int):
    c = sympy.symbols(f"c1:{k + 1}")
    mu = sympy.symbols(f"mu1:{k + 1}")
    s = sympy.symbols(f"s1:{k + 1}", positive=True)
    return c, mu, s, sympy.Symbol("b")


def closed_form(basis: str, k: int, c, mu, s, b, *, variant: str = "lemma") -> list[sympy.Expr]:
    """α_0..α_k of Lemma 1 (``variant="lemma"``) or of a deliberately wrong variant."""
    M = basis_matrix(basis, k)
    scale = list(s)
    if variant == "variance":  # wrong: divides by σ² + ε instead of its square root
        scale = [si**2 for si in s]
    v = [c[i] / scale[i] for i in range(k)]
    alpha = [sum(v[i] * M[j][i] for i in range(k)) for j in range(k + 1)]
    if variant == "no_constant":  # wrong: forgets the constant terms M_0i of the basis
        alpha[0] = 0
    alpha[0] += b
    if variant != "no_mean":  # wrong: forgets the running means
        alpha[0] -= sum(v[i] * mu[i] for i in range(k))
    return alpha


def symbolic_slaf_coefficients(basis: str, k: int, c, mu, s, b) -> list[sympy.Expr]:
    """Coefficients of z^j of the expanded symbolic SLAF, basis from SymPy's definitions."""
    expr = sum(c[i] * (SYMPY_BASIS[basis](i + 1) - mu[i]) / s[i] for i in range(k)) + b
    poly = sympy.Poly(sympy.expand(expr), z)
    coeffs = poly.all_coeffs()[::-1]
    return coeffs + [sympy.Integer(0)] * (k + 1 - len(coeffs))


@pytest.mark.parametrize("basis, k", list(itertools.product(BASES, range(1, 7))))
def test_sympy_derives_the_closed_form(basis, k):
    c, mu, s, b = _symbols(k)
    derived = symbolic_slaf_coefficients(basis, k, c, mu, s, b)
    lemma = closed_form(basis, k, c, mu, s, b)
    assert all(sympy.expand(d - f) == 0 for d, f in zip(derived, lemma))
    # SymPy's basis polynomials and polynet's (numpy.polynomial) change of basis agree.
    M = np.array(basis_matrix(basis, k), dtype=float)
    np.testing.assert_allclose(M, polynet.SLAF(1, k, basis).basis.to_monomial(k), rtol=1e-15)
    # Degree exactly k iff c_k != 0: α_k = M_kk c_k / s_k.
    assert sympy.expand(lemma[k] - M[k, k - 1] * c[k - 1] / s[k - 1]) == 0


def _random_slaf(basis: str, k: int, share: str, gate: bool, seed: int = 0) -> polynet.SLAF:
    g = torch.Generator().manual_seed(seed)
    slaf = polynet.SLAF(4, k, basis, share=share, gate=gate, dtype=torch.float64)
    with torch.no_grad():
        slaf.weight.normal_(0, 0.7, generator=g)
        slaf.bias.normal_(0, 1, generator=g)
        slaf.running_mean.normal_(0, 2, generator=g)
        slaf.running_var.uniform_(0.05, 4, generator=g)
        if gate:
            slaf.gate.normal_(0, 1, generator=g)
    return slaf.eval()


@functools.cache
def _closed_form_function(basis: str, k: int, variant: str) -> Callable[..., list[float]]:
    c, mu, s, b = _symbols(k)
    return sympy.lambdify((c, mu, s, b), closed_form(basis, k, c, mu, s, b, variant=variant))


def closed_form_numbers(slaf: polynet.SLAF, variant: str = "lemma") -> np.ndarray:
    """Substitute the module's values into the symbolic closed form; shape (C, k+1)."""
    k = slaf.degree
    func = _closed_form_function(slaf.basis.name, k, variant)
    coef = slaf.coefficient().detach().double().expand(slaf.num_features, k)
    std = torch.sqrt(slaf.running_var.double() + slaf.eps)
    rows = []
    for ch in range(slaf.num_features):
        args = (
            coef[ch].tolist(),
            slaf.running_mean[ch].tolist(),
            std[ch].tolist(),
            slaf.bias[ch].item(),
        )
        rows.append([float(a) for a in func(*args)])
    return np.array(rows, dtype=float)


def folding_holds(slaf: polynet.SLAF, variant: str = "lemma") -> bool:
    """Does the (possibly wrong) closed form match SLAF.polynomial() and the forward pass?"""
    alpha = closed_form_numbers(slaf, variant)
    if not np.allclose(alpha, slaf.polynomial().numpy(), rtol=RTOL, atol=1e-12):
        return False
    g = torch.Generator().manual_seed(1)
    for shape in [(9, 4), (3, 4, 5), (2, 4, 3, 3)]:
        x = torch.randn(*shape, generator=g, dtype=torch.float64) * 1.5
        with torch.no_grad():
            y = slaf(x).numpy()
        moved = np.moveaxis(x.numpy(), 1, -1)  # channel last, to broadcast over alpha rows
        ref = np.moveaxis(sum(alpha[:, j] * moved**j for j in range(slaf.degree + 1)), -1, 1)
        if not np.allclose(y, ref, rtol=1e-10, atol=1e-10):
            return False
    return True


@pytest.mark.parametrize(
    "basis, k, share, gate",
    list(itertools.product(BASES, [1, 2, 5], ["layer", "channel"], [False, True])),
)
def test_module_numbers_match_the_closed_form(basis, k, share, gate):
    assert folding_holds(_random_slaf(basis, k, share, gate))


@pytest.mark.parametrize("variant", ["no_mean", "variance", "no_constant"])
@pytest.mark.parametrize("basis", BASES)
def test_wrong_closed_forms_are_caught(variant, basis):
    slaf = _random_slaf(basis, 4, "channel", False)
    if variant == "no_constant" and basis == "taylor":
        # z^i has no constant term, so this "wrong" form is right for Taylor: nothing to catch.
        assert folding_holds(slaf, variant)
    else:
        assert not folding_holds(slaf, variant)


def test_degree_is_exactly_k_iff_the_last_coefficient_is_nonzero():
    for basis in BASES:
        slaf = _random_slaf(basis, 4, "channel", False)
        assert (slaf.polynomial()[:, 4] != 0).all()
        with torch.no_grad():
            slaf.weight[1, 3] = 0.0  # c_{1,4} = 0 (no identity offset beyond the first term)
        alpha = slaf.polynomial()
        assert alpha[1, 4] == 0 and alpha[1, 3] != 0 and (alpha[[0, 2, 3], 4] != 0).all()


@pytest.mark.parametrize("basis", BASES)
@pytest.mark.parametrize("gate", [False, True])
def test_corollary_every_polynomial_is_an_slaf_channel(basis, gate):
    k = 5
    target = np.random.default_rng(0).normal(size=k + 1)
    M = polynet.SLAF(1, k, basis).basis.to_monomial(k)
    slaf = polynet.SLAF(1, k, basis, share="channel", gate=gate, dtype=torch.float64)
    mu = np.array([0.3, -1.0, 2.0, 0.5, -0.2])
    var = np.array([0.5, 1.5, 0.1, 3.0, 1.0])
    s = np.sqrt(var + slaf.eps)
    v = np.linalg.solve(M[1:], target[1:])  # the triangular system of Corollary 2
    with torch.no_grad():
        slaf.running_mean[0] = torch.from_numpy(mu)
        slaf.running_var[0] = torch.from_numpy(var)
        slaf.weight[0] = torch.from_numpy(v * s) - torch.eye(k, dtype=torch.float64)[0]
        slaf.bias[0] = float(target[0] - v @ M[0] + v @ mu)
        if gate:
            slaf.gate.zero_()
    np.testing.assert_allclose(slaf.eval().polynomial()[0].numpy(), target, rtol=1e-12)
