"""MonomialIndex: the graded table of monomials a dense network polynomial is stored over."""

from __future__ import annotations

from functools import lru_cache
from math import comb

import numpy as np

from polynet.validation import check_int

__all__ = ["MonomialIndex", "monomial_name"]


class MonomialIndex:
    """All monomials of total degree ≤ ``degree`` in ``n_vars`` variables, in graded order.

    The order is scikit-learn's ``PolynomialFeatures``: by total degree, then descending
    exponent of x0, then of x1, and so on (``1, x0, x1, x0^2, x0 x1, x1^2, ...``). Because it
    is graded, the monomials of degree ≤ d are the first ``n_monomials(d)`` rows, so a
    polynomial of lower degree is a prefix of a higher index. An index is an immutable,
    hashable value; its exponent table and product maps are computed once and cached.

    Parameters
    ----------
    n_vars : int
        Number of variables n.
    degree : int
        Largest total degree D.

    Examples
    --------
    >>> idx = MonomialIndex(2, 2)
    >>> idx.size, idx.names()
    (6, ['1', 'x0', 'x1', 'x0^2', 'x0 x1', 'x1^2'])
    >>> idx.position([[1, 1]]).tolist()
    [4]
    """

    __slots__ = ("n_vars", "degree")
    n_vars: int
    degree: int

    def __init__(self, n_vars: int, degree: int) -> None:
        object.__setattr__(self, "n_vars", check_int(n_vars, "n_vars"))
        object.__setattr__(self, "degree", check_int(degree, "degree", minimum=0))

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("MonomialIndex is immutable.")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, MonomialIndex):
            return NotImplemented
        return (self.n_vars, self.degree) == (other.n_vars, other.degree)

    def __hash__(self) -> int:
        return hash((MonomialIndex, self.n_vars, self.degree))

    def __repr__(self) -> str:
        return f"MonomialIndex(n_vars={self.n_vars}, degree={self.degree})"

    def __reduce__(self):
        return (MonomialIndex, (self.n_vars, self.degree))

    @property
    def size(self) -> int:
        """Number of monomials, C(n + D, D)."""
        return comb(self.n_vars + self.degree, self.degree)

    def n_monomials(self, degree: int) -> int:
        """Number of monomials of total degree ≤ ``degree`` (the prefix length)."""
        return comb(self.n_vars + degree, degree)

    @property
    def exponents(self) -> np.ndarray:
        """Exponent table of shape (size, n_vars), int64, read-only."""
        return _exponents(self.n_vars, self.degree)

    @property
    def degrees(self) -> np.ndarray:
        """Total degree of each monomial, shape (size,)."""
        return _degrees(self.n_vars, self.degree)

    def position(self, exponents: np.ndarray | list) -> np.ndarray:
        """Row of each exponent vector in this index (any index of large enough degree agrees).

        Parameters
        ----------
        exponents : array-like of shape (..., n_vars)
            Non-negative integer exponents with total degree ≤ ``degree``.
        """
        e = np.asarray(exponents, dtype=np.int64)
        if e.shape[-1:] != (self.n_vars,):
            raise ValueError(
                f"exponents must have shape (..., {self.n_vars}), got {tuple(e.shape)}."
            )
        if e.size and (e.min() < 0 or e.sum(-1).max() > self.degree):
            raise ValueError(f"exponents must be non-negative with total degree <= {self.degree}.")
        return _position(e, self.n_vars, self.degree)

    def product_map(self, a: int, b: int) -> np.ndarray:
        """Positions of s + t for s of degree ≤ a and t of degree ≤ b: shape (T_a, T_b).

        ``a + b`` must not exceed ``degree``. Cached per (n_vars, a, b).
        """
        if a < 0 or b < 0 or a + b > self.degree:
            raise ValueError(
                f"a product of degrees {a} and {b} does not fit in an index of degree "
                f"{self.degree}."
            )
        return _product_map(self.n_vars, a, b)

    def names(self, variables: list[str] | None = None) -> list[str]:
        """Monomial names in index order, like scikit-learn's: ``'1'``, ``'x0^2 x1'``."""
        if variables is None:
            variables = [f"x{i}" for i in range(self.n_vars)]
        if len(variables) != self.n_vars:
            raise ValueError(f"variables must have {self.n_vars} names, got {len(variables)}.")
        return [monomial_name(row, variables) for row in self.exponents]

    def parents(self) -> tuple[np.ndarray, np.ndarray]:
        """For each monomial m of degree ≥ 1, a monomial m / x_v of degree one less, and v.

        Returns (parent, variable), each of shape (size,), with -1 at the constant. Evaluation
        builds every monomial from its parent with one multiplication.
        """
        return _parents(self.n_vars, self.degree)


