"""The lowered program: what a traced model computes, as nodes over flat values.

When asked (``record=True`` in :func:`polynet.expansion.graph.expand_graph`), the tracer of
:mod:`polynet.expansion.trace` records, next to each value it propagates, one node of a
:class:`Program`. A value is flat: its entries in C order, batch axis removed. A node says how
its entries follow from earlier values:

========================  ============================================================
:class:`Input`            the start polynomials: ``constant[e] + Σ_v matrix[e, v] x_v``
                          (a slice ``inputs=``/``fixed=`` is already in them)
:class:`Constant`         numbers (a constant written into with values from the input)
:class:`Affine`           ``bias + Σ_k M_k · operand_k``, one sparse matrix per operand:
                          reshapes, views, indexing, index writes and scatters of
                          functionalised in-place ops, ``cat``, sums, convolutions, pooling,
                          batch norm in evaluation mode, products and quotients by constants
:class:`Product`          ``Π_f operand_f[index_f]``: ``*`` of two values (index maps from
                          broadcasting), ``prod(dim)``
:class:`Univariate`       ``Σ_i alpha[group, i] · operand[index]^i`` per entry: an SLAF (one
                          alpha row per channel), ``x ** k`` and ``x ** e`` for a tensor e of
                          whole numbers (one-hot alpha rows)
:class:`Bilinear`         ``bias + Σ w · a_i · b_j``: ``@``/``bmm``/``einsum`` of two values
                          that depend on the input
========================  ============================================================

The numbers in the nodes are float64 and taken as the rationals they are (every float64 is a
dyadic rational), the convention of the chain path's exact mode. The matrices of affine nodes
are **probed**: the op runs once on a batch whose rows are ``2**400`` times the unit basis of
its operands' entries (a zero row gives the bias). Scaling by a power of two commutes with
rounding, and a sum of one product with zeros is exact, so each entry is the float64 number
the op computes for its linear part: the weight itself for a Linear, a convolution, a
selection or a sum; ``fl(1/3)`` for a division by 3; ``fl(γ/sqrt(var + eps))`` (as the kernel
rounds it) for batch norm in evaluation mode. The scale puts the linear part 2^345 or more
above the op's constant term, so adding that term (the bias) never rounds it; an entry that
could have been rounded (a weight below 2^-345 of the bias in its row) is refused rather than
recorded. Bilinear ops are probed on pairs of basis rows scaled by ``2**200`` each.

Why a probe: the op's own kernel gives its matrix, so every op of the table
(:data:`polynet.expansion.rules.ATEN_RULES`) lowers without a second, hand-written lowering
per op that could drift from torch's semantics (strides, padding, broadcasting, in-place
views). Autograd (a Jacobian) would also be bias-free but needs forward-mode formulas for
every op under a dispatch mode, and its numbers come from derivative formulas, not from the
op; reading matrices off the float path's lifted coefficients would round them. The probe
costs one op call per (operand entries x output entries) block of at most 2^25 numbers, on
the exact path only.

The tracer records and never computes a coefficient (recording runs on the symbolic trace,
which propagates only shapes and degrees); the engines compute and never see a torch module:
exact rings (:mod:`polynet.expansion.ir_ring`), and dense graded walks in float64 or modulo
primes (:mod:`polynet.expansion.ir_dense`). Only the probe runs torch ops: the model's own
kernels, on scaled unit bases, once per op.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from polynet.errors import NotExpandableError

__all__ = [
    "SparseMatrix",
    "Input",
    "Constant",
    "Affine",
    "Product",
    "Univariate",
    "Bilinear",
    "Node",
    "Program",
    "Recorder",
    "PROBE_SCALE",
]

#: The probe's scale for affine ops: 2**400 (a power of two, so it commutes with rounding).
PROBE_SCALE = 2.0**400
#: The probe's scale per operand of a bilinear op (their product is 2**400).
BILINEAR_SCALE = 2.0**200
#: An entry is exact when it is at least 2**55 times the op's constant term in its row.
_SEPARATION = 2.0**55
#: Float64 elements per probe call (256 MiB): larger probes go in chunks of basis rows.
PROBE_ELEMENTS = 1 << 25
#: Rows a probe batch must avoid: the example batch size tells the batch axis apart.
_EXAMPLE_BATCH = 7


@dataclass(frozen=True, eq=False)
class SparseMatrix:
    """A (rows, cols) float64 matrix in compressed rows (numpy arrays, no scipy)."""

    shape: tuple[int, int]
    indptr: np.ndarray
    indices: np.ndarray
    data: np.ndarray

    @classmethod
    def from_triplets(
        cls, shape: tuple[int, int], rows: np.ndarray, cols: np.ndarray, data: np.ndarray
    ) -> SparseMatrix:
        """From (row, col, value) triplets; a repeated (row, col) keeps its last value."""
        rows, cols = np.asarray(rows, np.int64), np.asarray(cols, np.int64)
        data = np.asarray(data, np.float64)
        key = rows * max(1, shape[1]) + cols
        _, last = np.unique(key[::-1], return_index=True)
        keep = len(key) - 1 - last
        keep = keep[data[keep] != 0]
        order = np.lexsort((cols[keep], rows[keep]))
        keep = keep[order]
        indptr = np.zeros(shape[0] + 1, np.int64)
        np.add.at(indptr, rows[keep] + 1, 1)
        return cls(shape, np.cumsum(indptr), cols[keep], data[keep])

    @classmethod
    def from_dense(cls, dense: Tensor | np.ndarray) -> SparseMatrix:
        dense = np.asarray(dense.cpu() if isinstance(dense, Tensor) else dense, np.float64)
        rows, cols = np.nonzero(dense)
        return cls.from_triplets(dense.shape, rows, cols, dense[rows, cols])

    @classmethod
    def identity(cls, n: int) -> SparseMatrix:
        return cls((n, n), np.arange(n + 1), np.arange(n), np.ones(n))

    @property
    def nnz(self) -> int:
        return len(self.data)

    def row(self, r: int) -> tuple[np.ndarray, np.ndarray]:
        """Columns and values of row ``r``."""
        lo, hi = self.indptr[r], self.indptr[r + 1]
        return self.indices[lo:hi], self.data[lo:hi]

    def to_dense(self) -> np.ndarray:
        out = np.zeros(self.shape)
        rows = np.repeat(np.arange(self.shape[0]), np.diff(self.indptr))
        out[rows, self.indices] = self.data
        return out


@dataclass(frozen=True, eq=False)
class Input:
    """Entries ``constant[e] + Σ_v matrix[e, v] x_v`` of one argument of forward()."""

    size: int
    constant: np.ndarray
    matrix: SparseMatrix
    degree: int = 1
    op: str = "input"


@dataclass(frozen=True, eq=False)
class Constant:
    """Entries that are numbers."""

    size: int
    values: np.ndarray
    degree: int = 0
    op: str = "constant"


@dataclass(frozen=True, eq=False)
class Affine:
    """``bias + Σ_k matrices[k] @ operands[k]``."""

    size: int
    operands: tuple[int, ...]
    matrices: tuple[SparseMatrix, ...]
    bias: np.ndarray
    degree: int
    op: str


@dataclass(frozen=True, eq=False)
class Product:
    """``Π_f operands[f][indices[f]]`` entry by entry (no factor: the constant 1)."""

    size: int
    operands: tuple[int, ...]
    indices: tuple[np.ndarray, ...]
    degree: int
    op: str


@dataclass(frozen=True, eq=False)
class Univariate:
    """``Σ_i alpha[group[e], i] · operand[index[e]]^i`` for each entry e."""

    size: int
    operand: int
    index: np.ndarray
    alpha: np.ndarray
    group: np.ndarray
    degree: int
    op: str

    @property
    def operands(self) -> tuple[int, ...]:
        return (self.operand,)


@dataclass(frozen=True, eq=False)
class Bilinear:
    """``bias + La @ a + Lb @ b + Σ_t weight[t] · a[left[t]] · b[right[t]]`` into entry out[t].

    ``linear`` holds ``La`` and ``Lb`` (None when zero, as for ``@``/``bmm``/``einsum``).
    """

    size: int
    a: int
    b: int
    bias: np.ndarray
    out: np.ndarray
    left: np.ndarray
    right: np.ndarray
    weight: np.ndarray
    linear: tuple[SparseMatrix | None, SparseMatrix | None]
    degree: int
    op: str

    @property
    def operands(self) -> tuple[int, ...]:
        return (self.a, self.b)


Node = Input | Constant | Affine | Product | Univariate | Bilinear


def operands(node: Node) -> tuple[int, ...]:
    """The nodes whose values ``node`` reads."""
    return getattr(node, "operands", ())


@dataclass(frozen=True, eq=False)
class Program:
    """The recorded program: nodes in execution order and the output nodes, in order.

    The outputs' entries, concatenated, are the polynomial's outputs (one per entry of each
    output tensor, as the float graph path orders them).
    """

    n_vars: int
    nodes: tuple[Node, ...]
    outputs: tuple[int, ...]
    degree: int

    @property
    def n_outputs(self) -> int:
        return sum(self.nodes[o].size for o in self.outputs)

    def last_uses(self) -> list[int]:
        """For each node, the last node that reads it (outputs: past the end)."""
        last = list(range(len(self.nodes)))
        for k, node in enumerate(self.nodes):
            for o in operands(node):
                last[o] = k
        for o in self.outputs:
            last[o] = len(self.nodes)
        return last

    def needed(self) -> list[bool]:
        """For each node, whether an output depends on it (dead code is recorded too)."""
        need = [False] * len(self.nodes)
        for o in self.outputs:
            need[o] = True
        for k in range(len(self.nodes) - 1, -1, -1):
            if need[k]:
                for o in operands(self.nodes[k]):
                    need[o] = True
        return need

    def summary(self) -> dict[str, int]:
        """How many nodes of each kind."""
        counts: dict[str, int] = {}
        for node in self.nodes:
            counts[type(node).__name__] = counts.get(type(node).__name__, 0) + 1
        return counts


# ---------------------------------------------------------------- recording


def _size(value) -> int:
    return math.prod(value.poly_shape)


def _broadcast_index(shape: tuple[int, ...], out_shape: tuple[int, ...]) -> np.ndarray:
    """For each entry of ``out_shape``, the entry of ``shape`` broadcast (right-aligned) to it."""
    idx = torch.arange(math.prod(shape)).reshape((1,) * (len(out_shape) - len(shape)) + shape)
    return idx.expand(out_shape).reshape(-1).numpy().copy()


def _exact_part(y: Tensor, bias: Tensor, scale: float, op: str) -> Tensor:
    """(y - bias) / scale for probe rows y = fl(scale·w + bias): w, refused where rounded."""
    changed = y != bias
    ok = ~changed | (y.abs() >= _SEPARATION * bias.abs())
    if not bool(ok.all()):
        raise NotExpandableError(
            f"cannot record {op} exactly: a coefficient of its linear part is below 2^-345 of "
            "its constant term, so the probe could not separate them; expand with exact=False, "
            "or rescale that layer's weights."
        )
    return torch.where(changed, y / scale, torch.zeros_like(y))


@dataclass
class Recorder:
    """Builds a :class:`Program` while the tracer runs (one method per kind of node)."""

    n_vars: int
    nodes: list[Node] = field(default_factory=list)
    inputs: list[int] = field(default_factory=list)

    def add(self, node: Node, value=None) -> int:
        self.nodes.append(node)
        if value is not None:
            value.node = len(self.nodes) - 1
        return len(self.nodes) - 1

    def node_of(self, value, op: str) -> int:
        if value.node is None:
            raise NotExpandableError(
                f"cannot expand exactly: {op} reads a value that the recorded program does not "
                "hold; expand with exact=False (float64), and report this model to polynet."
            )
        return value.node

    # ------------------------------------------------------------ leaves

    def input(self, start: Tensor) -> int:
        """An argument's start polynomials: coefficients (1 + n_vars, *shape)."""
        c = start.detach().double().reshape(start.shape[0], -1).cpu()
        node = Input(c.shape[1], c[0].numpy().copy(), SparseMatrix.from_dense(c[1:].T))
        self.inputs.append(self.add(node))
        return self.inputs[-1]

    def constant(self, value, values: Tensor, op: str = "constant") -> None:
        v = values.detach().double().reshape(-1).cpu().numpy().copy()
        self.add(Constant(len(v), v, op=op), value)

    # ------------------------------------------------------------ probed ops

    def affine(self, tracer, func, broadcasts, flat, spec, tracked, out, results) -> None:
        """An op affine in its input-dependent operands: its matrices by the probe."""
        op = func.overloadpacket.__name__
        items = list(tracked.items())
        nodes = [self.node_of(v, op) for _, v in items]
        reals = out if isinstance(out, (list, tuple)) else [out]
        results = results if isinstance(results, (list, tuple)) else [results]
        wanted = [k for k, r in enumerate(results) if r is not None]
        width = sum(_size(results[k]) for k in wanted)
        device = next(iter(tracked.values())).poly.coefficients.device

        from polynet.expansion.trace import lift_rows

        def run(rows: int, fill) -> list[Tensor]:
            lifted = {}
            for j, (i, v) in enumerate(items):
                c = torch.zeros(rows, _size(v), dtype=torch.float64, device=device)
                fill(j, c)
                lifted[i] = lift_rows(c.reshape(rows, *v.poly_shape), v)
            raw = tracer.run_lifted(func, broadcasts, flat, spec, tracked, lifted, rows, out)
            raws = raw if isinstance(raw, (list, tuple)) else [raw]
            got = []
            for k in wanted:
                probe = tracer.unlift(raws[k], reals[k], rows, 0, keep=True)
                if (probe.axis, probe.factor) != (results[k].axis, results[k].factor) or (
                    _size(probe) != _size(results[k])
                ):
                    raise NotExpandableError(
                        f"cannot expand exactly: the probe of {op} gave a value of shape "
                        f"{probe.poly_shape}, the trace {results[k].poly_shape}; expand with "
                        "exact=False (float64), and report this model to polynet."
                    )
                got.append(probe.poly.coefficients.reshape(rows, -1))
            return got

        biases = run(1, lambda j, c: None)
        # (output k, operand j) -> [(rows of the output, columns of the operand, values)]
        parts: dict[tuple[int, int], list] = {}
        chunk = max(1, PROBE_ELEMENTS // max(1, width))
        for j, (_, v) in enumerate(items):
            m = _size(v)
            for start in range(0, m, chunk):
                n = min(chunk, m - start)
                rows = n + 1 if n == _EXAMPLE_BATCH else n

                def fill(jj, c, j=j, start=start, n=n):
                    if jj == j:
                        c[torch.arange(n), torch.arange(start, start + n)] = PROBE_SCALE

                for k, y in enumerate(run(rows, fill)):
                    w = _exact_part(y[:n], biases[k][0].expand(n, -1), PROBE_SCALE, op)
                    cols, outs = torch.nonzero(w, as_tuple=True)
                    entry = (outs.cpu().numpy(), cols.cpu().numpy() + start, w[cols, outs])
                    parts.setdefault((k, j), []).append(entry)
        for k, index in enumerate(wanted):
            result = results[index]
            size = _size(result)
            matrices = []
            for j, (_, v) in enumerate(items):
                got = parts.get((k, j), [])
                rows = np.concatenate([g[0] for g in got]) if got else np.zeros(0, np.int64)
                cols = np.concatenate([g[1] for g in got]) if got else np.zeros(0, np.int64)
                data = np.concatenate([g[2].cpu().numpy() for g in got]) if got else np.zeros(0)
                matrices.append(SparseMatrix.from_triplets((size, _size(v)), rows, cols, data))
            bias = biases[k][0].cpu().numpy().copy()
            degree = result.poly.degree
            self.add(Affine(size, tuple(nodes), tuple(matrices), bias, degree, op), result)

    def bilinear(self, tracer, func, flat, spec, ia: int, ib: int, out, result) -> None:
        """An op bilinear in two input-dependent operands: its weights on pairs of basis rows."""
        op = func.overloadpacket.__name__
        a, b = tracer.lookup(flat[ia]), tracer.lookup(flat[ib])
        na, nb = self.node_of(a, op), self.node_of(b, op)
        ma, mb, size = _size(a), _size(b), _size(result)
        tracked = {ia: a, ib: b}
        from polynet.expansion.trace import lift_rows

        device = a.poly.coefficients.device

        def run(ca: Tensor, cb: Tensor) -> Tensor:
            rows = ca.shape[0]
            lifted = {}
            lifted[ia] = lift_rows(ca.reshape(rows, *a.poly_shape), a)
            lifted[ib] = lift_rows(cb.reshape(rows, *b.poly_shape), b)
            raw = tracer.run_lifted(func, False, flat, spec, tracked, lifted, rows, out)
            probe = tracer.unlift(raw, out, rows, 0, keep=True)
            if _size(probe) != size:
                raise NotExpandableError(
                    f"cannot expand exactly: the probe of {op} gave {_size(probe)} entries, the "
                    f"trace {size}; expand with exact=False (float64)."
                )
            return probe.poly.coefficients.reshape(rows, -1)

        def zeros(rows: int, m: int) -> Tensor:
            return torch.zeros(rows, m, dtype=torch.float64, device=device)

        def basis(m: int, scale: float) -> tuple[Tensor, int]:
            rows = m + 1 if m == _EXAMPLE_BATCH else m
            c = zeros(rows, m)
            c[torch.arange(m), torch.arange(m)] = scale
            return c, rows

        bias = run(zeros(1, ma), zeros(1, mb))[0]
        linear = []
        for m, first in ((ma, True), (mb, False)):
            c, rows = basis(m, PROBE_SCALE)
            other = zeros(rows, mb if first else ma)
            y = run(c, other) if first else run(other, c)
            w = _exact_part(y[:m], bias.expand(m, -1), PROBE_SCALE, op)
            linear.append(SparseMatrix.from_dense(w.T) if bool(w.any()) else None)
        outs, lefts, rights, weights = [], [], [], []
        chunk = max(1, PROBE_ELEMENTS // max(1, size * mb))
        for start in range(0, ma, chunk):
            n = min(chunk, ma - start)
            pairs = n * mb
            rows = pairs + 1 if pairs == _EXAMPLE_BATCH else pairs
            ca, cb = zeros(rows, ma), zeros(rows, mb)
            r = torch.arange(pairs, device=device)
            ca[r, start + r // mb] = BILINEAR_SCALE
            cb[r, r % mb] = BILINEAR_SCALE
            y = run(ca, cb)[:pairs]
            w = _exact_part(y, bias.expand(pairs, -1), BILINEAR_SCALE**2, op)
            pair, o = torch.nonzero(w, as_tuple=True)
            outs.append(o.cpu().numpy())
            lefts.append((start + pair // mb).cpu().numpy())
            rights.append((pair % mb).cpu().numpy())
            weights.append(w[pair, o].cpu().numpy())
        node = Bilinear(
            size,
            na,
            nb,
            bias.cpu().numpy().copy(),
            np.concatenate(outs),
            np.concatenate(lefts),
            np.concatenate(rights),
            np.concatenate(weights),
            (linear[0], linear[1]),
            result.poly.degree,
            op,
        )
        self.add(node, result)

    # ------------------------------------------------------------ products and powers

    def elementwise(self, result, a, b, op: str = "mul") -> None:
        """``a * b`` with broadcasting (value shapes right-aligned, as torch broadcasts)."""
        shape = tuple(result.poly_shape)
        nodes = (self.node_of(a, op), self.node_of(b, op))
        maps = (
            _broadcast_index(tuple(a.poly_shape), shape),
            _broadcast_index(tuple(b.poly_shape), shape),
        )
        self.add(Product(math.prod(shape), nodes, maps, result.poly.degree, op), result)

    def prod(self, result, value, axis: int) -> None:
        """``value.prod(dim)``: the product of the slices along value axis ``axis``."""
        shape = tuple(value.poly_shape)
        idx = torch.arange(math.prod(shape)).reshape(shape)
        maps = tuple(idx.select(axis, s).reshape(-1).numpy().copy() for s in range(shape[axis]))
        node = self.node_of(value, "prod")
        size = _size(result)
        self.add(Product(size, (node,) * len(maps), maps, result.poly.degree, "prod"), result)

    def power(self, result, base, k: int, op: str = "pow") -> None:
        """``base ** k`` entrywise (one-hot alpha)."""
        if k == 0:
            self.constant(result, torch.ones(_size(result)), op)
            return
        alpha = np.zeros((1, k + 1))
        alpha[0, k] = 1.0
        size = _size(base)
        node = Univariate(
            size,
            self.node_of(base, op),
            np.arange(size),
            alpha,
            np.zeros(size, np.int64),
            result.poly.degree,
            op,
        )
        self.add(node, result)

    def univariate(self, result, base, alpha: Tensor, op: str) -> None:
        """An SLAF: ``alpha[c]`` for each entry of channel c (value axis 0)."""
        shape = tuple(base.poly_shape)
        size = math.prod(shape)
        per_channel = math.prod(shape[1:])
        group = np.arange(size) // per_channel
        alpha = alpha.detach().double().cpu().numpy().copy()
        if alpha.shape[0] == 1:
            group = np.zeros(size, np.int64)
        node = Univariate(
            size, self.node_of(base, op), np.arange(size), alpha, group, result.poly.degree, op
        )
        self.add(node, result)

    def sum(self, result, a, b, op: str = "add") -> None:
        """``a + b`` for values of one shape."""
        size = _size(result)
        identity = SparseMatrix.identity(size)
        nodes = (self.node_of(a, op), self.node_of(b, op))
        degree = result.poly.degree
        self.add(Affine(size, nodes, (identity, identity), np.zeros(size), degree, op), result)

    def scatter(self, result, root, new, positions: Tensor, op: str = "index assignment") -> None:
        """``root`` with entries ``positions`` overwritten by ``new`` (in order; last wins)."""
        size = _size(root)
        pos = positions.reshape(-1).cpu().numpy().astype(np.int64)
        m = _size(new)
        src = np.arange(len(pos)) if m == len(pos) else np.zeros(len(pos), np.int64)
        written = np.zeros(size, bool)
        written[pos] = True
        kept = np.nonzero(~written)[0]
        keep = SparseMatrix.from_triplets((size, size), kept, kept, np.ones(len(kept)))
        put = SparseMatrix.from_triplets((size, m), pos, src, np.ones(len(pos)))
        nodes = (self.node_of(root, op), self.node_of(new, op))
        degree = result.poly.degree
        self.add(Affine(size, nodes, (keep, put), np.zeros(size), degree, op), result)

    # ------------------------------------------------------------ the program

    def program(self, outputs: list, degree: int) -> Program:
        nodes = tuple(self.node_of(v, "the output") for v in outputs)
        return Program(self.n_vars, tuple(self.nodes), nodes, degree)
