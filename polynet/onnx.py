"""from_onnx: an ONNX model as a ``torch.fx.GraphModule`` that :func:`polynet.expand` takes.

The ONNX graph is walked once in topological order. A node whose inputs are all constants is
folded with the ``onnx`` package's reference evaluator (so the shape arithmetic exporters emit
costs nothing and needs no handler); every other node becomes ordinary torch ops in an fx graph:
Gemm/MatMul with constant weights become ``nn.Linear``, Conv ``nn.ConvNd``, BatchNormalization
``nn.BatchNormNd`` in evaluation mode, AveragePool ``nn.AvgPoolNd``, elementwise arithmetic the
Python operators, Reshape/Transpose/Gather/Slice/Concat the torch functions with constant
arguments. Ops that are not polynomial (Relu, Tanh, Softmax, Div by a variable ...) are run by
an :class:`OnnxOp` submodule named after the ONNX node, so the module computes what the ONNX
model computes and ``polynet.expand`` refuses it naming that node.

The first axis of every input is the batch and stays free: the module runs on any batch size.
Shapes are tracked by running each new op on two probe batches (2 and 3 samples); an entry of
an ONNX ``Shape`` that differs between them is the batch size, and it may only flow into a
Reshape or Expand target (as exporters write ``x.view(x.size(0), -1)``). Tensors computed from
the batch size alone (``Range`` over it: the indices exporters build for ``out[:, :2] = h``) are
evaluated at both probe batch sizes; they may only index a ScatterND, ScatterElements or
GatherElements, which becomes an affine map of each sample when it writes (reads) the same
entries in every sample.
"""

from __future__ import annotations

import functools
import math
import operator
import os
import re
from collections import ChainMap
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from polynet.errors import CheckpointError, NotExpandableError, PolynetError

__all__ = ["from_onnx", "OnnxOp", "SUPPORTED_OPS"]

#: Batch sizes of the two probe runs that tell the batch axis from fixed axes.
_PROBE_BATCHES = (2, 3)
#: Stand-ins for the batch size when shape arithmetic is folded (two runs, distinct primes).
_SENTINELS = (1_000_003, 1_000_033)
#: Ops folded on a Shape value holding the batch size (cheap, no allocation of that size).
_SHAPE_FOLDABLE = frozenset(
    {"Gather", "Concat", "Unsqueeze", "Squeeze", "Slice", "Cast", "Identity", "Reshape"}
    | {"Add", "Sub", "Mul", "Div", "Equal", "Where", "Max", "Min", "Neg", "Abs", "Flatten"}
)
_INT64_MAX = 2**63 - 1


class OnnxOp(nn.Module):
    """One ONNX node run by its torch equivalent; used for the ops that are not polynomial.

    torch.fx traces through it, so ``polynet.expand`` sees the torch function (``torch.relu``)
    inside the submodule named after the ONNX node and refuses it naming both.
    """

    def __init__(self, op_type: str, onnx_name: str, fn: Callable[..., Tensor]) -> None:
        super().__init__()
        self.op_type = op_type
        self.onnx_name = onnx_name
        self.fn = fn

    def forward(self, *args: Any) -> Tensor:
        return self.fn(*args)

    def extra_repr(self) -> str:
        return f"{self.op_type}, onnx node {self.onnx_name!r}"


@dataclass
class _Run:
    """A value computed from the inputs: its fx node and its values on the probe batches."""

    node: torch.fx.Node
    probes: tuple[Tensor, Tensor]

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.probes[0].shape)

    @property
    def batch_axes(self) -> tuple[int, ...]:
        a, b = self.probes
        if a.dim() != b.dim():
            return ()
        return tuple(i for i in range(a.dim()) if a.shape[i] != b.shape[i])


@dataclass
class _ShapeValue:
    """A 1-D int64 value (from ONNX Shape) in which some entries are the batch size."""

    values: np.ndarray
    batch: np.ndarray  # bool, same shape: True where the entry is the batch size
    #: A value with a batch axis (and which axis), for ops that build tensors of this shape.
    source: Any = None
    axis: int = 0

    def substituted(self, k: int) -> np.ndarray:
        return np.where(self.batch, np.int64(_SENTINELS[k]), self.values).astype(self.values.dtype)


def _broadcast_constant(a: np.ndarray, b: np.ndarray) -> np.ndarray | None:
    """A constant the graph expanded to the batch size (``Expand(bias, Shape(x)[0], ...)``, as
    exporters write ``bias.expand(x.size(0), -1, -1)``), as the same constant with size 1 on
    those axes, which broadcasts the same way; None when ``a`` and ``b`` (its values at the two
    probe batch sizes) are anything else (sample indices, shapes)."""
    if a.ndim != b.ndim or a.ndim == 0:
        return None
    axes = [i for i in range(a.ndim) if a.shape[i] != b.shape[i]]
    if not axes or any((a.shape[i], b.shape[i]) != _PROBE_BATCHES for i in axes):
        return None
    first_a, first_b = a, b
    for i in axes:
        first_a = np.take(first_a, [0], axis=i)
        first_b = np.take(first_b, [0], axis=i)
    same = np.array_equal(np.broadcast_to(first_a, a.shape), a) and np.array_equal(
        np.broadcast_to(first_b, b.shape), b
    )
    return first_a if same and np.array_equal(first_a, first_b) else None


@dataclass
class _PerBatch:
    """A value that depends on the batch size only (``Range`` over it, the indices exporters
    build for ``out[:, :2] = ...``): its values at the two probe batch sizes."""

    values: tuple[np.ndarray, np.ndarray]

    @property
    def batch_axes(self) -> tuple[int, ...]:
        a, b = self.values
        if a.ndim != b.ndim:
            return ()
        return tuple(i for i in range(a.ndim) if a.shape[i] != b.shape[i])


#: Handlers that read a _PerBatch input (as indices or as a target shape).
_PER_BATCH_READERS = frozenset(
    {"ScatterND", "ScatterElements", "GatherElements", "Reshape", "Expand"}
)

_BATCH = object()  # a Reshape/Expand target entry that is the batch size


def _sample(shape: Any) -> tuple[int, ...]:
    return tuple(int(s) for s in shape)


def _np_dtype(elem_type: int) -> np.dtype:
    from onnx import helper

    return np.dtype(helper.tensor_dtype_to_np_dtype(elem_type))


def _torch_dtype(dtype: np.dtype) -> torch.dtype:
    return torch.from_numpy(np.zeros(0, dtype=dtype)).dtype


def _ident(name: str) -> str:
    """A Python identifier close to an ONNX name ("/1/Relu" -> "_1_Relu")."""
    out = re.sub(r"[^0-9A-Za-z_]+", "_", name).rstrip("_")
    if not out:
        return "node"
    return "_" + out if out[0].isdigit() else out


def _norm_axis(axis: int, rank: int, node: Any) -> int:
    if not -rank <= axis < max(rank, 1):
        raise _unsupported(node, f"axis {axis} is out of range for a rank-{rank} tensor")
    return axis % rank if rank else 0


def _unsupported(node: Any, why: str) -> PolynetError:
    return PolynetError(
        f"cannot read ONNX node {node.name!r} ({node.op_type}): {why}. Re-export the model "
        "with fixed shapes for everything but the batch axis, or simplify it (onnxsim)."
    )


