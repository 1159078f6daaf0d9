"""SparsePolynomial: network polynomials stored as monomial codes and their coefficients.

The dense :class:`~polynet.polynomial.network_polynomial.NetworkPolynomial` holds all C(n + D, D)
coefficients; a conv net's polynomial uses a tiny share of them (7.3 M of 1.6e10 for
``examples/mnist.py``'s network). A SparsePolynomial holds only the monomials of the
support, named by their graded codes (:mod:`polynet.polynomial.monomial_codes`: a code is the
monomial's column in the dense layout), sorted, with one coefficient row per output. It has
the dense polynomial's verbs: call, ``terms``, ``coefficient``, ``degree``, ``n_terms``,
``save``/``load``, ``to_sympy``, ``to_latex``, and ``to_dense`` for small n.
"""

from __future__ import annotations

import json
import os
import re
import zipfile
from collections.abc import Mapping, Sequence
from math import comb
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import ArrayLike
from torch import Tensor

from polynet.atomic import atomic_write
from polynet.errors import PolynetError
from polynet.polynomial.index import MonomialIndex
from polynet.polynomial.monomial_codes import codes_fit, decode, encode
from polynet.polynomial.network_polynomial import (
    NetworkPolynomial,
    Provenance,
    Term,
    _jsonable,
    _latex_sum,
    _latex_vars,
    _write_npy,
    largest_terms,
)
from polynet.threads import thread_policy

__all__ = ["SparsePolynomial"]

_FORMAT = "polynet.SparsePolynomial"
_FORMAT_VERSION = 1
#: Points × terms of one evaluation block (float64): 32 MiB of monomial values at a time.
EVAL_BLOCK_ELEMENTS = 1 << 22
#: Most terms ``to_sympy`` converts, and most dense coefficients ``to_dense`` builds.
MAX_SYMPY_TERMS = 200_000
MAX_DENSE_ELEMENTS = 50_000_000


