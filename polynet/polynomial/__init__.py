"""The polynomial value and what is computed from it.

- ``index``: :class:`MonomialIndex`, the graded exponent table with its product maps;
- ``exact``: :class:`ExactCoefficients`, integer numerators over one denominator;
- value types: ``network_polynomial`` (:class:`NetworkPolynomial`, dense graded),
  ``sparse_polynomial`` (:class:`SparsePolynomial`, monomial codes), ``store``
  (:class:`StoredPolynomial`, Zarr-backed: the format, its writer and reader),
  ``factored_polynomial`` (:class:`FactoredPolynomial`, an MLP as G(W1 x + b1));
- what is computed from a value, as functions over coefficient arrays and an index that the
  value classes bind (as in numpy.polynomial): ``evaluate`` and ``split_eval`` (no exponent
  table), ``calculus`` (derivatives and gradients), ``truncation`` (drop small terms,
  cut a degree), ``monomial_codes`` (one int64 per monomial), ``blocks`` and ``homogeneous``
  (graded blocks by leading exponents and by degree), ``uncertainty`` (chaospy, OpenTURNS).

Nothing here imports :mod:`polynet.expansion`.
"""

from __future__ import annotations

__all__ = [
    "MonomialIndex",
    "NetworkPolynomial",
    "SparsePolynomial",
    "StoredPolynomial",
    "ExactCoefficients",
    "FactoredPolynomial",
]

_HOMES = {
    "MonomialIndex": "index",
    "NetworkPolynomial": "network_polynomial",
    "SparsePolynomial": "sparse_polynomial",
    "StoredPolynomial": "store",
    "ExactCoefficients": "exact",
    "FactoredPolynomial": "factored_polynomial",
}


def __getattr__(name: str):
    if name in _HOMES:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_HOMES[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
