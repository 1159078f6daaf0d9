"""Several input tensors of a traced ``forward()``: their names, shapes and variables.

A model whose ``forward(self, x, y, ...)`` takes several tensors is expanded in the entries of
all its inputs, concatenated in argument order: the variables are ``x0, x1, ..., y0, ...``
(each input flattened, named after its argument), and the polynomial is evaluated on the
concatenated flattened inputs, ``torch.cat([x.flatten(1), y.flatten(1)], 1)``.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from torch import nn

from polynet.errors import NotExpandableError, did_you_mean

__all__ = [
    "Inputs",
    "SplitInputs",
    "n_variables",
    "parse_inputs",
    "shapes_example",
    "split_inputs",
    "tensor_arguments",
]


@dataclass(frozen=True)
class Inputs:
    """The input tensors of a multi-input ``forward()``: argument names and sample shapes."""

    names: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]

    @property
    def sizes(self) -> tuple[int, ...]:
        return tuple(math.prod(s) for s in self.shapes)

    @property
    def n(self) -> int:
        return sum(self.sizes)

    def variables(self) -> list[str]:
        """``x0, x1, ..., y0, ...``: each input's flattened entries, named by its argument."""
        return [f"{name}{i}" for name, size in zip(self.names, self.sizes) for i in range(size)]

    def as_dict(self) -> dict[str, list[int]]:
        return {name: list(shape) for name, shape in zip(self.names, self.shapes)}

    def blocks(self) -> list[str]:
        """One line per input: ``"y of shape (2, 2): y0..y3"``, its variables in order."""
        lines = []
        for name, shape, size in zip(self.names, self.shapes, self.sizes):
            span = f"{name}0" if size == 1 else f"{name}0..{name}{size - 1}"
            lines.append(f"{name} of shape {tuple(shape)}: {span}")
        return lines

    @classmethod
    def from_notes(cls, shapes: Mapping[str, Sequence[int]]) -> Inputs:
        """From a polynomial's ``notes["input_shapes"]`` ({argument: shape})."""
        return cls(tuple(shapes), tuple(tuple(int(s) for s in v) for v in shapes.values()))


def n_variables(shape: tuple[int, ...] | Inputs) -> int:
    """Number of variables of a single input shape or of several inputs."""
    return shape.n if isinstance(shape, Inputs) else math.prod(shape)


def tensor_arguments(model: nn.Module) -> tuple[list[str], int]:
    """``forward()``'s positional argument names and how many of them are required."""
    try:
        params = inspect.signature(model.forward).parameters.values()
    except (TypeError, ValueError):
        return [], 0
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    required = sum(p.default is p.empty for p in positional)
    return [p.name for p in positional], required


def _shape(value, what: str, flag: str = "input_shape") -> tuple[int, ...]:
    try:
        shape = tuple(int(s) for s in value)
    except TypeError:
        raise NotExpandableError(
            f"{flag} {what} must be a shape (a tuple of sizes), got {value!r}."
        ) from None
    if not shape or min(shape) < 1:
        raise NotExpandableError(f"{flag} {what} must be positive sizes, got {value!r}.")
    return shape


def is_several(input_shape) -> bool:
    """Whether ``input_shape`` names several inputs (a dict, or a tuple of shapes)."""
    if isinstance(input_shape, dict):
        return True
    return (
        isinstance(input_shape, (tuple, list))
        and bool(input_shape)
        and all(isinstance(s, (tuple, list)) for s in input_shape)
    )


def shapes_example(names: list[str], flag: str) -> str:
    """How to give one shape per argument, in the words of ``flag``'s caller."""
    if flag.startswith("--"):
        return (
            f"{flag} {' '.join(k + '=SHAPE' for k in names)} (a SHAPE is 3 or 2,2), or the "
            f"shapes in argument order, each with a comma, e.g. {flag} 3, 2,2"
        )
    return f"{flag}={{{', '.join(repr(k) + ': (...)' for k in names)}}}"


def parse_inputs(model: nn.Module, input_shape, *, flag: str = "input_shape") -> Inputs:
    """The inputs of ``model`` from ``input_shape``: a tuple of shapes or {argument: shape}.

    ``flag`` names the argument in messages (``"--input-shape"`` on the command line).

    Raises :class:`NotExpandableError` when the number of shapes or the names do not match
    ``forward()``'s arguments (a mistyped name gets the closest argument).
    """
    names, required = tensor_arguments(model)
    model_name = type(model).__name__
    signature = f"{model_name}.forward({', '.join(names)})"
    if isinstance(input_shape, dict):
        unknown = [k for k in input_shape if k not in names]
        if unknown:
            hints = [h for h in (did_you_mean(k, names) for k in unknown) if h]
            missing = [k for k in names if k not in input_shape]
            if not hints and missing:
                hints = [f"the arguments not given are {missing};"]
            advice = (
                f"give one shape per argument, keyed by its name: {shapes_example(names, flag)}."
            )
            if hints and hints[-1].endswith("?"):
                advice = advice[0].upper() + advice[1:]
            raise NotExpandableError(
                f"{flag} names {unknown} that are not arguments of {signature}; "
                + (f"{' '.join(hints)} " if hints else "")
                + advice
            )
        given = [k for k in names if k in input_shape]
        if given != names[: len(given)]:
            raise NotExpandableError(
                f"{flag} gives {list(input_shape)} but {signature} takes its tensors "
                f"in order {names}; give the first {len(given)} arguments."
            )
        shapes = [input_shape[k] for k in given]
    else:
        shapes = list(input_shape)
        if names and len(shapes) > len(names):
            raise NotExpandableError(
                f"{flag} gives {len(shapes)} shapes but {signature} takes "
                f"{len(names)} tensor(s); give one shape per argument."
            )
        given = names[: len(shapes)] if names else [f"x{i}_" for i in range(len(shapes))]
    if len(given) < required:
        raise NotExpandableError(
            f"{flag} gives {len(given)} shape(s) but {signature} needs {required} "
            f"input tensors; give one shape per argument, e.g. "
            f"{shapes_example(names[:required], flag)}."
        )
    return Inputs(tuple(given), tuple(_shape(s, f"for {k!r}", flag) for k, s in zip(given, shapes)))


def split_inputs(flat, shapes: dict[str, list[int]]) -> list:
    """The input tensors of a multi-input model from concatenated flattened points (N, n)."""
    sizes = [math.prod(s) for s in shapes.values()]
    parts = flat.split(sizes, dim=1)
    return [p.reshape(p.shape[0], *s) for p, s in zip(parts, shapes.values())]


class SplitInputs(nn.Module):
    """``model`` as a function of its inputs flattened and concatenated in argument order.

    For the tools that run a model on rows of data (plots, slices): ``forward(flat)`` is
    ``model(*split_inputs(flat, shapes))``. Its modules are listed under the model's own names
    (``named_modules``), so SLAF layers keep the names the user gave them.
    """

    def __init__(self, model: nn.Module, shapes: Mapping[str, Sequence[int]]) -> None:
        super().__init__()
        self.model = model
        self.shapes = {k: [int(s) for s in v] for k, v in shapes.items()}

    def forward(self, flat):
        return self.model(*split_inputs(flat, self.shapes))

    def named_modules(self, memo=None, prefix: str = "", remove_duplicate: bool = True):
        return self.model.named_modules(memo, prefix, remove_duplicate)

    def extra_repr(self) -> str:
        return f"shapes={self.shapes}"
