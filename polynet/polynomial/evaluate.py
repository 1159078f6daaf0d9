"""Streaming evaluation of a dense polynomial at many points, never building points × terms.

Every monomial of degree k ≥ 1 in the graded index is its *parent* (the monomial with the
last non-zero variable's exponent lowered by one) times that variable, so the monomials form
a tree rooted at the constant. Neither kernel builds the exponent table (at n = 30, D = 8 it
would take 11.7 GB for a 391 MB polynomial): positions follow from counts.

- ``numba``: nested Horner over the tree, h(m) = c_m + Σ_w x_w h(m·x_w) over the children
  m·x_w (w ≥ m's last variable), so p = h(1); one multiply-add per term and point. The tree is
  walked depth first, bottom-up, for a block of points at a time (the points are the SIMD
  lanes), holding one partial sum per depth: the working memory is (degree + 2) × outputs ×
  block, and the coefficients are read in place. The walk meets the monomials of each degree
  in graded order, so it needs no plan. The blocks are spread over threads (``prange``);
  fastmath stays off (no reassociation).
- ``torch``: matrix products (:mod:`polynet.polynomial.split_eval`): each monomial is a degree-k
  prefix times a suffix, and the coefficients of each group of prefixes form one dense
  matrix multiplied by the suffix values of a block of points, so the work is BLAS (or cuBLAS:
  this is also the CUDA path) and the points need only their monomial values of degree
  ≤ ceil(D / 2). It needs no compilation, which makes it the first choice of ``auto``.

Exact polynomials (``poly.exact``) are evaluated in float64 from their correctly rounded float
coefficients (``poly.coefficients``); for exact values use ``poly.to_sympy()``.
"""

from __future__ import annotations

import importlib.util
import os
import weakref
from collections import OrderedDict
from math import comb
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
from numpy.typing import ArrayLike
from torch import Tensor

from polynet.polynomial.index import MonomialIndex
from polynet.polynomial.split_eval import (
    split_coefficients,
    split_evaluate,
    split_plan,
)
from polynet.threads import thread_policy
from polynet.validation import check_int

if TYPE_CHECKING:
    from polynet.polynomial.network_polynomial import NetworkPolynomial

__all__ = ["evaluate", "Evaluator", "numba_available"]

Backend = Literal["auto", "numba", "torch"]
_BACKENDS = ("auto", "numba", "torch")
#: Points per block of the numba kernel: the SIMD lanes of one walk over the tree (128 was
#: fastest of 8-256 on the Boston polynomial: the walk's per-term overhead is shared by more).
_NUMBA_BLOCK = 128
#: Bytes the torch kernel may use for one block of points (monomial values and products).
_TORCH_BUDGET_BYTES = 64 << 20
#: The torch kernel keeps its regrouped coefficients when they take at most this many bytes
#: (else it regroups them for every call, one group at a time); past it, ``auto`` prefers
#: numba, which reads the coefficients in place.
_TORCH_CACHE_BYTES = 256 << 20


# -- numba ------------------------------------------------------------------------------------
_numba_kernel: Any = None
# The loop `_walk` spreads over threads: `range` until numba is loaded, then `numba.prange`
# (numba reads globals when it compiles, so the kernel sees the parallel one).
_prange: Any = range


def numba_available() -> bool:
    """Whether numba is installed (the ``numba`` backend needs it); numba is not imported."""
    return importlib.util.find_spec("numba") is not None


def _get_numba_kernel() -> Any:
    # Compiled on first use so that `import polynet` never imports numba.
    global _numba_kernel, _prange
    if _numba_kernel is None:
        import numba

        _prange = numba.prange
        _numba_kernel = numba.njit(parallel=True, fastmath=False, cache=True)(_walk)
    return _numba_kernel


