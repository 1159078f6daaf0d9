"""Streaming evaluation of a dense polynomial at many points, never building points × terms.

Every monomial of degree k ≥ 1 in the graded index is its *parent* (the monomial with the
last non-zero variable's exponent lowered by one) times that variable, so the monomials form
a tree rooted at the constant. Two kernels walk it:

- ``numba``: nested Horner over the tree, h(m) = c_m + Σ_w x_w h(m·x_w) over the children
  m·x_w (w ≥ m's last variable), so p = h(1); one multiply-add per term and point. The tree is
  walked once, bottom-up (depth-first pre-order reversed), for a block of points at a time
  (the points are the SIMD lanes), holding one partial sum per depth: the working memory is
  (degree + 2) × outputs × block, nothing of size points × terms. The blocks are spread over
  threads (``prange``); fastmath stays off (no reassociation).
- ``torch``: degree by degree for a block of points: the monomials of degree k are one gather
  of those of degree k - 1 times one gather of the inputs, and each degree is multiplied into
  the outputs (``addmm``) before the next, so only two degrees of one block are held. The
  block is sized to a memory budget. This is also the CUDA path: it runs on the device of the
  polynomial's coefficients.

Exact polynomials (``poly.exact``) are evaluated in float64 from their correctly rounded float
coefficients (``poly.coefficients``); for exact values use ``poly.to_sympy()``.
"""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
from numpy.typing import ArrayLike
from torch import Tensor

from polynet.poly.index import MonomialIndex
from polynet.validation import check_int

if TYPE_CHECKING:
    from polynet.poly.polynomial import NetworkPolynomial

__all__ = ["evaluate", "Evaluator", "numba_available"]

Backend = Literal["auto", "numba", "torch"]
_BACKENDS = ("auto", "numba", "torch")
#: Points per block of the numba kernel: the SIMD lanes of one walk over the tree (128 was
#: fastest of 8-256 on the Boston polynomial: the walk's per-term overhead is shared by more).
_NUMBA_BLOCK = 128
#: Bytes the torch kernel may use for one block's two degree slices of monomial values.
_TORCH_BUDGET_BYTES = 256 << 20


