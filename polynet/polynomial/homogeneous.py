"""Homogeneous degree blocks of graded coefficients: counting, ranking, shifting, pushing forward.

The degree-d monomials of n variables form one block of the graded order (scikit-learn's), of
H(n, d) = C(n + d - 1, d) monomials starting at C(n + d - 1, d - 1); a monomial of degree d is a
sorted tuple of d variables. These functions work on coefficient arrays by block: the truncated
walk (:mod:`polynet.expansion.truncated`) and the factored value
(:mod:`polynet.polynomial.factored_polynomial`) both use them.
"""

from __future__ import annotations

import itertools
import math
from functools import lru_cache

import numpy as np
import torch
from torch import Tensor

__all__ = ["homogeneous_tuples", "push_forward", "taylor_shift", "tuple_rank"]

#: Elements of scratch per chunk of an outer product or a push-forward slab (float64: 128 MiB).
CHUNK_ELEMENTS = 1 << 24
#: The push-forward to x goes one degree block at a time through a symmetric tensor in u;
#: above degree 3 that tensor (m1^d entries) is only formed when it has at most this many.
DENSE_TENSOR_ELEMENTS = 1 << 24


def _hom(n: int, d: int) -> int:
    """Number of monomials of degree exactly d in n variables."""
    return math.comb(n + d - 1, d) if d >= 0 else 0


def _start(n: int, d: int) -> int:
    """Graded position of the first degree-d monomial: C(n + d - 1, d - 1)."""
    return math.comb(n + d - 1, d - 1) if d > 0 else 0


def tuple_rank(tuples: np.ndarray, n: int) -> np.ndarray:
    """Local position of sorted variable tuples (rows) in their degree block of n variables.

    Tuples before t with the same first k entries and a smaller (k+1)-th are counted by the
    hockey-stick identity: Σ_{v=a}^{b-1} H(n - v, r) = C(n - a + r, r + 1) - C(n - b + r, r + 1).
    """
    d = tuples.shape[1]
    rank = np.zeros(len(tuples), dtype=np.int64)
    prev = np.zeros(len(tuples), dtype=np.int64)
    for k in range(d):
        r = d - k - 1
        table = np.array([math.comb(n - v + r, r + 1) for v in range(n + 1)], dtype=np.int64)
        rank += table[prev] - table[tuples[:, k]]
        prev = tuples[:, k]
    return rank


def taylor_shift(alpha: Tensor, center: Tensor, top: int | None = None) -> Tensor:
    """β with Σ_i α_i (c + w)^i = Σ_s β_s w^s, per row: (m, k + 1) → (m, min(k, top) + 1).

    β_s = Σ_{i ≥ s} C(i, s) α_i c^{i - s}.
    """
    k = alpha.shape[1] - 1
    top = k if top is None else min(k, top)
    powers = center[:, None] ** torch.arange(k + 1, device=alpha.device, dtype=alpha.dtype)
    beta = alpha.new_zeros(alpha.shape[0], top + 1)
    for s in range(top + 1):
        for i in range(s, k + 1):
            beta[:, s] += math.comb(i, s) * alpha[:, i] * powers[:, i - s]
    return beta


def homogeneous_tuples(n: int, d: int) -> np.ndarray:
    """The degree-d monomials in n variables as sorted variable tuples, in graded order.

    Within one degree the graded order (descending exponents of x0, then x1, ...) is the
    lexicographic order of the sorted tuples: shape (H(d), d), int64.
    """
    return _tuples(n, d)


@lru_cache(maxsize=8)
def _tuples(n: int, d: int) -> np.ndarray:
    if d == 0:
        return np.zeros((1, 0), dtype=np.int64)
    if d == 1:
        return np.arange(n, dtype=np.int64)[:, None]
    prev = _tuples(n, d - 1)
    total = len(prev)
    counts = np.array([_hom(n - a, d - 1) for a in range(n)], dtype=np.int64)
    starts = total - counts  # tuples with first element >= a are a suffix of prev
    offsets = np.cumsum(counts) - counts
    idx = np.arange(int(counts.sum())) - np.repeat(offsets, counts) + np.repeat(starts, counts)
    out = np.empty((len(idx), d), dtype=np.int64)
    out[:, 0] = np.repeat(np.arange(n), counts)
    out[:, 1:] = prev[idx]
    return out


def _multiplicity(tuples: np.ndarray) -> np.ndarray:
    """Number of distinct orderings of each sorted tuple: d! / Π (run length)!."""
    d = tuples.shape[1]
    denom = np.ones(len(tuples), dtype=np.float64)
    run = np.ones(len(tuples), dtype=np.float64)
    for k in range(1, d):
        run = np.where(tuples[:, k] == tuples[:, k - 1], run + 1, 1.0)
        denom *= run
    return math.factorial(d) / denom


def _pure_powers(n: int, d: int, device) -> Tensor:
    """Local positions of x_j^d (j = 0..n-1) in the degree-d block: H(n, d) - H(n - j, d)."""
    pos = [_hom(n, d) - _hom(n - j, d) for j in range(n)]
    return torch.tensor(pos, dtype=torch.int64, device=device)


