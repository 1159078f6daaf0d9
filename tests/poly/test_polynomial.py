import copy
import json
import pickle
from fractions import Fraction

import numpy as np
import pytest
import sympy
import torch

from polynet import SLNN, MonomialIndex, NetworkPolynomial, expand
from polynet.errors import PolynetError
from polynet.polynomial.network_polynomial import ExactCoefficients, Provenance, Slice

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


# -- value semantics ------------------------------------------------------------------------
def test_attributes_are_read_only_and_replace_returns_a_changed_copy(poly):
    with pytest.raises(AttributeError, match="immutable.*replace"):
        poly.variables = ("a", "b", "c")
    with pytest.raises(AttributeError, match="immutable"):
        poly.degree_bound = 9
    with pytest.raises(TypeError, match="unknown fields"):
        poly.replace(colour="red")
    named = poly.replace(variables=["a", "b", "c"])
    assert named.variables == ("a", "b", "c") and poly.variables == ("x0", "x1", "x2")
    assert named != poly  # other variables: another polynomial ring
    doubled = poly.replace(coefficients=2 * poly.coefficients)
    torch.testing.assert_close(doubled.coefficients, 2 * poly.coefficients)
    assert poly.info["engine"] == "float64"
    with pytest.raises(TypeError):
        poly.info["raw_units"] = True  # the compat view is read-only too


def test_equality_is_by_value_across_copies_devices_and_files(tmp_path, poly, exact):
    assert poly == poly.to("cpu") and exact == exact.to("cpu")
    assert poly == NetworkPolynomial.load(poly.save(tmp_path / "p.npz"))
    assert exact == NetworkPolynomial.load(exact.save(tmp_path / "e.json"))
    assert poly != exact  # same values as floats, but one is exact
    assert exact.to_float() == poly.replace(coefficients=exact.coefficients)
    assert poly != poly * 2.0 and poly != "a polynomial"
    assert pickle.loads(pickle.dumps(exact)) == exact == copy.deepcopy(exact)
    with pytest.raises(TypeError, match="unhashable"):
        hash(poly)


def test_coefficient_by_exponents_or_by_name(poly, exact):
    row = 7
    exps = tuple(int(e) for e in poly.exponents[row])
    name = MonomialIndex(3, 4).names()[row]
    assert poly.coefficient(exps, output=1) == poly.coefficients[1, row].item()
    assert poly.coefficient(name, output=1) == poly.coefficient(np.array(exps), output=1)
    assert poly.coefficient("1") == poly.coefficients[0, 0].item()
    assert (
        exact.coefficient("x0^2 x2")
        == exact.exact_coefficients[0, poly.index.position([[2, 0, 1]])[0]]
    )
    assert isinstance(exact.coefficient("x1"), Fraction)
    with pytest.raises(ValueError, match="3 non-negative integers"):
        poly.coefficient((1, 0))
    with pytest.raises(ValueError, match="degree 5, above this polynomial's largest degree 4"):
        poly.coefficient("x0^5")
    with pytest.raises(ValueError, match="not a variable"):
        poly.coefficient("y^2")
    with pytest.raises(ValueError, match="output must be in 0..1"):
        poly.coefficient("1", output=2)


def test_mixing_exact_and_float_is_refused(poly, exact):
    with pytest.raises(TypeError, match="to_float"):
        poly + exact
    with pytest.raises(TypeError, match="to_float"):
        exact - poly
    total = exact.to_float() + poly
    torch.testing.assert_close(total.coefficients, 2 * poly.coefficients, rtol=1e-12, atol=0)
    assert (exact + exact).exact and (exact * 3).coefficient("1") == 3 * exact.coefficient("1")


def test_slice_is_typed_and_round_trips(tmp_path, net):
    sliced = expand(net, inputs=[2, 0], fixed=[0.0, 0.5, 0.0], exact=True)
    assert sliced.slice == Slice((2, 0), (0.0, 0.5, 0.0))
    assert sliced.slice.n_network_inputs == 3 and sliced.variables == ("x2", "x0")
    assert sliced.input_shape == (3,) and sliced.provenance.engine in ("flint", "sympy")
    t = torch.randn(5, 2, dtype=torch.float64)
    full = sliced.slice.embed(t)
    assert full[:, 1].eq(0.5).all() and torch.equal(full[:, [2, 0]], t)
    torch.testing.assert_close(sliced(t), net.double()(full))
    for suffix in (".npz", ".json"):
        back = NetworkPolynomial.load(sliced.save(tmp_path / f"s{suffix}"))
        assert back == sliced and back.slice == sliced.slice
        assert back.provenance == sliced.provenance and back.input_shape == (3,)
    with pytest.raises(ValueError, match="distinct input numbers"):
        Slice((0, 0), (1.0, 2.0))


