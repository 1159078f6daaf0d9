import itertools
from math import comb

import numpy as np
import pytest
from sklearn.preprocessing import PolynomialFeatures

from polynet.polynomial import index
from polynet.polynomial.index import MonomialIndex


@pytest.mark.parametrize("n, degree", [(1, 6), (2, 4), (3, 3), (5, 4), (13, 2)])
def test_order_and_names_match_scikit_learn(n, degree):
    idx = MonomialIndex(n, degree)
    features = PolynomialFeatures(degree).fit(np.zeros((1, n)))
    np.testing.assert_array_equal(idx.exponents, features.powers_)
    assert idx.names() == list(features.get_feature_names_out())
    assert idx.size == comb(n + degree, degree) == len(idx.exponents)


@pytest.mark.parametrize("n, degree", [(1, 5), (3, 4), (4, 6)])
def test_position_inverts_the_table_and_prefixes_are_lower_degrees(n, degree):
    idx = MonomialIndex(n, degree)
    np.testing.assert_array_equal(idx.position(idx.exponents), np.arange(idx.size))
    for d in range(degree + 1):
        low = MonomialIndex(n, d)
        np.testing.assert_array_equal(idx.exponents[: idx.n_monomials(d)], low.exponents)


@pytest.mark.parametrize("n, degree", [(1, 6), (2, 5), (3, 4), (6, 4)])
def test_product_maps_are_exponent_sums(n, degree):
    idx = MonomialIndex(n, degree)
    e = idx.exponents
    lookup = {tuple(row): i for i, row in enumerate(e.tolist())}
    for a, b in itertools.product(range(degree + 1), repeat=2):
        if a + b > degree:
            continue
        pmap = idx.product_map(a, b)
        ta, tb = idx.n_monomials(a), idx.n_monomials(b)
        assert pmap.shape == (ta, tb)
        for s in range(0, ta, max(1, ta // 7)):
            for t in range(0, tb, max(1, tb // 7)):
                assert pmap[s, t] == lookup[tuple(e[s] + e[t])]


def test_parents_rebuild_every_monomial():
    idx = MonomialIndex(4, 5)
    parent, var = idx.parents()
    assert parent[0] == -1 and var[0] == -1
    unit = np.eye(4, dtype=np.int64)
    np.testing.assert_array_equal(idx.exponents[parent[1:]] + unit[var[1:]], idx.exponents[1:])


@pytest.mark.parametrize("n, degree", [(1, 5), (2, 4), (3, 3), (5, 4), (9, 2)])
@pytest.mark.parametrize("rows", [3, 1 << 13])
def test_successors_are_the_products_by_each_variable(monkeypatch, n, degree, rows):
    # Built from the monomial tree without an exponent table, a few rows at a time.
    monkeypatch.setattr(index, "SUCCESSOR_ROWS", rows)
    e = MonomialIndex(n, degree - 1).exponents
    expected = MonomialIndex(n, degree).position(e[:, None, :] + np.eye(n, dtype=np.int64))
    np.testing.assert_array_equal(index._successors(n, degree), expected)


def test_parents_and_successors_build_no_exponent_table():
    # The store's fold builds both over its blocks' indices; an exponent table there would be
    # (monomials × variables) int64 per block size.
    index._exponents.cache_clear()
    index._parents.cache_clear()
    index._parents(6, 5)
    index._successors(6, 5)
    assert index._exponents.cache_info().misses == 0


def test_index_is_an_immutable_hashable_value():
    a, b = MonomialIndex(3, 2), MonomialIndex(3, 2)
    assert a == b and hash(a) == hash(b) and len({a, b}) == 1
    assert a != MonomialIndex(3, 3)
    with pytest.raises(AttributeError, match="immutable"):
        a.degree = 4
    assert not a.exponents.flags.writeable


def test_size_needs_no_table():
    assert MonomialIndex(784, 4).size == comb(788, 4)


def test_bad_arguments():
    with pytest.raises(ValueError, match="n_vars must be an integer >= 1"):
        MonomialIndex(0, 2)
    with pytest.raises(ValueError, match="does not fit"):
        MonomialIndex(2, 3).product_map(2, 2)
    with pytest.raises(ValueError, match="total degree <= 2"):
        MonomialIndex(2, 2).position([[2, 1]])


def test_many_variables_do_not_overflow_the_rank_table():
    """A full Pascal triangle overflows int64 from 63 variables on; the rank needs no such
    table (regression: MonomialIndex(63, 4).product_map(2, 2) raised OverflowError)."""
    idx = MonomialIndex(70, 3)
    pmap = idx.product_map(1, 2)
    e = idx.exponents
    rows = np.random.default_rng(0).integers(0, pmap.shape[0], 20)
    cols = np.random.default_rng(1).integers(0, pmap.shape[1], 20)
    np.testing.assert_array_equal(e[pmap[rows, cols]], e[rows] + e[cols])
