"""The modular engine's number theory: its primes and its Chinese remaindering."""

import numpy as np
import pytest
import sympy

from polynet.expansion.modular import _reconstruct, primes_for


def test_primes_are_the_largest_below_the_power_of_two():
    primes = primes_for(21, 6)
    expected, p = [], 1 << 21
    for _ in range(6):
        p = sympy.prevprime(p)
        expected.append(p)
    assert primes == expected
    with pytest.raises(ValueError, match="bits must be"):
        primes_for(40, 1)


def test_crt_rebuilds_large_signed_integers_through_the_byte_block():
    primes = primes_for(21, 30)
    rng = np.random.default_rng(0)
    heads = rng.integers(-(2**62), 2**62, 500).tolist()
    tails = rng.integers(0, 2**62, 500).tolist()
    values = [h * (1 << 500) + t for h, t in zip(heads, tails)] + [0, 1, -1, 2**560, -(2**560)]
    residues = [np.array([v % p for v in values], dtype=np.int64) for p in primes]
    got = _reconstruct(residues, primes, (1, len(values)), 1)
    assert got.numerators[0].tolist() == values
    # Residues need not be reduced: the walk hands over values in (-p, 2p).
    shifted = [r + p * ((i % 3) - 1) for i, (r, p) in enumerate(zip(residues, primes))]
    assert _reconstruct(shifted, primes, (1, len(values)), 1).numerators[0].tolist() == values


def test_crt_takes_symmetric_float_residues_as_the_walk_hands_them_over():
    primes = primes_for(23, 12)
    values = [0, 1, -1, 3**150, -(5**100), 2**250 - 1]
    # The walk's residues: float64, |r| <= p/2 + 1 (here r - p where r > p/2).
    residues = [
        np.array([v % p - (p if v % p > p // 2 else 0) for v in values], dtype=np.float64)
        for p in primes
    ]
    got = _reconstruct(residues, primes, (1, len(values)), 1)
    assert got.numerators[0].tolist() == values