# -- the plans, computed once per index -------------------------------------------------------
@lru_cache(maxsize=16)
def _depth_first_plan(n_vars: int, degree: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The non-constant monomials in depth-first (pre-)order of the parent tree.

    Returns (order, depth, var): ``order[k]`` is the graded position of the k-th monomial of
    the walk, ``depth[k]`` its degree, ``var[k]`` the variable it multiplies its parent by. A
    monomial's children multiply it by a variable ≥ its own last one, so pre-order is the
    lexicographic order of the sorted variable sequences (v1 ≤ v2 ≤ ...), a prefix first.
    """
    index = MonomialIndex(n_vars, degree)
    exps = index.exponents[1:]
    deg = index.degrees[1:]
    size = len(exps)
    # seq[t, k] = the k-th variable of monomial t, -1 past its degree (a prefix sorts first).
    ends = np.cumsum(exps, axis=1)
    seq = np.full((size, max(degree, 1)), -1, dtype=np.int64)
    for k in range(degree):
        # The k-th factor is the first variable whose running exponent sum exceeds k.
        seq[:, k] = np.where(k < deg, (ends <= k).sum(1), -1)
    order = np.lexsort(seq.T[::-1]) if size else np.zeros(0, dtype=np.int64)
    _, var = index.parents()
    order_g = order + 1  # positions in the graded index (the constant is position 0)
    plan = (
        order_g.astype(np.int64),
        deg[order].astype(np.int32),
        var[order_g].astype(np.int32),
    )
    for a in plan:
        a.setflags(write=False)
    return plan


@lru_cache(maxsize=16)
def _graded_plan(n_vars: int, degree: int) -> tuple[np.ndarray, np.ndarray]:
    """Per monomial: its parent's position within the previous degree's slice, and its var."""
    index = MonomialIndex(n_vars, degree)
    parent, var = index.parents()
    local = parent.copy()
    for d in range(1, degree + 1):
        block = slice(index.n_monomials(d - 1), index.n_monomials(d))
        local[block] -= index.n_monomials(d - 2) if d >= 2 else 0
    for a in (local, var):
        a.setflags(write=False)
    return local, var


# -- numba ------------------------------------------------------------------------------------
_numba_kernel: Any = None
# The loop `_walk` spreads over threads: `range` until numba is loaded, then `numba.prange`
# (numba reads globals when it compiles, so the kernel sees the parallel one).
_prange: Any = range


def numba_available() -> bool:
    """Whether numba can be imported (the ``numba`` backend needs it)."""
    try:
        import numba  # noqa: F401
    except ImportError:
        return False
    return True


def _get_numba_kernel() -> Any:
    # Compiled on first use so that `import polynet` never imports numba.
    global _numba_kernel, _prange
    if _numba_kernel is None:
        import numba

        _prange = numba.prange
        _numba_kernel = numba.njit(parallel=True, fastmath=False, cache=True)(_walk)
    return _numba_kernel


def _walk(x, coef, depth, var, c0, max_depth, block, out):  # pragma: no cover - numba
    # x (B, n); coef (T - 1, O) in walk order; depth, var (T - 1,); c0 (O,); out (B, O).
    # Nested Horner over the tree, h(m) = c_m + sum_w x_w h(m x_w), bottom-up: the walk's
    # pre-order reversed visits every monomial after all of its descendants.
    n_points, n_vars = x.shape
    n_walk = depth.shape[0]
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
        acc = np.zeros((max_depth + 2, n_out, block))
        for k in range(n_walk - 1, -1, -1):
            d = depth[k]
            v = var[k]
            if d == max_depth:  # a leaf: h = c
                for o in range(n_out):
                    c = coef[k, o]
                    for j in range(block):
                        acc[d, o, j] += xt[v, j] * c
            else:
                for o in range(n_out):
                    c = coef[k, o]
                    for j in range(block):
                        h = c + acc[d + 1, o, j]
                        acc[d + 1, o, j] = 0.0
                        acc[d, o, j] += xt[v, j] * h
        for j in range(stop - start):
            for o in range(n_out):
                out[start + j, o] = c0[o] + acc[1, o, j]


# -- the evaluator ----------------------------------------------------------------------------
class Evaluator:
    """A polynomial prepared for repeated evaluation: its walk plan and reordered coefficients.

    Parameters
    ----------
    poly_or_coeffs : NetworkPolynomial, or Tensor / array of shape (n_outputs, size) or (size,)
        The polynomial, or dense float coefficients over ``index`` in graded order (a 1-D
        vector is one output, and evaluation then returns shape (B,)).
    index : MonomialIndex, optional
        The monomials of bare coefficients; required with them, ignored with a polynomial.
    backend : {"auto", "numba", "torch"}, default "auto"
        ``auto`` is numba on the CPU when numba imports, torch otherwise (and always on CUDA).
    block : int, optional
        Points per block: numba's SIMD width per walk (default 128, fewer when the batch is
        small, so that every thread gets a block), torch's block (default:
        as many as a 256 MiB budget for two degree slices of monomial values allows).

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
        if backend == "auto":
            backend = "numba" if on_cpu and numba_available() else "torch"
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
        if backend == "numba":
            order, self._depth, self._var = _depth_first_plan(self.index.n_vars, self.index.degree)
            c = coef.numpy()
            self._c0 = np.ascontiguousarray(c[:, 0])
            self._walk_coef = np.ascontiguousarray(c[:, order].T)
        else:
            local, var = _graded_plan(self.index.n_vars, self.index.degree)
            self._coef = coef
            self._parent = torch.from_numpy(local.astype(np.int64)).to(coef.device)
            self._var_t = torch.from_numpy(np.maximum(var, 0).astype(np.int64)).to(coef.device)

    def __repr__(self) -> str:
        return (
            f"Evaluator({self.index}, n_outputs={self.n_outputs}, backend={self.backend!r}, "
            f"device={self.device})"
        )

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
        kernel(
            x,
            self._walk_coef,
            self._depth,
            self._var,
            self._c0,
            self.index.degree,
            block,
            out,
        )
        return torch.from_numpy(out)

    def _torch(self, pts: Tensor) -> Tensor:
        index = self.index
        widest = max(
            index.n_monomials(d) - (index.n_monomials(d - 1) if d else 0)
            for d in range(index.degree + 1)
        )
        block = self.block or max(1, _TORCH_BUDGET_BYTES // (8 * 3 * widest))
        parts = [self._torch_block(pts[s : s + block]) for s in range(0, pts.shape[0], block)]
        return torch.cat(parts)

    def _torch_block(self, x: Tensor) -> Tensor:
        # Layout (terms, points): a gather takes whole contiguous rows.
        index = self.index
        xt = x.T.contiguous()
        coef = self._coef
        out = coef[:, :1] * torch.ones(1, x.shape[0], dtype=torch.float64, device=x.device)
        level = torch.ones(1, x.shape[0], dtype=torch.float64, device=x.device)
        for d in range(1, index.degree + 1):
            block = slice(index.n_monomials(d - 1), index.n_monomials(d))
            level = level.index_select(0, self._parent[block])
            level.mul_(xt.index_select(0, self._var_t[block]))
            out.addmm_(coef[:, block], level)
        return out.T


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
    from polynet.poly.polynomial import NetworkPolynomial

    if isinstance(poly_or_coeffs, NetworkPolynomial):
        return poly_or_coeffs.coefficients.to(torch.float64), poly_or_coeffs.index, False
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