class _Builder:
    """Walks one ONNX graph, folding constants and writing the fx graph of the rest."""

    def __init__(self, model: Any, input_shape: Sequence[int] | None) -> None:
        self.model = model
        self.graph = torch.fx.Graph()
        self.root = nn.Module()
        self.opset = 1
        for op in model.opset_import:
            if op.domain in ("", "ai.onnx"):
                self.opset = op.version
        from polynet.expansion.inputs import is_several

        #: Shapes of several inputs, by ONNX input name or in order (``input_shape=``).
        self.several = input_shape if is_several(input_shape) else None
        self.input_shape = (
            None
            if input_shape is None or self.several is not None
            else tuple(int(s) for s in input_shape)
        )
        self.declared_batch: int | None = None
        self.names: set[str] = set()
        self.fusable: dict[str, nn.Linear] = {}
        self.consumers: dict[str, int] = {}
        self.graph_outputs: set[str] = set()
        self.sample_shapes: list[tuple[int, ...]] = []

    # ---------------------------------------------------------------- fx plumbing

    def unique(self, name: str) -> str:
        base = _ident(name)
        candidate, i = base, 1
        while candidate in self.names or hasattr(self.root, candidate):
            candidate, i = f"{base}_{i}", i + 1
        self.names.add(candidate)
        return candidate

    def buffer(self, array: np.ndarray, name: str) -> torch.fx.Node:
        target = self.unique(f"const_{name}")
        self.root.register_buffer(target, torch.from_numpy(np.array(array, copy=True)))
        return self.graph.get_attr(target)

    def _fx_arg(self, value: Any, name: str) -> Any:
        if isinstance(value, _Run):
            return value.node
        if isinstance(value, np.ndarray):
            if value.ndim == 0 and value.dtype.kind in "fiub":
                return value.item()
            return self.buffer(value, name)
        if isinstance(value, (list, tuple)):
            return type(value)(self._fx_arg(v, name) for v in value)
        return value

    @staticmethod
    def _probe_arg(value: Any, k: int) -> Any:
        if isinstance(value, _Run):
            return value.probes[k]
        if isinstance(value, np.ndarray):
            if value.ndim == 0 and value.dtype.kind in "fiub":
                return value.item()
            return torch.from_numpy(np.array(value, copy=True))
        if isinstance(value, (list, tuple)):
            return type(value)(_Builder._probe_arg(v, k) for v in value)
        return value

    def call(
        self, kind: str, target: Any, args: tuple, kwargs: Mapping | None, name: str, node: Any
    ) -> _Run:
        """Add one fx node and run it on both probe batches."""
        kwargs = dict(kwargs or {})
        fx_args = tuple(self._fx_arg(a, name) for a in args)
        fx_kwargs = {k: self._fx_arg(v, name) for k, v in kwargs.items()}
        fx_node = self.graph.create_node(kind, target, fx_args, fx_kwargs, name=_ident(name))
        probes = []
        for k in range(2):
            pa = tuple(self._probe_arg(a, k) for a in args)
            pk = {key: self._probe_arg(v, k) for key, v in kwargs.items()}
            try:
                with torch.no_grad():
                    if kind == "call_function":
                        out = target(*pa, **pk)
                    elif kind == "call_method":
                        out = getattr(pa[0], target)(*pa[1:], **pk)
                    else:
                        out = self.root.get_submodule(target)(*pa, **pk)
            except (RuntimeError, ValueError, TypeError, IndexError) as exc:
                raise _unsupported(
                    node, f"its torch equivalent failed on a probe batch ({exc})"
                ) from None
            probes.append(out)
        return _Run(fx_node, (probes[0], probes[1]))

    def function(self, target: Any, *args: Any, node: Any, name: str | None = None, **kw) -> _Run:
        return self.call("call_function", target, args, kw, name or node.name, node)

    def method(self, target: str, *args: Any, node: Any, name: str | None = None, **kw) -> _Run:
        return self.call("call_method", target, args, kw, name or node.name, node)

    def module(self, module: nn.Module, *args: Any, node: Any) -> _Run:
        target = self.unique(node.name or node.op_type)
        self.root.add_module(target, module.eval())
        return self.call("call_module", target, args, None, target, node)

    def refused(self, node: Any, fn: Callable[..., Tensor], *args: Any) -> _Run:
        """A non-polynomial node: an OnnxOp submodule named after it."""
        return self.module(OnnxOp(node.op_type, node.name, fn), *args, node=node)

    # ---------------------------------------------------------------- the walk

    def run(self) -> torch.fx.GraphModule:
        g = self.model.graph
        initializers = {t.name: t for t in g.initializer}
        env: dict[str, Any] = {}
        from onnx import numpy_helper

        for t in g.initializer:
            env[t.name] = numpy_helper.to_array(t)
        inputs = [i for i in g.input if i.name not in initializers]
        if not inputs:
            raise PolynetError("the ONNX graph has no inputs: it computes a constant.")
        if self.input_shape is not None and len(inputs) > 1:
            raise PolynetError(
                f"input_shape applies to a model with one input; this one has {len(inputs)} "
                f"({', '.join(i.name for i in inputs)}): give one shape per input, "
                "{name: shape} or in order."
            )
        given = self._given_shapes(inputs)
        for vi, shape in zip(inputs, given):
            env[vi.name] = self._placeholder(vi, shape)
        self._count_consumers(g)
        self.graph_outputs = {o.name for o in g.output}
        self._walk(g.node, ChainMap(env))
        outs = [self._output_arg(env[o.name], o.name) for o in g.output]
        self.graph.output(outs[0] if len(outs) == 1 else tuple(outs))
        gm = torch.fx.GraphModule(self.root, self.graph, class_name="OnnxModule")
        gm.eval()
        # The shape of one sample of the first input, for polynet.expand(..., input_shape=).
        gm.input_shape = self.sample_shapes[0]
        if len(inputs) > 1:  # {forward() argument: sample shape}, as expand takes them
            gm.input_shapes = {
                _ident(vi.name): shape for vi, shape in zip(inputs, self.sample_shapes)
            }
        gm.onnx_opset = self.opset
        return gm

    def _given_shapes(self, inputs: list[Any]) -> list[tuple[int, ...] | None]:
        """The sample shape given for each ONNX input (None: as the file records it)."""
        from polynet.errors import did_you_mean

        if self.several is None:
            return [self.input_shape] * len(inputs)
        names = [vi.name for vi in inputs]
        if isinstance(self.several, dict):
            by_name = {**{_ident(n): n for n in names}, **{n: n for n in names}}
            unknown = [k for k in self.several if k not in by_name]
            if unknown:
                hint = " ".join(h for h in (did_you_mean(k, names) for k in unknown) if h)
                raise PolynetError(
                    f"input_shape names {unknown}, which are not inputs of the ONNX graph "
                    f"{names}; {hint + ' ' if hint else ''}give one shape per input name."
                )
            shapes = {by_name[k]: v for k, v in self.several.items()}
            return [_sample(shapes[n]) if n in shapes else None for n in names]
        if len(self.several) != len(inputs):
            raise PolynetError(
                f"input_shape gives {len(self.several)} shapes but the ONNX graph has "
                f"{len(inputs)} inputs {names}; give one shape per input, in order."
            )
        return [_sample(v) for v in self.several]

    def _output_arg(self, value: Any, name: str) -> Any:
        if isinstance(value, _Run):
            return value.node
        if isinstance(value, np.ndarray):
            return self.buffer(value, name)
        raise PolynetError(
            f"ONNX output {name!r} is a shape that depends on the batch size; polynet needs "
            "tensor outputs."
        )

    def _count_consumers(self, g: Any) -> None:
        for n in g.node:
            for name in n.input:
                self.consumers[name] = self.consumers.get(name, 0) + 1
            for a in n.attribute:
                if a.g is not None and a.g.node:
                    self._count_consumers(a.g)

    def _placeholder(self, vi: Any, given: tuple[int, ...] | None) -> _Run:
        t = vi.type.tensor_type
        if not vi.type.HasField("tensor_type") or t.elem_type == 0:
            raise PolynetError(f"ONNX input {vi.name!r} is not a tensor.")
        dtype = _np_dtype(t.elem_type)
        if dtype.kind != "f":
            raise PolynetError(
                f"ONNX input {vi.name!r} has dtype {dtype}; polynet expands models of real "
                "(float) inputs."
            )
        dims = [d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim]
        if not t.HasField("shape") or not dims:
            raise PolynetError(
                f"ONNX input {vi.name!r} has no shape; pass input_shape= (one sample, without "
                "the batch axis)."
            )
        if dims[0] is not None and self.declared_batch is None:
            self.declared_batch = dims[0]
        sample = dims[1:]
        if given is not None:
            if len(given) != len(sample) or any(
                d is not None and d != s for d, s in zip(sample, given)
            ):
                shown = ["batch", *("?" if d is None else str(d) for d in sample)]
                raise PolynetError(
                    f"input_shape {given} does not fit ONNX input {vi.name!r} of "
                    f"shape ({', '.join(shown)}); give the shape of one sample."
                )
            sample = list(given)
        if any(d is None for d in sample):
            raise PolynetError(
                f"ONNX input {vi.name!r} has free axes besides the batch axis "
                f"({['batch', *sample]}); pass input_shape= (one sample, without the batch "
                "axis)."
            )
        self.sample_shapes.append(tuple(sample))
        node = self.graph.placeholder(_ident(vi.name))
        gen = torch.Generator().manual_seed(len(self.sample_shapes))
        torch_dtype = _torch_dtype(dtype)
        probes = tuple(
            torch.randn(b, *sample, generator=gen, dtype=torch.float64).to(torch_dtype)
            for b in _PROBE_BATCHES
        )
        return _Run(node, probes)

    def _walk(self, nodes: Sequence[Any], env: ChainMap) -> None:
        for node in nodes:
            if not node.name:
                node.name = f"{node.op_type}_{node.output[0] if node.output else ''}"
            if node.domain not in ("", "ai.onnx"):
                raise PolynetError(
                    f"ONNX node {node.name!r} is {node.domain}::{node.op_type}, outside the "
                    "standard ONNX domain; polynet reads standard ONNX ops only. "
                    f"Supported: {', '.join(SUPPORTED_OPS)}."
                )
            ins = []
            for name in node.input:
                if not name:
                    ins.append(None)
                elif name in env:
                    ins.append(env[name])
                else:
                    raise PolynetError(
                        f"ONNX node {node.name!r} reads {name!r}, which no earlier node makes; "
                        "the graph is not in topological order or is malformed "
                        "(onnx.checker.check_model says more)."
                    )
            outs = self._node(node, ins, env)
            for name, value in zip(node.output, outs):
                if name:
                    env[name] = value

    def _node(self, node: Any, ins: list[Any], env: ChainMap) -> list[Any]:
        op = node.op_type
        consts = all(v is None or isinstance(v, np.ndarray) for v in ins)
        if op == "If":
            return self._if(node, ins, env)
        if op in ("Loop", "Scan"):
            raise NotExpandableError(
                f"cannot expand ONNX node {node.name!r} ({op}): a loop is data-dependent control "
                "flow, not a polynomial map; export the model with the loop unrolled."
            )
        if consts and op not in _NO_FOLD:
            return self._fold(node, ins)
        no_run = all(not isinstance(v, _Run) for v in ins)
        per_batch = any(isinstance(v, _PerBatch) for v in ins)
        if per_batch and no_run and op not in _NO_FOLD:
            return self._fold_per_batch(node, ins)
        if any(isinstance(v, _ShapeValue) for v in ins) and op in _SHAPE_FOLDABLE:
            if no_run:
                return self._fold_shape(node, ins)
        handler = _HANDLERS.get(op)
        if no_run and op != "ConstantOfShape" and any(isinstance(v, _ShapeValue) for v in ins):
            # Range(0, batch size), a constant expanded to the batch: sample indices
            return self._fold_per_batch(node, ins)
        if handler is None and any(isinstance(v, _ShapeValue) for v in ins):
            raise _unsupported(node, "it builds a tensor whose size is the batch size")
        if per_batch and op not in _PER_BATCH_READERS:
            # A constant expanded to the batch size meets the data: it broadcasts as itself.
            constants = [
                _broadcast_constant(*v.values) if isinstance(v, _PerBatch) else v for v in ins
            ]
            if all(c is not None for c in constants):
                ins = constants
                per_batch = False
        if per_batch and op not in _PER_BATCH_READERS:
            raise _unsupported(
                node,
                "it computes with a tensor built from the batch size (an index over the "
                "samples); polynet reads such indices only in ScatterND, ScatterElements "
                "and GatherElements",
            )
        if handler is None:
            raise PolynetError(
                f"ONNX op {op} (node {node.name!r}) is not supported by polynet.from_onnx. "
                f"Supported: {', '.join(SUPPORTED_OPS)}; any op whose inputs are all constants "
                "is folded."
            )
        attrs = _attributes(node)
        out = handler(self, node, ins, attrs)
        return out if isinstance(out, list) else [out]

    # ---------------------------------------------------------------- folding

    def _evaluate(self, node: Any, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        from onnx import helper
        from onnx.reference import ReferenceEvaluator

        names = [n for n in node.input if n]
        fn = helper.make_function(
            "polynet.fold",
            "fold",
            names,
            [o for o in node.output if o],
            [node],
            [helper.make_opsetid("", self.opset)],
        )
        try:
            out = ReferenceEvaluator(fn).run(None, feeds, attributes={})
        except Exception as exc:  # noqa: BLE001 - the reference evaluator raises anything
            raise _unsupported(node, f"folding its constant inputs failed ({exc})") from None
        return [np.asarray(o) for o in out]

    def _fold(self, node: Any, ins: list[Any]) -> list[Any]:
        feeds = {n: v for n, v in zip(node.input, ins) if n}
        return self._evaluate(node, feeds)

    def _fold_shape(self, node: Any, ins: list[Any]) -> list[Any]:
        runs = []
        for k in range(2):
            feeds = {}
            for n, v in zip(node.input, ins):
                if n:
                    feeds[n] = v.substituted(k) if isinstance(v, _ShapeValue) else v
            runs.append(self._evaluate(node, feeds))
        origin = next(v for v in ins if isinstance(v, _ShapeValue))
        outs: list[Any] = []
        for a, b in zip(*runs):
            if a.shape != b.shape:
                raise _unsupported(node, "it computes a shape from the batch size")
            if np.array_equal(a, b):
                outs.append(a)
                continue
            batch = (a == _SENTINELS[0]) & (b == _SENTINELS[1])
            if not np.array_equal(a[~batch], b[~batch]) or a.dtype.kind != "i":
                raise _unsupported(node, "it computes with the batch size (not just passing it on)")
            outs.append(
                _ShapeValue(
                    np.where(batch, 0, a).astype(a.dtype), batch, origin.source, origin.axis
                )
            )
        return outs

    def _fold_per_batch(self, node: Any, ins: list[Any]) -> list[Any]:
        """Evaluate a node whose inputs depend on the batch size only, at both probe batch
        sizes: a constant when both agree, else a :class:`_PerBatch`."""
        runs = []
        for k, batch in enumerate(_PROBE_BATCHES):
            feeds = {}
            for n, v in zip(node.input, ins):
                if not n:
                    continue
                if isinstance(v, _ShapeValue):
                    v = np.where(v.batch, batch, v.values).astype(v.values.dtype)
                elif isinstance(v, _PerBatch):
                    v = v.values[k]
                feeds[n] = v
            runs.append(self._evaluate(node, feeds))
        return [
            a if a.shape == b.shape and np.array_equal(a, b) else _PerBatch((a, b))
            for a, b in zip(*runs)
        ]

    def _if(self, node: Any, ins: list[Any], env: ChainMap) -> list[Any]:
        cond = ins[0]
        if not isinstance(cond, np.ndarray):
            raise NotExpandableError(
                f"cannot expand ONNX node {node.name!r} (If): its branch depends on the input, "
                "which is data-dependent control flow, not a polynomial map."
            )
        attrs = {a.name: a.g for a in node.attribute}
        branch = attrs["then_branch" if bool(np.asarray(cond).reshape(-1)[0]) else "else_branch"]
        scope = env.new_child()
        self._walk(branch.node, scope)
        return [scope[o.name] for o in branch.output]

    # ---------------------------------------------------------------- helpers for handlers

    def const_ints(self, value: Any, node: Any, what: str) -> list[int] | None:
        if value is None:
            return None
        if not isinstance(value, np.ndarray):
            raise _unsupported(node, f"its {what} depend on the input; they must be constants")
        return [int(v) for v in np.asarray(value).reshape(-1)]


def _attributes(node: Any) -> dict[str, Any]:
    from onnx import helper

    out = {}
    for a in node.attribute:
        value = helper.get_attribute_value(a)
        if isinstance(value, bytes):
            value = value.decode()
        out[a.name] = value
    return out


# -------------------------------------------------------------------- handlers
# Each handler(builder, node, inputs, attributes) returns the node's output value(s); inputs are
# _Run (depends on the model input), np.ndarray (constant), _ShapeValue or None (absent).

_HANDLERS: dict[str, Callable[..., Any]] = {}
_NO_FOLD = frozenset({"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike"})


def _handles(*ops: str) -> Callable:
    def register(fn: Callable) -> Callable:
        for op in ops:
            _HANDLERS[op] = fn
        return fn

    return register


def _is_const(v: Any) -> bool:
    return isinstance(v, np.ndarray)


def _operand(v: Any, node: Any) -> Any:
    if isinstance(v, (_ShapeValue, _PerBatch)):
        raise _unsupported(node, "it does arithmetic with the batch size")
    return v


_BINARY = {"Add": operator.add, "Sub": operator.sub, "Mul": operator.mul}


@_handles("Add", "Sub", "Mul")
def _binary(b: _Builder, node, ins, attrs):
    x, y = (_operand(v, node) for v in ins)
    if node.op_type == "Add":
        fused = _fuse_bias(b, node, x, y) or _fuse_bias(b, node, y, x, flip=True)
        if fused is not None:
            return fused
    return b.function(_BINARY[node.op_type], x, y, node=node)


def _fuse_bias(b: _Builder, node, x, c, flip: bool = False) -> _Run | None:
    """MatMul then Add of a constant vector: the bias of the MatMul's nn.Linear."""
    name = node.input[1 if flip else 0]
    linear = b.fusable.get(name)
    if linear is None or not _is_const(c) or b.consumers.get(name, 0) != 1:
        return None
    if name in b.graph_outputs or c.size != linear.out_features or c.ndim > 1 + 0:
        return None
    with torch.no_grad():
        linear.bias = nn.Parameter(torch.from_numpy(np.array(c, copy=True).reshape(-1)))
    del b.fusable[name]
    return _Run(x.node, tuple(p + linear.bias for p in x.probes))


@_handles("Div")
def _div(b: _Builder, node, ins, attrs):
    x, y = (_operand(v, node) for v in ins)
    if _is_const(y):
        return b.function(operator.truediv, x, y, node=node)
    return b.refused(node, torch.div, x, y)


@_handles("Pow")
def _pow(b: _Builder, node, ins, attrs):
    x, y = (_operand(v, node) for v in ins)
    if _is_const(y) and y.size == 1 and isinstance(x, _Run):
        e = float(np.asarray(y).reshape(-1)[0])
        if e.is_integer() and e >= 0 and y.ndim <= len(x.shape):
            return b.function(operator.pow, x, int(e), node=node)
    return b.refused(node, torch.pow, x, y)


@_handles("Neg")
def _neg(b: _Builder, node, ins, attrs):
    return b.function(operator.neg, ins[0], node=node)


@_handles("Sum", "Mean")
def _sum(b: _Builder, node, ins, attrs):
    total = ins[0]
    for i, v in enumerate(ins[1:], 1):
        total = b.function(operator.add, total, v, node=node, name=f"{node.name}_{i}")
    if node.op_type == "Mean" and len(ins) > 1:
        total = b.function(operator.truediv, total, float(len(ins)), node=node)
    return total


@_handles("Identity", "Dropout")
def _identity(b: _Builder, node, ins, attrs):
    if node.op_type == "Dropout" and len(node.output) > 1 and node.output[1]:
        if b.consumers.get(node.output[1]) or node.output[1] in b.graph_outputs:
            raise _unsupported(node, "its mask output is used")
    return [ins[0], None]


@_handles("Cast", "CastLike")
def _cast(b: _Builder, node, ins, attrs):
    x = ins[0]
    if node.op_type == "Cast":
        dtype = _np_dtype(attrs["to"])
    else:
        dtype = ins[1].dtype if _is_const(ins[1]) else ins[1].probes[0].numpy().dtype
    if dtype.kind == "f":
        return b.method("to", x, _torch_dtype(dtype), node=node)
    return b.refused(node, functools.partial(_cast_to, dtype=_torch_dtype(dtype)), x)


def _cast_to(x: Tensor, dtype: torch.dtype) -> Tensor:
    return x.to(dtype)


# ---- affine layers


def _linear(weight: np.ndarray, bias: np.ndarray | None) -> nn.Linear:
    out_f, in_f = weight.shape
    dtype = _torch_dtype(weight.dtype)
    layer = nn.Linear(in_f, out_f, bias=bias is not None, dtype=dtype)
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(np.array(weight, copy=True)))
        if bias is not None:
            layer.bias.copy_(torch.from_numpy(np.array(bias, copy=True).astype(weight.dtype)))
    return layer


