"""Any polynomial ``forward()``: a model traced by torch.fx and run on tensors of polynomials.

Every value the model computes from its input becomes a :class:`PolyTensor`: a dense
coefficient array of shape (T(d), *value_shape) over the graded monomials of degree ≤ d in
the model's flattened inputs (a prefix of :class:`MonomialIndex`). The coefficient axis sits
where the batch axis does, so the model's own reshapes, permutes, indexing, reductions,
convolutions and pooling apply to it unchanged; products of two polynomial tensors fold the
outer product of their coefficients into monomials (degrees add). Values that do not depend
on the input (parameters, buffers, sizes) are computed as the model computes them.

Each op is looked up in :mod:`polynet.poly.rules`; one that is not a polynomial map is
refused naming the op, its module and the line of the user's ``forward()``.
"""

from __future__ import annotations

import math
import operator
import re
from dataclasses import dataclass
from typing import Any

import torch
import torch.fx
from torch import Tensor, nn

from polynet.errors import NotExpandableError
from polynet.poly.index import MonomialIndex
from polynet.poly.rules import FUNCTION_RULES, METHOD_RULES, Rule, check_module
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

    @property
    def degree_bound(self) -> int:
        return self.output.degree


class _Tracer(torch.fx.Tracer):
    """torch.fx's tracer, keeping polynet's SLAF (and every module in the table) whole."""

    def __init__(self) -> None:
        super().__init__()
        self.record_stack_traces = True

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return isinstance(m, SLAF) or super().is_leaf_module(m, module_qualified_name)


def _user_frame(tb) -> str:
    """file:line of the innermost traceback frame outside torch and polynet."""
    where = ""
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        if "/torch/" not in filename and "/polynet/poly/" not in filename:
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


_FRAME = re.compile(r'File "([^"]+)", line (\d+), in (\w+)')


def _location(node: torch.fx.Node) -> str:
    """file:line (function) of the user's code that made ``node``."""
    stack = node.stack_trace or ""
    # Skip torch's frames and the forward() that polynet.onnx generates: the ONNX node's
    # name in the error is what locates it there.
    frames = [
        m
        for m in _FRAME.finditer(stack)
        if "/torch/" not in m.group(1) and not m.group(1).endswith("/polynet/onnx.py")
    ]
    if not frames:
        return ""
    m = frames[-1]
    return f"{m.group(1)}:{m.group(2)} (in {m.group(3)})"


def _module_path(node: torch.fx.Node) -> str:
    if node.op == "call_module":
        return str(node.target)
    stack = node.meta.get("nn_module_stack") or {}
    if stack:
        path = list(stack.values())[-1]
        return path[0] if isinstance(path, tuple) else str(path)
    return ""


