"""NetworkPolynomial: a network's outputs as explicit multivariate polynomials.

A :class:`NetworkPolynomial` is an immutable value: its attributes cannot be set after
construction (:meth:`NetworkPolynomial.replace` returns a changed copy), two polynomials are
equal when they are the same polynomials (``p == p.to("cpu")``), and what is known about
where it came from is typed: :class:`Slice` (the inputs it is a polynomial in, and the
values the others were held at), ``input_shape``, :class:`Provenance` (time, engine,
device) and ``raw_units``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import os
import re
import types
import zipfile
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import ArrayLike
from torch import Tensor

from polynet.atomic import atomic_write
from polynet.errors import PolynetError
from polynet.polynomial.calculus import derivative_coefficients
from polynet.polynomial.evaluate import evaluate_checked
from polynet.polynomial.exact import ExactCoefficients
from polynet.polynomial.index import MonomialIndex, exponents_at, monomial_name
from polynet.polynomial.truncation import truncated_coefficients
from polynet.polynomial.uncertainty import to_chaospy, to_openturns
from polynet.validation import check_int

__all__ = ["NetworkPolynomial", "Term", "ExactCoefficients", "Slice", "Provenance"]

_FORMAT = "polynet.NetworkPolynomial"
#: 1: free-form ``info`` dict, exact numerators as decimal strings.
#: 2: typed ``slice`` / ``input_shape`` / ``provenance`` / ``raw_units``, exact numerators as
#: one block of fixed-width little-endian two's-complement bytes.
_FORMAT_VERSION = 2
# The keys of the version-1 ``info`` dict, which the constructor still accepts.
_INFO_KEYS = ("input_shape", "inputs", "fixed", "seconds", "engine", "device", "raw_units")


@dataclass(frozen=True)
class Term:
    """One term c·m of a polynomial: coefficient, exponent vector and readable monomial."""

    coefficient: float
    exponents: tuple[int, ...]
    monomial: str

    def __str__(self) -> str:
        return f"{self.coefficient:+.6g} {self.monomial}"


@dataclass(frozen=True)
class Slice:
    """Where a slice polynomial lies: the network inputs it is a polynomial in, and the values
    all network inputs are held at (those in ``inputs`` are ignored).

    Examples
    --------
    >>> s = Slice(inputs=(2, 0), fixed=(0.0, 5.0, 0.0))
    >>> s.n_network_inputs
    3
    >>> s.embed(np.array([[1.0, 2.0]])).tolist()
    [[2.0, 5.0, 1.0]]
    """

    inputs: tuple[int, ...]
    fixed: tuple[float | Fraction, ...]

    def __post_init__(self) -> None:
        inputs = tuple(int(i) for i in self.inputs)
        fixed = tuple(v if isinstance(v, Fraction) else float(v) for v in self.fixed)
        n = len(fixed)
        if not inputs or len(set(inputs)) != len(inputs) or min(inputs) < 0 or max(inputs) >= n:
            raise ValueError(
                f"a slice's inputs must be distinct input numbers in 0..{n - 1}, got "
                f"{list(inputs)}."
            )
        if not all(math.isfinite(v) for v in fixed):
            raise ValueError("a slice's fixed values must be finite.")
        object.__setattr__(self, "inputs", inputs)
        object.__setattr__(self, "fixed", fixed)

    @property
    def n_network_inputs(self) -> int:
        """Number of inputs of the network the slice was taken from."""
        return len(self.fixed)

    def point(self) -> np.ndarray:
        """The fixed values as a float64 array of length ``n_network_inputs``."""
        return np.array([float(v) for v in self.fixed], dtype=np.float64)

    def embed(self, x: ArrayLike | Tensor) -> np.ndarray | Tensor:
        """Full network inputs (B, n_network_inputs) for slice points x of shape (B, len(inputs)).

        A tensor gives a float64 tensor on its device; anything else a float64 array.
        """
        points = x if torch.is_tensor(x) else np.asarray(x, dtype=np.float64)
        if points.ndim != 2 or points.shape[1] != len(self.inputs):
            raise ValueError(
                f"slice points must have shape (B, {len(self.inputs)}), got {tuple(points.shape)}."
            )
        if torch.is_tensor(points):
            full = torch.as_tensor(self.point(), device=points.device).repeat(points.shape[0], 1)
            full[:, list(self.inputs)] = points.to(torch.float64)
            return full
        full = np.tile(self.point(), (points.shape[0], 1))
        full[:, list(self.inputs)] = points
        return full

    def as_dict(self) -> dict[str, Any]:
        return {
            "inputs": list(self.inputs),
            "fixed": [str(v) if isinstance(v, Fraction) else v for v in self.fixed],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Slice:
        fixed = [Fraction(v) if isinstance(v, str) else float(v) for v in data["fixed"]]
        return cls(tuple(data["inputs"]), tuple(fixed))


@dataclass(frozen=True)
class Provenance:
    """How a polynomial was made: seconds taken, engine (``"float64"``, ``"modular"``, ...)
    and device. Fields are None when unknown."""

    seconds: float | None = None
    engine: str | None = None
    device: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"seconds": self.seconds, "engine": self.engine, "device": self.device}


_NO_PROVENANCE = Provenance()


def largest_terms(
    coef: np.ndarray, exponents_of: Callable[[np.ndarray], np.ndarray], variables, top: int | None
) -> list[Term]:
    """The non-zero terms of one output's coefficients by |coefficient|, largest first; only
    the rows shown are unranked into exponents (``exponents_of(rows)``)."""
    order = np.argsort(-np.abs(coef), kind="stable")
    order = order[coef[order] != 0]
    if top is not None:
        order = order[:top]
    return [
        Term(float(coef[r]), tuple(int(e) for e in row), monomial_name(row, variables))
        for r, row in zip(order, exponents_of(order))
    ]


class NetworkPolynomial:
    """Polynomials p_o(x), one per network output, stored densely over a :class:`MonomialIndex`.

    Coefficient ``coefficients[o, r]`` multiplies monomial ``exponents[r]``; monomials are in
    graded order (scikit-learn's ``PolynomialFeatures`` columns). On the exact path the
    coefficients are also kept as exact rationals (``exact_coefficients``).

    A NetworkPolynomial is a value: its attributes are read-only (:meth:`replace` gives a
    changed copy; the coefficient tensor is shared between copies, so do not write into it),
    ``==`` compares the polynomials (index, variables, degree bound, exactness and
    coefficients, wherever they live), and it is not hashable (it holds a tensor).

    Parameters
    ----------
    index : MonomialIndex
        The monomials, of total degree ≤ the network's bound D.
    coefficients : Tensor, array or ExactCoefficients of shape (n_outputs, index.size)
        float64 coefficients, or exact ones (``ExactCoefficients`` or an object array of
        ``fractions.Fraction``).
    degree_bound : int, optional
        Theorem 2's bound ∏k (default: ``index.degree``).
    variables : sequence of str, optional
        Variable names (default ``x0 .. x{n-1}``; a slice keeps the original input numbers).
    n_network_parameters : int, optional
        The network's own parameter count, for comparison with ``n_terms``.
    slice : Slice, optional
        For a slice polynomial: the inputs it is in and the values the others are held at.
    input_shape : tuple of int, optional
        The network's input shape, e.g. (C, H, W) for a convolutional model.
    provenance : Provenance, optional
        Seconds, engine and device of the expansion.
    raw_units : bool, default=False
        Whether the data set's standardisation was folded in (original features and units).
    notes : mapping, optional
        JSON-able facts about how the polynomial was derived that are not part of its value
        (a graph's per-node degrees, a truncation or derivative record); read-only, ignored
        by ``==``, saved with the polynomial.
    info : dict, optional
        The version-1 description (keys ``input_shape``, ``inputs``, ``fixed``, ``seconds``,
        ``engine``, ``device``, ``raw_units``), read into the typed fields above when they
        are not given (other keys go to ``notes``); kept for compatibility.

    Examples
    --------
    >>> idx = MonomialIndex(2, 2)
    >>> p = NetworkPolynomial(idx, torch.tensor([[1.0, 0, 2, 0, 3, 0]]))
    >>> p
    NetworkPolynomial(n_vars=2, n_outputs=1, degree=2, n_terms=3)
    >>> p(torch.tensor([[1.0, 2.0]])).tolist()
    [[11.0]]
    >>> p.coefficient("x0 x1"), p.coefficient((0, 1))
    (3.0, 2.0)
    >>> p == p.to("cpu")
    True
    """

    index: MonomialIndex
    degree_bound: int
    variables: tuple[str, ...]
    n_network_parameters: int | None
    slice: Slice | None
    input_shape: tuple[int, ...] | None
    provenance: Provenance
    raw_units: bool

    _FIELDS = (
        "degree_bound",
        "variables",
        "n_network_parameters",
        "slice",
        "input_shape",
        "provenance",
        "raw_units",
        "notes",
    )

    def __init__(
        self,
        index: MonomialIndex,
        coefficients: Tensor | np.ndarray | ExactCoefficients,
        *,
        degree_bound: int | None = None,
        variables: Sequence[str] | None = None,
        n_network_parameters: int | None = None,
        slice: Slice | None = None,  # noqa: A002 - the attribute's name
        input_shape: Sequence[int] | None = None,
        provenance: Provenance | None = None,
        raw_units: bool = False,
        notes: Mapping[str, Any] | None = None,
        info: Mapping[str, Any] | None = None,
    ) -> None:
        if not isinstance(index, MonomialIndex):
            raise TypeError(f"index must be a MonomialIndex, got {type(index).__name__}.")
        if isinstance(coefficients, np.ndarray) and coefficients.dtype == object:
            coefficients = ExactCoefficients.from_fractions(coefficients)
        if isinstance(coefficients, ExactCoefficients):
            exact = coefficients
            tensor = torch.from_numpy(coefficients.floats())
        else:
            exact = None
            tensor = torch.as_tensor(coefficients, dtype=torch.float64)
        if tensor.dim() != 2 or tensor.shape[1] != index.size:
            raise ValueError(
                f"coefficients must have shape (n_outputs, {index.size}), "
                f"got {tuple(tensor.shape)}."
            )
        if info is not None:
            slice, input_shape, provenance, raw_units, extra = _from_info(
                info, slice, input_shape, provenance, raw_units
            )
            notes = {**extra, **(notes or {})}
        fields = dict(
            degree_bound=degree_bound,
            variables=variables,
            n_network_parameters=n_network_parameters,
            slice=slice,
            input_shape=input_shape,
            provenance=provenance,
            raw_units=raw_units,
            notes=notes,
        )
        self._set(index, tensor, exact, fields)

    def _set(
        self,
        index: MonomialIndex,
        tensor: Tensor,
        exact: ExactCoefficients | None,
        fields: dict[str, Any],
    ) -> None:
        """Validate the descriptive fields and set everything (the only writer)."""
        degree_bound = fields["degree_bound"]
        degree_bound = index.degree if degree_bound is None else int(degree_bound)
        the_slice = fields["slice"]
        if the_slice is not None and not isinstance(the_slice, Slice):
            raise TypeError(f"slice must be a Slice or None, got {type(the_slice).__name__}.")
        if the_slice is not None and len(the_slice.inputs) != index.n_vars:
            raise ValueError(
                f"the slice is in {len(the_slice.inputs)} inputs but the index has "
                f"{index.n_vars} variables."
            )
        variables = fields["variables"]
        if variables is None or len(variables) == 0:
            numbers = the_slice.inputs if the_slice is not None else range(index.n_vars)
            variables = tuple(f"x{i}" for i in numbers)
        else:
            variables = tuple(str(v) for v in variables)
        if len(variables) != index.n_vars:
            raise ValueError(f"variables must have {index.n_vars} names, got {len(variables)}.")
        n_params = fields["n_network_parameters"]
        shape = fields["input_shape"]
        provenance = fields["provenance"]
        if provenance is not None and not isinstance(provenance, Provenance):
            raise TypeError(
                f"provenance must be a Provenance or None, got {type(provenance).__name__}."
            )
        values = {
            "index": index,
            "_coefficients": tensor,
            "_exact": exact,
            "_nonzero_mask": None,
            "degree_bound": degree_bound,
            "variables": variables,
            "n_network_parameters": None if n_params is None else int(n_params),
            "slice": the_slice,
            "input_shape": None if shape is None else tuple(int(s) for s in shape),
            "provenance": provenance if provenance is not None else _NO_PROVENANCE,
            "raw_units": bool(fields["raw_units"]),
            # A plain dict behind the read-only `notes` property: mappingproxy does not pickle.
            "_notes": dict(fields.get("notes") or {}),
        }
        for name, value in values.items():
            object.__setattr__(self, name, value)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(
            f"NetworkPolynomial is immutable: poly.replace({name}=...) returns a changed copy."
        )

    def __delattr__(self, name: str) -> None:
        raise AttributeError("NetworkPolynomial is immutable.")

    def _fields(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self._FIELDS}

    def _with(
        self, tensor: Tensor, exact: ExactCoefficients | None, **fields: Any
    ) -> NetworkPolynomial:
        new = object.__new__(NetworkPolynomial)
        new._set(self.index, tensor, exact, {**self._fields(), **fields})
        return new

    def replace(self, **changes: Any) -> NetworkPolynomial:
        """A copy with some fields changed: ``coefficients`` or any constructor keyword.

        Examples
        --------
        >>> p = NetworkPolynomial(MonomialIndex(1, 1), torch.tensor([[1.0, 2.0]]))
        >>> p.replace(variables=["t"]).variables
        ('t',)
        """
        unknown = set(changes) - {"coefficients", *self._FIELDS}
        if unknown:
            raise TypeError(
                f"replace() got unknown fields {sorted(unknown)}; it takes coefficients, "
                f"{', '.join(self._FIELDS)}."
            )
        if "coefficients" in changes:
            coefficients = changes.pop("coefficients")
            return NetworkPolynomial(self.index, coefficients, **{**self._fields(), **changes})
        return self._with(self._coefficients, self._exact, **changes)

    @property
    def notes(self) -> Mapping[str, Any]:
        """Derivation facts outside the value (read-only; see the class docstring)."""
        return types.MappingProxyType(self._notes)

    @property
    def info(self) -> Mapping[str, Any]:
        """Read-only view in the version-1 ``info`` shape (prefer the typed fields)."""
        out: dict[str, Any] = {}
        if self.input_shape is not None:
            out["input_shape"] = list(self.input_shape)
        if self.slice is not None:
            out["inputs"] = list(self.slice.inputs)
            out["fixed"] = self.slice.point().tolist()
        out.update({k: v for k, v in self.provenance.as_dict().items() if v is not None})
        if self.raw_units:
            out["raw_units"] = True
        out.update({k: v for k, v in self.notes.items() if k not in out})
        return types.MappingProxyType(out)

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
        """Read-only object array of ``Fraction`` of shape (n_outputs, max_terms), or None."""
        return None if self._exact is None else self._exact.fractions()

    @property
    def exponents(self) -> np.ndarray:
        """Exponent table of shape (max_terms, n_vars): row r is the monomial of column r."""
        return self.index.exponents

    @property
    def device(self) -> torch.device:
        return self._coefficients.device

    def _nonzero(self) -> Tensor:
        if self._nonzero_mask is None:
            if self._exact is not None:
                mask = torch.from_numpy(self._exact.nonzero().astype(bool))
            else:
                mask = (self._coefficients != 0).cpu()
            object.__setattr__(self, "_nonzero_mask", mask)  # a cache, not a field
        return self._nonzero_mask

    @property
    def degree(self) -> int:
        """True total degree: the largest degree with a non-zero coefficient (-1 if zero)."""
        used = self._nonzero().any(0).numpy()
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

    def coefficient(
        self, exponents: Sequence[int] | np.ndarray | str, output: int = 0
    ) -> float | Fraction:
        """The coefficient of one monomial: a ``Fraction`` on the exact path, else a float.

        ``exponents`` is an exponent vector of length ``n_vars`` or a monomial name as
        :meth:`terms` writes it (``"x0^2 x3"``, ``"1"`` for the constant).
        """
        e = self._exponent_vector(exponents)
        if not 0 <= int(output) < self.n_outputs:
            raise ValueError(f"output must be in 0..{self.n_outputs - 1}, got {output!r}.")
        row = int(self.index.position(e[None])[0])
        if self._exact is not None:
            return Fraction(int(self._exact.numerators[int(output), row]), self._exact.denominator)
        return float(self._coefficients[int(output), row])

    def _exponent_vector(self, exponents: Sequence[int] | np.ndarray | str) -> np.ndarray:
        if isinstance(exponents, str):
            e = np.zeros(self.n_vars, dtype=np.int64)
            position = {name: j for j, name in enumerate(self.variables)}
            tokens = exponents.split()
            if tokens != ["1"]:
                for token in tokens:
                    name, caret, power = token.partition("^")
                    if name not in position or (caret and not re.fullmatch(r"[0-9]+", power)):
                        raise ValueError(
                            f"cannot read monomial {exponents!r}: {token!r} is not a variable "
                            f"or variable^power of {list(self.variables[:5])}"
                            f"{'...' if self.n_vars > 5 else ''}."
                        )
                    e[position[name]] += int(power) if caret else 1
        else:
            e = np.asarray(exponents)
            if e.shape != (self.n_vars,) or (e.size and not np.issubdtype(e.dtype, np.integer)):
                raise ValueError(
                    f"exponents must be {self.n_vars} non-negative integers (one per variable), "
                    f"got {exponents!r}."
                )
            e = e.astype(np.int64)
            if (e < 0).any():
                raise ValueError(f"exponents must be non-negative, got {exponents!r}.")
        if int(e.sum()) > self.index.degree:
            raise ValueError(
                f"the monomial {monomial_name(e, list(self.variables))} has degree {int(e.sum())}, "
                f"above this polynomial's largest degree {self.index.degree}."
            )
        return e

    def __repr__(self) -> str:
        return (
            f"NetworkPolynomial(n_vars={self.n_vars}, n_outputs={self.n_outputs}, "
            f"degree={self.degree}, n_terms={self.n_terms})"
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, NetworkPolynomial):
            return NotImplemented
        if (
            self.index != other.index
            or self.variables != other.variables
            or self.degree_bound != other.degree_bound
            or self.exact != other.exact
            or self.n_outputs != other.n_outputs
        ):
            return False
        if self._exact is not None:
            return self._exact == other._exact
        return bool(torch.equal(self._coefficients.cpu(), other._coefficients.cpu()))

    __hash__ = None  # type: ignore[assignment]

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

    def __call__(self, x: ArrayLike | Tensor) -> Tensor | np.ndarray:
        """Evaluate every output at points x of shape (B, n_vars): returns (B, n_outputs).

        A tensor in gives a float64 tensor on the polynomial's device; anything else (a NumPy
        array, a list) gives a NumPy array. Streams over the points without a points × terms
        matrix or an exponent table (:mod:`polynet.polynomial.evaluate`), and refuses with
        :class:`~polynet.errors.ExpansionTooLargeError` before an evaluation that would not
        fit in memory. Exact polynomials are evaluated from their float64 coefficients.
        """
        out = evaluate_checked(self, x)
        return out if torch.is_tensor(x) else out.cpu().numpy()

    # -- calculus and truncation: array functions of polynomial.calculus and .truncation ----------
    def _variable_position(self, i: int | str) -> int:
        if isinstance(i, str):
            if i not in self.variables:
                raise ValueError(
                    f"variable {i!r} is not one of the polynomial's variables "
                    f"{self.variables[:5]}{'...' if self.n_vars > 5 else ''}."
                )
            return self.variables.index(i)
        i = check_int(i, "i", 0)
        if i >= self.n_vars:
            raise ValueError(f"i must be < n_vars = {self.n_vars}, got {i}.")
        return i

    def _working_coefficients(self) -> Tensor | np.ndarray:
        """The coefficients the array functions work on: Fractions if exact, else floats."""
        return self.exact_coefficients if self.exact else self.coefficients

    def derivative(self, i: int | str) -> NetworkPolynomial:
        """∂self/∂x_i (by position or name): a polynomial of one degree less.

        Examples
        --------
        >>> idx = MonomialIndex(2, 2)   # p = x0 + 3 x0 x1
        >>> p = NetworkPolynomial(idx, torch.tensor([[0.0, 1, 0, 0, 3, 0]]))
        >>> p.derivative(0).coefficients.tolist()   # 1 + 3 x1
        [[1.0, 0.0, 3.0]]
        """
        i = self._variable_position(i)
        coef, low = derivative_coefficients(self._working_coefficients(), self.index, i)
        notes = {"derivative": [*self.notes.get("derivative", []), self.variables[i]]}
        return NetworkPolynomial(
            low,
            coef,
            degree_bound=max(self.degree_bound - 1, 0),
            variables=list(self.variables),
            n_network_parameters=self.n_network_parameters,
            slice=self.slice,
            input_shape=self.input_shape,
            raw_units=self.raw_units,
            notes=notes,
        )

    def gradient(self) -> tuple[NetworkPolynomial, ...]:
        """(∂self/∂x_0, ..., ∂self/∂x_{n-1})."""
        return tuple(self.derivative(i) for i in range(self.n_vars))

    def truncate(
        self,
        *,
        terms: int | None = None,
        tol: float | None = None,
        degree: int | None = None,
        low: ArrayLike | None = None,
        high: ArrayLike | None = None,
    ) -> NetworkPolynomial:
        """Fewer terms: the top ``terms``, the fewest within a certified ``tol`` on the box
        [low, high] (default [-1, 1]), or total degree ≤ ``degree``
        (:func:`polynet.polynomial.truncation.truncated_coefficients`).

        Same variables (and exactness); ``info["truncation"]`` records what was kept and the
        bound.
        """
        coef, index, record = truncated_coefficients(
            self._working_coefficients(),
            self.index,
            self.coefficients,
            terms=terms,
            tol=tol,
            degree=degree,
            low=low,
            high=high,
        )
        return self.with_terms(coef, record, index)

    def with_terms(
        self, coefficients: Tensor | np.ndarray, record: dict, index: MonomialIndex | None = None
    ) -> NetworkPolynomial:
        """This polynomial with fewer terms: ``coefficients`` over ``index`` (default: the same
        index), ``info["truncation"] = record``."""
        index = self.index if index is None else index
        info = dict(self.info)
        info["truncation"] = record
        return NetworkPolynomial(
            index,
            coefficients,
            degree_bound=(
                self.degree_bound if index is self.index else min(self.degree_bound, index.degree)
            ),
            variables=list(self.variables),
            n_network_parameters=self.n_network_parameters,
            info=info,
        )

    def to(self, device: torch.device | str) -> NetworkPolynomial:
        """A copy with the float coefficients on ``device`` (equal to this one)."""
        return self._with(self._coefficients.to(device), self._exact)

    def to_float(self) -> NetworkPolynomial:
        """The float64 polynomial of an exact one (coefficients correctly rounded); itself
        when it is already float."""
        if self._exact is None:
            return self
        return self._with(self._coefficients, None)

    # -- arithmetic (ring discipline) -----------------------------------------------------
    def _check_same_ring(self, other: NetworkPolynomial, op: str) -> None:
        if self.index != other.index or self.variables != other.variables:
            raise TypeError(
                f"cannot combine polynomials over different indexes: {self.index} in "
                f"{list(self.variables[:3])}... and {other.index} in "
                f"{list(other.variables[:3])}..."
            )
        if self.exact != other.exact:
            raise TypeError(
                f"cannot {op} an exact and a float polynomial: the result would silently "
                "lose exactness; call .to_float() on the exact one first."
            )

    def __add__(self, other: object) -> NetworkPolynomial:
        if not isinstance(other, NetworkPolynomial):
            return NotImplemented
        self._check_same_ring(other, "add")
        exact = None
        if self._exact is not None and other._exact is not None:
            exact = self._exact.combine(other._exact)
            tensor = torch.from_numpy(exact.floats()).to(self.device)
        else:
            tensor = self._coefficients + other._coefficients.to(self.device)
        return self._with(tensor, exact, provenance=None)

    def __neg__(self) -> NetworkPolynomial:
        exact = None if self._exact is None else self._exact.scaled(Fraction(-1))
        return self._with(-self._coefficients, exact, provenance=None)

    def __sub__(self, other: object) -> NetworkPolynomial:
        if not isinstance(other, NetworkPolynomial):
            return NotImplemented
        self._check_same_ring(other, "subtract")
        return self + (-other)

    def __mul__(self, scalar: object) -> NetworkPolynomial:
        if isinstance(scalar, bool) or not isinstance(scalar, (int, float, Fraction)):
            return NotImplemented
        if self._exact is None:
            return self._with(self._coefficients * float(scalar), None, provenance=None)
        exact = self._exact.scaled(Fraction(scalar))
        return self._with(torch.from_numpy(exact.floats()).to(self.device), exact, provenance=None)

    __rmul__ = __mul__

    # -- views ------------------------------------------------------------------------------
    def terms(self, top: int | None = 10, output: int = 0) -> list[Term]:
        """The largest terms of one output by |coefficient|, largest first (all if top=None)."""
        return largest_terms(
            self._coefficients[output].cpu().numpy(), self._exponents_of, self.variables, top
        )

    def _names(self, rows: np.ndarray) -> list[str]:
        return [monomial_name(row, self.variables) for row in self._exponents_of(rows)]

    def _exponents_of(self, rows: np.ndarray) -> np.ndarray:
        """Exponent rows of some positions, without building the whole table for a few rows
        (at 30 inputs and D = 8 the table takes 11.7 GB)."""
        rows = np.asarray(rows, dtype=np.int64)
        if len(rows) * 64 >= self.index.size:
            return self.exponents[rows]
        return exponents_at(self.n_vars, rows)

    def degree_profile(self) -> np.ndarray:
        """Coefficient mass Σ|c| per total degree: shape (n_outputs, degree_bound + 1)."""
        degrees = torch.from_numpy(self.index.degrees.copy()).to(self.device)
        out = torch.zeros(
            self.n_outputs, self.index.degree + 1, dtype=torch.float64, device=self.device
        )
        out.index_add_(1, degrees, self._coefficients.abs())
        return out.cpu().numpy()

    def to_sympy(self, symbols: Sequence[Any] | None = None) -> list[Any]:
        """One ``sympy.Poly`` per output: over QQ on the exact path, over RR otherwise.

        The Poly's dense recursive representation is built directly from the exponent table
        (no expression arithmetic, no per-term dict conversion), so a 200,000-term
        polynomial converts in well under a second.
        """
        import sympy
        from sympy.polys.polyclasses import DMP

        gens = tuple(symbols) if symbols else sympy.symbols(list(self.variables))
        if len(gens) != self.n_vars:
            raise ValueError(f"symbols must be {self.n_vars} symbols, got {len(gens)}.")
        polys = []
        for o in range(self.n_outputs):
            if self._exact is not None:
                nums = self._exact.numerators[o]
                rows = np.flatnonzero(nums != 0)
                domain, den = sympy.QQ, self._exact.denominator
                values = [domain(n, den) for n in nums[rows].tolist()]
            else:
                coef = self._coefficients[o].cpu().numpy()
                rows = np.flatnonzero(coef)
                domain = sympy.RR
                values = [domain(c) for c in coef[rows].tolist()]
            exps = self.exponents[rows]
            if self.n_vars == 1 or not len(rows):
                keys = map(tuple, exps.tolist())
                data = dict(zip(keys, values)) or {(0,) * self.n_vars: domain(0)}
                polys.append(sympy.Poly.from_dict(data, *gens, domain=domain))
            else:
                rep = _dense_recursive(exps, values, domain.zero)
                polys.append(sympy.Poly.new(DMP(rep, domain, self.n_vars - 1), *gens))
        return polys

    def to_chaospy(self, output: int | None = None) -> Any:
        """A ``numpoly.ndpoly`` for chaospy (:func:`polynet.polynomial.uncertainty.to_chaospy`)."""
        return to_chaospy(self, output)

    def to_openturns(self, output: int = 0) -> Any:
        """An OpenTURNS function (:func:`polynet.polynomial.uncertainty.to_openturns`)."""
        return to_openturns(self, output)

    def _repr_latex_(self) -> str:
        # Jupyter: the 10 largest terms of each output, never the whole polynomial.
        lines = [
            f"p_{{{o}}}(x) &= {self.to_latex(output=o, top=10)}" for o in range(self.n_outputs)
        ]
        return "$$\\begin{aligned}" + " \\\\ ".join(lines) + "\\end{aligned}$$"

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
        exps = self._exponents_of(rows)
        return _latex_sum(coef[rows], exps, _latex_vars(self.variables), digits, left_out)

    # -- persistence ------------------------------------------------------------------------
    def _meta(self) -> dict[str, Any]:
        return {
            "format": _FORMAT,
            "version": _FORMAT_VERSION,
            "n_vars": self.n_vars,
            "n_outputs": self.n_outputs,
            "index_degree": self.index.degree,
            "degree_bound": self.degree_bound,
            "variables": list(self.variables),
            "n_network_parameters": self.n_network_parameters,
            "slice": None if self.slice is None else self.slice.as_dict(),
            "input_shape": None if self.input_shape is None else list(self.input_shape),
            "provenance": self.provenance.as_dict(),
            "raw_units": self.raw_units,
            "notes": _jsonable(dict(self.notes)),
        }

    def save(self, path: str | os.PathLike) -> Path:
        """Write to ``.npz`` (default) or ``.json``, atomically, without pickle.

        Exact numerators are written as one block of fixed-width two's-complement bytes
        (uncompressed in ``.npz``, base64 in ``.json``), not as decimal strings.
        """
        path = Path(path)
        if path.suffix not in (".npz", ".json"):
            path = path.with_suffix(".npz")
        meta = self._meta()
        block = None
        if self._exact is not None:
            block, width = self._exact.to_bytes()
            meta["exact"] = {"denominator": str(self._exact.denominator), "width": width}
        coef = self._coefficients.cpu().numpy()
        with atomic_write(path) as fh:
            if path.suffix == ".json":
                meta["coefficients"] = coef.tolist()
                if block is not None:
                    meta["exact"]["numerators_base64"] = base64.b64encode(block).decode()
                # A digest of everything else: a damaged digit would parse as another number.
                meta["sha256"] = hashlib.sha256(json.dumps(meta).encode()).hexdigest()
                fh.write(json.dumps(meta).encode())
            else:
                with zipfile.ZipFile(fh, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
                    _write_npy(zf, "meta", np.array(json.dumps(meta)), compress=True)
                    _write_npy(zf, "coefficients", coef, compress=True)
                    if block is not None:
                        raw = np.frombuffer(block, dtype=np.uint8)
                        _write_npy(zf, "exact_numerators", raw, compress=False)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> NetworkPolynomial:
        """Read a polynomial written by :meth:`save` (format version 1 or 2), or reopen a
        ``.zarr`` store written by ``expand(..., store=...)`` (a :class:`StoredPolynomial`)."""
        path = Path(path)
        if path.suffix == ".zarr":
            from polynet.polynomial.store import open_store

            return open_store(path)
        if not path.exists():
            raise PolynetError(f"no polynomial file at {path}; write one with poly.save(path).")
        try:
            if path.suffix == ".json":
                payload = json.loads(path.read_text())
                _check_digest(path, payload)
                coef = np.asarray(payload.get("coefficients"), dtype=np.float64)
                numerators = payload.get("exact_numerators")
                exact = payload.get("exact")
                block = None
                if exact is not None:
                    block = base64.b64decode(exact["numerators_base64"])
            else:
                with np.load(path, allow_pickle=False) as data:
                    payload = json.loads(str(data["meta"]))
                    coef = data["coefficients"]
                    stored = data["exact_numerators"] if "exact_numerators" in data else None
                numerators = stored if stored is not None and stored.dtype.kind == "U" else None
                block = stored.tobytes() if stored is not None and numerators is None else None
        except PolynetError:
            raise
        except (
            OSError,
            ValueError,  # also JSON, base64 and UTF-8 decoding errors
            KeyError,
            TypeError,
            EOFError,
            OverflowError,
            zipfile.BadZipFile,  # also a bad CRC of a member
            zlib.error,
            NotImplementedError,  # zipfile: a damaged compression method
        ) as exc:
            raise PolynetError(
                f"{path} is not a readable polynomial file ({type(exc).__name__}: {exc}); it is "
                "truncated, damaged or of another format. Write it again with poly.save() "
                "(polynet expand --out)."
            ) from exc
        if isinstance(payload, dict) and payload.get("format") == "polynet.SparsePolynomial":
            from polynet.polynomial.sparse_polynomial import SparsePolynomial

            return SparsePolynomial.load(path)  # a sparse expansion's file
        if not isinstance(payload, dict) or payload.get("format") != _FORMAT:
            raise PolynetError(f"{path} is not a polynet polynomial file.")
        version = payload.get("version", 0)
        if version > _FORMAT_VERSION:
            raise PolynetError(
                f"{path} has format version {version}, newer than this polynet's "
                f"{_FORMAT_VERSION}; upgrade polynet to read it."
            )
        try:
            index = MonomialIndex(payload["n_vars"], payload["index_degree"])
            common = dict(
                degree_bound=payload["degree_bound"],
                variables=payload["variables"],
                n_network_parameters=payload.get("n_network_parameters"),
            )
            if version >= 2:
                coefficients = coef
                if block is not None:
                    exact = payload["exact"]
                    coefficients = ExactCoefficients.from_bytes(
                        block, exact["width"], coef.shape, int(exact["denominator"])
                    )
                return cls(
                    index,
                    coefficients,
                    **common,
                    slice=None
                    if payload.get("slice") is None
                    else Slice.from_dict(payload["slice"]),
                    input_shape=payload.get("input_shape"),
                    provenance=Provenance(**(payload.get("provenance") or {})),
                    raw_units=bool(payload.get("raw_units")),
                    notes=payload.get("notes"),
                )
            # Version 1: a free-form info dict, numerators as decimal strings.
            coefficients = coef
            if numerators is not None:
                nums = np.array([[int(n) for n in row] for row in numerators], dtype=object)
                coefficients = ExactCoefficients(nums, int(payload["exact_denominator"]))
            return cls(index, coefficients, **common, info=payload.get("info") or {})
        except (KeyError, TypeError, ValueError) as exc:
            raise PolynetError(
                f"{path} is a damaged polynomial file ({type(exc).__name__}: {exc}); write it "
                "again with poly.save()."
            ) from exc


def _check_digest(path: Path, payload: Any) -> None:
    """A ``.json`` polynomial's SHA-256 of its other fields (files before it have none)."""
    if not isinstance(payload, dict) or "sha256" not in payload:
        return
    stored = payload.pop("sha256")
    if hashlib.sha256(json.dumps(payload).encode()).hexdigest() != stored:
        raise PolynetError(
            f"{path} is damaged: its contents do not match the SHA-256 written with them. "
            "Write it again with poly.save() (polynet expand --out)."
        )


def _write_npy(zf: zipfile.ZipFile, name: str, array: np.ndarray, compress: bool) -> None:
    """One ``.npy`` member of an ``.npz`` (what ``np.load`` reads), compressed or stored."""
    info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
    info.compress_type = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    if compress:
        info._compresslevel = 1  # fast: float coefficients hardly compress further
    with zf.open(info, "w", force_zip64=True) as member:
        np.lib.format.write_array(member, np.asarray(array, order="C"), allow_pickle=False)


def _from_info(
    info: Mapping[str, Any],
    the_slice: Slice | None,
    input_shape: Sequence[int] | None,
    provenance: Provenance | None,
    raw_units: bool,
) -> tuple[Slice | None, Sequence[int] | None, Provenance | None, bool, dict[str, Any]]:
    """The typed fields from a version-1 ``info`` dict (explicit arguments win), and the
    other keys, which become ``notes``."""
    extra = {k: v for k, v in info.items() if k not in _INFO_KEYS}
    if info.get("inputs") is not None and info.get("fixed") is None:
        raise ValueError("info= has 'inputs' without 'fixed'; pass slice=Slice(inputs, fixed).")
    if the_slice is None and info.get("inputs") is not None:
        the_slice = Slice(tuple(info["inputs"]), tuple(info["fixed"]))
    if input_shape is None and info.get("input_shape") is not None:
        input_shape = info["input_shape"]
    if provenance is None and any(info.get(k) is not None for k in ("seconds", "engine", "device")):
        seconds = info.get("seconds")
        provenance = Provenance(
            None if seconds is None else float(seconds),
            info.get("engine"),
            None if info.get("device") is None else str(info["device"]),
        )
    return the_slice, input_shape, provenance, bool(raw_units or info.get("raw_units")), extra


def _latex_sum(
    values: np.ndarray, exps: np.ndarray, names: list[str], digits: int, left_out: int
) -> str:
    """LaTeX of the terms ``values[r] · x^exps[r]`` in the order given, and how many terms
    were left out (shared by NetworkPolynomial and StoredPolynomial)."""
    pieces = []
    for c, row in zip(values, exps):
        mono = " ".join((v if p == 1 else f"{v}^{{{p}}}") for v, p in zip(names, row.tolist()) if p)
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
    if left_out > 0:
        text += rf" + \dots \text{{({left_out} more terms)}}"
    return text


def _jsonable(value: Any) -> Any:
    """``value`` with tuples as lists and numpy scalars as Python numbers, for JSON."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _dense_recursive(exps: np.ndarray, values: list[Any], zero_value: Any) -> list:
    """SymPy's dense recursive polynomial (``dmp``) of the terms ``values[r] · x^exps[r]``.

    A level-v polynomial is the list of its coefficients in the first of its v + 1 variables,
    highest degree first, each a level-(v - 1) polynomial; level 0 holds domain elements.
    With the terms sorted lexicographically, highest first, the nodes of each level are
    contiguous runs, so the tree is built bottom-up, one flat loop per level (no recursion,
    no tuple slicing per term).
    """
    n_rows, n = exps.shape
    order = np.lexsort(tuple(-exps[:, c] for c in range(n - 1, -1, -1)))
    exps = exps[order]
    items: list[Any] = [values[i] for i in order.tolist()]
    # new_run[c][r]: row r starts a new run of equal exponents in variables 0..c-1.
    changed = np.zeros(n_rows, dtype=bool)
    changed[0] = True
    new_run = [changed.copy()]
    for c in range(n - 1):
        changed[1:] |= exps[1:, c] != exps[:-1, c]
        new_run.append(changed.copy())
    starts = np.arange(n_rows)  # the first row of each item at the current level
    for c in range(n - 1, -1, -1):
        level = n - 1 - c  # the level of the nodes built now
        degrees = exps[starts, c].tolist()
        flags = new_run[c][starts]
        nodes: list[list] = []
        node: list = []
        top = 0
        for item, e, new in zip(items, degrees, flags.tolist()):
            if new:
                top = e
                node = [None] * (top + 1)
                nodes.append(node)
            node[top - e] = item
        if level == 0:
            nodes = [[zero_value if v is None else v for v in x] if None in x else x for x in nodes]
        else:
            nodes = [
                [_zero(level - 1) if v is None else v for v in x] if None in x else x for x in nodes
            ]
        items = nodes
        starts = starts[flags]
    return items[0]


def _zero(level: int) -> list:
    """SymPy's zero polynomial of ``level`` (``dmp_zero``): [] nested ``level`` times."""
    out: list = []
    for _ in range(level):
        out = [out]
    return out


def _latex_vars(names: Sequence[str]) -> list[str]:
    out = []
    for name in names:
        head = name.rstrip("0123456789")
        tail = name[len(head) :]
        if head and tail and len(head) == 1:
            out.append(f"{head}_{{{tail}}}")
        else:  # a feature name: upright, underscores escaped
            out.append(r"\mathrm{" + name.replace("_", r"\_") + "}")
    return out