@_handles("Gemm")
def _gemm(b: _Builder, node, ins, attrs):
    a, w = ins[0], ins[1]
    c = ins[2] if len(ins) > 2 else None
    alpha, beta = float(attrs.get("alpha", 1.0)), float(attrs.get("beta", 1.0))
    if attrs.get("transA", 0):
        a = b.function(torch.transpose, a, 0, 1, node=node, name=f"{node.name}_transA")
    if isinstance(a, _Run) and _is_const(w) and (c is None or _is_const(c)):
        weight = w if attrs.get("transB", 0) else w.T
        weight = (weight * alpha).astype(w.dtype) if alpha != 1.0 else weight
        n_out = weight.shape[0]
        bias = None
        extra = None
        if c is not None:
            cb = (c * beta).astype(c.dtype) if beta != 1.0 else c
            if cb.size in (1, n_out) and cb.ndim <= 2 and (cb.ndim < 2 or cb.shape[0] == 1):
                bias = np.broadcast_to(cb.reshape(-1), (n_out,))
            else:
                extra = cb
        out = b.module(_linear(np.asarray(weight), bias), a, node=node)
        if extra is not None:
            out = b.function(operator.add, out, extra, node=node, name=f"{node.name}_C")
        return out
    if attrs.get("transB", 0):
        w = (
            np.ascontiguousarray(w.T)
            if _is_const(w)
            else b.function(torch.transpose, w, 0, 1, node=node, name=f"{node.name}_transB")
        )
    out = b.function(torch.matmul, a, w, node=node)
    if alpha != 1.0:
        out = b.function(operator.mul, out, alpha, node=node, name=f"{node.name}_alpha")
    if c is not None:
        cb = b.function(operator.mul, c, beta, node=node) if beta != 1.0 else c
        out = b.function(operator.add, out, cb, node=node, name=f"{node.name}_C")
    return out


