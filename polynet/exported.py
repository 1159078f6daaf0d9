"""``torch.export`` program files (``.pt2``): written for any module, read without pickle.

A ``.pt2`` file (``torch.export.save``) holds a model's graph as JSON and its weights as raw
tensor bytes; no user class is needed to load it. ``torch.export.load`` may still run pickled
code: weights or constants marked ``use_pickle``, custom and opaque objects, and the example
inputs (``torch.load`` falling back to ``weights_only=False``). :func:`load_program` refuses
files holding custom or opaque objects (``pickle.loads``) before loading, and loads the rest
with every ``torch.load`` forced to ``weights_only=True`` (tensors and plain containers only).

:func:`program_module` turns the program's ATen graph into an ``fx.GraphModule`` of ordinary
torch ops that :func:`polynet.expand` takes: values that do not depend on the input (the
SLAF's coefficient bookkeeping, running statistics) are computed once and kept as buffers;
ATen ops on the input become their torch functions (``aten.linear`` → ``F.linear``,
``aten.batch_norm`` in evaluation → an affine map, ``aten.view`` → ``torch.reshape`` with a
free batch axis). An op without a translation keeps its ATen target, and ``polynet.expand``
refuses it naming it.

:func:`save_program` exports a module with an example input and writes the file, with
polynet's metadata (input shape, standardisation, data set) in ``extra/polynet.json``.
"""

from __future__ import annotations

import json
import operator
import os
import re
import zipfile
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from polynet.errors import CheckpointError, NotExpandableError

__all__ = ["save_program", "load_program", "program_module", "read_program_metadata"]

#: The extra file of a ``.pt2`` archive that holds polynet's metadata.
METADATA_FILE = "polynet.json"

_aten = torch.ops.aten


def _is_zip(path: Path) -> bool:
    return zipfile.is_zipfile(path)


def _pickled_payloads(path: Path) -> list[str]:
    """Entries of a .pt2 archive that ``torch.export.load`` would unpickle with ``pickle``
    itself (custom and opaque objects); ``torch.load`` payloads are forced weights-only."""
    with zipfile.ZipFile(path) as z:
        names = z.namelist()
    return [n for n in names if n.rsplit("/", 1)[-1].startswith(("custom_obj_", "opaque_obj_"))]


@contextmanager
def _weights_only():
    # torch.load reads this variable on every call: inside, even an explicit
    # weights_only=False (the example inputs' fallback) loads tensors only.
    old = os.environ.get("TORCH_FORCE_WEIGHTS_ONLY_LOAD")
    os.environ["TORCH_FORCE_WEIGHTS_ONLY_LOAD"] = "1"
    try:
        yield
    finally:
        if old is None:
            del os.environ["TORCH_FORCE_WEIGHTS_ONLY_LOAD"]
        else:
            os.environ["TORCH_FORCE_WEIGHTS_ONLY_LOAD"] = old


def load_program(path: str | os.PathLike[str]) -> tuple[Any, dict[str, Any]]:
    """Read a ``torch.export`` archive without running pickled code.

    Returns
    -------
    (ExportedProgram, dict)
        The program and polynet's metadata (empty when the file was written by
        ``torch.export.save`` directly).

    Raises
    ------
    CheckpointError
        The file is not a ``.pt2`` archive, holds pickled objects, or does not load.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no program file at {str(path)!r}; check the path.")
    if not _is_zip(path):
        raise CheckpointError(
            f"{str(path)!r} is not a torch.export archive (.pt2 files are zip archives written "
            "by torch.export.save); re-export the model with torch.export.save or polynet.save."
        )
    pickled = _pickled_payloads(path)
    if pickled:
        raise CheckpointError(
            f"{str(path)!r} holds pickled objects ({', '.join(pickled[:3])}), which could run "
            "code when loaded; polynet refuses them. Export a module whose state is tensors "
            "only, with the current torch.export.save."
        )
    extra = {METADATA_FILE: ""}
    try:
        with _weights_only():
            program = torch.export.load(str(path), extra_files=extra)
    except Exception as exc:  # torch raises many kinds here; the file is what was wrong
        raise CheckpointError(
            f"{str(path)!r} could not be loaded as a torch.export program "
            f"({type(exc).__name__}: {exc}); re-export it with this torch version "
            f"({torch.__version__})."
        ) from exc
    try:
        metadata = json.loads(extra[METADATA_FILE]) if extra[METADATA_FILE] else {}
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{str(path)!r}: its {METADATA_FILE} is not valid JSON.") from exc
    return program, metadata


def read_program_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """polynet's metadata of a ``.pt2`` file, without loading the program."""
    with zipfile.ZipFile(path) as z:
        for name in z.namelist():
            if name.endswith(f"extra/{METADATA_FILE}"):
                return json.loads(z.read(name))
    return {}


