from fractions import Fraction

import numpy as np
import pytest
import sympy
import torch

from polynet import SLNN, MonomialIndex, NetworkPolynomial, expand
from polynet.errors import PolynetError
from polynet.poly.polynomial import ExactCoefficients

from .test_expand import with_running_stats


@pytest.fixture(scope="module")
def net():
    return with_running_stats(SLNN(3, [4, 3], [2, 2], out_features=2), 3, 0)


@pytest.fixture(scope="module")
def poly(net):
    return expand(net)


@pytest.fixture(scope="module")
def exact(net):
    return expand(net, exact=True)


def test_attributes_and_one_line_repr(poly):
    assert (poly.n_vars, poly.n_outputs, poly.degree, poly.degree_bound) == (3, 2, 4, 4)
    assert poly.max_terms == 35 == poly.n_terms
    assert poly.exponents.shape == (35, 3) and poly.coefficients.shape == (2, 35)
    assert repr(poly) == "NetworkPolynomial(n_vars=3, n_outputs=2, degree=4, n_terms=35)"


def test_evaluation_equals_a_direct_sum_of_terms(poly):
    x = torch.randn(7, 3, dtype=torch.float64)
    direct = (
        torch.stack(
            [torch.prod(x ** torch.tensor(e.tolist()), dim=1) for e in poly.exponents], dim=1
        )
        @ poly.coefficients.T
    )
    torch.testing.assert_close(poly(x), direct)
    assert poly(np.zeros((0, 3))).shape == (0, 2)


def test_to_sympy_is_exact_on_the_exact_path(exact, poly):
    polys = exact.to_sympy()
    assert len(polys) == 2 and polys[0].domain == sympy.QQ
    assert polys[0].total_degree() == 4
    x = sympy.symbols("x0:3")
    point = {x[0]: sympy.Rational(1, 3), x[1]: -2, x[2]: sympy.Rational(5, 7)}
    value = float(polys[1].as_expr().subs(point))
    expected = poly(torch.tensor([[1 / 3, -2, 5 / 7]], dtype=torch.float64))[0, 1].item()
    assert value == pytest.approx(expected, rel=1e-12)
    assert poly.to_sympy()[0].domain == sympy.RR


@pytest.mark.parametrize("suffix", [".npz", ".json"])
def test_save_load_round_trip(tmp_path, poly, exact, suffix):
    for p in (poly, exact):
        path = p.save(tmp_path / f"p{suffix}")
        back = NetworkPolynomial.load(path)
        assert back.index == p.index and back.variables == p.variables
        torch.testing.assert_close(back.coefficients, p.coefficients, rtol=0, atol=0)
        assert back.exact == p.exact
        if p.exact:
            assert (back.exact_coefficients == p.exact_coefficients).all()
    assert not list(tmp_path.glob(".*tmp"))


def test_load_refuses_a_foreign_or_newer_file(tmp_path, poly):
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "something else"}')
    with pytest.raises(PolynetError, match="not a readable polynomial file|not a polynet"):
        NetworkPolynomial.load(bad)
    with pytest.raises(PolynetError, match="no polynomial file"):
        NetworkPolynomial.load(tmp_path / "missing.npz")


def test_terms_are_largest_first_and_named_like_scikit_learn(poly):
    terms = poly.terms(top=5, output=1)
    mags = [abs(t.coefficient) for t in terms]
    assert mags == sorted(mags, reverse=True) and len(terms) == 5
    names = MonomialIndex(3, 4).names()
    row = [tuple(e) for e in poly.exponents.tolist()].index(terms[0].exponents)
    assert terms[0].monomial == names[row]


def test_degree_profile_sums_to_total_mass(poly):
    profile = poly.degree_profile()
    assert profile.shape == (2, 5)
    np.testing.assert_allclose(profile.sum(1), poly.coefficients.abs().sum(1).numpy())


def test_latex_says_what_it_leaves_out(poly):
    full = poly.to_latex()
    assert "x_{0}" in full and r"\dots" not in full
    short = poly.to_latex(top=3)
    assert r"\dots \text{(32 more terms)}" in short


def test_arithmetic_keeps_ring_discipline(poly, exact):
    zero = exact - exact
    assert zero.n_terms == 0 and zero.degree == -1
    torch.testing.assert_close((poly * 2.0).coefficients, 2 * poly.coefficients)
    other = NetworkPolynomial(MonomialIndex(3, 3), torch.zeros(2, 20))
    with pytest.raises(TypeError, match="different indexes"):
        poly + other


def test_exact_coefficients_reduce_to_lowest_terms():
    c = ExactCoefficients(np.array([[4, 8, 0]], dtype=object), 16)
    assert c.denominator == 4
    assert list(c.fractions()[0]) == [Fraction(1, 4), Fraction(1, 2), Fraction(0)]
    assert ExactCoefficients.from_fractions(c.fractions()) == c
