"""Dense graded walks over a recorded program: float64, and exact modulo primes.

Each value of a :class:`~polynet.expansion.ir.Program` is held as a coefficient matrix
(T(d), entries) over the graded monomials of degree <= d (a prefix of
:class:`~polynet.polynomial.index.MonomialIndex`), with one power-of-two scale: the value is
``t / 2**e``. :class:`FloatArithmetic` computes in float64 (scale 0); :class:`ModArithmetic`
computes the integers ``t`` modulo a prime, every float64 number of the program entering as
the dyadic rational it is (``polynet.expansion.modular``'s representation). ``expand_modular``
runs the walk once per prime, bounds the numerators by the same walk on absolute values in
float64, and rebuilds them by the Chinese remainder theorem: ``exact="modular"`` for traced
models. The walk is written once; the arithmetic is the argument.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
from torch import Tensor

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
from polynet.polynomial.exact import ExactCoefficients
from polynet.polynomial.index import MonomialIndex

__all__ = [
    "FloatArithmetic",
    "ModArithmetic",
    "walk_program",
    "expand_program_float",
    "expand_program_modular",
]

#: Bits of the primes: a product of two residues (|r| <= p/2 + 1) stays below 2^49, and a
#: sum of up to 2^3 of them below 2^53 (sums are reduced after each product).
_PRIME_BITS = 24


@dataclass
class Value:
    """Coefficients (T(d), entries) of a value, its degree, and its scale: value = t / 2^e."""

    t: Tensor
    degree: int
    e: int = 0


def _terms(n: int, d: int) -> int:
    return math.comb(n + d, d)


class FloatArithmetic:
    """Float64 arithmetic (scales stay 0); ``absolute`` walks |numbers| for a bound."""

    def __init__(self, absolute: bool = False) -> None:
        self.absolute = absolute

    def number(self, x: np.ndarray) -> tuple[Tensor, int]:
        t = torch.from_numpy(np.asarray(x, dtype=np.float64).copy())
        return (t.abs() if self.absolute else t), 0

    def reduce(self, t: Tensor) -> Tensor:
        return t

    def rescale(self, t: Tensor, e: int, to: int) -> Tensor:
        return t


class ModArithmetic:
    """Integers modulo a prime p in float64 tensors (symmetric residues, exact below 2^53)."""

    def __init__(self, p: int) -> None:
        self.p = p
        self.absolute = False

    def number(self, x: np.ndarray) -> tuple[Tensor, int]:
        from polynet.expansion.modular import _dyadic

        x = np.asarray(x, dtype=np.float64)
        if x.size == 0:
            return torch.zeros(x.shape, dtype=torch.float64), 0
        odd, power, negative, e = _dyadic(torch.from_numpy(x.copy()))
        top = int(power.max()) if power.size else 0
        table = np.array([pow(2, k, self.p) for k in range(top + 1)], dtype=np.int64)
        res = (odd % self.p) * table[power] % self.p
        res = np.where(negative, (self.p - res) % self.p, res)
        return self.reduce(torch.from_numpy(res.astype(np.float64))), e

    def reduce(self, t: Tensor) -> Tensor:
        return t - torch.round(t / self.p) * self.p

    def rescale(self, t: Tensor, e: int, to: int) -> Tensor:
        return t if to == e else self.reduce(t * pow(2, to - e, self.p))


def _sparse_apply(ar, matrix: SparseMatrix, v: Value, size: int) -> Value:
    """matrix @ v (v's entries are its columns), its scale the matrix's plus v's."""
    w, ew = ar.number(matrix.data)
    rows = torch.from_numpy(np.repeat(np.arange(size), np.diff(matrix.indptr)))
    cols = torch.from_numpy(matrix.indices.astype(np.int64))
    out = v.t.new_zeros((v.t.shape[0], size))
    if len(cols):
        out.index_add_(1, rows, ar.reduce(v.t[:, cols] * w[None, :]))
    return Value(ar.reduce(out), v.degree, v.e + ew)


def _add(ar, a: Value, b: Value, n: int) -> Value:
    """a + b (degrees padded, scales aligned)."""
    degree = max(a.degree, b.degree)
    e = max(a.e, b.e)
    out = a.t.new_zeros((_terms(n, degree), a.t.shape[1]))
    out[: a.t.shape[0]] += ar.rescale(a.t, a.e, e)
    out[: b.t.shape[0]] += ar.rescale(b.t, b.e, e)
    return Value(ar.reduce(out), degree, e)


@lru_cache(maxsize=64)
def _product_map(n: int, a: int, b: int) -> Tensor:
    return torch.from_numpy(MonomialIndex(n, a + b).product_map(a, b).copy()).reshape(-1)


def _times(ar, a: Value, b: Value, n: int, q: int | None = None) -> Value:
    """Entrywise product of two values of the same entries: folds the outer products; with
    ``q``, only its part of degree <= q (which depends only on the factors' parts of degree
    <= q, so a walk truncated after every product is exact there)."""
    degree = a.degree + b.degree if q is None else min(a.degree + b.degree, q)
    size = _terms(n, degree)
    pmap = _product_map(n, a.degree, b.degree).reshape(a.t.shape[0], b.t.shape[0])
    out = a.t.new_zeros((size, a.t.shape[1]))
    step = max(1, (1 << 24) // max(1, b.t.shape[0] * a.t.shape[1]))
    for s in range(0, a.t.shape[0], step):
        outer = ar.reduce(a.t[s : s + step, None] * b.t[None]).reshape(-1, a.t.shape[1])
        part = pmap[s : s + step].reshape(-1)
        if degree < a.degree + b.degree:  # graded order: degree <= q is the prefix
            keep = part < size
            part, outer = part[keep], outer[keep]
        out.index_add_(0, part, outer)
        out = ar.reduce(out)
    return Value(out, degree, a.e + b.e)


def _capped(v: Value, n: int, q: int | None) -> Value:
    """``v``'s part of degree <= q (itself without ``q``)."""
    if q is None or v.degree <= q:
        return v
    return Value(v.t[: _terms(n, q)], q, v.e)


def walk_program(program: Program, ar, q: int | None = None) -> list[Value]:
    """The output values of ``program`` in the arithmetic ``ar`` (FloatArithmetic or
    ModArithmetic), one :class:`Value` per output node; with ``q``, their parts of degree
    <= q, every value truncated as it is made."""
    n = program.n_vars
    values: list[Value | None] = [None] * len(program.nodes)
    last = program.last_uses()
    needed = program.needed()
    for k, node in enumerate(program.nodes):
        if not needed[k]:
            continue
        values[k] = _capped(_node(ar, node, values, n, q), n, q)
        for o in operands(node):
            if last[o] == k:
                values[o] = None
    return [values[o] for o in program.outputs]


def _node(ar, node, values: list, n: int, q: int | None = None) -> Value:
    if isinstance(node, Input):
        linear = node.matrix.to_dense().T  # (n_vars, entries)
        c, ec = ar.number(node.constant)
        w, ew = ar.number(linear)
        e = max(ec, ew)
        t = torch.cat([ar.rescale(c, ec, e)[None], ar.rescale(w, ew, e)])
        return Value(t, 1, e)
    if isinstance(node, Constant):
        c, e = ar.number(node.values)
        return Value(c[None], 0, e)
    if isinstance(node, Affine):
        total: Value | None = None
        for o, m in zip(node.operands, node.matrices):
            part = _sparse_apply(ar, m, values[o], node.size)
            total = part if total is None else _add(ar, total, part, n)
        b, eb = ar.number(node.bias)
        bias = Value(b[None], 0, eb)
        return bias if total is None else _add(ar, total, bias, n)
    if isinstance(node, Product):
        if not node.operands:
            one, e = ar.number(np.ones(node.size))
            return Value(one[None], 0, e)
        acc: Value | None = None
        for o, idx in zip(node.operands, node.indices):
            v = values[o]
            picked = Value(v.t[:, torch.from_numpy(idx.astype(np.int64))], v.degree, v.e)
            acc = picked if acc is None else _times(ar, acc, picked, n, q)
        return acc
    if isinstance(node, Univariate):
        v = values[node.operand]
        z = Value(v.t[:, torch.from_numpy(node.index.astype(np.int64))], v.degree, v.e)
        alpha, ea = ar.number(node.alpha)
        group = torch.from_numpy(node.group.astype(np.int64))
        k_max = node.alpha.shape[1] - 1
        acc = Value(alpha[group, k_max][None], 0, ea)  # Horner
        for i in range(k_max - 1, -1, -1):
            acc = _times(ar, acc, z, n, q)
            acc = _add(ar, acc, Value(alpha[group, i][None], 0, ea), n)
        return acc
    if isinstance(node, Bilinear):
        a, b = values[node.a], values[node.b]
        b0, eb = ar.number(node.bias)
        total = Value(b0[None], 0, eb)
        for v, m in zip((a, b), node.linear):
            if m is not None:
                total = _add(ar, total, _sparse_apply(ar, m, v, node.size), n)
        if len(node.out):
            left = Value(a.t[:, torch.from_numpy(node.left.astype(np.int64))], a.degree, a.e)
            right = Value(b.t[:, torch.from_numpy(node.right.astype(np.int64))], b.degree, b.e)
            pairs = _times(ar, left, right, n, q)  # one column per (out, left, right)
            rows = node.out.astype(np.int64)
            scatter = SparseMatrix.from_triplets(
                (node.size, len(rows)), rows, np.arange(len(rows)), node.weight
            )
            total = _add(ar, total, _sparse_apply(ar, scatter, pairs, node.size), n)
        return total
    raise TypeError(f"unknown node {type(node).__name__}")  # pragma: no cover


def _stack(program: Program, outs: list[Value], ar, e: int, q: int | None = None) -> Tensor:
    """The outputs' coefficients (n_outputs, T(D)) at scale e (T(min(D, q)) with ``q``)."""
    top = program.degree if q is None else min(program.degree, q)
    size = _terms(program.n_vars, top)
    cols = []
    for v in outs:
        t = ar.rescale(v.t, v.e, e)
        cols.append(torch.cat([t, t.new_zeros((size - t.shape[0], t.shape[1]))]))
    return torch.cat(cols, dim=1).T.contiguous()


def expand_program_float(program: Program) -> Tensor:
    """Float64 coefficients (n_outputs, T(D)) of ``program``: the dense walk in float64."""
    ar = FloatArithmetic()
    return _stack(program, walk_program(program, ar), ar, 0)


def expand_program_modular(program: Program, q: int | None = None) -> ExactCoefficients:
    """Exact coefficients (n_outputs, T(D)) of ``program`` by residues modulo primes; with
    ``q``, of its part of degree <= q, (n_outputs, T(min(D, q)))."""
    from polynet.expansion.modular import _reconstruct, primes_for

    absolute = walk_program(program, FloatArithmetic(True), q)
    bound = _stack(program, absolute, FloatArithmetic(), 0, q)
    bound = float(bound.abs().max()) if bound.numel() else 0.0
    if not math.isfinite(bound):
        raise OverflowError("the model's coefficients overflow float64; an exact bound fails.")
    first = primes_for(_PRIME_BITS, 1)[0]
    ar = ModArithmetic(first)
    outs = walk_program(program, ar, q)
    scale = max(v.e for v in outs)
    needed = math.log2(max(bound, 1e-300) * 1.001 + 2.0**-scale) + scale + 2
    count = max(1, math.ceil(needed / math.log2(first)))
    while sum(math.log2(p) for p in primes_for(_PRIME_BITS, count)) < needed:
        count += 1
    primes = primes_for(_PRIME_BITS, count)
    residues = [_stack(program, outs, ar, scale, q).numpy()]
    for p in primes[1:]:
        ar = ModArithmetic(p)
        outs = walk_program(program, ar, q)
        if max(v.e for v in outs) != scale:  # pragma: no cover - scales depend on floats only
            raise RuntimeError("internal error: scales differ between primes.")
        residues.append(_stack(program, outs, ar, scale, q).numpy())
    shape = residues[0].shape
    return _reconstruct(residues, primes, shape, 1 << scale)