def _walk(x, coef, c0, n_vars, degree, block, out):  # pragma: no cover - numba
    # x (B, n); coef (O, T) in graded order; c0 (O,); out (B, O). Nested Horner over the
    # tree, h(m) = c_m + sum_w x_w h(m x_w), bottom-up: the walk's pre-order reversed visits
    # every monomial after all of its descendants. The pre-order is the lexicographic order
    # of the sorted variable sequences (a prefix first), and so is the graded order within
    # one degree: the walk meets the monomials of each degree at decreasing graded positions
    # (pos[d]), and steps from one sequence to the next (seq) without any table.
    n_points = x.shape[0]
    n_out = c0.shape[0]
    n_blocks = (n_points + block - 1) // block
    for b in _prange(n_blocks):
        start = b * block
        stop = min(n_points, start + block)
        xt = np.zeros((n_vars, block))
        for j in range(stop - start):
            for v in range(n_vars):
                xt[v, j] = x[start + j, v]
        # acc[d] = sum over the finished children at depth d of the open node at depth d - 1
        # of x_w h(child); a node's own children are finished right before it.
        acc = np.zeros((degree + 2, n_out, block))
        seq = np.full(degree + 1, n_vars - 1, dtype=np.int64)  # seq[1..d]: the monomial
        seq[0] = 0
        pos = np.zeros(degree + 1, dtype=np.int64)
        size = 1
        for d in range(1, degree + 1):
            size = size * (n_vars + d) // d  # C(n + d, d): the last of degree d is size - 1
            pos[d] = size - 1
        d = degree
        while d > 0:
            v = seq[d]
            p = pos[d]
            pos[d] = p - 1
            if d == degree:  # a leaf: h = c
                for o in range(n_out):
                    c = coef[o, p]
                    for j in range(block):
                        acc[d, o, j] += xt[v, j] * c
            else:
                for o in range(n_out):
                    c = coef[o, p]
                    for j in range(block):
                        h = c + acc[d + 1, o, j]
                        acc[d + 1, o, j] = 0.0
                        acc[d, o, j] += xt[v, j] * h
            if v > seq[d - 1]:  # the previous sibling's subtree, from its last leaf
                seq[d] = v - 1
                for e in range(d + 1, degree + 1):
                    seq[e] = n_vars - 1
                d = degree
            else:  # the first child done: its parent is next
                d -= 1
        for j in range(stop - start):
            for o in range(n_out):
                out[start + j, o] = c0[o] + acc[1, o, j]


