"""Truncation of polynomial coefficients: by term count, by a certified error bound, by degree.

On a box ∏ [low_i, high_i] a monomial is at most M_α = ∏ max(|low_i|, |high_i|)^{α_i} in size,
so dropping a set of terms changes an output by at most Σ_dropped |c_α| M_α anywhere in the
box. Keeping terms in decreasing order of |c_α| M_α makes that bound as small as it can be for
each number of terms kept, so "the fewest terms whose dropped part is bounded by tol" is a
prefix of that order.

These are functions over coefficient arrays (float tensors, or object arrays of Fractions for
exact polynomials) and a :class:`MonomialIndex`; ``NetworkPolynomial.truncate`` binds them.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import torch

from polynet.polynomial.index import MonomialIndex
from polynet.validation import check_int, check_number

__all__ = ["truncate", "truncated_coefficients", "monomial_maxima", "ranked_bounds", "kept_rows"]


def monomial_maxima(index: MonomialIndex, low=None, high=None) -> np.ndarray:
    """max over the box of |m_α(x)| for each monomial α of the index: shape (index.size,).

    ``low``/``high`` are per variable (scalars apply to all); the default box is [-1, 1]^n.
    """
    n = index.n_vars
    lo = np.broadcast_to(np.asarray(-1.0 if low is None else low, dtype=np.float64), (n,))
    hi = np.broadcast_to(np.asarray(1.0 if high is None else high, dtype=np.float64), (n,))
    if not (np.isfinite(lo).all() and np.isfinite(hi).all()):
        raise ValueError("low and high must be finite numbers.")
    bad = np.nonzero(~(lo < hi))[0]
    if len(bad):
        i = int(bad[0])
        raise ValueError(f"low[{i}] must be < high[{i}], got low={lo[i]:g}, high={hi[i]:g}.")
    radius = np.maximum(np.abs(lo), np.abs(hi))
    powers = radius[None, :] ** np.arange(index.degree + 1)[:, None]  # (D + 1, n)
    return np.prod(powers[index.exponents, np.arange(n)], axis=1)


def ranked_bounds(
    coefficients: torch.Tensor | np.ndarray, index: MonomialIndex, low=None, high=None
) -> tuple[np.ndarray, np.ndarray]:
    """The terms in keeping order and the bound left after keeping each prefix.

    ``coefficients`` is (n_outputs, index.size), float. Returns ``(order, bound)``: ``order``
    lists the non-zero monomials by decreasing max_o |c_o,α| M_α; ``bound[k]`` (k =
    0..len(order)) bounds max_o sup_box |p_o - p_o,k| for the polynomial p_k that keeps the
    first k of them.
    """
    if isinstance(coefficients, torch.Tensor):
        coefficients = coefficients.detach().cpu().numpy()
    coef = np.abs(np.asarray(coefficients, dtype=np.float64))
    weighted = coef * monomial_maxima(index, low, high)
    score = weighted.max(axis=0)
    order = np.argsort(-score, kind="stable")
    order = order[score[order] > 0]
    ranked = weighted[:, order]
    # tail[o, k] = Σ_{rank >= k} |c| M, summed from the smallest up for accuracy.
    tail = np.zeros((ranked.shape[0], len(order) + 1))
    tail[:, :-1] = np.cumsum(ranked[:, ::-1], axis=1)[:, ::-1]
    return order, tail.max(axis=0)


def kept_rows(coefficients: torch.Tensor | np.ndarray, rows: np.ndarray):
    """The coefficients with every monomial but ``rows`` set to zero (same type and shape)."""
    if isinstance(coefficients, np.ndarray):  # exact: Fractions
        coef = np.full(coefficients.shape, Fraction(0), dtype=object)
        coef[:, rows] = coefficients[:, rows]
        return coef
    coef = torch.zeros_like(coefficients)
    rows_t = torch.from_numpy(np.asarray(rows, dtype=np.int64)).to(coefficients.device)
    coef[:, rows_t] = coefficients[:, rows_t]
    return coef


def box_record(low, high) -> dict:
    """The box of a truncation, as the record stores it."""

    def as_list(v, default):
        return default if v is None else np.asarray(v, dtype=np.float64).tolist()

    return {"low": as_list(low, -1.0), "high": as_list(high, 1.0)}


def truncated_coefficients(
    coefficients: torch.Tensor | np.ndarray,
    index: MonomialIndex,
    floats: torch.Tensor,
    *,
    terms: int | None = None,
    tol: float | None = None,
    degree: int | None = None,
    low=None,
    high=None,
) -> tuple[torch.Tensor | np.ndarray, MonomialIndex, dict]:
    """Fewer terms; exactly one of ``terms``, ``tol``, ``degree``.

    ``coefficients`` are kept as they are (float or exact); ``floats`` are their float64
    values, which rank the terms. Returns ``(coefficients, index, record)``: the index is
    smaller for ``degree``; ``record`` says what was kept and the bound.
    """
    options = (("terms", terms), ("tol", tol), ("degree", degree))
    given = [name for name, v in options if v is not None]
    if len(given) != 1:
        raise ValueError(
            f"give exactly one of terms=, tol=, degree=; got {', '.join(given) or 'none'}."
        )
    if degree is not None:
        degree = check_int(degree, "degree", 0)
        if low is not None or high is not None:
            raise ValueError("low and high apply to terms= and tol=, not degree=.")
        d = min(degree, index.degree)
        small = MonomialIndex(index.n_vars, d)
        if isinstance(coefficients, np.ndarray):
            coef = np.array(coefficients[:, : small.size], dtype=object)
        else:
            coef = coefficients[:, : small.size].clone()
        return coef, small, {"degree": d}
    order, bound = ranked_bounds(floats, index, low, high)
    if terms is not None:
        k = min(check_int(terms, "terms", 0), len(order))
    else:
        tol = check_number(tol, "tol", low=0.0)
        k = int(np.argmax(bound <= tol))  # bound is non-increasing and bound[-1] = 0
    record = {"terms": k, "bound": float(bound[k]), **box_record(low, high)}
    return kept_rows(coefficients, order[:k]), index, record


def truncate(poly, **options):
    """``poly.truncate(**options)``: the function form polynet 0.2 had.

    Examples
    --------
    >>> from polynet.polynomial.network_polynomial import NetworkPolynomial
    >>> idx = MonomialIndex(1, 2)
    >>> p = NetworkPolynomial(idx, torch.tensor([[1.0, 0.1, 0.01]], dtype=torch.float64))
    >>> truncate(p, tol=0.05).coefficients.tolist()
    [[1.0, 0.1, 0.0]]
    """
    if not hasattr(poly, "truncate"):
        raise TypeError(f"expected a NetworkPolynomial, got {type(poly).__name__}.")
    return poly.truncate(**options)
