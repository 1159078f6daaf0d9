"""Polynomial circuits in pure SymPy: the objects of ``proofs/circuits.md``, and its rules.

A *circuit* is a tuple of :class:`Node` in topological order; node 0 is the input
``x = (x0, ..., x_{n-1})`` and the last node is the output. Every node is a vector of
polynomials (its *coordinates*). The operations are those of a polynomial network:

- ``affine``: ``u_j = Σ_{i ∈ P_j} W_ji h_i (+ b_j)``, parameters ``W`` (on the pattern ``P``,
  dense or sparse like a convolution) and ``b``;
- ``slaf``: ``q_j(h_j) = Σ_{m ≤ k} α_jm h_j^m``, a univariate polynomial per unit, parameters α;
- ``mul`` (elementwise product of two nodes), ``pow`` (integer power), ``add`` (a combination
  with *fixed* coefficients, which may be negative: ``a - b``), ``linear`` (a *fixed* matrix:
  sums, means, average pooling, ``matmul`` with a constant), ``cat``, ``select`` (indexing,
  reshape, permutation), ``const`` (fixed numbers).

Width-1 operands of ``mul`` and ``add`` broadcast. Parameters are named; two nodes with the same
``param`` share (tie) their parameters. Nothing here imports polynet: the expansion is SymPy's
ring arithmetic over QQ, and the rules (:func:`coordinate_bounds`, :func:`node_bounds`,
:func:`structural_support`, :func:`leading_forms`) are the statements the tests check against it.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction

from sympy import QQ
from sympy.polys.rings import PolyElement, PolyRing, ring

__all__ = [
    "Node",
    "Circuit",
    "parameter_names",
    "expand",
    "coordinate_bounds",
    "node_bounds",
    "structural_support",
    "leading_forms",
    "is_positive",
    "is_regular",
    "input_through_dense_affine",
    "random_circuit",
    "random_values",
    "ones",
    "conv_circuit",
    "receptive_field_set",
    "x_degree",
    "x_support",
    "homogeneous_part",
    "n_monomials",
    "full_set",
    "COUNTEREXAMPLES",
]

#: The fixed numbers of a circuit (coefficients of ``add``, entries of ``linear``, ``const``).
Number = Fraction | int


@dataclass(frozen=True)
class Node:
    """One operation of a circuit; ``args`` are indices of earlier nodes."""

    op: str
    args: tuple[int, ...] = ()
    width: int = 1
    #: SLAF degree k, or the exponent of ``pow``.
    degree: int = 0
    #: ``affine``: the pattern as 0/1 rows; ``linear``: the fixed matrix.
    matrix: tuple[tuple[Number, ...], ...] = ()
    bias: bool = True
    #: ``add``: one fixed coefficient per argument; ``const``: the values.
    coefficients: tuple[Number, ...] = ()
    #: ``select``: the coordinates of the argument to take, in order (repeats allowed).
    index: tuple[int, ...] = ()
    #: parameter group name (``affine``, ``slaf``); equal names tie the parameters.
    param: str = ""
    #: Weight sharing inside the node. ``affine`` (a convolution): a pattern entry is the label
    #: of its weight, equal labels are one parameter, and the bias is one number. ``slaf``: one
    #: polynomial for every unit (a channel's SLAF).
    shared: bool = False


Circuit = tuple[Node, ...]


@dataclass
class _Ctx:
    ring: PolyRing
    n_vars: int
    value: Callable[[str], PolyElement]


def n_monomials(n_vars: int, degree: int) -> int:
    """C(n + D, D): the number of monomials of total degree <= D in n variables."""
    return math.comb(n_vars + degree, degree)


def full_set(n_vars: int, degree: int) -> frozenset[tuple[int, ...]]:
    """All exponent vectors of total degree <= ``degree`` (empty for degree -1)."""
    return frozenset(
        tuple(combo.count(i) for i in range(n_vars))
        for d in range(degree + 1)
        for combo in itertools.combinations_with_replacement(range(n_vars), d)
    )


def _weight(node: Node, j: int, i: int) -> str:
    return f"{node.param}_k{node.matrix[j][i]}" if node.shared else f"{node.param}_w{j}_{i}"


def _bias(node: Node, j: int) -> str:
    return f"{node.param}_b" if node.shared else f"{node.param}_b{j}"


def _coefficient(node: Node, j: int, m: int) -> str:
    return f"{node.param}_a{m}" if node.shared else f"{node.param}_a{j}_{m}"


def parameter_names(circuit: Circuit) -> list[str]:
    """Names of the circuit's parameters, each once (tied nodes share names)."""
    names: dict[str, None] = {}
    for node in circuit:
        if node.op == "affine":
            for j, row in enumerate(node.matrix):
                for i, on in enumerate(row):
                    if on:
                        names[_weight(node, j, i)] = None
                if node.bias:
                    names[_bias(node, j)] = None
        elif node.op == "slaf":
            for j in range(node.width):
                for m in range(node.degree + 1):
                    names[_coefficient(node, j, m)] = None
    return list(names)


