"""Tracing on real shapes: the model runs on an example batch while each ATen op is replayed
on polynomial tensors.

The model's own ``forward()`` runs once, eagerly, on a random example batch of
:data:`EXAMPLE_BATCH` samples, under a :class:`~torch.utils._python_dispatch.TorchDispatchMode`.
Shape checks, asserts, ``len(x.shape)``, ``x.device.type``, loops over constant buffers and
item assignment into constants are therefore plain Python on real tensors. Every ATen op that
reads a tensor computed from the input is looked up in :data:`polynet.expansion.rules.ATEN_RULES`
and replayed on its :class:`~polynet.expansion.graph.PolyTensor`: the coefficient axis takes the
place of the batch axis ("lifting"), so the op's own kernel does the work; the bias of an
affine op is removed from the non-constant rows by one extra call on a zero batch.

The batch axis of every value is tracked (its position, and the factor it is merged with
after a reshape such as einsum's ``(B, C) -> (B*C)``). An op that reduces, indexes, sorts or
concatenates along it, or a constant that differs along it, makes the value non-polynomial.
Non-polynomial values are not refused at once: they are marked with the first reason (op,
module, user's file:line); only a marked value that reaches the output, or any value that
depends on the input and reaches ``bool()``/``.item()``/``nonzero`` (control flow on input
values), stops the expansion. Dead non-polynomial code does not.

In-place ops and writes through views are functionalised here: each view op records its
parent, a write into a view is scattered into the root tensor's polynomial (positions found by
replaying the view chain on an index tensor), and a view read after its base changed is
recomputed from the base (torch's version counters tell).

Why a dispatch mode and not ``make_fx``/``torch.export``: see docs/tracing.md (both import
torch._dynamo on first use, seconds in a fresh process; the mode costs milliseconds).
"""

from __future__ import annotations

import linecache
import math
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils._python_dispatch import TorchDispatchMode, _disable_current_modes
from torch.utils._pytree import tree_flatten

from polynet.errors import NotExpandableError
from polynet.expansion.graph import (
    NodeDegree,
    PolyTensor,
    add,
    multiply,
    power,
    unit_polynomial,
    unit_polynomial_linear,
)
from polynet.expansion.graph_truncation import capped, truncated_pairs, truncation
from polynet.expansion.rules import ATEN_RULES, MODULE_RULES, AtenRule, check_module
from polynet.polynomial.index import MonomialIndex
from polynet.slaf import SLAF

__all__ = ["EXAMPLE_BATCH", "Tracked", "run_traced"]

#: Bilinear ops whose first argument is an added input: ``beta * input + alpha * (a @ b)``.
_BIAS_FIRST = frozenset({"addmm", "baddbmm", "addbmm", "addmv", "addr"})

#: Samples in the example batch. Prime and > 1, so the batch axis is told apart from the
#: other axes by its size and a merged axis (B·f) by divisibility.
EXAMPLE_BATCH = 7

_aten = torch.ops.aten


@dataclass
class Tracked:
    """A value computed from the input: its polynomials and where its batch axis is.

    ``poly.coefficients`` has shape (T, *value_shape): the real shape with the batch axis
    removed, or replaced by ``factor`` when the batch was merged with the axes after it.
    """

    _poly: PolyTensor | None
    axis: int
    factor: int = 1
    version: int = -1
    #: Computes the polynomials on first use (an SLAF whose only reader may fold it).
    pending: Callable[[], PolyTensor] | None = None
    #: Its node in the recorded program (:mod:`polynet.expansion.ir`), when one is recorded.
    node: int | None = None

    @property
    def poly(self) -> PolyTensor:
        if self._poly is None:
            self._poly, self.pending = self.pending(), None
        return self._poly

    @poly.setter
    def poly(self, value: PolyTensor) -> None:
        self._poly = value

    @property
    def degree(self) -> int:
        return self._poly.degree if self._poly is not None else self.lazy_degree

    @property
    def poly_shape(self) -> tuple[int, ...]:
        return self._poly.value_shape if self._poly is not None else self.lazy_shape

    def rank(self) -> int:
        return len(self.poly_shape) + (1 if self.factor == 1 else 0)

    def offset(self) -> int:
        """Axes to the right of the batch axis (equal for values that broadcast together)."""
        return self.rank() - 1 - self.axis


@dataclass
class _Poison:
    """A value that depends on the input but is not a polynomial of it (first reason kept)."""

    message: str
    seq: int


@dataclass
class _View:
    parent: Tensor
    func: Any
    args: tuple
    kwargs: dict
    index: int | None  # which output of a multi-output view op (split, unbind)


@dataclass
class _Refusal(Exception):
    message: str


_USER_SKIP = (
    "/torch/",
    "/polynet/expansion/",
    "/polynet/poly/",
    "/polynet/onnx.py",
    "<eval_with_key",
)


def _user_location() -> tuple[str, str]:
    """(file:line (in function), source line) of the innermost frame of the user's code."""
    frame = sys._getframe(1)
    while frame is not None:
        name = frame.f_code.co_filename
        if not any(s in name for s in _USER_SKIP) and "/contextlib.py" not in name:
            line = frame.f_lineno
            text = linecache.getline(name, line).strip()
            return f"{name}:{line} (in {frame.f_code.co_name})", text
        frame = frame.f_back
    return "", ""


def _functional_name() -> str:
    """F.<name> when the op was called from torch.nn.functional."""
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_code.co_filename.endswith("torch/nn/functional.py"):
            return f"F.{frame.f_code.co_name}"
        if not any(s in frame.f_code.co_filename for s in ("/torch/", "/polynet/expansion/")):
            return ""
        frame = frame.f_back
    return ""


def _as_user_wrote(op: str, source: str) -> str:
    """The op's name as the user's line spells it (``.max()``, ``torch.max``, ``F.silu``)."""
    m = re.search(rf"(torch\.nn\.functional\.|torch\.|F\.|\.)({re.escape(op)})\s*\(", source)
    if m is None:
        return op
    prefix = {"torch.nn.functional.": "F."}.get(m.group(1), m.group(1))
    return f".{op}()" if prefix == "." else f"{prefix}{op}"