def exponents_at(n_vars: int, positions: np.ndarray | list) -> np.ndarray:
    """Exponent vectors of graded positions, shape (len(positions), n_vars), without the table.

    The inverse of ``MonomialIndex.position``: it unranks each position (degree block, then
    one exponent after another in descending order) instead of building the whole exponent
    table, which at n = 30, D = 8 would take 11.7 GB.
    """
    g = np.asarray(positions, dtype=np.int64).reshape(-1)
    out = np.zeros((len(g), n_vars), dtype=np.int64)
    if not len(g):
        return out
    top = 0
    while comb(n_vars + top, top) <= int(g.max()):
        top += 1
    ends = np.array([comb(n_vars + d, d) for d in range(top + 1)], dtype=np.int64)
    degree = np.searchsorted(ends, g, side="right")
    rank = g - np.where(degree > 0, ends[np.maximum(degree - 1, 0)], 0)
    rest = degree.copy()
    for v in range(n_vars - 1):
        k = n_vars - v - 1  # variables after v
        q = np.zeros_like(rest)  # degree left to the later variables
        done = np.zeros(len(g), dtype=bool)
        for step in range(top + 1):
            size = comb(k - 1 + step, step)
            stop = ~done & ((rank < size) | (step >= rest))
            q[stop] = step
            done |= stop
            rank = np.where(done, rank, rank - size)
            if done.all():
                break
        out[:, v] = rest - q
        rest = q
    out[:, n_vars - 1] = rest
    return out


def monomial_name(exponents: np.ndarray, variables: list[str]) -> str:
    """scikit-learn's name of one monomial: ``'1'``, ``'x0^2 x1'``."""
    parts = [v if p == 1 else f"{v}^{p}" for v, p in zip(variables, exponents.tolist()) if p]
    return " ".join(parts) if parts else "1"


def _readonly(a: np.ndarray) -> np.ndarray:
    a.setflags(write=False)
    return a


@lru_cache(maxsize=32)
def _counts(n_vars: int, degree: int) -> np.ndarray:
    # G[c, r] = C(c - 1 + r, c): the binomials the rank formula of _position uses, indexed by
    # (variables left, degree left). Only (n + 1) × (D + 2) of them are needed, each at most
    # C(n + D + 1, n): a small table, where a full Pascal triangle overflows int64 at n = 63.
    table = np.zeros((n_vars + 1, degree + 2), dtype=np.int64)
    top = comb(n_vars + degree + 1, n_vars)
    if top >= 2**62:
        raise ValueError(
            f"an index of degree {degree} in {n_vars} variables has about {top:.3g} monomials, "
            "too many to number in 64 bits."
        )
    for c in range(n_vars + 1):
        for r in range(degree + 2):
            table[c, r] = comb(c - 1 + r, c) if c - 1 + r >= 0 else 0
    return table


def _position(e: np.ndarray, n: int, max_degree: int) -> np.ndarray:
    # Graded order: offset of the degree block plus the rank within it. Within degree d,
    # monomials come by descending e_0, then e_1, ...; those before e are counted variable
    # by variable: with r = degree left after e_0..e_v, C(n - v - 2 + r, n - v - 1) of them.
    table = _counts(n, max_degree)
    d = e.sum(-1)
    pos = table[n, d]
    rest = d.copy()
    for v in range(n - 1):
        rest = rest - e[..., v]
        pos = pos + table[n - v - 1, rest]
    return pos


@lru_cache(maxsize=16)
def _exponents(n: int, degree: int) -> np.ndarray:
    blocks = [np.zeros((1, n), dtype=np.int64)]
    last = np.full(1, 0, dtype=np.int64)  # smallest variable a child may add
    for _ in range(degree):
        parent = blocks[-1]
        counts = n - last
        rows = np.repeat(np.arange(len(parent)), counts)
        starts = np.repeat(last - np.cumsum(counts) + counts, counts)
        var = np.arange(counts.sum()) + starts
        child = parent[rows].copy()
        child[np.arange(len(child)), var] += 1
        blocks.append(child)
        last = var
    return _readonly(np.concatenate(blocks))