class SparsePolynomial:
    """Polynomials p_o(x), one per output, over the monomials of their support only.

    ``coefficients[o, t]`` multiplies the monomial with code ``codes[t]``: its position in
    ``MonomialIndex(n_vars, D)`` (graded order, scikit-learn's columns), so codes sort like
    the dense layout and ``to_dense`` is a scatter. Values are read-only; copies share the
    coefficient tensor.

    Parameters
    ----------
    n_vars : int
        Number of variables n.
    codes : int array of shape (T,)
        Distinct monomial codes, ascending.
    coefficients : Tensor or array of shape (n_outputs, T)
        float64 coefficients.
    degree_bound : int
        Theorem 2's bound D = ∏k (every code must have degree ≤ D).
    variables : sequence of str, optional
        Variable names (default ``x0 .. x{n-1}``).
    n_network_parameters : int, optional
        The network's own parameter count.
    input_shape : tuple of int, optional
        The network's input shape, e.g. (C, H, W).
    notes : mapping, optional
        JSON-able facts about the expansion (seconds, engine, support), saved with it.

    Examples
    --------
    >>> p = SparsePolynomial(3, [0, 5, 9], [[1.0, 2.0, -1.0]], degree_bound=2)
    >>> p
    SparsePolynomial(n_vars=3, n_outputs=1, degree=2, n_terms=3)
    >>> [str(t) for t in p.terms()]
    ['+2 x0 x1', '+1 1', '-1 x2^2']
    >>> p(torch.tensor([[1.0, 2.0, 3.0]])).tolist()
    [[-4.0]]
    >>> p.coefficient("x0 x1"), p.coefficient((0, 0, 1))
    (2.0, 0.0)
    """

    n_vars: int
    degree_bound: int
    variables: tuple[str, ...]
    n_network_parameters: int | None
    input_shape: tuple[int, ...] | None
    slice: None = None  # a sparse polynomial is never a slice (``verify`` asks)

    def __init__(
        self,
        n_vars: int,
        codes: ArrayLike,
        coefficients: Tensor | ArrayLike,
        *,
        degree_bound: int,
        variables: Sequence[str] | None = None,
        n_network_parameters: int | None = None,
        input_shape: Sequence[int] | None = None,
        notes: Mapping[str, Any] | None = None,
    ) -> None:
        n_vars, degree_bound = int(n_vars), int(degree_bound)
        if not codes_fit(n_vars, degree_bound):
            raise ValueError(
                f"monomials of degree <= {degree_bound} in {n_vars} variables number about "
                f"{comb(n_vars + degree_bound, degree_bound):.2e}, too many for int64 codes."
            )
        codes = np.ascontiguousarray(np.asarray(codes, dtype=np.int64).reshape(-1))
        tensor = torch.as_tensor(coefficients, dtype=torch.float64)
        if tensor.dim() != 2 or tensor.shape[1] != len(codes):
            raise ValueError(
                f"coefficients must have shape (n_outputs, {len(codes)}), "
                f"got {tuple(tensor.shape)}."
            )
        if len(codes) and (
            (codes[1:] <= codes[:-1]).any()
            or codes[0] < 0
            or codes[-1] >= comb(n_vars + degree_bound, degree_bound)
        ):
            raise ValueError(
                f"codes must be distinct, ascending and below C(n+D, D) = "
                f"{comb(n_vars + degree_bound, degree_bound):,}."
            )
        names = tuple(variables) if variables is not None else None
        if names is not None and len(names) != n_vars:
            raise ValueError(f"variables must have {n_vars} names, got {len(names)}.")
        codes.setflags(write=False)
        self.__dict__.update(
            n_vars=n_vars,
            degree_bound=degree_bound,
            variables=names or tuple(f"x{i}" for i in range(n_vars)),
            n_network_parameters=n_network_parameters,
            input_shape=None if input_shape is None else tuple(int(s) for s in input_shape),
            _codes=codes,
            _coefficients=tensor,
            _notes=dict(notes or {}),
            _tuples=None,
        )

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("SparsePolynomial is immutable; build a new one.")

    # -- the value --
    @property
    def codes(self) -> np.ndarray:
        """Monomial codes, shape (T,), ascending, read-only."""
        return self._codes

    @property
    def coefficients(self) -> Tensor:
        """float64 coefficients, shape (n_outputs, T)."""
        return self._coefficients

    @property
    def notes(self) -> Mapping[str, Any]:
        return dict(self._notes)

    @property
    def provenance(self) -> Provenance:
        """Seconds, engine and device of the expansion (from ``notes``)."""
        notes = self._notes
        return Provenance(notes.get("seconds"), notes.get("engine"), notes.get("device"))

    @property
    def n_outputs(self) -> int:
        return self._coefficients.shape[0]

    @property
    def device(self) -> torch.device:
        return self._coefficients.device

    @property
    def exact(self) -> bool:
        return False

    @property
    def tuples(self) -> np.ndarray:
        """Each term's variables, ascending, padded with ``n_vars``: (T, degree_bound)."""
        if self._tuples is None:
            dtype = np.int16 if self.n_vars < 2**15 - 1 else np.int32
            t = decode(self._codes, self.n_vars, self.degree_bound).astype(dtype)
            t.setflags(write=False)
            self.__dict__["_tuples"] = t  # a cache, not a field
        return self._tuples

    def _used(self) -> np.ndarray:
        return (self._coefficients != 0).any(0).cpu().numpy()

    @property
    def degree(self) -> int:
        """True total degree: the largest degree with a non-zero coefficient (-1 if zero)."""
        used = np.flatnonzero(self._used())
        if not len(used):
            return -1
        return int(np.count_nonzero(self.tuples[used[-1]] < self.n_vars))

    @property
    def max_terms(self) -> int:
        """C(n + D, D): the most coefficients Theorem 2 allows."""
        return comb(self.n_vars + self.degree_bound, self.degree_bound)

    @property
    def n_terms(self) -> int:
        """Number of monomials with a non-zero coefficient in at least one output."""
        return int(self._used().sum())

    def n_terms_per_output(self) -> list[int]:
        """Number of non-zero coefficients of each output."""
        return [int(c) for c in (self._coefficients != 0).sum(1).tolist()]

    def __repr__(self) -> str:
        return (
            f"SparsePolynomial(n_vars={self.n_vars}, n_outputs={self.n_outputs}, "
            f"degree={self.degree}, n_terms={self.n_terms})"
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SparsePolynomial):
            return NotImplemented
        return (
            self.n_vars == other.n_vars
            and self.degree_bound == other.degree_bound
            and self.variables == other.variables
            and np.array_equal(self._codes, other._codes)
            and torch.equal(self._coefficients.cpu(), other._coefficients.cpu())
        )

    __hash__ = None  # type: ignore[assignment]

    def to(self, device: torch.device | str) -> SparsePolynomial:
        """The same polynomial with its coefficients on ``device``."""
        if torch.device(device) == self.device:
            return self
        return self._with(self._coefficients.to(device))

    def _with(self, coefficients: Tensor, codes: np.ndarray | None = None) -> SparsePolynomial:
        return SparsePolynomial(
            self.n_vars,
            self._codes if codes is None else codes,
            coefficients,
            degree_bound=self.degree_bound,
            variables=self.variables,
            n_network_parameters=self.n_network_parameters,
            input_shape=self.input_shape,
            notes=self._notes,
        )

    # -- evaluation --
    @thread_policy
    def __call__(self, x: ArrayLike | Tensor) -> Tensor | np.ndarray:
        """Evaluate every output at points x of shape (B, n_vars): returns (B, n_outputs).

        A tensor in gives a float64 tensor on the polynomial's device; anything else (a NumPy
        array, a list) gives a NumPy array, as for the dense polynomial.

        No exponent table: each term's monomial is the product of its D variables' values. On
        the CPU with numba installed, one compiled pass over the terms; otherwise term block
        by term block (gathered rows, then one matrix product per block).
        """
        out = self._evaluate(torch.as_tensor(x, dtype=torch.float64, device=self.device))
        return out if torch.is_tensor(x) else out.cpu().numpy()

    def _evaluate(self, t: Tensor) -> Tensor:
        if t.dim() == 1 and self.n_vars == 1:
            t = t[:, None]
        if t.dim() != 2 or t.shape[1] != self.n_vars:
            raise ValueError(f"points must have shape (B, {self.n_vars}), got {tuple(t.shape)}.")
        # Rows of the transposed points: row n_vars is the padding "variable", 1.
        ext = torch.cat([t.T, t.new_ones(1, t.shape[0])]).contiguous()  # (n + 1, B)
        out = t.new_zeros(self.n_outputs, t.shape[0])
        tuples = self.tuples
        kernel = _numba_kernel() if t.device.type == "cpu" and tuples.shape[1] else None
        if kernel is not None:  # one fused pass over the terms, no block temporaries
            coef = self._coefficients.detach().cpu().numpy()
            kernel(ext.numpy(), tuples, coef, out.numpy(), self.n_vars)
            return out.T
        step = max(1024, EVAL_BLOCK_ELEMENTS // max(t.shape[0], 1))
        for start in range(0, len(self._codes), step):
            block = torch.from_numpy(tuples[start : start + step].astype(np.int64)).to(t.device)
            if not block.shape[1]:
                mono = t.new_ones(len(block), t.shape[0])
            else:
                mono = ext[block[:, 0]]
                for j in range(1, block.shape[1]):
                    mono *= ext[block[:, j]]
            out += self._coefficients[:, start : start + step] @ mono
        out = out.T
        return out

    # -- lookup and views --
    def _code_of(self, exponents: Sequence[int] | np.ndarray | str) -> int:
        if isinstance(exponents, str):
            position = {name: j for j, name in enumerate(self.variables)}
            found: list[int] = []
            if exponents.split() != ["1"]:
                for token in exponents.split():
                    name, caret, power = token.partition("^")
                    if name not in position or (caret and not re.fullmatch(r"[0-9]+", power)):
                        raise ValueError(
                            f"cannot read monomial {exponents!r}: {token!r} is not a variable "
                            f"or variable^power of {list(self.variables[:5])}"
                            f"{'...' if self.n_vars > 5 else ''}."
                        )
                    found += [position[name]] * (int(power) if caret else 1)
        else:
            e = np.asarray(exponents)
            if e.shape != (self.n_vars,) or (e.size and not np.issubdtype(e.dtype, np.integer)):
                raise ValueError(
                    f"exponents must be {self.n_vars} non-negative integers (one per variable), "
                    f"got {exponents!r}."
                )
            if (e < 0).any():
                raise ValueError(f"exponents must be non-negative, got {exponents!r}.")
            found = np.repeat(np.arange(self.n_vars), e.astype(np.int64)).tolist()
        if len(found) > self.degree_bound:
            return -1
        row = np.full((1, self.degree_bound), self.n_vars, dtype=np.int64)
        row[0, : len(found)] = sorted(found)
        return int(encode(row, self.n_vars)[0])

    def coefficient(self, exponents: Sequence[int] | np.ndarray | str, output: int = 0) -> float:
        """The coefficient of one monomial (0.0 outside the support).

        ``exponents`` is an exponent vector of length ``n_vars`` or a monomial name as
        :meth:`terms` writes it (``"x0^2 x3"``, ``"1"`` for the constant).
        """
        if not 0 <= int(output) < self.n_outputs:
            raise ValueError(f"output must be in 0..{self.n_outputs - 1}, got {output!r}.")
        code = self._code_of(exponents)
        at = int(np.searchsorted(self._codes, code))
        if code < 0 or at == len(self._codes) or self._codes[at] != code:
            return 0.0
        return float(self._coefficients[int(output), at])

    def _exponents(self, rows: np.ndarray) -> np.ndarray:
        e = np.zeros((len(rows), self.n_vars + 1), dtype=np.int64)
        tuples = self.tuples[rows].astype(np.int64)
        for j in range(tuples.shape[1]):
            np.add.at(e, (np.arange(len(rows)), tuples[:, j]), 1)
        return e[:, : self.n_vars]

    def terms(self, top: int | None = 10, output: int = 0) -> list[Term]:
        """The largest terms of one output by |coefficient|, largest first (all if top=None)."""
        return largest_terms(
            self._coefficients[output].cpu().numpy(), self._exponents, self.variables, top
        )

    def to_latex(self, output: int = 0, top: int | None = None, digits: int = 6) -> str:
        """LaTeX of one output, terms in graded order; ``top`` keeps the largest terms only
        and says how many it left out."""
        coef = self._coefficients[output].cpu().numpy()
        rows = np.flatnonzero(coef)
        left_out = 0
        if top is not None and len(rows) > top:
            keep = np.argsort(-np.abs(coef[rows]), kind="stable")[:top]
            left_out = len(rows) - top
            rows = np.sort(rows[keep])
        return _latex_sum(
            coef[rows], self._exponents(rows), _latex_vars(self.variables), digits, left_out
        )

    def to_sympy(self, symbols: Sequence[Any] | None = None) -> list[Any]:
        """One ``sympy.Poly`` over RR per output (up to ``MAX_SYMPY_TERMS`` terms)."""
        import sympy

        if self.n_terms > MAX_SYMPY_TERMS:
            raise PolynetError(
                f"to_sympy converts at most {MAX_SYMPY_TERMS:,} terms, this polynomial has "
                f"{self.n_terms:,}; look at poly.terms(top=...) or poly.to_latex(top=...)."
            )
        gens = tuple(symbols) if symbols else sympy.symbols(list(self.variables))
        if len(gens) != self.n_vars:
            raise ValueError(f"symbols must be {self.n_vars} symbols, got {len(gens)}.")
        polys = []
        for o in range(self.n_outputs):
            coef = self._coefficients[o].cpu().numpy()
            rows = np.flatnonzero(coef)
            data = {
                tuple(e): sympy.RR(c) for e, c in zip(self._exponents(rows).tolist(), coef[rows])
            }
            polys.append(
                sympy.Poly.from_dict(data or {(0,) * self.n_vars: 0}, *gens, domain=sympy.RR)
            )
        return polys

    def truncate(self, degree: int) -> SparsePolynomial:
        """The terms of total degree ≤ ``degree`` (a prefix: codes are graded)."""
        stop = int(np.searchsorted(self._codes, comb(self.n_vars + degree, degree)))
        return self._with(self._coefficients[:, :stop], self._codes[:stop])

    # -- conversions --
    def to_dense(self) -> NetworkPolynomial:
        """The dense :class:`NetworkPolynomial` (for small n: it has C(n + D, D) columns)."""
        size = self.max_terms
        if size * self.n_outputs > MAX_DENSE_ELEMENTS:
            raise PolynetError(
                f"the dense form has {size:,} monomials x {self.n_outputs} outputs, more than "
                f"{MAX_DENSE_ELEMENTS:,} coefficients; keep the sparse form."
            )
        dense = torch.zeros(self.n_outputs, size, dtype=torch.float64, device=self.device)
        dense[:, torch.from_numpy(self._codes.copy()).to(self.device)] = self._coefficients
        return NetworkPolynomial(
            MonomialIndex(self.n_vars, self.degree_bound),
            dense,
            degree_bound=self.degree_bound,
            variables=self.variables,
            n_network_parameters=self.n_network_parameters,
            input_shape=self.input_shape,
        )

    @classmethod
    def from_dense(cls, poly: NetworkPolynomial) -> SparsePolynomial:
        """The monomials of ``poly`` that are non-zero in some output, as a sparse value."""
        coef = poly.coefficients
        codes = torch.nonzero((coef != 0).any(0)).reshape(-1)
        return cls(
            poly.n_vars,
            codes.cpu().numpy(),
            coef[:, codes],
            degree_bound=max(poly.degree_bound, poly.index.degree),
            variables=poly.variables,
            n_network_parameters=poly.n_network_parameters,
            input_shape=poly.input_shape,
            notes=dict(poly.notes),
        )

    # -- persistence --
    def save(self, path: str | os.PathLike) -> Path:
        """Write to ``.npz`` (codes, coefficients, JSON metadata), atomically, without pickle."""
        path = Path(path)
        if path.suffix != ".npz":
            path = path.with_suffix(".npz")
        meta = {
            "format": _FORMAT,
            "version": _FORMAT_VERSION,
            "n_vars": self.n_vars,
            "degree_bound": self.degree_bound,
            "variables": list(self.variables),
            "n_network_parameters": self.n_network_parameters,
            "input_shape": None if self.input_shape is None else list(self.input_shape),
            "notes": _jsonable(dict(self._notes)),
        }
        with atomic_write(path) as fh:
            with zipfile.ZipFile(fh, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
                _write_npy(zf, "meta", np.array(json.dumps(meta)), compress=True)
                _write_npy(zf, "codes", np.asarray(self._codes), compress=True)
                _write_npy(zf, "coefficients", self._coefficients.cpu().numpy(), compress=True)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> SparsePolynomial:
        """Read a polynomial written by :meth:`save`."""
        path = Path(path)
        if not path.exists():
            raise PolynetError(f"no polynomial file at {path}; write one with poly.save(path).")
        try:
            with np.load(path, allow_pickle=False) as data:
                meta = json.loads(str(data["meta"]))
                codes, coef = data["codes"], data["coefficients"]
        except (OSError, ValueError, KeyError, TypeError, json.JSONDecodeError) as exc:
            raise PolynetError(
                f"{path} is not a readable sparse polynomial file ({exc}); write it with "
                "poly.save()."
            ) from exc
        if not isinstance(meta, dict) or meta.get("format") != _FORMAT:
            raise PolynetError(f"{path} is not a polynet sparse polynomial file.")
        if meta.get("version", 0) > _FORMAT_VERSION:
            raise PolynetError(
                f"{path} has format version {meta['version']}, newer than this polynet's "
                f"{_FORMAT_VERSION}; upgrade polynet to read it."
            )
        return cls(
            meta["n_vars"],
            codes,
            torch.from_numpy(np.ascontiguousarray(coef)),
            degree_bound=meta["degree_bound"],
            variables=meta["variables"],
            n_network_parameters=meta["n_network_parameters"],
            input_shape=meta["input_shape"],
            notes=meta.get("notes") or {},
        )


_KERNEL: list = []


def _numba_kernel():
    """The compiled term loop, or None without numba (compiled on first use)."""
    if not _KERNEL:
        try:
            import numba
        except ImportError:
            _KERNEL.append(None)
        else:
            _KERNEL.append(numba.njit(cache=True)(_term_loop))
    return _KERNEL[0]


def _term_loop(ext, tuples, coef, out, pad):  # pragma: no cover - run compiled
    # Compensated (Neumaier) sums: millions of terms added one by one would otherwise lose
    # about sqrt(terms) ulps (5e-14 relative at 177,734 terms), where the dense evaluator's
    # tree loses a few.
    n_points = ext.shape[1]
    mono = np.empty(n_points)
    comp = np.zeros_like(out)
    for t in range(tuples.shape[0]):
        for b in range(n_points):
            mono[b] = ext[tuples[t, 0], b]
        for j in range(1, tuples.shape[1]):
            v = tuples[t, j]
            if v == pad:
                break
            for b in range(n_points):
                mono[b] *= ext[v, b]
        for o in range(coef.shape[0]):
            c = coef[o, t]
            if c != 0.0:
                for b in range(n_points):
                    x = c * mono[b]
                    s = out[o, b]
                    total = s + x
                    if abs(s) >= abs(x):
                        comp[o, b] += (s - total) + x
                    else:
                        comp[o, b] += (x - total) + s
                    out[o, b] = total
    out += comp