def _broadcast(values: list, width: int) -> list:
    return values * width if len(values) == 1 else values


def _evaluate(circuit: Circuit, ctx: _Ctx) -> list[list[PolyElement]]:
    R, gens = ctx.ring, ctx.ring.gens
    out: list[list[PolyElement]] = []
    for node in circuit:
        args = [out[a] for a in node.args]
        op = node.op
        if op == "input":
            h = list(gens[: ctx.n_vars])
        elif op == "const":
            h = [R(QQ(c.numerator, c.denominator)) for c in map(Fraction, node.coefficients)]
        elif op == "affine":
            (a,) = args
            h = []
            for j, row in enumerate(node.matrix):
                u = sum(
                    (ctx.value(_weight(node, j, i)) * a[i] for i, on in enumerate(row) if on),
                    R.zero,
                )
                h.append(u + ctx.value(_bias(node, j)) if node.bias else u)
        elif op == "slaf":
            (a,) = args
            h = []
            for j, t in enumerate(a):
                q, power = R.zero, R.one
                for m in range(node.degree + 1):
                    q += ctx.value(_coefficient(node, j, m)) * power
                    power *= t
                h.append(q)
        elif op == "mul":
            a, b = (_broadcast(v, node.width) for v in args)
            h = [p * q for p, q in zip(a, b)]
        elif op == "pow":
            h = [p**node.degree if node.degree else R.one for p in args[0]]  # 0**0 = 1, as torch
        elif op == "add":
            vecs = [_broadcast(v, node.width) for v in args]
            h = [
                sum((_q(c) * v[j] for c, v in zip(node.coefficients, vecs)), R.zero)
                for j in range(node.width)
            ]
        elif op == "linear":
            (a,) = args
            h = [sum((_q(c) * a[i] for i, c in enumerate(row) if c), R.zero) for row in node.matrix]
        elif op == "cat":
            h = [p for v in args for p in v]
        elif op == "select":
            h = [args[0][i] for i in node.index]
        else:
            raise ValueError(f"unknown op {op!r}")
        out.append(h)
    return out


def _q(c: Number):
    c = Fraction(c)
    return QQ(c.numerator, c.denominator)


def _context(circuit: Circuit, values: dict[str, Number] | None) -> _Ctx:
    """The ring QQ[x] with parameter values, or QQ[x, θ] with every parameter a generator."""
    n_vars = circuit[0].width
    xs = [f"x{i}" for i in range(n_vars)]
    if values is None:
        names = parameter_names(circuit)
        R, *gens = ring(xs + names, QQ)
        return _Ctx(R, n_vars, dict(zip(names, gens[n_vars:])).__getitem__)
    R, *_ = ring(xs, QQ)
    return _Ctx(R, n_vars, lambda name: R(_q(values[name])))


def expand(
    circuit: Circuit, values: dict[str, Number] | None = None
) -> tuple[list[list[PolyElement]], int]:
    """Every node's coordinates as polynomials; returns ``(nodes, n_vars)``.

    With ``values`` (parameter name -> rational number) the ring is QQ[x]. Without, every
    parameter is a generator after the inputs: the ring is QQ[x, θ], so a statement that holds
    there holds identically in the parameters.
    """
    ctx = _context(circuit, values)
    return _evaluate(circuit, ctx), ctx.n_vars


