"""FactoredPolynomial: an MLP's whole polynomial as G(W1 x + b1), G sparse in z = W1 x + b1.

The value; :mod:`polynet.expansion.factored` computes it from a network.

After the first affine map an SLNN with one or two SLAF layers is, exactly,

    p(x) = G(z),  z = W1 x + b1,
    G(z) = c + Σ_j Σ_p U_jp z_j^p + Σ_{j<l} Σ_{r,t} C_rt[j, l] z_j^r z_l^t,

because the second layer's pre-activations are sums of univariate polynomials of the z_j and
a last SLAF of degree ≤ 2 multiplies at most two of them. G has 1 + m·2k1 + C(m, 2)·k1²
terms (33,025 for hidden [128, 64], degrees (2, 2)), where p in x has C(n + D, D) (1.59e10 at
n = 784): the whole polynomial of an image-size MLP, exactly, with W1 and b1 beside it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

import numpy as np
import torch
from numpy.typing import ArrayLike
from torch import Tensor

from polynet.polynomial.homogeneous import (
    _hom,
    _pure_powers,
    _push_forward_3,
    _start,
    push_forward,
    taylor_shift,
    tuple_rank,
)
from polynet.polynomial.index import MonomialIndex, monomial_name
from polynet.polynomial.network_polynomial import NetworkPolynomial

__all__ = ["FactoredPolynomial"]


class FactoredPolynomial:
    """p_o(x) = G_o(W1 x + b1) with G sparse in the m first-layer pre-activations z.

    Parameters
    ----------
    weight : Tensor of shape (m, n)
        W1, the first affine map (all affine layers before the first SLAF, composed).
    bias : Tensor of shape (m,)
        b1.
    constant : Tensor of shape (n_outputs,)
        G's constant term.
    univariate : Tensor of shape (n_outputs, m, P)
        ``univariate[o, j, p - 1]`` multiplies z_j^p.
    pairs : Tensor of shape (n_outputs, R, R, m, m), optional
        ``pairs[o, r - 1, t - 1, j, l]`` (j < l; zero elsewhere) multiplies z_j^r z_l^t.
    degree_bound : int
        The network's degree D = ∏ k.
    input_shape : tuple of int, optional
        The network's input shape.

    Examples
    --------
    >>> import polynet
    >>> net = polynet.SLNN(3, [4, 2], [2, 2]).eval()
    >>> g = polynet.expand(net, form="factored")
    >>> g
    FactoredPolynomial(n_vars=3, n_units=4, n_outputs=1, degree_bound=4, n_terms=41)
    >>> x = torch.randn(5, 3, dtype=torch.float64)
    >>> bool(torch.allclose(g(x), net.double()(x)))
    True
    """

    weight: Tensor
    bias: Tensor
    constant: Tensor
    univariate: Tensor
    pairs: Tensor | None
    degree_bound: int
    input_shape: tuple[int, ...] | None
    seconds: float | None

    def __init__(
        self,
        weight: Tensor,
        bias: Tensor,
        constant: Tensor,
        univariate: Tensor,
        pairs: Tensor | None,
        degree_bound: int,
        *,
        input_shape: Sequence[int] | None = None,
        seconds: float | None = None,
    ) -> None:
        m, n = weight.shape
        if bias.shape != (m,) or univariate.shape[:2] != (constant.shape[0], m):
            raise ValueError(
                f"a FactoredPolynomial needs bias of shape ({m},) and univariate of shape "
                f"(n_outputs, {m}, P); got {tuple(bias.shape)} and {tuple(univariate.shape)}."
            )
        values = dict(
            weight=weight,
            bias=bias,
            constant=constant,
            univariate=univariate,
            pairs=pairs,
            degree_bound=int(degree_bound),
            input_shape=None if input_shape is None else tuple(int(s) for s in input_shape),
            seconds=seconds,
        )
        for name, value in values.items():
            object.__setattr__(self, name, value)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("FactoredPolynomial is immutable.")

    # -- what it is -----------------------------------------------------------------------
    @property
    def n_vars(self) -> int:
        """Number of network inputs n."""
        return self.weight.shape[1]

    @property
    def n_units(self) -> int:
        """Number of first-layer pre-activations m (G's variables)."""
        return self.weight.shape[0]

    @property
    def n_outputs(self) -> int:
        return self.constant.shape[0]

    @property
    def n_terms(self) -> int:
        """Number of G's monomials with a non-zero coefficient in at least one output."""
        count = int((self.constant != 0).any())
        count += int((self.univariate != 0).any(0).sum())
        if self.pairs is not None:
            count += int((self.pairs != 0).any(0).sum())
        return count

    @property
    def max_terms(self) -> int:
        """C(n + D, D): the coefficients of the same polynomial written out in x."""
        return math.comb(self.n_vars + self.degree_bound, self.degree_bound)

    @property
    def variables(self) -> tuple[str, ...]:
        return tuple(f"x{i}" for i in range(self.n_vars))

    def __repr__(self) -> str:
        return (
            f"FactoredPolynomial(n_vars={self.n_vars}, n_units={self.n_units}, "
            f"n_outputs={self.n_outputs}, degree_bound={self.degree_bound}, "
            f"n_terms={self.n_terms})"
        )

    def to(self, device: torch.device | str) -> FactoredPolynomial:
        """A copy on ``device``."""
        move = lambda t: None if t is None else t.to(device)  # noqa: E731
        return FactoredPolynomial(
            move(self.weight),
            move(self.bias),
            move(self.constant),
            move(self.univariate),
            move(self.pairs),
            self.degree_bound,
            input_shape=self.input_shape,
            seconds=self.seconds,
        )

    # -- evaluation -----------------------------------------------------------------------
    def _points(self, x: ArrayLike | Tensor) -> Tensor:
        t = torch.as_tensor(x, dtype=torch.float64, device=self.weight.device)
        if t.dim() > 2 and t[0].numel() == self.n_vars:
            t = t.reshape(t.shape[0], -1)
        if t.dim() != 2 or t.shape[1] != self.n_vars:
            raise ValueError(f"points must have shape (B, {self.n_vars}), got {tuple(t.shape)}.")
        return t

    def _from_z(self, z: Tensor) -> Tensor:
        top = max(self.univariate.shape[2], 0 if self.pairs is None else self.pairs.shape[1])
        powers = [torch.ones_like(z), z]
        for _ in range(2, top + 1):
            powers.append(powers[-1] * z)
        out = self.constant[None, :].expand(z.shape[0], -1).clone()
        for p in range(1, self.univariate.shape[2] + 1):
            out = out + powers[p] @ self.univariate[:, :, p - 1].T
        if self.pairs is not None:
            R = self.pairs.shape[1]
            for o in range(self.n_outputs):
                for r in range(1, R + 1):
                    for t in range(1, R + 1):
                        c = self.pairs[o, r - 1, t - 1]
                        out[:, o] += (powers[r] * (powers[t] @ c.T)).sum(1)
        return out

    def __call__(self, x: ArrayLike | Tensor) -> Tensor:
        """Evaluate at points x of shape (B, n) (or images): returns (B, n_outputs), float64."""
        x = self._points(x)
        return self._from_z(x @ self.weight.T + self.bias)

    def gradient(self, x: ArrayLike | Tensor) -> Tensor:
        """∂p_o/∂x_i at points x: shape (B, n_outputs, n), by automatic differentiation of
        the factored formula (exact up to float64 rounding)."""
        x = self._points(x).detach().requires_grad_(True)
        y = self(x)
        rows = []
        for o in range(self.n_outputs):
            (g,) = torch.autograd.grad(y[:, o].sum(), x, retain_graph=o + 1 < self.n_outputs)
            rows.append(g)
        return torch.stack(rows, dim=1).detach()

    # -- coefficients in x ----------------------------------------------------------------
    def coefficient(self, exponents: Sequence[int] | np.ndarray | str, output: int = 0) -> float:
        """The coefficient of one monomial x^α of p (α: n exponents or a name like
        ``"x0^2 x5"``), computed on demand from G, W1 and b1.

        Only the variables in α's support matter: the coefficient is that of the top corner
        of the box {β ≤ α} in G(W1[:, S] y + b1), computed in that box alone.
        """
        e = _exponent_vector(exponents, self.n_vars)
        if not 0 <= int(output) < self.n_outputs:
            raise ValueError(f"output must be in 0..{self.n_outputs - 1}, got {output!r}.")
        if int(e.sum()) > self.degree_bound:
            return 0.0
        support = np.flatnonzero(e)
        box = tuple(int(e[v]) + 1 for v in support)
        w = self.weight[:, torch.as_tensor(support, dtype=torch.long)].to(torch.float64)
        b = self.bias
        m = self.n_units
        top = max(self.univariate.shape[2], 0 if self.pairs is None else self.pairs.shape[1])
        power = b.new_zeros((m, *box))
        power[(slice(None),) + (0,) * len(box)] = 1.0
        powers = [power]
        for _ in range(top):
            nxt = b.reshape(m, *([1] * len(box))) * power
            for k in range(len(box)):
                # Multiply by w_k y_k: shift one step along axis k (the box truncates).
                dst = [slice(None)] * (len(box) + 1)
                src = [slice(None)] * (len(box) + 1)
                dst[k + 1], src[k + 1] = slice(1, None), slice(0, -1)
                nxt[tuple(dst)] += w[:, k].reshape(m, *([1] * len(box))) * power[tuple(src)]
            power = nxt
            powers.append(power)
        corner = (slice(None),) + tuple(s - 1 for s in box)
        o = int(output)
        value = float(self.constant[o]) if not len(support) else 0.0
        for p in range(1, self.univariate.shape[2] + 1):
            value += float(self.univariate[o, :, p - 1] @ powers[p][corner])
        if self.pairs is not None:
            R = self.pairs.shape[1]
            dims = tuple(range(1, len(box) + 1))
            for r in range(1, R + 1):
                a = powers[r].reshape(m, -1)
                for t in range(1, R + 1):
                    flipped = torch.flip(powers[t], dims).reshape(m, -1)  # β ↔ α - β
                    value += float((a * (self.pairs[o, r - 1, t - 1] @ flipped)).sum())
        return value

    def truncate(self, degree: int) -> NetworkPolynomial:
        """The exact part of degree ≤ ``degree`` in x, as a NetworkPolynomial over
        MonomialIndex(n, degree) (what ``expand(model, degree=degree)`` gives).

        G is re-centred at b1 (z = b1 + u), its degree ≤ q part in u is pushed to x through
        u = W1 x, one degree block at a time.
        """
        from polynet.validation import check_int

        q = check_int(degree, "degree", 0)
        m, n = self.n_units, self.n_vars
        if q > 3 and max(m, n) ** q > (1 << 24):
            raise ValueError(
                f"truncate(degree={q}) of a factored polynomial goes up to degree 3 at this size "
                f"({m} units, {n} inputs); use polynet.expand(model, degree={q})."
            )
        start = time.perf_counter()
        blocks = self._u_blocks(q)
        out = self.weight.new_empty(self.n_outputs, math.comb(n + q, q))
        for d in range(q + 1):
            span = out[:, _start(n, d) : _start(n, d + 1)]
            if d == 3:
                _push_forward_3(blocks[d], self.weight, span)
            else:
                span.copy_(push_forward(blocks[d], self.weight, d))
            blocks[d] = None
        return NetworkPolynomial(
            MonomialIndex(n, q),
            out,
            degree_bound=self.degree_bound,
            input_shape=self.input_shape,
            notes={"taylor": {"degree": q, "center": None, "network_degree": self.degree_bound}},
            info={
                "seconds": time.perf_counter() - start,
                "engine": "float64 factored",
                "device": str(out.device),
            },
        )

    def _u_blocks(self, q: int) -> list[Tensor]:
        """G(b1 + u) by degree block in u, truncated at q: (n_outputs × H(m, d)) each."""
        m = self.n_units
        device = self.weight.device
        out = [self.bias.new_zeros(self.n_outputs, _hom(m, d)) for d in range(q + 1)]
        out[0][:, 0] = self.constant
        b = self.bias
        P = self.univariate.shape[2]
        shifted = _shift_rows(self.univariate, b)  # (n_outputs, m, P + 1), powers 0..P of u_j
        out[0][:, 0] += shifted[:, :, 0].sum(1)
        for d in range(1, min(P, q) + 1):
            out[d].index_add_(1, _pure_powers(m, d, device), shifted[:, :, d])
        if self.pairs is None:
            return out
        R = self.pairs.shape[1]
        bpow = b[:, None] ** torch.arange(R + 1, device=device, dtype=b.dtype)  # (m, R + 1)
        for r in range(1, R + 1):
            for t in range(1, R + 1):
                c = self.pairs[:, r - 1, t - 1]  # (n_outputs, m, m), j < l
                for e in range(r + 1):
                    for f in range(t + 1):
                        if e + f > q:
                            continue
                        # C(r, e) b_j^(r-e) u_j^e · C(t, f) b_l^(t-f) u_l^f
                        left = math.comb(r, e) * bpow[:, r - e]
                        right = math.comb(t, f) * bpow[:, t - f]
                        weighted = c * left[None, :, None] * right[None, None, :]
                        _scatter_pair(out, weighted, e, f, m)
        return out


def _shift_rows(univariate: Tensor, b: Tensor) -> Tensor:
    """Σ_p U_jp (b_j + u)^p = Σ_s V_js u^s per output: (n_outputs, m, P) → (.., P + 1)."""
    n_out, m, P = univariate.shape
    alpha = torch.cat([univariate.new_zeros(n_out, m, 1), univariate], dim=2)
    flat = alpha.reshape(n_out * m, P + 1)
    return taylor_shift(flat, b.repeat(n_out)).reshape(n_out, m, P + 1)


def _scatter_pair(out: list[Tensor], weighted: Tensor, e: int, f: int, m: int) -> None:
    """Add Σ_{j<l} weighted[o, j, l] u_j^e u_l^f into the blocks (e or f may be 0)."""
    if e == 0 and f == 0:
        out[0][:, 0] += weighted.sum((1, 2))
        return
    if e == 0 or f == 0:
        axis, power = (1, f) if e == 0 else (2, e)  # sum over the variable whose power is 0
        values = weighted.sum(axis)
        out[power].index_add_(1, _pure_powers(m, power, weighted.device), values)
        return
    iu = torch.triu_indices(m, m, offset=1, device=weighted.device)
    j, l = iu[0].cpu().numpy(), iu[1].cpu().numpy()
    tuples = np.concatenate(
        [np.repeat(j[:, None], e, axis=1), np.repeat(l[:, None], f, axis=1)], axis=1
    )
    tuples.sort(axis=1)
    targets = torch.from_numpy(tuple_rank(tuples, m)).to(weighted.device)
    out[e + f].index_add_(1, targets, weighted[:, iu[0], iu[1]])


def _exponent_vector(exponents: Sequence[int] | np.ndarray | str, n: int) -> np.ndarray:
    if isinstance(exponents, str):
        e = np.zeros(n, dtype=np.int64)
        if exponents.split() != ["1"]:
            for token in exponents.split():
                name, caret, power = token.partition("^")
                ok = name.startswith("x") and name[1:].isdigit() and int(name[1:]) < n
                if not ok or (caret and not power.isdigit()):
                    raise ValueError(
                        f"cannot read monomial {exponents!r}: {token!r} is not x0..x{n - 1} "
                        "or such a variable to a power."
                    )
                e[int(name[1:])] += int(power) if caret else 1
        return e
    e = np.asarray(exponents)
    if e.shape != (n,) or (e.size and not np.issubdtype(e.dtype, np.integer)) or (e < 0).any():
        raise ValueError(
            f"exponents must be {n} non-negative integers (one per input), got "
            f"{monomial_name(e, [f'x{i}' for i in range(n)]) if e.shape == (n,) else exponents!r}."
        )
    return e.astype(np.int64)