@_handles("MatMul")
def _matmul(b: _Builder, node, ins, attrs):
    x, w = ins
    if isinstance(x, _Run) and _is_const(w) and w.ndim == 2 and len(x.shape) >= 2:
        layer = _linear(np.ascontiguousarray(w.T), None)
        out = b.module(layer, x, node=node)
        b.fusable[node.output[0]] = layer
        return out
    return b.function(torch.matmul, x, w, node=node)


@_handles("Einsum")
def _einsum(b: _Builder, node, ins, attrs):
    return b.function(torch.einsum, attrs["equation"], *ins, node=node)


def _pads(b: _Builder, node, attrs, x: _Run, kernel, strides, dilations) -> tuple[list, list]:
    nd = len(kernel)
    auto = attrs.get("auto_pad", "NOTSET")
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        begin, end = [], []
        for i in range(nd):
            size = x.shape[2 + i]
            out = -(-size // strides[i])
            total = max(0, (out - 1) * strides[i] + (kernel[i] - 1) * dilations[i] + 1 - size)
            small, big = total // 2, total - total // 2
            begin.append(small if auto == "SAME_UPPER" else big)
            end.append(big if auto == "SAME_UPPER" else small)
        return begin, end
    if auto == "VALID":
        return [0] * nd, [0] * nd
    pads = list(attrs.get("pads", [0] * (2 * nd)))
    return pads[:nd], pads[nd:]


def _pad_first(b: _Builder, node, x: _Run, begin, end) -> _Run:
    """Asymmetric zero padding as F.pad (torch's layers pad both sides alike)."""
    flat: list[int] = []
    for lo, hi in zip(reversed(begin), reversed(end)):
        flat += [lo, hi]
    return b.function(F.pad, x, flat, node=node, name=f"{node.name}_pad")


def _asymmetric(
    b: _Builder, node, x: _Run, begin, end, strides, kernel, dilations
) -> tuple[list, Any, _Run]:
    """Asymmetric zero padding: pad both sides by the larger amount and crop the output.

    Output i reads input from i*stride - pad; padding (p - begin) more on the left shifts the
    outputs by whole positions when the stride divides it, so a crop keeps the ordinary
    Conv/AvgPool layers polynet expands. Otherwise an F.pad goes first (it runs, but polynet
    has no expansion rule for it).
    """
    pad = [max(lo, hi) for lo, hi in zip(begin, end)]
    if all((p - lo) % s == 0 for p, lo, s in zip(pad, begin, strides)):
        crop = []
        for i, (p, lo, hi, s) in enumerate(zip(pad, begin, end, strides)):
            size = x.shape[2 + i]
            wanted = (size + lo + hi - dilations[i] * (kernel[i] - 1) - 1) // s + 1
            first = (p - lo) // s
            crop.append(slice(first, first + wanted))
        return pad, crop, x
    return [0] * len(begin), None, _pad_first(b, node, x, begin, end)


def _cropped(b: _Builder, node, out: _Run, crop) -> _Run:
    if crop is None:
        return out
    key = (slice(None), slice(None), *crop)
    return b.function(operator.getitem, out, key, node=node, name=f"{node.name}_crop")


_CONV = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
_AVG = {1: nn.AvgPool1d, 2: nn.AvgPool2d, 3: nn.AvgPool3d}
_BN = {2: nn.BatchNorm1d, 3: nn.BatchNorm1d, 4: nn.BatchNorm2d, 5: nn.BatchNorm3d}


def _conv_operands(node, ins, layers: dict, what: str):
    """A (transposed) convolution's input, constant weight and bias, kernel and rank."""
    x, w = ins[0], ins[1]
    bias = ins[2] if len(ins) > 2 else None
    if not (isinstance(x, _Run) and _is_const(w) and (bias is None or _is_const(bias))):
        raise _unsupported(node, "its weights depend on the input; they must be constants")
    kernel = list(w.shape[2:])
    if len(kernel) not in layers:
        raise _unsupported(node, f"{len(kernel)}-d {what}")
    return x, w, bias, kernel, len(kernel)


@_handles("Conv")
def _conv(b: _Builder, node, ins, attrs):
    x, w, bias, kernel, nd = _conv_operands(node, ins, _CONV, "convolution")
    strides = list(attrs.get("strides", [1] * nd))
    dilations = list(attrs.get("dilations", [1] * nd))
    group = int(attrs.get("group", 1))
    begin, end = _pads(b, node, attrs, x, kernel, strides, dilations)
    crop = None
    if begin != end:
        begin, crop, x = _asymmetric(b, node, x, begin, end, strides, kernel, dilations)
    layer = _CONV[nd](
        w.shape[1] * group,
        w.shape[0],
        kernel,
        stride=strides,
        padding=begin,
        dilation=dilations,
        groups=group,
        bias=bias is not None,
        dtype=_torch_dtype(w.dtype),
    )
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(np.array(w, copy=True)))
        if bias is not None:
            layer.bias.copy_(torch.from_numpy(np.array(bias, copy=True)))
    return _cropped(b, node, b.module(layer, x, node=node), crop)


_CONV_T = {1: nn.ConvTranspose1d, 2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}


@_handles("ConvTranspose")
def _conv_transpose(b: _Builder, node, ins, attrs):
    x, w, bias, kernel, nd = _conv_operands(node, ins, _CONV_T, "transposed convolution")
    if attrs.get("auto_pad", "NOTSET") not in ("NOTSET", "VALID") or "output_shape" in attrs:
        raise _unsupported(node, "auto_pad or output_shape (give explicit pads instead)")
    pads = list(attrs.get("pads", [0] * 2 * nd))
    if pads[:nd] != pads[nd:]:
        raise _unsupported(node, "asymmetric padding of a transposed convolution")
    group = int(attrs.get("group", 1))
    layer = _CONV_T[nd](
        w.shape[0],
        w.shape[1] * group,
        kernel,
        stride=list(attrs.get("strides", [1] * nd)),
        padding=pads[:nd],
        output_padding=list(attrs.get("output_padding", [0] * nd)),
        dilation=list(attrs.get("dilations", [1] * nd)),
        groups=group,
        bias=bias is not None,
        dtype=_torch_dtype(w.dtype),
    )
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(np.array(w, copy=True)))
        if bias is not None:
            layer.bias.copy_(torch.from_numpy(np.array(bias, copy=True)))
    return b.module(layer, x, node=node)


@_handles("AveragePool")
def _avgpool(b: _Builder, node, ins, attrs):
    x = ins[0]
    kernel = list(attrs["kernel_shape"])
    nd = len(kernel)
    strides = list(attrs.get("strides", [1] * nd))
    dilations = list(attrs.get("dilations", [1] * nd))
    if any(d != 1 for d in dilations):
        raise _unsupported(node, "dilated average pooling has no torch layer")
    include = bool(attrs.get("count_include_pad", 0))
    begin, end = _pads(b, node, attrs, x, kernel, strides, dilations)
    if begin != end:
        if not include:
            raise _unsupported(node, "asymmetric padding that is not counted in the average")
        begin, crop, x = _asymmetric(b, node, x, begin, end, strides, kernel, dilations)
    else:
        crop = None
    layer = _AVG[nd](
        kernel,
        stride=strides,
        padding=begin,
        ceil_mode=bool(attrs.get("ceil_mode", 0)),
        count_include_pad=include,
    )
    return _cropped(b, node, b.module(layer, x, node=node), crop)


@_handles("GlobalAveragePool")
def _global_avgpool(b: _Builder, node, ins, attrs):
    x = ins[0]
    return b.function(torch.mean, x, dim=tuple(range(2, len(x.shape))), keepdim=True, node=node)