# --- the rules of proofs/circuits.md ---------------------------------------------------------


def coordinate_bounds(circuit: Circuit) -> list[tuple[int, ...]]:
    """Theorem C1's degree bound for every coordinate of every node (-1: structurally zero)."""
    out: list[tuple[int, ...]] = []
    for node in circuit:
        args = [list(out[a]) for a in node.args]
        op = node.op
        if op == "input":
            d = [1] * node.width
        elif op == "const":
            d = [0 if c else -1 for c in node.coefficients]
        elif op == "affine":
            d = [
                max([args[0][i] for i, on in enumerate(row) if on] + [0 if node.bias else -1])
                for row in node.matrix
            ]
        elif op == "slaf":
            d = [node.degree * t if t > 0 else 0 for t in args[0]]
        elif op == "mul":
            a, b = (_broadcast(v, node.width) for v in args)
            d = [p + q if min(p, q) >= 0 else -1 for p, q in zip(a, b)]
        elif op == "pow":
            p = node.degree
            d = [0 if p == 0 else (p * t if t >= 0 else -1) for t in args[0]]
        elif op == "add":
            vecs = [_broadcast(v, node.width) for v in args]
            d = [max(v[j] for c, v in zip(node.coefficients, vecs) if c) for j in range(node.width)]
        elif op == "linear":
            d = [max([args[0][i] for i, c in enumerate(row) if c] + [-1]) for row in node.matrix]
        elif op == "cat":
            d = [t for v in args for t in v]
        elif op == "select":
            d = [args[0][i] for i in node.index]
        else:
            raise ValueError(f"unknown op {op!r}")
        out.append(tuple(d))
    return out


def node_bounds(circuit: Circuit) -> list[int]:
    """The coarse node-by-node bound: affine, linear, select keep it; SLAF of degree k and
    ``pow`` k multiply by k; ``mul`` adds; ``add`` and ``cat`` take the max; constants 0."""
    out: list[int] = []
    for node in circuit:
        args = [out[a] for a in node.args]
        op = node.op
        if op == "input":
            d = 1
        elif op == "const":
            d = 0
        elif op in ("affine", "linear", "select"):
            d = args[0]
        elif op in ("slaf", "pow"):
            d = node.degree * args[0]
        elif op == "mul":
            d = args[0] + args[1]
        elif op in ("add", "cat"):
            d = max(args)
        else:
            raise ValueError(f"unknown op {op!r}")
        out.append(d)
    return out


def _minkowski(a: frozenset, b: frozenset) -> frozenset:
    return frozenset(tuple(p + q for p, q in zip(s, t)) for s in a for t in b)


def _power(s: frozenset, p: int, n_vars: int) -> frozenset:
    acc = frozenset({(0,) * n_vars})
    for _ in range(p):
        acc = _minkowski(acc, s)
    return acc


def structural_support(circuit: Circuit) -> list[list[frozenset[tuple[int, ...]]]]:
    """Theorem C3's structural support S of every coordinate: the monomials that can appear.

    Input ``x_i``: {e_i}; non-zero constant: {0}; affine: union over the pattern (and {0} with a
    bias); SLAF of degree k: union of the m-fold sums of S for m = 0..k; ``mul``: the Minkowski
    sum; ``pow`` p: the p-fold sum; ``add``/``linear``: union over the non-zero coefficients.
    """
    n = circuit[0].width
    zero = frozenset({(0,) * n})
    out: list[list[frozenset]] = []
    for node in circuit:
        args = [out[a] for a in node.args]
        op = node.op
        if op == "input":
            s = [frozenset({tuple(int(i == j) for i in range(n))}) for j in range(n)]
        elif op == "const":
            s = [zero if c else frozenset() for c in node.coefficients]
        elif op == "affine":
            s = []
            for row in node.matrix:
                acc = zero if node.bias else frozenset()
                for i, on in enumerate(row):
                    if on:
                        acc |= args[0][i]
                s.append(acc)
        elif op == "slaf":
            s = [
                frozenset().union(*(_power(t, m, n) for m in range(node.degree + 1)))
                for t in args[0]
            ]
        elif op == "mul":
            a, b = (_broadcast(v, node.width) for v in args)
            s = [_minkowski(p, q) for p, q in zip(a, b)]
        elif op == "pow":
            s = [_power(t, node.degree, n) for t in args[0]]
        elif op == "add":
            vecs = [_broadcast(v, node.width) for v in args]
            s = [
                frozenset().union(*(v[j] for c, v in zip(node.coefficients, vecs) if c))
                for j in range(node.width)
            ]
        elif op == "linear":
            s = [
                frozenset().union(*(args[0][i] for i, c in enumerate(row) if c))
                for row in node.matrix
            ]
        elif op == "cat":
            s = [t for v in args for t in v]
        elif op == "select":
            s = [args[0][i] for i in node.index]
        else:
            raise ValueError(f"unknown op {op!r}")
        out.append(s)
    return out


