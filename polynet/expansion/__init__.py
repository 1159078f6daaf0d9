"""The expansion, a compiler: trace -> IR -> engine -> value.

- ``trace`` runs a model's forward() on an example batch and replays each ATen op on
  polynomial tensors; ``rules`` is the one table of what is polynomial; ``inputs`` reads the
  shapes of several inputs; ``graph`` holds the polynomial-tensor arithmetic the trace uses;
  ``ir`` is the lowered program the tracer records for the engines that do not run inside it;
- ``network`` reads a chain of layers as affine and univariate-polynomial stages;
- engines: ``dense`` (the graded walk, float), ``fold`` (the last layer folded block by
  block), ``modular`` and ``residue_kernels`` (exact, prime by prime), ``ring_walk`` (exact
  rational rings: python-flint or SymPy), ``ir_ring`` and ``ir_dense`` (the recorded
  program of a traced model, exact in those rings, or dense in float64 / modulo primes;
  ``graph_exact`` picks one within a budget), ``store_walk`` (Zarr blocks, Dask),
  ``truncated`` (the degree <= q part, at a point), ``field_expand`` and ``receptive``
  (receptive-field sparse), ``factored`` (G(W1 x + b1));
- ``count`` (Theorem 2 counts without expanding), ``refusal`` (what a too-large expansion
  is told), ``finite`` (NaN/Inf weights refused);
- ``dispatch``: ``expand`` and ``estimate``, the one place that picks an engine.

Nothing here is imported by :mod:`polynet.polynomial`.
"""

from __future__ import annotations

__all__ = ["expand", "estimate", "Estimate", "count_terms"]


def __getattr__(name: str):
    # Imported on first use, so `import polynet.expansion.trace` stays cheap.
    if name in ("expand", "estimate", "Estimate"):
        from polynet.expansion import dispatch

        return getattr(dispatch, name)
    if name == "count_terms":
        from polynet.expansion.count import count_terms

        return count_terms
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
