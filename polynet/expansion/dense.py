"""The dense layer walk: a lowered network expanded over a graded monomial index.

Each layer's units are a matrix of coefficients (units × monomials of degree ≤ d, a prefix of
the final index). Affine stages are matrix products; a polynomial stage forms each unit's
powers by batched products, which are gathers and scatter-adds over cached product maps
(:meth:`MonomialIndex.product_map`), chunked to bound memory. The last polynomial stage is
fused with the affine map after it: Σ_j v_j α_j z_j^i = (Z^a)ᵀ diag(v α) Z^b folded into
monomials, one GEMM per output and power instead of a product per unit.

The walk is written once against a small arithmetic backend (:class:`FloatOps`: float64
torch; :mod:`polynet.expansion.modular`: exact residues modulo a prime), so the exact path does
the same work as the float path, prime by prime.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor

from polynet.expansion.fold import BLOCK_ELEMENTS, MAP_CACHE_BYTES, FoldTerm, QuadraticFold
from polynet.expansion.network import Affine, LoweredNetwork, UnitPolynomials
from polynet.polynomial.index import MonomialIndex

__all__ = ["FloatOps", "Plan", "plan", "walk"]

#: Elements of scratch per chunk of a batched product or a fused fold (float64: 256 MiB).
CHUNK_ELEMENTS = 1 << 25
#: Relative cost of one scatter-add element against one GEMM multiply-add.
SCATTER_COST = 8.0

# CPU rates for the time estimate, fitted to bench_scale on one core of a 2-core AMD EPYC
# (torch 2.13, float64): a (T × 64) @ (64 × T) GEMM, index_add_ of float64 with int32 targets,
# and the product-map build (product_map32). A GPU is faster; the estimate stays the CPU's.
GEMM_MACS_PER_S = 1.3e10
SCATTER_PER_S = 5.0e8
MAP_ENTRIES_PER_S = 8.0e7


def _thread_factor() -> float:
    # The GEMMs use every torch thread; the scatters and map builds one.
    return 1.0 / max(1.0, 0.5 + 0.5 * torch.get_num_threads())


class Ops(Protocol):
    """The arithmetic a backend gives the walk; its matrices and vectors are opaque here."""

    def from_float(self, t: Tensor) -> Any: ...
    def zeros(self, rows: int, cols: int) -> Any: ...
    def rows(self, a: Any) -> int: ...
    def column(self, a: Any, j: int) -> Any: ...
    def as_column(self, v: Any) -> Any: ...
    def slice_cols(self, a: Any, start: int, stop: int) -> Any: ...
    def matmul(self, a: Any, b: Any) -> Any: ...
    def rowscale(self, v: Any, b: Any) -> Any: ...
    def colscale(self, a: Any, v: Any) -> Any: ...
    def mul(self, u: Any, v: Any) -> Any: ...
    def row(self, a: Any, i: int) -> Any: ...
    def add_into(self, q: Any, x: Any) -> None: ...
    def add_col0(self, p: Any, b: Any) -> Any: ...
    def outer_fold(self, a: Any, b: Any, pmap: Tensor, cols: int) -> Any: ...
    def quad_fold(
        self, a: Any, w: Any, b: Any, blocks: tuple[FoldBlock, ...], out: Any, row: int
    ) -> None: ...


class FloatOps:
    """float64 arithmetic in torch on one device."""

    def __init__(self, device: torch.device) -> None:
        self.device = device

    def from_float(self, t: Tensor) -> Tensor:
        return t.to(device=self.device, dtype=torch.float64)

    def zeros(self, rows: int, cols: int) -> Tensor:
        return torch.zeros(rows, cols, dtype=torch.float64, device=self.device)

    def rows(self, a: Tensor) -> int:
        return a.shape[0]

    def column(self, a: Tensor, j: int) -> Tensor:
        return a[:, j]

    def as_column(self, v: Tensor) -> Tensor:
        return v[:, None]

    def slice_cols(self, a: Tensor, start: int, stop: int) -> Tensor:
        return a[:, start:stop]

    def row(self, a: Tensor, i: int) -> Tensor:
        return a[i]

    def matmul(self, a: Tensor, b: Tensor) -> Tensor:
        return a @ b

    def rowscale(self, v: Tensor, b: Tensor) -> Tensor:
        return v[:, None] * b

    def colscale(self, a: Tensor, v: Tensor) -> Tensor:
        return a * v[None, :]

    def mul(self, u: Tensor, v: Tensor) -> Tensor:
        return u * v

    def add_into(self, q: Tensor, x: Tensor) -> None:
        q[:, : x.shape[1]] += x

    def add_col0(self, p: Tensor, b: Tensor) -> Tensor:
        p = p.clone()
        p[:, 0] += b
        return p

    def outer_fold(self, a: Tensor, b: Tensor, pmap: Tensor, cols: int) -> Tensor:
        rows, ta, tb = a.shape[0], a.shape[1], b.shape[1]
        out = torch.zeros(rows, cols, dtype=torch.float64, device=self.device)
        flat = pmap.reshape(-1)
        step = max(1, CHUNK_ELEMENTS // (ta * tb))
        for s in range(0, rows, step):
            outer = a[s : s + step, :, None] * b[s : s + step, None, :]
            out[s : s + step].index_add_(1, flat, outer.reshape(outer.shape[0], -1))
        return out

    def quad_fold(
        self, a: Tensor, w: Tensor, b: Tensor, blocks: tuple[FoldBlock, ...], out: Tensor, row: int
    ) -> None:
        symmetric = blocks[0].symmetric
        # Symmetric: fold G[s, t] for t >= s only, off-diagonal entries counted twice.
        aw = (a * (w * 2 if symmetric else w)[:, None]).T.contiguous()  # (T_a, m)
        target = out[row]
        for block in blocks:
            gram = aw[block.start : block.stop] @ b[:, block.col_start :]
            if symmetric:
                diag = gram[:, : block.stop - block.start]
                diag.triu_()
                diag.diagonal().mul_(0.5)
            target.index_add_(0, block.targets, gram.reshape(-1))


@dataclass(frozen=True)
class FoldBlock:
    """Rows start:stop of a Gram matrix from column col_start on, and where each entry folds."""

    start: int
    stop: int
    col_start: int
    symmetric: bool
    targets: Tensor  # flat positions, (stop - start) * (T_b - col_start)


#: Row blocks of a symmetric fold: more blocks skip more of the lower triangle.
SYMMETRIC_BLOCKS = 8


def fold_blocks(n: int, a: int, b: int, device) -> tuple[FoldBlock, ...]:
    """Row blocks of the (T_a × T_b) fold of degree-a by degree-b products, cached."""
    key = ("blocks", n, a, b, str(device))
    if key not in _DEVICE_MAPS:
        pmap = MonomialIndex(n, a + b).product_map(a, b)
        ta, tb = pmap.shape
        symmetric = a == b
        rows = max(1, CHUNK_ELEMENTS // tb)
        if symmetric:
            rows = min(rows, max(64, -(-ta // SYMMETRIC_BLOCKS)))
        blocks = []
        for start in range(0, ta, rows):
            stop = min(ta, start + rows)
            col = start if symmetric else 0
            flat = np.array(pmap[start:stop, col:]).reshape(-1)
            blocks.append(FoldBlock(start, stop, col, symmetric, torch.from_numpy(flat).to(device)))
        _remember(key, tuple(blocks))
    return _DEVICE_MAPS[key]


@dataclass(frozen=True)
class Step:
    """One step of the walk with its sizes: what the estimates and the progress bar count."""

    kind: str  # "input", "affine", "powers", "fused"
    rows: int
    degree_in: int
    degree_out: int
    flops: float
    bytes: float
    seconds: float = 0.0  # estimated, float path on the CPU
    map_bytes: float = 0.0  # whole product maps, which the exact backend holds


@dataclass(frozen=True)
class Plan:
    """The walk's steps, its monomial index and its cost, known before any arithmetic."""

    index: MonomialIndex
    steps: tuple[Step, ...]
    fuse_last: bool
    n_outputs: int

    @property
    def flops(self) -> float:
        return sum(s.flops for s in self.steps)

    @property
    def result_bytes(self) -> float:
        """The float64 coefficients: n_outputs × C(n + D, D) × 8 bytes."""
        return self.index.size * 8.0 * self.n_outputs

    @property
    def peak_bytes(self) -> float:
        """Estimated peak memory of the float walk, the result included."""
        return max((s.bytes for s in self.steps), default=0.0) + self.result_bytes

    @property
    def store_peak_bytes(self) -> float:
        """Estimated peak memory when the result goes to a store block by block (counted by
        :func:`polynet.expansion.store_walk.store_peak_bytes`: blocks, threads, map cache,
        writer)."""
        from polynet.expansion.store_walk import store_peak_bytes

        return store_peak_bytes(self)

    @property
    def exact_peak_bytes(self) -> float:
        """Estimated peak memory of the exact (modular) walk, which holds whole maps."""
        return self.peak_bytes + max((s.map_bytes for s in self.steps), default=0.0)

    @property
    def seconds(self) -> float:
        """Estimated seconds of the float walk on this machine's CPU (see CPU_RATES)."""
        return sum(s.seconds for s in self.steps) * _thread_factor()