def leading_forms(
    circuit: Circuit, values: dict[str, Number] | None = None
) -> list[list[PolyElement]]:
    """Theorem C2's leading forms L (the part of degree exactly the coordinate bound), built by
    the rules alone: products and powers multiply leading forms; affine, ``add`` and ``linear``
    combine the leading forms of the arguments that reach the bound; SLAF multiplies the k-th
    power by the leading coefficient α_k. Same ring as :func:`expand` with the same ``values``."""
    ctx = _context(circuit, values)
    R, value = ctx.ring, ctx.value
    bounds = coordinate_bounds(circuit)
    full = _evaluate(circuit, ctx)  # read only where a coordinate is constant (bound 0)
    out: list[list[PolyElement]] = []
    for k, node in enumerate(circuit):
        args = [out[a] for a in node.args]
        dargs = [bounds[a] for a in node.args]
        d = bounds[k]
        op = node.op
        if op in ("input", "const"):
            h = full[k]
        elif op == "affine":
            h = []
            for j, row in enumerate(node.matrix):
                u = sum(
                    (
                        value(_weight(node, j, i)) * args[0][i]
                        for i, on in enumerate(row)
                        if on and dargs[0][i] == d[j]
                    ),
                    R.zero,
                )
                h.append(u + value(_bias(node, j)) if node.bias and d[j] == 0 else u)
        elif op == "slaf":
            # Degree-0 input: the whole q(t) is constant and is its own leading form.
            h = [
                value(_coefficient(node, j, node.degree)) * t**node.degree
                if dargs[0][j] > 0
                else full[k][j]
                for j, t in enumerate(args[0])
            ]
        elif op == "mul":
            a, b = (_broadcast(v, node.width) for v in args)
            h = [p * q for p, q in zip(a, b)]
        elif op == "pow":
            h = [p**node.degree if node.degree else R.one for p in args[0]]
        elif op == "add":
            vecs = [_broadcast(v, node.width) for v in args]
            dv = [_broadcast(list(v), node.width) for v in dargs]
            h = [
                sum(
                    (
                        _q(c) * v[j]
                        for c, v, dd in zip(node.coefficients, vecs, dv)
                        if c and dd[j] == d[j]
                    ),
                    R.zero,
                )
                for j in range(node.width)
            ]
        elif op == "linear":
            h = [
                sum(
                    (_q(c) * args[0][i] for i, c in enumerate(row) if c and dargs[0][i] == d[j]),
                    R.zero,
                )
                for j, row in enumerate(node.matrix)
            ]
        elif op == "cat":
            h = [p for v in args for p in v]
        elif op == "select":
            h = [args[0][i] for i in node.index]
        else:
            raise ValueError(f"unknown op {op!r}")
        out.append(h)
    return out


def is_positive(circuit: Circuit) -> bool:
    """Every fixed number is >= 0 and every constant and ``add`` coefficient > 0 (Theorem C4)."""
    for node in circuit:
        if node.op in ("add", "const") and any(c <= 0 for c in node.coefficients):
            return False
        if node.op == "linear" and any(c < 0 for row in node.matrix for c in row):
            return False
    return True


