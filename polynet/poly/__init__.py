"""The expansion of a network into one explicit polynomial.

Conventions, fixed here once:

- univariate coefficients (an SLAF's ``polynomial()``) run low to high, as in numpy;
- monomials are in graded order, scikit-learn's ``PolynomialFeatures`` column order
  (``1, x0, x1, x0^2, x0 x1, x1^2, ...``), and are named like ``x0^2 x1``.

Modules: ``index`` (MonomialIndex), ``rules`` (the one table of what is polynomial),
``network`` (a chain read as affine and polynomial stages), ``graph`` (any fx-traceable
model on polynomial tensors), ``dense`` (the dense walk), ``fold`` (the last layer folded
block by block), ``modular`` (the exact twin, prime by prime), ``sparse`` (the exact ring
walk), ``polynomial`` (NetworkPolynomial), ``store`` (Zarr-backed polynomials, Dask),
``evaluate`` (streaming evaluation), ``calculus`` and ``truncation``, ``expand``, ``count``
(Theorem 2 counts without expanding), ``truncated`` (the exact degree <= q part and the Taylor
polynomial at a point, for any number of inputs), ``factored`` (an MLP as G(W1 x + b1)),
``monomial_codes`` (one int64 per monomial), ``receptive`` (receptive fields and the exact
support they allow), ``sparse_polynomial`` (SparsePolynomial) and ``field_expand`` (a chain
expanded field by field).
"""

from polynet.poly.expand import expand
from polynet.poly.index import MonomialIndex
from polynet.poly.polynomial import NetworkPolynomial, Provenance, Slice, Term
from polynet.poly.sparse_polynomial import SparsePolynomial

__all__ = [
    "expand",
    "MonomialIndex",
    "NetworkPolynomial",
    "SparsePolynomial",
    "Term",
    "Slice",
    "Provenance",
]
