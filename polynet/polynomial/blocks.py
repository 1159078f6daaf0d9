"""Graded monomials split into blocks by the exponents of their leading variables.

A block is a prefix c = (e_0, ..., e_{L-1}): the monomials whose first L exponents are c. Within
one total degree the graded order sorts by descending exponents, so a block's monomials form
one contiguous run per total degree; blocks taken depth first with descending exponents come in
increasing position within each degree. The fold (:mod:`polynet.expansion.fold`) computes a
result block by block; a store (:mod:`polynet.polynomial.store`) is read and evaluated block by
block.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from math import comb

import numpy as np

from polynet.polynomial import index as _index

__all__ = ["Block", "n_monomials", "split_blocks"]


def n_monomials(n_vars: int, degree: int) -> int:
    """Monomials of degree ≤ ``degree`` in ``n_vars`` variables (0 for a negative degree)."""
    return comb(n_vars + degree, degree) if degree >= 0 else 0


def _homogeneous(n_vars: int, degree: int) -> int:
    if n_vars == 0:
        return 1 if degree == 0 else 0
    return comb(n_vars - 1 + degree, degree)


@dataclass(frozen=True)
class Block:
    """Output monomials whose leading exponents are ``prefix``, over ``n_vars`` variables."""

    prefix: tuple[int, ...]
    n_vars: int
    degree: int

    @property
    def n_rest(self) -> int:
        """Variables left after the prefix."""
        return self.n_vars - len(self.prefix)

    @property
    def degree_rest(self) -> int:
        """Largest total degree left after the prefix."""
        return self.degree - sum(self.prefix)

    @property
    def size(self) -> int:
        """Number of monomials in the block."""
        return n_monomials(self.n_rest, self.degree_rest)

    def runs(self) -> list[tuple[int, int, int]]:
        """(global start, local start, length) of the block's run in each total degree.

        Within one total degree the graded order sorts by descending exponents, so the
        monomials of one prefix are contiguous there; local positions are the graded order of
        the remaining variables.
        """
        return [
            (int(g), int(lo), int(ln))
            for g, lo, ln in zip(*runs_of(self.n_vars, self.prefix, self.degree_rest))
        ]


@lru_cache(maxsize=4096)
def runs_of(n: int, prefix: tuple[int, ...], rest: int) -> tuple[np.ndarray, ...]:
    """Run starts, local starts and lengths of monomials (prefix, any of degree ≤ rest)."""
    left = n - len(prefix)
    degrees = range(rest + 1) if left > 0 else range(min(rest, 0) + 1)
    if rest < 0:
        degrees = range(0)
    rows = np.zeros((len(degrees), n), dtype=np.int64)
    rows[:, : len(prefix)] = prefix
    if left > 0:
        rows[:, len(prefix)] = list(degrees)
    top = int(rows.sum(1).max()) if len(rows) else 0
    starts = _index._position(rows, n, top) if len(rows) else np.zeros(0, dtype=np.int64)
    local = np.array([n_monomials(left, r - 1) for r in degrees], dtype=np.int64)
    lengths = np.array([_homogeneous(left, r) for r in degrees], dtype=np.int64)
    return starts, local, lengths


def split_blocks(n_vars: int, degree: int, too_big: Callable[[Block], bool]) -> list[Block]:
    """Output blocks by leading exponents, depth first with descending exponents, a block
    split further while ``too_big(block)`` and it has variables left: they partition the
    graded monomials of MonomialIndex(n_vars, degree)."""
    out: list[Block] = []

    def visit(prefix: tuple[int, ...]) -> None:
        block = Block(prefix, n_vars, degree)
        if block.n_rest > 0 and too_big(block):
            for e in range(block.degree_rest, -1, -1):
                visit((*prefix, e))
        else:
            out.append(block)

    visit(())
    return out