# -- the evaluator ----------------------------------------------------------------------------
class Evaluator:
    """A polynomial prepared for repeated evaluation (torch: its coefficients regrouped).

    Parameters
    ----------
    poly_or_coeffs : NetworkPolynomial, or Tensor / array of shape (n_outputs, size) or (size,)
        The polynomial, or dense float coefficients over ``index`` in graded order (a 1-D
        vector is one output, and evaluation then returns shape (B,)).
    index : MonomialIndex, optional
        The monomials of bare coefficients; required with them, ignored with a polynomial.
    backend : {"auto", "numba", "torch"}, default "auto"
        ``auto`` is torch (matrix products, no compilation), except on the CPU for
        polynomials whose regrouped coefficients would take more than 256 MiB, where it is
        numba when numba is installed (it reads the coefficients in place).
    block : int, optional
        Points per block: numba's SIMD width per walk (default 128, fewer when the batch is
        small, so that every thread gets a block), torch's block (default: as many as a
        64 MiB budget for monomial values and products allows).

    Examples
    --------
    >>> idx = MonomialIndex(2, 2)
    >>> ev = Evaluator(torch.tensor([1.0, 0, 2, 0, 3, 0]), index=idx, backend="torch")
    >>> ev(torch.tensor([[1.0, 2.0]])).tolist()
    [11.0]
    """

    def __init__(
        self,
        poly_or_coeffs: NetworkPolynomial | Tensor | np.ndarray,
        *,
        index: MonomialIndex | None = None,
        backend: Backend = "auto",
        block: int | None = None,
    ) -> None:
        coef, self.index, self._vector = _coefficients(poly_or_coeffs, index)
        if backend not in _BACKENDS:
            raise ValueError(f"backend must be one of {_BACKENDS}, got {backend!r}.")
        if block is not None:
            block = check_int(block, "block", 1)
        on_cpu = coef.device.type == "cpu"
        plan = split_plan(self.index.n_vars, self.index.degree)
        cached = coef.shape[0] * plan.n_padded * 8 <= _TORCH_CACHE_BYTES
        if backend == "auto":
            # The matrix products need no compilation and match numba's speed; numba reads
            # the coefficients in place, which wins when regrouping them would take memory.
            backend = "numba" if on_cpu and not cached and numba_available() else "torch"
        if backend == "numba":
            if not on_cpu:
                raise ValueError(
                    f"the numba backend runs on the CPU, but the coefficients are on "
                    f"{coef.device}; use backend='torch' (or poly.to('cpu'))."
                )
            if not numba_available():
                raise ImportError(
                    "backend='numba' needs numba (pip install numba); backend='torch' needs "
                    "nothing more."
                )
        self.backend: str = backend
        self.block = block
        self.device = coef.device
        self.n_vars = self.index.n_vars
        self.n_outputs = coef.shape[0]
        self._coef = coef
        if backend == "numba":
            self._numpy_coef = np.ascontiguousarray(coef.numpy())
        else:
            self._plan = plan
            self._mats = split_coefficients(plan, coef) if cached else None
            self._parent = torch.from_numpy(plan.parent.copy()).to(coef.device)
            self._var_t = torch.from_numpy(np.maximum(plan.var, 0)).to(coef.device)

    def __repr__(self) -> str:
        return (
            f"Evaluator({self.index}, n_outputs={self.n_outputs}, backend={self.backend!r}, "
            f"device={self.device})"
        )

    # The policy picks one thread per free core: with a core busy elsewhere, two threads
    # meeting at every GEMM's barrier made the Boston evaluation 25x slower (1.0 s, not 0.04 s).
    @thread_policy
    def __call__(self, x: ArrayLike | Tensor) -> Tensor:
        """Values at points x of shape (B, n_vars) (or (B,) when n_vars == 1): (B, n_outputs).

        float64, on the coefficients' device; shape (B,) for a 1-D coefficient vector.
        """
        pts = _points(x, self.n_vars, self.device)
        if pts.shape[0] == 0:
            out = pts.new_zeros(0, self.n_outputs)
        elif self.backend == "numba":
            out = self._numba(pts)
        else:
            out = self._torch(pts)
        return out[:, 0] if self._vector else out

    def memory_bytes(self, n_points: int) -> int:
        """Bytes an evaluation at ``n_points`` points allocates beyond the coefficients."""
        return evaluation_bytes(
            self.index, self.n_outputs, n_points, self.backend, cached=self._cached()
        )

    def _cached(self) -> bool:
        return self.backend == "torch" and self._mats is not None

    def _numba(self, pts: Tensor) -> Tensor:
        kernel = _get_numba_kernel()
        x = np.ascontiguousarray(pts.numpy())
        out = np.empty((x.shape[0], self.n_outputs))
        block = self.block
        if block is None:
            # Enough blocks to keep every thread busy; never lanes of padding only.
            import numba

            share = -(-x.shape[0] // numba.get_num_threads())
            block = max(1, min(_NUMBA_BLOCK, share))
        coef = self._numpy_coef
        kernel(
            x, coef, np.ascontiguousarray(coef[:, 0]), self.n_vars, self.index.degree, block, out
        )
        return torch.from_numpy(out)

    def _torch(self, pts: Tensor) -> Tensor:
        block = self.block or _torch_block(self._plan, self.n_outputs)
        xt = pts.T
        parts = [
            split_evaluate(
                self._plan,
                self._coef,
                self._mats,
                xt[:, s : s + block].contiguous(),
                self._parent,
                self._var_t,
            )
            for s in range(0, pts.shape[0], block)
        ]
        return torch.cat(parts, 1).T


def _torch_block(plan, n_outputs: int) -> int:
    """Points per block of the torch kernel within its budget."""
    per_point = 8 * (plan.n_features + 3 * n_outputs * max(plan.widest, 1) + n_outputs)
    return max(1, _TORCH_BUDGET_BYTES // per_point)


def evaluation_bytes(
    index: MonomialIndex,
    n_outputs: int,
    n_points: int,
    backend: str = "auto",
    *,
    cached: bool | None = None,
) -> int:
    """Estimated bytes an evaluation allocates beyond the coefficients and the points.

    From counts only: the points in float64 and the values, plus the kernel's working set
    (numba: one partial sum per depth and thread; torch: one block of monomial values and
    products, and the regrouped coefficients when it keeps them).
    """
    plan = split_plan(index.n_vars, index.degree)
    regrouped = n_outputs * plan.n_padded * 8
    if cached is None:
        cached = regrouped <= _TORCH_CACHE_BYTES
    if backend == "auto":
        backend = "torch" if cached or not numba_available() else "numba"
    io = 8 * n_points * (index.n_vars + 2 * n_outputs)
    if backend == "numba":
        threads = os.cpu_count() or 1
        return io + threads * 8 * _NUMBA_BLOCK * ((index.degree + 2) * n_outputs + index.n_vars)
    block = min(n_points, _torch_block(plan, n_outputs))
    per_point = 8 * (plan.n_features + 3 * n_outputs * max(plan.widest, 1) + n_outputs)
    # A group regrouped on the fly: positions, mask and values of its largest product.
    largest = max((len(g.prefixes) * sum(n for _, n in g.runs) for g in plan.groups), default=0)
    extra = regrouped if cached else 25 * n_outputs * largest
    tree = 16 * comb(index.n_vars + plan.k, plan.k)
    return io + block * per_point + extra + tree


def evaluate(
    poly_or_coeffs: NetworkPolynomial | Tensor | np.ndarray,
    x: ArrayLike | Tensor,
    *,
    index: MonomialIndex | None = None,
    backend: Backend = "auto",
    block: int | None = None,
) -> Tensor:
    """Evaluate a dense polynomial at points x without building the points × terms matrix.

    Parameters
    ----------
    poly_or_coeffs : NetworkPolynomial, or Tensor / array of shape (n_outputs, size) or (size,)
        The polynomial, or dense float coefficients over ``index`` (graded order).
    x : array-like of shape (B, n_vars), or (B,) when n_vars == 1
        The points.
    index : MonomialIndex, optional
        Required with bare coefficients: the monomials their columns stand for.
    backend : {"auto", "numba", "torch"}, default "auto"
        See :class:`Evaluator`. Exact polynomials use their float64 coefficients.
    block : int, optional
        Points per block (see :class:`Evaluator`).

    Returns
    -------
    Tensor of shape (B, n_outputs), float64, on the coefficients' device ((B,) for 1-D
    coefficients).

    Examples
    --------
    >>> from polynet import NetworkPolynomial
    >>> p = NetworkPolynomial(MonomialIndex(2, 2), torch.tensor([[1.0, 0, 2, 0, 3, 0]]))
    >>> evaluate(p, [[1.0, 2.0]], backend="torch").tolist()
    [[11.0]]
    """
    return Evaluator(poly_or_coeffs, index=index, backend=backend, block=block)(x)


# -- input checks -----------------------------------------------------------------------------
def _coefficients(
    poly_or_coeffs: Any, index: MonomialIndex | None
) -> tuple[Tensor, MonomialIndex, bool]:
    # A value (NetworkPolynomial, or anything with an index and float coefficients): the
    # value class is not imported here, the value binds these functions.
    value_index = getattr(poly_or_coeffs, "index", None)
    if isinstance(value_index, MonomialIndex) and torch.is_tensor(
        getattr(poly_or_coeffs, "coefficients", None)
    ):
        return poly_or_coeffs.coefficients.to(torch.float64), value_index, False
    if index is None or not isinstance(index, MonomialIndex):
        raise TypeError(
            "evaluate() needs a NetworkPolynomial, or coefficients with index=MonomialIndex(n, "
            f"D) saying which monomials they stand for; got {type(poly_or_coeffs).__name__} "
            f"and index={index!r}."
        )
    try:
        coef = torch.as_tensor(poly_or_coeffs, dtype=torch.float64)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise TypeError(f"coefficients must be a float tensor or array ({exc}).") from None
    vector = coef.dim() == 1
    if vector:
        coef = coef[None, :]
    if coef.dim() != 2 or coef.shape[1] != index.size:
        raise ValueError(
            f"coefficients over {index} must have shape (n_outputs, {index.size}) or "
            f"({index.size},), got {tuple(coef.shape)}."
        )
    return coef, index, vector


def _points(x: ArrayLike | Tensor, n_vars: int, device: torch.device) -> Tensor:
    try:
        t = torch.as_tensor(x, dtype=torch.float64, device=device)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise TypeError(f"points must be a float tensor or array ({exc}).") from None
    if t.dim() == 1 and n_vars == 1:
        t = t[:, None]
    if t.dim() != 2 or t.shape[1] != n_vars:
        extra = " or (B,)" if n_vars == 1 else ""
        raise ValueError(f"points must have shape (B, {n_vars}){extra}, got {tuple(t.shape)}.")
    return t


# -- the budget check -------------------------------------------------------------------------
def evaluate_checked(
    poly: NetworkPolynomial,
    x: ArrayLike | Tensor,
    *,
    max_memory: int | float | str | None = None,
    backend: Backend = "auto",
) -> Tensor:
    """:func:`evaluate` after checking its memory against the budget (what ``poly(x)`` does).

    Raises
    ------
    ExpansionTooLargeError
        The evaluation would need more than ``max_memory`` (default: half the available
        memory of the polynomial's device); nothing was allocated.
    """
    check_evaluation_budget(poly, _n_points(x), max_memory)
    if backend != "auto":
        return evaluate(poly, x, backend=backend)
    return _cached_evaluator(poly)(x)


#: Evaluators kept for the last few polynomials called (a polynomial is a value: its repeated
#: calls need not regroup its coefficients again), when their regrouped copy is this small.
_KEEP = 4
_KEEP_BYTES = 64 << 20
_kept: OrderedDict[int, tuple[Any, int, Tensor, Evaluator]] = OrderedDict()


def _cached_evaluator(poly: NetworkPolynomial) -> Evaluator:
    key, coef = id(poly), poly.coefficients
    hit = _kept.get(key)
    # The same live polynomial, the same coefficient tensor, not written to since.
    if hit is not None and hit[0]() is poly and hit[2] is coef and hit[1] == coef._version:
        _kept.move_to_end(key)
        return hit[3]
    ev = Evaluator(poly)
    if ev._cached() and ev.n_outputs * ev._plan.n_padded * 8 <= _KEEP_BYTES:
        _kept[key] = (
            weakref.ref(poly, lambda _, key=key: _kept.pop(key, None)),
            coef._version,
            coef,
            ev,
        )
        while len(_kept) > _KEEP:
            _kept.popitem(last=False)
    return ev


def check_evaluation_budget(
    poly: NetworkPolynomial, n_points: int, max_memory: int | float | str | None = None
) -> None:
    """Refuse, with the numbers, an evaluation at ``n_points`` points over the budget."""
    from polynet.errors import ExpansionTooLargeError
    from polynet.memory import budget as _budget
    from polynet.memory import fmt_bytes

    index, n_out = poly.index, poly.n_outputs
    need = evaluation_bytes(index, n_out, n_points)
    budget = _budget(max_memory, poly.device)
    if need <= budget:
        return
    fits = _most_points(index, n_out, budget, n_points)
    batches = (
        f"evaluate it in batches of at most {fits:,} points"
        if fits
        else "no batch of points fits: free memory"
    )
    raise ExpansionTooLargeError(
        f"evaluating this polynomial ({index.size:,} monomials of degree <= {index.degree} in "
        f"{index.n_vars} variables, {n_out} output(s), "
        f"{fmt_bytes(8 * n_out * index.size)} of coefficients) at {n_points:,} points needs "
        f"about {fmt_bytes(need)} more, over the budget of {fmt_bytes(budget)}; {batches}, or "
        "raise max_memory=."
    )


def _most_points(index: MonomialIndex, n_out: int, budget: int, n_points: int) -> int:
    lo, hi = 0, n_points  # the most points that fit (the estimate grows with the points)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if evaluation_bytes(index, n_out, mid) <= budget:
            lo = mid
        else:
            hi = mid - 1
    return lo


def _n_points(x: ArrayLike | Tensor) -> int:
    shape = x.shape if hasattr(x, "shape") else np.shape(x)
    return int(shape[0]) if len(shape) else 1
