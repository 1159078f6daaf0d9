"""What the user handed us: a model from a file or a class, with what is known about it.

:func:`resolve` takes what a command line (or a script) names and returns a
:class:`ModelSource`: the module in evaluation mode, the shape of one input sample, the data
standardisation and the data set it was trained on, as far as the source records them.

==========================================  ================================================
source                                      read with
==========================================  ================================================
``model.safetensors`` or a directory        :func:`polynet.checkpoint.load_checkpoint`
``model.pt2`` (``torch.export.save``,       :func:`polynet.exported.load_program` (no pickle
``polynet.save`` of a custom class)         runs), translated by ``program_module``
``model.onnx``                              :func:`polynet.from_onnx`
``package.module:Class`` or ``file.py:Class``  the class built with ``init_args`` and loaded
  with ``state_dict=`` (``.pt``/``.safetensors``)  with ``torch.load(weights_only=True)``
==========================================  ================================================

:func:`save` writes any polynomial module so that :func:`load` (``polynet.load``) reads it back
without running pickled code: a model from a polynet builder (SLNN, HybridNet, ConvSLNN) as a
safetensors checkpoint (rebuilt from its config), any other module as a ``torch.export``
archive (``.pt2``: its graph as JSON, its weights as raw tensors), each with the input shape
and the standardisation in its metadata. The ``.pt2`` route needs no user class to load and
is read by every tool of the torch ecosystem; a "state + description" format would need the
user's class importable at load time, which is exactly what a file handed to a colleague lacks.

Examples
--------
>>> import tempfile, torch, polynet
>>> from torch import nn
>>> net = nn.Sequential(nn.Linear(2, 3), polynet.SLAF(3, 2), nn.Linear(3, 1)).eval()
>>> with tempfile.TemporaryDirectory() as tmp:
...     path = save(net, f"{tmp}/net.pt2", torch.zeros(1, 2))
...     source = resolve(path)
>>> source.kind, source.input_shape
('program', (2,))
>>> x = torch.randn(4, 2, dtype=torch.float64)
>>> torch.allclose(source.model(x), net.double()(x))
True
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn

from polynet.errors import CheckpointError

__all__ = ["ModelSource", "ShapedModel", "Points", "resolve", "points", "save", "load"]

Kind = Literal["checkpoint", "program", "onnx", "class", "module"]


@dataclass(frozen=True)
class ModelSource:
    """A resolved model and what its source records.

    Attributes
    ----------
    model : nn.Module
        In evaluation mode.
    kind : {"checkpoint", "program", "onnx", "class", "module"}
        Where it came from.
    path : Path or None
        The file read (the state_dict file for a class).
    input_shape : tuple of int, dict or None
        One input sample's shape (no batch axis), when known; for a ``forward()`` taking
        several tensors, ``{argument: shape}`` in argument order.
    metadata : dict
        Checkpoint-style metadata: ``"dataset"`` (name, params, feature names, ``scaler``,
        ``target_scaler``) and anything else recorded.
    checkpoint : Checkpoint or None
        The polynet checkpoint, for ``kind == "checkpoint"``.
    """

    model: nn.Module
    kind: Kind
    path: Path | None = None
    input_shape: tuple[int, ...] | dict[str, tuple[int, ...]] | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    checkpoint: Any = None

    def check_drawable(self) -> None:
        """Refuse, saying what to do, a source whose SLAFs are ops rather than modules (ONNX):
        there is no learned activation to draw."""
        from polynet.slaf import SLAF

        if self.kind == "onnx" and not any(isinstance(m, SLAF) for m in self.model.modules()):
            raise CheckpointError(
                f"{str(self.path)!r} is an ONNX graph: it holds the SLAFs' arithmetic, not SLAF "
                "modules, so there is no learned activation to draw. Plot the model from a "
                ".pt2 file (polynet.save or torch.export.save), a polynet checkpoint, or "
                "module:Class --state-dict FILE."
            )

    @property
    def dataset(self) -> dict[str, Any]:
        """The ``"dataset"`` metadata entry (empty when none is recorded)."""
        return dict(self.metadata.get("dataset") or {})


class ShapedModel(nn.Module):
    """A model read from a file (a ``.pt2`` program or an ONNX graph) with the shape of one
    input sample, kept through ``copy.deepcopy`` and ``.to()`` (an ``fx.GraphModule`` drops
    attributes set on it when copied)."""

    def __init__(self, model: nn.Module, input_shape: tuple[int, ...], name: str) -> None:
        super().__init__()
        self.net = model
        self.input_shape = tuple(int(s) for s in input_shape)
        self.name = name

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)

    def extra_repr(self) -> str:
        return f"{self.name}, input_shape={self.input_shape}"


# --------------------------------------------------------------------------------------------
# Recognising files
# --------------------------------------------------------------------------------------------


def _is_program(path: Path) -> bool:
    import zipfile

    if path.suffix == ".pt2":
        return True
    if path.is_file() and zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            return any("/models/" in n or n.startswith("models/") for n in z.namelist())
    return False


# --------------------------------------------------------------------------------------------
# Resolving
# --------------------------------------------------------------------------------------------


def _is_class_spec(text: str) -> bool:
    if ":" not in text or os.path.exists(text):
        return False
    module, _, name = text.rpartition(":")
    return bool(module) and name.isidentifier()


def _import_class(spec: str) -> type:
    module_name, _, class_name = spec.rpartition(":")
    try:
        if module_name.endswith(".py"):
            file = Path(module_name)
            if not file.is_file():
                raise CheckpointError(f"no Python file {module_name!r} (from {spec!r}).")
            loaded = importlib.util.spec_from_file_location(file.stem, file)
            module = importlib.util.module_from_spec(loaded)
            sys.modules.setdefault(file.stem, module)
            loaded.loader.exec_module(module)
        else:
            cwd = os.getcwd()
            added = cwd not in sys.path
            if added:  # `polynet` run as a console script: let it import the user's modules
                sys.path.insert(0, cwd)
            try:
                module = importlib.import_module(module_name)
            finally:
                if added:
                    sys.path.remove(cwd)
    except ImportError as exc:
        raise CheckpointError(
            f"cannot import {module_name!r} for {spec!r} ({exc}); run from the directory that "
            "holds it, add it to PYTHONPATH, or name the file: path/to/models.py:Class."
        ) from exc
    cls = getattr(module, class_name, None)
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise CheckpointError(
            f"{spec!r}: {module_name} has no nn.Module class {class_name!r}; the form is "
            "module:Class or file.py:Class."
        )
    return cls


def _read_state_dict(path: Path) -> dict[str, Tensor]:
    if not path.is_file():
        raise CheckpointError(f"no state_dict file at {str(path)!r} (--state-dict).")
    if path.suffix == ".safetensors":
        import safetensors.torch

        return safetensors.torch.load_file(str(path), device="cpu")
    try:
        state = torch.load(path, weights_only=True, map_location="cpu")
    except Exception as exc:  # pickle errors come in many types
        raise CheckpointError(
            f"{str(path)!r} could not be read as tensors with torch.load(weights_only=True) "
            f"({type(exc).__name__}: {exc}); save model.state_dict() (not the model object) "
            "with torch.save, or with safetensors.torch.save_file."
        ) from exc
    if isinstance(state, dict) and not any(torch.is_tensor(v) for v in state.values()):
        for key in ("state_dict", "model_state_dict", "model"):
            if isinstance(state.get(key), dict):
                return state[key]
    if not isinstance(state, dict):
        raise CheckpointError(
            f"{str(path)!r} holds a {type(state).__name__}, not a state_dict; save "
            "model.state_dict()."
        )
    return state


def _from_class(
    spec: str, state_dict: str | os.PathLike[str] | None, init_args: dict[str, Any] | str | None
) -> ModelSource:
    cls = _import_class(spec)
    if isinstance(init_args, str):
        try:
            init_args = json.loads(init_args)
        except json.JSONDecodeError as exc:
            raise CheckpointError(
                f"--init-args must be a JSON object, got {init_args!r} ({exc})."
            ) from exc
    if init_args is not None and not isinstance(init_args, dict):
        raise CheckpointError(f"--init-args must be a JSON object, got {init_args!r}.")
    try:
        model = cls(**(init_args or {}))
    except TypeError as exc:
        raise CheckpointError(
            f"cannot build {spec} with {init_args or {}} ({exc}); give its constructor "
            "arguments with --init-args '{\"name\": value}'."
        ) from exc
    path = None
    if state_dict is not None:
        path = Path(state_dict)
        try:
            model.load_state_dict(_read_state_dict(path), strict=True)
        except RuntimeError as exc:
            raise CheckpointError(
                f"{str(path)!r} does not fit {spec} built with {init_args or {}}: "
                f"{str(exc).splitlines()[0]} {_short(exc)}; pass the constructor arguments the "
                "model was trained with (--init-args)."
            ) from exc
    return ModelSource(model.eval(), "class", path)


def _symbolically_traceable(model: nn.Module) -> bool:
    """Whether torch.fx traces ``model`` (SLAFs as leaves) without running it on values."""
    from polynet.slaf import SLAF

    class _Tracer(torch.fx.Tracer):
        def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
            return isinstance(m, SLAF) or super().is_leaf_module(m, qualname)

    try:
        _Tracer().trace(model)
    except Exception:  # TraceError, and whatever a forward() raises on proxies
        return False
    return True


def _through_export(
    model: nn.Module, shape: tuple[int, ...] | None
) -> tuple[nn.Module, tuple[int, ...]]:
    """``model`` exported with torch.export on an example batch, as an expandable module.

    For a class whose forward() checks shapes or branches on them (symbolic tracing cannot
    run it); torch.export runs it on real shapes, and the checks pass or fail as they would.
    """
    from polynet.expansion.dispatch import graph_input_shape
    from polynet.exported import _export, program_module

    shape = tuple(graph_input_shape(model, shape))
    dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)
    # Random values, so the SLAFs recovered from the program are checked on varied inputs.
    example = torch.randn(2, *shape, generator=torch.Generator().manual_seed(0), dtype=dtype)
    module = program_module(_export(model, example))
    return ShapedModel(module, shape, type(model).__name__).eval(), shape


def _several_inputs(model: nn.Module, shape: Any) -> dict[str, tuple[int, ...]] | None:
    """``{argument: shape}`` for a model given several input shapes or whose forward() needs
    several tensors (checked against its signature); None for a one-input model."""
    from polynet.expansion import inputs as several_inputs

    is_several, parse_inputs = several_inputs.is_several, several_inputs.parse_inputs
    shapes_example, tensor_arguments = (
        several_inputs.shapes_example,
        several_inputs.tensor_arguments,
    )

    names, required = tensor_arguments(model)
    if not is_several(shape) and required <= 1:
        return None
    if shape is None:
        raise CheckpointError(
            f"{type(model).__name__}.forward({', '.join(names)}) takes {required} input "
            "tensors; give each one's sample shape (no batch axis): "
            f"{shapes_example(names[:required], '--input-shape')}."
        )
    inputs = parse_inputs(model, shape if is_several(shape) else (shape,), flag="--input-shape")
    return dict(zip(inputs.names, inputs.shapes))


def _short(exc: BaseException) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines()[1:] if ln.strip()]
    return " ".join(lines)[:300]


def resolve(
    source: str | os.PathLike[str] | nn.Module,
    *,
    state_dict: str | os.PathLike[str] | None = None,
    init_args: dict[str, Any] | str | None = None,
    input_shape: tuple[int, ...] | list[int] | tuple | dict[str, Any] | None = None,
    device: torch.device | str | None = None,
) -> ModelSource:
    """The model ``source`` names, in evaluation mode, with what its source records.

    Parameters
    ----------
    source : str, path-like or nn.Module
        A polynet checkpoint (``.safetensors`` or its directory), a ``torch.export`` archive
        (``.pt2``), an ONNX file (``.onnx``), ``module:Class`` / ``file.py:Class``, or a module.
    state_dict : str or path-like, optional
        For ``module:Class``: the weights (``.pt`` from ``torch.save(model.state_dict())``, or
        ``.safetensors``).
    init_args : dict or JSON str, optional
        For ``module:Class``: the constructor's keyword arguments.
    input_shape : tuple of int, tuple of shapes or dict, optional
        One input sample's shape, when the source does not record it; for a class or module
        whose ``forward()`` takes several tensors, one shape per argument (in order, or
        ``{argument: shape}``), checked against the signature.
    device : torch.device or str, optional
        Where to put a checkpoint's model (default CPU).

    Raises
    ------
    CheckpointError
        A file that is missing, of another format (the message says which and what to do),
        damaged, or weights that do not fit the class.
    """
    from polynet.expansion.inputs import is_several

    if input_shape is None or is_several(input_shape):
        shape = input_shape
    else:
        shape = tuple(int(s) for s in input_shape)
    if isinstance(source, nn.Module):
        return ModelSource(source, "module", None, _several_inputs(source, shape) or shape)
    text = os.fspath(source)
    if (state_dict is not None or init_args is not None) and not _is_class_spec(text):
        raise CheckpointError(
            f"--state-dict and --init-args go with a class (module:Class), but {text!r} is a "
            "file; give the class, e.g. `mymodels:Net --state-dict m.pt`."
        )
    if _is_class_spec(text):
        found = _from_class(text, state_dict, init_args)
        model = found.model
        several = _several_inputs(model, shape)
        if several is not None:  # traced on real shapes by expand: no export needed
            return ModelSource(model, "class", found.path, several)
        if not _symbolically_traceable(model):
            model, shape = _through_export(model, shape)
        return ModelSource(model, "class", found.path, shape)
    path = Path(text)
    if path.suffix == ".onnx":
        from polynet.onnx import from_onnx

        model = from_onnx(path, input_shape=shape)
        several = getattr(model, "input_shapes", None)  # a graph with several inputs
        if several:
            return ModelSource(model.eval(), "onnx", path, dict(several))
        found = tuple(model.input_shape)
        return ModelSource(ShapedModel(model, found, path.name).eval(), "onnx", path, found)
    if path.is_file() and _is_program(path):
        from polynet.exported import load_program, program_module

        program, metadata = load_program(path)
        model = program_module(program)
        if sum(n.op == "placeholder" for n in model.graph.nodes) > 1:  # several inputs
            from polynet.exported import program_input_shapes

            shapes = program_input_shapes(model, program)
            given = _several_inputs(model, shape) if shape is not None else shapes
            if given != shapes:
                raise CheckpointError(
                    f"--input-shape {given} does not fit {text!r}, exported on inputs of "
                    f"shapes {shapes}; leave --input-shape out."
                )
            return ModelSource(model.eval(), "program", path, shapes, dict(metadata))
        recorded = metadata.get("input_shape")
        found = shape or (tuple(recorded) if recorded else None)
        if found is None:
            from polynet.exported import program_input_shape

            found = program_input_shape(program)
        model = ShapedModel(model, found, path.name).eval()
        return ModelSource(model, "program", path, tuple(found), dict(metadata))
    if is_several(shape):
        raise CheckpointError(
            f"--input-shape gives shapes by argument name or several shapes ({shape!r}), "
            f"but {text!r} is a file whose model takes one input; several inputs are for a "
            "model given as module:Class, an ONNX graph or a .pt2 archive with several inputs. "
            "Give its one "
            "sample shape as sizes, e.g. --input-shape 1 28 28."
        )
    from polynet.checkpoint import load_checkpoint

    ckpt = load_checkpoint(path, device=device)
    recorded = ckpt.metadata.get("input_shape")
    found = shape or (tuple(recorded) if recorded else None)
    return ModelSource(ckpt.model, "checkpoint", ckpt.path, found, dict(ckpt.metadata), ckpt)


def load(path: str | os.PathLike[str], device: torch.device | str | None = None) -> nn.Module:
    """The model of a polynet checkpoint or a ``.pt2`` archive, in evaluation mode.

    This is ``polynet.load``: it reads what :func:`save` writes (and ``torch.export.save``
    archives, and ONNX files) without running pickled code.

    Raises
    ------
    CheckpointError
        When the file is missing, of another format, or damaged.
    """
    model = resolve(path, device=device).model
    if device is not None:
        model = model.to(device)
    return model


def _dataset_metadata(data: Any) -> dict[str, Any] | None:
    if data is None:
        return None
    if isinstance(data, dict):
        return data
    return data.to_metadata()


def save(
    model: nn.Module,
    path: str | os.PathLike[str],
    example_input: Tensor | tuple[Tensor, ...] | None = None,
    *,
    metadata: dict[str, Any] | None = None,
    data: Any = None,
) -> Path:
    """Write ``model`` so that :func:`polynet.load` and every ``polynet`` command read it.

    A model from a polynet builder goes to a safetensors checkpoint (``path`` as given,
    conventionally ``.safetensors``); any other module is exported with ``torch.export`` on
    ``example_input`` and written as a ``.pt2`` archive (``path`` must end in ``.pt2``).
    Neither format runs code when loaded.

    Parameters
    ----------
    model : nn.Module
        A polynomial model (SLAF layers, linear maps, products ...), trained.
    path : str or path-like
        Where to write.
    example_input : Tensor or tuple of Tensor, optional
        One batch of input (any batch size); required for a module that is not a polynet
        builder's. Its sample shape is recorded as ``input_shape``; for a ``forward()``
        taking several tensors, a tuple with one batch per argument (``input_shapes``).
    metadata : dict, optional
        JSON values stored with the model. Record the data standardisation under
        ``"dataset"`` (what :meth:`polynet.data.Dataset.to_metadata` returns, or a dict with
        ``scaler``/``target_scaler`` = ``{"mean": [...], "scale": [...]}`` and
        ``feature_names``), so ``--raw-units`` and ``verify`` know the units.
    data : Dataset, optional
        Shorthand for ``metadata["dataset"] = data.to_metadata()``.

    Returns
    -------
    Path
        The file written.
    """
    from polynet.checkpoint import check_saveable
    from polynet.checkpoint import save as save_checkpoint

    meta = dict(metadata or {})
    if data is not None:
        meta["dataset"] = _dataset_metadata(data)
    if isinstance(example_input, (tuple, list)):  # a forward() taking several tensors
        from polynet.expansion.inputs import tensor_arguments

        names = tensor_arguments(model)[0]
        meta.setdefault(
            "input_shapes", {k: list(x.shape[1:]) for k, x in zip(names, example_input)}
        )
    elif example_input is not None:
        meta.setdefault("input_shape", list(example_input.shape[1:]))
    try:
        check_saveable(model)
        builder = True
    except CheckpointError:
        builder = False
    if builder:
        return save_checkpoint(model, path, metadata=meta)
    if example_input is None:
        raise CheckpointError(
            f"polynet.save of a {type(model).__name__} (not a polynet builder's model) exports "
            "it with torch.export and needs an example input: polynet.save(model, path, "
            "x[:1])."
        )
    if Path(path).suffix != ".pt2":
        raise CheckpointError(
            f"a {type(model).__name__} is saved as a torch.export archive; name the file "
            f"with the suffix .pt2, got {os.fspath(path)!r}."
        )
    from polynet.exported import save_program

    meta["polynet_format"] = 1
    meta["class"] = f"{type(model).__module__}.{type(model).__qualname__}"
    return save_program(model, path, example_input, meta)


# --------------------------------------------------------------------------------------------
# The points to check and to draw from
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Points:
    """Input points for a model, in the units the model takes, with where they came from.

    Attributes
    ----------
    X : ndarray of shape (n, n_features) or None
        Flattened samples (standardised as the model was trained, when the source records it);
        None when no data is known.
    X_train : ndarray or None
        The training split alone when known, in the model's input shape (for ranges and
        histograms), else ``X``.
    y : ndarray or None
        Targets, when read.
    feature_names : list of str or None
    note : str
        Why there are no points (empty when there are).
    """

    X: Any
    X_train: Any = None
    y: Any = None
    feature_names: list[str] | None = None
    note: str = ""


def points(
    source: ModelSource,
    data: str | os.PathLike[str] | None = None,
    target: str | None = None,
) -> Points:
    """The points to verify on and draw histograms from: ``data`` (a CSV/NPZ/Parquet file) or,
    without it, the data set the source's metadata names.

    A file's columns are matched to the feature names the model was saved with when it
    records them (other columns, and ``target``, are left out); the recorded input
    standardisation is applied.

    Raises
    ------
    DataError
        A bad file (missing column, non-numeric cell), or a width that does not fit the model.
    """
    import numpy as np

    from polynet import data as datasets
    from polynet.data.files import read_table
    from polynet.data.preprocessing import Standardizer
    from polynet.errors import DataError

    info = source.dataset
    if data is None:
        try:
            ds = datasets.from_metadata(source.metadata)
        except DataError as exc:
            return Points(None, note=str(exc))
        X = np.concatenate([ds.X_train, ds.X_test]).reshape(len(ds.X_train) + len(ds.X_test), -1)
        return Points(X, ds.X_train, None, list(ds.feature_names))
    names = info.get("feature_names") or None
    target = target or (info.get("params") or {}).get("target")
    try:
        table = read_table(data, target, features=names)
    except DataError:
        if names is None:
            raise
        # The file may lack the recorded names (another export); fall back to its columns.
        table = read_table(data, target)
    X = table.X
    if source.input_shape is not None:
        _check_width(X.shape[1], source.input_shape, data, table.feature_names)
    if info.get("scaler"):
        X = Standardizer.from_dict(info["scaler"]).transform(X)
    return Points(X, X, table.y, table.feature_names)


def _check_width(n_columns: int, shape: Any, data: Any, columns: list[str]) -> None:
    """Refuse a data file whose feature columns are not the model's inputs, flattened (and
    for several inputs concatenated in argument order)."""
    import numpy as np

    from polynet.errors import DataError
    from polynet.expansion.inputs import Inputs

    if isinstance(shape, dict):
        inputs = Inputs.from_notes(shape)
        if n_columns != inputs.n:
            blocks = "; ".join(inputs.blocks())
            raise DataError(
                f"{os.fspath(data)!r} has {n_columns} feature columns ({columns}) but the "
                f"model takes {inputs.n} input values, its {len(inputs.names)} input tensors "
                f"flattened and concatenated in argument order ({blocks}); give a file with "
                f"{inputs.n} feature columns in that order (--target names the column to "
                "leave out)."
            )
        return
    width = int(np.prod(shape))
    if n_columns != width:
        raise DataError(
            f"{os.fspath(data)!r} has {n_columns} feature columns "
            f"({columns}) but the model takes {width} inputs; choose the "
            "columns (--target names the one to leave out)."
        )