def _tensors(tree) -> list[Tensor]:
    leaves, _ = tree_flatten(tree)
    return [v for v in leaves if isinstance(v, Tensor)]


def _is_view(func) -> bool:
    schema = func._schema
    if not schema.returns:
        return False
    alias = schema.returns[0].alias_info
    return alias is not None and not alias.is_write


def _is_inplace(func) -> bool:
    schema = func._schema
    return bool(schema.arguments) and any(
        a.alias_info is not None and a.alias_info.is_write for a in schema.arguments[:1]
    )


class _Mode(TorchDispatchMode):
    @classmethod
    def _should_skip_dynamo(cls) -> bool:
        # The default wraps __torch_dispatch__ in torch._dynamo.disable, which imports
        # torch._dynamo (seconds) on the first op; nothing here is compiled.
        return False

    def __init__(self, tracer: _Tracer) -> None:
        super().__init__()
        self.tracer = tracer

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        return self.tracer.dispatch(func, args, kwargs or {})


class _Tracer:
    def __init__(self, model: nn.Module, n_vars: int, symbolic: bool, recorder=None) -> None:
        self.model = model
        self.n_vars = n_vars
        self.symbolic = symbolic
        #: An :class:`polynet.expansion.ir.Recorder` when the program is recorded (else None).
        self.recorder = recorder
        self.values: dict[int, Tracked] = {}
        self.poison: dict[int, _Poison] = {}
        self.views: dict[int, _View] = {}
        self.keep: list[Tensor] = []
        self.seq = 0
        self.suspended = 0
        self.names = {id(m): name for name, m in model.named_modules()}
        self.module_stack: list[nn.Module] = []
        self.rows: list[NodeDegree] = []
        self.op_names: dict[str, int] = {}
        self.on_node: Callable[[int], Any] | None = None
        #: Every op run, in order: two runs on different examples must agree (a forward()
        #: that reads input values without an ATen op, e.g. x.tolist(), would not).
        self.ops: list[str] = []

    # ------------------------------------------------------------ bookkeeping

    def _hold(self, t: Tensor) -> None:
        self.keep.append(t)

    def set(self, t: Tensor, value: Tracked) -> None:
        self._hold(t)
        value.version = t._version
        self.values[id(t)] = value
        self.poison.pop(id(t), None)

    def mark(self, t: Tensor, poison: _Poison) -> None:
        self._hold(t)
        self.values.pop(id(t), None)
        if id(t) not in self.poison or self.poison[id(t)].seq > poison.seq:
            self.poison[id(t)] = poison

    def lookup(self, t: Tensor) -> Tracked | None:
        value = self.values.get(id(t))
        if value is not None and value.version == t._version:
            return value
        view = self.views.get(id(t))
        if view is not None and id(t) not in self.poison:
            parent = self.lookup(view.parent)
            if parent is not None:
                out = self._replay_view(view, t, parent)
                self.set(t, out)
                return out
        return value

    def poisoned(self, tensors) -> _Poison | None:
        found = [self.poison[id(t)] for t in tensors if id(t) in self.poison]
        if not found:
            for t in tensors:
                view = self.views.get(id(t))
                while view is not None:
                    if id(view.parent) in self.poison:
                        found.append(self.poison[id(view.parent)])
                        break
                    view = self.views.get(id(view.parent))
        return min(found, key=lambda p: p.seq) if found else None

    def refusal(self, op: str, why: str, rule_name: str | None = None) -> _Poison:
        """The message for a non-polynomial op here, naming it, its module and the line."""
        where, source = _user_location()
        module = self._innermost_leaf()
        name = _functional_name() or _as_user_wrote(rule_name or op, source)
        if module is not None:
            module_rule = MODULE_RULES.get(type(module))
            kind = type(module).__name__
            path = self.names.get(id(module), "") or "model"
            if module_rule is not None and not module_rule.polynomial:
                why_m, _, fix = module_rule.hint.partition("; ")
                why = f"{why_m}; {fix}."
            head = f"cannot expand {path} ({kind})"
            if name and name != kind:
                head += f" [{name}]"
        else:
            head = f"cannot expand {name}"
            parent = self.module_stack[-1] if self.module_stack else None
            if parent is not None and parent is not self.model:
                head += f" in {self.names.get(id(parent), '')} ({type(parent).__name__})"
        self.seq += 1
        return _Poison(head + (f" at {where}" if where else "") + f": {why}", self.seq)

    def _row(self, row: NodeDegree) -> None:
        self.rows.append(row)
        if self.on_node is not None:
            self.on_node(1)

    def _innermost_leaf(self) -> nn.Module | None:
        for m in reversed(self.module_stack):
            if next(iter(m.children()), None) is None and m is not self.model:
                return m
        return None

    # ------------------------------------------------------------ the dispatch

    def dispatch(self, func, args, kwargs):
        self.ops.append(func.__name__)
        if self.suspended:
            return func(*args, **kwargs)
        tensors = _tensors((args, kwargs))
        poison = self.poisoned(tensors)
        tracked = {id(t): v for t in tensors if (v := self.lookup(t)) is not None}
        packet = func.overloadpacket.__name__
        rule = ATEN_RULES.get(packet.rstrip("_") if packet.endswith("_") else packet)
        if poison is not None or tracked:
            if rule is not None and rule.kind == "control":
                if poison is not None:
                    raise _Refusal(self._branch_message(packet, poison.message))
                raise _Refusal(self._branch_message(packet, None))
        if poison is not None:
            out = func(*args, **kwargs)
            for t in _tensors(out) + (
                [args[0]] if _is_inplace(func) and isinstance(args[0], Tensor) else []
            ):
                self.mark(t, poison)
            return out
        if not tracked:
            out = func(*args, **kwargs)
            if _is_view(func) and args and isinstance(args[0], Tensor):
                self._record_view(func, args, kwargs, out)
            return out
        inplace = _is_inplace(func)
        if rule is None or rule.kind == "refused":
            why = (
                rule.hint
                if rule is not None
                else f"aten.{packet} is not in polynet's table of polynomial ops "
                "(polynet.expansion.rules.ATEN_RULES); rewrite it with supported ops or expand the "
                "polynomial part alone."
            )
            bad = self.refusal(packet.rstrip("_"), why if why.endswith(".") else why + ".")
            out = func(*args, **kwargs)
            for t in _tensors(out) + ([args[0]] if inplace else []):
                self.mark(t, bad)
            return out
        if inplace:
            return self._inplace(func, rule, args, kwargs)
        out = func(*args, **kwargs)
        try:
            result = self.apply(func, rule, args, kwargs, out)
        except _Refusal as exc:
            bad = self.refusal(packet, exc.message, rule.name)
            for t in _tensors(out):
                self.mark(t, bad)
            return out
        self._store(out, result)
        if _is_view(func):
            self._record_view(func, args, kwargs, out)
        self._record_op(packet, rule.name, result)
        return out

    def _branch_message(self, op: str, cause: str | None) -> str:
        where, _ = _user_location()
        return (
            f"cannot expand {type(self.model).__name__}: its forward() branches or loops on the "
            f"values of its input ({op} of a value computed from the input)"
            + (f" at {where}" if where else "")
            + "; a polynomial model computes the same ops for every input: remove the "
            "data-dependent `if`/`for`, or expand the polynomial part alone."
            + (f" (The value was not a polynomial already: {cause})" if cause else "")
        )

    def _store(self, out, result) -> None:
        outs = _tensors(out)
        results = result if isinstance(result, (list, tuple)) else [result]
        for t, r in zip(outs, results):
            if r is not None:
                self.set(t, r)

    def _record_view(self, func, args, kwargs, out) -> None:
        outs = out if isinstance(out, (list, tuple)) else [out]
        for i, t in enumerate(outs):
            if isinstance(t, Tensor) and t is not args[0]:
                self._hold(t)
                self._hold(args[0])
                index = i if isinstance(out, (list, tuple)) else None
                self.views[id(t)] = _View(args[0], func, args[1:], kwargs, index)

    def _record_op(self, packet: str, op: str, result) -> None:
        if self.suspended or self._innermost_leaf() is not None:
            return
        results = result if isinstance(result, (list, tuple)) else [result]
        results = [r for r in results if r is not None]
        if not results:
            return
        count = self.op_names.get(packet, 0)
        self.op_names[packet] = count + 1
        name = packet if count == 0 else f"{packet}_{count}"
        where, _ = _user_location()
        self._row(
            NodeDegree(
                name,
                op,
                0,
                max(r.poly.degree for r in results),
                where,
                sum(math.prod(r.poly.value_shape) for r in results),
            )
        )

    # ------------------------------------------------------------ lifting

    def rows_for(self, values: list[Tracked]) -> tuple[int, int]:
        """(degree, rows) that every operand is padded to; rows != EXAMPLE_BATCH."""
        degree = max(v.poly.degree for v in values)
        rows = 1 if self.symbolic else math.comb(self.n_vars + degree, degree)
        return degree, rows + 1 if rows == EXAMPLE_BATCH else rows

    def lift(self, value: Tracked, degree: int, rows: int, zero: bool = False) -> Tensor:
        c = value.poly.padded(degree)
        if zero:
            c = c.new_zeros((1, *c.shape[1:]))
        elif c.shape[0] < rows:
            c = torch.cat([c, c.new_zeros((rows - c.shape[0], *c.shape[1:]))])
        return lift_rows(c, value)

    def unlift(
        self, c: Tensor, real: Tensor, rows: int, degree: int, keep: bool = False
    ) -> Tracked:
        diff = (
            [i for i, (a, b) in enumerate(zip(c.shape, real.shape, strict=True)) if a != b]
            if c.dim() == real.dim()
            else None
        )
        if diff is None or len(diff) != 1:
            raise _Refusal(
                "it mixes the samples of the batch (the batch axis does not survive it as one "
                "axis); a polynomial model computes each sample on its own: keep the batch "
                "axis out of reductions, indexing and reshapes."
            )
        (k,) = diff
        size = real.shape[k]
        if size % EXAMPLE_BATCH or c.shape[k] % rows:
            raise _Refusal("it mixes the samples of the batch.")
        factor = size // EXAMPLE_BATCH
        if c.shape[k] != rows * factor:
            raise _Refusal("it mixes the samples of the batch.")
        if factor > 1:
            c = c.unflatten(k, (rows, factor))
        c = c.movedim(k, 0)
        t = 1 if self.symbolic else math.comb(self.n_vars + degree, degree)
        return Tracked(
            PolyTensor(c if keep else c[:t], degree, self.n_vars, self.symbolic), k, factor
        )

    def constant(self, t: Tensor, like: Tracked, real_rank: int) -> Tensor:
        """A constant operand, its batch-aligned axis cut to one sample if it has B (or B·f)."""
        t = t.to(torch.float64) if t.is_floating_point() or not t.dtype.is_complex else t
        axis = t.dim() - 1 - like.offset()
        if 0 <= axis < t.dim() and t.shape[axis] == EXAMPLE_BATCH * like.factor:
            grouped = t.unflatten(axis, (EXAMPLE_BATCH, like.factor))
            first = grouped.narrow(axis, 0, 1)
            if not torch.equal(grouped, first.expand_as(grouped)):
                raise _Refusal(
                    "a constant operand differs from sample to sample along the batch axis "
                    "(a per-sample constant, e.g. random); build constants that are the same for "
                    "every sample."
                )
            return first.flatten(axis, axis + 1)
        return t

    # ------------------------------------------------------------ applying a rule

    def apply(self, func, rule: AtenRule, args, kwargs, out) -> Any:
        tracked = [v for t in _tensors((args, kwargs)) if (v := self.lookup(t)) is not None]
        if rule.check is not None:
            rule.check(self, args, kwargs, tracked)
        kind = rule.kind
        if kind == "like":
            return None  # a constant built like the input: its values do not depend on it
        if kind == "product" and len(tracked) > 1:
            return self._product(func, args, kwargs, out)
        if kind == "power":
            return self._power(func, args, kwargs, out)
        if kind == "prod":
            return self._prod(args, kwargs, out)
        if kind == "bilinear" and len(tracked) > 1:
            return self._bilinear(func, args, kwargs, out)
        if kind == "quotient":
            if any(self.lookup(t) is not None for t in _tensors(args[1:])):
                raise _Refusal(
                    "division by a value that depends on the input is not a polynomial; divide "
                    "by constants only."
                )
            if kwargs.get("rounding_mode") or (len(args) > 2 and args[2]):
                raise _Refusal("rounded division is not a polynomial; divide without rounding.")
        return self._affine(func, rule, args, kwargs, out)

    def _substitute(self, func, args, kwargs, real_in: Tensor, v: Tracked, batch: int, out):
        """Args with the example batch size replaced by ``batch`` in size arguments."""
        packet = func.overloadpacket.__name__
        if packet in ("view", "_unsafe_view", "reshape", "_reshape_alias"):
            sizes = list(out.shape)
            k = _batch_axis_after_reshape(real_in.shape, v.axis, sizes)
            if k is None:
                raise _Refusal(
                    "this reshape merges the batch axis with the axes before it; keep the batch "
                    "axis first (x.view(x.size(0), -1))."
                )
            sizes[k] = sizes[k] // EXAMPLE_BATCH * batch
            return (args[0], sizes, *args[2:]), kwargs
        if packet == "expand":
            sizes = list(args[1])
            k = len(sizes) - 1 - v.offset()
            sizes[k] = -1
            return (args[0], sizes, *args[2:]), kwargs
        if packet == "repeat":
            reps = list(args[1])
            if reps[len(reps) - 1 - v.offset()] != 1:
                raise _Refusal("it repeats along the batch axis.")
        return args, kwargs

    def _affine(self, func, rule: AtenRule, args, kwargs, out) -> Any:
        """An op affine in its input-dependent operands, run on the lifted coefficients."""
        flat, spec = tree_flatten((args, kwargs))
        tracked = {i: self.lookup(a) for i, a in enumerate(flat) if isinstance(a, Tensor)}
        tracked = {i: v for i, v in tracked.items() if v is not None}
        degree, rows = self.rows_for(list(tracked.values()))

        def lifted(zero: bool) -> dict[int, Tensor]:
            return {i: self.lift(v, degree, rows, zero) for i, v in tracked.items()}

        run = lambda lift, batch: self.run_lifted(  # noqa: E731
            func, rule.broadcasts, flat, spec, tracked, lift, batch, out
        )
        result, result0 = run(lifted(False), rows), run(lifted(True), 1)
        outs = result if isinstance(result, (list, tuple)) else [result]
        zeros = result0 if isinstance(result0, (list, tuple)) else [result0]
        reals = out if isinstance(out, (list, tuple)) else [out]
        lifted = []
        for r, r0, real in zip(outs, zeros, reals):
            if not isinstance(r, Tensor) or real is None or (rule.first_output_only and lifted):
                lifted.append(None)
                continue
            value = self.unlift(r, real, rows, degree)
            z = self.unlift(r0, real, 1, 0).poly.coefficients if not self.symbolic else None
            c = value.poly.coefficients
            if z is not None and c.shape[0] > 1 and bool(z.any()):
                c = c.clone()
                c[1:] -= z
            value.poly = value.poly.with_coefficients(c)
            lifted.append(value)
        if self.recorder is not None:
            self.recorder.affine(self, func, rule.broadcasts, flat, spec, tracked, out, lifted)
        if isinstance(out, (list, tuple)):
            return lifted
        return lifted[0]

    def run_lifted(
        self, func, broadcasts: bool, flat: list, spec, tracked: dict, lifted: dict, batch: int, out
    ) -> Any:
        """``func`` with each input-dependent operand ``flat[i]`` replaced by ``lifted[i]``
        (coefficient rows on its batch axis, ``batch`` of them) and broadcast constants cut to
        one sample and repeated ``batch`` times: the op on given coefficients."""
        first_i, first = next(iter(tracked.items()))
        real_first = flat[first_i]
        items = []
        for i, a in enumerate(flat):
            if i in tracked:
                items.append(lifted[i])
            elif isinstance(a, Tensor) and a.is_floating_point():
                if broadcasts:
                    c = self.constant(a, first, real_first.dim())
                    items.append(_expand_batch(c, a, first, batch))
                elif i == 0 and func.overloadpacket.__name__ in _BIAS_FIRST:
                    # addmm/baddbmm's added input broadcasts against the output: one sample.
                    items.append(self.constant(a, first, real_first.dim()))
                else:
                    items.append(a.double())
            else:
                items.append(a)
        a2, k2 = torch.utils._pytree.tree_unflatten(items, spec)
        a2, k2 = self._substitute(func, a2, k2, real_first, first, batch, out)
        return func(*a2, **k2)

    def _product(self, func, args, kwargs, out) -> Tracked:
        a, b = self.lookup(args[0]), self.lookup(args[1])
        if a is None or b is None:  # pragma: no cover - the rule sends one-sided products on
            raise _Refusal("expects two input-dependent operands.")
        if a.offset() != b.offset() or a.factor != b.factor:
            raise _Refusal(
                "it multiplies values whose batch axes do not line up (an outer product across "
                "samples)."
            )
        p = multiply(a.poly, b.poly)
        value = self._check_shape(Tracked(p, out.dim() - 1 - a.offset(), a.factor), out)
        if self.recorder is not None:
            self.recorder.elementwise(value, a, b)
        return value

    def _check_shape(self, value: Tracked, out: Tensor) -> Tracked:
        shape = list(out.shape)
        if value.factor == 1:
            del shape[value.axis]
        else:
            shape[value.axis] = value.factor
        if list(value.poly.value_shape) != shape and (
            not self.symbolic or self.recorder is not None
        ):
            raise _Refusal("it mixes the samples of the batch.")
        return value

    def _power(self, func, args, kwargs, out) -> Tracked:
        base = self.lookup(args[0])
        exponent = args[1] if len(args) > 1 else kwargs.get("exponent")
        if base is None:
            raise _Refusal(
                "the exponent depends on the input (not a polynomial); use x ** k with an int k."
            )
        if isinstance(exponent, Tensor):
            if self.lookup(exponent) is not None:
                raise _Refusal("the exponent depends on the input (not a polynomial).")
            e = exponent.detach()
            if e.is_floating_point() and not bool((e == e.round()).all()) or bool((e < 0).any()):
                raise _Refusal(
                    "only non-negative integer powers are polynomials; use exponents that are "
                    "whole numbers >= 0."
                )
            if e.numel() == 1:
                exponent = int(e.item())
            else:
                return self._tensor_power(base, e, out)
        if isinstance(exponent, float) and exponent.is_integer():
            exponent = int(exponent)
        if not isinstance(exponent, int) or isinstance(exponent, bool) or exponent < 0:
            raise _Refusal(
                f"x ** {exponent!r}: only non-negative integer powers are polynomials; use "
                "x ** k with an int k."
            )
        if self.symbolic:
            p = base.poly.with_coefficients(base.poly.coefficients, base.poly.degree * exponent)
        else:
            p = power(base.poly, exponent)
            if exponent == 0:
                p = p.with_coefficients(p.coefficients, 0)
        value = self._check_shape(Tracked(p, out.dim() - 1 - base.offset(), base.factor), out)
        if self.recorder is not None:
            self.recorder.power(value, base, exponent)
        return value

    def _tensor_power(self, base: Tracked, e: Tensor, out: Tensor) -> Tracked:
        """x ** e for a constant tensor e of whole numbers: Σ_k [e == k] x^k."""
        e = self.constant(e.double(), base, e.dim()).round().long()
        total: Tracked | None = None
        mul_rule = ATEN_RULES["mul"]
        for k in sorted(set(e.flatten().tolist())):
            mask = (e == k).double()
            pk = Tracked(power(base.poly, k) if k else _one(base), base.axis, base.factor)
            if not self.symbolic and k:
                degree = capped(base.poly.degree * k)
                pk.poly = pk.poly.with_coefficients(pk.poly.coefficients, degree)
            elif self.symbolic:
                pk.poly = pk.poly.with_coefficients(pk.poly.coefficients[:1], base.poly.degree * k)
            if self.recorder is not None:
                self.recorder.power(pk, base, k)
            term = self._affine_on(_aten.mul.Tensor, mul_rule, pk, mask, out)
            if total is None:
                total = term
            else:
                summed = Tracked(add(total.poly, term.poly), term.axis, term.factor)
                if self.recorder is not None:
                    self.recorder.sum(summed, total, term)
                total = summed
        return total

    def _affine_on(self, func, rule, value: Tracked, const: Tensor, out: Tensor) -> Tracked:
        holder = torch.empty(out.shape, dtype=torch.float64, device=out.device)
        self.set(holder, value)
        return self._affine(func, rule, (holder, const), {}, out)

    def _prod(self, args, kwargs, out) -> Tracked:
        value = self.lookup(args[0])
        real = args[0]
        dim = args[1] if len(args) > 1 else kwargs.get("dim")
        keepdim = args[2] if len(args) > 2 else kwargs.get("keepdim", False)
        if dim is None:
            raise _Refusal("a product over every axis multiplies the samples of the batch.")
        dim = dim % real.dim()
        if dim == value.axis:
            raise _Refusal("it multiplies along the batch axis (mixes the samples).")
        cdim = dim - (1 if dim > value.axis and value.factor == 1 else 0) + 1
        parts = value.poly.coefficients.unbind(cdim)
        p = value.poly.with_coefficients(parts[0])
        for part in parts[1:]:
            p = multiply(p, value.poly.with_coefficients(part, value.poly.degree))
        if keepdim:
            p = p.with_coefficients(p.coefficients.unsqueeze(cdim))
        axis = value.axis - (1 if dim < value.axis and not keepdim else 0)
        result = self._check_shape(Tracked(p, axis, value.factor), out)
        if self.recorder is not None:
            self.recorder.prod(result, value, cdim - 1)
        return result

    def _bilinear(self, func, args, kwargs, out) -> Tracked:
        """An op linear in each of two input-dependent operands: over pairs of monomials."""
        flat, spec = tree_flatten((args, kwargs))
        idx = [i for i, a in enumerate(flat) if isinstance(a, Tensor) and self.lookup(a)]
        if len(idx) != 2:
            raise _Refusal("expects at most two input-dependent operands.")
        ia, ib = idx
        a, b = self.lookup(flat[ia]), self.lookup(flat[ib])
        # addmm/baddbmm: beta·input + alpha·(a @ b). The pairs of monomials below run with
        # beta = 0; the constant input (the bias) is added once, to the constant row.
        with_bias = func.overloadpacket.__name__ in _BIAS_FIRST
        if with_bias and 0 in idx:
            raise _Refusal(
                "its added input and both factors depend on the input; add the input-dependent "
                "term separately (torch.bmm(a, b) + c)."
            )
        ta, tb = a.poly.coefficients.shape[0], b.poly.coefficients.shape[0]
        degree = a.poly.degree + b.poly.degree
        q = None if self.symbolic else truncation()
        if q is not None and degree > q:
            # degree= : row group by row group, each with the b rows it meets below degree q.
            groups = truncated_pairs(self.n_vars, a.poly.degree, b.poly.degree, q, out.device)
            degree = q
        else:
            groups = [(0, ta, tb, None)]
        n_out = 1 if self.symbolic else math.comb(self.n_vars + degree, degree)
        if not self.symbolic and groups[0][3] is None:
            pmap = MonomialIndex(self.n_vars, degree).product_map(a.poly.degree, b.poly.degree)
            groups = [(0, ta, tb, torch.from_numpy(pmap.copy()).to(a.poly.coefficients.device))]
        result: Tensor | None = None
        per_pair = max(1, out.numel() // EXAMPLE_BATCH)
        chunks = [
            (s, min(hi, s + step), cols, targets, lo)
            for lo, hi, cols, targets in groups
            for step in [max(1, (1 << 22) // (cols * per_pair))]
            for s in range(lo, hi, step)
        ]
        for s, e, tb, targets, lo in chunks:
            ca = a.poly.coefficients[s:e]
            rows = ca.shape[0] * tb
            pad = 1 if rows == EXAMPLE_BATCH else 0
            pa = ca.repeat_interleave(tb, 0)
            cb = b.poly.coefficients[:tb]
            pb = cb.repeat((ca.shape[0],) + (1,) * (cb.dim() - 1))
            if pad:
                pa = torch.cat([pa, pa.new_zeros((1, *pa.shape[1:]))])
                pb = torch.cat([pb, pb.new_zeros((1, *pb.shape[1:]))])
            va = Tracked(PolyTensor(pa, 0, self.n_vars, True), a.axis, a.factor)
            vb = Tracked(PolyTensor(pb, 0, self.n_vars, True), b.axis, b.factor)
            items = list(flat)
            items[ia] = self.lift(va, 0, rows + pad)
            items[ib] = self.lift(vb, 0, rows + pad)
            items = [
                x.double()
                if isinstance(x, Tensor) and i not in idx and x.is_floating_point()
                else x
                for i, x in enumerate(items)
            ]
            if with_bias:
                items[0] = self.constant(flat[0], a, out.dim())
            a2, k2 = torch.utils._pytree.tree_unflatten(items, spec)
            if with_bias:
                k2 = {**k2, "beta": 0}
            r = func(*a2, **k2)
            pairs = self.unlift(r, out, rows + pad, 0, keep=True)
            c = pairs.poly.coefficients[:rows]
            if result is None:
                result = c.new_zeros((n_out, *c.shape[1:]))
                axis, factor = pairs.axis, pairs.factor
            if self.symbolic:
                result = c[:1]
            else:
                result.index_add_(0, targets.reshape(-1)[(s - lo) * tb : (e - lo) * tb], c)
        if with_bias and not self.symbolic:
            # The bias: the op on zero factors (one sample), into the constant row.
            items = list(flat)
            items[0] = self.constant(flat[0], a, out.dim())
            items[ia] = self.lift(a, a.poly.degree, 1, zero=True)
            items[ib] = self.lift(b, b.poly.degree, 1, zero=True)
            a2, k2 = torch.utils._pytree.tree_unflatten(items, spec)
            bias = self.unlift(func(*a2, **k2), out, 1, 0).poly.coefficients
            result[0] += bias[0]
        value = Tracked(PolyTensor(result, degree, self.n_vars, self.symbolic), axis, factor)
        if self.recorder is not None:
            self.recorder.bilinear(self, func, flat, spec, ia, ib, out, value)
        return value

    # ------------------------------------------------------------ in place and views

    def _inplace(self, func, rule: AtenRule, args, kwargs):
        dst = args[0]
        packet = func.overloadpacket.__name__
        functional = getattr(getattr(_aten, packet[:-1]), func._overloadname)
        dst_value = self.lookup(dst)
        try:
            if dst_value is None:
                # A constant written with values from the input: it becomes a polynomial.
                src = next(v for t in _tensors((args[1:], kwargs)) if (v := self.lookup(t)))
                axis = dst.dim() - 1 - src.offset()
                if not 0 <= axis < dst.dim() or dst.shape[axis] % EXAMPLE_BATCH:
                    raise _Refusal(
                        "it writes values from the input into a constant without a batch axis."
                    )
                factor = dst.shape[axis] // EXAMPLE_BATCH
                dst_value = self.from_constant(dst, axis, factor)
                holder = dst.detach().clone()
                self.set(holder, dst_value)
                args = (holder, *args[1:])
            new = self.apply(functional, rule, args, kwargs, dst)
            root, chain = self._root(dst)
            root_new = self._scatter(root, chain, dst, new) if chain else None
        except _Refusal as exc:
            bad = self.refusal(packet, exc.message, rule.name)
            out = func(dst, *args[1:], **kwargs)
            self.mark(dst, bad)
            return out
        out = func(dst, *args[1:], **kwargs)
        self.set(dst, new)
        if root_new is not None:
            self.set(root, root_new)
        return out

    def from_constant(self, t: Tensor, axis: int, factor: int) -> Tracked:
        """A constant (with a batch-sized axis) as a degree-0 polynomial: sample 0's values."""
        c = t.detach().double().unflatten(axis, (EXAMPLE_BATCH, factor)).select(axis, 0)
        if factor == 1:
            c = c.squeeze(axis)
        value = Tracked(PolyTensor(c[None].clone(), 0, self.n_vars, self.symbolic), axis, factor)
        if self.recorder is not None:
            self.recorder.constant(value, c)
        return value

    def _root(self, t: Tensor) -> tuple[Tensor, list[_View]]:
        chain = []
        while id(t) in self.views:
            view = self.views[id(t)]
            chain.append(view)
            t = view.parent
        return t, chain[::-1]

    def _replay_view(self, view: _View, t: Tensor, parent: Tracked) -> Tracked:
        holder = view.parent
        rule = ATEN_RULES.get(view.func.overloadpacket.__name__)
        if rule is None:
            raise NotExpandableError(f"view op {view.func} is not in polynet's table.")
        real = t if view.index is None else [None] * view.index + [t]
        out = self.apply(view.func, rule, (holder, *view.args), view.kwargs, real)
        if view.index is not None:
            out = out[view.index]
        return out

    def _scatter(self, root: Tensor, chain: list[_View], dst: Tensor, new: Tracked) -> Tracked:
        """The root's polynomial after writing ``new`` into its view ``dst``."""
        index = torch.arange(root.numel(), device=root.device).reshape(root.shape)
        for view in chain:
            index = view.func(index, *view.args, **view.kwargs)
            if view.index is not None:
                index = index[view.index]
        root_value = self.values.get(id(root))
        # Which root axis is the batch: the flat step between samples 0 and 1 of the view.
        along = index.unflatten(new.axis, (EXAMPLE_BATCH, new.factor)).select(new.axis + 1, 0)
        step = along.narrow(new.axis, 1, 1) - along.narrow(new.axis, 0, 1)
        strides = [math.prod(root.shape[i + 1 :]) for i in range(root.dim())]
        steps = set(step.flatten().tolist())
        axis = factor = None
        for i, size in enumerate(root.shape):
            if size % EXAMPLE_BATCH == 0 and steps == {strides[i] * (size // EXAMPLE_BATCH)}:
                axis, factor = i, size // EXAMPLE_BATCH
                break
        if axis is None:
            raise _Refusal("it writes values from the input across the batch axis.")
        if root_value is None:
            root_value = self.from_constant(root, axis, factor)
        if root_value.axis != axis or root_value.factor != factor:
            raise _Refusal("it writes values from the input across the batch axis.")
        # Positions within one sample (batch index 0) of the view's entries.
        outer = strides[axis] * root.shape[axis]
        inner = strides[axis] * factor
        per_sample = (index // outer) * inner + index % inner
        batch_of = (index % outer) // inner
        grouped = batch_of.unflatten(new.axis, (EXAMPLE_BATCH, new.factor))
        expected = torch.arange(EXAMPLE_BATCH, device=root.device).reshape(
            [EXAMPLE_BATCH if i == new.axis else 1 for i in range(grouped.dim())]
        )
        if not bool((grouped == expected).all()):
            raise _Refusal(
                "it writes values from the input into some samples of the batch only; write "
                "along the other axes."
            )
        pos = per_sample.unflatten(new.axis, (EXAMPLE_BATCH, new.factor)).select(new.axis, 0)
        if new.factor == 1:
            pos = pos.squeeze(new.axis)
        degree = max(root_value.poly.degree, new.poly.degree)
        base = (
            root_value.poly.padded(degree)
            .reshape(root_value.poly.padded(degree).shape[0], -1)
            .clone()
        )
        src = new.poly.padded(degree).reshape(base.shape[0], -1)
        base[:, pos.reshape(-1)] = src.expand(base.shape[0], pos.numel())
        coefficients = base.reshape(base.shape[0], *root_value.poly.value_shape)
        value = Tracked(PolyTensor(coefficients, degree, self.n_vars, self.symbolic), axis, factor)
        if self.recorder is not None:
            self.recorder.scatter(value, root_value, new, pos)
        return value

    # ------------------------------------------------------------ modules

    def pre_hook(self, module: nn.Module, args) -> None:
        self.module_stack.append(module)
        x = args[0] if args and isinstance(args[0], Tensor) else None
        value = self.values.get(id(x)) if x is not None else None
        if (
            isinstance(module, nn.Linear)
            and not self.suspended
            and value is not None
            and value.pending is not None
            and value.version == x._version
            and len(value.poly_shape) == 1
            and value.source[1].degree >= 2
            and module.out_features < value.poly_shape[0]
        ):
            # An SLAF feeding a narrower Linear: fold both at once (no unit powers formed).
            self.suspended += 1
            module._polynet_fused = value  # noqa: SLF001 - removed in post_hook
            return
        if isinstance(module, SLAF) and not self.suspended:
            x = args[0] if args and isinstance(args[0], Tensor) else None
            if x is not None and self.lookup(x) is not None:
                check_module(self.names.get(id(module), ""), module)
                self.suspended += 1
                module._polynet_suspended = True  # noqa: SLF001 - removed in post_hook

    def post_hook(self, module: nn.Module, args, output):
        self.module_stack.pop()
        fused = getattr(module, "_polynet_fused", None)
        if fused is not None:
            del module._polynet_fused
            self.suspended -= 1
            x, slaf = fused.source
            self.suspended += 1
            try:
                alpha = slaf.polynomial()
            finally:
                self.suspended -= 1
            c = unit_polynomial_linear(
                x.poly.coefficients, x.poly.degree, x.poly.n_vars, alpha, module
            )
            p = PolyTensor(c, capped(x.poly.degree * slaf.degree), x.poly.n_vars, False)
            self.set(output, Tracked(p, 0, 1))
        if getattr(module, "_polynet_suspended", False):
            del module._polynet_suspended
            self.suspended -= 1
            x = self.lookup(args[0])
            if x.axis != 0 or x.factor != 1:
                bad = self.refusal("SLAF", "an SLAF expects the batch axis first.")
                self.mark(output, bad)
                return None
            if self.symbolic:
                p = x.poly.with_coefficients(x.poly.coefficients, x.poly.degree * module.degree)
                value = Tracked(p, 0, 1)
                if self.recorder is not None:
                    with _disable_current_modes():  # not traced: both traces run the same ops
                        name = self.names.get(id(module), "SLAF")
                        self.recorder.univariate(value, x, module.polynomial(), name)
                self.set(output, value)
            else:
                self.set(output, self._slaf(module, x))
        if self.suspended or next(iter(module.children()), None) is not None:
            return None
        if isinstance(output, Tensor) and (value := self.lookup(output)) is not None:
            if module is self.model:
                return None
            where, _ = _user_location()
            self._row(
                NodeDegree(
                    self.names.get(id(module), ""),
                    type(module).__name__,
                    sum(p.numel() for p in module.parameters()),
                    value.degree,
                    where,
                    math.prod(value.poly_shape),
                )
            )
        return None


def _slaf_value(tracer: _Tracer, module: SLAF, x: Tracked) -> Tracked:
    def compute() -> PolyTensor:
        tracer.suspended += 1
        try:
            alpha = module.polynomial().to(x.poly.coefficients.device)
        finally:
            tracer.suspended -= 1
        return unit_polynomial(x.poly, alpha)

    value = Tracked(None, 0, 1, pending=compute)
    value.source = (x, module)
    value.lazy_degree = capped(x.poly.degree * module.degree)
    value.lazy_shape = x.poly.value_shape
    return value


_Tracer._slaf = _slaf_value


def lift_rows(c: Tensor, value: Tracked) -> Tensor:
    """Coefficient rows (R, *value_shape) put where ``value``'s batch axis is (R samples)."""
    c = c.movedim(0, value.axis)
    if value.factor > 1:
        c = c.flatten(value.axis, value.axis + 1)
    return c


def _one(value: Tracked) -> PolyTensor:
    c = value.poly.coefficients
    return PolyTensor(c.new_ones((1, *c.shape[1:])), 0, value.poly.n_vars, value.poly.symbolic)


def _expand_batch(c: Tensor, real: Tensor, like: Tracked, batch: int) -> Tensor:
    """A constant whose batch-aligned axis was cut to one sample, repeated ``batch`` times."""
    c = c.double() if c.is_floating_point() else c
    axis = c.dim() - 1 - like.offset()
    if 0 <= axis < c.dim() and real.shape[axis] == EXAMPLE_BATCH * like.factor:
        if like.factor == 1:
            return c.expand(*c.shape[:axis], batch, *c.shape[axis + 1 :])
        grouped = c.unflatten(axis, (1, like.factor))
        shape = list(grouped.shape)
        shape[axis] = batch
        return grouped.expand(shape).flatten(axis, axis + 1)
    return c


def _batch_axis_after_reshape(before, axis: int, after: list[int]) -> int | None:
    """The axis of ``after`` that starts with the batch (prefix products must match)."""
    prefix = math.prod(before[:axis])
    running = 1
    for k, size in enumerate(after):
        if running == prefix and size % EXAMPLE_BATCH == 0:
            return k
        running *= size
        if running > prefix:
            return None
    return None


def run_traced(
    model: nn.Module,
    input_shapes: tuple[tuple[int, ...], ...],
    starts: list[PolyTensor],
    symbolic: bool,
    device: torch.device,
    on_node: Callable[[int], Any] | None = None,
    probe: int = 0,
    recorder=None,
) -> tuple[list[tuple[str, Tracked]], list[NodeDegree], tuple[str, ...]]:
    """Run ``model`` on an example batch, replaying its ops on polynomials of its input.

    Returns the output polynomials (one per output tensor, with its name), the degree table and
    the ops run. ``probe`` 1 runs on the negated example batch of probe 0. ``forward()``
    takes one example tensor per shape in ``input_shapes``, whose polynomials are ``starts``.
    A ``recorder`` (:class:`polynet.expansion.ir.Recorder`, its inputs recorded in order)
    records the program on the way.
    """
    dtype = next(
        (p.dtype for p in (*model.parameters(), *model.buffers()) if p.is_floating_point()),
        torch.float64,
    )
    gen = torch.Generator(device="cpu").manual_seed(0)
    xs = [
        torch.randn(EXAMPLE_BATCH, *shape, generator=gen, dtype=dtype).to(device)
        for shape in input_shapes
    ]
    if probe:
        xs = [-2.0 * x for x in xs]
    tracer = _Tracer(model, starts[0].n_vars, symbolic, recorder)
    tracer.on_node = on_node
    for k, (x, start) in enumerate(zip(xs, starts)):
        node = None if recorder is None else recorder.inputs[k]
        tracer.set(x, Tracked(start, 0, 1, node=node))
    handles = []
    for module in model.modules():
        handles.append(module.register_forward_pre_hook(tracer.pre_hook))
        handles.append(module.register_forward_hook(tracer.post_hook))
    try:
        with torch.no_grad(), _Mode(tracer):
            out = model(*xs)
    except _Refusal as exc:
        raise NotExpandableError(exc.message) from None
    except NotExpandableError:
        raise
    except Exception as exc:  # noqa: BLE001 - the model's own error on the example batch
        where = _traceback_user_frame(exc.__traceback__)
        raise NotExpandableError(
            f"cannot expand {type(model).__name__}: its forward() failed on an example batch of "
            f"shape {', '.join(str(tuple(x.shape)) for x in xs)} ({type(exc).__name__}: {exc})"
            + (f" at {where}" if where else "")
            + "; pass input_shape= (one sample, without the batch axis) if the shape is wrong."
        ) from exc
    finally:
        for h in handles:
            h.remove()
    leaves = _named_leaves(out)
    results: list[tuple[str, Tracked]] = []
    for name, t in leaves:
        poison = tracer.poisoned([t])
        if poison is not None:
            first = min(
                (p for _, u in leaves if (p := tracer.poisoned([u])) is not None),
                key=lambda p: p.seq,
            )
            raise NotExpandableError(first.message)
        value = tracer.lookup(t)
        if value is not None:
            results.append((name, value))
    if not results:
        raise NotExpandableError(
            f"cannot expand {type(model).__name__}: forward() must return a tensor that depends "
            "on the input (it returned constants); return the model's output tensor."
        )
    for name, value in results:
        if value.axis != 0 or value.factor != 1:
            raise NotExpandableError(
                f"cannot expand {type(model).__name__}: its output {name or ''} does not have the "
                "batch axis first; return outputs of shape (batch, ...)."
            )
    return results, tracer.rows, tuple(tracer.ops)


def check_same_ops(first: tuple[str, ...], second: tuple[str, ...], model: nn.Module) -> None:
    """Refuse a model that ran different ops on two example batches (hidden control flow)."""
    if first == second:
        return
    at = next(
        (i for i, (a, b) in enumerate(zip(first, second)) if a != b), min(len(first), len(second))
    )
    raise NotExpandableError(
        f"cannot expand {type(model).__name__}: its forward() runs different ops on different "
        f"inputs (op {at} was {first[at] if at < len(first) else 'the end'} on one example batch "
        f"and {second[at] if at < len(second) else 'the end'} on another), so it branches on the "
        "values of its input without a tensor op (x.tolist(), x.numpy()); a polynomial model "
        "computes the same ops for every input: remove the data-dependent `if`/`for`."
    )


def _named_leaves(out) -> list[tuple[str, Tensor]]:
    if isinstance(out, Tensor):
        return [("", out)]
    if isinstance(out, dict):
        return [
            (f"{k}{'.' + n if n else ''}", t) for k, v in out.items() for n, t in _named_leaves(v)
        ]
    if isinstance(out, (list, tuple)):
        return [
            (f"{i}{'.' + n if n else ''}", t)
            for i, v in enumerate(out)
            for n, t in _named_leaves(v)
        ]
    return []


def _traceback_user_frame(tb) -> str:
    where = ""
    while tb is not None:
        name = tb.tb_frame.f_code.co_filename
        if not any(s in name for s in _USER_SKIP):
            where = f"{name}:{tb.tb_lineno}"
        tb = tb.tb_next
    return where
