"""Any polynomial ``forward()``: run on tensors of polynomials (see :mod:`polynet.expansion.trace`).

Every value the model computes from its input becomes a :class:`PolyTensor`: a dense
coefficient array of shape (T(d), *value_shape) over the graded monomials of degree ≤ d in
the model's flattened inputs (a prefix of :class:`MonomialIndex`). The coefficient axis sits
where the batch axis does, so the model's own reshapes, permutes, indexing, reductions,
convolutions and pooling apply to it unchanged; products of two polynomial tensors fold the
outer product of their coefficients into monomials (degrees add). Values that do not depend
on the input (parameters, buffers, sizes) are computed as the model computes them.

The model runs on an example batch and each ATen op is looked up in
:data:`polynet.expansion.rules.ATEN_RULES` (:mod:`polynet.expansion.trace`); one that is not a
polynomial map is refused naming the op, its module and the line of the user's
``forward()``. torch.fx is used only to tell whether a ``forward()`` is a plain chain of
table layers (the chain fast path).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.fx
from torch import Tensor, nn

from polynet.errors import NotExpandableError
from polynet.expansion.graph_truncation import (
    capped,
    truncated_at,
    truncated_gram_into,
    truncated_product,
    truncation,
)
from polynet.expansion.rules import check_module
from polynet.polynomial.index import MonomialIndex
from polynet.slaf import SLAF

__all__ = ["PolyTensor", "GraphExpansion", "NodeDegree", "trace", "expand_graph"]


@dataclass
class PolyTensor:
    """Polynomials in n variables, one per entry of a value: coefficients (T(d), *shape).

    With ``symbolic`` the coefficient axis has length 1 and holds nothing: only shapes and
    degrees are propagated (what :func:`polynet.count_terms` needs).
    """

    coefficients: Tensor
    degree: int
    n_vars: int
    symbolic: bool = False

    @property
    def value_shape(self) -> tuple[int, ...]:
        return tuple(self.coefficients.shape[1:])

    def padded(self, degree: int) -> Tensor:
        """Coefficients over the monomials of degree ≤ ``degree`` (graded: zero rows appended)."""
        if self.symbolic or degree == self.degree:
            return self.coefficients
        rows = MonomialIndex(self.n_vars, degree).n_monomials(degree)
        extra = rows - self.coefficients.shape[0]
        pad = self.coefficients.new_zeros((extra, *self.value_shape))
        return torch.cat([self.coefficients, pad])

    def with_coefficients(self, coefficients: Tensor, degree: int | None = None) -> PolyTensor:
        return PolyTensor(
            coefficients, self.degree if degree is None else degree, self.n_vars, self.symbolic
        )


@dataclass(frozen=True)
class NodeDegree:
    """One node of the traced graph: its name, op, where it is in forward(), its degree."""

    node: str
    op: str
    parameters: int
    degree: int
    location: str
    values: int = 1


@dataclass(frozen=True)
class GraphExpansion:
    """The output polynomials of a graph model and its per-node degree table."""

    output: PolyTensor
    nodes: tuple[NodeDegree, ...]
    input_shape: tuple[int, ...]
    #: (name, number of entries) of each output tensor, in order ("" for a lone tensor).
    outputs: tuple[tuple[str, int], ...] = ()
    #: The ATen ops run (two example batches must run the same ones).
    ops: tuple[str, ...] = ()

    @property
    def degree_bound(self) -> int:
        return self.output.degree


class _Tracer(torch.fx.Tracer):
    """torch.fx's tracer, keeping polynet's SLAF (and every module in the table) whole."""

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return isinstance(m, SLAF) or super().is_leaf_module(m, module_qualified_name)


def _user_frame(tb) -> str:
    """file:line of the innermost traceback frame outside torch and polynet."""
    where = ""
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        if "/torch/" not in filename and "/polynet/expansion/" not in filename:
            where = f"{filename}:{tb.tb_lineno}"
        tb = tb.tb_next
    return where


def trace(model: nn.Module) -> torch.fx.GraphModule:
    """The model's forward as an fx graph; data-dependent control flow is refused."""
    tracer = _Tracer()
    try:
        graph = tracer.trace(model)
    except torch.fx.proxy.TraceError as exc:
        where = _user_frame(exc.__traceback__)
        raise NotExpandableError(
            f"cannot expand {type(model).__name__}: its forward() branches or loops on the "
            f"values of its input ({exc}){' at ' + where if where else ''}; a polynomial "
            "model computes the same ops for every input: remove the data-dependent `if`/"
            "`for`, or expand the polynomial part alone."
        ) from exc
    except Exception as exc:  # noqa: BLE001 - any other tracing failure, reported plainly
        where = _user_frame(exc.__traceback__)
        raise NotExpandableError(
            f"cannot trace {type(model).__name__}.forward() with torch.fx "
            f"({type(exc).__name__}: {exc}){' at ' + where if where else ''}; write forward() "
            "with tensor ops only, or pass an nn.Sequential."
        ) from exc
    return torch.fx.GraphModule(tracer.root, graph)