@_handles("BatchNormalization")
def _batchnorm(b: _Builder, node, ins, attrs):
    x, scale, shift, mean, var = ins[:5]
    if attrs.get("training_mode", 0):
        raise NotExpandableError(
            f"cannot expand ONNX node {node.name!r} (BatchNormalization): it was exported in "
            "training mode, where it normalises with batch statistics; export with "
            "model.eval()."
        )
    if not all(_is_const(v) for v in (scale, shift, mean, var)):
        raise _unsupported(node, "its statistics depend on the input; they must be constants")
    rank = len(x.shape)
    if rank not in _BN:
        raise _unsupported(node, f"a rank-{rank} input")
    layer = _BN[rank](
        scale.size, eps=float(attrs.get("epsilon", 1e-5)), dtype=_torch_dtype(scale.dtype)
    )
    with torch.no_grad():
        for name, value in (
            ("weight", scale),
            ("bias", shift),
            ("running_mean", mean),
            ("running_var", var),
        ):
            getattr(layer, name).copy_(torch.from_numpy(np.array(value, copy=True)))
    return [b.module(layer, x, node=node)] + [None] * (len(node.output) - 1)


# ---- shapes and indexing


@_handles("Shape")
def _shape(b: _Builder, node, ins, attrs):
    x = ins[0]
    rank = len(x.shape)
    start = int(attrs.get("start", 0))
    end = attrs.get("end")
    start = max(0, start + rank if start < 0 else start)
    end = rank if end is None else max(0, int(end) + rank if int(end) < 0 else int(end))
    values = np.array(x.shape[start:end], dtype=np.int64)
    batch = np.array([i in x.batch_axes for i in range(rank)][start:end], dtype=bool)
    if not batch.any():
        return values
    return _ShapeValue(values, batch, x, min(x.batch_axes))


def _full_with_batch(x: Tensor, sizes: list, axis: int, value: float, dtype) -> Tensor:
    """A constant tensor whose None sizes are x's batch size (ONNX ConstantOfShape)."""
    return x.new_full([x.shape[axis] if s is None else s for s in sizes], value, dtype=dtype)


@_handles("ConstantOfShape")
def _constant_of_shape(b: _Builder, node, ins, attrs):
    shape = ins[0]
    if not isinstance(shape, _ShapeValue) or shape.source is None:
        raise _unsupported(node, "its shape depends on the values of the input")
    from onnx import numpy_helper

    value = attrs.get("value")
    fill = numpy_helper.to_array(value) if value is not None else np.zeros(1, np.float32)
    sizes = [None if m else int(v) for v, m in zip(shape.values, shape.batch)]
    return b.function(
        _full_with_batch,
        shape.source,
        sizes,
        shape.axis,
        fill.reshape(-1)[0].item(),
        _torch_dtype(fill.dtype),
        node=node,
    )


@_handles("Size")
def _size(b: _Builder, node, ins, attrs):
    raise _unsupported(node, "the number of elements depends on the batch size")


def _target(value: Any, node: Any) -> list[Any]:
    if isinstance(value, _ShapeValue):
        return [_BATCH if m else int(v) for v, m in zip(value.values, value.batch)]
    if isinstance(value, _PerBatch):
        a, b = (v.reshape(-1) for v in value.values)
        if a.shape != b.shape or a.dtype.kind not in "iu":
            raise _unsupported(node, "its target shape's length depends on the batch size")
        target: list[Any] = []
        for u, w in zip(a.tolist(), b.tolist()):
            if u == w:
                target.append(int(u))
            elif (u, w) == _PROBE_BATCHES:
                target.append(_BATCH)
            else:
                raise _unsupported(node, "its target shape computes with the batch size")
        return target
    if _is_const(value):
        return [int(v) for v in value.reshape(-1)]
    raise _unsupported(node, "its target shape depends on the values of the input")


