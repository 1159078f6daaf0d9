"""Evaluation as matrix products: each monomial split into a degree-k prefix and a suffix.

Write a monomial of degree ≥ k as its sorted variable sequence v1 ≤ v2 ≤ ... and split it
after k factors: m = u·w, with u of degree exactly k and w a monomial of degree ≤ D - k in the
variables ≥ last(u). Grouping the prefixes u by their last variable v,

    p(x) = Σ_{deg m < k} c_m x^m + Σ_v Σ_{u: last(u) = v} u(x) Σ_{w in W_v} c_{u·w} w(x),

and the inner sums for one group are one dense matrix product, (|U_v| × |W_v|) coefficients
times (|W_v| × points) suffix values: every entry is a real term, so the products do one
multiply-add per term and point, in BLAS. The points only need the monomial values of degree
≤ k (k = ceil(D / 2)): nothing of size points × terms, and no exponent table.

The graded order makes every index a range or a sum of counts: within one degree the order is
the lexicographic order of the sorted variable sequences, so the monomials u·w of a fixed u
and degree are a run starting at the count of those of the prefixes before u, in the graded
order of w among the monomials in the variables ≥ last(u); and those w are the last ones of
their degree in the index. Neighbouring groups share one suffix range (zero-padded) so that
each product stays large.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from math import comb

import numpy as np
import torch
from torch import Tensor

from polynet.polynomial.index import _parents

__all__ = ["SplitPlan", "split_plan", "split_coefficients", "split_evaluate"]

#: A group of prefixes is widened while its zero padding stays under this share of its work,
_PAD = 1.25
#: or while its product is this small (many tiny products cost more in calls than padding);
_SMALL = 1 << 15
#: a group's product has at most this many coefficients (more prefixes make more groups), which
#: bounds the memory of regrouping one group at a time.
_LARGEST = 1 << 20


def _n_deg(m: int, e: int) -> int:
    """Number of monomials of degree exactly e in m variables."""
    return comb(m + e - 1, e) if m > 0 or e == 0 else 0


@dataclass(frozen=True)
class _Group:
    first: int  # the smallest last variable of its prefixes: its suffixes are in vars >= first
    prefixes: np.ndarray  # graded positions of its prefixes u (degree k)
    runs: tuple[
        tuple[int, int], ...
    ]  # per suffix degree e: (start, length) of W_first in the index
    bases: tuple[np.ndarray, ...]  # per e: coefficient position of (u, suffix rank 0) - shift
    shifts: tuple[np.ndarray, ...]  # per e: suffix ranks below this are padding for u


@dataclass(frozen=True)
class SplitPlan:
    """Where each prefix × suffix product reads its coefficients: one per (n_vars, degree)."""

    n_vars: int
    degree: int
    k: int
    parent: np.ndarray  # the monomial tree up to degree k: parent position and variable
    var: np.ndarray
    groups: tuple[_Group, ...]

    @property
    def n_features(self) -> int:
        """Monomial values per point: all of degree ≤ k."""
        return comb(self.n_vars + self.k, self.k)

    @property
    def n_padded(self) -> int:
        """Coefficient entries of the products, padding included."""
        return sum(len(g.prefixes) * sum(n for _, n in g.runs) for g in self.groups)

    @property
    def widest(self) -> int:
        """Most prefixes in one group (rows of one product)."""
        return max((len(g.prefixes) for g in self.groups), default=0)


@lru_cache(maxsize=16)
def split_plan(n_vars: int, degree: int) -> SplitPlan:
    """The plan of the split evaluation over ``MonomialIndex(n_vars, degree)``."""
    n, top = n_vars, degree
    k = 1 if top <= 2 else (top + 1) // 2
    k = min(k, top)
    parent, var = _parents(n, k)
    if top == 0:
        return SplitPlan(n, top, 0, parent, var, ())
    lo = comb(n + k - 1, k - 1)
    last = var[lo:]  # the last variable of each prefix (degree k), in graded order
    e_max = top - k
    # starts[e][u]: position of the first u·w of degree k + e (w in vars >= last(u)).
    # cnt[e][v]: monomials of degree e in the variables >= v.
    cnt = [np.array([_n_deg(n - v, e) for v in range(n)], dtype=np.int64) for e in range(e_max + 1)]
    starts = []
    for e in range(e_max + 1):
        counts = cnt[e][last]
        starts.append(comb(n + k + e - 1, k + e - 1) + np.cumsum(counts) - counts)
    per_var = np.bincount(last, minlength=n)
    width = [int(sum(c[v] for c in cnt)) for v in range(n)]
    groups = []
    a = 0
    while a < n:
        b, real = a + 1, per_var[a] * width[a]
        while b < n:
            rows = per_var[a : b + 1].sum()
            padded = rows * width[a]
            if padded > _PAD * (real + per_var[b] * width[b]) and padded > _SMALL:
                break
            real += per_var[b] * width[b]
            b += 1
        chosen = np.flatnonzero((last >= a) & (last < b))
        rows = max(1, _LARGEST // width[a])
        for lo_row in range(0, len(chosen), rows):
            groups.append(_group(n, a, chosen[lo_row : lo_row + rows], last, starts, cnt, lo))
        a = b
    return SplitPlan(n, top, k, parent, var, tuple(groups))


def _group(n, a, members, last, starts, cnt, lo) -> _Group:
    # Prefixes ``members`` (positions in the degree-k block) sharing the suffixes in vars >= a.
    v = last[members]
    runs, bases, shifts = [], [], []
    for e, c in enumerate(cnt):
        length = int(c[a])
        runs.append((comb(n + e - 1, e - 1) + _n_deg(n, e) - length if e else 0, length))
        shift = length - c[v]
        bases.append(starts[e][members] - shift)
        shifts.append(shift)
    return _Group(a, members + lo, tuple(runs), tuple(bases), tuple(shifts))


def split_coefficients(plan: SplitPlan, coef: Tensor) -> list[list[Tensor]]:
    """Per group and suffix degree: the coefficients as a (n_outputs · |U|, |W|) matrix."""
    out = []
    for g in plan.groups:
        mats = []
        for (_, length), base, shift in zip(g.runs, g.bases, g.shifts):
            rank = np.arange(length)
            pos = base[:, None] + rank[None, :]
            pad = rank[None, :] < shift[:, None]
            pos[pad] = 0
            idx = torch.from_numpy(pos.reshape(-1)).to(coef.device)
            m = coef.index_select(1, idx).reshape(coef.shape[0], *pos.shape)
            if pad.any():
                m[:, torch.from_numpy(pad).to(coef.device)] = 0.0
            mats.append(m.reshape(-1, length))
        out.append(mats)
    return out


def split_features(plan: SplitPlan, xt: Tensor, parent: Tensor, var: Tensor) -> Tensor:
    """Values of every monomial of degree ≤ k at points xt of shape (n_vars, B): (T_k, B)."""
    feats = xt.new_empty(plan.n_features, xt.shape[1])
    feats[0] = 1.0
    n = plan.n_vars
    for d in range(1, plan.k + 1):
        lo, hi = comb(n + d - 1, d - 1), comb(n + d, d)
        torch.mul(
            feats.index_select(0, parent[lo:hi]), xt.index_select(0, var[lo:hi]), out=feats[lo:hi]
        )
    return feats


def split_evaluate(
    plan: SplitPlan,
    coef: Tensor,
    mats: list[list[Tensor]] | None,
    xt: Tensor,
    parent: Tensor,
    var: Tensor,
) -> Tensor:
    """Values (n_outputs, B) at points xt of shape (n_vars, B); ``mats`` from
    :func:`split_coefficients` (gathered here group by group when None)."""
    n_out = coef.shape[0]
    feats = split_features(plan, xt, parent, var)
    k = plan.k
    low = comb(plan.n_vars + k - 1, k - 1) if k else 1
    out = coef[:, :low] @ feats[:low]
    for i, g in enumerate(plan.groups):
        own = mats[i] if mats is not None else split_coefficients(_one(plan, i), coef)[0]
        rows = len(g.prefixes)
        acc = None
        for (start, length), m in zip(g.runs, own):
            part = m @ feats[start : start + length]
            acc = part if acc is None else acc.add_(part)
        prefixes = feats.index_select(0, torch.from_numpy(g.prefixes).to(feats.device))
        out += (acc.view(n_out, rows, -1) * prefixes).sum(1)
    return out


def _one(plan: SplitPlan, i: int) -> SplitPlan:
    return SplitPlan(plan.n_vars, plan.degree, plan.k, plan.parent, plan.var, (plan.groups[i],))
