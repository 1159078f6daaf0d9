"""ExactCoefficients' byte-block form: the same values as the integer form, decoded lazily."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from polynet.polynomial.exact import ExactCoefficients


def _block(values, width=None):
    width = width or max(abs(v).bit_length() for v in values) // 8 + 2
    raw = b"".join(v.to_bytes(width, "little", signed=True) for v in values)
    return np.frombuffer(raw, dtype=np.uint8).reshape(len(values), width)


def _edge_values():
    out = [0, 1, -1, 2**52, 2**53 + 1, 2**53 + 3, -(2**54) - 2, 2**63 - 1, -(2**63)]
    out += [(2**53 + 1) << 200, ((2**53 + 1) << 200) + 1, -(((2**53 + 1) << 200) - 1)]
    out += [(1 << 600) - 1, -(1 << 600), 3**400, -(5**250), (1 << 64) + (1 << 10) + 1]
    out += [0xFFFF << 500, (0xFFFF << 500) | 1, 0x8000 << 48]  # full top limbs
    return out


@pytest.mark.parametrize("exponent", [0, 1, 17, 300, 1100])
def test_block_floats_are_the_correctly_rounded_quotients(exponent):
    values = _edge_values()
    c = ExactCoefficients.from_block(_block(values), (1, len(values)), 1 << exponent)
    eager = ExactCoefficients(np.array([values], dtype=object), 1 << exponent)
    assert c == eager and eager == c
    assert c.denominator == eager.denominator
    got = c.floats()
    want = np.array([[v / (1 << exponent) for v in values]])
    np.testing.assert_array_equal(got, want)  # bit for bit, ties to even included
    assert c.numerators.tolist() == eager.numerators.tolist()


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.integers(min_value=-(2**700), max_value=2**700), min_size=1, max_size=40),
    st.integers(min_value=0, max_value=1200),
    st.integers(min_value=0, max_value=4),
)
def test_block_form_equals_integer_form(values, exponent, spare):
    width = max(abs(v).bit_length() for v in values) // 8 + 1 + spare
    c = ExactCoefficients.from_block(_block(values, width), (len(values),), 1 << exponent)
    eager = ExactCoefficients(np.array(values, dtype=object), 1 << exponent)
    assert c == eager and c.denominator == eager.denominator  # both in lowest terms
    np.testing.assert_array_equal(c.floats(), eager.floats())
    np.testing.assert_array_equal(c.nonzero(), eager.nonzero())
    block, w = c.to_bytes()
    assert ExactCoefficients.from_bytes(block, w, c.shape, c.denominator) == eager


def test_block_is_cancelled_and_trimmed_to_lowest_terms():
    c = ExactCoefficients.from_block(_block([4 << 40, -(8 << 40), 0], 20), (3,), 1 << 50)
    assert c.denominator == 1 << 8  # 2^42 cancelled
    assert c.numerators.tolist() == [1, -2, 0]
    assert c.to_bytes()[1] == 1  # 1 and -2 fit one byte
    zero = ExactCoefficients.from_block(np.zeros((2, 3), dtype=np.uint8), (1, 2), 64)
    assert zero.denominator == 1 and zero.numerators.tolist() == [[0, 0]]


def test_a_block_over_another_denominator_is_decoded_and_cancelled():
    c = ExactCoefficients.from_block(_block([6, 9, -3]), (3,), 12)
    assert c.denominator == 4 and c.numerators.tolist() == [2, 3, -1]


def test_overflowing_float_conversion_raises_like_python():
    c = ExactCoefficients.from_block(_block([1 << 1100]), (1,), 1)
    with pytest.raises(OverflowError):
        c.floats()


def test_a_block_of_the_wrong_shape_is_refused():
    with pytest.raises(ValueError, match="does not hold 4 numerators"):
        ExactCoefficients.from_block(np.zeros((3, 2), dtype=np.uint8), (2, 2), 1)
