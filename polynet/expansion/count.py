"""Theorem 2 counts without expanding: parameters per layer, degree bound, C(n + D, D)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

from torch import nn

from polynet.errors import NotExpandableError
from polynet.expansion.network import (
    _input_shape,
    as_sequential,
    check_chain_layer,
    is_chain,
    iter_layers,
)
from polynet.slaf import SLAF

__all__ = ["LayerCount", "ParameterCount", "TermCount", "count_parameters", "count_terms"]


@dataclass(frozen=True)
class LayerCount:
    """One layer's position, kind, parameter count and the degree reached after it."""

    position: str
    layer: str
    parameters: int
    degree: int | None


@dataclass(frozen=True)
class ParameterCount:
    """Network parameters per layer and in total."""

    layers: tuple[LayerCount, ...]

    @property
    def total(self) -> int:
        return sum(layer.parameters for layer in self.layers)


@dataclass(frozen=True)
class TermCount:
    """The Theorem 2 table: the network's size against its polynomial's bound.

    ``support`` is the exact number of monomials of the polynomial for generic weights, from
    the receptive fields (Theorem 2(d) made exact, ``proofs/circuits.md`` C4): computed on
    first use from the chain's sparsity patterns, without expanding.
    """

    layers: tuple[LayerCount, ...]
    n_vars: int
    degree_bound: int
    n_parameters: int
    support_counter: Callable[[], int | None] | None = field(
        default=None, repr=False, compare=False
    )
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def support(self) -> int | None:
        """Monomials with a non-zero coefficient for generic weights (exact), or None where
        it is not computed (traced graphs, layers without a read pattern, or a support too
        large to enumerate)."""
        if "support" not in self._cache:
            counter = self.support_counter
            self._cache["support"] = None if counter is None else counter()
        return self._cache["support"]

    @property
    def max_terms(self) -> int:
        """C(n + D, D): the most coefficients the network polynomial can have."""
        return math.comb(self.n_vars + self.degree_bound, self.degree_bound)

    @property
    def ratio(self) -> float:
        """max_terms / n_parameters: above 1 the network is the smaller description."""
        return self.max_terms / max(self.n_parameters, 1)

    def as_dict(self) -> dict:
        return {
            "n_vars": self.n_vars,
            "degree_bound": self.degree_bound,
            "max_terms": self.max_terms,
            "n_parameters": self.n_parameters,
            "ratio": self.ratio,
            "support": self.support,
            "layers": [vars(layer) for layer in self.layers],
        }

    def _repr_html_(self) -> str:
        rows = [
            [layer.position, layer.layer, f"{layer.parameters:,}", layer.degree or ""]
            for layer in self.layers
        ]
        n, D = self.n_vars, self.degree_bound
        note = (
            f"network parameters {self.n_parameters:,}; degree bound D = {D}; monomials "
            f"C({n}+{D}, {D}) = {self.max_terms:,}; monomials / parameters {self.ratio:.3g}"
        )
        return html_table(["layer", "kind", "parameters", "degree"], rows, note)

    def table(self) -> str:
        """The table as aligned text."""
        rows = [("layer", "kind", "parameters", "degree")]
        for layer in self.layers:
            degree = "" if layer.degree is None else str(layer.degree)
            rows.append((layer.position, layer.layer, f"{layer.parameters:,}", degree))
        widths = [max(len(r[i]) for r in rows) for i in range(4)]
        lines = [
            "  ".join(
                c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))
            )
            for row in rows
        ]
        lines.insert(1, "-" * len(lines[0]))
        n, D = self.n_vars, self.degree_bound
        lines += [
            "",
            f"network parameters         {self.n_parameters:,}",
            f"degree bound D             {D}",
            f"monomials C({n}+{D}, {D})      {self.max_terms:,}",
            f"monomials / parameters     {self.ratio:.3g}",
        ]
        if self.support is not None and self.support < self.max_terms:
            lines.append(
                f"exact support (generic)    {self.support:,}  "
                f"({self.max_terms / self.support:,.0f}x fewer: receptive fields)"
            )
        elif self.support is not None:
            lines.append(f"exact support (generic)    {self.support:,}  (all of them)")
        return "\n".join(lines)


