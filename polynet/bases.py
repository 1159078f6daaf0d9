"""Basis families for SLAF activations.

Each basis gives the features φ_1..φ_k of an input (there is no φ_0: the SLAF's bias plays
that role) and, when it is a polynomial family, the change-of-basis matrix to monomials,
built from numpy.polynomial's own definitions.

====================  =========================================  =============
name                  φ_i(z)                                     polynomial
====================  =========================================  =============
``"taylor"``          z^i                                        yes
``"chebyshev"``       T_i(z), Chebyshev of the first kind        yes
``"legendre"``        P_i(z), Legendre                           yes
``"emfn"``            sin(jπ z/m), cos(jπ z/m) alternating,      no
                      m the running max of |z| per channel
====================  =========================================  =============

Coefficient order is low to high everywhere (numpy's convention): row j of
:meth:`Basis.to_monomial` holds the coefficient of z^j.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from fractions import Fraction
from typing import ClassVar, Literal

import numpy as np
import torch
from numpy.polynomial import chebyshev, legendre
from torch import Tensor

from polynet.errors import NotExpandableError

__all__ = ["Basis", "Taylor", "Chebyshev", "Legendre", "EMFN", "BASES", "get_basis", "BasisName"]

BasisName = Literal["taylor", "chebyshev", "legendre", "emfn"]


class Basis(ABC):
    """A family of basis functions φ_1, φ_2, ... for an SLAF.

    Subclasses set ``name`` and ``is_polynomial`` and implement :meth:`features`; polynomial
    families also implement :meth:`_series` (numpy's coefficients of φ_i in that family).
    """

    name: ClassVar[str]
    is_polynomial: ClassVar[bool] = True
    #: True when the features need the input's range (the SLAF then tracks ``running_absmax``).
    needs_scale: ClassVar[bool] = False

    @abstractmethod
    def terms(self, z: Tensor, degree: int, scale: Tensor | None = None) -> list[Tensor]:
        """φ_1(z)..φ_k(z) as a list of k tensors shaped like z (B, C, *spatial).

        ``scale`` has shape (C,) and is only used by bases with ``needs_scale``.
        """

    def features(self, z: Tensor, degree: int, scale: Tensor | None = None) -> Tensor:
        """Stack φ_1(z)..φ_k(z) on axis 2: (B, C, k, *spatial) for z of shape (B, C, *spatial)."""
        return torch.stack(self.terms(z, degree, scale), dim=2)

    def to_monomial(self, degree: int) -> np.ndarray:
        """Matrix M of shape (k+1, k), float64, with φ_i(z) = Σ_j M[j, i-1] z^j.

        Raises
        ------
        NotExpandableError
            For a basis that is not a polynomial family (EMFN).
        """
        if not self.is_polynomial:
            raise NotExpandableError(
                f"the {self.name!r} basis is not a polynomial family, so it has no monomial "
                "coefficients; use basis='taylor', 'chebyshev' or 'legendre' to expand a network."
            )
        matrix = np.zeros((degree + 1, degree))
        for i in range(1, degree + 1):
            series = np.zeros(i + 1)
            series[i] = 1.0
            coefs = self._series_to_poly(series)
            matrix[: coefs.size, i - 1] = coefs
        return matrix

    def _series_to_poly(self, series: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other)

    def __hash__(self) -> int:
        return hash(type(self))


class Taylor(Basis):
    """Powers z, z², ..., z^k (the paper's Taylor basis)."""

    name = "taylor"

    def terms(self, z: Tensor, degree: int, scale: Tensor | None = None) -> list[Tensor]:
        terms = [z]
        for _ in range(degree - 1):
            terms.append(terms[-1] * z)
        return terms

    def _series_to_poly(self, series: np.ndarray) -> np.ndarray:
        return series


class Chebyshev(Basis):
    """Chebyshev polynomials of the first kind T_1..T_k (numpy.polynomial.chebyshev)."""

    name = "chebyshev"

    def terms(self, z: Tensor, degree: int, scale: Tensor | None = None) -> list[Tensor]:
        # T_{n+1} = 2 z T_n - T_{n-1}, with T_0 = 1, T_1 = z.
        terms = [z]
        prev: Tensor | float = 1.0
        for _ in range(degree - 1):
            nxt = 2 * z * terms[-1] - prev
            prev = terms[-1]
            terms.append(nxt)
        return terms

    def _series_to_poly(self, series: np.ndarray) -> np.ndarray:
        return chebyshev.cheb2poly(series)


class Legendre(Basis):
    """Legendre polynomials P_1..P_k (numpy.polynomial.legendre)."""

    name = "legendre"

    def terms(self, z: Tensor, degree: int, scale: Tensor | None = None) -> list[Tensor]:
        # (n+1) P_{n+1} = (2n+1) z P_n - n P_{n-1}, with P_0 = 1, P_1 = z.
        terms = [z]
        prev: Tensor | float = 1.0
        for n in range(1, degree):
            nxt = ((2 * n + 1) * z * terms[-1] - n * prev) / (n + 1)
            prev = terms[-1]
            terms.append(nxt)
        return terms

    def _series_to_poly(self, series: np.ndarray) -> np.ndarray:
        return legendre.leg2poly(series)

    def to_monomial(self, degree: int) -> np.ndarray:
        # numpy's leg2poly rounds from P_6 on (14.437499999999996 for 14.4375); the monomial
        # coefficients of P_i are rationals, so build them exactly and round once.
        rows = [[Fraction(1)], [Fraction(0), Fraction(1)]]
        for n in range(1, degree):
            nxt = [Fraction(0)] * (n + 2)
            for j, c in enumerate(rows[n]):
                nxt[j + 1] += Fraction(2 * n + 1, n + 1) * c
            for j, c in enumerate(rows[n - 1]):
                nxt[j] -= Fraction(n, n + 1) * c
            rows.append(nxt)
        matrix = np.zeros((degree + 1, degree))
        for i in range(1, degree + 1):
            matrix[: i + 1, i - 1] = [float(c) for c in rows[i]]
        return matrix


class EMFN(Basis):
    """The paper's EMFN: sin(π z̃), cos(π z̃), sin(2π z̃), cos(2π z̃), ... with z̃ = z / m.

    m is a per-channel scale (the SLAF's running max of |z|), so z̃ lies in [-1, 1] on the
    data seen in training. Not a polynomial: networks using it train and plot but do not expand.
    """

    name = "emfn"
    is_polynomial = False
    needs_scale = True

    def terms(self, z: Tensor, degree: int, scale: Tensor | None = None) -> list[Tensor]:
        if scale is not None:
            shape = (1, -1) + (1,) * (z.dim() - 2)
            z = z / scale.view(shape)
        terms = []
        for i in range(degree):
            freq = (i // 2 + 1) * math.pi
            terms.append(torch.sin(freq * z) if i % 2 == 0 else torch.cos(freq * z))
        return terms


BASES: dict[str, type[Basis]] = {cls.name: cls for cls in (Taylor, Chebyshev, Legendre, EMFN)}


def get_basis(basis: str | Basis) -> Basis:
    """Return the basis named ``basis`` (one of ``BASES``), or ``basis`` itself if it is one.

    Examples
    --------
    >>> get_basis("chebyshev").to_monomial(2)
    array([[ 0., -1.],
           [ 1.,  0.],
           [ 0.,  2.]])
    """
    if isinstance(basis, Basis):
        return basis
    if isinstance(basis, str) and basis.lower() in BASES:
        return BASES[basis.lower()]()
    raise ValueError(f"basis must be one of {sorted(BASES)}, got {basis!r}.")