def save_program(
    model: nn.Module,
    path: str | os.PathLike[str],
    example_input: Tensor | tuple[Tensor, ...],
    metadata: dict[str, Any],
) -> Path:
    """Export ``model`` (in evaluation mode) on ``example_input`` (a tuple for a ``forward()``
    taking several tensors) and write ``path``.

    The batch axis is exported as dynamic when the model allows it, so the program runs on
    any batch size. Written to a temporary name in the same directory, then renamed.
    """
    from polynet.atomic import write_bytes_atomic

    was_training = model.training
    model.eval()
    try:
        program = _export(model, example_input)
    finally:
        model.train(was_training)
    import io

    buffer = io.BytesIO()
    torch.export.save(program, buffer, extra_files={METADATA_FILE: json.dumps(metadata)})
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(path, buffer.getvalue())
    return path


def _export(model: nn.Module, x: Tensor | tuple[Tensor, ...]) -> Any:
    args = tuple(x) if isinstance(x, (tuple, list)) else (x,)  # several inputs: one batch
    try:
        batch = torch.export.Dim("batch", min=1)
        dynamic = tuple({0: batch} for _ in args)
        return torch.export.export(model, args, dynamic_shapes=dynamic, strict=False)
    except Exception:  # a model that fixes its batch size: export it with the example's
        pass
    try:
        return torch.export.export(model, args, strict=False)
    except Exception as exc:
        raise CheckpointError(
            f"cannot export {type(model).__name__} with torch.export ({type(exc).__name__}: "
            f"{exc}); make forward() a fixed sequence of tensor ops (shape checks are fine), "
            "or save its state_dict and use module:Class on the command line."
        ) from exc


# --------------------------------------------------------------------------------------------
# ATen graph -> torch-op graph
# --------------------------------------------------------------------------------------------

_SKIP = {"_guards_fn"}


def _overload(name: str) -> list[Any]:
    packet = getattr(_aten, name, None)
    if packet is None:
        return []
    return [getattr(packet, o) for o in packet.overloads()]


def _table() -> dict[Any, Callable | str]:
    """ATen overload -> torch function (or a marker handled in :class:`_Translator`)."""
    table: dict[Any, Callable | str] = {}

    def put(names: str, target: Callable | str) -> None:
        for name in names.split():
            for op in _overload(name):
                table[op] = target

    put("linear", "linear")
    put("mm matmul bmm", operator.matmul)
    put("addmm", "addmm")
    put("mul mul_", operator.mul)
    put("add add_", "add")
    put("sub sub_", "sub")
    put("rsub", "rsub")
    put("div div_", operator.truediv)
    put("neg", operator.neg)
    put("pow", operator.pow)
    put("square", torch.square)
    put("view _unsafe_view reshape", "reshape")
    put("expand", "expand")
    put("t", "t")
    put("permute", torch.permute)
    put("transpose", torch.transpose)
    put("unsqueeze", torch.unsqueeze)
    put("squeeze", torch.squeeze)
    put("flatten", torch.flatten)
    put("cat concat", torch.cat)
    put("stack", torch.stack)
    put("sum", torch.sum)
    put("mean", torch.mean)
    put("select", "select")
    put("slice", "slice")
    put("clone contiguous alias detach lift_fresh_copy _to_copy to dropout", "identity")
    put("batch_norm _native_batch_norm_legit_no_training native_batch_norm", "batch_norm")
    put("conv1d", F.conv1d)
    put("conv2d", F.conv2d)
    put("convolution", "convolution")
    put("avg_pool1d", F.avg_pool1d)
    put("avg_pool2d", F.avg_pool2d)
    put("relu relu_", torch.relu)
    put("tanh", torch.tanh)
    put("sigmoid", torch.sigmoid)
    put("exp", torch.exp)
    put("gelu", F.gelu)
    put("silu", F.silu)
    put("abs", torch.abs)
    put("max_pool2d", F.max_pool2d)
    put("_softmax softmax", F.softmax)
    return table


