"""Monomial codes: one int64 per monomial, its row in the graded order of ``MonomialIndex``.

A sparse polynomial names its monomials by these codes. The code of a monomial in n
variables is its position in ``MonomialIndex(n, D)`` for any D at least its degree (the order
is graded, so the positions do not depend on D). Codes are computed from, and decoded to,
*variable tuples*: the monomial's variables in ascending order, one per unit of degree,
padded on the right with ``n`` (no variable), e.g. ``x0^2 x3`` in 5 variables at width 4 is
``(0, 0, 3, 5)``. Neither direction builds an n-column exponent table, so n = 784 costs no
more than n = 8.

Why graded positions: one integer per monomial (8 bytes, where a tuple takes D), sorting
codes sorts monomials in the dense layout's order (so merging is ``np.sort``, a dense
polynomial is a scatter, and both line up with scikit-learn's columns), and a code is
checked against a dense polynomial by plain indexing.
"""

from __future__ import annotations

from functools import lru_cache
from math import comb

import numpy as np

__all__ = ["codes_fit", "decode", "encode", "n_codes"]

#: Codes are int64; an index whose size reaches this cannot be numbered.
MAX_CODES = 2**62


def n_codes(n_vars: int, degree: int) -> int:
    """Number of monomials of degree ≤ ``degree`` in ``n_vars`` variables, C(n + D, D)."""
    return comb(n_vars + degree, degree)


def codes_fit(n_vars: int, degree: int) -> bool:
    """Whether every monomial of degree ≤ ``degree`` has an int64 code."""
    return comb(n_vars + degree + 1, degree + 1) < MAX_CODES


@lru_cache(maxsize=32)
def _tail_counts(n_vars: int, degree: int) -> np.ndarray:
    # T[m, r] = C(m + r, r + 1): ascending tuples of length r + 1 whose first entry lies in
    # [n - m, n) (values below n), for m in 0..n and r in 0..degree - 1.
    table = np.zeros((n_vars + 1, max(degree, 1)), dtype=np.int64)
    for r in range(degree):
        table[:, r] = [comb(m + r, r + 1) for m in range(n_vars + 1)]
    table.setflags(write=False)
    return table


def _offsets(n_vars: int, degree: int) -> np.ndarray:
    # Codes of degree d start at C(n + d - 1, d - 1), the count of monomials of degree < d.
    return np.array([0] + [comb(n_vars + d - 1, d - 1) for d in range(1, degree + 2)], np.int64)


@lru_cache(maxsize=32)
def _steps(n_vars: int, width: int) -> np.ndarray:
    # The rank of an ascending tuple v_0..v_{d-1} within degree d telescopes to
    # T[n, d-1] + Σ_j H[n - v_j, d-1-j] with H[m, r] = T[m, r-1] - T[m, r] (T[m, -1] = 0):
    # one table look-up per variable.
    table = _tail_counts(n_vars, width)
    steps = -table.copy()
    steps[:, 1:] += table[:, :-1]
    steps.setflags(write=False)
    return steps


@lru_cache(maxsize=32)
def _bases(n_vars: int, width: int) -> np.ndarray:
    # Code of the first tuple of each degree d, plus the rank formula's constant T[n, d-1].
    table = _tail_counts(n_vars, width)
    base = _offsets(n_vars, width)[: width + 1] + np.concatenate([[0], table[n_vars, :width]])
    base[0] = 0
    base.setflags(write=False)
    return base


def encode(tuples: np.ndarray, n_vars: int) -> np.ndarray:
    """Codes of monomials given as ascending variable tuples padded with ``n_vars``.

    Parameters
    ----------
    tuples : int array of shape (M, W)
        Each row ascending, entries in 0..n_vars (``n_vars`` pads the right end).

    Returns
    -------
    ndarray of shape (M,), int64

    Examples
    --------
    >>> encode(np.array([[2, 2], [0, 1], [0, 2], [2, 3]]), 3).tolist()  # x2^2, x0 x1, x0 x2, x2
    [9, 5, 6, 3]
    """
    t = np.asarray(tuples)
    width = t.shape[1]
    columns = [t[:, j].astype(np.int64) for j in range(width)]
    d = np.zeros(len(t), dtype=np.int64)
    for col in columns:
        d += col < n_vars
    code = _bases(n_vars, width)[d]
    if width == 0:
        return code
    flat = _steps(n_vars, width).reshape(-1)
    for j in range(width):
        # Padding looks up row 0 of the steps, which is 0; so does r < 0, clamped to 0.
        code += flat[(n_vars - columns[j]) * width + np.maximum(d - 1 - j, 0)]
    return code


def decode(codes: np.ndarray, n_vars: int, width: int) -> np.ndarray:
    """Variable tuples (M, width) of codes, padded with ``n_vars``; the inverse of :func:`encode`.

    Examples
    --------
    >>> decode(np.array([0, 3, 9]), 3, 2).tolist()
    [[3, 3], [2, 3], [2, 2]]
    """
    codes = np.asarray(codes, dtype=np.int64)
    offsets = _offsets(n_vars, width)
    degree = np.searchsorted(offsets, codes, side="right") - 1
    if codes.size and (codes.min() < 0 or degree.max() > width):
        raise ValueError(f"codes must lie in 0..{offsets[-1] - 1} for width {width}.")
    out = np.full((len(codes), width), n_vars, dtype=np.int64)
    table = _tail_counts(n_vars, width)
    for d in range(1, width + 1):
        rows = np.flatnonzero(degree == d)
        if not len(rows):
            continue
        rest = codes[rows] - offsets[d]
        prev = np.zeros(len(rows), dtype=np.int64)
        for j in range(d):
            r = d - j - 1
            f = table[n_vars - np.arange(n_vars + 1), r]  # decreasing in the entry b
            target = f[prev] - rest
            b = np.searchsorted(-f, -target, side="right") - 1
            rest = rest - (f[prev] - f[b])
            out[rows, j] = b
            prev = b
    return out


def tuples_from_exponents(exponents: np.ndarray, width: int) -> np.ndarray:
    """Variable tuples of exponent vectors (M, n): for small n only (tests, ``to_dense``)."""
    e = np.asarray(exponents, dtype=np.int64)
    n = e.shape[1]
    out = np.full((len(e), width), n, dtype=np.int64)
    for i, row in enumerate(e):
        v = np.repeat(np.arange(n), row)
        out[i, : len(v)] = v
    return out
