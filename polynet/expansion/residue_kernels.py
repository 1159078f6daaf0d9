"""One-pass kernels for the exact walk's arithmetic modulo p (numba, CPU).

The modular walk (:mod:`polynet.expansion.modular`) reduces after every operation. In torch a
reduction is three passes over memory (t·(1/p), round, t − p·q), and each fold first writes
its reduced products and then scatters them with ``index_add_``. These kernels do each in one
pass: reduce in place, scale and reduce, and reduce while scattering for the walk's two folds
(outer products of a power's rows into the next power, Gram blocks of the last layer into an
output row, the lower triangle of a symmetric Gram block skipped rather than zeroed).

Residues are float64 integers; every kernel keeps the walk's invariants: a reduced value r
has |r| ≤ p/2 + 1, and only products of two reduced values (< 2^46 for p < 2^24) or sums the
caller bounds are reduced, so ``v − p·rint(v/p)`` is exact. The kernels compile on first use
when numba imports (the ``fast`` extra) and are cached on disk; without numba, or on CUDA,
:mod:`polynet.expansion.modular` runs its torch code, which gives the same residues.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

__all__ = ["available", "kernels"]

#: Set POLYNET_RESIDUE_KERNELS=torch to run the torch code even where numba imports.
_ENV = "POLYNET_RESIDUE_KERNELS"

_compiled: Any = None
_missing = False


def available() -> bool:
    """Whether the numba kernels can run (numba imports and they are not switched off)."""
    if os.environ.get(_ENV, "").lower() == "torch":
        return False
    return kernels() is not None


def kernels() -> Any:
    """The compiled kernels as a namespace, or None without numba."""
    global _compiled, _missing
    if _compiled is None and not _missing:
        try:
            import numba
        except ImportError:
            _missing = True
            return None
        jit = numba.njit(cache=True, fastmath=False, nogil=True)
        _compiled = _Kernels(
            reduce=jit(_reduce),
            scale_reduce=jit(_scale_reduce),
            outer_fold=jit(_outer_fold),
            gram_scatter=jit(_gram_scatter),
        )
    return _compiled


class _Kernels:
    __slots__ = ("reduce", "scale_reduce", "outer_fold", "gram_scatter")

    def __init__(self, **fns: Any) -> None:
        for name, fn in fns.items():
            setattr(self, name, fn)


# The kernels, as plain Python; numba compiles them (a test compares them with the torch code).


def _reduce(x, p, inv):  # pragma: no cover - compiled by numba
    """x (1-D, contiguous) reduced in place."""
    for i in range(x.size):
        v = x[i]
        x[i] = v - p * np.rint(v * inv)


def _scale_reduce(x, c, p, inv, out):  # pragma: no cover - compiled by numba
    """out = x · c reduced (x reduced, |c| < p: the product is exact)."""
    for i in range(x.size):
        v = x[i] * c
        out[i] = v - p * np.rint(v * inv)


def _outer_fold(a, b, pmap, p, inv, out):  # pragma: no cover - compiled by numba
    """out[r, pmap[i, j]] += a[r, i] b[r, j] reduced, then out reduced (out starts at zero).

    A target receives at most one product per column j of b, so before its final reduction
    it holds at most T_b reduced values: exact for T_b < 2^29.
    """
    rows, ta = a.shape
    tb = b.shape[1]
    cols = out.shape[1]
    for r in range(rows):
        for i in range(ta):
            ai = a[r, i]
            if ai == 0.0:
                continue
            for j in range(tb):
                v = ai * b[r, j]
                out[r, pmap[i, j]] += v - p * np.rint(v * inv)
        for c in range(cols):
            v = out[r, c]
            out[r, c] = v - p * np.rint(v * inv)


def _gram_scatter(gram, targets, diag_start, half, p, inv, target):  # pragma: no cover
    """target[targets[i, j]] += gram[i, j] reduced, for the block's upper triangle.

    ``gram`` is a (rows × cols) block whose entries are exact integers below 2^53;
    ``targets`` has the same shape. With ``diag_start`` ≥ 0 the block is symmetric: row i's
    diagonal entry sits in column diag_start + i, entries left of it are skipped and the
    diagonal is multiplied by ``half`` (2^-1 mod p; the caller doubled the weights). A
    target receives at most one entry per row.
    """
    rows, cols = gram.shape
    for i in range(rows):
        start = 0
        if diag_start >= 0:
            start = diag_start + i
            v = gram[i, start]
            v = v - p * np.rint(v * inv)
            v = v * half
            target[targets[i, start]] += v - p * np.rint(v * inv)
            start += 1
        for j in range(start, cols):
            v = gram[i, j]
            target[targets[i, j]] += v - p * np.rint(v * inv)