@lru_cache(maxsize=16)
def _degrees(n: int, degree: int) -> np.ndarray:
    counts = [comb(n + d - 1, d) for d in range(degree + 1)]
    return _readonly(np.repeat(np.arange(degree + 1), counts))


#: Rows of the successor table computed at once (bounds its temporaries, int64 × n_vars each).
SUCCESSOR_ROWS = 1 << 13


def _successors(n: int, degree: int) -> np.ndarray:
    # succ[m, v] = position of (monomial m) * x_v, for m of degree < ``degree``, built level by
    # level from the monomial tree of _tree (no exponent table): with u the variable m adds to
    # its parent p, m x_v is a child of m for v >= u, at first_child(m) + v - u; for v < u it is
    # q x_u with q = p x_v (same degree as m, a row already filled), a child of q.
    # Not cached: its callers keep the product maps built from it (fold's int32 map cache,
    # _product_map), and a table per (n, degree) of the fold's blocks would stay alive next
    # to them; building it again costs about what building its map costs.
    size = comb(n + degree - 1, degree - 1)
    parent, var = _tree(n, degree - 1)
    low = np.maximum(var, 0)  # smallest variable a child may add
    first = np.empty(size, dtype=np.int64)  # position of the first child
    for d in range(degree):
        lo, hi = (comb(n + d - 1, d - 1) if d else 0), comb(n + d, d)
        counts = n - low[lo:hi]
        np.cumsum(counts, out=first[lo:hi])
        first[lo:hi] += hi - counts  # children of degree d + 1 start at position hi
    succ = np.empty((size, n), dtype=np.int64)
    cols = np.arange(n)
    succ[0] = 1 + cols
    for d in range(1, degree):
        # Rows of one degree at a time: their parents' rows are complete.
        end = comb(n + d, d)
        for lo in range(comb(n + d - 1, d - 1), end, SUCCESSOR_ROWS):
            hi = min(end, lo + SUCCESSOR_ROWS)
            u = var[lo:hi, None]
            q = succ[parent[lo:hi]]
            through = first[q] + u - low[q]
            np.add(first[lo:hi, None] - u, cols, out=q)  # the children of m
            succ[lo:hi] = np.where(cols < u, through, q)
    return _readonly(succ)


@lru_cache(maxsize=64)
def _product_map(n: int, a: int, b: int) -> np.ndarray:
    # Column t from column parent(t): s + t = (s + parent(t)) + x_var(t), one gather per entry
    # through the successor table instead of a rank computation per entry.
    out = np.empty((comb(n + a, a), comb(n + b, b)), dtype=np.int64)
    out[:, 0] = np.arange(out.shape[0])
    if b == 0:
        return _readonly(out)
    succ = _successors(n, a + b).reshape(-1)
    parent, var = _parents(n, b)
    for d in range(1, b + 1):
        cols = slice(comb(n + d - 1, d - 1), comb(n + d, d))
        out[:, cols] = succ[out[:, parent[cols]] * n + var[cols]]
    return _readonly(out)


@lru_cache(maxsize=16)
def _parents(n: int, degree: int) -> tuple[np.ndarray, np.ndarray]:
    parent, var = _tree(n, degree)
    return _readonly(parent), _readonly(var)


def _tree(n: int, degree: int) -> tuple[np.ndarray, np.ndarray]:
    # For each monomial m of degree >= 1: its parent m / x_v and v, the last variable with a
    # non-zero exponent (-1, -1 at the constant). The graded order is this tree's level order:
    # each monomial's children add a variable >= its own v, in increasing v (as _exponents
    # builds the table), so parents and variables follow from counts, without exponents.
    size = comb(n + degree, degree)
    parent = np.empty(size, dtype=np.int64)
    var = np.empty(size, dtype=np.int64)
    parent[0] = var[0] = -1
    low = np.zeros(1, dtype=np.int64)  # smallest variable a child of each row may add
    start, stop = 0, 1  # the positions of the previous degree
    for _ in range(degree):
        counts = n - low
        total = int(counts.sum())
        first = np.cumsum(counts) - counts  # each row's first child, within the next degree
        parent[stop : stop + total] = np.repeat(np.arange(start, stop), counts)
        low = np.arange(total) - np.repeat(first - low, counts)
        var[stop : stop + total] = low
        start, stop = stop, stop + total
    return parent, var