def html_table(header: list[str], rows: list[list[str]], note: str = "") -> str:
    """An HTML table (cells escaped) with a note under it: Jupyter's ``_repr_html_``."""
    from html import escape

    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{escape(str(c))}</td>" for c in row) + "</tr>" for row in rows
    )
    tail = f"<p>{escape(note)}</p>" if note else ""
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>{tail}"


def count_parameters(model: nn.Module) -> ParameterCount:
    """Parameters of each leaf layer of a (nested) ``nn.Sequential`` and their total.

    Examples
    --------
    >>> import polynet
    >>> count_parameters(polynet.SLNN(2, [3], 2)).total  # 9 + (2 + 3) + 4
    18
    """
    if is_chain(model) or not list(model.children()):
        layers = list(iter_layers(model))
    else:  # a custom forward(): its leaf modules, by attribute path
        layers = [
            (f"model.{name}", module)
            for name, module in model.named_modules()
            if name and not list(module.children())
        ]
        own = sum(p.numel() for p in model.parameters(recurse=False))
        if own:
            layers.insert(0, ("model", _OwnParameters(own)))
    return ParameterCount(
        tuple(
            LayerCount(name, type(layer).__name__, _n_parameters(layer), None)
            for name, layer in layers
        )
    )


class _OwnParameters(nn.Module):
    """Stands for the parameters a custom model holds directly (not in a submodule)."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.n = n


def _n_parameters(layer: nn.Module) -> int:
    if isinstance(layer, _OwnParameters):
        return layer.n
    return sum(p.numel() for p in layer.parameters())


def count_terms(model: nn.Module, input_shape: tuple[int, ...] | None = None) -> TermCount:
    """Theorem 2's table for ``model`` without expanding it (any mode, any size).

    ``input_shape`` is as for :func:`polynet.expand`: one shape, or for a ``forward()`` taking
    several tensors a tuple of shapes or {argument: shape} (the variables are all their entries).

    Raises
    ------
    NotExpandableError
        When a layer is not a polynomial map, so no bound exists.

    Examples
    --------
    >>> import polynet
    >>> t = count_terms(polynet.SLNN(13, [128, 64], [4, 2]))
    >>> t.degree_bound, t.max_terms, t.support
    (8, 203490, 203490)
    >>> polynet.count_terms(polynet.ConvSLNN(1, 6, [2, 3], [2, 2])).support  # of 91,390
    45058
    """
    model = as_sequential(model)
    if not is_chain(model):
        return _count_graph(model, input_shape)
    layers = list(iter_layers(model))
    if not layers:
        raise NotExpandableError("cannot count the terms of an empty model.")
    shape = _input_shape(model, layers[0][1], input_shape)
    n_vars = math.prod(shape)
    degree = 1
    rows = []
    for name, layer in layers:
        check_chain_layer(name, layer)  # the same table expand asks
        if isinstance(layer, SLAF):
            degree *= layer.degree
        n_params = sum(p.numel() for p in layer.parameters())
        rows.append(LayerCount(name, type(layer).__name__, n_params, degree))
    return TermCount(
        tuple(rows),
        n_vars,
        degree,
        sum(r.parameters for r in rows),
        support_counter=lambda: _support(model, shape, degree),
    )


def _support(model: nn.Module, shape: tuple[int, ...], degree: int) -> int | None:
    from polynet.expansion.receptive import patterns_of_model, support_count

    try:
        stages = patterns_of_model(model, shape)
        return None if stages is None else support_count(stages, math.prod(shape), degree)
    except (ValueError, RuntimeError):  # a shape the chain cannot take: expand says why
        return None


def _count_graph(model: nn.Module, input_shape) -> TermCount:
    """Theorem 2's table of a traced model: one row per node that depends on the input."""
    from polynet.expansion.dispatch import graph_input_shape
    from polynet.expansion.graph import expand_graph
    from polynet.expansion.inputs import n_variables

    shape = graph_input_shape(model, input_shape)
    sketch = expand_graph(model, shape, symbolic=True)
    from polynet.expansion.trace import check_same_ops

    check_same_ops(sketch.ops, expand_graph(model, shape, symbolic=True, probe=1).ops, model)
    rows = tuple(
        LayerCount(node.node, node.op, node.parameters, node.degree) for node in sketch.nodes
    )
    n_params = sum(p.numel() for p in model.parameters())
    return TermCount(rows, n_variables(shape), sketch.degree_bound, n_params)