def is_regular(circuit: Circuit) -> bool:
    """Every ``cat`` joins nodes of equal node bound, every row of an affine or fixed linear map
    has an entry, and every constant is non-zero: then every coordinate bound equals its node
    bound (Remark C1')."""
    bounds = node_bounds(circuit)
    for node in circuit:
        if node.op == "cat" and len({bounds[a] for a in node.args}) > 1:
            return False
        if node.op in ("affine", "linear") and not all(any(row) for row in node.matrix):
            return False
        if node.op in ("const", "add") and not all(node.coefficients):
            return False
    return True


def input_through_dense_affine(circuit: Circuit) -> bool:
    """The input is used only by affine nodes with a bias and a dense pattern (Corollary C5)."""
    for node in circuit[1:]:
        if 0 in node.args:
            dense = all(all(row) for row in node.matrix)
            if node.op != "affine" or not node.bias or not dense:
                return False
    return True


# --- polynomials in x with coefficients in the parameters -----------------------------------


def x_support(poly: PolyElement, n_vars: int) -> set[tuple[int, ...]]:
    """The x-monomials of ``poly`` whose coefficient (a polynomial in θ) is non-zero."""
    return {m[:n_vars] for m in poly.itermonoms()}


def x_degree(poly: PolyElement, n_vars: int) -> int:
    """Total degree of ``poly`` in x0..x_{n-1} (-1 for the zero polynomial)."""
    return max((sum(m[:n_vars]) for m in poly.itermonoms()), default=-1)


def homogeneous_part(poly: PolyElement, n_vars: int, degree: int) -> PolyElement:
    """The terms of ``poly`` of total degree ``degree`` in x."""
    return poly.ring({m: c for m, c in poly.items() if sum(m[:n_vars]) == degree})


# --- random circuits -------------------------------------------------------------------------


def random_values(
    circuit: Circuit, rng: random.Random, *, scale: int = 10**9
) -> dict[str, Fraction]:
    """Generic rational parameters: numerators uniform in ±scale, so by Schwartz–Zippel a fixed
    non-zero coefficient polynomial of θ-degree e vanishes with probability <= e / scale."""
    return {
        name: Fraction(rng.choice((-1, 1)) * rng.randint(1, scale), rng.randint(1, 97))
        for name in parameter_names(circuit)
    }


def ones(circuit: Circuit) -> dict[str, Fraction]:
    """The witness θ* of Theorem C4: every parameter 1."""
    return {name: Fraction(1) for name in parameter_names(circuit)}