def _symmetric_tensor(coef: Tensor, m: int, d: int) -> Tensor:
    """The symmetric tensor (m,)*d whose form is Σ coef_α u^α over the degree-d block."""
    if d == 3:
        return _symmetric_tensor_3(coef, m)
    tuples = torch.from_numpy(_tuples(m, d)).to(coef.device)
    mult = torch.from_numpy(_multiplicity(_tuples(m, d))).to(coef)
    values = coef / mult
    tensor = coef.new_zeros(m**d)
    strides = [m ** (d - 1 - k) for k in range(d)]
    for perm in set(itertools.permutations(range(d))):
        flat = sum(tuples[:, k] * strides[i] for i, k in enumerate(perm))
        tensor[flat] = values
    return tensor.reshape((m,) * d)


def _symmetric_tensor_3(coef: Tensor, m: int) -> Tensor:
    # U holds coef_α / 3! at each sorted tuple (a <= b <= c), filled one leading a at a time
    # (the tuples with first entry a are the upper triangle of the (m - a)² tail, row-major);
    # the sum of U's six axis permutations puts coef_α / mult(α) at every ordering of α.
    upper = coef.new_zeros(m, m, m)
    pos = 0
    for a in range(m):
        k = m - a
        iu = torch.triu_indices(k, k, device=coef.device)
        size = iu.shape[1]
        upper[a, a + iu[0], a + iu[1]] = coef[pos : pos + size] / 6.0
        pos += size
    out = upper.clone()
    for perm in [(0, 2, 1), (1, 0, 2), (1, 2, 0), (2, 0, 1), (2, 1, 0)]:
        out.add_(upper.permute(perm))
    return out


def push_forward(coef: Tensor, weight: Tensor, d: int) -> Tensor:
    """Block d of h(W x) from block d of h(u): (rows × H(m, d)) → (rows × H(n, d)).

    ``weight`` is W, (m × n). Degrees 0 to 2 are closed forms; degree 3 goes one leading
    variable of x at a time (W[:, a:]ᵀ S_a W[:, a:], its upper triangle), so memory stays at
    the result plus one slab; higher degrees contract a dense symmetric tensor (small sizes).
    """
    m, n = weight.shape
    rows = coef.shape[0]
    if d == 0:
        return coef.clone()
    if d == 1:
        return coef @ weight
    if d == 2:
        out = coef.new_empty(rows, _hom(n, 2))
        for o in range(rows):
            y = _symmetric_tensor(coef[o], m, 2) @ weight  # (m × n)
            pos = 0
            for r0 in range(0, n, PUSH_ROWS):  # row blocks on and above the diagonal only
                r1 = min(n, r0 + PUSH_ROWS)
                gram = weight[:, r0:r1].T @ y[:, r0:]
                iu = torch.triu_indices(r1 - r0, n - r0, device=coef.device)
                values = gram[iu[0], iu[1]]
                values[iu[0] != iu[1]] *= 2.0  # x_a x_b, a < b: both orderings
                out[o, pos : pos + values.numel()] = values
                pos += values.numel()
        return out
    if d == 3:
        out = coef.new_empty(rows, _hom(n, 3))
        _push_forward_3(coef, weight, out)
        return out
    return _push_forward_dense(coef, weight, d)


#: Rows of one Gram block in the degree-3 push-forward: only blocks on or above the diagonal
#: are computed, so smaller blocks skip more of the lower triangle.
PUSH_ROWS = 128


def _push_forward_3(coef: Tensor, weight: Tensor, out: Tensor) -> None:
    m, n = weight.shape
    slab = max(1, CHUNK_ELEMENTS // max(1, m * m))
    for o in range(coef.shape[0]):
        s = _symmetric_tensor(coef[o], m, 3).reshape(m, m * m)
        pos = 0
        for a0 in range(0, n, slab):
            block = (weight[:, a0 : a0 + slab].T @ s).reshape(-1, m, m)  # S_a = Σ_j W_ja S_j
            for i in range(block.shape[0]):
                a = a0 + i
                tail = weight[:, a:]
                y = block[i] @ tail  # (m × k): the form's slice S_a applied to x_b, b >= a
                k = n - a
                for r0 in range(0, k, PUSH_ROWS):
                    r1 = min(k, r0 + PUSH_ROWS)
                    gram = tail[:, r0:r1].T @ y[:, r0:]  # rows b in r0..r1, columns c >= r0
                    iu = torch.triu_indices(r1 - r0, k - r0, device=coef.device)
                    b, c = iu[0] + r0, iu[1] + r0  # local to a: x_a x_(a+b) x_(a+c), b <= c
                    mult = torch.full((iu.shape[1],), 6.0, dtype=coef.dtype, device=coef.device)
                    first, diag = b == 0, b == c
                    mult[first ^ diag] = 3.0  # a = b < c or a < b = c
                    mult[first & diag] = 1.0  # a = b = c
                    size = iu.shape[1]
                    out[o, pos : pos + size] = gram[iu[0], iu[1]] * mult
                    pos += size


def _push_forward_dense(coef: Tensor, weight: Tensor, d: int) -> Tensor:
    m, n = weight.shape
    if max(m, n) ** d > DENSE_TENSOR_ELEMENTS:
        raise NotImplementedError("push-forward above degree 3 needs small m1 and n")
    tuples = torch.from_numpy(_tuples(n, d)).to(coef.device)
    mult = torch.from_numpy(_multiplicity(_tuples(n, d))).to(coef)
    out = coef.new_empty(coef.shape[0], len(tuples))
    for o in range(coef.shape[0]):
        t = _symmetric_tensor(coef[o], m, d)
        for _ in range(d):  # contract the leading axis with W, moving it to the back
            t = torch.tensordot(t, weight, dims=([0], [0]))
        out[o] = t[tuple(tuples[:, k] for k in range(d))] * mult
    return out