@_handles("Reshape")
def _reshape(b: _Builder, node, ins, attrs):
    x, shape = ins
    if not isinstance(x, _Run):
        raise _unsupported(node, "a constant reshaped to a shape with the batch size")
    target = _target(shape, node)
    batch_axes = x.batch_axes
    if (
        _is_const(shape)
        and target
        and 0 in batch_axes
        and b.declared_batch is not None
        and target[0] == b.declared_batch
    ):
        target[0] = _BATCH  # a fixed-batch export baked its batch size into the shape
    if not attrs.get("allowzero", 0):
        target = [
            (_BATCH if i in batch_axes else x.shape[i]) if t == 0 else t
            for i, t in enumerate(target)
        ]
    n_batch = sum(t is _BATCH for t in target)
    if n_batch > 1:
        raise _unsupported(node, "its target shape holds the batch size twice")
    if n_batch == 1:
        per_sample = math.prod(d for i, d in enumerate(x.shape) if i not in batch_axes)
        fixed = math.prod(t for t in target if t is not _BATCH and t != -1)
        target = [
            None if t is _BATCH else (per_sample // max(fixed, 1) if t == -1 else t) for t in target
        ]
        if per_sample == 0:  # -1 cannot stand for the batch next to an empty axis
            return b.function(_reshape_batch, x, tuple(target), batch_axes[0], node=node)
        target = [-1 if t is None else t for t in target]
    return b.function(torch.reshape, x, tuple(target), node=node)


def _reshape_batch(x: Tensor, sizes: tuple, axis: int) -> Tensor:
    """Reshape to ``sizes`` with None standing for x's batch size (an empty sample)."""
    return x.reshape([x.shape[axis] if s is None else s for s in sizes])


@_handles("Flatten")
def _flatten(b: _Builder, node, ins, attrs):
    x = ins[0]
    rank = len(x.shape)
    axis = int(attrs.get("axis", 1))
    axis = axis + rank if axis < 0 else axis
    if axis == 1 and rank > 1:
        return b.function(torch.flatten, x, 1, node=node)
    batch = set(x.batch_axes)
    if all(i < axis for i in batch):
        target = (-1, math.prod(x.shape[axis:]))
    else:
        target = (math.prod(x.shape[:axis]), -1)
    return b.function(torch.reshape, x, target, node=node)


@_handles("Transpose")
def _transpose(b: _Builder, node, ins, attrs):
    x = ins[0]
    perm = attrs.get("perm") or list(reversed(range(len(x.shape))))
    return b.function(torch.permute, x, tuple(int(p) for p in perm), node=node)


def _axes(b: _Builder, node, ins, attrs) -> list[int] | None:
    if len(ins) > 1 and ins[1] is not None:
        return b.const_ints(ins[1], node, "axes")
    if "axes" in attrs:
        return [int(a) for a in attrs["axes"]]
    return None


@_handles("Unsqueeze")
def _unsqueeze(b: _Builder, node, ins, attrs):
    x = ins[0]
    axes = _axes(b, node, ins, attrs) or []
    rank = len(x.shape) + len(axes)
    out = x
    for i, axis in enumerate(sorted(_norm_axis(a, rank, node) for a in axes)):
        out = b.function(torch.unsqueeze, out, axis, node=node, name=f"{node.name}_{i}")
    return out


@_handles("Squeeze")
def _squeeze(b: _Builder, node, ins, attrs):
    x = ins[0]
    axes = _axes(b, node, ins, attrs)
    rank = len(x.shape)
    if axes is None:
        axes = [i for i, d in enumerate(x.shape) if d == 1 and i not in x.batch_axes]
    out = x
    for i, axis in enumerate(sorted((_norm_axis(a, rank, node) for a in axes), reverse=True)):
        out = b.function(torch.squeeze, out, axis, node=node, name=f"{node.name}_{i}")
    return out


@_handles("Gather")
def _gather(b: _Builder, node, ins, attrs):
    x, idx = ins
    if not isinstance(x, _Run):
        raise _unsupported(node, "a constant indexed by a value that depends on the input")
    rank = len(x.shape)
    axis = _norm_axis(int(attrs.get("axis", 0)), rank, node)
    if not _is_const(idx):
        return b.refused(node, functools.partial(_take, axis=axis), x, idx)
    if axis in x.batch_axes:
        raise _unsupported(node, "it indexes the batch axis")
    size = x.shape[axis]
    idx = np.where(idx < 0, idx + size, idx).astype(np.int64)
    key: list[Any] = [slice(None)] * axis
    key.append(int(idx) if idx.ndim == 0 else idx.tolist())
    return b.function(operator.getitem, x, tuple(key), node=node)


def _take(x: Tensor, index: Tensor, axis: int) -> Tensor:
    return torch.index_select(x, axis, index.reshape(-1).long()).reshape(
        *x.shape[:axis], *index.shape, *x.shape[axis + 1 :]
    )


def _probe_values(v: Any) -> tuple[np.ndarray, np.ndarray]:
    """A value at the two probe batches, as arrays."""
    if isinstance(v, _Run):
        return tuple(p.detach().cpu().numpy() for p in v.probes)  # type: ignore[return-value]
    if isinstance(v, _PerBatch):
        return v.values
    return (np.asarray(v), np.asarray(v))


def _scatter_codes(op: str, shape, indices: np.ndarray, updates_shape, axis: int) -> np.ndarray:
    """For each entry of a scatter's output: the flat index of the update written there (the
    last one for a repeated index, as onnxruntime does), or -1 where data is kept."""
    codes = np.full(shape, -1, dtype=np.int64)
    written = np.arange(math.prod(updates_shape), dtype=np.int64).reshape(updates_shape)
    indices = np.asarray(indices).astype(np.int64)
    if op == "ScatterND":
        k = indices.shape[-1]
        rows = indices.reshape(-1, k)
        codes[tuple(rows.T)] = written.reshape(rows.shape[0], *shape[k:])
    else:  # ScatterElements
        indices = np.where(indices < 0, indices + shape[axis], indices)
        np.put_along_axis(codes, indices, written, axis)
    return codes


def _scatter_rows(data: Tensor, updates: Tensor, keep: Tensor, src: Tensor, axes) -> Tensor:
    """ONNX ScatterND/ScatterElements written sample by sample: each sample's output is its
    data where ``keep`` is 1 and its updates gathered at ``src`` elsewhere (affine)."""
    data_axis, updates_axis = axes
    d = data.movedim(data_axis, 0)
    flat = d.reshape(d.shape[0], -1)
    u = updates.movedim(updates_axis, 0).reshape(d.shape[0], -1)
    out = flat * keep + u[:, src] * (1 - keep)
    return out.reshape(d.shape).movedim(0, data_axis)


def _scatter_fill(data: Tensor, keep: Tensor, fill: Tensor, data_axis: int) -> Tensor:
    """A scatter of constant updates: each sample's data where ``keep`` is 1, ``fill`` else."""
    d = data.movedim(data_axis, 0)
    out = d.reshape(d.shape[0], -1) * keep + fill
    return out.reshape(d.shape).movedim(0, data_axis)


def _one_batch_axis(v: Any, node: Any, what: str) -> int | None:
    axes = v.batch_axes if isinstance(v, (_Run, _PerBatch)) else ()
    if len(axes) > 1:
        raise _unsupported(node, f"its {what} has the batch size on more than one axis")
    return axes[0] if axes else None


@_handles("ScatterND", "ScatterElements")
def _scatter(b: _Builder, node, ins, attrs):
    """Item assignment (``out[:, :2] = h``): affine in data and updates when the indices are
    constants, or enumerate the samples (exporters build them from the batch size) and
    address the same entries in every sample."""
    data, indices, updates = ins[:3]
    op = node.op_type
    reduction = attrs.get("reduction", "none")
    if reduction != "none":
        raise NotExpandableError(
            f"cannot expand ONNX node {node.name!r} ({op}) with reduction={reduction!r}: "
            "polynet reads scatters with reduction='none' (item assignment) only; export "
            "plain assignment (out[idx] = v), or index_add/scatter_add written as an addition."
        )
    if isinstance(indices, _Run):
        raise NotExpandableError(
            f"cannot expand ONNX node {node.name!r} ({op}): its indices depend on the input "
            "values, so where the updates go changes with the input; that is not a polynomial "
            "map. Index with constants."
        )
    if not isinstance(data, _Run):
        raise _unsupported(node, "it writes into a constant that does not hold the batch axis")
    data_axis = _one_batch_axis(data, node, "data")
    updates_axis = _one_batch_axis(updates, node, "updates")
    if data_axis is None or (isinstance(updates, _Run) and updates_axis is None):
        raise _unsupported(node, "its data or its updates have no batch axis")
    axis = _norm_axis(int(attrs.get("axis", 0)), len(data.shape), node)
    if any(u.size == 0 for u in _probe_values(updates)):  # an empty slice assigned
        return data
    per_sample = None
    for d, idx, u in zip(*(_probe_values(v) for v in (data, indices, updates))):
        batch = d.shape[data_axis]
        codes = np.moveaxis(_scatter_codes(op, d.shape, idx, u.shape, axis), data_axis, 0)
        codes = codes.reshape(batch, -1)
        if updates_axis is not None:  # the update's sample must be the sample it goes to
            where = np.unravel_index(np.maximum(codes, 0), u.shape)
            sample = np.broadcast_to(np.arange(batch)[:, None], codes.shape)
            if np.any((codes >= 0) & (where[updates_axis] != sample)):
                raise NotExpandableError(
                    f"cannot expand ONNX node {node.name!r} ({op}): it writes one sample's "
                    "values into another sample (its indices address the batch axis), which "
                    "mixes the samples of a batch."
                )
            rest = [w for i, w in enumerate(where) if i != updates_axis]
            rest_shape = [s for i, s in enumerate(u.shape) if i != updates_axis]
            flat = np.ravel_multi_index(rest, rest_shape) if rest else np.zeros_like(codes)
            codes = np.where(codes >= 0, flat, -1)
        if not (codes == codes[:1]).all() or (
            per_sample is not None and (codes[0] != per_sample).any()
        ):
            raise NotExpandableError(
                f"cannot expand ONNX node {node.name!r} ({op}): it writes different entries "
                "in different samples (indices that address the batch axis, or that depend on "
                "the input values), so it is not the same polynomial map for every sample."
            )
        per_sample = codes[0]
    if (per_sample < 0).all():  # nothing written (an empty slice assigned): data unchanged
        return data
    keep = (per_sample < 0).astype(data.probes[0].numpy().dtype)
    src = np.maximum(per_sample, 0)
    if isinstance(updates, _Run):
        return b.function(
            _scatter_rows, data, updates, keep, src, (data_axis, updates_axis), node=node
        )
    fills = []
    for u in _probe_values(updates):
        rows = u.reshape(1, -1) if updates_axis is None else np.moveaxis(u, updates_axis, 0)
        rows = rows.reshape(rows.shape[0], -1)[:, src]
        fills.append(rows)
    if any(not (f == fills[0][:1]).all() for f in fills):
        raise _unsupported(node, "its constant updates differ between samples")
    fill = np.where(per_sample >= 0, fills[0][0], 0).astype(keep.dtype)
    return b.function(_scatter_fill, data, keep, fill, data_axis, node=node)


def _gather_rows(data: Tensor, src: Tensor, axes, sample_shape) -> Tensor:
    """ONNX GatherElements written sample by sample: each sample's entries at ``src``."""
    data_axis, out_axis = axes
    d = data.movedim(data_axis, 0)
    out = d.reshape(d.shape[0], -1)[:, src]
    return out.reshape(d.shape[0], *sample_shape).movedim(0, out_axis)


@_handles("GatherElements")
def _gather_elements(b: _Builder, node, ins, attrs):
    """``torch.gather`` with a constant index (expanded to the batch by the exporter): a
    selection of each sample's entries, the same in every sample."""
    data, indices = ins
    if isinstance(indices, _Run):
        return b.refused(node, _gather_along(int(attrs.get("axis", 0))), data, indices)
    if not isinstance(data, _Run):
        raise _unsupported(node, "a constant indexed by a value built from the batch size")
    data_axis = _one_batch_axis(data, node, "data")
    out_axis = _one_batch_axis(indices, node, "indices")
    if data_axis is None or out_axis is None:
        raise NotExpandableError(
            f"cannot expand ONNX node {node.name!r} (GatherElements): it selects samples of "
            "the batch (its indices address the batch axis), which mixes the samples."
        )
    axis = _norm_axis(int(attrs.get("axis", 0)), len(data.shape), node)
    per_sample = None
    for d, idx in zip(*(_probe_values(v) for v in (data, indices))):
        idx = np.asarray(idx).astype(np.int64)
        idx = np.where(idx < 0, idx + d.shape[axis], idx)
        codes = np.take_along_axis(np.arange(d.size).reshape(d.shape), idx, axis)
        codes = np.moveaxis(codes, out_axis, 0)
        batch = codes.shape[0]
        where = np.unravel_index(codes.reshape(batch, -1), d.shape)
        if np.any(where[data_axis] != np.arange(batch)[:, None]):
            raise NotExpandableError(
                f"cannot expand ONNX node {node.name!r} (GatherElements): it reads one "
                "sample's values into another sample, which mixes the samples of a batch."
            )
        rest = [w for i, w in enumerate(where) if i != data_axis]
        rest_shape = [n for i, n in enumerate(d.shape) if i != data_axis]
        flat = np.ravel_multi_index(rest, rest_shape) if rest else np.zeros_like(where[0])
        if not (flat == flat[:1]).all() or (
            per_sample is not None and (flat[0] != per_sample).any()
        ):
            raise NotExpandableError(
                f"cannot expand ONNX node {node.name!r} (GatherElements): it reads different "
                "entries in different samples, so it is not one polynomial map per sample."
            )
        per_sample, sample_shape = flat[0], codes.shape[1:]
    return b.function(
        _gather_rows, data, per_sample, (data_axis, out_axis), tuple(sample_shape), node=node
    )


def _gather_along(axis: int) -> Callable[[Tensor, Tensor], Tensor]:
    return functools.partial(_gather_elements_op, axis=axis)


def _gather_elements_op(x: Tensor, index: Tensor, axis: int) -> Tensor:
    size = x.shape[axis]
    index = index.long()
    # ONNX counts negative indices from the end; out-of-range ones (which onnxruntime refuses)
    # only come from the random probe batches, and are clamped so the graph can be built.
    return torch.gather(x, axis, torch.where(index < 0, index + size, index).clamp(0, size - 1))


@_handles("Slice")
def _slice(b: _Builder, node, ins, attrs):
    x = ins[0]
    if len(ins) > 1:
        starts = b.const_ints(ins[1], node, "starts")
        ends = b.const_ints(ins[2], node, "ends")
        axes = b.const_ints(ins[3], node, "axes") if len(ins) > 3 else None
        steps = b.const_ints(ins[4], node, "steps") if len(ins) > 4 else None
    else:
        starts, ends = list(attrs["starts"]), list(attrs["ends"])
        axes = attrs.get("axes")
    rank = len(x.shape)
    axes = list(range(len(starts))) if axes is None else axes
    steps = [1] * len(starts) if steps is None else steps
    key: list[Any] = [slice(None)] * rank
    reversed_axes = []
    for start, end, axis, step in zip(starts, ends, axes, steps):
        axis = _norm_axis(int(axis), rank, node)
        if axis in x.batch_axes:
            if (start, step) == (0, 1) and end >= _INT64_MAX // 2:
                continue
            raise _unsupported(node, "it slices the batch axis")
        size = x.shape[axis]
        if step > 0:
            start = min(max(start + size if start < 0 else start, 0), size)
            end = min(max(end + size if end < 0 else end, 0), size)
            key[axis] = slice(start, end, step)
        else:
            start = min(max(start + size if start < 0 else start, -1), size - 1)
            end = min(max(end + size if end < 0 else end, -1), size - 1)
            reversed_axes.append((axis, list(range(start, end, step))))
    out = x
    if any(k != slice(None) for k in key):
        out = b.function(operator.getitem, x, tuple(key), node=node)
    for i, (axis, index) in enumerate(reversed_axes):
        k = (*([slice(None)] * axis), index)
        out = b.function(operator.getitem, out, k, node=node, name=f"{node.name}_rev{i}")
    return out


@_handles("Concat")
def _concat(b: _Builder, node, ins, attrs):
    parts = [_operand(v, node) for v in ins if v is not None]
    rank = max(len(v.shape) for v in parts)
    axis = _norm_axis(int(attrs["axis"]), rank, node)
    return b.function(torch.cat, list(parts), dim=axis, node=node)


@_handles("Split")
def _split(b: _Builder, node, ins, attrs):
    x = ins[0]
    rank = len(x.shape)
    axis = _norm_axis(int(attrs.get("axis", 0)), rank, node)
    size = x.shape[axis]
    sizes = (
        b.const_ints(ins[1], node, "split sizes") if len(ins) > 1 and ins[1] is not None else None
    )
    if sizes is None:
        sizes = attrs.get("split")
    n = len([o for o in node.output])
    if not sizes:
        if "num_outputs" in attrs:
            n = int(attrs["num_outputs"])
            chunk = -(-size // n)
            sizes = [min(chunk, size - i * chunk) for i in range(n)]
        else:
            sizes = [size // n] * n
    outs, start = [], 0
    for i, s in enumerate(sizes):
        key = (*([slice(None)] * axis), slice(start, start + int(s)))
        outs.append(b.function(operator.getitem, x, key, node=node, name=f"{node.name}_{i}"))
        start += int(s)
    return outs


@_handles("Expand")
def _expand(b: _Builder, node, ins, attrs):
    x, shape = ins
    if not isinstance(x, _Run):
        raise _unsupported(node, "a constant expanded to the batch size")
    target = _target(shape, node)
    rank = max(len(target), len(x.shape))
    src = [1] * (rank - len(x.shape)) + list(x.shape)
    batch = {i + rank - len(x.shape) for i in x.batch_axes}
    target = [1] * (rank - len(target)) + target
    out = []
    for i, (s, t) in enumerate(zip(src, target)):
        if i in batch:
            if t is not _BATCH and t != 1:
                raise _unsupported(node, "it expands the batch axis to a fixed size")
            out.append(-1)
        elif t is _BATCH:
            raise _unsupported(node, "it expands a fixed axis to the batch size")
        else:
            out.append(max(s, t))
    if rank > len(x.shape):
        x = b.function(
            torch.reshape,
            x,
            tuple(
                [1] * (rank - len(x.shape))
                + [-1 if i in x.batch_axes else d for i, d in enumerate(x.shape)]
            ),
            node=node,
            name=f"{node.name}_rank",
        )
    return b.method("expand", x, *out, node=node)


@_handles("Tile")
def _tile(b: _Builder, node, ins, attrs):
    repeats = b.const_ints(ins[1], node, "repeats")
    return b.method("repeat", ins[0], *repeats, node=node)


@_handles("Pad")
def _pad(b: _Builder, node, ins, attrs):
    x = ins[0]
    rank = len(x.shape)
    pads = b.const_ints(ins[1], node, "pads") if len(ins) > 1 else list(attrs["pads"])
    value = 0.0
    if len(ins) > 2 and ins[2] is not None:
        value = float(np.asarray(ins[2]).reshape(-1)[0])
    elif "value" in attrs:
        value = float(attrs["value"])
    axes = b.const_ints(ins[3], node, "axes") if len(ins) > 3 else None
    axes = list(range(rank)) if axes is None else [_norm_axis(a, rank, node) for a in axes]
    begin, end = [0] * rank, [0] * rank
    for i, axis in enumerate(axes):
        begin[axis], end[axis] = pads[i], pads[i + len(axes)]
    if begin[0] or end[0]:
        raise _unsupported(node, "it pads the batch axis")
    last = max([i for i in range(rank) if begin[i] or end[i]], default=0)
    flat: list[int] = []
    for axis in range(rank - 1, 0, -1):
        if axis <= last:
            flat += [begin[axis], end[axis]]
    flat = flat[: 2 * (rank - 1)]
    mode = {"constant": "constant", "reflect": "reflect", "edge": "replicate"}.get(
        attrs.get("mode", "constant")
    )
    if mode is None:
        raise _unsupported(node, f"pad mode {attrs.get('mode')!r}")
    kwargs = {"value": value} if mode == "constant" else {}
    return b.function(F.pad, x, flat, mode, node=node, **kwargs)


# ---- reductions


def _reduce_axes(b: _Builder, node, ins, attrs) -> tuple[tuple[int, ...] | None, bool]:
    axes = _axes(b, node, ins, attrs)
    keep = bool(attrs.get("keepdims", 1))
    if not axes:
        if attrs.get("noop_with_empty_axes", 0):
            return None, keep
        return tuple(range(len(ins[0].shape))), keep
    rank = len(ins[0].shape)
    return tuple(_norm_axis(a, rank, node) for a in axes), keep


@_handles("ReduceSum", "ReduceMean", "ReduceSumSquare")
def _reduce_linear(b: _Builder, node, ins, attrs):
    x = ins[0]
    axes, keep = _reduce_axes(b, node, ins, attrs)
    if node.op_type == "ReduceSumSquare":
        x = b.function(operator.mul, x, x, node=node, name=f"{node.name}_square")
    if axes is None:
        return x
    fn = torch.mean if node.op_type == "ReduceMean" else torch.sum
    return b.function(fn, x, dim=axes, keepdim=keep, node=node)


def _reduce_with(x: Tensor, fn: Callable, axes: tuple[int, ...], keepdim: bool) -> Tensor:
    return fn(x, dim=axes, keepdim=keepdim)


_NONLINEAR_REDUCE = {
    "ReduceMax": torch.amax,
    "ReduceMin": torch.amin,
    "ReduceL1": None,
    "ReduceL2": None,
    "ReduceLogSumExp": torch.logsumexp,
}


def _prod(x: Tensor, dim: tuple[int, ...], keepdim: bool) -> Tensor:
    for d in sorted(dim, reverse=True):
        x = torch.prod(x, dim=d, keepdim=keepdim)
    return x


@_handles("ReduceProd")
def _reduce_prod(b: _Builder, node, ins, attrs):
    axes, keep = _reduce_axes(b, node, ins, attrs)
    if axes is None:
        return ins[0]
    return b.function(_prod, ins[0], axes, keep, node=node)


def _l1(x: Tensor, dim: tuple[int, ...], keepdim: bool) -> Tensor:
    return torch.sum(torch.abs(x), dim=dim, keepdim=keepdim)


def _l2(x: Tensor, dim: tuple[int, ...], keepdim: bool) -> Tensor:
    return torch.sqrt(torch.sum(x * x, dim=dim, keepdim=keepdim))


@_handles(*_NONLINEAR_REDUCE)
def _reduce_refused(b: _Builder, node, ins, attrs):
    axes, keep = _reduce_axes(b, node, ins, attrs)
    if axes is None:
        return ins[0]
    fn = {"ReduceL1": _l1, "ReduceL2": _l2}.get(node.op_type) or (_NONLINEAR_REDUCE[node.op_type])
    return b.refused(node, functools.partial(_reduce_with, fn=fn, axes=axes, keepdim=keep), ins[0])


# ---- not polynomial: mapped to torch so the module runs, refused by polynet.expand


def _leaky_relu(x: Tensor, alpha: float) -> Tensor:
    return F.leaky_relu(x, alpha)


def _hard_sigmoid(x: Tensor, alpha: float, beta: float) -> Tensor:
    return torch.clamp(x * alpha + beta, 0.0, 1.0)


def _clip(x: Tensor, lo: float | None, hi: float | None) -> Tensor:
    return torch.clamp(x, lo, hi)


def _softmax(x: Tensor, axis: int, log: bool, legacy: bool) -> Tensor:
    fn = torch.log_softmax if log else torch.softmax
    if not legacy:
        return fn(x, dim=axis)
    # Before opset 13, (Log)Softmax normalises over all axes from `axis` on, flattened.
    return fn(torch.flatten(x, axis), dim=-1).reshape_as(x)


def _maximum(*xs: Tensor) -> Tensor:
    return functools.reduce(torch.maximum, xs)


def _minimum(*xs: Tensor) -> Tensor:
    return functools.reduce(torch.minimum, xs)


def _layer_norm(x: Tensor, scale, bias, axis: int, eps: float) -> Tensor:
    return F.layer_norm(x, x.shape[axis:], scale, bias, eps)


_UNARY: dict[str, Callable[[Tensor], Tensor]] = {
    "Relu": torch.relu,
    "Tanh": torch.tanh,
    "Sigmoid": torch.sigmoid,
    "Exp": torch.exp,
    "Log": torch.log,
    "Abs": torch.abs,
    "Sqrt": torch.sqrt,
    "Reciprocal": torch.reciprocal,
    "Erf": torch.erf,
    "Sin": torch.sin,
    "Cos": torch.cos,
    "Floor": torch.floor,
    "Ceil": torch.ceil,
    "Round": torch.round,
    "Sign": torch.sign,
    "Softplus": F.softplus,
    "Softsign": F.softsign,
    "Selu": F.selu,
    "HardSwish": F.hardswish,
    "Mish": F.mish,
    "Not": torch.logical_not,
}


@_handles(*_UNARY)
def _unary_refused(b: _Builder, node, ins, attrs):
    return b.refused(node, _UNARY[node.op_type], ins[0])


@_handles("LeakyRelu", "Elu", "Celu", "HardSigmoid", "Gelu", "Clip", "PRelu")
def _activation_refused(b: _Builder, node, ins, attrs):
    op = node.op_type
    x = ins[0]
    if op == "LeakyRelu":
        fn = functools.partial(_leaky_relu, alpha=float(attrs.get("alpha", 0.01)))
    elif op == "Elu":
        fn = functools.partial(F.elu, alpha=float(attrs.get("alpha", 1.0)))
    elif op == "Celu":
        fn = functools.partial(F.celu, alpha=float(attrs.get("alpha", 1.0)))
    elif op == "HardSigmoid":
        fn = functools.partial(
            _hard_sigmoid, alpha=float(attrs.get("alpha", 0.2)), beta=float(attrs.get("beta", 0.5))
        )
    elif op == "Gelu":
        fn = functools.partial(F.gelu, approximate=attrs.get("approximate", "none"))
    elif op == "PRelu":
        return b.refused(node, _prelu, x, ins[1])
    else:
        lo = attrs.get("min") if len(ins) < 2 or ins[1] is None else ins[1].item()
        hi = attrs.get("max") if len(ins) < 3 or ins[2] is None else ins[2].item()
        fn = functools.partial(_clip, lo=lo, hi=hi)
    return b.refused(node, fn, x)


def _prelu(x: Tensor, slope: Tensor) -> Tensor:
    return torch.where(x >= 0, x, x * slope)


@_handles("Softmax", "LogSoftmax")
def _softmax_refused(b: _Builder, node, ins, attrs):
    x = ins[0]
    legacy = b.opset < 13
    axis = _norm_axis(int(attrs.get("axis", 1 if legacy else -1)), len(x.shape), node)
    log = node.op_type == "LogSoftmax"
    return b.refused(node, functools.partial(_softmax, axis=axis, log=log, legacy=legacy), x)


@_handles("Max", "Min")
def _max_refused(b: _Builder, node, ins, attrs):
    return b.refused(node, _maximum if node.op_type == "Max" else _minimum, *ins)


@_handles("LayerNormalization")
def _layer_norm_refused(b: _Builder, node, ins, attrs):
    x = ins[0]
    axis = _norm_axis(int(attrs.get("axis", -1)), len(x.shape), node)
    scale = ins[1]
    bias = ins[2] if len(ins) > 2 else None
    fn = functools.partial(_layer_norm, axis=axis, eps=float(attrs.get("epsilon", 1e-5)))
    return [b.refused(node, fn, x, scale, bias)] + [None] * (len(node.output) - 1)


def _max_pool(x: Tensor, kernel, stride, padding, dilation, ceil_mode) -> Tensor:
    fn = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}[len(kernel)]
    return fn(x, kernel, stride, padding, dilation, ceil_mode)


@_handles("MaxPool")
def _max_pool_refused(b: _Builder, node, ins, attrs):
    x = ins[0]
    kernel = list(attrs["kernel_shape"])
    nd = len(kernel)
    strides = list(attrs.get("strides", [1] * nd))
    dilations = list(attrs.get("dilations", [1] * nd))
    begin, end = _pads(b, node, attrs, x, kernel, strides, dilations)
    if begin != end:
        raise _unsupported(node, "asymmetric max-pool padding")
    fn = functools.partial(
        _max_pool,
        kernel=kernel,
        stride=strides,
        padding=begin,
        dilation=dilations,
        ceil_mode=bool(attrs.get("ceil_mode", 0)),
    )
    return [b.refused(node, fn, x)] + [None] * (len(node.output) - 1)


def _global_max(x: Tensor) -> Tensor:
    return torch.amax(x, dim=tuple(range(2, x.dim())), keepdim=True)


@_handles("GlobalMaxPool")
def _global_max_refused(b: _Builder, node, ins, attrs):
    return b.refused(node, _global_max, ins[0])


_COMPARE = {
    "Equal": torch.eq,
    "Less": torch.lt,
    "Greater": torch.gt,
    "LessOrEqual": torch.le,
    "GreaterOrEqual": torch.ge,
    "Where": torch.where,
}


@_handles(*_COMPARE)
def _compare_refused(b: _Builder, node, ins, attrs):
    return b.refused(node, _COMPARE[node.op_type], *ins)


#: ONNX op types from_onnx turns into torch ops (any op with constant inputs is folded too).
SUPPORTED_OPS: tuple[str, ...] = tuple(sorted({*_HANDLERS, "If", "Constant"}))


# -------------------------------------------------------------------- the public function


def from_onnx(
    model: str | os.PathLike | bytes | Any,
    *,
    input_shape: Sequence[int] | Sequence[Sequence[int]] | Mapping[str, Any] | None = None,
) -> torch.fx.GraphModule:
    """An ONNX model as a ``torch.fx.GraphModule`` computing the same function.

    Parameters
    ----------
    model : str, os.PathLike, bytes or onnx.ModelProto
        The ``.onnx`` file, its bytes, or a loaded model.
    input_shape : tuple of int, tuple of shapes or dict, optional
        The shape of one sample (without the batch axis), needed when the ONNX input leaves
        axes other than the batch axis free; for a graph with several inputs, one shape per
        input in order or ``{input name: shape}`` (``module.input_shapes`` then holds all of
        them by ``forward()`` argument).

    Returns
    -------
    torch.fx.GraphModule
        In evaluation mode; Gemm/MatMul/Conv/BatchNormalization/AveragePool with constant
        weights are ``nn.Linear``/``nn.ConvNd``/``nn.BatchNormNd``/``nn.AvgPoolNd`` submodules,
        ops that are not polynomial are :class:`OnnxOp` submodules named after their ONNX
        node. ``module.input_shape`` is the shape of one sample. The first axis of each input
        is the batch axis and takes any size.

    Raises
    ------
    PolynetError
        The ``onnx`` package is missing, or the model uses an op outside
        :data:`SUPPORTED_OPS` or a shape that depends on the batch size in a way polynet
        cannot keep free. CheckpointError for a file that is missing or not ONNX.
    NotExpandableError
        Data-dependent control flow (If on a computed condition, Loop, Scan) or
        BatchNormalization exported in training mode.

    Examples
    --------
    >>> import onnx, numpy as np
    >>> from onnx import helper, numpy_helper, TensorProto
    >>> w = numpy_helper.from_array(np.array([[1.0, 2.0]], dtype=np.float32), "w")
    >>> graph = helper.make_graph(
    ...     [helper.make_node("Gemm", ["x", "w"], ["z"], transB=1),
    ...      helper.make_node("Mul", ["z", "z"], ["y"])],
    ...     "square", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 2])],
    ...     [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 1])], [w])
    >>> net = from_onnx(helper.make_model(graph))
    >>> net(torch.tensor([[1.0, 1.0]]))
    tensor([[9.]], grad_fn=<MulBackward0>)
    """
    from polynet.extras import require

    onnx = require("onnx", "reading ONNX models (from_onnx, polynet expand MODEL.onnx)")
    if isinstance(model, (str, os.PathLike)):
        path = os.fspath(model)
        if not os.path.isfile(path):
            raise CheckpointError(f"no ONNX file at {path!r}.")
        try:
            proto = onnx.load(path)
        except Exception as exc:  # noqa: BLE001 - protobuf raises DecodeError and others
            raise CheckpointError(f"{path!r} is not an ONNX model ({exc}).") from None
    elif isinstance(model, bytes):
        try:
            proto = onnx.load_from_string(model)
        except Exception as exc:  # noqa: BLE001
            raise CheckpointError(f"the bytes are not an ONNX model ({exc}).") from None
    elif isinstance(model, onnx.ModelProto):
        proto = model
    else:
        raise TypeError(
            f"model must be a path, bytes or onnx.ModelProto, got {type(model).__name__}."
        )
    if not proto.graph.node and not proto.graph.output:
        raise CheckpointError("the ONNX model has an empty graph.")
    _check_opset(proto, onnx.defs.onnx_opset_version(), model)
    copy = onnx.ModelProto()
    copy.CopyFrom(proto)  # the walk names unnamed nodes; the caller's proto stays as it was
    try:
        return _Builder(copy, input_shape).run()
    except PolynetError:
        raise
    except (ValueError, TypeError, KeyError, IndexError) as exc:  # a damaged but parsable file
        where = f"{os.fspath(model)!r}" if isinstance(model, (str, os.PathLike)) else "the model"
        raise CheckpointError(
            f"{where} cannot be read as a network ({type(exc).__name__}: {exc}); the file is "
            "damaged or inconsistent. Export it again."
        ) from exc


def _check_opset(proto: Any, newest: int, source: Any) -> None:
    """Refuse a default-domain opset the installed onnx does not know: its operators may
    mean something this reader does not implement."""
    where = f"{os.fspath(source)!r}" if isinstance(source, (str, os.PathLike)) else "the model"
    for op in proto.opset_import:
        if op.domain in ("", "ai.onnx") and not 1 <= op.version <= newest:
            raise CheckpointError(
                f"{where} declares ONNX opset {op.version}, outside the opsets 1 to {newest} "
                "that the installed onnx package defines, so its operators cannot be read "
                "reliably. Export it again with a known opset (torch.onnx.export(..., "
                "opset_version=17)), or upgrade onnx if the opset is new."
            )