def random_circuit(
    rng: random.Random,
    *,
    n_vars: int = 2,
    n_nodes: int = 8,
    max_bound: int = 8,
    positive: bool = True,
    dense_input: bool = False,
    max_width: int = 3,
) -> Circuit:
    """A random circuit whose node bounds stay <= ``max_bound``.

    ``positive``: every fixed number is positive (Theorem C4); otherwise fixed coefficients take
    both signs and ``a - a`` combinations occur. ``dense_input``: node 1 is a dense affine map
    with a bias and the input is used nowhere else (Corollary C5).
    """
    nodes: list[Node] = [Node("input", width=n_vars)]
    n_params = 0

    def fresh() -> str:
        nonlocal n_params
        n_params += 1
        return f"p{n_params}"

    def coeff() -> Fraction:
        c = Fraction(rng.randint(1, 5), rng.randint(1, 3))
        return c if positive or rng.random() < 0.5 else -c

    def affine(arg: int, dense: bool, bias: bool) -> Node:
        width = rng.randint(1, max_width)
        w_in = nodes[arg].width
        matrix = tuple(
            tuple(1 if dense or rng.random() < 0.6 else 0 for _ in range(w_in))
            for _ in range(width)
        )
        # Tie to an earlier affine node of the same shape now and then (weight sharing).
        tied = [
            nd.param
            for nd in nodes
            if nd.op == "affine" and nd.matrix == matrix and nd.bias == bias
        ]
        param = rng.choice(tied) if tied and rng.random() < 0.3 else fresh()
        return Node("affine", (arg,), width, matrix=matrix, bias=bias, param=param)

    if dense_input:
        nodes.append(affine(0, dense=True, bias=True))
    bounds = [1] * len(nodes)
    first = 1 if dense_input else 0

    def pick() -> int:
        # Favour the highest bound so far, so that degrees build up along a chain with side
        # branches instead of dying in constants.
        if rng.random() < 0.5:
            return max(range(first, len(nodes)), key=lambda b: (bounds[b], b))
        return rng.randint(first, len(nodes) - 1)

    while len(nodes) < n_nodes - 1:
        op = rng.choice(("affine", "slaf", "mul", "pow", "add", "linear", "cat", "select", "const"))
        a = pick()
        wa, da = nodes[a].width, bounds[a]
        node = None
        if op == "affine":
            node = affine(a, dense=rng.random() < 0.5, bias=rng.random() < 0.7)
        elif op == "slaf":
            ks = [k for k in (1, 2, 3) if k * da <= max_bound]
            if ks:
                node = Node("slaf", (a,), wa, degree=rng.choice(ks), param=fresh())
        elif op == "mul":
            partners = [
                b
                for b in range(first, len(nodes))
                if bounds[b] + da <= max_bound and (nodes[b].width in (1, wa) or wa == 1)
            ]
            if partners:
                b = rng.choice(partners)
                node = Node("mul", (a, b), max(wa, nodes[b].width))
        elif op == "pow":
            ps = [p for p in (2, 3) if p * da <= max_bound]
            node = Node("pow", (a,), wa, degree=rng.choice(ps) if ps and rng.random() < 0.9 else 0)
        elif op == "add":
            partners = [b for b in range(first, len(nodes)) if nodes[b].width in (1, wa) or wa == 1]
            b = rng.choice(partners)
            if not positive and rng.random() < 0.3:  # a deliberate a - a
                b, cs = a, (Fraction(1), Fraction(-1))
            else:
                cs = (coeff(), coeff())
            node = Node("add", (a, b), max(wa, nodes[b].width), coefficients=cs)
        elif op == "linear":
            width = rng.randint(1, max_width)
            matrix = tuple(
                tuple(coeff() if rng.random() < 0.6 else 0 for _ in range(wa)) for _ in range(width)
            )
            node = Node("linear", (a,), width, matrix=matrix)
        elif op == "cat":
            b = pick()
            node = Node("cat", (a, b), wa + nodes[b].width)
        elif op == "select":
            width = rng.randint(1, max_width)
            node = Node("select", (a,), width, index=tuple(rng.randrange(wa) for _ in range(width)))
        elif op == "const":
            width = rng.randint(1, 2)
            node = Node("const", (), width, coefficients=tuple(coeff() for _ in range(width)))
        if node is None:
            continue
        nodes.append(node)
        bounds = node_bounds(tuple(nodes))
    # The output: an affine read-out of the highest-bound node, as networks end.
    nodes.append(
        affine(max(range(len(nodes)), key=lambda b: (bounds[b], b)), dense=True, bias=True)
    )
    return tuple(nodes)


def conv_circuit(width: int, degrees: tuple[int, ...], kernel: int = 3) -> Circuit:
    """A one-channel 1-D convolutional SLNN on ``width`` inputs, as polynet's
    ``ConvSLNN(1, (1, width), [1] * L, degrees, pool=1, out_features=1)`` computes it: per block a
    convolution (odd ``kernel``, zero padding that keeps the size, shared weights and bias) and a
    channel SLAF (one polynomial for every position); then a dense read-out with a bias."""
    half = kernel // 2
    conv = tuple(
        tuple(i - p + half + 1 if abs(i - p) <= half else 0 for i in range(width))
        for p in range(width)
    )
    nodes = [Node("input", width=width)]
    for layer, k in enumerate(degrees):
        nodes.append(
            Node("affine", (len(nodes) - 1,), width, matrix=conv, param=f"c{layer}", shared=True)
        )
        nodes.append(
            Node("slaf", (len(nodes) - 1,), width, degree=k, param=f"s{layer}", shared=True)
        )
    nodes.append(Node("affine", (len(nodes) - 1,), 1, matrix=((1,) * width,), param="out"))
    return tuple(nodes)


