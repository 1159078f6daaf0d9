"""Truncation of a network polynomial: by term count, by a certified error bound, by degree.

On a box ∏ [low_i, high_i] a monomial is at most M_α = ∏ max(|low_i|, |high_i|)^{α_i} in size,
so dropping a set of terms changes an output by at most Σ_dropped |c_α| M_α anywhere in the
box. Keeping terms in decreasing order of |c_α| M_α makes that bound as small as it can be for
each number of terms kept, so "the fewest terms whose dropped part is bounded by tol" is a
prefix of that order.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import torch

from polynet.polynomial.index import MonomialIndex
from polynet.polynomial.network_polynomial import NetworkPolynomial
from polynet.validation import check_int, check_number

__all__ = ["truncate", "monomial_maxima", "ranked_bounds"]


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


def ranked_bounds(poly: NetworkPolynomial, low=None, high=None) -> tuple[np.ndarray, np.ndarray]:
    """The terms in keeping order and the bound left after keeping each prefix.

    Returns ``(order, bound)``: ``order`` lists the non-zero monomials by decreasing
    max_o |c_o,α| M_α; ``bound[k]`` (k = 0..len(order)) bounds max_o sup_box |p_o - p_o,k|
    for the polynomial p_k that keeps the first k of them.
    """
    coef = np.abs(poly.coefficients.detach().cpu().numpy())
    weighted = coef * monomial_maxima(poly.index, low, high)
    score = weighted.max(axis=0)
    order = np.argsort(-score, kind="stable")
    order = order[score[order] > 0]
    ranked = weighted[:, order]
    # tail[o, k] = Σ_{rank >= k} |c| M, summed from the smallest up for accuracy.
    tail = np.zeros((ranked.shape[0], len(order) + 1))
    tail[:, :-1] = np.cumsum(ranked[:, ::-1], axis=1)[:, ::-1]
    return order, tail.max(axis=0)


def truncate(
    poly: NetworkPolynomial,
    *,
    terms: int | None = None,
    tol: float | None = None,
    degree: int | None = None,
    low=None,
    high=None,
) -> NetworkPolynomial:
    """A polynomial with fewer terms; give exactly one of ``terms``, ``tol``, ``degree``.

    Parameters
    ----------
    terms : int, optional
        Keep this many terms, the largest by |c_α| M_α on the box.
    tol : float, optional
        Keep the fewest terms whose dropped part is at most ``tol`` in absolute value
        everywhere in the box (a certified bound, to float64 rounding).
    degree : int, optional
        Drop every term of total degree > ``degree`` (the result lives on the smaller index).
    low, high : float or sequence, optional
        The box for ``terms`` and ``tol`` (default [-1, 1]^n), in the polynomial's variables.

    Returns
    -------
    NetworkPolynomial
        Same variables (and exactness); ``info["truncation"]`` records what was kept and the
        bound.

    Examples
    --------
    >>> idx = MonomialIndex(1, 2)
    >>> p = NetworkPolynomial(idx, torch.tensor([[1.0, 0.1, 0.01]], dtype=torch.float64))
    >>> truncate(p, tol=0.05).coefficients.tolist()
    [[1.0, 0.1, 0.0]]
    """
    if not isinstance(poly, NetworkPolynomial):
        raise TypeError(f"expected a NetworkPolynomial, got {type(poly).__name__}.")
    options = (("terms", terms), ("tol", tol), ("degree", degree))
    given = [name for name, v in options if v is not None]
    if len(given) != 1:
        raise ValueError(
            f"give exactly one of terms=, tol=, degree=; got {', '.join(given) or 'none'}."
        )
    info = dict(poly.info)
    if degree is not None:
        degree = check_int(degree, "degree", 0)
        if low is not None or high is not None:
            raise ValueError("low and high apply to terms= and tol=, not degree=.")
        d = min(degree, poly.index.degree)
        index = MonomialIndex(poly.n_vars, d)
        if poly.exact:
            coef = np.array(poly.exact_coefficients[:, : index.size], dtype=object)
        else:
            coef = poly.coefficients[:, : index.size].clone()
        info["truncation"] = {"degree": d}
        return NetworkPolynomial(
            index,
            coef,
            degree_bound=min(poly.degree_bound, d),
            variables=list(poly.variables),
            n_network_parameters=poly.n_network_parameters,
            info=info,
        )
    order, bound = ranked_bounds(poly, low, high)
    if terms is not None:
        k = min(check_int(terms, "terms", 0), len(order))
    else:
        tol = check_number(tol, "tol", low=0.0)
        k = int(np.argmax(bound <= tol))  # bound is non-increasing and bound[-1] = 0
    return _keep(poly, order[:k], {"terms": k, "bound": float(bound[k]), **_box(low, high)}, info)


def _box(low, high) -> dict:
    def as_list(v, default):
        return default if v is None else np.asarray(v, dtype=np.float64).tolist()

    return {"low": as_list(low, -1.0), "high": as_list(high, 1.0)}


def _keep(poly: NetworkPolynomial, rows: np.ndarray, record: dict, info: dict) -> NetworkPolynomial:
    if poly.exact:
        exact = poly.exact_coefficients
        coef = np.full(exact.shape, Fraction(0), dtype=object)
        coef[:, rows] = exact[:, rows]
    else:
        c = poly.coefficients
        coef = torch.zeros_like(c)
        rows_t = torch.from_numpy(np.asarray(rows, dtype=np.int64)).to(c.device)
        coef[:, rows_t] = c[:, rows_t]
    info["truncation"] = record
    return NetworkPolynomial(
        poly.index,
        coef,
        degree_bound=poly.degree_bound,
        variables=list(poly.variables),
        n_network_parameters=poly.n_network_parameters,
        info=info,
    )
