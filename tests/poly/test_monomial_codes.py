"""Monomial codes against MonomialIndex's graded positions."""

from __future__ import annotations

import numpy as np
import pytest

from polynet.polynomial.index import MonomialIndex, exponents_at
from polynet.polynomial.monomial_codes import decode, encode, tuples_from_exponents


@pytest.mark.parametrize(("n", "degree"), [(1, 4), (2, 3), (5, 4), (9, 3), (13, 2), (4, 0)])
def test_codes_are_the_dense_positions(n, degree):
    index = MonomialIndex(n, degree)
    tuples = tuples_from_exponents(index.exponents, degree)
    assert np.array_equal(encode(tuples, n), np.arange(index.size))
    assert np.array_equal(decode(np.arange(index.size), n, degree), tuples)
    order = np.random.default_rng(0).permutation(index.size)
    assert np.array_equal(encode(tuples[order], n), order)


def test_codes_at_image_size_round_trip_and_match_unranking():
    n, degree = 784, 4
    rng = np.random.default_rng(1)
    tuples = np.sort(rng.integers(0, n + 1, (2000, degree)), axis=1)  # n pads the right end
    codes = encode(tuples, n)
    assert np.array_equal(decode(codes, n, degree), tuples)
    exps = exponents_at(n, codes[:50])  # polynet's own unranking of graded positions
    assert np.array_equal(tuples_from_exponents(exps, degree), tuples[:50])


def test_decode_refuses_codes_out_of_range():
    with pytest.raises(ValueError, match="codes must lie in"):
        decode(np.array([MonomialIndex(3, 2).size]), 3, 2)