def receptive_field_set(circuit: Circuit, degree: int) -> frozenset[tuple[int, ...]]:
    """Theorem 2(d)'s set for the output: monomials of degree <= ``degree`` supported in the
    receptive field of one unit feeding the read-out (the last node's argument)."""
    n = circuit[0].width
    fields: list[list[frozenset[int]]] = []
    for node in circuit:
        if node.op == "input":
            fields.append([frozenset({i}) for i in range(n)])
        elif node.op == "affine":
            prev = fields[node.args[0]]
            fields.append(
                [
                    frozenset().union(*(prev[i] for i, on in enumerate(row) if on))
                    for row in node.matrix
                ]
            )
        elif node.op == "slaf":
            fields.append(fields[node.args[0]])
        else:
            raise ValueError("receptive_field_set handles affine and SLAF chains only")
    units = fields[circuit[-1].args[0]]
    return frozenset(
        b for b in full_set(n, degree) if any({i for i, e in enumerate(b) if e} <= u for u in units)
    )


# --- the counterexamples of proofs/circuits.md ------------------------------------------------


def _lin(arg: int, width: int, w_in: int, param: str, bias: bool = True) -> Node:
    return Node("affine", (arg,), width, matrix=((1,) * w_in,) * width, bias=bias, param=param)


#: name -> (circuit, why the bound is not attained). Each holds for every parameter value.
COUNTEREXAMPLES: dict[str, tuple[Circuit, str]] = {
    "x - x": (
        (Node("input", width=2), Node("add", (0, 0), 2, coefficients=(1, -1))),
        "a fixed combination with coefficients summing to zero on one node: the zero polynomial",
    ),
    "lin(x) - lin(x), tied": (
        (
            Node("input", width=2),
            _lin(0, 1, 2, "w"),
            _lin(0, 1, 2, "w"),
            Node("add", (1, 2), 1, coefficients=(1, -1)),
        ),
        "two nodes sharing their parameters are one polynomial; their difference is 0",
    ),
    "h*h - h**2": (
        (
            Node("input", width=2),
            _lin(0, 1, 2, "w"),
            Node("mul", (1, 1), 1),
            Node("pow", (1,), 1, degree=2),
            Node("add", (2, 3), 1, coefficients=(1, -1)),
        ),
        "two computations of one polynomial, no tying needed: the node h is shared",
    ),
    "x*x - x**2 (parameter-free)": (
        (
            Node("input", width=1),
            Node("mul", (0, 0), 1),
            Node("pow", (0,), 1, degree=2),
            Node("add", (1, 2), 1, coefficients=(1, -1)),
        ),
        "leading forms free of parameters cancel in a fixed combination (Proposition C6)",
    ),
    "product with a zero branch": (
        (
            Node("input", width=2),
            _lin(0, 1, 2, "w"),
            Node("add", (1, 1), 1, coefficients=(1, -1)),
            Node("slaf", (1,), 1, degree=2, param="q"),
            Node("mul", (3, 2), 1),
        ),
        "a product inherits a cancellation from a factor (Q[x, θ] has no zero divisors, so "
        "it cannot create one)",
    ),
    "power of a cancelling sum": (
        (
            Node("input", width=2),
            _lin(0, 1, 2, "w"),
            Node("const", (), 1, coefficients=(1,)),
            Node("add", (1, 2, 1), 1, coefficients=(1, 1, -1)),
            Node("pow", (3,), 1, degree=3),
        ),
        "((h + 1) - h)**3 = 1: the power inherits the sum's cancellation; bound 3, degree 0",
    ),
    "cat, then product": (
        (
            Node("input", width=2),
            Node("select", (0,), 1, index=(0,)),
            Node("select", (0,), 1, index=(1,)),
            Node("mul", (1, 1), 1),
            Node("mul", (2, 2), 1),
            Node("cat", (3, 2), 2),
            Node("cat", (1, 4), 2),
            Node("mul", (5, 6), 2),
        ),
        "(x0², x1)·(x0, x1²) = (x0³, x1³): the node bound 2 + 2 = 4 overshoots, the coordinate "
        "bounds (3, 3) are exact; no cancellation at all",
    ),
}
