"""Partial derivatives of polynomial coefficients over a graded index.

∂/∂x_i of Σ c_e x^e is Σ e_i c_e x^{e - 1_i}: one scaled gather on the graded layout, into an
index of one degree less (the graded prefix, so positions are those of the lowered exponents).
Exact coefficients (Fractions) differentiate exactly. ``NetworkPolynomial.derivative`` binds
:func:`derivative_coefficients`.
"""

from __future__ import annotations

from fractions import Fraction
from functools import lru_cache

import numpy as np
import torch

from polynet.polynomial.index import MonomialIndex

__all__ = ["derivative", "derivative_coefficients", "gradient"]


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


def derivative_coefficients(
    coefficients: torch.Tensor | np.ndarray, index: MonomialIndex, i: int
) -> tuple[torch.Tensor | np.ndarray, MonomialIndex]:
    """∂/∂x_i of every row of ``coefficients`` (n_outputs, index.size): the coefficients over
    the index of one degree less, and that index.

    Examples
    --------
    >>> idx = MonomialIndex(2, 2)   # p = x0 + 3 x0 x1
    >>> coef, low = derivative_coefficients(torch.tensor([[0.0, 1, 0, 0, 3, 0]]), idx, 0)
    >>> coef.tolist(), low.degree   # 1 + 3 x1
    ([[1.0, 0.0, 3.0]], 1)
    """
    low = MonomialIndex(index.n_vars, max(index.degree - 1, 0))
    src, dst, factor = _derivative_map(index.n_vars, index.degree, i)
    if isinstance(coefficients, np.ndarray):  # exact: Fractions
        coef = np.full((coefficients.shape[0], low.size), Fraction(0), dtype=object)
        coef[:, dst] = coefficients[:, src] * factor
        return coef, low
    c = coefficients
    coef = c.new_zeros(c.shape[0], low.size)
    dst_t = torch.from_numpy(dst.copy()).to(c.device)
    src_t = torch.from_numpy(src.copy()).to(c.device)
    factor_t = torch.from_numpy(factor.copy()).to(c.device, c.dtype)
    coef[:, dst_t] = c[:, src_t] * factor_t
    return coef, low


def derivative(poly, i: int | str):
    """``poly.derivative(i)``: ∂poly/∂x_i by position or name (the function form of 0.2)."""
    if not hasattr(poly, "derivative"):
        raise TypeError(f"expected a NetworkPolynomial, got {type(poly).__name__}.")
    return poly.derivative(i)


def gradient(poly) -> tuple:
    """``poly.gradient()``: (∂poly/∂x_0, ..., ∂poly/∂x_{n-1})."""
    if not hasattr(poly, "gradient"):
        raise TypeError(f"expected a NetworkPolynomial, got {type(poly).__name__}.")
    return poly.gradient()