def _groups(lowered: LoweredNetwork) -> tuple[list[list[Affine]], list[UnitPolynomials]]:
    """Split stages into affine runs around the polynomial stages: A0 P1 A1 ... PL AL."""
    affines: list[list[Affine]] = [[]]
    polys: list[UnitPolynomials] = []
    for stage in lowered.stages:
        if isinstance(stage, UnitPolynomials):
            polys.append(stage)
            affines.append([])
        else:
            affines[-1].append(stage)
    return affines, polys


def _width(run: list[Affine], width: int) -> int:
    return run[-1].out_features if run else width


def plan(lowered: LoweredNetwork, bytes_per_value: int = 8) -> Plan:
    """Sizes, costs and strategy of the walk for ``lowered``, computed from counts alone."""
    n = lowered.n_inputs
    affines, polys = _groups(lowered)
    index = MonomialIndex(n, lowered.degree_bound)
    t = index.n_monomials
    steps: list[Step] = []
    width = _width(affines[0], n)
    steps.append(Step("input", width, 1, 1, 0.0, width * (n + 1) * bytes_per_value))
    d = 1
    n_out = lowered.n_outputs
    fuse = False
    for i, poly in enumerate(polys):
        k, m = poly.degree, width
        last = i == len(polys) - 1
        out_width = _width(affines[i + 1], m)
        powers_flops = sum(m * t((j - 1) * d) * t(d) * (1 + SCATTER_COST) for j in range(2, k + 1))
        if last:
            fused_flops = out_width * sum(
                m * t(math.ceil(j / 2) * d) * t((j // 2) * d)
                + SCATTER_COST * t(math.ceil(j / 2) * d) * t((j // 2) * d)
                for j in range(2, k + 1)
            )
            fuse = k >= 2 and fused_flops < powers_flops + out_width * m * t(k * d)
        if last and fuse:
            live = m * t(math.ceil(k / 2) * d) * 2 + out_width * t(k * d)
            maps = t(math.ceil(k / 2) * d) * t((k // 2) * d)
            pairs = sum(
                t(math.ceil(j / 2) * d) * t((j // 2) * d) / (2 if j % 2 == 0 else 1)
                for j in range(2, k + 1)
            )
            # Block by block (fold.py): one Gram chunk, the cached int32 maps, two blocks.
            scratch = (
                min(maps, CHUNK_ELEMENTS) * 8
                + min(maps * 4, MAP_CACHE_BYTES)
                + min(out_width * t(k * d), BLOCK_ELEMENTS) * 16
            )
            seconds = out_width * pairs * (m / GEMM_MACS_PER_S + 1 / SCATTER_PER_S)
            seconds += maps / MAP_ENTRIES_PER_S
            steps.append(
                Step(
                    "fused",
                    out_width,
                    d,
                    d * k,
                    fused_flops,
                    live * bytes_per_value + scratch,
                    seconds,
                    maps * 8.0,
                )
            )
        else:
            live = m * (t(d) + 2 * t(k * d))
            scratch = min(m * t((k - 1) * d) * t(d), CHUNK_ELEMENTS)
            maps = t((k - 1) * d) * t(d)
            steps.append(
                Step(
                    "powers",
                    m,
                    d,
                    d * k,
                    powers_flops,
                    (live + scratch) * bytes_per_value + maps * 8,
                    sum(m * t((j - 1) * d) * t(d) for j in range(2, k + 1)) / SCATTER_PER_S
                    + maps / MAP_ENTRIES_PER_S,
                )
            )
            run = affines[i + 1]
            if run:
                flops = sum(a.weight.numel() for a in run) * t(k * d)
                size = (m + out_width) * t(k * d) * bytes_per_value
                seconds = flops / GEMM_MACS_PER_S
                steps.append(Step("affine", out_width, d * k, d * k, flops, size, seconds))
        width = out_width
        d *= k
    return Plan(index, tuple(steps), fuse, n_out)


def _apply_affine(ops: Ops, run: list[Affine], p: Any) -> Any:
    for aff in run:
        w = ops.from_float(aff.weight)
        p = ops.rowscale(w, p) if aff.weight.dim() == 1 else ops.matmul(w, p)
        p = ops.add_col0(p, ops.from_float(aff.bias))
    return p


def _identity(m: int, device) -> Tensor:
    """m units that are the m variables themselves: [0 | I] over the degree-≤1 monomials."""
    p = torch.zeros(m, m + 1, dtype=torch.float64, device=device)
    p[:, 1:] = torch.eye(m, dtype=torch.float64, device=device)
    return p


def _powers(ops: Ops, index: MonomialIndex, p: Any, d: int, k: int, alpha: Any, maps) -> Any:
    """Σ_i α_i z^i for every unit z (rows of p, degree d): matrix over degree ≤ k d."""
    t = index.n_monomials
    q = ops.zeros(ops.rows(p), t(k * d))
    ops.add_into(q, ops.as_column(ops.column(alpha, 0)))
    ops.add_into(q, ops.rowscale(ops.column(alpha, 1), p))
    power = p
    for i in range(2, k + 1):
        power = ops.outer_fold(power, p, maps((i - 1) * d, d), t(i * d))
        ops.add_into(q, ops.rowscale(ops.column(alpha, i), power))
    return q


def _fused_last(ops, index, p, d, k, alpha, run, maps, device, assemble=True):
    """Σ_j V[o, j] q_j(z_j) + c for the last polynomial stage and the affine run after it."""
    t = index.n_monomials
    m = ops.rows(p)
    # The trailing affine run as one map [c | V] of the units: apply it to the identity.
    cv = _apply_affine(ops, run, ops.from_float(_identity(m, device)))
    v = ops.slice_cols(cv, 1, m + 1)
    out = ops.zeros(ops.rows(cv), t(d) if isinstance(ops, FloatOps) else t(k * d))
    ops.add_into(out, ops.as_column(ops.column(cv, 0)))
    ops.add_into(out, ops.matmul(v, ops.as_column(ops.column(alpha, 0))))
    ops.add_into(out, ops.matmul(ops.colscale(v, ops.column(alpha, 1)), p))
    powers = {1: p}
    for j in range(2, (k + 1) // 2 + 1):
        powers[j] = ops.outer_fold(powers[j - 1], p, maps((j - 1) * d, d), t(j * d))
    if isinstance(ops, FloatOps):
        # Block by block (polynet.expansion.fold): memory follows the result, not the Gram matrix.
        terms = tuple(
            FoldTerm(
                powers[(i + 1) // 2],
                powers[i // 2],
                (i + 1) // 2 * d,
                i // 2 * d,
                v * alpha[:, i][None, :],
            )
            for i in range(2, k + 1)
        )
        fold = QuadraticFold(index.n_vars, k * d, out, terms)
        return fold.dense() if assemble else fold
    # The exact backend folds whole product maps (its plan is small enough to hold them).
    for i in range(2, k + 1):
        a, b = (i + 1) // 2, i // 2
        blocks = fold_blocks(index.n_vars, a * d, b * d, device)
        alpha_i = ops.column(alpha, i)
        for o in range(ops.rows(cv)):
            ops.quad_fold(powers[a], ops.mul(ops.row(v, o), alpha_i), powers[b], blocks, out, o)
    return out


def walk(
    lowered: LoweredNetwork,
    ops: Ops,
    the_plan: Plan,
    device,
    progress=None,
    assemble: bool = True,
) -> Any:
    """Run the walk with ``ops``; returns the output matrix (n_outputs × index.size).

    With ``assemble=False`` a fused float last layer is returned unfolded, as a
    :class:`~polynet.expansion.fold.QuadraticFold` whose blocks a store or a cluster computes.
    """
    index = the_plan.index
    affines, polys = _groups(lowered)

    def maps(a: int, b: int) -> Tensor:
        return _device_map(index.n_vars, a, b, device)

    p = _apply_affine(ops, affines[0], ops.from_float(_identity(lowered.n_inputs, device)))
    d = 1
    for i, poly in enumerate(polys):
        alpha = ops.from_float(poly.coefficients)
        k = poly.degree
        if i == len(polys) - 1 and the_plan.fuse_last:
            p = _fused_last(ops, index, p, d, k, alpha, affines[i + 1], maps, device, assemble)
        else:
            p = _powers(ops, index, p, d, k, alpha, maps)
            p = _apply_affine(ops, affines[i + 1], p)
        d *= k
        if progress is not None:
            progress.update(1)
    return p


# Product maps and fold blocks on their devices, kept for the next expansion of the same sizes.
_DEVICE_MAPS: dict[tuple, Any] = {}


def _remember(key: tuple, value: Any) -> None:
    if len(_DEVICE_MAPS) > 32:
        _DEVICE_MAPS.clear()
    _DEVICE_MAPS[key] = value


def _device_map(n: int, a: int, b: int, device) -> Tensor:
    key = ("map", n, a, b, str(device))
    if key not in _DEVICE_MAPS:
        pmap = MonomialIndex(n, a + b).product_map(a, b)
        _remember(key, torch.from_numpy(pmap.copy()).to(device))
    return _DEVICE_MAPS[key]
