"""The degree ≤ q part of a traced graph: products truncated after every step.

The degree ≤ q part of a product depends only on the degree ≤ q parts of its factors, so a
graph whose every product, power and univariate polynomial keeps only its monomials of degree
≤ q computes the degree ≤ q part of the model's polynomial exactly. In graded order those
monomials are a prefix (C(n + q, q) rows), so a truncated :class:`~polynet.expansion.graph.
PolyTensor` is an ordinary one of degree min(d, q); sums, reshapes and every affine op need no
change. Only the products do: a factor's degree-d block meets the other factor's monomials of
degree ≤ q - d only, so no pair that lands above q is formed (:func:`truncated_pairs`).

The truncation degree is set for the duration of one expansion by :func:`truncated_at`;
:func:`capped` is what the arithmetic asks when degrees add.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

import torch
from torch import Tensor

from polynet.polynomial.index import MonomialIndex

__all__ = [
    "capped",
    "truncated_at",
    "truncation",
    "truncated_gram_into",
    "truncated_pairs",
    "truncated_product",
]

_TRUNCATION: ContextVar[int | None] = ContextVar("polynet_graph_truncation", default=None)

#: Elements of scratch per chunk of a truncated outer product (float64: 256 MiB).
CHUNK_ELEMENTS = 1 << 25


def truncation() -> int | None:
    """The degree products are truncated at in this expansion (None: not truncated)."""
    return _TRUNCATION.get()


@contextmanager
def truncated_at(q: int | None) -> Iterator[None]:
    """Truncate every product of the graph arithmetic at degree ``q`` inside the block."""
    token = _TRUNCATION.set(q)
    try:
        yield
    finally:
        _TRUNCATION.reset(token)
        if q is not None:  # the pair maps serve one expansion (tens of MiB at n = 200, q = 3)
            _PAIRS.clear()


def capped(degree: int) -> int:
    """The degree a value of true degree ``degree`` is held at (min(degree, q))."""
    q = _TRUNCATION.get()
    return degree if q is None else min(degree, q)


def _t(n: int, d: int) -> int:
    return math.comb(n + d, d) if d >= 0 else 0


_PAIRS: dict[tuple, list[tuple[int, int, int, Tensor]]] = {}


def truncated_pairs(n: int, da: int, db: int, q: int, device) -> list[tuple[int, int, int, Tensor]]:
    """The pairs of a product of degrees ``da`` × ``db`` that land at degree ≤ ``q``.

    One group per degree d ≤ min(da, q) of the first factor: (lo, hi, cols, targets), its rows
    lo:hi (the degree-d block), the other factor's first ``cols`` rows (degree ≤ q - d) and the
    graded positions of the (hi - lo) × cols products, flattened row-major.
    """
    key = (n, da, db, q, str(device))
    if key not in _PAIRS:
        groups = []
        for d in range(min(da, q) + 1):
            e = min(db, q - d)
            lo, hi = _t(n, d - 1), _t(n, d)
            pmap = MonomialIndex(n, d + e).product_map(d, e)[lo:hi]
            targets = torch.from_numpy(pmap.reshape(-1).copy()).to(device)
            groups.append((lo, hi, _t(n, e), targets))
        if len(_PAIRS) > 32:
            _PAIRS.clear()
        _PAIRS[key] = groups
    return _PAIRS[key]


def truncated_product(
    ca: Tensor, cb: Tensor, n: int, da: int, db: int, q: int, shape: tuple[int, ...]
) -> Tensor:
    """Coefficients (C(n + q, q), *shape) of the product truncated at ``q``.

    ``ca`` (T(da), ...) and ``cb`` (T(db), ...) have equal rank and broadcast to ``shape``
    over their value axes.
    """
    out = ca.new_zeros((_t(n, q), *shape))
    per_value = max(1, math.prod(shape))
    for lo, hi, cols, targets in truncated_pairs(n, da, db, q, ca.device):
        b = cb[:cols]
        step = max(1, CHUNK_ELEMENTS // (cols * per_value))
        for s in range(lo, hi, step):
            e = min(hi, s + step)
            outer = ca[s:e, None] * b[None]
            flat = targets[(s - lo) * cols : (e - lo) * cols]
            out.index_add_(0, flat, outer.reshape(-1, *shape))
    return out


def truncated_gram_into(
    out: Tensor, pa: Tensor, pb: Tensor, weight: Tensor, n: int, da: int, db: int, q: int
) -> None:
    """out[:, o] += Σ_j weight[o, j] pa[:, j] ⊗ pb[:, j], folded into monomials of degree ≤ q.

    ``pa`` (T(da), m) and ``pb`` (T(db), m) are the coefficients of m units; a GEMM per
    output and row group (:func:`truncated_pairs`).
    """
    for lo, hi, cols, targets in truncated_pairs(n, da, db, q, pa.device):
        b = pb[:cols]
        for o in range(weight.shape[0]):
            gram = (pa[lo:hi] * weight[o]) @ b.T  # (hi - lo, cols)
            out[:, o].index_add_(0, targets, gram.reshape(-1))
