"""Sparsification: the fewest terms of a network polynomial that stay within a stated error.

The certified side is :func:`polynet.polynomial.truncation.ranked_bounds`: on the data's box each
dropped term c_α m_α is at most |c_α| M_α, M_α = ∏ max(|low_i|, |high_i|)^{α_i}, so their
sum bounds the error everywhere in the box. The measured side is the largest and the RMS
error of the truncated polynomial on the data themselves, which the bound caps from above.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from numpy.typing import ArrayLike

from polynet.polynomial.network_polynomial import NetworkPolynomial
from polynet.polynomial.truncation import box_record, kept_rows, ranked_bounds
from polynet.validation import check_int, check_number

__all__ = ["Sparsification", "sparsify", "NOTHING_TO_DROP"]

#: A certified truncation that keeps at least this share of the terms has found nothing worth
#: dropping: the result says so instead of presenting the count as a sparser formula.
NOTHING_TO_DROP = 0.9

#: Points per chunk when measuring the error of every truncation level at once.
_CHUNK_ELEMENTS = 1 << 22


@dataclass(frozen=True)
class Sparsification:
    """A truncated polynomial, its bound and error, and the error-vs-terms curve.

    Attributes
    ----------
    polynomial : NetworkPolynomial
        The kept terms (same index and variables; dropped coefficients are zero).
    n_terms : int
        Terms kept, the fewest whose certified bound is ≤ ``tol``.
    tol : float
        The absolute tolerance used.
    bound : float
        Certified bound on max_o sup_box |p_o - kept_o|.
    max_error, rms_error : float or None
        Measured on the data (None without data).
    terms : ndarray of int
        Term counts of the curve (ascending; includes ``n_terms`` and all terms).
    bounds, max_errors, rms_errors : ndarray
        The curve at each count (errors NaN without data).
    low, high : list of float
        The box.
    """

    polynomial: NetworkPolynomial
    n_terms: int
    tol: float
    bound: float
    max_error: float | None
    rms_error: float | None
    terms: np.ndarray
    bounds: np.ndarray
    max_errors: np.ndarray
    rms_errors: np.ndarray
    low: list[float]
    high: list[float]

    def caveat(self) -> str | None:
        """One line when the truncation keeps nearly every term (:data:`NOTHING_TO_DROP`)."""
        total = int(self.terms[-1])
        if total == 0 or self.n_terms < NOTHING_TO_DROP * total:
            return None
        return (
            f"nothing to drop: every output within tol = {self.tol:.3g} on the box needs "
            f"{self.n_terms / total:.2%} of the terms ({self.n_terms:,} of {total:,}), so this "
            "polynomial has no smaller certified form at this tolerance; a looser tol, a "
            "smaller box, or a refit of a few terms on the data would be needed."
        )

    def table(self) -> str:
        """The curve as a markdown table (terms, certified bound, measured errors)."""
        lines = ["| terms kept | certified bound | max error on data | RMS error on data |"]
        lines.append("|---:|---:|---:|---:|")
        for k, b, m, r in zip(self.terms, self.bounds, self.max_errors, self.rms_errors):
            mark = " **←**" if k == self.n_terms else ""
            lines.append(f"| {k:,}{mark} | {b:.3g} | {m:.3g} | {r:.3g} |")
        return "\n".join(lines)


def sparsify(
    poly: NetworkPolynomial,
    X: ArrayLike | None = None,
    *,
    tol: float | None = None,
    rtol: float = 1e-2,
    low: ArrayLike | float | None = None,
    high: ArrayLike | float | None = None,
    n_levels: int = 40,
) -> Sparsification:
    """The fewest terms whose dropped part is certified ≤ ``tol`` on the box, and the curve.

    Parameters
    ----------
    poly : NetworkPolynomial
    X : array-like of shape (n_samples, n_vars), optional
        Data in the polynomial's variables: the box defaults to their bounding box, and the
        errors are measured on them.
    tol : float, optional
        Absolute tolerance on each output. Default: ``rtol`` times the largest output's
        standard deviation on X (without X, times the bound of dropping every term).
    rtol : float, default=1e-2
        Relative tolerance when ``tol`` is not given.
    low, high : float or sequence, optional
        The box (default: the data's box, else [-1, 1]^n).
    n_levels : int, default=40
        Points of the curve (geometrically spaced term counts).

    Examples
    --------
    >>> import polynet
    >>> idx = polynet.MonomialIndex(1, 2)
    >>> p = NetworkPolynomial(idx, torch.tensor([[1.0, 0.1, 0.001]], dtype=torch.float64))
    >>> s = sparsify(p, tol=0.01)
    >>> s.n_terms, s.bound
    (2, 0.001)
    """
    if not isinstance(poly, NetworkPolynomial):
        raise TypeError(f"expected a NetworkPolynomial, got {type(poly).__name__}.")
    n_levels = check_int(n_levels, "n_levels", 2)
    points = None
    if X is not None:
        points = np.asarray(X.cpu() if isinstance(X, torch.Tensor) else X, dtype=np.float64)
        if points.ndim != 2 or points.shape[1] != poly.n_vars or len(points) == 0:
            raise ValueError(
                f"X must have shape (n_samples, {poly.n_vars}), got {points.shape}; give the "
                "data in the polynomial's variables."
            )
        if not np.isfinite(points).all():
            raise ValueError("X contains NaN or infinite values; drop or impute them first.")
        if low is None and high is None:
            low, high = points.min(0), points.max(0)
            # A constant column still needs a box of positive width.
            flat = high <= low
            high = np.where(flat, low + 1e-12 * np.maximum(np.abs(low), 1.0), high)
    order, bound = ranked_bounds(poly.coefficients, poly.index, low, high)
    if tol is None:
        rtol = check_number(rtol, "rtol", low=0.0, strict=True)
        if points is not None:
            scale = float(poly(points).std(0).max())
        else:
            scale = float(bound[0])
        tol = rtol * scale
    else:
        tol = check_number(tol, "tol", low=0.0)
    k = int(np.argmax(bound <= tol))
    n = len(order)
    levels = np.unique(
        np.concatenate([[0], np.round(np.geomspace(1, max(n, 1), n_levels)), [k, n]]).astype(int)
    )
    if points is not None:
        max_err, rms_err = _measured(poly, points, order, levels)
    else:
        max_err = rms_err = np.full(len(levels), np.nan)
    at = int(np.searchsorted(levels, k))
    box = box_record(low, high)
    kept = poly.with_terms(
        kept_rows(poly._working_coefficients(), order[:k]),
        {"terms": k, "bound": float(bound[k]), **box},
    )
    n_vars = poly.n_vars
    return Sparsification(
        polynomial=kept,
        n_terms=k,
        tol=float(tol),
        bound=float(bound[k]),
        max_error=None if points is None else float(max_err[at]),
        rms_error=None if points is None else float(rms_err[at]),
        terms=levels,
        bounds=bound[levels],
        max_errors=max_err,
        rms_errors=rms_err,
        low=list(np.broadcast_to(box["low"], (n_vars,)).astype(float)),
        high=list(np.broadcast_to(box["high"], (n_vars,)).astype(float)),
    )


def _measured(
    poly: NetworkPolynomial, X: np.ndarray, order: np.ndarray, levels: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Largest and RMS |p - p_k| over X (worst output) for each k in ``levels``, in one pass:
    the residual of every prefix is a reversed cumulative sum of the ranked terms."""
    coef = poly.coefficients
    order_t = torch.from_numpy(order.astype(np.int64)).to(coef.device)
    levels_t = torch.from_numpy(levels.astype(np.int64)).to(coef.device)
    ranked = coef[:, order_t]  # (n_outputs, n_ranked)
    step = max(1, _CHUNK_ELEMENTS // max(len(order), 1))
    worst = torch.zeros(poly.n_outputs, len(levels), dtype=torch.float64, device=coef.device)
    squares = torch.zeros_like(worst)
    x = torch.as_tensor(X, dtype=torch.float64, device=coef.device)
    for s in range(0, len(x), step):
        feats = poly.monomials(x[s : s + step])[:, order_t]  # (B, n_ranked)
        for o in range(poly.n_outputs):
            terms = feats * ranked[o]
            tail = torch.zeros(len(terms), len(order) + 1, dtype=torch.float64, device=x.device)
            tail[:, :-1] = terms.flip(1).cumsum(1).flip(1)
            r = tail[:, levels_t]
            worst[o] = torch.maximum(worst[o], r.abs().max(0).values)
            squares[o] += (r * r).sum(0)
    rms = (squares / len(x)).sqrt()
    return worst.max(0).values.cpu().numpy(), rms.max(0).values.cpu().numpy()
