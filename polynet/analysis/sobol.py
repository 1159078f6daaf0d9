"""Exact Sobol indices of a network polynomial, from its orthogonal-basis coefficients.

With independent inputs and the polynomial written in the orthonormal basis of their
distribution, p = Σ_α c_α ψ_α, the ANOVA decomposition is read off the coefficients: the mean
is c_0, the variance Σ_{α≠0} c_α², the part of the variance due to exactly the set of
variables u is the sum over the α whose support is u. Uniform inputs take Legendre, normal
inputs take (probabilists') Hermite polynomials. Nothing is sampled: the indices are those of
the polynomial, to rounding in float64, or exactly in rationals on the exact path.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from fractions import Fraction
from functools import lru_cache
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from polynet.analysis.orthogonal import (
    FAMILIES,
    _norms,
    affine_parameters,
    check_exact,
    exact_conversion,
    graded_conversion,
    integer_norms,
)
from polynet.errors import PolynetWarning
from polynet.polynomial.index import MonomialIndex
from polynet.polynomial.network_polynomial import NetworkPolynomial

__all__ = ["SobolIndices", "sobol", "sobol_bounds", "DISTRIBUTIONS", "VARIANCE_RATIO_WARN"]

#: When the polynomial's variance under the distribution exceeds its variance on the data by
#: this factor, the indices mostly describe where the formula extrapolates: say so beside them.
VARIANCE_RATIO_WARN = 10.0

#: Input distributions and the orthogonal family each takes.
DISTRIBUTIONS = {"uniform": "legendre", "normal": "hermite"}


@dataclass(frozen=True)
class SobolIndices:
    """Variance decomposition of each output of a polynomial under independent inputs.

    Attributes
    ----------
    mean, variance : ndarray of shape (n_outputs,)
    first : ndarray of shape (n_outputs, n_vars)
        First-order indices S_i = Var(E[p | x_i]) / Var(p).
    total : ndarray of shape (n_outputs, n_vars)
        Total indices T_i: the share of every term in which x_i takes part.
    second : ndarray of shape (n_outputs, n_vars, n_vars)
        Pure pairwise indices S_ij (symmetric, zero diagonal): the share of the terms in
        exactly x_i and x_j.
    variables : list of str
    distribution : str
        "uniform" or "normal".
    parameters : dict
        ``low``/``high`` or ``mean``/``std``, per variable.
    exact : bool
        Whether the arrays hold ``fractions.Fraction`` (object dtype).
    order_variance : ndarray of shape (n_outputs, max_order + 1)
        Variance carried by the terms of each interaction order (column 0 is zero).
    data_variance : ndarray of shape (n_outputs,) or None
        The polynomial's variance on the data points given to :func:`sobol` (``data=``);
        :meth:`caveat` compares it with ``variance``.
    """

    mean: np.ndarray
    variance: np.ndarray
    first: np.ndarray
    total: np.ndarray
    second: np.ndarray
    variables: list[str]
    distribution: str
    parameters: dict[str, list]
    exact: bool
    order_variance: np.ndarray = field(repr=False)
    data_variance: np.ndarray | None = field(default=None, repr=False)

    @property
    def n_outputs(self) -> int:
        return len(self.mean)

    @property
    def n_vars(self) -> int:
        return len(self.variables)

    def by_order(self) -> np.ndarray:
        """Share of the variance per interaction order: shape (n_outputs, max_order).

        Column k - 1 is the share of the terms in exactly k variables; rows sum to 1.
        """
        out = _ratio(self.order_variance[:, 1:], self.variance[:, None], self.exact)
        return out

    def interactions(self, top: int = 10, output: int = 0) -> list[tuple[str, str, float]]:
        """The ``top`` largest pure pairwise indices of one output, largest first."""
        s = np.asarray(self.second[output], dtype=np.float64)
        i, j = np.triu_indices(self.n_vars, 1)
        order = np.argsort(-s[i, j], kind="stable")[:top]
        return [(self.variables[i[k]], self.variables[j[k]], float(s[i[k], j[k]])) for k in order]

    def variance_ratio(self, output: int = 0) -> float | None:
        """The variance under the distribution over the variance on the data (None: no data)."""
        if self.data_variance is None:
            return None
        on_data = float(self.data_variance[output])
        return math.inf if on_data <= 0 else float(self.variance[output]) / on_data

    def caveat(self, output: int = 0) -> str | None:
        """One line when the distribution's variance dwarfs the data's
        (:data:`VARIANCE_RATIO_WARN`), else None."""
        ratio = self.variance_ratio(output)
        if ratio is None or ratio < VARIANCE_RATIO_WARN:
            return None
        return (
            f"caveat: output {output} varies {ratio:,.0f}x more under these {self.distribution} "
            f"inputs than on the data (variance {float(self.variance[output]):.4g} against "
            f"{float(self.data_variance[output]):.4g}), so the indices describe where the "
            "formula extrapolates, not what drives its predictions on the data; for that, use "
            "data-based indices such as permutation importance of the polynomial on the data "
            "(sklearn.inspection.permutation_importance), or a narrower box (low=, high=)."
        )

    def table(self, output: int = 0, *, top: int | None = None, markdown: bool = True) -> str:
        """First and total indices of one output, largest total first, as a table.

        ``markdown=False`` gives aligned plain text. ``top`` keeps the largest rows. A caveat
        line follows when the distribution's variance dwarfs the data's (:meth:`caveat`).
        """
        first = np.asarray(self.first[output], dtype=np.float64)
        total = np.asarray(self.total[output], dtype=np.float64)
        order = np.argsort(-total, kind="stable")
        if top is not None:
            order = order[:top]
        header = ["variable", "first S_i", "total T_i", "interactions T_i - S_i"]
        rows = [
            [self.variables[i], f"{first[i]:.4f}", f"{total[i]:.4f}", f"{total[i] - first[i]:.4f}"]
            for i in order
        ]
        shares = np.asarray(self.by_order()[output], dtype=np.float64)
        orders = ", ".join(f"{k + 1}: {s:.3f}" for k, s in enumerate(shares) if s > 5e-4)
        note = (
            f"mean {float(self.mean[output]):.6g}, variance {float(self.variance[output]):.6g} "
            f"({self.distribution}); variance share by interaction order: {orders or '-'}"
        )
        if markdown:
            lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
            lines += ["| " + " | ".join(r) + " |" for r in rows]
        else:
            widths = [max(len(h), *(len(r[c]) for r in rows)) for c, h in enumerate(header)]
            lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths))]
            lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths)) for r in rows]
        caveat = self.caveat(output)
        return "\n".join(lines) + "\n\n" + note + ("\n\n" + caveat if caveat else "")

    def __str__(self) -> str:
        return self.table(markdown=False)

    def _repr_html_(self) -> str:
        from polynet.expansion.count import html_table

        header = ["variable", "first S_i", "total T_i", "interactions T_i - S_i"]
        parts = []
        for o in range(self.n_outputs):
            first = np.asarray(self.first[o], dtype=np.float64)
            total = np.asarray(self.total[o], dtype=np.float64)
            rows = [
                [self.variables[i], f"{first[i]:.4f}", f"{total[i]:.4f}"]
                + [f"{total[i] - first[i]:.4f}"]
                for i in np.argsort(-total, kind="stable")
            ]
            note = self.table(o).rsplit("\n\n", 1)[-1]  # mean, variance, shares by order
            label = f"output {o}: " if self.n_outputs > 1 else ""
            parts.append(html_table(header, rows, label + note))
        return "".join(parts)


@dataclass(frozen=True)
class _Supports:
    """Which variables each monomial of an index involves, grouped the ways Sobol needs."""

    rows_with: tuple[np.ndarray, ...]  # per variable: rows where it appears
    single_rows: np.ndarray  # rows in exactly one variable ...
    single_var: np.ndarray  # ... and which
    pair_rows: np.ndarray  # rows in exactly two variables ...
    pair_id: np.ndarray  # ... i * n + j with i < j
    order: np.ndarray  # number of variables of each row


@lru_cache(maxsize=8)
def _supports(n_vars: int, degree: int) -> _Supports:
    active = MonomialIndex(n_vars, degree).exponents > 0
    order = active.sum(1)
    single = np.nonzero(order == 1)[0]
    pairs = np.nonzero(order == 2)[0]
    pair_vars = np.nonzero(active[pairs])[1].reshape(-1, 2)
    return _Supports(
        rows_with=tuple(np.nonzero(active[:, v])[0] for v in range(n_vars)),
        single_rows=single,
        single_var=np.argmax(active[single], axis=1),
        pair_rows=pairs,
        pair_id=pair_vars[:, 0] * n_vars + pair_vars[:, 1],
        order=order,
    )


def _group_sum(values: np.ndarray, groups: np.ndarray, n_groups: int) -> np.ndarray:
    """Per output, the sum of ``values[:, k]`` over the k in each group: (n_outputs, n_groups)."""
    if values.dtype != object:
        return np.stack([np.bincount(groups, weights=v, minlength=n_groups) for v in values])
    out = np.zeros((len(values), n_groups), dtype=object)
    for o, row in enumerate(values):
        for g, v in zip(groups.tolist(), row.tolist()):
            if v:
                out[o, g] += v
    return out


def _ratio(num: np.ndarray, den: np.ndarray, exact: bool) -> np.ndarray:
    den = np.broadcast_to(den, num.shape)
    if exact:
        return _exact_ratio(num, den).astype(object)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), 0.0)


_exact_ratio = np.frompyfunc(lambda a, b: Fraction(a) / b if b else Fraction(0), 2, 1)


def sobol(
    poly: NetworkPolynomial,
    distribution: str = "uniform",
    *,
    low: ArrayLike | float | None = None,
    high: ArrayLike | float | None = None,
    mean: ArrayLike | float | None = None,
    std: ArrayLike | float | None = None,
    exact: bool = False,
    data: ArrayLike | None = None,
) -> SobolIndices:
    """Sobol indices of every output of ``poly`` for independent inputs, without sampling.

    Parameters
    ----------
    poly : NetworkPolynomial
    distribution : {"uniform", "normal"}, default="uniform"
        Each input uniform on [low, high] (default [-1, 1]) or normal with ``mean`` and
        ``std`` (default standard normal).
    low, high, mean, std : float or sequence of float, optional
        Per variable (a scalar applies to all), in the polynomial's own variables: for a
        network trained on standardised inputs, standardised units (see :func:`sobol_bounds`).
    exact : bool, default=False
        Compute in rationals from the exact coefficients (``expand(..., exact=True)``); the
        parameters are taken as exact binary fractions.
    data : array-like of shape (n_samples, n_vars), optional
        Points in the polynomial's variables (e.g. the training inputs): the polynomial's
        variance on them is kept (``data_variance``) so that :meth:`SobolIndices.table` can warn
        when the distribution's variance dwarfs it.

    Returns
    -------
    SobolIndices

    Examples
    --------
    >>> import torch, polynet
    >>> idx = polynet.MonomialIndex(3, 2)   # p = x0 + x1 x2 on [-1, 1]^3
    >>> c = torch.zeros(1, idx.size); c[0, idx.position([[1, 0, 0], [0, 1, 1]])] = 1.0
    >>> s = sobol(polynet.NetworkPolynomial(idx, c))
    >>> s.first.round(4).tolist(), s.second[0, 1, 2].round(4)
    ([[0.75, 0.0, 0.0]], np.float64(0.25))
    """
    if distribution not in DISTRIBUTIONS:
        raise ValueError(f"distribution must be 'uniform' or 'normal', got {distribution!r}.")
    check_exact(poly, exact)
    family = FAMILIES[DISTRIBUTIONS[distribution]]
    measure = "box" if distribution == "uniform" else "normal"
    shift, scale = affine_parameters(
        poly.n_vars, measure, low=low, high=high, mean=mean, std=std, exact=exact
    )
    if exact:
        # In integers over one denominator: c = nums / den, E[ψ²] = weights / wden.
        nums, den = exact_conversion(poly, family, shift, scale)
        weights, wden = integer_norms(family.name, poly.n_vars, poly.index.degree)
        parts = nums * nums * weights
        unit = Fraction(1, den * den * wden)
        mean = np.array([Fraction(int(v), den) for v in nums[:, 0]], dtype=object)
    else:
        coef = graded_conversion(poly, family, shift, scale, exact)
        # Variance of each orthogonal term: c_α² E[ψ_α²].
        parts = coef * coef * _norms(family, poly.index)
        unit = 1.0
        mean = coef[:, 0].copy()
    parts[:, 0] = 0
    sup = _supports(poly.n_vars, poly.index.degree)
    n = poly.n_vars
    variance = parts.sum(axis=1)
    total = np.stack([parts[:, rows].sum(axis=1) for rows in sup.rows_with], axis=1)
    first = _group_sum(parts[:, sup.single_rows], sup.single_var, n)
    pair = _group_sum(parts[:, sup.pair_rows], sup.pair_id, n * n).reshape(-1, n, n)
    pair = pair + pair.transpose(0, 2, 1)
    orders = _group_sum(parts, sup.order, min(n, poly.index.degree) + 1)
    if exact:  # ratios cancel the common denominator; the moments take it back
        orders = orders * unit
    constant = [o for o, v in enumerate(variance) if not v > 0]
    if constant:
        warnings.warn(
            f"output(s) {constant} do not vary under this distribution (variance 0); their "
            "Sobol indices are reported as 0.",
            PolynetWarning,
            stacklevel=2,
        )
    params: dict[str, list[Any]]
    if distribution == "uniform":
        params = {
            "low": [a - b for a, b in zip(shift, scale)],
            "high": [a + b for a, b in zip(shift, scale)],
        }
    else:
        params = {"mean": list(shift), "std": list(scale)}
    return SobolIndices(
        mean=mean,
        variance=variance * unit if exact else variance,
        first=_ratio(first, variance[:, None], exact),
        total=_ratio(total, variance[:, None], exact),
        second=_ratio(pair, variance[:, None, None], exact),
        variables=list(poly.variables),
        distribution=distribution,
        parameters=params,
        exact=exact,
        order_variance=orders,
        data_variance=None if data is None else _data_variance(poly, data),
    )


def _data_variance(poly: NetworkPolynomial, data: ArrayLike) -> np.ndarray:
    """Per output, the variance of the polynomial's values at the data points."""
    x = np.asarray(data, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != poly.n_vars:
        raise ValueError(
            f"data must have shape (n_samples, {poly.n_vars}) in the polynomial's variables, "
            f"got {x.shape}."
        )
    values = np.asarray(poly.to("cpu")(x), dtype=np.float64).reshape(len(x), -1)
    return values.var(axis=0)


def sobol_bounds(
    X: ArrayLike,
    distribution: str = "uniform",
    *,
    standardiser: Any = None,
) -> dict[str, np.ndarray]:
    """Keyword arguments for :func:`sobol` from data: its box, or its mean and std.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_vars)
        Data in the units the network saw; with ``standardiser`` (a fitted
        ``Standardizer``/``StandardScaler``: ``transform``), raw data mapped through it first,
        so the result is in the polynomial's (standardised) variables.
    distribution : {"uniform", "normal"}, default="uniform"
        "uniform" gives ``low``/``high`` (the data's bounding box), "normal" ``mean``/``std``.

    Examples
    --------
    >>> sobol_bounds([[0.0, 1.0], [2.0, 3.0]])
    {'low': array([0., 1.]), 'high': array([2., 3.])}
    """
    if distribution not in DISTRIBUTIONS:
        raise ValueError(f"distribution must be 'uniform' or 'normal', got {distribution!r}.")
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or len(X) < 2:
        raise ValueError(
            f"X must have shape (n_samples, n_vars) with at least 2 samples, got {X.shape}."
        )
    if standardiser is not None:
        X = np.asarray(standardiser.transform(X), dtype=np.float64)
    if not np.isfinite(X).all():
        raise ValueError("X contains NaN or infinite values; drop or impute them first.")
    if distribution == "uniform":
        low, high = X.min(0), X.max(0)
        flat = np.nonzero(~(high > low))[0]
        if len(flat):
            raise ValueError(
                f"column(s) {flat.tolist()} of X are constant, so their box is empty; fix "
                "them with inputs= in expand, or give low/high by hand."
            )
        return {"low": low, "high": high}
    std = X.std(0)
    flat = np.nonzero(~(std > 0))[0]
    if len(flat):
        raise ValueError(
            f"column(s) {flat.tolist()} of X are constant (std 0); fix them with inputs= in "
            "expand, or give mean/std by hand."
        )
    return {"mean": X.mean(0), "std": std}
