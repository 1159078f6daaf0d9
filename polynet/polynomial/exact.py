"""ExactCoefficients: exact rational coefficients as integer numerators over one denominator.

Numerators are held either as Python integers (an object array) or as one block of
fixed-width little-endian two's-complement bytes, one row per coefficient: what the CRT
rebuild of the modular engine produces and what the save format stores. The block form is
decoded into Python integers only when ``numerators`` (or ``fractions()``) is first read; its
float values, its nonzero mask, its equality and its bytes need no decoding. ``floats()`` on a
block is vectorised and correctly rounded (round to odd at 63 bits, then to nearest at 53).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from fractions import Fraction

import numpy as np

__all__ = ["ExactCoefficients"]

#: Rows per pass of the vectorised float conversion (bounds its int64 scratch to ~100 MB).
_FLOAT_ROWS = 1 << 16
#: Trailing zeros of every byte value (ctz(0) = 8 never matters: zero bytes are skipped).
_CTZ8 = np.array([8] + [(b & -b).bit_length() - 1 for b in range(1, 256)], dtype=np.int64)


class ExactCoefficients:
    """Exact rational coefficients as integer numerators over one common denominator.

    One denominator (a power of two for a network's dyadic weights) keeps the exact path's
    arithmetic in integers; ``fractions()`` gives ``fractions.Fraction`` values on demand.
    The arrays are read-only: an ``ExactCoefficients`` is a value, kept in lowest terms.
    """

    __slots__ = ("_numerators", "_block", "_shape", "denominator", "_fractions")

    def __init__(self, numerators: np.ndarray, denominator: int) -> None:
        denominator = int(denominator)
        if denominator <= 0:
            raise ValueError(f"denominator must be positive, got {denominator}.")
        nums = np.asarray(numerators, dtype=object)
        if nums is numerators:
            nums = nums.copy()
        # Cancel the common factor so equal values have equal representations.
        flat = nums.reshape(-1)
        g = math.gcd(denominator, *flat[flat != 0].tolist()) if denominator > 1 else 1
        if g > 1:
            nums = (nums // g).astype(object)
            denominator //= g
        nums.setflags(write=False)
        self._numerators: np.ndarray | None = nums
        self._block: np.ndarray | None = None
        self._shape = nums.shape
        self.denominator = denominator
        self._fractions: np.ndarray | None = None

    @classmethod
    def from_fractions(cls, values: np.ndarray) -> ExactCoefficients:
        flat = [Fraction(v) for v in np.asarray(values, dtype=object).reshape(-1)]
        den = math.lcm(*[f.denominator for f in flat]) if flat else 1
        nums = [f.numerator * (den // f.denominator) for f in flat]
        return cls(np.array(nums, dtype=object).reshape(np.shape(values)), den)

    @classmethod
    def from_block(
        cls, block: np.ndarray, shape: Sequence[int], denominator: int
    ) -> ExactCoefficients:
        """Numerators given as a (size, width) uint8 array of little-endian two's-complement
        integers, one per row, over ``denominator``; decoded lazily.

        A power-of-two common factor is cancelled in the block itself (the modular engine's
        denominators are powers of two); any other denominator is cancelled after decoding.
        """
        denominator = int(denominator)
        if denominator <= 0:
            raise ValueError(f"denominator must be positive, got {denominator}.")
        shape = tuple(int(s) for s in shape)
        block = np.asarray(block, dtype=np.uint8)
        if block.ndim != 2 or block.shape[0] != math.prod(shape) or block.shape[1] < 1:
            raise ValueError(
                f"a numerator block of shape {block.shape} does not hold {math.prod(shape)} "
                "numerators of at least one byte."
            )
        if denominator & (denominator - 1):
            return cls(_decode(block).reshape(shape), denominator)
        exponent = denominator.bit_length() - 1
        g = min(exponent, _trailing_zeros(block))
        if g:
            block = _shift_right(block, g)
            denominator >>= g
        block = np.ascontiguousarray(_trim(block))
        block.setflags(write=False)
        self = cls.__new__(cls)
        self._numerators = None
        self._block = block
        self._shape = shape
        self.denominator = denominator
        self._fractions = None
        return self

    @property
    def shape(self) -> tuple[int, ...]:
        return self._shape

    @property
    def numerators(self) -> np.ndarray:
        """Object array of Python integers (decoded from the byte block on first use)."""
        if self._numerators is None:
            nums = _decode(self._block).reshape(self._shape)
            nums.setflags(write=False)
            self._numerators = nums
        return self._numerators

    def fractions(self) -> np.ndarray:
        """Object array of ``Fraction`` (computed once, read-only)."""
        if self._fractions is None:
            d = self.denominator
            flat = [Fraction(n, d) for n in self.numerators.reshape(-1).tolist()]
            fractions = np.array(flat, dtype=object).reshape(self.shape)
            fractions.setflags(write=False)
            self._fractions = fractions
        return self._fractions

    def floats(self) -> np.ndarray:
        """Correctly rounded float64 values."""
        d = self.denominator
        if self._block is not None:
            return _block_floats(self._block, d.bit_length() - 1).reshape(self.shape)
        flat = [n / d for n in self.numerators.reshape(-1).tolist()]
        return np.array(flat, dtype=np.float64).reshape(self.shape)

    def nonzero(self) -> np.ndarray:
        if self._block is not None:
            return self._block.any(axis=1).reshape(self.shape)
        return self.numerators != 0

    # -- bytes (the save format) -------------------------------------------------------------
    def to_bytes(self) -> tuple[bytes, int]:
        """The numerators as one block of fixed-width little-endian two's-complement integers.

        Returns the block and the width in bytes (the same for every numerator).
        """
        if self._block is not None:
            return self._block.tobytes(), self._block.shape[1]
        flat = self.numerators.reshape(-1).tolist()
        top = max((abs(n).bit_length() for n in flat), default=0)
        width = top // 8 + 1  # room for the sign bit
        return b"".join([int(n).to_bytes(width, "little", signed=True) for n in flat]), width

    @classmethod
    def from_bytes(
        cls, block: bytes | memoryview, width: int, shape: Sequence[int], denominator: int
    ) -> ExactCoefficients:
        """The inverse of :meth:`to_bytes`."""
        size = math.prod(shape)
        if width < 1 or len(block) != size * width:
            raise ValueError(
                f"a numerator block of {len(block)} bytes does not hold {size} numerators "
                f"of {width} bytes."
            )
        rows = np.frombuffer(block, dtype=np.uint8).reshape(size, width)
        return cls.from_block(rows, shape, denominator)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ExactCoefficients):
            return NotImplemented
        if self.shape != other.shape or self.denominator != other.denominator:
            return False
        if self._block is not None and other._block is not None:
            # Both in lowest terms and trimmed to the narrowest width their values allow.
            return self._block.shape == other._block.shape and bool(
                (self._block == other._block).all()
            )
        return bool((self.numerators == other.numerators).all())

    __hash__ = None  # type: ignore[assignment]

    def combine(self, other: ExactCoefficients, sign: int = 1) -> ExactCoefficients:
        den = math.lcm(self.denominator, other.denominator)
        return ExactCoefficients(
            self.numerators * (den // self.denominator)
            + sign * other.numerators * (den // other.denominator),
            den,
        )

    def scaled(self, factor: Fraction) -> ExactCoefficients:
        factor = Fraction(factor)
        return ExactCoefficients(
            self.numerators * factor.numerator, self.denominator * factor.denominator
        )


# -- the byte block -------------------------------------------------------------------------
def _decode(block: np.ndarray) -> np.ndarray:
    """A (size, width) block as a flat object array of Python integers."""
    size, width = block.shape
    view = memoryview(np.ascontiguousarray(block).tobytes())
    from_bytes = int.from_bytes
    out = np.empty(size, dtype=object)
    out[:] = [
        from_bytes(view[i : i + width], "little", signed=True)
        for i in range(0, size * width, width)
    ]
    return out


def _sign_bytes(block: np.ndarray) -> np.ndarray:
    """Each row's sign-extension byte (0x00 or 0xFF), as a (size, 1) column."""
    return np.where(block[:, -1:] >= 0x80, np.uint8(0xFF), np.uint8(0))


def _trailing_zeros(block: np.ndarray) -> int:
    """The fewest trailing zero bits over the nonzero rows (a large number if all are zero)."""
    nz = block != 0
    rows = nz.any(axis=1)
    if not rows.any():
        return 1 << 30
    first = np.argmax(nz[rows], axis=1)
    low = block[rows][np.arange(first.size), first]
    return int((8 * first + _CTZ8[low]).min())


def _shift_right(block: np.ndarray, bits: int) -> np.ndarray:
    """Every row divided by 2^bits (exact: the caller checked the low bits are zero)."""
    size, width = block.shape
    q, r = divmod(bits, 8)
    ext = np.hstack([block[:, q:], np.repeat(_sign_bytes(block), q + 1, axis=1)])
    ext = ext.astype(np.uint16)
    return (((ext[:, :width] >> r) | (ext[:, 1 : width + 1] << (8 - r))) & 0xFF).astype(np.uint8)


def _trim(block: np.ndarray) -> np.ndarray:
    """The block without its top bytes that are only sign extension in every row."""
    width = block.shape[1]
    while width > 1:
        top, below = block[:, width - 1], block[:, width - 2]
        if not (((top == 0) & (below < 0x80)) | ((top == 0xFF) & (below >= 0x80))).all():
            break
        width -= 1
    return block[:, :width]


def _block_floats(block: np.ndarray, exponent: int) -> np.ndarray:
    """The rows' integers divided by 2^exponent, correctly rounded to float64, flat."""
    out = np.empty(block.shape[0], dtype=np.float64)
    for s in range(0, block.shape[0], _FLOAT_ROWS):
        out[s : s + _FLOAT_ROWS] = _floats_of_rows(block[s : s + _FLOAT_ROWS], exponent)
    return out


def _floats_of_rows(block: np.ndarray, exponent: int) -> np.ndarray:
    size = block.shape[0]
    if block.shape[1] % 2:
        block = np.hstack([block, _sign_bytes(block)])
    limbs = np.ascontiguousarray(block).view("<u2").astype(np.int64)  # (size, K), 16 bits each
    negative = limbs[:, -1] >= 0x8000
    if negative.any():  # magnitudes: two's-complement negation, carried limb by limb
        neg = limbs[negative] ^ 0xFFFF
        carry = np.ones(neg.shape[0], dtype=np.int64)
        for j in range(neg.shape[1]):
            neg[:, j] += carry
            carry = neg[:, j] >> 16
            neg[:, j] &= 0xFFFF
        limbs[negative] = neg
    k = limbs.shape[1]
    nz = limbs != 0
    zero = ~nz.any(axis=1)
    high = k - 1 - np.argmax(nz[:, ::-1], axis=1)  # the top nonzero limb
    low = np.argmax(nz, axis=1)  # the bottom nonzero limb
    # Four zero limbs below the number: the window of five limbs under the top always exists.
    padded = np.hstack([np.zeros((size, 4), dtype=np.int64), limbs])
    w = [np.take_along_axis(padded, (high + j)[:, None], axis=1)[:, 0] for j in range(5)]
    bl = np.frexp(w[4].astype(np.float64))[1].astype(np.int64)  # bits of the top limb, 1..16
    bl[zero] = 1
    # The top 63 bits (bit 62 set): limb j of the window lands at bit 16·j − bl − 1.
    t = w[4] << (63 - bl)
    t |= w[3] << (47 - bl)
    t |= w[2] << (31 - bl)
    s1 = 15 - bl  # −1 only when the top limb is full
    t |= np.where(s1 >= 0, w[1] << np.maximum(s1, 0), w[1] >> 1)
    t |= w[0] >> (bl + 1)
    sticky = (w[0] & ((1 << (bl + 1)) - 1)) != 0
    sticky |= (s1 < 0) & ((w[1] & 1) != 0)
    sticky |= low < high - 4
    t |= sticky  # round to odd at 63 bits: the cast to float64 then rounds correctly
    bits = 16 * high + bl  # the integer's bit length
    scale = bits - 63 - exponent
    with np.errstate(over="ignore"):  # out-of-range rows are redone below
        values = np.ldexp(t.astype(np.float64), scale)
    values[negative] *= -1.0
    values[zero] = 0.0
    # ldexp is exact only for normal results; the rest (subnormal, or at the overflow edge)
    # go through Python's correctly rounded int / int, which also raises on overflow.
    odd = ~zero & ((bits - exponent - 1 < -1022) | (bits - exponent > 1023))
    if odd.any():
        d = 1 << exponent
        values[odd] = [n / d for n in _decode(block[odd]).tolist()]
    return values
