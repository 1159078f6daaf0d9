"""The exact dense walk: the float path's arithmetic done modulo primes, then reconstructed.

Every float64 value x is a dyadic rational; with a scale e per matrix, x·2^e is an integer,
and its residue modulo a prime p is exact. :class:`ModOps` gives :func:`dense.walk` this
arithmetic, with residues held in float64 tensors (products of residues stay below 2^53, so
BLAS GEMMs are exact; the inner dimension is split when it would not be), and reduces after
every operation. The walk runs once per prime, with the same scales every time; the integer
numerators are rebuilt by the Chinese remainder theorem, their size bounded beforehand by the
same walk on absolute values. The result is the exact expansion of the network whose layers
hold the float64 values the float path uses.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
from torch import Tensor

from polynet.expansion import residue_kernels
from polynet.expansion.dense import CHUNK_ELEMENTS, FloatOps, Plan, walk
from polynet.expansion.network import Affine, LoweredNetwork, UnitPolynomials
from polynet.polynomial.exact import ExactCoefficients

__all__ = ["ModOps", "expand_modular", "primes_for"]

# Float64 holds integers exactly below 2^53.
_EXACT_BITS = 53


@dataclass
class Residues:
    """An integer matrix or vector known modulo p: values = t / 2^e (t in [0, p))."""

    t: Tensor
    e: int


class ModOps:
    """The dense walk's arithmetic modulo one prime p, on scaled integers."""

    def __init__(
        self, p: int, device: torch.device, max_inner: int, cache: dict | None = None
    ) -> None:
        self.p = p
        self._inv = 1.0 / p
        self.device = device
        # Split GEMMs so that a sum of products of residues stays exact in float64.
        # Residues are symmetric, |r| ≤ p/2 + 1, so a product is at most (p/2 + 1)².
        self.inner = max(1, min(max_inner, (1 << _EXACT_BITS) // _residue_square(p) - 1))
        self._pow2 = np.ones(1, dtype=np.int64)
        # Dyadic decompositions do not depend on p: shared by the walks of all primes.
        self._cache = {} if cache is None else cache
        # One scratch buffer for the quotients of every reduction (no allocation per op).
        self._scratch = torch.empty(0, dtype=torch.float64, device=device)
        # One-pass numba kernels on the CPU (polynet.expansion.residue_kernels), torch otherwise.
        on_cpu = torch.device(device).type == "cpu"
        self._k = residue_kernels.kernels() if on_cpu and residue_kernels.available() else None

    # -- conversions ------------------------------------------------------------------------
    def pow2(self, k: int) -> int:
        """2^k mod p for k ≥ 0."""
        return pow(2, k, self.p)

    def _pow2_table(self, top: int) -> np.ndarray:
        if len(self._pow2) <= top:
            table = np.empty(top + 1, dtype=np.int64)
            table[0] = 1
            for i in range(1, top + 1):
                table[i] = (table[i - 1] * 2) % self.p
            self._pow2 = table
        return self._pow2

    def from_float(self, x: Tensor) -> Residues:
        key = (id(x), x.data_ptr(), tuple(x.shape))
        if key not in self._cache:
            self._cache[key] = (x, _dyadic(x))  # keep x alive so its id stays unique
        odd, power, negative, e = self._cache[key][1]
        table = self._pow2_table(int(power.max()) if power.size else 0)
        res = (odd % self.p) * table[power] % self.p
        res = np.where(negative, (self.p - res) % self.p, res)
        return Residues(torch.from_numpy(res.astype(np.float64)).to(self.device), e)

    def _rescale(self, r: Residues, e: int) -> Tensor:
        if e == r.e:
            return r.t
        c = self.pow2(e - r.e)
        if self._k is not None and r.t.is_contiguous():
            out = torch.empty_like(r.t)
            self._k.scale_reduce(_flat(r.t), float(c), float(self.p), self._inv, _flat(out))
            return out
        return self._mod(r.t * c)

    def _mod(self, t: Tensor) -> Tensor:
        """t reduced to |t| ≤ p/2 + 1, in place: every caller passes a temporary it owns.

        Callers keep |t| < 2^53, so t · (1/p) is within 2^-20 of t / p and rounding it
        leaves a remainder of at most p/2 + 1 in magnitude (symmetric residues make products
        4x smaller than residues in [0, p), which buys a bit of prime per pass); the final
        reconstruction reduces exactly.
        """
        if self._k is not None and t.is_contiguous():
            self._k.reduce(_flat(t), float(self.p), self._inv)
            return t
        n = t.numel()
        if self._scratch.numel() < n:
            self._scratch = torch.empty(n, dtype=torch.float64, device=self.device)
        q = self._scratch[:n].view(t.shape)
        torch.mul(t, self._inv, out=q)
        q.round_()
        return t.add_(q, alpha=-self.p)

    # -- structure --------------------------------------------------------------------------
    def zeros(self, rows: int, cols: int) -> Residues:
        return Residues(torch.zeros(rows, cols, dtype=torch.float64, device=self.device), 0)

    def rows(self, a: Residues) -> int:
        return a.t.shape[0]

    def column(self, a: Residues, j: int) -> Residues:
        return Residues(a.t[:, j], a.e)

    def row(self, a: Residues, i: int) -> Residues:
        return Residues(a.t[i], a.e)

    def as_column(self, v: Residues) -> Residues:
        return Residues(v.t[:, None], v.e)

    def slice_cols(self, a: Residues, start: int, stop: int) -> Residues:
        return Residues(a.t[:, start:stop], a.e)

    # -- arithmetic ---------------------------------------------------------------------------
    def matmul(self, a: Residues, b: Residues) -> Residues:
        k = a.t.shape[1]
        out = None
        for s in range(0, k, self.inner):
            part = self._mod(a.t[:, s : s + self.inner] @ b.t[s : s + self.inner])
            out = part if out is None else self._mod(out + part)
        if out is None:
            out = torch.zeros(a.t.shape[0], b.t.shape[1], dtype=torch.float64, device=self.device)
        return Residues(out, a.e + b.e)

    def rowscale(self, v: Residues, b: Residues) -> Residues:
        return Residues(self._mod(v.t[:, None] * b.t), v.e + b.e)

    def colscale(self, a: Residues, v: Residues) -> Residues:
        return Residues(self._mod(a.t * v.t[None, :]), a.e + v.e)

    def mul(self, u: Residues, v: Residues) -> Residues:
        return Residues(self._mod(u.t * v.t), u.e + v.e)

    def add_into(self, q: Residues, x: Residues) -> None:
        if x.e > q.e:
            q.t = self._rescale(q, x.e)
            q.e = x.e
        cols = x.t.shape[1]
        q.t[:, :cols] = self._mod(q.t[:, :cols] + self._rescale(x, q.e))

    def add_col0(self, p: Residues, b: Residues) -> Residues:
        e = max(p.e, b.e)
        t = self._rescale(p, e).clone()
        t[:, 0] = self._mod(t[:, 0] + self._rescale(b, e))
        return Residues(t, e)

    def outer_fold(self, a: Residues, b: Residues, pmap: Tensor, cols: int) -> Residues:
        rows, ta, tb = a.t.shape[0], a.t.shape[1], b.t.shape[1]
        out = torch.zeros(rows, cols, dtype=torch.float64, device=self.device)
        if self._k is not None:
            self._k.outer_fold(
                a.t.contiguous().numpy(),
                b.t.contiguous().numpy(),
                pmap.numpy(),
                float(self.p),
                self._inv,
                out.numpy(),
            )
            return Residues(out, a.e + b.e)
        flat = pmap.reshape(-1)
        step = max(1, CHUNK_ELEMENTS // (ta * tb))
        for s in range(0, rows, step):
            outer = self._mod(a.t[s : s + step, :, None] * b.t[s : s + step, None, :])
            out[s : s + step].index_add_(1, flat, outer.reshape(outer.shape[0], -1))
        return Residues(self._mod(out), a.e + b.e)

    def quad_fold(
        self, a: Residues, w: Residues, b: Residues, blocks, out: Residues, row: int
    ) -> None:
        scale = a.e + w.e + b.e
        if scale > out.e:
            out.t = self._rescale(out, scale)
            out.e = scale
        symmetric = blocks[0].symmetric
        # Lift to the output's scale on the weights (m values), not on the Gram matrix; a
        # symmetric fold counts off-diagonal entries twice and halves the diagonal (by 2^-1).
        lift = self.pow2(out.e - scale) * (2 if symmetric else 1) % self.p
        aw = self._mod(a.t * self._mod(w.t * lift)[:, None]).T.contiguous()
        half = (self.p + 1) // 2
        # Each target receives at most one reduced entry per row s: T_a · (p/2 + 1) stays exact.
        target = torch.zeros(out.t.shape[1], dtype=torch.float64, device=self.device)
        rhs = b.t
        for block in blocks:
            lhs, rows = aw[block.start : block.stop], rhs[:, block.col_start :]
            if self._k is not None and lhs.shape[1] <= self.inner:
                # Unreduced when one GEMM is exact; the kernel reduces while it scatters.
                gram = lhs @ rows
            else:
                gram = self.matmul(Residues(lhs, 0), Residues(rows, 0)).t
            if self._k is not None:
                self._k.gram_scatter(
                    gram.numpy(),
                    block.targets.view(gram.shape).numpy(),
                    block.start - block.col_start if symmetric else -1,
                    float(half),
                    float(self.p),
                    self._inv,
                    target.numpy(),
                )
                continue
            if symmetric:
                diag = gram[:, : block.stop - block.start]
                diag.triu_()
                d = diag.diagonal()
                d.copy_(self._mod(d * half))
            target.index_add_(0, block.targets, gram.reshape(-1))
        out.t[row] = self._mod(out.t[row] + self._mod(target))


def _flat(t: Tensor) -> np.ndarray:
    """A contiguous CPU tensor as a flat numpy view of the same memory."""
    return t.view(-1).numpy()


def _residue_square(p: int) -> int:
    """The largest product of two reduced residues modulo p: (p/2 + 1)², rounded up."""
    return (p // 2 + 2) ** 2


def _dyadic(x: Tensor) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """x · 2^e = ±odd · 2^power exactly, with one scale e for the whole tensor."""
    arr = x.detach().cpu().numpy().astype(np.float64)
    if not np.isfinite(arr).all():
        raise ValueError("cannot expand exactly: the network holds non-finite values.")
    mant, expo = np.frexp(arr)
    big = (mant * 2.0**_EXACT_BITS).astype(np.int64)  # x = big · 2^(expo - 53) exactly
    mag = np.abs(big)
    nonzero = mag != 0
    tz = np.zeros_like(mag)
    tz[nonzero] = np.log2(mag[nonzero] & -mag[nonzero]).astype(np.int64)
    shift = expo.astype(np.int64) - _EXACT_BITS + tz
    e = int(max(0, (-shift[nonzero]).max())) if nonzero.any() else 0
    power = np.where(nonzero, shift + e, 0)
    return mag >> tz, power, big < 0, e


@lru_cache(maxsize=8)
def primes_for(bits: int, count: int) -> list[int]:
    """The ``count`` largest primes below 2^bits (bits ≤ 31), by trial division."""
    if not 2 <= bits <= 31:
        raise ValueError(f"bits must be in 2..31, got {bits}.")
    small = _small_primes(math.isqrt(1 << bits) + 1)
    out, candidate = [], (1 << bits) - 1
    while len(out) < count and candidate > 1:
        if all(candidate % q for q in small if q * q <= candidate):
            out.append(candidate)
        candidate -= 1
    if len(out) < count:
        raise ValueError(f"there are fewer than {count} primes below 2^{bits}.")
    return out


def _small_primes(limit: int) -> list[int]:
    sieve = np.ones(limit + 1, dtype=bool)
    sieve[:2] = False
    for i in range(2, math.isqrt(limit) + 1):
        if sieve[i]:
            sieve[i * i :: i] = False
    return np.flatnonzero(sieve).tolist()


def _max_inner(lowered: LoweredNetwork) -> int:
    widths = [lowered.n_inputs + 1]
    for stage in lowered.stages:
        if isinstance(stage, Affine):
            widths.append(stage.weight.shape[-1] + 1)
        widths.append(stage.coefficients.shape[0] if isinstance(stage, UnitPolynomials) else 1)
    return max(widths)


def _absolute(lowered: LoweredNetwork) -> LoweredNetwork:
    stages = []
    for stage in lowered.stages:
        if isinstance(stage, Affine):
            stages.append(Affine(stage.weight.abs(), stage.bias.abs(), stage.layers))
        else:
            stages.append(UnitPolynomials(stage.coefficients.abs(), stage.layers))
    return LoweredNetwork(tuple(stages), lowered.n_inputs, lowered.input_shape)


#: Bits per limb of the CRT's multi-precision arithmetic: a sum of k products of a residue
#: (< 2^25) and a limb stays exact in float64 for k < 2^12.
_LIMB_BITS = 16


def _reconstruct(
    residues: list[np.ndarray], primes: list[int], shape: tuple[int, ...], denominator: int
) -> ExactCoefficients:
    """Symmetric CRT: the integers N with N ≡ r_i (mod p_i), |N| < ∏p / 2, over ``denominator``.

    Explicit CRT, vectorised: with M = ∏p and u_i = r_i · (M/p_i)^-1 mod p_i, N = S − m·M for
    S = Σ u_i · (M/p_i) and m = round(Σ u_i / p_i) (|N| is far below M/2, so the rounding is
    never in doubt). S is one float64 GEMM of the u_i against the 16-bit limbs of the M/p_i
    (exact: every sum stays below 2^53); the limbs are then carried, as two's complement, and
    kept as one block of two's-complement bytes (ExactCoefficients decodes it on first use).
    """
    k = len(primes)
    modulus = math.prod(primes)
    n_limbs = (modulus.bit_length() + 1) // _LIMB_BITS + 2  # room for the sign
    base = 1 << _LIMB_BITS
    cofactors = [modulus // p for p in primes]
    inverses = np.array([pow(c % p, -1, p) for c, p in zip(cofactors, primes)], dtype=np.float64)
    limbs = np.array(
        [[(c >> (_LIMB_BITS * j)) & (base - 1) for j in range(n_limbs)] for c in cofactors],
        dtype=np.float64,
    )
    m_limbs = np.array([(modulus >> (_LIMB_BITS * j)) & (base - 1) for j in range(n_limbs)])
    p_float = np.array(primes, dtype=np.float64)[:, None]
    # u_i in float64, symmetric: |r_i| < 2p and the inverse is below p < 2^25, so r_i · inv
    # is exact (< 2^51) and t − p · round(t / p) leaves |u_i| ≤ p/2 + 1 (any representative
    # serves: S ≡ N mod M whatever the u_i, and m rounds Σ u_i / p_i). Float64 arithmetic
    # here is several times faster than int64's %.
    u_float = np.stack([np.asarray(r, dtype=np.float64).reshape(-1) for r in residues])
    u_float *= inverses[:, None]
    quotient = u_float * (1.0 / p_float)
    np.rint(quotient, out=quotient)
    quotient *= p_float
    u_float -= quotient
    del quotient
    m = np.rint((1.0 / p_float[:, 0]) @ u_float).astype(np.int64)
    # Limb-major (n_limbs, N): the carry loop below walks contiguous rows.
    acc = (limbs.T @ u_float).astype(np.int64)  # S in limbs, each below k · 2^40 in magnitude
    acc -= m_limbs[:, None] * m[None, :]
    carry = np.zeros(acc.shape[1], dtype=np.int64)
    for row in acc:  # carry into [0, 2^16); the last carry is the sign (0 or -1)
        row += carry
        np.right_shift(row, _LIMB_BITS, out=carry)
        row &= base - 1
    if k and ((carry != 0) & (carry != -1)).any():  # pragma: no cover - bounds guarantee it
        raise RuntimeError("internal error: the CRT carry left its range.")
    block = acc.T.astype("<u2", order="C").view(np.uint8)  # (N, 2 · n_limbs): one numerator per row
    return ExactCoefficients.from_block(block, shape, denominator)


def expand_modular(
    lowered: LoweredNetwork, the_plan: Plan, device: torch.device, progress=None
) -> ExactCoefficients:
    """Exact coefficients of shape (n_outputs, index.size)."""
    max_inner = _max_inner(lowered)
    # The largest primes whose GEMMs need no split: max_inner products of at most
    # (p/2 + 1)² each stay below 2^53 (the slack covers the +1 and one more addition).
    bits = next(
        (b for b in range(25, 2, -1) if max_inner * _residue_square(1 << b) < 1 << _EXACT_BITS - 1),
        2,
    )
    # Bound |coefficient| by the same walk on absolute values (rounding guarded by a margin).
    bound = walk(_absolute(lowered), FloatOps(device), the_plan, device).abs().max().item()
    if not math.isfinite(bound):
        raise OverflowError("the network's coefficients overflow float64; an exact bound fails.")
    first = primes_for(bits, 1)
    residues = []
    cache: dict = {}
    ops = ModOps(first[0], device, max_inner, cache)
    out = walk(lowered, ops, the_plan, device)
    scale = out.e
    needed_bits = math.log2(max(bound, 1e-300) * 1.001 + 2.0**-scale) + scale + 2
    # As few primes as the bound needs: each gives log2(p) bits, just under ``bits``.
    count = max(1, math.ceil(needed_bits / math.log2(first[0])))
    while sum(math.log2(p) for p in primes_for(bits, count)) < needed_bits:
        count += 1
    primes = primes_for(bits, count)
    residues.append(out.t.cpu().numpy())
    for p in primes[1:]:
        r = walk(lowered, ModOps(p, device, max_inner, cache), the_plan, device)
        if r.e != scale:  # pragma: no cover - scales depend only on the float inputs
            raise RuntimeError("internal error: scales differ between primes.")
        residues.append(r.t.cpu().numpy())
        if progress is not None:
            progress.set_postfix_str(f"prime {len(residues)}/{count}")
    return _reconstruct(residues, primes, tuple(out.t.shape), 1 << scale)
