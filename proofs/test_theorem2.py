"""Checks of Theorem 2 (proofs/theorem2.md): degree bound, leading form, tightness, locality."""

from __future__ import annotations

import itertools
import math
from fractions import Fraction

import numpy as np
import pytest
import sympy
import torch
from torch import nn

import polynet

from .symbolic import (
    basis_matrix,
    homogeneous_part,
    max_forward_error,
    network_polynomial,
    x_degree,
    x_support,
)

#: Float64 agreement of two expansions of the same network.
RTOL = 1e-9


def _randomise(model: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial weights and running statistics, then evaluation mode, in float64."""
    g = torch.Generator().manual_seed(seed)
    model = model.double()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64) * 0.8)
        for m in model.modules():
            if isinstance(m, (polynet.SLAF, nn.BatchNorm1d, nn.BatchNorm2d)):
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.5)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
    return model.eval()


def _degree_bound(model: nn.Module) -> int:
    return math.prod(m.degree for m in model.modules() if isinstance(m, polynet.SLAF))


def _n_inputs(model: nn.Module) -> int:
    return next(m for m in model.modules() if isinstance(m, nn.Linear)).in_features


def _bn_mlp() -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(2, 2),
        nn.BatchNorm1d(2),
        polynet.SLAF(2, 2, "chebyshev"),
        nn.Linear(2, 2),
        polynet.SLAF(2, 2, "legendre", share="channel", gate=True),
        nn.Dropout(0.5),
        nn.Linear(2, 2),
    )


#: Fully connected SLNNs small enough for fully symbolic expansion (name -> builder).
MLPS = {
    "taylor-2x2": lambda: polynet.SLNN(2, [2, 2], [2, 2]),
    "chebyshev-channel-gate": lambda: polynet.SLNN(
        2, [2, 1], [3, 2], basis="chebyshev", share="channel", gate=True
    ),
    "legendre-width1": lambda: polynet.SLNN(3, [1], [3], basis="legendre"),
    "batchnorm-two-outputs": _bn_mlp,
    "width1-depth3": lambda: polynet.SLNN(2, [1, 1, 1], [2, 2, 2]),
}


@pytest.fixture(scope="module")
def symbolic_mlps():
    out = {}
    for name, build in MLPS.items():
        model = _randomise(build())
        out[name] = (model, network_polynomial(model, _n_inputs(model)))
    return out


# --- the claims, as functions that can fail ----------------------------------------------------


def degree_bound_holds(poly, n_vars: int, bound: int) -> bool:
    """Theorem 2(a) for one output: total degree in x at most ``bound``."""
    return x_degree(poly, n_vars) <= bound


def count_bound_holds(poly, n_vars: int, count: int) -> bool:
    """Theorem 2(a): at most ``count`` monomials in x (generically non-zero coefficients)."""
    return len(x_support(poly, n_vars)) <= count


def full_support_holds(poly, n_vars: int, degree: int) -> bool:
    """Theorem 2(c): every monomial of degree <= D has a non-zero coefficient polynomial."""
    return len(x_support(poly, n_vars)) == math.comb(n_vars + degree, degree)


def leading_form(model: nn.Module, P, *, with_lambda: bool = True) -> list:
    """W_{L+1} T_L of Theorem 2(b), built from the mirror's parameter generators."""
    g = P.params
    T = list(P.ring.gens[: P.n_vars])
    for i, layer in enumerate(model):
        if isinstance(layer, nn.Linear):
            rows, cols = layer.weight.shape
            T = [sum(g[f"L{i}_w_{o}_{j}"] * T[j] for j in range(cols)) for o in range(rows)]
        elif isinstance(layer, nn.BatchNorm1d):
            T = [T[c] * g[f"L{i}_r_{c}"] * g[f"L{i}_g_{c}"] for c in range(len(T))]
        elif isinstance(layer, polynet.SLAF):
            k = layer.degree
            lead = basis_matrix(layer.basis.name, k)[k][k - 1]
            lead = P.ring.domain.convert(lead.p) / P.ring.domain.convert(lead.q)
            new = []
            for j in range(len(T)):
                c = g[f"L{i}_c_{k - 1}"] if layer.share == "layer" else g[f"L{i}_c_{j}_{k - 1}"]
                lam = c * g[f"L{i}_r_{j}_{k - 1}"] * lead if with_lambda else 1
                new.append(lam * T[j] ** k)
            T = new
    return T


# --- symbolic checks ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(MLPS))
def test_mirror_reproduces_the_forward_pass(name):
    model = _randomise(MLPS[name]())
    numeric = network_polynomial(model, _n_inputs(model), symbolic=False)
    points = torch.randn(6, _n_inputs(model), generator=torch.Generator().manual_seed(3))
    assert max_forward_error(model, numeric, points.tolist()) < 1e-10


@pytest.mark.parametrize("name", list(MLPS))
def test_degree_is_exactly_the_bound(symbolic_mlps, name):
    model, P = symbolic_mlps[name]
    D = _degree_bound(model)
    for out in P.outputs:
        assert degree_bound_holds(out, P.n_vars, D)
        assert not degree_bound_holds(out, P.n_vars, D - 1)  # the wrong bound D - 1 is caught
        assert x_degree(out, P.n_vars) == D


@pytest.mark.parametrize("name", list(MLPS))
def test_leading_form(symbolic_mlps, name):
    model, P = symbolic_mlps[name]
    D = _degree_bound(model)
    T = leading_form(model, P)
    wrong = leading_form(model, P, with_lambda=False)
    for out, t, w in zip(P.outputs, T, wrong):
        top = homogeneous_part(out, P.n_vars, D)
        assert top == t and top != 0
        assert top != w  # dropping the leading coefficients is caught


@pytest.mark.parametrize("name", list(MLPS))
def test_every_monomial_is_generically_present(symbolic_mlps, name):
    model, P = symbolic_mlps[name]
    n, D = P.n_vars, _degree_bound(model)
    for out in P.outputs:
        assert full_support_holds(out, n, D)
        assert count_bound_holds(out, n, math.comb(n + D, D))
        assert not count_bound_holds(out, n, math.comb(n + D - 1, D))  # wrong count caught


# --- the witness of Step 2 ---------------------------------------------------------------------


def _channel_coefficients(basis: str, target: list[int]) -> tuple[list[float], float]:
    """SLAF coefficients c_1..c_k and bias b with Σ c_i φ_i + b = Σ target_j t^j (s = 1, μ = 0)."""
    k = len(target) - 1
    M = sympy.Matrix(basis_matrix(basis, k))
    v = M[1:, :].LUsolve(sympy.Matrix(target[1:]))
    b = target[0] - (M[0, :] * v)[0]
    return [float(x) for x in v], float(b)


def witness(n: int, hidden: list[int], degrees: list[int], basis: str, share: str, outputs=2):
    """The network of Theorem 2(c), Step 2, in real modules: F_o(x) = (1 + Σ x_i)^D."""
    model = polynet.SLNN(n, hidden, degrees, outputs, basis=basis, share=share).double()
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        linears = [m for m in model if isinstance(m, nn.Linear)]
        slafs = [m for m in model if isinstance(m, polynet.SLAF)]
        linears[0].weight[0] = 1.0
        for lin in linears[1:-1]:
            lin.weight[0, 0] = 1.0
        linears[-1].weight[:, 0] = 1.0
        for layer, slaf in enumerate(slafs):
            k = slaf.degree
            target = [math.comb(k, j) for j in range(k + 1)] if layer == 0 else [0] * k + [1]
            c, b = _channel_coefficients(basis, target)
            offset = torch.zeros(k, dtype=torch.float64)
            offset[0] = 1.0
            coef = torch.tensor(c, dtype=torch.float64) - offset
            if share == "layer":
                slaf.weight.copy_(coef)
            else:
                slaf.weight[0] = coef
            slaf.bias[0] = b
            slaf.running_mean.zero_()
            slaf.running_var.fill_(1.0 - slaf.eps)
    return model.eval()


def multinomial(D: int, beta) -> int:
    """Coefficient of x^beta in (1 + x_1 + ... + x_n)^D."""
    out = math.factorial(D) // math.factorial(D - sum(beta))
    for b in beta:
        out //= math.factorial(b)
    return out


WITNESSES = [
    (3, [3, 2], [2, 3], "taylor", "layer"),
    (2, [1, 1], [3, 2], "chebyshev", "channel"),
    (2, [4], [4], "legendre", "layer"),
    (4, [2, 2, 2], [2, 2, 2], "chebyshev", "layer"),
]


@pytest.mark.parametrize("n, hidden, degrees, basis, share", WITNESSES)
def test_witness_is_one_plus_sum_to_the_D(n, hidden, degrees, basis, share):
    model = witness(n, hidden, degrees, basis, share)
    D = math.prod(degrees)
    P = network_polynomial(model, n, symbolic=False)
    for out in P.outputs:
        support = x_support(out, n)
        assert len(support) == math.comb(n + D, D)
        for beta, coeff in support.items():
            assert float(coeff.LC) == pytest.approx(multinomial(D, beta), rel=1e-12)


@pytest.mark.parametrize("n, hidden, degrees, basis, share", WITNESSES)
def test_witness_expands_exactly(n, hidden, degrees, basis, share):
    model = witness(n, hidden, degrees, basis, share)
    D = math.prod(degrees)
    poly = polynet.expand(model, exact=basis != "legendre")  # Legendre's 1/3 is not dyadic
    assert poly.degree == poly.degree_bound == D and poly.max_terms == math.comb(n + D, D)
    expected = np.array([multinomial(D, beta) for beta in poly.exponents], dtype=float)
    if poly.exact:
        exact = poly.exact_coefficients
        assert all(exact[o, r] == Fraction(int(expected[r])) for o, r in np.ndindex(exact.shape))
    for row in poly.coefficients.cpu().numpy():
        np.testing.assert_allclose(row, expected, rtol=1e-12)


# --- random networks through polynet.expand ----------------------------------------------------

RANDOM_MLPS = [
    (3, [4, 3], [2, 2], "taylor", "layer", False),
    (2, [1, 1], [3, 2], "chebyshev", "channel", True),
    (4, [5], [3], "legendre", "channel", False),
    (2, [3, 2, 2], [2, 2, 2], "taylor", "channel", True),
    (13, [8], [2], "chebyshev", "layer", False),
]


@pytest.mark.parametrize("n, hidden, degrees, basis, share, gate", RANDOM_MLPS)
def test_expanded_random_networks_are_tight(n, hidden, degrees, basis, share, gate):
    model = _randomise(polynet.SLNN(n, hidden, degrees, 2, basis=basis, share=share, gate=gate))
    D = math.prod(degrees)
    poly = polynet.expand(model)
    assert poly.degree == poly.degree_bound == D
    assert poly.max_terms == math.comb(n + D, D)
    assert poly.n_terms_per_output() == [poly.max_terms] * 2
    assert poly.degree > D - 1 and poly.n_terms > math.comb(n + D - 1, D)  # wrong claims fail


@pytest.mark.parametrize("name", ["taylor-2x2", "chebyshev-channel-gate", "batchnorm-two-outputs"])
def test_expander_agrees_with_the_sympy_mirror(name):
    model = _randomise(MLPS[name]())
    n = _n_inputs(model)
    P = network_polynomial(model, n, symbolic=False)
    poly = polynet.expand(model)
    coeffs = poly.coefficients.cpu().numpy()
    for o, out in enumerate(P.outputs):
        mirror = {beta: float(c) for beta, c in out.items()}
        ours = {tuple(int(e) for e in beta): coeffs[o, r] for r, beta in enumerate(poly.exponents)}
        assert set(mirror) <= set(ours)
        for beta, value in ours.items():
            assert value == pytest.approx(mirror.get(beta, 0.0), rel=RTOL, abs=1e-12)


# --- convolutional networks: locality (Theorem 2(d)) -------------------------------------------

CONVS = {
    "row-of-4": (lambda: polynet.ConvSLNN(1, (1, 4), [1], 2, out_features=1, pool=1), (1, 1, 4)),
    "2x4-pooled": (lambda: polynet.ConvSLNN(1, (2, 4), [2], 2, out_features=1), (1, 2, 4)),
}


def receptive_field_support(model: nn.Module, input_shape, degree: int) -> set:
    """Monomials of degree <= D supported in the receptive field of a last-layer SLAF unit."""
    last = max(i for i, m in enumerate(model) if isinstance(m, polynet.SLAF))
    n = math.prod(input_shape)
    x = torch.randn(1, *input_shape, dtype=torch.float64)
    jac = torch.autograd.functional.jacobian(lambda v: model[:last](v).reshape(-1), x)
    fields = [frozenset(np.flatnonzero(row.reshape(-1).abs().numpy() > 0)) for row in jac]
    return {
        beta
        for d in range(degree + 1)
        for combo in itertools.combinations_with_replacement(range(n), d)
        for beta in [tuple(combo.count(i) for i in range(n))]
        if any(set(combo) <= f for f in fields)
    }


@pytest.mark.parametrize("name", list(CONVS))
def test_convolutional_support_is_the_receptive_field_set(name):
    build, shape = CONVS[name]
    model = _randomise(build())
    n, D = math.prod(shape), _degree_bound(model)
    numeric = network_polynomial(model, shape, symbolic=False)
    points = torch.randn(4, n, generator=torch.Generator().manual_seed(5))
    assert max_forward_error(model, numeric, points.tolist()) < 1e-10
    P = network_polynomial(model, shape)
    support = set(x_support(P.outputs[0], n))
    assert x_degree(P.outputs[0], n) == D  # the bound (a) holds, and is reached
    assert support == receptive_field_support(model, shape, D)
    assert len(support) < math.comb(n + D, D)
    # "Full support for conv nets too" is a wrong claim, and it is caught.
    assert not full_support_holds(P.outputs[0], n, D)


@pytest.mark.parametrize("name", list(CONVS))
def test_expanded_convolutional_support(name):
    build, shape = CONVS[name]
    model = _randomise(build())
    D = _degree_bound(model)
    poly = polynet.expand(model, input_shape=shape)
    nonzero = {
        tuple(int(e) for e in beta)
        for beta, c in zip(poly.exponents, poly.coefficients[0].cpu().numpy())
        if c != 0
    }
    n = math.prod(shape)
    assert poly.degree == D and poly.max_terms == math.comb(n + D, D)
    assert nonzero == receptive_field_support(model, shape, D)
    assert poly.n_terms < poly.max_terms


# Two blocks: the receptive-field set is not attained; the exact support is circuits.md's S.
TWO_BLOCKS = {
    "row-of-5": (
        lambda: polynet.ConvSLNN(1, (1, 5), [1, 1], [2, 2], out_features=1, pool=1),
        (1, 1, 5),
        116,
    ),
    "4x4-pooled": (
        lambda: polynet.ConvSLNN(1, (4, 4), [1, 2], [2, 2], out_features=1),
        (1, 4, 4),
        None,
    ),
}


@pytest.mark.parametrize("name", list(CONVS) + list(TWO_BLOCKS))
def test_exact_support_is_counted_without_expanding(name):
    if name in CONVS:
        (build, shape), expected = CONVS[name], None
    else:
        build, shape, expected = TWO_BLOCKS[name]
    model = _randomise(build())
    D = _degree_bound(model)
    counted = polynet.count_terms(model, input_shape=shape).support
    P = network_polynomial(model, shape, symbolic=False)  # SymPy over QQ, these weights
    support = set(x_support(P.outputs[0], n := math.prod(shape)))
    assert counted == len(support)
    assert polynet.expand(model, input_shape=shape).n_terms == counted
    bound = receptive_field_support(model, shape, D)
    if name in CONVS:
        assert support == bound  # one block: the receptive-field count is attained
    else:
        assert support < bound  # two blocks: it is not
        assert expected is None or counted == expected
    assert counted < math.comb(n + D, D)