_DROP = ("_assert", "sym_constrain_range", "_assert_tensor_metadata")


class _Translator:
    def __init__(self, gm: torch.fx.GraphModule, example: Tensor | list[Tensor]) -> None:
        self.gm = gm
        self.examples = list(example) if isinstance(example, (list, tuple)) else [example]
        self.table = _table()
        self.graph = torch.fx.Graph()
        self.root = nn.Module()
        self.n_consts = 0
        self.value: dict[torch.fx.Node, Any] = {}  # real values on the example input
        self.new: dict[torch.fx.Node, Any] = {}  # input-dependent nodes -> new nodes
        self.slafs: dict[str, str] = {}  # new module name -> path in the exported model
        self.named: dict[int, str] = {}  # id of a program parameter -> its name here

    def const(self, value: Any) -> Any:
        if not torch.is_tensor(value):
            return value
        if id(value) in self.named:  # a parameter used twice stays one parameter
            return self.graph.get_attr(self.named[id(value)])
        name = f"_c{self.n_consts}"
        self.n_consts += 1
        if isinstance(value, nn.Parameter):  # kept as a parameter, so counts stay right
            self.root.register_parameter(name, nn.Parameter(value.detach().clone()))
            self.named[id(value)] = name
        else:
            self.root.register_buffer(name, value.detach().clone())
        return self.graph.get_attr(name)

    def arg(self, a: Any) -> Any:
        """A new-graph argument: the new node for input-dependent values, else a constant."""
        if isinstance(a, torch.fx.Node):
            return self.new[a] if a in self.new else self.const(self.value[a])
        if isinstance(a, (list, tuple)):
            return type(a)(self.arg(v) for v in a)
        return a

    def call(self, target: Callable, *args: Any, **kwargs: Any) -> Any:
        return self.graph.call_function(target, args, kwargs)

    def run(self) -> torch.fx.GraphModule:
        groups = _slaf_groups(self.gm)
        ends = {g.output: g for g in groups}
        for node in self.gm.graph.nodes:
            args = torch.fx.node.map_arg(node.args, lambda n: self.value.get(n))
            kwargs = torch.fx.node.map_arg(node.kwargs, lambda n: self.value.get(n))
            if node.op == "placeholder":
                k = len(self.new)
                if k >= len(self.examples):
                    raise NotExpandableError(
                        f"the exported program takes more than {len(self.examples)} input(s); "
                        "give one example tensor per input."
                    )
                self.value[node] = self.examples[k]
                # One input keeps the name x; several keep forward()'s argument names.
                name = "x" if len(self.examples) == 1 else node.name
                self.new[node] = self.graph.placeholder(name)
                continue
            if node.op == "get_attr":
                obj = self.gm
                for part in str(node.target).split("."):
                    obj = getattr(obj, part)
                self.value[node] = obj
                continue
            if node.op == "output":
                result = node.args[0]
                if isinstance(result, (tuple, list)) and len(result) == 1:
                    result = result[0]  # the program's single output, flattened by export
                self.graph.output(self.arg(result))
                break
            if node.op == "call_module":
                if node.target in _SKIP:
                    continue
                raise NotExpandableError(f"unexpected module call {node.target} in the program.")
            name = str(getattr(node.target, "__name__", node.target))
            if any(name.startswith(d) for d in _DROP):
                continue
            self.value[node] = node.target(*args, **kwargs)
            depends = any(
                isinstance(a, torch.fx.Node) and a in self.new for a in node.all_input_nodes
            )
            if depends:
                self.new[node] = self.translate(node)
                if node in ends:
                    self._recover_slaf(ends[node])
        module = torch.fx.GraphModule(self.root, self.graph)
        module.graph.eliminate_dead_code()
        module.recompile()
        module.delete_all_unused_submodules()
        read = {n.target for n in module.graph.nodes if n.op == "get_attr"}
        for store in (module._buffers, module._parameters):  # constants no op reads any more
            for name in [k for k in store if k not in read]:
                del store[name]
        module.slaf_paths = dict(self.slafs)
        return module

    def _recover_slaf(self, group: _Group) -> None:
        """Put the SLAF module back in place of its ops when it computes the same values.

        The module lets ``polynet plot`` draw it and the expander use its fused path; its
        constructor arguments come from its tensors, the basis is the one that reproduces the
        program's values on the example input.
        """
        if group.input not in self.new:
            return
        slaf = _rebuild_slaf(self.gm, group.path, self.value[group.input], self.value[group.output])
        if slaf is None:
            return
        name = re.sub(r"\W", "_", group.path) or "slaf"
        while hasattr(self.root, name):
            name += "_"
        self.root.add_module(name, slaf)
        self.slafs[name] = group.path
        self.new[group.output] = self.graph.call_module(name, (self.new[group.input],))

    def translate(self, node: torch.fx.Node) -> Any:
        if node.target is operator.getitem:
            source, index = node.args
            kind = self.table.get(getattr(source, "target", None))
            if kind == "batch_norm" and index == 0:
                return self.new[source]
            return self.call(operator.getitem, self.arg(source), index)
        target = self.table.get(node.target)
        if target == "linear":  # before its weight becomes a loose constant
            return self._linear(node)
        a = [self.arg(v) for v in node.args]
        kw = {k: self.arg(v) for k, v in node.kwargs.items()}
        if target is None:
            return self.graph.call_function(node.target, tuple(a), kw)
        if callable(target):
            return self.call(target, *a, **kw)
        return getattr(self, f"_{target}")(node, a, kw)

    def _module_name(self, node: torch.fx.Node, fallback: str) -> str:
        stack = list((node.meta.get("nn_module_stack") or {}).values())
        path = stack[-1][0] if stack else ""
        name = re.sub(r"\W", "_", path) or fallback
        while hasattr(self.root, name):
            name += "_"
        return name

    def _linear(self, node):
        """An ``nn.Linear`` holding the program's own weight and bias (counted per layer)."""
        weight = self.value.get(node.args[1])
        bias = self.value.get(node.args[2]) if len(node.args) > 2 else None
        own = isinstance(weight, nn.Parameter) and (bias is None or isinstance(bias, nn.Parameter))
        if not own or weight.dim() != 2 or id(weight) in self.named or node.kwargs:
            a = [self.arg(v) for v in node.args]
            return self.call(F.linear, *a)
        a = [self.arg(node.args[0])]
        layer = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
        layer.weight = nn.Parameter(weight.detach().clone())
        if bias is not None:
            layer.bias = nn.Parameter(bias.detach().clone())
        name = self._module_name(node, "linear")
        self.root.add_module(name, layer)
        self.named[id(weight)] = f"{name}.weight"
        return self.graph.call_module(name, (a[0],))

    def _identity(self, node, a, kw):
        return a[0]

    def _add(self, node, a, kw):
        y = a[1] if kw.get("alpha", 1) == 1 else self.call(operator.mul, a[1], kw["alpha"])
        return self.call(operator.add, a[0], y)

    def _sub(self, node, a, kw):
        y = a[1] if kw.get("alpha", 1) == 1 else self.call(operator.mul, a[1], kw["alpha"])
        return self.call(operator.sub, a[0], y)

    def _rsub(self, node, a, kw):
        y = a[0] if kw.get("alpha", 1) == 1 else self.call(operator.mul, a[0], kw["alpha"])
        return self.call(operator.sub, a[1], y)

    def _addmm(self, node, a, kw):
        product = self.call(operator.matmul, a[1], a[2])
        return self.call(operator.add, product, a[0])

    def _free_batch(self, node, size):
        size = list(size)
        batch = self.value[node.args[0]].shape[0] if self.value[node.args[0]].dim() else None
        if size and batch is not None and size[0] == batch and node.args[0] in self.new:
            size[0] = -1  # the coefficient axis of polynet's expansion stands for the batch
        return size

    def _reshape(self, node, a, kw):
        return self.call(torch.reshape, a[0], self._free_batch(node, node.args[1]))

    def _expand(self, node, a, kw):
        return self.graph.call_method("expand", (a[0], *self._free_batch(node, node.args[1])))

    def _t(self, node, a, kw):
        return self.graph.call_method("t", (a[0],))

    def _select(self, node, a, kw):
        dim, index = node.args[1], node.args[2]
        return self.graph.call_method("select", (a[0], dim, index))

    def _slice(self, node, a, kw):
        x = node.args[0]
        dim = node.args[1] if len(node.args) > 1 else 0
        start = node.args[2] if len(node.args) > 2 else None
        end = node.args[3] if len(node.args) > 3 else None
        step = node.args[4] if len(node.args) > 4 else 1
        rank = self.value[x].dim()
        index = [slice(None)] * dim + [slice(start, end, step)] + [slice(None)] * (rank - dim - 1)
        return self.call(operator.getitem, a[0], tuple(index))

    def _batch_norm(self, node, a, kw):
        name = node.target._schema.name
        values = [self.value.get(v) if isinstance(v, torch.fx.Node) else v for v in node.args]
        x, weight, bias, mean, var = values[:5]
        if name.endswith("_no_training"):
            eps = values[6]
        else:
            training, eps = values[5], values[7]
            if training:
                raise NotExpandableError(
                    "the exported program normalises with batch statistics (batch norm in "
                    "training mode); export the model after model.eval()."
                )
        scale = 1.0 / torch.sqrt(var.double() + eps)
        if weight is not None:
            scale = scale * weight.double()
        shift = -mean.double() * scale
        if bias is not None:
            shift = shift + bias.double()
        shape = (-1,) + (1,) * (x.dim() - 2)
        y = self.call(operator.mul, a[0], self.const(scale.reshape(shape)))
        return self.call(operator.add, y, self.const(shift.reshape(shape)))

    def _convolution(self, node, a, kw):
        values = [self.value.get(v) if isinstance(v, torch.fx.Node) else v for v in node.args]
        x = values[0]
        stride, padding, dilation, transposed, _, groups = values[3:9]
        if transposed:
            return self.graph.call_function(node.target, tuple(a), kw)
        conv = {3: F.conv1d, 4: F.conv2d}.get(x.dim())
        if conv is None:
            return self.graph.call_function(node.target, tuple(a), kw)
        return self.call(conv, a[0], a[1], a[2], stride, padding, dilation, groups)


