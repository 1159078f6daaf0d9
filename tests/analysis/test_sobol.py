"""Sobol indices of polynomials: closed forms, exact rationals, SymPy integrals, SALib on the
network's forward pass, chaospy on small polynomials, and bad inputs."""

from __future__ import annotations

import warnings
from fractions import Fraction

import numpy as np
import pytest
import sympy
import torch
from hypothesis import given
from hypothesis import strategies as st

import polynet
from polynet import SLNN, MonomialIndex, NetworkPolynomial, PolynetError, PolynetWarning
from polynet.analysis import sobol, sobol_bounds

from ..conftest import trained_like


def poly_from_terms(n_vars: int, degree: int, terms: dict, exact: bool = False):
    """A one-output polynomial from {exponent tuple: coefficient}."""
    idx = MonomialIndex(n_vars, degree)
    if exact:
        coef = np.full((1, idx.size), Fraction(0), dtype=object)
    else:
        coef = np.zeros((1, idx.size))
    for e, c in terms.items():
        coef[0, int(idx.position([list(e)])[0])] = Fraction(c) if exact else float(c)
    return NetworkPolynomial(idx, coef)


# ---------------------------------------------------------------------------------------------
# Closed forms
# ---------------------------------------------------------------------------------------------


def test_x0_plus_x1_x2_uniform_exact_rationals():
    # Var(x0) = 1/3, Var(x1 x2) = 1/9 on [-1, 1]^3: V = 4/9, S0 = 3/4, S12 = 1/4.
    p = poly_from_terms(3, 2, {(1, 0, 0): 1, (0, 1, 1): 1}, exact=True)
    s = sobol(p, exact=True)
    assert s.exact and s.variance[0] == Fraction(4, 9) and s.mean[0] == 0
    assert s.first[0].tolist() == [Fraction(3, 4), 0, 0]
    assert s.total[0].tolist() == [Fraction(3, 4), Fraction(1, 4), Fraction(1, 4)]
    assert s.second[0, 1, 2] == s.second[0, 2, 1] == Fraction(1, 4)
    assert s.second[0, 0, 1] == 0 and s.second[0, 1, 1] == 0
    assert s.by_order()[0].tolist() == [Fraction(3, 4), Fraction(1, 4)]


def test_x0_plus_x1_x2_standard_normal():
    p = poly_from_terms(3, 2, {(1, 0, 0): 1, (0, 1, 1): 1})
    s = sobol(p, "normal")
    np.testing.assert_allclose(s.variance, [2.0])
    np.testing.assert_allclose(s.first[0], [0.5, 0, 0], atol=1e-15)
    np.testing.assert_allclose(s.total[0], [0.5, 0.5, 0.5])
    np.testing.assert_allclose(s.second[0, 1, 2], 0.5)


def test_square_under_a_shifted_normal_has_the_textbook_moments():
    # x = mu + sigma u: E[x^2] = mu^2 + sigma^2, Var[x^2] = 4 mu^2 sigma^2 + 2 sigma^4.
    mu, sigma = Fraction(3, 2), Fraction(1, 4)
    p = poly_from_terms(1, 2, {(2,): 1}, exact=True)
    s = sobol(p, "normal", mean=mu, std=sigma, exact=True)
    assert s.mean[0] == mu**2 + sigma**2
    assert s.variance[0] == 4 * mu**2 * sigma**2 + 2 * sigma**4
    assert s.first[0, 0] == 1 and s.total[0, 0] == 1