def as_chain(gm: torch.fx.GraphModule) -> nn.Sequential | None:
    """The traced model as an ``nn.Sequential`` when its graph is a path of table modules.

    A custom ``forward()`` that only feeds each layer's output to the next (a plain SLNN
    written as a class) then takes the chain fast path; None for any other graph.
    """
    modules = dict(gm.named_modules())
    layers: list[nn.Module] = []
    previous = None
    for node in gm.graph.nodes:
        if node.op == "placeholder":
            if previous is not None:
                return None
            previous = node
        elif node.op == "call_module":
            module = modules[node.target]
            if node.args != (previous,) or node.kwargs or not _accepted(module):
                return None  # the graph path refuses it with the line of forward()
            layers.append(module)
            previous = node
        elif node.op == "output":
            if node.args != (previous,) or not layers:
                return None
        else:
            return None
    return nn.Sequential(*layers).eval()


def _accepted(module: nn.Module) -> bool:
    try:
        check_module("", module)
    except NotExpandableError:
        return False
    return not isinstance(module, nn.Flatten) or (module.start_dim, module.end_dim) == (1, -1)


# ---------------------------------------------------------------- polynomial arithmetic


def _broadcast_shapes(*shapes) -> tuple[int, ...]:
    """torch.broadcast_shapes without its first-call import of sympy (seconds)."""
    rank = max(len(s) for s in shapes)
    out = [1] * rank
    for shape in shapes:
        for i, size in enumerate(shape, rank - len(shape)):
            if size != 1:
                if out[i] not in (1, size):
                    raise ValueError(f"shapes {shapes} do not broadcast")
                out[i] = size
    return tuple(out)


def _n_monomials(n: int, degree: int) -> int:
    return math.comb(n + degree, degree)


def _align(a: PolyTensor, b: PolyTensor) -> tuple[Tensor, Tensor]:
    """Coefficients of a and b with equal rank (value axes right-aligned, as torch broadcasts)."""
    ca, cb = a.coefficients, b.coefficients
    diff = ca.dim() - cb.dim()
    if diff > 0:
        cb = cb.reshape(cb.shape[0], *([1] * diff), *cb.shape[1:])
    elif diff < 0:
        ca = ca.reshape(ca.shape[0], *([1] * -diff), *ca.shape[1:])
    return ca, cb


_PRODUCT_MAPS: dict[tuple, Tensor] = {}


def _product_map(n: int, a: int, b: int, device) -> Tensor:
    key = (n, a, b, str(device))
    if key not in _PRODUCT_MAPS:
        pmap = MonomialIndex(n, a + b).product_map(a, b)
        if len(_PRODUCT_MAPS) > 32:
            _PRODUCT_MAPS.clear()
        _PRODUCT_MAPS[key] = torch.from_numpy(pmap.copy()).to(device).reshape(-1)
    return _PRODUCT_MAPS[key]


#: Elements of scratch per chunk of an outer product (float64: 256 MiB).
CHUNK_ELEMENTS = 1 << 25


