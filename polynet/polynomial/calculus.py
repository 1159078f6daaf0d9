"""Partial derivatives of a network polynomial, as network polynomials.

∂/∂x_i of Σ c_e x^e is Σ e_i c_e x^{e - 1_i}: one scaled gather on the graded layout, into an
index of one degree less (the graded prefix, so positions are those of the lowered exponents).
Exact polynomials differentiate exactly.
"""

from __future__ import annotations

from fractions import Fraction
from functools import lru_cache

import numpy as np
import torch

from polynet.polynomial.index import MonomialIndex
from polynet.polynomial.network_polynomial import NetworkPolynomial
from polynet.validation import check_int

__all__ = ["derivative", "gradient"]


@lru_cache(maxsize=64)
def _derivative_map(n_vars: int, degree: int, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(src, dst, factor): rows with e_i ≥ 1, the row of e - 1_i, and e_i."""
    index = MonomialIndex(n_vars, degree)
    e = index.exponents
    src = np.nonzero(e[:, i] >= 1)[0]
    lowered = e[src].copy()
    lowered[:, i] -= 1
    dst = index.position(lowered)
    for a in (src, dst):
        a.setflags(write=False)
    factor = e[src, i].copy()
    factor.setflags(write=False)
    return src, dst, factor


def _variable(poly: NetworkPolynomial, i: int | str) -> int:
    if isinstance(i, str):
        if i not in poly.variables:
            raise ValueError(
                f"variable {i!r} is not one of the polynomial's variables "
                f"{poly.variables[:5]}{'...' if poly.n_vars > 5 else ''}."
            )
        return poly.variables.index(i)
    i = check_int(i, "i", 0)
    if i >= poly.n_vars:
        raise ValueError(f"i must be < n_vars = {poly.n_vars}, got {i}.")
    return i


def derivative(poly: NetworkPolynomial, i: int | str) -> NetworkPolynomial:
    """∂poly/∂x_i: a NetworkPolynomial over the index of one degree less.

    Parameters
    ----------
    poly : NetworkPolynomial
    i : int or str
        The variable, by position or by name.

    Examples
    --------
    >>> import torch
    >>> idx = MonomialIndex(2, 2)   # p = x0 + 3 x0 x1
    >>> p = NetworkPolynomial(idx, torch.tensor([[0.0, 1, 0, 0, 3, 0]]))
    >>> derivative(p, 0).coefficients.tolist()   # 1 + 3 x1
    [[1.0, 0.0, 3.0]]
    """
    if not isinstance(poly, NetworkPolynomial):
        raise TypeError(f"expected a NetworkPolynomial, got {type(poly).__name__}.")
    i = _variable(poly, i)
    degree = poly.index.degree
    low = MonomialIndex(poly.n_vars, max(degree - 1, 0))
    src, dst, factor = _derivative_map(poly.n_vars, degree, i)
    if poly.exact:
        exact = poly.exact_coefficients
        coef = np.full((poly.n_outputs, low.size), Fraction(0), dtype=object)
        coef[:, dst] = exact[:, src] * factor
    else:
        c = poly.coefficients
        coef = c.new_zeros(c.shape[0], low.size)
        dst_t = torch.from_numpy(dst.copy()).to(c.device)
        src_t = torch.from_numpy(src.copy()).to(c.device)
        factor_t = torch.from_numpy(factor.copy()).to(c.device, c.dtype)
        coef[:, dst_t] = c[:, src_t] * factor_t
    notes = {"derivative": [*poly.notes.get("derivative", []), poly.variables[i]]}
    return NetworkPolynomial(
        low,
        coef,
        degree_bound=max(poly.degree_bound - 1, 0),
        variables=list(poly.variables),
        n_network_parameters=poly.n_network_parameters,
        slice=poly.slice,
        input_shape=poly.input_shape,
        raw_units=poly.raw_units,
        notes=notes,
    )


def gradient(poly: NetworkPolynomial) -> tuple[NetworkPolynomial, ...]:
    """(∂poly/∂x_0, ..., ∂poly/∂x_{n-1}), each a NetworkPolynomial of one degree less."""
    if not isinstance(poly, NetworkPolynomial):
        raise TypeError(f"expected a NetworkPolynomial, got {type(poly).__name__}.")
    return tuple(derivative(poly, i) for i in range(poly.n_vars))