@dataclass
class _Group:
    path: str
    input: torch.fx.Node
    output: torch.fx.Node


def _stack_slaf(node: torch.fx.Node) -> str | None:
    """The path of the innermost SLAF whose forward() made ``node``, if any."""
    found = None
    for path, kind in (node.meta.get("nn_module_stack") or {}).values():
        if str(getattr(kind, "__qualname__", kind)).rsplit(".", 1)[-1] == "SLAF":
            found = path
    return found


def _slaf_groups(gm: torch.fx.GraphModule) -> list[_Group]:
    """The SLAF calls of an exported graph with one outside input and one outside output."""
    members: dict[str, list[torch.fx.Node]] = {}
    for node in gm.graph.nodes:
        path = _stack_slaf(node) if node.op == "call_function" else None
        if path is not None:
            members.setdefault(path, []).append(node)
    groups = []
    for path, nodes in members.items():
        inside = set(nodes)
        inputs = {
            a
            for n in nodes
            for a in n.all_input_nodes
            if a not in inside and a.op not in ("get_attr",)
        }
        outputs = [n for n in nodes if any(u not in inside for u in n.users)]
        if len(inputs) == 1 and len(outputs) == 1:
            groups.append(_Group(path, inputs.pop(), outputs[0]))
    return groups


def _rebuild_slaf(gm: nn.Module, path: str, x: Tensor, y: Tensor) -> nn.Module | None:
    from polynet.bases import BASES
    from polynet.slaf import SLAF

    try:
        owner = gm.get_submodule(path)
    except AttributeError:
        return None
    state = {k: v for k, v in owner.state_dict().items() if "lifted_tensor" not in k}
    weight, bias = state.get("weight"), state.get("bias")
    mean = state.get("running_mean")
    if weight is None or bias is None or mean is None or mean.dim() != 2:
        return None
    share = "layer" if weight.dim() == 1 else "channel"
    for basis in BASES:
        try:
            slaf = SLAF(
                int(bias.shape[0]),
                int(mean.shape[1]),
                basis,
                share=share,
                gate="gate" in state,
                dtype=x.dtype if x.is_floating_point() else None,
            )
            slaf.load_state_dict(state, strict=True)
            slaf.eval()
            with torch.no_grad():
                same = torch.allclose(slaf(x), y, rtol=1e-10, atol=1e-12)
        except (RuntimeError, ValueError, TypeError):
            continue
        if same:
            return slaf
    return None


