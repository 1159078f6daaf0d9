"""The sparse exact walk: every unit a polynomial in an exact ring over QQ.

The reference expansion: each unit of each layer is a ring element (python-flint's
``fmpq_mpoly`` or SymPy's ``PolyRing`` over QQ), affine stages are exact linear
combinations, polynomial stages exact Horner evaluations. Every float64 weight enters as the
dyadic rational it is. Simple and exact, but it multiplies sparse polynomials unit by unit,
which is what the dense walk avoids.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any, Literal

import numpy as np

from polynet.expansion.network import Affine, LoweredNetwork
from polynet.polynomial.index import MonomialIndex

__all__ = ["expand_sparse", "Ring", "dense_fractions", "horner", "make_ring"]

Ring = Literal["flint", "sympy"]


class _SympyRing:
    def __init__(self, n: int) -> None:
        from sympy import QQ
        from sympy.polys.rings import ring

        self.domain = QQ
        self.ring, *self.gens = ring([f"x{i}" for i in range(n)], QQ)
        self.zero = self.ring.zero

    def scalar(self, x: float) -> Any:
        f = Fraction(x)
        return self.domain(f.numerator, f.denominator)

    def terms(self, p: Any) -> dict[tuple[int, ...], Fraction]:
        return {
            e: Fraction(int(self.domain.numer(c)), int(self.domain.denom(c))) for e, c in p.terms()
        }

    def truncate(self, p: Any, degree: int) -> Any:
        """The part of p of total degree <= ``degree``."""
        if not p or max(sum(e) for e in p.keys()) <= degree:
            return p
        return self.ring.from_dict({e: c for e, c in p.items() if sum(e) <= degree})


class _FlintRing:
    def __init__(self, n: int) -> None:
        import flint

        self.flint = flint
        self.ctx = (
            flint.fmpq_mpoly_ctx.get((("x", n)), "deglex")
            if n > 1
            else (flint.fmpq_mpoly_ctx.get(("x0",), "deglex"))
        )
        self.gens = list(self.ctx.gens())
        self.zero = self.ctx.from_dict({}) if hasattr(self.ctx, "from_dict") else self.gens[0] * 0

    def scalar(self, x: float) -> Any:
        f = Fraction(x)
        return self.flint.fmpq(f.numerator, f.denominator)

    def terms(self, p: Any) -> dict[tuple[int, ...], Fraction]:
        return {tuple(e): Fraction(int(c.p), int(c.q)) for e, c in p.to_dict().items()}

    def truncate(self, p: Any, degree: int) -> Any:
        """The part of p of total degree <= ``degree``."""
        if p.total_degree() <= degree:
            return p
        return self.ctx.from_dict({e: c for e, c in p.to_dict().items() if sum(e) <= degree})


def make_ring(kind: Ring, n: int) -> Any:
    """The exact ring backend ``kind`` in n variables."""
    if kind == "flint":
        return _FlintRing(n)
    return _SympyRing(n)


def _affine(ring: Any, aff: Affine, units: list[Any]) -> list[Any]:
    weight = aff.weight.cpu().numpy()
    bias = aff.bias.cpu().numpy()
    out = []
    for i in range(len(bias)):
        if weight.ndim == 1:
            acc = units[i] * ring.scalar(weight[i])
        else:
            acc = ring.zero
            for j in np.nonzero(weight[i])[0]:
                acc = acc + units[j] * ring.scalar(weight[i, j])
        if bias[i] != 0:
            acc = acc + ring.scalar(bias[i])
        out.append(acc)
    return out


def horner(ring: Any, alpha: np.ndarray, z: Any, degree: int | None = None) -> Any:
    """Σ_i alpha[i] z^i by Horner's rule; with ``degree``, its part of degree <= ``degree``
    (truncated after every product, which is exact for that part)."""
    acc = ring.zero + ring.scalar(alpha[-1])
    for a in alpha[-2::-1]:
        acc = acc * z
        if degree is not None:
            acc = ring.truncate(acc, degree)
        if a != 0:
            acc = acc + ring.scalar(a)
    return acc


def dense_fractions(
    ring: Any, polys: list[Any], index: MonomialIndex, degree: int | None = None
) -> np.ndarray:
    """Ring elements as their coefficients over ``index``: an object array of Fraction of
    shape (len(polys), index.size); with ``degree``, only their terms of degree <= it."""
    out = np.full((len(polys), index.size), Fraction(0), dtype=object)
    for row, p in enumerate(polys):
        terms = ring.terms(p if degree is None else ring.truncate(p, degree))
        if terms:
            exps = np.array(list(terms.keys()), dtype=np.int64).reshape(len(terms), -1)
            out[row, index.position(exps)] = list(terms.values())
    return out


def expand_sparse(lowered: LoweredNetwork, kind: Ring, index: MonomialIndex) -> np.ndarray:
    """Exact coefficients over ``index``: object array of Fraction, (n_outputs, index.size)."""
    ring = make_ring(kind, lowered.n_inputs)
    units = list(ring.gens)
    for stage in lowered.stages:
        if isinstance(stage, Affine):
            units = _affine(ring, stage, units)
        else:
            alpha = stage.coefficients.cpu().numpy()
            units = [horner(ring, alpha[j], z) for j, z in enumerate(units)]
    return dense_fractions(ring, units, index)
