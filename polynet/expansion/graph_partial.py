"""The options of ``expand`` on a traced graph model: degree=, at=, store=, client=, sizes.

A model with a custom ``forward()`` is expanded by running it on tensors of polynomials
(:mod:`polynet.expansion.trace`). Here are the decisions ``expand`` and ``estimate`` take for
such a model before and after that run:

- its sketch (shapes and degrees of every node, no coefficients) and the peak memory it
  implies (:func:`graph_peak_bytes`), at the truncated sizes C(n + min(d, q), min(d, q)) with
  ``degree=q``
  (:mod:`polynet.expansion.graph_truncation`), so a refusal comes before any work;
- ``degree=``/``at=``: the Taylor polynomial of degree q at x0, or the whole polynomial
  re-centred, with the conventions of the chain path (:mod:`polynet.expansion.truncated`):
  ``notes["taylor"]``, variables ``u0, ...``, ``degree_bound`` the network's D;
- ``store=``: the graph holds its result in memory, then writes it into a store of the
  chain path's format; it is not out-of-core, so it is refused when the result does not fit;
- ``client=``: refused, since the graph is computed in one pass in this process.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from torch import nn

from polynet.errors import NotExpandableError
from polynet.expansion.graph import NodeDegree, expand_graph

__all__ = [
    "GraphSketch",
    "check_graph_options",
    "graph_peak_bytes",
    "graph_sketch",
]


@dataclass(frozen=True)
class GraphSketch:
    """Shapes and degrees of a traced model's nodes: what sizes its expansion."""

    nodes: tuple[NodeDegree, ...]
    n_vars: int
    degree_bound: int
    n_outputs: int


def graph_sketch(model: nn.Module, shape, device=None, entry=None) -> GraphSketch:
    """The model run symbolically on two example batches (they must run the same ops)."""
    from polynet.expansion.trace import check_same_ops

    sketch = expand_graph(model, shape, device, symbolic=True, entry=entry)
    other = expand_graph(model, shape, device, symbolic=True, entry=entry, probe=1)
    check_same_ops(sketch.ops, other.ops, model)
    return GraphSketch(
        sketch.nodes,
        sketch.output.n_vars,
        sketch.degree_bound,
        math.prod(sketch.output.value_shape),
    )


def graph_peak_bytes(nodes, n: int, q: int | None = None) -> int:
    """Peak memory of the graph's expansion, each node held at degree d' = min(d, q) (q None:
    not truncated): two float64 copies of the largest node (an op's operand and result) and
    the scratch of the product that may have made it, min(CHUNK_ELEMENTS, 2^d' T(d') · values)
    float64s (a monomial of degree d' is a product of two monomials in at most 2^d' ways).

    On bench_graph_partial's cases the measured peak was 0.2 to 1.0 times this.
    """
    from polynet.expansion.graph_truncation import CHUNK_ELEMENTS

    def need(d: int, values: int) -> int:
        d = d if q is None else min(d, q)
        held = math.comb(n + d, d) * values
        return 8 * (2 * held + min(CHUNK_ELEMENTS, 2**d * held))

    return max((need(r.degree, r.values) for r in nodes), default=0)


def check_graph_options(model: nn.Module, exact, store, client, degree, at) -> None:
    """Refuse the options a traced graph does not take, naming the option and what to do."""
    name = type(model).__name__
    if client is not None:
        raise NotExpandableError(
            f"client= distributes the blocks of a chain's last layers over a Dask cluster; "
            f"{name} is expanded as a traced graph, which runs forward() once in this process "
            "on tensors of polynomials, so there are no independent blocks to send. Drop "
            "client= (store= alone writes the graph's polynomial to a store), or expand a "
            "Sequential of table layers to use a cluster."
        )
    if exact and store is not None:
        raise ValueError("store= writes float64 coefficients; use exact=False with store=.")