def program_module(
    program: Any, example_input: Tensor | tuple[Tensor, ...] | None = None
) -> torch.fx.GraphModule:
    """An ``fx.GraphModule`` in torch ops computing what ``program`` computes (in float64
    when expanded), for :func:`polynet.expand`.

    Parameters
    ----------
    program : torch.export.ExportedProgram
    example_input : Tensor or tuple of Tensor, optional
        One batch of input (one tensor per input); default: the program's own example
        inputs, else zeros of the exported input shapes.
    """
    gm = program.module()
    examples = _examples(program) if example_input is None else example_input
    examples = list(examples) if isinstance(examples, (tuple, list)) else [examples]
    if all(e.is_floating_point() for e in examples):
        # Fold the constants in float64, as polynet evaluates a model (from the same weights).
        gm = gm.to(torch.float64)
        examples = [e.to(torch.float64) for e in examples]
    with torch.no_grad():
        module = _Translator(gm, examples).run()
    return module.eval()


def _example(program: Any) -> Tensor:
    return _examples(program)[0]


def _examples(program: Any) -> list[Tensor]:
    """One example batch per user input of the program."""
    examples = getattr(program, "example_inputs", None)
    if examples and examples[0] and all(torch.is_tensor(e) for e in examples[0]):
        return list(examples[0])
    found = []
    for spec in program.graph_signature.input_specs:
        if spec.kind == torch.export.graph_signature.InputKind.USER_INPUT:
            node = next(n for n in program.graph.nodes if n.name == spec.arg.name)
            val = node.meta["val"]
            shape = [s if isinstance(s, int) else 2 for s in val.shape]
            found.append(torch.zeros(shape, dtype=val.dtype))
    if not found:
        raise NotExpandableError("the exported program has no tensor input.")
    return found


def program_input_shape(program: Any) -> tuple[int, ...]:
    """The shape of one input sample (without the batch axis) the program was exported on."""
    return tuple(int(s) for s in _example(program).shape[1:])


def program_input_shapes(module: torch.fx.GraphModule, program: Any) -> dict[str, tuple]:
    """``{argument: sample shape}`` of a program taking several inputs, named as the
    translated ``module``'s ``forward()`` takes them."""
    names = [n.name for n in module.graph.nodes if n.op == "placeholder"]
    return {k: tuple(int(s) for s in e.shape[1:]) for k, e in zip(names, _examples(program))}