def test_ishigami_like_polynomial_uniform():
    # p = x0 + 7 x1^2 + 0.1 x2^4 x0 on [-pi, pi]^3 (Ishigami with sin replaced by its first
    # Taylor term): V0 = Var(x0 (1 + 0.1 x2^4)), V1 = 49 Var(x1^2), V02 the rest.
    a = np.pi
    p = poly_from_terms(3, 5, {(1, 0, 0): 1, (0, 2, 0): 7, (1, 0, 4): 0.1})
    s = sobol(p, low=-a, high=a)
    ex2, ex4, ex8 = a**2 / 3, a**4 / 5, a**8 / 9
    v0 = ex2 * (1 + 0.1 * ex4) ** 2
    v1 = 49 * (ex4 - ex2**2)
    v02 = ex2 * 0.01 * (ex8 - ex4**2)
    var = v0 + v1 + v02
    np.testing.assert_allclose(s.variance[0], var, rtol=1e-12)
    np.testing.assert_allclose(s.first[0], [v0 / var, v1 / var, 0], rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(s.total[0], [(v0 + v02) / var, v1 / var, v02 / var], rtol=1e-12)
    np.testing.assert_allclose(s.second[0, 0, 2], v02 / var, rtol=1e-12)


@st.composite
def small_exact_polys(draw):
    n = draw(st.integers(1, 3))
    degree = draw(st.integers(1, 3))
    idx = MonomialIndex(n, degree)
    values = draw(st.lists(st.integers(-3, 3), min_size=idx.size, max_size=idx.size))
    bounds = [
        sorted(draw(st.lists(st.integers(-3, 3), min_size=2, max_size=2, unique=True)))
        for _ in range(n)
    ]
    return idx, values, bounds


@pytest.mark.filterwarnings("ignore::polynet.PolynetWarning")
@given(small_exact_polys())
def test_exact_uniform_indices_equal_the_anova_integrals(case):
    # The definition, by SymPy integration: V_u = Var(E[p | x_u]) minus lower-order parts.
    idx, values, bounds = case
    n = idx.n_vars
    coef = np.array([[Fraction(v) for v in values]], dtype=object)
    p = NetworkPolynomial(idx, coef)
    low = [Fraction(b[0]) for b in bounds]
    high = [Fraction(b[1]) for b in bounds]
    s = sobol(p, low=low, high=high, exact=True)
    xs = sympy.symbols(f"x0:{n}")
    expr = p.to_sympy(list(xs))[0].as_expr()

    def expect(e, keep):
        for i in range(n):
            if i not in keep:
                e = sympy.integrate(e, (xs[i], low[i], high[i])) / (high[i] - low[i])
        return sympy.expand(e)

    mean = expect(expr, ())
    var = expect((expr - mean) ** 2, ())
    assert Fraction(str(mean)) == s.mean[0] and Fraction(str(var)) == s.variance[0]
    for i in range(n):
        cond = expect(expr, (i,))
        vi = expect((cond - mean) ** 2, ())
        assert s.variance[0] * s.first[0, i] == Fraction(str(vi))


def test_exact_and_float_agree_on_a_network():
    net = trained_like(SLNN(3, [4], [2], dtype=torch.float64), 3)
    exact = polynet.expand(net, exact=True)
    a = sobol(exact, low=[-1, -0.5, 0], high=[1, 2, 1.5], exact=True)
    b = sobol(exact, low=[-1, -0.5, 0], high=[1, 2, 1.5])
    for name in ("mean", "variance", "first", "total", "second"):
        np.testing.assert_allclose(
            np.asarray(getattr(a, name), dtype=np.float64), getattr(b, name), rtol=1e-10, atol=1e-14
        )


def test_indices_are_consistent_on_a_network():
    net = trained_like(SLNN(4, [5, 3], [2, 2], 2, dtype=torch.float64), 4)
    s = sobol(polynet.expand(net), "normal", mean=0.2, std=[1, 0.5, 2, 1])
    assert s.first.shape == s.total.shape == (2, 4) and s.second.shape == (2, 4, 4)
    assert (s.first <= s.total + 1e-12).all() and s.first.sum(1).max() <= 1 + 1e-12
    np.testing.assert_allclose(s.by_order().sum(1), 1.0)
    np.testing.assert_allclose(s.second, s.second.transpose(0, 2, 1))
    np.testing.assert_allclose(s.first.sum(1) + s.by_order()[:, 1:].sum(1), 1.0)


# ---------------------------------------------------------------------------------------------
# Against SALib (Saltelli on the network's own forward pass) and chaospy
# ---------------------------------------------------------------------------------------------


def test_agrees_with_salib_saltelli_on_the_forward_pass():
    from SALib.analyze import sobol as salib_sobol
    from SALib.sample import sobol as salib_sample

    net = trained_like(SLNN(3, [6], [2], dtype=torch.float64), 3, seed=1)
    low, high = [-1.0, -2.0, 0.0], [1.0, 1.0, 2.0]
    ours = sobol(polynet.expand(net), low=low, high=high)
    problem = {"num_vars": 3, "names": ["x0", "x1", "x2"], "bounds": list(zip(low, high))}
    X = salib_sample.sample(problem, 2**13, calc_second_order=False, seed=0)
    with torch.no_grad():
        y = net(torch.from_numpy(X)).numpy()[:, 0]
    est = salib_sobol.analyze(problem, y, calc_second_order=False, seed=0)
    # Within 3 of SALib's (95 %) confidence half-widths, and a floor for tiny indices.
    assert (np.abs(ours.first[0] - est["S1"]) <= 3 * est["S1_conf"] + 1e-3).all()
    assert (np.abs(ours.total[0] - est["ST"]) <= 3 * est["ST_conf"] + 1e-3).all()


@pytest.mark.parametrize("distribution", ["uniform", "normal"])
def test_agrees_with_chaospy(distribution):
    import chaospy

    terms = {(1, 0, 0): 0.7, (0, 2, 0): -1.1, (1, 1, 0): 0.5, (0, 1, 2): 0.9, (1, 1, 1): 0.3}
    p = poly_from_terms(3, 3, terms)
    q = chaospy.variable(3)
    expr = sum(c * q[0] ** e[0] * q[1] ** e[1] * q[2] ** e[2] for e, c in terms.items())
    if distribution == "uniform":
        low, high = [-1.0, 0.0, -2.0], [2.0, 1.0, 1.0]
        dist = chaospy.J(*[chaospy.Uniform(a, b) for a, b in zip(low, high)])
        s = sobol(p, low=low, high=high)
    else:
        mu, sd = [0.5, -1.0, 0.0], [1.0, 0.5, 2.0]
        dist = chaospy.J(*[chaospy.Normal(m, d) for m, d in zip(mu, sd)])
        s = sobol(p, "normal", mean=mu, std=sd)
    np.testing.assert_allclose(s.mean[0], chaospy.E(expr, dist), rtol=1e-9)
    np.testing.assert_allclose(s.variance[0], chaospy.Var(expr, dist), rtol=1e-9)
    np.testing.assert_allclose(s.first[0], chaospy.Sens_m(expr, dist), atol=1e-9)
    np.testing.assert_allclose(s.total[0], chaospy.Sens_t(expr, dist), atol=1e-9)


# ---------------------------------------------------------------------------------------------
# The table, interactions and bounds helpers
# ---------------------------------------------------------------------------------------------


def test_table_and_interactions():
    p = poly_from_terms(3, 2, {(1, 0, 0): 1, (0, 1, 1): 1})
    s = sobol(p)
    assert s.interactions(top=1) == [("x1", "x2", pytest.approx(0.25))]
    text = s.table()
    assert text.splitlines()[2].startswith("| x0 | 0.7500 | 0.7500 |")
    assert "variance share by interaction order: 1: 0.750, 2: 0.250" in text
    assert str(s).splitlines()[0].startswith("variable")


def test_sobol_bounds_from_data_and_a_standardiser():
    from polynet.data.preprocessing import Standardizer

    X = np.array([[0.0, 10.0], [2.0, 30.0], [1.0, 20.0]])
    assert {k: v.tolist() for k, v in sobol_bounds(X).items()} == {
        "low": [0.0, 10.0],
        "high": [2.0, 30.0],
    }
    scaler = Standardizer.fit(X)
    box = sobol_bounds(X, standardiser=scaler)
    np.testing.assert_allclose(box["high"], scaler.transform(X).max(0))
    normal = sobol_bounds(X, "normal", standardiser=scaler)
    np.testing.assert_allclose(normal["mean"], 0, atol=1e-12)
    np.testing.assert_allclose(normal["std"], 1)


# ---------------------------------------------------------------------------------------------
# Bad inputs
# ---------------------------------------------------------------------------------------------

P3 = poly_from_terms(3, 2, {(1, 0, 0): 1, (0, 1, 1): 1})


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"distribution": "beta"}, ValueError, "must be 'uniform' or 'normal', got 'beta'"),
        ({"low": [0, 0]}, ValueError, r"low must be a number or have one entry per variable \(3\)"),
        ({"low": 1.0}, ValueError, r"low\[0\] must be < high\[0\], got low=1, high=1"),
        ({"high": [1, float("nan"), 1]}, ValueError, r"high\[1\] must be a finite number"),
        ({"mean": 0.0}, ValueError, "mean and std describe distribution='normal'"),
        ({"distribution": "normal", "std": [1, 0, 1]}, ValueError, r"std\[1\] must be > 0, got 0"),
        ({"distribution": "normal", "low": -1}, ValueError, "low and high describe"),
        ({"exact": True}, PolynetError, "exact=True needs a polynomial with exact rational"),
    ],
)
def test_bad_inputs_are_refused_with_a_message(kwargs, error, message):
    with pytest.raises(error, match=message):
        sobol(P3, **kwargs)


def test_not_a_polynomial_and_constant_output():
    with pytest.raises(TypeError, match="expected a NetworkPolynomial, got list"):
        sobol([1, 2])
    const = poly_from_terms(2, 1, {(0, 0): 2.0})
    with pytest.warns(PolynetWarning, match=r"output\(s\) \[0\] do not vary"):
        s = sobol(const)
    assert s.mean[0] == 2.0 and (s.first == 0).all()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sobol(P3)


def test_sobol_bounds_bad_inputs():
    with pytest.raises(ValueError, match=r"column\(s\) \[1\] of X are constant"):
        sobol_bounds([[0.0, 1.0], [1.0, 1.0]])
    with pytest.raises(ValueError, match="X must have shape"):
        sobol_bounds([1.0, 2.0])
    with pytest.raises(ValueError, match="distribution must be"):
        sobol_bounds([[0.0], [1.0]], "gamma")
