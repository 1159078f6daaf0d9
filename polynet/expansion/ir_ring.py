"""The exact engine over a recorded program: every entry of every value a ring element.

Runs a :class:`~polynet.expansion.ir.Program` (what the tracer records for a model with a
custom ``forward()`` or an ONNX graph) in exact rational arithmetic: python-flint's
``fmpq_mpoly`` when installed, SymPy's ``PolyRing`` over QQ otherwise (the rings of
:mod:`polynet.expansion.ring_walk`, shared with the chain path's sparse exact walk). Every
float64 number of the program is the dyadic rational it is. It never sees a torch module.

It multiplies sparse polynomials entry by entry, so it is for small graphs. Measured on a
2-core AMD EPYC (benchmarks/bench_graph_exact.py), whole ``expand`` calls, tracing included:
the corpus models (3-16 inputs, degree 2-4) take 15-40 ms with either ring, 1-2x the float
path; a residual SLNN on 13 inputs at degree 4 (2,380 monomials) 0.1 s with flint, 0.7 s
with SymPy, 0.2 s with ``exact="modular"`` (float: 0.03 s); 10 inputs at degree 9 (92,378
monomials) 10 s and 0.5 GiB with flint (125 s modular; both under load 3). ``expand``
bounds the time and memory from counts first (:func:`program_cost`) and refuses, with a
slice that fits, past the memory budget or about an hour.

``max_degree=q`` keeps only the part of degree <= q after every product: the degree <= q part
of a product depends only on the degree <= q parts of its factors, so the result is the exact
degree <= q part of the whole polynomial.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from polynet.expansion.ir import (
    Affine,
    Bilinear,
    Constant,
    Input,
    Product,
    Program,
    SparseMatrix,
    Univariate,
    operands,
)
from polynet.expansion.ring_walk import Ring, dense_fractions, make_ring
from polynet.polynomial.index import MonomialIndex

__all__ = ["expand_program", "ProgramCost", "program_cost"]

#: Seconds per term product (flint / SymPy), measured on a 2-core AMD EPYC for programs of
#: 10^5-10^7 products (small programs cost more per product: fixed costs per entry).
SECONDS_PER_PRODUCT = {"flint": 3e-7, "sympy": 5e-6}
#: Resident bytes per term of the bound :attr:`ProgramCost.peak_terms` (flint / SymPy),
#: measured as peak RSS growth over that bound, the Fraction result included.
BYTES_PER_TERM = {"flint": 200, "sympy": 1000}


class _Engine:
    """One run of a program in a ring: float64 numbers as ring scalars, optional truncation."""

    def __init__(self, ring: Any, max_degree: int | None) -> None:
        self.ring = ring
        self.max_degree = max_degree
        self.scalars: dict[float, Any] = {}
        self.one = self.constant(1.0)

    def scalar(self, x: float) -> Any:
        x = float(x)
        s = self.scalars.get(x)
        if s is None:
            s = self.scalars[x] = self.ring.scalar(x)
        return s

    def constant(self, x: float) -> Any:
        return self.ring.zero + self.scalar(x) if x != 0 else self.ring.zero

    def times(self, p: Any, q: Any) -> Any:
        r = p * q
        return r if self.max_degree is None else self.ring.truncate(r, self.max_degree)

    def scaled(self, p: Any, w: float) -> Any:
        return p if w == 1.0 else p * self.scalar(w)

    def combination(self, bias: float, terms: list[tuple[list, SparseMatrix]], row: int) -> Any:
        """bias + Σ over operands of (their row ``row`` of the matrix) · (their entries)."""
        picked = [(vals, matrix.row(row)) for vals, matrix in terms]
        picked = [(vals, cols, data) for vals, (cols, data) in picked if len(cols)]
        if bias == 0 and len(picked) == 1 and len(picked[0][1]) == 1:
            vals, cols, data = picked[0]
            return self.scaled(vals[cols[0]], data[0])  # a selection: no arithmetic
        acc = self.constant(bias)
        for vals, cols, data in picked:
            for c, w in zip(cols, data):
                acc = acc + self.scaled(vals[c], w)
        return acc

    # ------------------------------------------------------------ one method per node

    def input(self, node: Input, values: list) -> list:
        gens = list(self.ring.gens)
        return [
            self.combination(node.constant[e], [(gens, node.matrix)], e) for e in range(node.size)
        ]

    def constants(self, node: Constant, values: list) -> list:
        return [self.constant(x) for x in node.values]

    def affine(self, node: Affine, values: list) -> list:
        terms = [(values[o], m) for o, m in zip(node.operands, node.matrices)]
        return [self.combination(node.bias[e], terms, e) for e in range(node.size)]

    def product(self, node: Product, values: list) -> list:
        if not node.operands:
            return [self.one] * node.size
        factors = [(values[o], idx) for o, idx in zip(node.operands, node.indices)]
        out = []
        for e in range(node.size):
            vals, idx = factors[0]
            acc = vals[idx[e]]
            for vals, idx in factors[1:]:
                acc = self.times(acc, vals[idx[e]])
            out.append(acc)
        return out

    def univariate(self, node: Univariate, values: list) -> list:
        source = values[node.operand]
        powers = []  # the exponent of a one-hot row (x ** k), else None
        for alpha in node.alpha:
            nonzero = np.nonzero(alpha)[0]
            one_hot = len(nonzero) == 1 and alpha[nonzero[0]] == 1.0
            powers.append(int(nonzero[0]) if one_hot and self.max_degree is None else None)
        out = []
        for e in range(node.size):
            z = source[node.index[e]]
            k = powers[node.group[e]]
            if k is not None:
                out.append(z**k if k else self.one)
                continue
            alpha = node.alpha[node.group[e]]
            acc = self.constant(alpha[-1])  # Horner, truncated after each product
            for a in alpha[-2::-1]:
                acc = self.times(acc, z)
                if a != 0:
                    acc = acc + self.scalar(a)
            out.append(acc)
        return out

    def bilinear(self, node: Bilinear, values: list) -> list:
        a, b = values[node.a], values[node.b]
        out = [self.constant(x) for x in node.bias]
        for vals, matrix in zip((a, b), node.linear):
            if matrix is not None:
                for e in range(node.size):
                    out[e] = out[e] + self.combination(0.0, [(vals, matrix)], e)
        pairs: dict[tuple[int, int], Any] = {}
        for o, i, j, w in zip(node.out.tolist(), node.left.tolist(), node.right.tolist(),
                              node.weight.tolist()):  # fmt: skip
            p = pairs.get((i, j))
            if p is None:
                p = pairs[(i, j)] = self.times(a[i], b[j])
            out[o] = out[o] + self.scaled(p, w)
        return out


_RUN = {
    Input: _Engine.input,
    Constant: _Engine.constants,
    Affine: _Engine.affine,
    Product: _Engine.product,
    Univariate: _Engine.univariate,
    Bilinear: _Engine.bilinear,
}


def expand_program(
    program: Program,
    kind: Ring,
    index: MonomialIndex,
    max_degree: int | None = None,
    on_node: Callable[[int], Any] | None = None,
) -> np.ndarray:
    """Exact coefficients of ``program``'s outputs over ``index``.

    Parameters
    ----------
    program : Program
        The recorded program.
    kind : {"flint", "sympy"}
        The ring: python-flint's ``fmpq_mpoly`` or SymPy's ``PolyRing`` over QQ.
    index : MonomialIndex
        The monomials of the result (every monomial of the outputs must be in it).
    max_degree : int, optional
        Keep only the part of degree <= ``max_degree`` (truncated after every product).
    on_node : callable, optional
        Called with 1 after each node (a progress bar's ``update``).

    Returns
    -------
    ndarray of Fraction, of shape (program.n_outputs, index.size)
    """
    ring = make_ring(kind, program.n_vars)
    engine = _Engine(ring, max_degree)
    values: list[list | None] = [None] * len(program.nodes)
    last = program.last_uses()
    needed = program.needed()
    for k, node in enumerate(program.nodes):
        if not needed[k]:
            continue
        values[k] = _RUN[type(node)](engine, node, values)
        for o in operands(node):
            if last[o] == k:
                values[o] = None
        if on_node is not None:
            on_node(1)
    entries = [p for o in program.outputs for p in values[o]]
    # With max_degree: affine paths (a residual of the inputs) are not cut until here.
    return dense_fractions(ring, entries, index, max_degree)


class ProgramCost:
    """What running a program in a ring costs, from counts (terms bounded by C(n+d, d))."""

    def __init__(self, peak_terms: int, products: int) -> None:
        self.peak_terms = peak_terms
        self.products = products

    def bytes(self, kind: Ring) -> float:
        return float(self.peak_terms) * BYTES_PER_TERM[kind]

    def seconds(self, kind: Ring) -> float:
        return float(self.products) * SECONDS_PER_PRODUCT[kind]


def program_cost(
    program: Program, max_degree: int | None = None, n_vars: int | None = None
) -> ProgramCost:
    """Upper bounds of the terms held at once and of the term products of ``program``
    (in ``n_vars`` variables instead of its own: the cost of a slice)."""
    n = program.n_vars if n_vars is None else n_vars

    def terms(degree: int) -> int:
        d = degree if max_degree is None else min(degree, max_degree)
        return math.comb(n + d, d)

    live = peak = products = 0
    last = program.last_uses()
    needed = program.needed()
    for k, node in enumerate(program.nodes):
        if not needed[k]:
            continue
        live += node.size * terms(node.degree)
        peak = max(peak, live)
        if isinstance(node, Product) and node.operands:
            d = program.nodes[node.operands[0]].degree
            for o in node.operands[1:]:
                products += node.size * terms(d) * terms(program.nodes[o].degree)
                d += program.nodes[o].degree
        elif isinstance(node, Univariate):
            d = program.nodes[node.operand].degree
            k_max = node.alpha.shape[1] - 1
            products += node.size * sum(terms(i * d) * terms(d) for i in range(1, k_max))
        elif isinstance(node, Bilinear):
            da, db = program.nodes[node.a].degree, program.nodes[node.b].degree
            pairs = len({(int(i), int(j)) for i, j in zip(node.left, node.right)})
            products += pairs * terms(da) * terms(db)
        for o in operands(node):
            if last[o] == k:
                live -= program.nodes[o].size * terms(program.nodes[o].degree)
    return ProgramCost(peak, products)