def multiply(a: PolyTensor, b: PolyTensor) -> PolyTensor:
    """Entrywise product (broadcasting like torch): degrees add."""
    degree = a.degree + b.degree
    ca, cb = _align(a, b)
    if a.symbolic:
        return a.with_coefficients(ca * cb, degree)
    shape = _broadcast_shapes(ca.shape[1:], cb.shape[1:])
    n = a.n_vars
    q = truncation()
    if q is not None and degree > q:  # degree= : only the pairs that land at degree <= q
        return a.with_coefficients(truncated_product(ca, cb, n, a.degree, b.degree, q, shape), q)
    out = ca.new_zeros((_n_monomials(n, degree), *shape))
    pmap = _product_map(n, a.degree, b.degree, ca.device).reshape(ca.shape[0], cb.shape[0])
    per_row = cb.shape[0] * max(1, math.prod(shape))
    step = max(1, CHUNK_ELEMENTS // per_row)
    for s in range(0, ca.shape[0], step):
        outer = ca[s : s + step, None] * cb[None]
        out.index_add_(0, pmap[s : s + step].reshape(-1), outer.reshape(-1, *shape))
    return a.with_coefficients(out, degree)


def add(a: PolyTensor, b: PolyTensor, sign: float = 1.0) -> PolyTensor:
    """a + sign·b: the degree is the larger one."""
    degree = max(a.degree, b.degree)
    pa, pb = a.padded(degree), b.padded(degree)
    diff = pa.dim() - pb.dim()
    if diff > 0:
        pb = pb.reshape(pb.shape[0], *([1] * diff), *pb.shape[1:])
    elif diff < 0:
        pa = pa.reshape(pa.shape[0], *([1] * -diff), *pa.shape[1:])
    return a.with_coefficients(pa + sign * pb if sign != 1.0 else pa + pb, degree)


def add_constant(a: PolyTensor, c: Tensor | float) -> PolyTensor:
    """a + c for a constant c (it joins the constant monomial)."""
    c = torch.as_tensor(c, dtype=a.coefficients.dtype, device=a.coefficients.device)
    if c.dim() > len(a.value_shape):  # c has a batch axis: it must be 1
        if c.shape[0] != 1:
            raise ValueError("constant with a batch axis")
        c = c[0]
    shape = _broadcast_shapes(a.value_shape, c.shape)
    coefficients = a.coefficients.expand(a.coefficients.shape[0], *shape).clone()
    coefficients[0] += c
    return a.with_coefficients(coefficients)


def power(a: PolyTensor, k: int) -> PolyTensor:
    """a ** k for an integer k ≥ 0, by repeated squaring."""
    if k == 0:
        return constant_like(a, torch.ones(a.value_shape, dtype=a.coefficients.dtype))
    result, base = None, a
    while k:
        if k & 1:
            result = base if result is None else multiply(result, base)
        k >>= 1
        if k:
            base = multiply(base, base)
    return result


def constant_like(a: PolyTensor, c: Tensor) -> PolyTensor:
    """The constant c as a degree-0 polynomial tensor."""
    c = c.to(dtype=a.coefficients.dtype, device=a.coefficients.device)
    return a.with_coefficients(c[None].clone(), 0)


def unit_polynomial(a: PolyTensor, alpha: Tensor) -> PolyTensor:
    """Σ_i alpha[c, i] a^i per channel c (axis 1 of the value, as SLAF): degree k·d."""
    k = alpha.shape[1] - 1
    channel_shape = [1] * (len(a.value_shape) + 1)
    channel_shape[1] = alpha.shape[0]
    alpha = alpha.to(a.coefficients)

    def coef(i: int) -> Tensor:
        return alpha[:, i].reshape(channel_shape)

    out = add_constant(scale(a, coef(1)), alpha[:, 0].reshape(channel_shape[1:])) if k else None
    p = a
    for i in range(2, k + 1):
        p = multiply(p, a)
        out = add(out, scale(p, coef(i)))
    if out is None:  # degree 0: constant
        return constant_like(a, alpha[:, 0].reshape(channel_shape[1:]).expand(a.value_shape))
    return out


def unit_polynomial_linear(p: Tensor, d: int, n: int, alpha: Tensor, linear: nn.Linear) -> Tensor:
    """W·(Σ_i α_i ∘ z^i) + b for units z (coefficients p: (T(d), m)) without the unit powers.

    Each power i ≥ 2 of unit j is z^⌈i/2⌉ z^⌊i/2⌋; summed over units with weights
    W[o, j] α[j, i] it is a Gram matrix (T_a × T_b) per output o, folded into monomials:
    a GEMM over the units instead of a product per unit (the chain path's fused last stage).
    """
    alpha = alpha.to(p)
    k = alpha.shape[1] - 1
    w = linear.weight.detach().to(p)  # (o, m)
    t = lambda degree: _n_monomials(n, degree)  # noqa: E731
    out = p.new_zeros((t(capped(k * d)), w.shape[0]))
    out[0] += w @ alpha[:, 0]
    if linear.bias is not None:
        out[0] += linear.bias.detach().to(p)
    out[: p.shape[0]] += p @ (w * alpha[:, 1]).T
    powers = {1: p}
    for j in range(2, (k + 1) // 2 + 1):
        prev = PolyTensor(powers[j - 1], capped((j - 1) * d), n)
        powers[j] = multiply(prev, PolyTensor(p, d, n)).coefficients
    q = truncation()
    for i in range(2, k + 1):
        a, b = (i + 1) // 2, i // 2
        pa, pb = powers[a], powers[b]
        if q is not None and i * d > q:  # degree= : the Gram's pairs of degree <= q only
            da, db = capped(a * d), capped(b * d)
            truncated_gram_into(out, pa, pb, w * alpha[:, i], n, da, db, q)
            continue
        pmap = _product_map(n, a * d, b * d, p.device)
        for o in range(w.shape[0]):
            gram = (pa * (w[o] * alpha[:, i])) @ pb.T  # (T_a, T_b)
            out[:, o].index_add_(0, pmap, gram.reshape(-1))
    return out


def scale(a: PolyTensor, c: Tensor | float) -> PolyTensor:
    """a · c for a constant c (broadcast over the value axes)."""
    if torch.is_tensor(c):
        c = c.to(a.coefficients)
        if c.dim() > len(a.value_shape) and c.shape[0] != 1:
            raise ValueError("constant with a batch axis")
    return a.with_coefficients(a.coefficients * c)


def expand_graph(
    model: nn.Module,
    input_shape: tuple[int, ...] | Any,
    device: torch.device | str | None = None,
    symbolic: bool = False,
    entry: tuple[list[int], Any] | None = None,
    on_node: Any = None,
    probe: int = 0,
    truncate: int | None = None,
    center: Tensor | None = None,
) -> GraphExpansion:
    """Run ``model``'s traced forward on polynomial tensors of its flattened inputs.

    ``input_shape`` is one sample's shape, or an :class:`~polynet.expansion.inputs.Inputs` for a
    forward() taking several tensors (variables: all their entries, in argument order).

    Returns the output as a :class:`PolyTensor` (coefficients (T(D), *output_shape)) and
    each node's degree; ``symbolic`` propagates only shapes and degrees. ``entry`` =
    (inputs, values of all inputs) expands in ``inputs`` only, the others held at ``values``;
    ``on_node(1)`` is called after each node of the degree table (a progress bar's update).
    ``truncate`` = q keeps only the monomials of degree ≤ q after every product (the exact
    degree ≤ q part, :mod:`polynet.expansion.graph_truncation`); ``center`` (one value per
    variable) expands in u = x - center instead of x.
    """
    tensors = [*model.parameters(), *model.buffers()]
    home = tensors[0].device if tensors else torch.device("cpu")
    device = home if device is None else torch.device(device)
    if device != home:  # a copy on the device asked for; the caller's model stays put
        import copy

        model = copy.deepcopy(model).to(device)
    from polynet.expansion.inputs import Inputs

    shapes = input_shape.shapes if isinstance(input_shape, Inputs) else (tuple(input_shape),)
    n = sum(math.prod(s) for s in shapes)
    if entry is not None:  # a slice: inputs[i] is variable i, the others are fixed values
        inputs, values = entry
        start = torch.zeros(len(inputs) + 1, n, dtype=torch.float64, device=device)
        start[0] = torch.as_tensor(values, dtype=torch.float64, device=device)
        start[torch.arange(1, len(inputs) + 1), torch.as_tensor(inputs)] = 1.0
        n = len(inputs)
    else:
        start = torch.zeros(n + 1, n, dtype=torch.float64, device=device)
        start[1:] = torch.eye(n, dtype=torch.float64, device=device)
    if center is not None:  # x = center + u: the constant row takes the point
        start[0] += torch.as_tensor(center, dtype=torch.float64, device=device) @ start[1:]
    start = start[:1] * 0 if symbolic else start
    first = 1
    if truncate == 0 and not symbolic:  # degree=0: the inputs' constant parts only
        start, first = start[:1], 0
    # Each input's polynomials: its block of columns (the variables are concatenated).
    blocks = start.split([math.prod(s) for s in shapes], dim=1)
    starts = [
        PolyTensor(b.reshape(b.shape[0], *s), first, n, symbolic) for b, s in zip(blocks, shapes)
    ]
    from polynet.expansion.trace import run_traced

    with truncated_at(None if symbolic else truncate):
        results, rows, ops = run_traced(
            model,
            shapes,
            starts,
            symbolic,
            device,
            on_node,
            probe,
        )
    if len(results) == 1:
        out = results[0][1].poly
    else:  # several outputs: one polynomial per entry of each, in order
        degree = max(v.poly.degree for _, v in results)
        parts = [v.poly.padded(degree) for _, v in results]
        flat = torch.cat([p.reshape(p.shape[0], -1) for p in parts], dim=1)
        out = PolyTensor(flat, degree, n, symbolic)
    names = tuple((name, math.prod(v.poly.value_shape)) for name, v in results)
    shape = shapes if isinstance(input_shape, Inputs) else shapes[0]
    return GraphExpansion(out, tuple(rows), shape, names, ops)


def chain_of(model: nn.Module) -> nn.Sequential | None:
    """The model as an ``nn.Sequential`` when its forward() only chains table layers, else None.

    torch.fx's symbolic trace (no stack traces: cheap) tells; a forward() it cannot trace
    (shape checks, loops over buffers) is not a plain chain.
    """
    try:
        graph = torch.fx.Tracer()
        graph.is_leaf_module = lambda m, name: (
            isinstance(m, SLAF) or torch.fx.Tracer.is_leaf_module(graph, m, name)
        )
        gm = torch.fx.GraphModule(model, graph.trace(model))
    except Exception:  # noqa: BLE001 - anything fx cannot trace goes the traced-on-real-shapes way
        return None
    return as_chain(gm)