def _refusal(node: torch.fx.Node, what: str, why: str) -> NotExpandableError:
    path = _module_path(node)
    where = _location(node)
    return NotExpandableError(
        f"cannot expand {what}"
        + (f" in {path}" if path else "")
        + (f" at {where}" if where else "")
        + f": {why}"
    )


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
    out = p.new_zeros((t(k * d), w.shape[0]))
    out[0] += w @ alpha[:, 0]
    if linear.bias is not None:
        out[0] += linear.bias.detach().to(p)
    out[: p.shape[0]] += p @ (w * alpha[:, 1]).T
    powers = {1: p}
    for j in range(2, (k + 1) // 2 + 1):
        prev = PolyTensor(powers[j - 1], (j - 1) * d, n)
        powers[j] = multiply(prev, PolyTensor(p, d, n)).coefficients
    for i in range(2, k + 1):
        a, b = (i + 1) // 2, i // 2
        pa, pb = powers[a], powers[b]
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


# ---------------------------------------------------------------- the interpreter


def _polys(values) -> list[PolyTensor]:
    found: list[PolyTensor] = []
    torch.fx.node.map_aggregate(
        values, lambda v: found.append(v) if isinstance(v, PolyTensor) else None
    )
    return found


def _coefficients(values):
    return torch.fx.node.map_aggregate(
        values, lambda v: v.coefficients if isinstance(v, PolyTensor) else v
    )


def _f64(value):
    return torch.fx.node.map_aggregate(
        value,
        lambda v: v.to(torch.float64) if torch.is_tensor(v) and v.is_floating_point() else v,
    )


class _Interpreter:
    def __init__(self, gm: torch.fx.GraphModule, n_vars: int, symbolic: bool, device) -> None:
        self.gm = gm
        self.modules = dict(gm.named_modules())
        self.n_vars = n_vars
        self.symbolic = symbolic
        self.device = device
        self.rows: list[NodeDegree] = []

    def run(self, x: PolyTensor) -> Any:
        env: dict[torch.fx.Node, Any] = {}
        placeholders = 0
        for node in self.gm.graph.nodes:
            args = torch.fx.node.map_arg(node.args, lambda n: env[n])
            kwargs = torch.fx.node.map_arg(node.kwargs, lambda n: env[n])
            if node.op == "placeholder":
                if placeholders == 0:
                    env[node] = x
                elif node.args:  # a default value
                    env[node] = node.args[0]
                else:
                    raise _refusal(
                        node,
                        f"input {node.target!r}",
                        "the model takes more than one input; wrap it so forward() takes one "
                        "tensor (concatenate the inputs).",
                    )
                placeholders += 1
            elif node.op == "get_attr":
                value = self.gm
                for part in str(node.target).split("."):
                    value = getattr(value, part)
                env[node] = _f64(value.detach() if torch.is_tensor(value) else value)
            elif node.op == "output":
                return args[0]
            elif node in env:  # computed together with the node before it
                self._record(node, env[node])
            else:
                fused = self._fusable(node, args)
                if fused is not None:
                    slaf, linear, user = fused
                    (x,) = args
                    env[node] = None  # never read: its only user is the Linear
                    env[user] = x.with_coefficients(
                        unit_polynomial_linear(
                            x.coefficients, x.degree, x.n_vars, slaf.polynomial(), linear
                        ),
                        x.degree * slaf.degree,
                    )
                    self.rows.append(
                        NodeDegree(
                            str(node.target),
                            "SLAF",
                            sum(p.numel() for p in slaf.parameters()),
                            x.degree * slaf.degree,
                            _location(node),
                            math.prod(x.value_shape),
                        )
                    )
                    continue
                env[node] = self.step(node, args, kwargs)
                self._record(node, env[node])
        raise NotExpandableError("the traced graph has no output.")

    def _fusable(self, node, args):
        """(SLAF, Linear, Linear's node) when an SLAF on vectors feeds only a narrower Linear."""
        if self.symbolic or node.op != "call_module" or len(node.users) != 1:
            return None
        slaf = self.modules[node.target]
        if not isinstance(slaf, SLAF) or len(args) != 1 or not isinstance(args[0], PolyTensor):
            return None
        (user,) = node.users
        if user.op != "call_module" or user.args != (node,) or user.kwargs:
            return None
        linear = self.modules[user.target]
        x = args[0]
        if not isinstance(linear, nn.Linear) or len(x.value_shape) != 1 or slaf.degree < 2:
            return None
        check_module(str(node.target), slaf)
        check_module(str(user.target), linear)
        # The fold pays off when the outputs are fewer than the units (Gram per output).
        if linear.out_features >= x.value_shape[0]:
            return None
        return slaf, linear, user

    def _record(self, node, value) -> None:
        polys = _polys(value)
        if not polys:
            return
        params = 0
        if node.op == "call_module":
            params = sum(p.numel() for p in self.modules[node.target].parameters())
        self.rows.append(
            NodeDegree(
                str(node.target) if node.op == "call_module" else node.name,
                _op_name(node, self.modules),
                params,
                max(p.degree for p in polys),
                _location(node),
                sum(math.prod(p.value_shape) for p in polys),
            )
        )

    def step(self, node, args, kwargs):
        polys = _polys((args, kwargs))
        if node.op == "call_module":
            module = self.modules[node.target]
            try:
                rule = check_module(str(node.target), module)
            except NotExpandableError as exc:
                head = f"cannot expand {node.target} ({type(module).__name__})"
                where = _location(node)
                message = str(exc).replace(head, f"{head} at {where}", 1) if where else str(exc)
                raise NotExpandableError(message) from None
            if not polys:
                return module(*_f64(args), **kwargs)
            return self._module(node, module, rule, args, kwargs)
        if node.op == "call_function":
            rule = FUNCTION_RULES.get(node.target)
            name = getattr(node.target, "__name__", str(node.target))
        else:
            rule = METHOD_RULES.get(node.target)
            name = f".{node.target}()"
        if not polys:  # constants only: compute as the model does
            if node.op == "call_function":
                return node.target(*args, **kwargs)
            obj, *rest = args
            return getattr(obj, node.target)(*rest, **kwargs)
        if rule is None:
            raise _refusal(
                node,
                name,
                f"{name} is not in polynet's table of polynomial ops "
                "(polynet.poly.rules); rewrite it with supported ops or expand the "
                "polynomial part alone.",
            )
        if not rule.polynomial:
            why, _, fix = rule.hint.partition("; ")
            raise _refusal(node, rule.name, f"{why}; {fix}.")
        try:
            return self._op(node, rule, args, kwargs)
        except NotExpandableError:
            raise
        except (RuntimeError, ValueError, TypeError, IndexError) as exc:
            raise _refusal(
                node,
                rule.name,
                f"it could not be applied to polynomial tensors ({type(exc).__name__}: {exc}); "
                "a value that depends on the input may be used as a constant (for example a "
                "shape taken as the batch size).",
            ) from exc

    # ---- modules

    def _module(self, node, module: nn.Module, rule: Rule, args, kwargs):
        (x,) = _polys(args)
        if rule.kind == "identity":
            return x
        if isinstance(module, SLAF):
            if self.symbolic:
                return x.with_coefficients(x.coefficients, x.degree * module.degree)
            return unit_polynomial(x, module.polynomial().to(x.coefficients.device))
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            s = 1.0 / torch.sqrt(module.running_var.double() + module.eps)
            shift = -module.running_mean.double() * s
            if module.affine:
                s = s * module.weight.double()
                shift = shift * module.weight.double() + module.bias.double()
            view = [-1] + [1] * (len(x.value_shape) - 1)
            return add_constant(scale(x, s.reshape(view)), shift.reshape(view))
        if isinstance(module, (nn.Linear, nn.Conv1d, nn.Conv2d)):
            bias = module.bias
            probe = _without_bias(module)
            out = x.with_coefficients(probe(x.coefficients))
            if bias is None:
                return out
            view = [-1] + [1] * (len(out.value_shape) - 1)
            return add_constant(out, bias.detach().double().reshape(view))
        # linear modules without a constant term (pooling, Flatten)
        return x.with_coefficients(module.double()(x.coefficients))

    # ---- functions and methods

    def _op(self, node, rule: Rule, args, kwargs):
        target = node.target
        kind = rule.kind
        if kind == "identity":
            if target is getattr:
                return getattr(args[0].coefficients, args[1])
            if target in ("size", "dim"):
                return getattr(args[0].coefficients, target)(*args[1:], **kwargs)
            return _polys(args)[0]
        if kind == "sum":
            return self._sum(target, args, kwargs)
        if kind == "product":
            a, b = args[0], args[1]
            if isinstance(a, PolyTensor) and isinstance(b, PolyTensor):
                return multiply(a, b)
            p, c = (a, b) if isinstance(a, PolyTensor) else (b, a)
            return scale(p, _f64(c))
        if kind == "power":
            return self._power(node, target, args, kwargs)
        if kind == "affine":
            return self._affine(node, target, args, kwargs)
        if kind == "linear":
            return self._linear(node, target, args, kwargs)
        raise _refusal(node, rule.name, "not handled")

    def _sum(self, target, args, kwargs):
        a, b = args[0], args[1]
        alpha = kwargs.get("alpha", args[2] if len(args) > 2 else 1)
        sub = target in (operator.sub, operator.isub, torch.sub, "sub")
        sign = -alpha if sub else alpha
        if isinstance(a, PolyTensor) and isinstance(b, PolyTensor):
            return add(a, b, float(sign))
        if isinstance(a, PolyTensor):
            return add_constant(a, _f64(b) * sign)
        # constant ± alpha·poly
        return add_constant(scale(b, float(sign)), _f64(a))

    def _power(self, node, target, args, kwargs):
        if target in (torch.square, "square"):
            base, exponent = args[0], 2
        else:
            base, exponent = args[0], args[1] if len(args) > 1 else kwargs.get("exponent")
        if not isinstance(base, PolyTensor):
            raise _refusal(node, "a power", "the exponent depends on the input (not a polynomial).")
        if torch.is_tensor(exponent) and exponent.numel() == 1:
            exponent = exponent.item()
        if isinstance(exponent, float) and exponent.is_integer():
            exponent = int(exponent)
        if not isinstance(exponent, int) or isinstance(exponent, bool) or exponent < 0:
            raise _refusal(
                node,
                f"x ** {exponent!r}",
                "only non-negative integer powers are polynomials; use x ** k with an int k.",
            )
        if self.symbolic:
            return base.with_coefficients(base.coefficients, base.degree * exponent)
        return power(base, exponent)

    def _affine(self, node, target, args, kwargs):
        name = FUNCTION_RULES.get(target, METHOD_RULES.get(target, Rule(str(target), "affine")))
        if target in (operator.truediv, torch.div, "div"):
            a, b = args[0], args[1]
            if isinstance(b, PolyTensor):
                raise _refusal(
                    node,
                    name.name,
                    "division by a value that depends on the input is not a polynomial; "
                    "divide by constants only.",
                )
            if kwargs.get("rounding_mode"):
                raise _refusal(node, name.name, "rounded division is not a polynomial.")
            return a.with_coefficients(a.coefficients / _f64(b))
        if target is torch.einsum:
            equation, *operands = args
            if len(operands) == 1 and isinstance(operands[0], (list, tuple)):
                operands = list(operands[0])
            polys = [i for i, o in enumerate(operands) if isinstance(o, PolyTensor)]
            if len(polys) != 1:
                raise _refusal(
                    node,
                    "torch.einsum",
                    "only einsum with one input-dependent operand is supported; multiply "
                    "polynomial tensors with * instead.",
                )
            # The coefficient axis is where the batch axis is: the equation applies as it is.
            p = operands[polys[0]]
            ops = [o.coefficients if isinstance(o, PolyTensor) else _f64(o) for o in operands]
            out = torch.einsum(equation, *ops)
            return p.with_coefficients(out)
        if target in (operator.matmul, torch.matmul, torch.mm, "matmul"):
            a, b = args[0], args[1]
            if isinstance(b, PolyTensor):
                raise _refusal(
                    node,
                    "@",
                    "only products with a constant right operand (x @ W) are supported; "
                    "use torch.einsum with the constant operand explicit.",
                )
            return a.with_coefficients(torch.matmul(a.coefficients, _f64(b)))
        if target is torch.nn.functional.linear:
            x, weight = args[0], args[1]
            bias = args[2] if len(args) > 2 else kwargs.get("bias")
            out = x.with_coefficients(torch.nn.functional.linear(x.coefficients, _f64(weight)))
            return out if bias is None else add_constant(out, _f64(bias))
        if target in (torch.nn.functional.conv1d, torch.nn.functional.conv2d):
            x, weight, *rest = args
            bias = rest[0] if rest else kwargs.pop("bias", None)
            kwargs = {k: v for k, v in kwargs.items() if k != "bias"}
            out = x.with_coefficients(
                target(x.coefficients, _f64(weight), None, *rest[1:], **kwargs)
            )
            if bias is None:
                return out
            view = [-1] + [1] * (len(out.value_shape) - 1)
            return add_constant(out, _f64(bias).reshape(view))
        raise _refusal(node, name.name, "not handled.")

    def _linear(self, node, target, args, kwargs):
        polys = _polys((args, kwargs))
        if target in (torch.cat, torch.concat, torch.stack):
            seq = args[0]
            if not all(isinstance(v, PolyTensor) for v in seq):
                seq = [
                    v if isinstance(v, PolyTensor) else constant_like(polys[0], _f64(v)[0])
                    for v in seq
                ]
            degree = max(v.degree for v in seq)
            dim = kwargs.get("dim", args[1] if len(args) > 1 else 0)
            out = target([v.padded(degree) for v in seq], dim)
            return polys[0].with_coefficients(out, degree)
        if target is operator.getitem and isinstance(args[0], (tuple, list)):
            return args[0][args[1]]  # a part of chunk()/split()/unbind()
        if len(polys) != 1:
            raise _refusal(node, _op_name(node), "expects one input-dependent operand here.")
        (p,) = polys
        if node.op == "call_method" and target in ("view", "reshape") and len(args) > 1:
            sizes = list(args[1:])
            if len(sizes) == 1 and isinstance(sizes[0], (tuple, list, torch.Size)):
                sizes = list(sizes[0])
            if sizes and isinstance(sizes[0], int) and sizes[0] != -1:
                sizes[0] = p.coefficients.shape[0]  # the batch axis is the coefficient axis
            return p.with_coefficients(getattr(p.coefficients, target)(*sizes))
        if node.op == "call_method" and target in ("chunk", "split", "unbind"):
            parts = getattr(p.coefficients, target)(*args[1:], **kwargs)
            return tuple(p.with_coefficients(c) for c in parts)
        if node.op == "call_method" and target in ("double", "float", "to"):
            return p
        if node.op == "call_method":
            return p.with_coefficients(getattr(p.coefficients, target)(*args[1:], **kwargs))
        result = target(*_coefficients(args), **_coefficients(kwargs))
        if isinstance(result, (tuple, list)):
            return type(result)(p.with_coefficients(r) for r in result)
        return p.with_coefficients(result)


def _without_bias(module: nn.Module) -> nn.Module:
    """A float64 copy of a Linear/Conv with no bias (the bias joins the constant term)."""
    import copy

    probe = copy.copy(module)
    probe._parameters = dict(module._parameters)
    probe._parameters["weight"] = nn.Parameter(module.weight.detach().double(), False)
    probe._parameters["bias"] = None
    return probe


def _op_name(node: torch.fx.Node, modules: dict | None = None) -> str:
    if node.op == "call_module":
        if modules is not None:
            return type(modules[node.target]).__name__
        return str(node.target)
    if node.op == "call_method":
        return f".{node.target}()"
    rule = FUNCTION_RULES.get(node.target)
    return rule.name if rule else getattr(node.target, "__name__", str(node.target))


def expand_graph(
    model: nn.Module,
    input_shape: tuple[int, ...],
    device: torch.device | str | None = None,
    symbolic: bool = False,
    entry: tuple[list[int], Any] | None = None,
) -> GraphExpansion:
    """Run ``model``'s traced forward on polynomial tensors of its flattened inputs.

    Returns the output as a :class:`PolyTensor` (coefficients (T(D), *output_shape)) and
    each node's degree; ``symbolic`` propagates only shapes and degrees. ``entry`` =
    (inputs, values of all inputs) expands in ``inputs`` only, the others held at ``values``.
    """
    tensors = [*model.parameters(), *model.buffers()]
    home = tensors[0].device if tensors else torch.device("cpu")
    device = home if device is None else torch.device(device)
    if device != home:  # a copy on the device asked for; the caller's model stays put
        import copy

        model = copy.deepcopy(model).to(device)
    n = math.prod(input_shape)
    if entry is not None:  # a slice: inputs[i] is variable i, the others are fixed values
        inputs, values = entry
        start = torch.zeros(len(inputs) + 1, n, dtype=torch.float64, device=device)
        start[0] = torch.as_tensor(values, dtype=torch.float64, device=device)
        start[torch.arange(1, len(inputs) + 1), torch.as_tensor(inputs)] = 1.0
        n = len(inputs)
    else:
        start = torch.zeros(n + 1, n, dtype=torch.float64, device=device)
        start[1:] = torch.eye(n, dtype=torch.float64, device=device)
    start = start[:1] * 0 if symbolic else start
    start = start.reshape(start.shape[0], *input_shape)
    from polynet.poly.trace import run_traced

    results, rows = run_traced(
        model, tuple(input_shape), PolyTensor(start, 1, n, symbolic), symbolic, device
    )
    if len(results) == 1:
        out = results[0][1].poly
    else:  # several outputs: one polynomial per entry of each, in order
        degree = max(v.poly.degree for _, v in results)
        parts = [v.poly.padded(degree) for _, v in results]
        flat = torch.cat([p.reshape(p.shape[0], -1) for p in parts], dim=1)
        out = PolyTensor(flat, degree, n, symbolic)
    names = tuple((name, math.prod(v.poly.value_shape)) for name, v in results)
    return GraphExpansion(out, tuple(rows), tuple(input_shape), names)


def chain_of(model: nn.Module) -> nn.Sequential | None:
    """The model as an ``nn.Sequential`` when its forward() only chains table layers, else None.

    torch.fx's symbolic trace (no stack traces: cheap) tells; a forward() it cannot trace
    (shape checks, loops over buffers) is not a plain chain.
    """
    try:
        graph = torch.fx.Tracer()
        graph.is_leaf_module = lambda m, name: isinstance(m, SLAF) or torch.fx.Tracer.is_leaf_module(
            graph, m, name
        )
        gm = torch.fx.GraphModule(model, graph.trace(model))
    except Exception:  # noqa: BLE001 - anything fx cannot trace goes the traced-on-real-shapes way
        return None
    return as_chain(gm)
