"""The polynomial in uncertainty-quantification tools: chaospy (numpoly) and OpenTURNS.

Both are optional: each function imports its package on call and names the package to
install when it is missing. Variables keep their order; chaospy names them ``q0, q1, ...``
(its own convention), OpenTURNS ``x0, x1, ...`` or the polynomial's variable names.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from polynet.errors import PolynetError

if TYPE_CHECKING:
    from polynet.polynomial.network_polynomial import NetworkPolynomial

__all__ = ["to_chaospy", "to_openturns"]


def _terms(poly: NetworkPolynomial, output: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Exponents (m, n) and coefficients (m, n_outputs) of the non-zero terms."""
    keep = poly._nonzero().numpy().any(0) if output is None else poly._nonzero()[output].numpy()
    rows = np.flatnonzero(keep)
    coef = poly.coefficients.detach().cpu().numpy()[:, rows].T
    if output is not None:
        coef = coef[:, output : output + 1]
    return poly._exponents_of(rows), coef


def to_chaospy(poly: NetworkPolynomial, output: int | None = None) -> Any:
    """A ``numpoly.ndpoly`` (what chaospy computes with) equal to ``poly``.

    Shape ``(n_outputs,)``, or a scalar polynomial for one ``output``; variables ``q0..``
    in the polynomial's order, so ``chaospy.E(p, dist)`` with a joint distribution of
    ``n_vars`` marginals gives the mean.
    """
    try:
        import numpoly
    except ImportError as exc:
        raise PolynetError(
            "to_chaospy needs chaospy (numpoly): pip install chaospy, or pip install "
            '"polynet-slaf[test]".'
        ) from exc
    exps, coef = _terms(poly, output)
    names = tuple(f"q{i}" for i in range(poly.n_vars))
    coefficients = [c if output is None else c[0] for c in coef]
    return numpoly.ndpoly.from_attributes(
        exponents=exps.astype(np.int64), coefficients=coefficients, names=names
    )


def to_openturns(poly: NetworkPolynomial, output: int = 0) -> Any:
    """An ``openturns.SymbolicFunction`` of one output (float64 coefficients, repr digits)."""
    try:
        import openturns as ot
    except ImportError as exc:
        raise PolynetError("to_openturns needs OpenTURNS: pip install openturns.") from exc
    exps, coef = _terms(poly, output)
    names = [f"x{i}" for i in range(poly.n_vars)]
    pieces = []
    for row, c in zip(exps, coef[:, 0]):
        factors = [repr(float(c))]
        factors += [v if p == 1 else f"{v}^{int(p)}" for v, p in zip(names, row) if p]
        pieces.append("*".join(factors))
    return ot.SymbolicFunction(names, [" + ".join(pieces) or "0"])