def test_info_keyword_still_builds_the_typed_fields(poly):
    old = {
        "inputs": [1],
        "fixed": [0.0, 0.0, 2.0],
        "seconds": 1.5,
        "engine": "x",
        "raw_units": True,
    }
    p = NetworkPolynomial(MonomialIndex(1, 2), torch.zeros(1, 3), info=old)
    assert p.slice == Slice((1,), (0.0, 0.0, 2.0)) and p.variables == ("x1",)
    assert p.provenance == Provenance(1.5, "x", None) and p.raw_units
    assert dict(p.info) == {**old, "fixed": [0.0, 0.0, 2.0]}
    # Other keys are derivation facts: they become notes, outside the value.
    q = NetworkPolynomial(MonomialIndex(1, 2), torch.zeros(1, 3), info={"colour": 1})
    assert dict(q.notes) == {"colour": 1} and q == q.replace(notes={})
    with pytest.raises(TypeError):
        q.notes["colour"] = 2
    with pytest.raises(ValueError, match="'inputs' without 'fixed'"):
        NetworkPolynomial(MonomialIndex(1, 2), torch.zeros(1, 3), info={"inputs": [0]})


def _write_v1(path, p):
    """A version-1 file, as polynet wrote them before the typed fields."""
    meta = {
        "format": "polynet.NetworkPolynomial",
        "version": 1,
        "n_vars": p.n_vars,
        "index_degree": p.index.degree,
        "degree_bound": p.degree_bound,
        "variables": list(p.variables),
        "n_network_parameters": p.n_network_parameters,
        "info": {
            "input_shape": [3],
            "inputs": None,
            "seconds": 0.25,
            "engine": "modular",
            "device": "cpu",
            "raw_units": True,
        },
    }
    arrays = {"coefficients": p.coefficients.numpy()}
    if p.exact:
        nums = p._exact.numerators
        arrays["exact_numerators"] = np.array([[str(n) for n in r] for r in nums], dtype=np.str_)
        meta["exact_denominator"] = str(p._exact.denominator)
    np.savez_compressed(path, meta=np.array(json.dumps(meta)), **arrays)


def test_version_1_files_still_load(tmp_path, poly, exact):
    for p in (poly, exact):
        path = tmp_path / f"v1_{p.exact}.npz"
        _write_v1(path, p)
        back = NetworkPolynomial.load(path)
        assert back == p and back.exact == p.exact
        assert back.raw_units and back.provenance == Provenance(0.25, "modular", "cpu")
        assert back.slice is None and back.input_shape == (3,)


def test_exact_numerators_round_trip_through_bytes():
    nums = np.array([[0, -1, 2**300 + 7, -(2**64)], [1, 127, -128, 255]], dtype=object)
    c = ExactCoefficients(nums, 2**10 * 3)
    block, width = c.to_bytes()
    assert width == 38 and len(block) == 8 * width
    assert ExactCoefficients.from_bytes(block, width, c.shape, c.denominator) == c
    with pytest.raises(ValueError, match="does not hold"):
        ExactCoefficients.from_bytes(block[:-1], width, c.shape, c.denominator)


@pytest.mark.parametrize("n, degree, density", [(2, 3, 0.3), (3, 4, 1.0), (5, 3, 0.1)])
def test_to_sympy_builds_the_same_poly_as_from_dict(n, degree, density):
    rng = np.random.default_rng(n)
    idx = MonomialIndex(n, degree)
    coef = rng.normal(size=(1, idx.size)) * (rng.random((1, idx.size)) < density)
    p = NetworkPolynomial(idx, torch.tensor(coef))
    gens = sympy.symbols(list(p.variables))
    for q in (
        p,
        NetworkPolynomial(
            idx,
            ExactCoefficients.from_fractions(
                np.array([[Fraction(float(c)) for c in coef[0]]], dtype=object)
            ),
        ),
    ):
        domain = sympy.QQ if q.exact else sympy.RR
        terms = {
            tuple(int(v) for v in e): domain(*Fraction(float(c)).as_integer_ratio())
            if q.exact
            else domain(float(c))
            for e, c in zip(q.exponents, coef[0])
            if c
        }
        expected = sympy.Poly.from_dict(terms or {(0,) * n: 0}, *gens, domain=domain)
        got = q.to_sympy()[0]
        assert got == expected and got.rep == expected.rep
