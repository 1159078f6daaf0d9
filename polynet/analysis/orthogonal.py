"""Coefficients of a network polynomial in a tensor-product orthogonal basis.

A :class:`~polynet.polynomial.network_polynomial.NetworkPolynomial` stores coefficients of monomials
``∏ x_v^{e_v}``. Here each variable is mapped affinely onto a standard one,
``x_v = shift_v + scale_v · u_v``, and the polynomial is rewritten in products
``∏ ψ_{e_v}(u_v)`` of one orthogonal family:

==========  =============================  =================================================
basis       measure of u                   x in its own variables
==========  =============================  =================================================
legendre    uniform on [-1, 1]             uniform on [low, high]
hermite     standard normal (HermiteE)     normal with mean ``mean``, std ``std``
chebyshev   arcsine on [-1, 1] (a view)    [low, high]
==========  =============================  =================================================

The result keeps the graded layout of the polynomial's :class:`MonomialIndex`: entry
``[o, r]`` multiplies ``∏_v ψ_{e[r, v]}(u_v)`` for the exponent row ``e[r]``, because an affine
change and a change to a graded basis only lower exponents. The univariate conversions come
from :mod:`numpy.polynomial` (``poly2leg``, ``poly2herme``, ``poly2cheb``) composed with the
affine map; they are applied one variable at a time through cached index maps (vectorised,
no loop over terms). Exact polynomials convert in ``fractions.Fraction`` arithmetic.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache
from math import comb, factorial

import numpy as np
from numpy.polynomial import chebyshev, hermite_e, legendre

from polynet.errors import PolynetError
from polynet.polynomial.index import MonomialIndex
from polynet.polynomial.network_polynomial import NetworkPolynomial

__all__ = ["OrthogonalFamily", "FAMILIES", "orthogonal_coefficients", "univariate_matrix"]


@dataclass(frozen=True)
class OrthogonalFamily:
    """One univariate orthogonal family: its numpy conversion, recurrence and norms.

    ``x ψ_k = up(k) ψ_{k+1} + down(k) ψ_{k-1}`` is the three-term recurrence the exact
    conversion uses; ``norm2(k)`` is E[ψ_k(u)²] under the family's probability measure.
    """

    name: str
    measure: str
    poly2basis: Callable[[np.ndarray], np.ndarray]
    up: Callable[[int], Fraction]
    down: Callable[[int], Fraction]
    norm2: Callable[[int], Fraction]


FAMILIES: dict[str, OrthogonalFamily] = {
    "legendre": OrthogonalFamily(
        "legendre",
        "uniform on [-1, 1]",
        legendre.poly2leg,
        lambda k: Fraction(k + 1, 2 * k + 1),
        lambda k: Fraction(k, 2 * k + 1),
        lambda k: Fraction(1, 2 * k + 1),
    ),
    "hermite": OrthogonalFamily(
        "hermite",
        "standard normal",
        hermite_e.poly2herme,
        lambda k: Fraction(1),
        lambda k: Fraction(k),
        lambda k: Fraction(factorial(k)),
    ),
    "chebyshev": OrthogonalFamily(
        "chebyshev",
        "arcsine on [-1, 1]",
        chebyshev.poly2cheb,
        lambda k: Fraction(1) if k == 0 else Fraction(1, 2),
        lambda k: Fraction(0) if k == 0 else Fraction(1, 2),
        lambda k: Fraction(1) if k == 0 else Fraction(1, 2),
    ),
}


def univariate_matrix(
    family: OrthogonalFamily,
    degree: int,
    shift: float | Fraction,
    scale: float | Fraction,
    *,
    exact: bool = False,
) -> np.ndarray:
    """M[k, j]: the coefficient of ψ_k(u) in (shift + scale·u)^j, for j, k ≤ ``degree``.

    Upper triangular. float64 through numpy's ``poly2*``; exact (object array of
    ``Fraction``) through the family's recurrence.
    """
    size = degree + 1
    to_basis = _to_basis(family.name, degree, exact)
    if exact:
        shift, scale = Fraction(shift), Fraction(scale)
        affine = np.full((size, size), Fraction(0), dtype=object)
    else:
        shift, scale = float(shift), float(scale)
        affine = np.zeros((size, size))
    # affine[i, j] = coefficient of u^i in (shift + scale·u)^j.
    for j in range(size):
        for i in range(j + 1):
            affine[i, j] = comb(j, i) * shift ** (j - i) * scale**i
    return to_basis.dot(affine)


@lru_cache(maxsize=32)
def _to_basis(name: str, degree: int, exact: bool) -> np.ndarray:
    """T[k, i]: the coefficient of ψ_k in u^i (upper triangular), cached per family."""
    family, size = FAMILIES[name], degree + 1
    if not exact:
        out = np.zeros((size, size))
        for i in range(size):
            out[: i + 1, i] = family.poly2basis(np.eye(size)[i])[: i + 1]
        out.setflags(write=False)
        return out
    # u^i = u · u^{i-1}: one step of the three-term recurrence per power.
    out = np.full((size, size), Fraction(0), dtype=object)
    column = [Fraction(1)] + [Fraction(0)] * degree
    for i in range(size):
        out[:, i] = column
        nxt = [Fraction(0)] * size
        for k, c in enumerate(column[: size - 1]):
            if c:
                nxt[k + 1] += c * family.up(k)
                if k:
                    nxt[k - 1] += c * family.down(k)
        column = nxt
    out.setflags(write=False)
    return out


@dataclass(frozen=True)
class _ShiftMaps:
    """Per variable v: its exponent column, and for s = 1..D the rows with e_v ≥ s (src) and
    the rows of the same monomials with e_v lowered by s (dst)."""

    exponent: tuple[np.ndarray, ...]
    src: tuple[tuple[np.ndarray, ...], ...]
    dst: tuple[tuple[np.ndarray, ...], ...]
    src_exponent: tuple[tuple[np.ndarray, ...], ...]


@lru_cache(maxsize=8)
def _shift_maps(n_vars: int, degree: int) -> _ShiftMaps:
    index = MonomialIndex(n_vars, degree)
    e = index.exponents
    exponents, srcs, dsts, src_exps = [], [], [], []
    for v in range(n_vars):
        ev = e[:, v]
        has = np.nonzero(ev >= 1)[0]
        lowered = e[has].copy()
        lowered[:, v] -= 1
        down = np.full(index.size, -1, dtype=np.int64)
        down[has] = index.position(lowered)
        src_v, dst_v, exp_v = [], [], []
        rows, target = has, down[has]
        for s in range(1, degree + 1):
            if s > 1:
                keep = ev[rows] >= s
                rows, target = rows[keep], down[target[keep]]
            if not len(rows):
                break
            src_v.append(rows.astype(np.int32))
            dst_v.append(target.astype(np.int32))
            exp_v.append(ev[rows].astype(np.int64))
        exponents.append(ev.astype(np.int64))
        srcs.append(tuple(src_v))
        dsts.append(tuple(dst_v))
        src_exps.append(tuple(exp_v))
    return _ShiftMaps(tuple(exponents), tuple(srcs), tuple(dsts), tuple(src_exps))


def _convert(coefficients: np.ndarray, index: MonomialIndex, matrices: Sequence[np.ndarray]):
    """Apply ``matrices[v]`` to the exponent of each variable v, on the graded layout.

    ``coefficients`` has shape (n_outputs, index.size), float64 or object (Fraction); the
    per-variable maps commute, so the order of the variables does not matter.
    """
    maps = _shift_maps(index.n_vars, index.degree)
    out = coefficients
    for v, m in enumerate(matrices):
        ev = maps.exponent[v]
        new = out * m[ev, ev]  # the diagonal: the ψ_k part of u^k
        for s, (src, dst, j) in enumerate(
            zip(maps.src[v], maps.dst[v], maps.src_exponent[v]), start=1
        ):
            # dst is injective for one s, so a plain fancy-index add is a scatter-add.
            new[:, dst] += m[j - s, j] * out[:, src]
        out = new
    return out


def _norms(family: OrthogonalFamily, index: MonomialIndex) -> np.ndarray:
    """E[ψ_α(u)²] = ∏_v norm2(α_v) for each row α of the index, float64."""
    return _norms_float(family.name, index.n_vars, index.degree)


@lru_cache(maxsize=8)
def _norms_float(name: str, n_vars: int, degree: int) -> np.ndarray:
    per = np.array([float(FAMILIES[name].norm2(k)) for k in range(degree + 1)])
    out = np.prod(per[MonomialIndex(n_vars, degree).exponents], axis=1)
    out.setflags(write=False)
    return out


def _family(basis: str) -> OrthogonalFamily:
    if basis not in FAMILIES:
        raise ValueError(f"basis must be one of {sorted(FAMILIES)}, got {basis!r}.")
    return FAMILIES[basis]


def _parameter_vector(value, name: str, n_vars: int, default, exact: bool) -> list:
    """A scalar or a length-n_vars sequence of finite reals, as floats or Fractions."""
    if value is None:
        value = default
    if isinstance(value, (int, float, Fraction, np.integer, np.floating)) and not isinstance(
        value, (bool, np.bool_)
    ):
        values = [value] * n_vars
    else:
        try:
            values = list(np.asarray(value, dtype=object).reshape(-1))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{name} must be a number or a sequence of numbers.") from exc
        if np.ndim(value) != 1 or len(values) != n_vars:
            raise ValueError(
                f"{name} must be a number or have one entry per variable ({n_vars}), got "
                f"shape {np.shape(value)}; give it in the polynomial's own variables."
            )
    out = []
    for i, v in enumerate(values):
        ok = isinstance(v, (int, float, Fraction, np.integer, np.floating)) and not isinstance(
            v, (bool, np.bool_)
        )
        if not ok or not np.isfinite(float(v)):
            raise ValueError(f"{name}[{i}] must be a finite number, got {v!r}.")
        out.append(Fraction(v) if exact else float(v))
    return out


def affine_parameters(
    n_vars: int,
    measure: str,
    *,
    low=None,
    high=None,
    mean=None,
    std=None,
    exact: bool = False,
) -> tuple[list, list]:
    """(shift, scale) per variable with x = shift + scale·u, validated.

    ``measure`` is "box" (low/high, default [-1, 1]) or "normal" (mean/std, default 0, 1).
    """
    if measure == "box":
        if mean is not None or std is not None:
            raise ValueError(
                "mean and std describe distribution='normal'; for a uniform or box basis "
                "give low and high."
            )
        lo = _parameter_vector(low, "low", n_vars, -1.0, exact)
        hi = _parameter_vector(high, "high", n_vars, 1.0, exact)
        for i, (a, b) in enumerate(zip(lo, hi)):
            if not a < b:
                raise ValueError(
                    f"low[{i}] must be < high[{i}], got low={float(a):g}, high={float(b):g}."
                )
        half = Fraction(1, 2) if exact else 0.5
        return [(a + b) * half for a, b in zip(lo, hi)], [(b - a) * half for a, b in zip(lo, hi)]
    if low is not None or high is not None:
        raise ValueError(
            "low and high describe distribution='uniform'; for a normal distribution give "
            "mean and std."
        )
    mu = _parameter_vector(mean, "mean", n_vars, 0.0, exact)
    sigma = _parameter_vector(std, "std", n_vars, 1.0, exact)
    for i, s in enumerate(sigma):
        if not s > 0:
            raise ValueError(f"std[{i}] must be > 0, got {float(s):g}.")
    return mu, sigma


def check_exact(poly: NetworkPolynomial, exact: bool) -> None:
    """Refuse exact=True on a float polynomial, with what to do instead."""
    if not isinstance(poly, NetworkPolynomial):
        raise TypeError(f"expected a NetworkPolynomial, got {type(poly).__name__}.")
    if exact and not poly.exact:
        raise PolynetError(
            "exact=True needs a polynomial with exact rational coefficients, and this one "
            "is float64; expand with polynet.expand(model, exact=True), or use exact=False."
        )


def graded_conversion(
    poly: NetworkPolynomial, family: OrthogonalFamily, shift: list, scale: list, exact: bool
) -> np.ndarray:
    """The polynomial's coefficients in the unnormalised family basis, graded layout
    (float64, or an object array of ``Fraction`` when ``exact``)."""
    if exact:
        nums, den = exact_conversion(poly, family, shift, scale)
        return _fractions(nums, den)
    coef = poly.coefficients.detach().cpu().numpy().astype(np.float64, copy=True)
    degree = poly.index.degree
    matrices = [univariate_matrix(family, degree, a, b) for a, b in zip(shift, scale)]
    return _convert(coef, poly.index, matrices)


def exact_conversion(
    poly: NetworkPolynomial, family: OrthogonalFamily, shift: list, scale: list
) -> tuple[np.ndarray, int]:
    """Exact conversion in integers: (numerators, one common denominator).

    Each univariate matrix is scaled to integers by the lcm of its denominators, so the
    whole change of basis runs on Python ints (no gcd per operation, as Fractions need).
    """
    fractions = poly.exact_coefficients.reshape(-1)
    den = math.lcm(*[f.denominator for f in fractions]) if len(fractions) else 1
    nums = np.array([f.numerator * (den // f.denominator) for f in fractions], dtype=object)
    nums = nums.reshape(poly.exact_coefficients.shape)
    matrices = []
    for a, b in zip(shift, scale):
        m = univariate_matrix(family, poly.index.degree, a, b, exact=True)
        scale_to_int = math.lcm(*[v.denominator for v in m.reshape(-1)])
        ints = [v.numerator * (scale_to_int // v.denominator) for v in m.reshape(-1)]
        matrices.append(np.array(ints, dtype=object).reshape(m.shape))
        den *= scale_to_int
    return _convert(nums, poly.index, matrices), den


def _fractions(nums: np.ndarray, den: int) -> np.ndarray:
    return np.frompyfunc(lambda n: Fraction(n, den), 1, 1)(nums).astype(object)


@lru_cache(maxsize=4)
def integer_norms(name: str, n_vars: int, degree: int) -> tuple[np.ndarray, int]:
    """E[ψ_α²] for each row α as integers over one denominator: (weights, denominator)."""
    per = [FAMILIES[name].norm2(k) for k in range(degree + 1)]
    g = math.lcm(*[v.denominator for v in per])
    w = np.array([v.numerator * (g // v.denominator) for v in per], dtype=object)
    e = MonomialIndex(n_vars, degree).exponents
    out = np.ones(len(e), dtype=object)
    for v in range(n_vars):
        out = out * w[e[:, v]]
    return out, g**n_vars


def orthogonal_coefficients(
    poly: NetworkPolynomial,
    basis: str = "legendre",
    *,
    low=None,
    high=None,
    mean=None,
    std=None,
    normalized: bool = True,
    exact: bool = False,
) -> np.ndarray:
    """The polynomial's coefficients in a tensor-product orthogonal basis (a view).

    Parameters
    ----------
    poly : NetworkPolynomial
    basis : {"legendre", "hermite", "chebyshev"}, default="legendre"
        Legendre and Chebyshev on the box [low, high] (default [-1, 1] per variable);
        Hermite (probabilists') for a normal with ``mean`` and ``std`` (default 0, 1).
    low, high, mean, std : float or sequence of float, optional
        Per variable, in the polynomial's own variables.
    normalized : bool, default=True
        Orthonormal basis (ψ_k / ‖ψ_k‖, so the variance is the sum of squares of the
        non-constant entries for Legendre and Hermite). Exact results are unnormalised
        (the norms are square roots of rationals).
    exact : bool, default=False
        Convert the exact rational coefficients; returns an object array of ``Fraction``.

    Returns
    -------
    ndarray of shape (n_outputs, poly.index.size)
        Entry [o, r] multiplies ∏_v ψ_{e[r, v]}((x_v - shift_v) / scale_v), e = poly.exponents.

    Examples
    --------
    >>> import torch, polynet
    >>> p = polynet.NetworkPolynomial(MonomialIndex(1, 2), torch.tensor([[0.0, 0.0, 1.0]]))
    >>> # x² = 1/3 + 2/3 P2(x)
    >>> orthogonal_coefficients(p, "legendre", normalized=False).round(6).tolist()
    [[0.333333, 0.0, 0.666667]]
    """
    fam = _family(basis)
    check_exact(poly, exact)
    if exact and normalized:
        raise ValueError(
            "exact=True gives the unnormalised basis (orthonormal scale factors are square "
            "roots); pass normalized=False."
        )
    measure = "normal" if fam.name == "hermite" else "box"
    shift, scale = affine_parameters(
        poly.n_vars, measure, low=low, high=high, mean=mean, std=std, exact=exact
    )
    coef = graded_conversion(poly, fam, shift, scale, exact)
    if normalized:
        coef = coef * np.sqrt(_norms(fam, poly.index))
    return coef
