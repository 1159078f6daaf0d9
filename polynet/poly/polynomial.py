"""NetworkPolynomial: a network's outputs as explicit multivariate polynomials."""

from __future__ import annotations

import json
import math
import os
import tempfile
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import ArrayLike
from torch import Tensor

from polynet.errors import PolynetError
from polynet.poly.index import MonomialIndex, monomial_name

__all__ = ["NetworkPolynomial", "Term", "ExactCoefficients"]

_FORMAT = "polynet.NetworkPolynomial"
_FORMAT_VERSION = 1
# Elements of the (batch × monomials) feature matrix built per evaluation chunk.
_EVAL_CHUNK_ELEMENTS = 1 << 24


class ExactCoefficients:
    """Exact rational coefficients as integer numerators over one common denominator.

    One denominator (a power of two for a network's dyadic weights) keeps the exact path's
    arithmetic in integers; ``fractions()`` gives ``fractions.Fraction`` values on demand.
    """

    __slots__ = ("numerators", "denominator", "_fractions")

    def __init__(self, numerators: np.ndarray, denominator: int) -> None:
        if denominator <= 0:
            raise ValueError(f"denominator must be positive, got {denominator}.")
        nums = np.asarray(numerators, dtype=object)
        # Cancel the common factor so equal values have equal representations.
        g = math.gcd(denominator, *[int(n) for n in nums.reshape(-1) if n])
        if g > 1:
            nums = np.array([int(n) // g for n in nums.reshape(-1)], dtype=object)
            nums = nums.reshape(np.shape(numerators))
            denominator //= g
        self.numerators = nums
        self.denominator = int(denominator)
        self._fractions: np.ndarray | None = None

    @classmethod
    def from_fractions(cls, values: np.ndarray) -> ExactCoefficients:
        flat = [Fraction(v) for v in np.asarray(values, dtype=object).reshape(-1)]
        den = math.lcm(*[f.denominator for f in flat]) if flat else 1
        nums = [f.numerator * (den // f.denominator) for f in flat]
        return cls(np.array(nums, dtype=object).reshape(np.shape(values)), den)

    @property
    def shape(self) -> tuple[int, ...]:
        return self.numerators.shape

    def fractions(self) -> np.ndarray:
        """Object array of ``Fraction`` (computed once)."""
        if self._fractions is None:
            d = self.denominator
            flat = [Fraction(int(n), d) for n in self.numerators.reshape(-1)]
            self._fractions = np.array(flat, dtype=object).reshape(self.shape)
        return self._fractions

    def floats(self) -> np.ndarray:
        """Correctly rounded float64 values."""
        d = self.denominator
        flat = [int(n) / d for n in self.numerators.reshape(-1)]
        return np.array(flat, dtype=np.float64).reshape(self.shape)

    def nonzero(self) -> np.ndarray:
        return self.numerators != 0

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ExactCoefficients):
            return NotImplemented
        return (
            self.shape == other.shape
            and self.denominator == other.denominator
            and bool((self.numerators == other.numerators).all())
        )

    __hash__ = None  # type: ignore[assignment]

    def combine(self, other: ExactCoefficients, sign: int = 1) -> ExactCoefficients:
        den = math.lcm(self.denominator, other.denominator)
        return ExactCoefficients(
            self.numerators * (den // self.denominator)
            + sign * other.numerators * (den // other.denominator),
            den,
        )

    def scaled(self, factor: Fraction) -> ExactCoefficients:
        factor = Fraction(factor)
        return ExactCoefficients(
            self.numerators * factor.numerator, self.denominator * factor.denominator
        )


@dataclass(frozen=True)
class Term:
    """One term c·m of a polynomial: coefficient, exponent vector and readable monomial."""

    coefficient: float
    exponents: tuple[int, ...]
    monomial: str

    def __str__(self) -> str:
        return f"{self.coefficient:+.6g} {self.monomial}"


class NetworkPolynomial:
    """Polynomials p_o(x), one per network output, stored densely over a :class:`MonomialIndex`.

    Coefficient ``coefficients[o, r]`` multiplies monomial ``exponents[r]``; monomials are in
    graded order (scikit-learn's ``PolynomialFeatures`` columns). On the exact path the
    coefficients are also kept as exact rationals (``exact_coefficients``).

    Parameters
    ----------
    index : MonomialIndex
        The monomials, of total degree ≤ the network's bound D.
    coefficients : Tensor, array or ExactCoefficients of shape (n_outputs, index.size)
        float64 coefficients, or exact ones (``ExactCoefficients`` or an object array of
        ``fractions.Fraction``).
    degree_bound : int, optional
        Theorem 2's bound ∏k (default: ``index.degree``).
    variables : list of str, optional
        Variable names (default ``x0 .. x{n-1}``; a slice keeps the original input numbers).
    n_network_parameters : int, optional
        The network's own parameter count, for comparison with ``n_terms``.

    Examples
    --------
    >>> idx = MonomialIndex(2, 2)
    >>> p = NetworkPolynomial(idx, torch.tensor([[1.0, 0, 2, 0, 3, 0]]))
    >>> p
    NetworkPolynomial(n_vars=2, n_outputs=1, degree=2, n_terms=3)
    >>> p(torch.tensor([[1.0, 2.0]])).tolist()
    [[11.0]]
    """

    index: MonomialIndex
    degree_bound: int
    variables: list[str]
    n_network_parameters: int | None
    info: dict[str, Any]

    def __init__(
        self,
        index: MonomialIndex,
        coefficients: Tensor | np.ndarray,
        *,
        degree_bound: int | None = None,
        variables: list[str] | None = None,
        n_network_parameters: int | None = None,
        info: dict[str, Any] | None = None,
    ) -> None:
        self.index = index
        if isinstance(coefficients, np.ndarray) and coefficients.dtype == object:
            coefficients = ExactCoefficients.from_fractions(coefficients)
        if isinstance(coefficients, ExactCoefficients):
            self._exact = coefficients
            self._coefficients = torch.from_numpy(coefficients.floats())
        else:
            self._exact = None
            self._coefficients = torch.as_tensor(coefficients, dtype=torch.float64)
        if self._coefficients.dim() != 2 or self._coefficients.shape[1] != index.size:
            raise ValueError(
                f"coefficients must have shape (n_outputs, {index.size}), "
                f"got {tuple(self._coefficients.shape)}."
            )
        self.degree_bound = index.degree if degree_bound is None else int(degree_bound)
        self.variables = list(variables) if variables else [f"x{i}" for i in range(index.n_vars)]
        if len(self.variables) != index.n_vars:
            raise ValueError(
                f"variables must have {index.n_vars} names, got {len(self.variables)}."
            )
        self.n_network_parameters = n_network_parameters
        self.info = dict(info or {})

    # -- what it is -----------------------------------------------------------------------
    @property
    def n_vars(self) -> int:
        """Number of variables n."""
        return self.index.n_vars

    @property
    def n_outputs(self) -> int:
        """Number of outputs (one polynomial each)."""
        return self._coefficients.shape[0]

    @property
    def exact(self) -> bool:
        """Whether exact rational coefficients are kept."""
        return self._exact is not None

    @property
    def coefficients(self) -> Tensor:
        """float64 coefficients of shape (n_outputs, max_terms), on the polynomial's device."""
        return self._coefficients

    @property
    def exact_coefficients(self) -> np.ndarray | None:
        """Object array of ``fractions.Fraction`` of shape (n_outputs, max_terms), or None."""
        return None if self._exact is None else self._exact.fractions()

    @property
    def exponents(self) -> np.ndarray:
        """Exponent table of shape (max_terms, n_vars): row r is the monomial of column r."""
        return self.index.exponents

    @property
    def device(self) -> torch.device:
        return self._coefficients.device

    def _nonzero(self) -> Tensor:
        if self._exact is not None:
            return torch.from_numpy(self._exact.nonzero())
        return self._coefficients != 0

    @property
    def degree(self) -> int:
        """True total degree: the largest degree with a non-zero coefficient (-1 if zero)."""
        used = self._nonzero().any(0).cpu().numpy()
        return int(self.index.degrees[used].max()) if used.any() else -1

    @property
    def max_terms(self) -> int:
        """C(n + D, D) for D = ``degree_bound``: the most coefficients Theorem 2 allows."""
        return MonomialIndex(self.n_vars, self.degree_bound).size

    @property
    def n_terms(self) -> int:
        """Number of monomials with a non-zero coefficient in at least one output."""
        return int(self._nonzero().any(0).sum())

    def n_terms_per_output(self) -> list[int]:
        """Number of non-zero coefficients of each output."""
        return [int(c) for c in self._nonzero().sum(1).tolist()]

    def __repr__(self) -> str:
        return (
            f"NetworkPolynomial(n_vars={self.n_vars}, n_outputs={self.n_outputs}, "
            f"degree={self.degree}, n_terms={self.n_terms})"
        )

    # -- evaluation -----------------------------------------------------------------------
    def monomials(self, x: ArrayLike | Tensor) -> Tensor:
        """All monomials of the index at points x: (B, n_vars) → (B, max_terms), float64."""
        x = self._points(x)
        parent, var = self.index.parents()
        parent_t = torch.from_numpy(parent.copy()).to(x.device)
        var_t = torch.from_numpy(var.copy()).to(x.device)
        feats = torch.empty(x.shape[0], self.index.size, dtype=torch.float64, device=x.device)
        feats[:, 0] = 1.0
        for d in range(1, self.index.degree + 1):
            block = slice(self.index.n_monomials(d - 1), self.index.n_monomials(d))
            feats[:, block] = feats[:, parent_t[block]] * x[:, var_t[block]]
        return feats

    def _points(self, x: ArrayLike | Tensor) -> Tensor:
        t = torch.as_tensor(x, dtype=torch.float64, device=self.device)
        if t.dim() == 1 and self.n_vars == 1:
            t = t[:, None]
        if t.dim() != 2 or t.shape[1] != self.n_vars:
            raise ValueError(f"points must have shape (B, {self.n_vars}), got {tuple(t.shape)}.")
        return t

    def __call__(self, x: ArrayLike | Tensor) -> Tensor:
        """Evaluate every output at points x of shape (B, n_vars): returns (B, n_outputs)."""
        x = self._points(x)
        step = max(1, _EVAL_CHUNK_ELEMENTS // self.index.size)
        coef = self._coefficients.T
        parts = [self.monomials(x[s : s + step]) @ coef for s in range(0, x.shape[0], step)]
        if not parts:
            return x.new_zeros(0, self.n_outputs)
        return torch.cat(parts)

    def to(self, device: torch.device | str) -> NetworkPolynomial:
        """A copy with the float coefficients on ``device``."""
        return self._replace(self._coefficients.to(device), self._exact)

    def _replace(self, coefficients: Tensor, exact: ExactCoefficients | None) -> NetworkPolynomial:
        new = object.__new__(NetworkPolynomial)
        new.__dict__.update(self.__dict__)
        new._coefficients = coefficients
        new._exact = exact
        new.info = dict(self.info)
        return new

    # -- arithmetic (ring discipline) -----------------------------------------------------
    def _check_same_ring(self, other: NetworkPolynomial) -> None:
        if self.index != other.index or self.variables != other.variables:
            raise TypeError(
                f"cannot combine polynomials over different indexes: {self.index} in "
                f"{self.variables[:3]}... and {other.index} in {other.variables[:3]}..."
            )

    def __add__(self, other: object) -> NetworkPolynomial:
        if not isinstance(other, NetworkPolynomial):
            return NotImplemented
        self._check_same_ring(other)
        exact = None
        if self._exact is not None and other._exact is not None:
            exact = self._exact.combine(other._exact)
        return self._replace(self._coefficients + other._coefficients.to(self.device), exact)

    def __neg__(self) -> NetworkPolynomial:
        exact = None if self._exact is None else self._exact.scaled(Fraction(-1))
        return self._replace(-self._coefficients, exact)

    def __sub__(self, other: object) -> NetworkPolynomial:
        if not isinstance(other, NetworkPolynomial):
            return NotImplemented
        return self + (-other)

    def __mul__(self, scalar: object) -> NetworkPolynomial:
        if not isinstance(scalar, (int, float)):
            return NotImplemented
        exact = None if self._exact is None else self._exact.scaled(Fraction(scalar))
        return self._replace(self._coefficients * float(scalar), exact)

    __rmul__ = __mul__

    # -- views ------------------------------------------------------------------------------
    def terms(self, top: int | None = 10, output: int = 0) -> list[Term]:
        """The largest terms of one output by |coefficient|, largest first (all if top=None)."""
        coef = self._coefficients[output].cpu().numpy()
        order = np.argsort(-np.abs(coef), kind="stable")
        order = order[coef[order] != 0]
        if top is not None:
            order = order[:top]
        names = self._names(order)
        return [
            Term(float(coef[r]), tuple(int(e) for e in self.exponents[r]), name)
            for r, name in zip(order, names)
        ]

    def _names(self, rows: np.ndarray) -> list[str]:
        return [monomial_name(row, self.variables) for row in self.exponents[rows]]

    def degree_profile(self) -> np.ndarray:
        """Coefficient mass Σ|c| per total degree: shape (n_outputs, degree_bound + 1)."""
        degrees = torch.from_numpy(self.index.degrees.copy()).to(self.device)
        out = torch.zeros(
            self.n_outputs, self.index.degree + 1, dtype=torch.float64, device=self.device
        )
        out.index_add_(1, degrees, self._coefficients.abs())
        return out.cpu().numpy()

    def to_sympy(self, symbols: list[Any] | None = None) -> list[Any]:
        """One ``sympy.Poly`` per output: over QQ on the exact path, over RR otherwise."""
        import sympy

        gens = symbols or sympy.symbols(self.variables)
        exps = [tuple(int(e) for e in row) for row in self.exponents]
        polys = []
        for o in range(self.n_outputs):
            if self._exact is not None:
                den = self._exact.denominator
                data = {
                    e: sympy.Rational(int(n), den)
                    for e, n in zip(exps, self._exact.numerators[o])
                    if n != 0
                }
                domain = sympy.QQ
            else:
                coef = self._coefficients[o].cpu().tolist()
                data = {e: sympy.Float(c) for e, c in zip(exps, coef) if c != 0}
                domain = sympy.RR
            polys.append(sympy.Poly.from_dict(data or {exps[0]: 0}, *gens, domain=domain))
        return polys

    def to_latex(self, output: int = 0, top: int | None = None, digits: int = 6) -> str:
        """LaTeX of one output, terms by graded order; ``top`` keeps the largest terms only
        and says how many it left out."""
        coef = self._coefficients[output].cpu().numpy()
        rows = np.nonzero(coef)[0]
        left_out = 0
        if top is not None and len(rows) > top:
            keep = np.argsort(-np.abs(coef[rows]), kind="stable")[:top]
            left_out = len(rows) - top
            rows = np.sort(rows[keep])
        pieces = []
        for r in rows:
            mono = " ".join(
                (v if p == 1 else f"{v}^{{{p}}}")
                for v, p in zip(_latex_vars(self.variables), self.exponents[r].tolist())
                if p
            )
            c = coef[r]
            mag = f"{abs(c):.{digits}g}"
            if "e" in mag:
                m, e = mag.split("e")
                mag = rf"{m} \cdot 10^{{{int(e)}}}"
            body = mag if not mono else (mono if mag == "1" else rf"{mag}\, {mono}")
            pieces.append(("-" if c < 0 else "+", body))
        if not pieces:
            return "0"
        text = ("-" if pieces[0][0] == "-" else "") + pieces[0][1]
        text += "".join(f" {s} {b}" for s, b in pieces[1:])
        if left_out:
            text += rf" + \dots \text{{({left_out} more terms)}}"
        return text

    # -- persistence ------------------------------------------------------------------------
    def _payload(self) -> dict[str, Any]:
        return {
            "format": _FORMAT,
            "version": _FORMAT_VERSION,
            "n_vars": self.n_vars,
            "index_degree": self.index.degree,
            "degree_bound": self.degree_bound,
            "variables": self.variables,
            "n_network_parameters": self.n_network_parameters,
            "info": self.info,
        }

    def save(self, path: str | os.PathLike) -> Path:
        """Write to ``.npz`` (default) or ``.json``, atomically, without pickle."""
        path = Path(path)
        if path.suffix not in (".npz", ".json"):
            path = path.with_suffix(".npz")
        path.parent.mkdir(parents=True, exist_ok=True)
        payload = self._payload()
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                if path.suffix == ".json":
                    payload["coefficients"] = self._coefficients.cpu().tolist()
                    if self._exact is not None:
                        payload["exact_numerators"] = _strings(self._exact.numerators)
                        payload["exact_denominator"] = str(self._exact.denominator)
                    fh.write(json.dumps(payload).encode())
                else:
                    arrays = {"coefficients": self._coefficients.cpu().numpy()}
                    if self._exact is not None:
                        arrays["exact_numerators"] = np.array(
                            _strings(self._exact.numerators), dtype=np.str_
                        )
                        payload["exact_denominator"] = str(self._exact.denominator)
                    np.savez_compressed(fh, meta=np.array(json.dumps(payload)), **arrays)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> NetworkPolynomial:
        """Read a polynomial written by :meth:`save`."""
        path = Path(path)
        if not path.exists():
            raise PolynetError(f"no polynomial file at {path}; write one with poly.save(path).")
        try:
            if path.suffix == ".json":
                payload = json.loads(path.read_text())
                coef = np.asarray(payload["coefficients"], dtype=np.float64)
                numerators = payload.get("exact_numerators")
            else:
                with np.load(path, allow_pickle=False) as data:
                    payload = json.loads(str(data["meta"]))
                    coef = data["coefficients"]
                    numerators = data["exact_numerators"] if "exact_numerators" in data else None
        except (OSError, ValueError, KeyError, json.JSONDecodeError) as exc:
            raise PolynetError(
                f"{path} is not a readable polynomial file ({exc}); write it with poly.save()."
            ) from exc
        if payload.get("format") != _FORMAT:
            raise PolynetError(f"{path} is not a polynet polynomial file.")
        if payload.get("version", 0) > _FORMAT_VERSION:
            raise PolynetError(
                f"{path} has format version {payload['version']}, newer than this polynet's "
                f"{_FORMAT_VERSION}; upgrade polynet to read it."
            )
        index = MonomialIndex(payload["n_vars"], payload["index_degree"])
        if numerators is not None:
            nums = np.array([[int(n) for n in row] for row in numerators], dtype=object)
            coef = ExactCoefficients(nums, int(payload["exact_denominator"]))
        return cls(
            index,
            coef,
            degree_bound=payload["degree_bound"],
            variables=payload["variables"],
            n_network_parameters=payload.get("n_network_parameters"),
            info=payload.get("info"),
        )


def _strings(values: np.ndarray) -> list[list[str]]:
    return [[str(v) for v in row] for row in values]


def _latex_vars(names: list[str]) -> list[str]:
    out = []
    for name in names:
        head = name.rstrip("0123456789")
        tail = name[len(head) :]
        if head and tail and len(head) == 1:
            out.append(f"{head}_{{{tail}}}")
        else:  # a feature name: upright, underscores escaped
            out.append(r"\mathrm{" + name.replace("_", r"\_") + "}")
    return out
