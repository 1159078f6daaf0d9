"""The exact degree ≤ q part of a network polynomial, at the origin or re-centred at a point.

The degree ≤ q part of a product depends only on the degree ≤ q parts of its factors, so a
layer walk that truncates after every product computes the low-degree part of the network
polynomial exactly, for any number of inputs. It is the network's Taylor polynomial of degree q
at the origin; re-centring at x0 is the substitution x = x0 + u in the first affine map.

Three facts keep the walk small (the image-size report, sections 2 and 3):

- the first polynomial stage acts on z = W x + b; each unit is the ridge polynomial
  Σ_r γ_jr (w_j·x)^r, with γ the Taylor shift of the unit's polynomial at b_j: no products;
- when the first layer is narrower than the input (m1 < n), the walk runs in u = W x (m1
  variables) and pushes the result to x at the end, one degree block at a time; the next
  layer's pre-activations are sums of univariate polynomials in u, kept as such (their degree-r
  part lives on the m1 pure powers u_j^r, not on all C(m1 + r - 1, r) monomials);
- the last polynomial stage is fused with the affine map after it: Σ_i V[o, i] β_is w_i^s is
  a Gram matrix of the units' powers folded into monomials, never a product per unit.

A truncated polynomial is held by homogeneous blocks: block d is a (rows × H(d)) matrix over
the degree-d monomials in graded order (scikit-learn's), or, for the sums of univariate
polynomials, a (rows × k) matrix over k listed positions of that block.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import torch
from numpy.typing import ArrayLike
from torch import Tensor

from polynet.errors import ExpansionTooLargeError
from polynet.expansion.dense import _groups
from polynet.expansion.network import Affine, LoweredNetwork, UnitPolynomials
from polynet.polynomial.homogeneous import (  # noqa: F401 - 0.2 names, re-exported
    CHUNK_ELEMENTS,
    DENSE_TENSOR_ELEMENTS,
    PUSH_ROWS,
    _hom,
    _multiplicity,
    _pure_powers,
    _push_forward_3,
    _push_forward_dense,
    _start,
    _symmetric_tensor,
    _symmetric_tensor_3,
    _tuples,
    homogeneous_tuples,
    push_forward,
    taylor_shift,
    tuple_rank,
)
from polynet.polynomial.index import MonomialIndex
from polynet.polynomial.network_polynomial import NetworkPolynomial

__all__ = [
    "expand_truncated",
    "expand_truncated_exact",
    "truncated_peak_bytes",
    "push_forward",
    "taylor_shift",
    "homogeneous_tuples",
]


@dataclass
class _Block:
    """Block d of a truncated polynomial: values over listed positions of the block, or all."""

    values: Tensor  # (rows, len(positions)) or (rows, H(d))
    positions: Tensor | None = None  # local positions within the degree-d block, int64
    tuples: np.ndarray | None = None  # the listed monomials as sorted variable tuples


class _Poly:
    """``rows`` polynomials in ``n`` variables truncated at degree ``q``, by homogeneous block.

    ``blocks[d]`` is None where block d is zero.
    """

    def __init__(self, n: int, q: int, rows: int, blocks: list[_Block | None]) -> None:
        self.n, self.q, self.rows, self.blocks = n, q, rows, blocks

    def constant(self) -> Tensor:
        block = self.blocks[0]
        if block is None:
            return None
        return block.values[:, 0]

    def without_constant(self) -> _Poly:
        return _Poly(self.n, self.q, self.rows, [None, *self.blocks[1:]])

    def affine(self, weight: Tensor, bias: Tensor | None) -> _Poly:
        """weight @ self + bias; ``weight`` is (k, rows), or (rows,) for a diagonal map."""
        blocks: list[_Block | None] = []
        for block in self.blocks:
            if block is None:
                blocks.append(None)
                continue
            v = weight[:, None] * block.values if weight.dim() == 1 else weight @ block.values
            blocks.append(_Block(v, block.positions, block.tuples))
        k = weight.shape[0]
        if bias is not None:
            const = bias[:, None].clone()
            if blocks[0] is not None:
                const = const + blocks[0].values
            blocks[0] = _Block(const)
        return _Poly(self.n, self.q, k, blocks)

    def dense_block(self, d: int) -> Tensor:
        """Block d as a full (rows × H(d)) matrix (zeros where absent)."""
        block = self.blocks[d]
        ref = next(b.values for b in self.blocks if b is not None)
        out = ref.new_zeros(self.rows, _hom(self.n, d))
        if block is not None:
            if block.positions is None:
                out += block.values
            else:
                out.index_add_(1, block.positions, block.values)
        return out


def _local_map(n: int, da: int, db: int, device) -> Tensor:
    """Position in the degree-(da + db) block of s·t, s of degree da, t of degree db (local)."""
    return _local_map_cached(n, da, db, str(device))


@lru_cache(maxsize=32)
def _local_map_cached(n: int, da: int, db: int, device: str) -> Tensor:
    if da == 0 or db == 0:
        flat = torch.arange(_hom(n, da + db), device=device)
        return flat.reshape(1, -1) if da == 0 else flat.reshape(-1, 1)
    pmap = MonomialIndex(n, da + db).product_map(da, db)
    rows = slice(_start(n, da), _start(n, da + 1))
    cols = slice(_start(n, db), _start(n, db + 1))
    local = pmap[rows, cols] - _start(n, da + db)
    return torch.from_numpy(np.ascontiguousarray(local)).to(device)


def _targets(n: int, a: _Block, da: int, b: _Block, db: int, device) -> Tensor:
    if a.tuples is not None and b.tuples is not None:
        # Listed monomials on both sides (sums of univariate polynomials): rank the products
        # directly instead of building the whole product map.
        merged = np.concatenate(
            [
                np.repeat(a.tuples, len(b.tuples), axis=0),
                np.tile(b.tuples, (len(a.tuples), 1)),
            ],
            axis=1,
        )
        merged.sort(axis=1)
        return torch.from_numpy(tuple_rank(merged, n)).to(device)
    local = _local_map(n, da, db, device)
    if a.positions is not None:
        local = local[a.positions]
    if b.positions is not None:
        local = local[:, b.positions]
    return local.reshape(-1)


def _multiply(p: _Poly, r: _Poly, top: int) -> _Poly:
    """Row-wise product p·r truncated at degree ``top`` (dense blocks)."""
    ref = next(b.values for b in p.blocks if b is not None)
    out: list[_Block | None] = [None] * (top + 1)
    for da, a in enumerate(p.blocks):
        for db, b in enumerate(r.blocks):
            d = da + db
            if a is None or b is None or d > top:
                continue
            if out[d] is None:
                out[d] = _Block(ref.new_zeros(p.rows, _hom(p.n, d)))
            target = out[d].values
            flat = _targets(p.n, a, da, b, db, ref.device)
            ka, kb = a.values.shape[1], b.values.shape[1]
            step = max(1, CHUNK_ELEMENTS // max(1, ka * kb))
            for s in range(0, p.rows, step):
                outer = a.values[s : s + step, :, None] * b.values[s : s + step, None, :]
                target[s : s + step].index_add_(1, flat, outer.reshape(outer.shape[0], -1))
    return _Poly(p.n, top, p.rows, out)


def _gram_into(out: list[Tensor], p: _Poly, r: _Poly, weights: Tensor, top: int) -> None:
    """out[d][o] += Σ_j weights[o, j] p_j r_j, degree-d blocks for d ≤ top (one GEMM a pair)."""
    for da, a in enumerate(p.blocks):
        for db, b in enumerate(r.blocks):
            d = da + db
            if a is None or b is None or d > top:
                continue
            flat = _targets(p.n, a, da, b, db, weights.device)
            for o in range(weights.shape[0]):
                gram = (a.values * weights[o][:, None]).T @ b.values
                out[d][o].index_add_(0, flat, gram.reshape(-1))


def _add_into(out: list[Tensor], p: _Poly, scale: Tensor | None = None) -> None:
    """out[d] += scale[:, None] * block d of p (rows of p and out agree)."""
    for d, block in enumerate(p.blocks):
        if block is None or d >= len(out):
            continue
        v = block.values if scale is None else scale[:, None] * block.values
        if block.positions is None:
            out[d] += v
        else:
            out[d].index_add_(1, block.positions, v)


def _compose(run: list[Affine], width: int, device) -> tuple[Tensor, Tensor]:
    """One (k × width) matrix and bias for a run of affine stages (identity when empty).

    Leading diagonal stages (the re-centring shift, a BatchNorm) stay a vector until the first
    full matrix absorbs them, so re-centring costs no (n × n) product.
    """
    scale = torch.ones(width, dtype=torch.float64, device=device)
    weight: Tensor | None = None
    bias = torch.zeros(width, dtype=torch.float64, device=device)
    for aff in run:
        w = aff.weight.to(device)
        if w.dim() == 1 and weight is None:
            scale, bias = w * scale, w * bias
        elif w.dim() == 1:
            weight, bias = w[:, None] * weight, w * bias
        else:
            weight = w * scale[None, :] if weight is None else w @ weight
            bias = w @ bias
        bias = bias + aff.bias.to(device)
    if weight is None:
        weight = torch.diag(scale)
    return weight, bias


def _first_layer(
    lowered: LoweredNetwork, device
) -> tuple[Tensor, Tensor, list[list[Affine]], list[UnitPolynomials]]:
    affines, polys = _groups(lowered)
    weight, bias = _compose(affines[0], lowered.n_inputs, device)
    return weight, bias, affines, polys


def _is_identity(weight: Tensor) -> bool:
    m, n = weight.shape
    return m == n and bool(
        torch.equal(weight, torch.eye(n, dtype=weight.dtype, device=weight.device))
    )


def choose_variables(m1: int, n: int, q: int, identity: bool) -> str:
    """Where the walk runs: "x" (the inputs), or "u" (the first layer's m1 pre-activations)."""
    if identity:
        return "u"  # u = x: the first layer is univariate in the inputs themselves
    if m1 < n and (q <= 3 or max(m1, n) ** q <= DENSE_TENSOR_ELEMENTS):
        return "u"
    return "x"


def truncated_peak_bytes(lowered: LoweredNetwork, q: int) -> float:
    """Estimated peak memory of :func:`expand_truncated` (float64), from counts alone."""
    affines, polys = _groups(lowered)
    n = lowered.n_inputs
    n_out = lowered.n_outputs
    result = n_out * math.comb(n + q, q) * 8.0
    if not polys:
        return result
    first = affines[0]
    m1 = first[-1].out_features if first else n
    identity = not first
    where = choose_variables(m1, n, q, identity)
    nv = m1 if where == "u" else n
    t = math.comb(nv + q, q)
    widths = [m1]
    width = m1
    for run in affines[1:]:
        width = run[-1].out_features if run else width
        widths.append(width)
    peak = result
    if where == "x" and len(polys) == 1:
        peak += m1 * math.comb(n + max(q - 1, 0), max(q - 1, 0)) * 8.0 * (q >= 3)  # w², fused
    elif where == "x":
        peak += m1 * t * 8.0 * 2  # powers of the first layer's linear forms, and y1
    if len(polys) >= 3:
        peak += max(widths[1:-1]) * t * 8.0 * 3  # dense units of the middle layers
    if len(polys) >= 2:
        w2 = widths[1]
        peak += (
            w2 * math.comb(nv + max(q - 1, 0), max(q - 1, 0)) * 8.0 * 2
        )  # powers w^a, a >= 2, at degree < q
    if where == "u" and not identity:
        slab = min(CHUNK_ELEMENTS, n * m1 * m1)  # the push-forward's slab of S_a
        peak += n_out * t * 8.0 + min(m1**q, 1 << 30) * 8.0 + slab * 8.0 * 2
    # One chunk of an outer product of two blocks (each at most T(q) wide) over the rows, at
    # most CHUNK_ELEMENTS: a small network's scratch is its own size, not the chunk's.
    rows = max([m1, *widths, n_out])
    return peak + min(CHUNK_ELEMENTS, rows * t * t) * 8.0


def expand_truncated(lowered: LoweredNetwork, q: int, device) -> Tensor:
    """Coefficients of the degree ≤ q part over MonomialIndex(n, q): (n_outputs, C(n + q, q)).

    float64 on ``device``. A re-centred expansion is the same walk on a network whose first
    stage is the affine map u ↦ u + x0.
    """
    n = lowered.n_inputs
    weight, bias, affines, polys = _first_layer(lowered, device)
    if not polys:
        out = torch.zeros(weight.shape[0], math.comb(n + q, q), dtype=torch.float64, device=device)
        out[:, 0] = bias
        if q >= 1:
            out[:, 1 : n + 1] = weight
        return out
    m1 = weight.shape[0]
    identity = _is_identity(weight)
    where = choose_variables(m1, n, q, identity)
    gamma = taylor_shift(polys[0].coefficients.to(device), bias, q)  # (m1, min(k1, q) + 1)
    nv = m1 if where == "u" else n
    if len(polys) == 1 and where == "x":
        # One SLAF in x: Σ_j V[o, j] q_j(w_j·x + b_j) as Gram folds of the linear forms, not
        # a dense power of each of the m1 forms (a conv layer has m1 = C·H·W of them).
        v, c = _compose(affines[1], m1, device)
        linear = _Poly(n, q, m1, [_Block(bias[:, None]), _Block(weight)] + [None] * (q - 1))
        return torch.cat(_fused_last(linear, polys[0].coefficients.to(device), v, c, q), dim=1)
    y1 = _first_polynomials(gamma, weight, nv, q, where, device)
    if len(polys) == 1:
        v, c = _compose(affines[1], m1, device)
        out = [y1.dense_block(d).new_zeros(v.shape[0], _hom(nv, d)) for d in range(q + 1)]
        _add_into(out, y1.affine(v, c))
    else:
        p = y1
        for i in range(1, len(polys)):
            v, c = _compose(affines[i], p.rows, device)
            z = p.affine(v, c)
            alpha = polys[i].coefficients.to(device)
            if i == len(polys) - 1:
                tail_v, tail_c = _compose(affines[i + 1], z.rows, device)
                out = _fused_last(z, alpha, tail_v, tail_c, q)
            else:
                p = _apply_polynomials(z, alpha, q)
    if where == "x" or identity:
        return torch.cat(out, dim=1)
    result = weight.new_empty(out[0].shape[0], math.comb(n + q, q))
    for d in range(q + 1):
        block = out[d]
        out[d] = None  # freed as it is pushed
        span = result[:, _start(n, d) : _start(n, d + 1)]
        if d == 3:
            _push_forward_3(block, weight, span)
        else:
            span.copy_(push_forward(block, weight, d))
    return result


def _first_polynomials(gamma: Tensor, weight: Tensor, nv: int, q: int, where: str, device):
    """y1_j = Σ_r γ_jr (w_j·x)^r: pure powers u_j^r in u, or dense powers of w_j·x in x."""
    m1 = gamma.shape[0]
    blocks: list[_Block | None] = [_Block(gamma[:, :1].clone())] + [None] * q
    if where == "u":
        for r in range(1, gamma.shape[1]):
            pure = np.repeat(np.arange(nv, dtype=np.int64)[:, None], r, axis=1)
            blocks[r] = _Block(torch.diag(gamma[:, r]), _pure_powers(nv, r, device), pure)
        return _Poly(nv, q, m1, blocks)
    linear = _Poly(nv, q, m1, [None, _Block(weight.clone())] + [None] * (q - 1))
    power = linear
    for r in range(1, gamma.shape[1]):
        if r > 1:
            power = _multiply(power, linear, r)
        blocks[r] = _Block(gamma[:, r, None] * power.blocks[r].values)
    return _Poly(nv, q, m1, blocks)


def _split(z: _Poly, alpha: Tensor, q: int) -> tuple[_Poly, Tensor]:
    """The units' polynomials re-centred at their constant terms: (w, β)."""
    const = z.constant()
    if const is None:
        const = alpha.new_zeros(z.rows)
    return z.without_constant(), taylor_shift(alpha, const, q)


def _apply_polynomials(z: _Poly, alpha: Tensor, q: int) -> _Poly:
    """Σ_s β_s w^s per unit, dense, truncated at q."""
    w, beta = _split(z, alpha, q)
    out = [beta.new_zeros(z.rows, _hom(z.n, d)) for d in range(q + 1)]
    out[0][:, 0] = beta[:, 0]
    power = w
    for s in range(1, beta.shape[1]):
        if s > 1:
            power = _multiply(power, w, q)
        _add_into(out, power, beta[:, s])
    return _Poly(z.n, q, z.rows, [_Block(b) for b in out])


def _fused_last(z: _Poly, alpha: Tensor, v: Tensor, c: Tensor, q: int) -> list[Tensor]:
    """Σ_i V[o, i] Σ_s β_is w_i^s + c: the last polynomial stage and the map after it."""
    w, beta = _split(z, alpha, q)
    out = [beta.new_zeros(v.shape[0], _hom(z.n, d)) for d in range(q + 1)]
    out[0][:, 0] = c + v @ beta[:, 0]
    if beta.shape[1] > 1:
        _add_into(out, w.affine(v * beta[:, 1][None, :], None))
    top_s = beta.shape[1] - 1
    powers = {1: w}
    for a in range(2, (top_s + 1) // 2 + 1):
        # w^a has no term below degree a and meets a partner of degree >= 1: keep < q.
        powers[a] = _multiply(powers[a - 1], w, q - 1)
    for s in range(2, top_s + 1):
        _gram_into(out, powers[(s + 1) // 2], powers[s // 2], v * beta[:, s][None, :], q)
    return out


def expand_truncated_exact(lowered: LoweredNetwork, q: int, index: MonomialIndex, kind: str):
    """Exact coefficients (object array of Fraction) of the degree ≤ q part, by the ring walk
    of :mod:`polynet.expansion.ring_walk` truncated after every product."""
    from polynet.expansion.ring_walk import _affine, dense_fractions, horner, make_ring

    ring = make_ring(kind, lowered.n_inputs)
    units = list(ring.gens)
    for stage in lowered.stages:
        if isinstance(stage, Affine):
            units = _affine(ring, stage, units)
        else:
            alpha = stage.coefficients.cpu().numpy()
            units = [horner(ring, alpha[j], z, q) for j, z in enumerate(units)]
    return dense_fractions(ring, units, index, q)


def check_center(at: ArrayLike | Tensor, n: int) -> np.ndarray:
    """The expansion point as n finite float64 values (an image is flattened)."""
    try:
        center = np.asarray(
            at.detach().cpu().numpy() if torch.is_tensor(at) else at, dtype=np.float64
        ).reshape(-1)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"at= must be a point of {n} input values, got {at!r}.") from exc
    if center.shape != (n,):
        raise ValueError(
            f"at= must have {n} values (one per network input), got {center.size}; pass one "
            "sample, e.g. X[0], not a batch."
        )
    if not np.isfinite(center).all():
        raise ValueError("at= values must be finite.")
    return center


def recentre(lowered: LoweredNetwork, center: np.ndarray) -> LoweredNetwork:
    """The network as a function of u = x - center: the affine map u ↦ u + center first."""
    n = lowered.n_inputs
    device = _device_of(lowered)
    shift = Affine(
        torch.ones(n, dtype=torch.float64, device=device),
        torch.as_tensor(center, dtype=torch.float64, device=device),
        ("at",),
    )
    return LoweredNetwork((shift, *lowered.stages), n, lowered.input_shape)


def _device_of(lowered: LoweredNetwork) -> torch.device:
    for stage in lowered.stages:
        return (stage.bias if isinstance(stage, Affine) else stage.coefficients).device
    return torch.device("cpu")


def _fmt(n: float) -> str:
    return f"{n:.3g}" if n >= 1e6 else f"{n:,.0f}"


def refuse_truncated(
    n: int, q: int, peak: float, budget: float, *, n_outputs: int = 1, exact: bool = False
) -> ExpansionTooLargeError:
    """The refusal of a degree ≤ q part over the budget, with the lower degrees' sizes."""
    from polynet.memory import fmt_bytes

    lower = ", ".join(f"degree={r}: {_fmt(math.comb(n + r, r))} terms" for r in range(1, min(q, 4)))
    outputs = f" x {n_outputs} outputs" if n_outputs > 1 else ""
    return ExpansionTooLargeError(
        f"the degree <= {q} part in {n} inputs has {_fmt(math.comb(n + q, q))} monomials"
        f"{outputs} and needs about {fmt_bytes(peak)}{' on the exact path' if exact else ''}, "
        f"over the budget of {fmt_bytes(budget)}; ask for a lower degree "
        f"({lower or 'degree=1'}), expand a subset of the inputs with inputs= and fixed=, or "
        "raise max_memory=."
    )


def taylor_variables(names: list[str] | None, n: int, several: bool = False) -> list[str]:
    """Names of the variables u = x - x0: ``u0, ...`` (``u_x0, ..., u_y0, ...`` for several
    inputs, where the index alone would repeat)."""
    names = names or [f"x{i}" for i in range(n)]
    if several:
        return [f"u_{v}" for v in names]
    return [("u" + v[1:]) if v.startswith("x") else f"u{i}" for i, v in enumerate(names)]


def taylor_notes(q: int | None, center: np.ndarray | None, network_degree: int) -> dict[str, Any]:
    """``notes["taylor"]``: the degree asked for, the centre, the network's degree D."""
    return {
        "taylor": {
            "degree": q,
            "center": None if center is None else center.tolist(),
            "network_degree": network_degree,
        }
    }


def truncated_polynomial(
    lowered: LoweredNetwork,
    degree: int,
    *,
    exact: bool | str,
    device: torch.device,
    budget: int,
    center: np.ndarray | None = None,
    variables: list[str] | None = None,
    n_network_parameters: int | None = None,
    info: dict | None = None,
) -> NetworkPolynomial:
    """The degree ≤ ``degree`` part of ``lowered``'s polynomial (at ``center``: in u = x - x0)
    as a NetworkPolynomial over MonomialIndex(n, min(degree, D)), after a memory check.

    Its ``degree_bound`` stays the network's D; ``notes["taylor"]`` says what it is.
    """
    import time

    start = time.perf_counter()
    n, D = lowered.n_inputs, lowered.degree_bound
    # Above D the part of degree <= q is the whole polynomial: held over degree D, as the
    # traced path holds it (a model must not change shape with the route it takes).
    q = min(degree, D)
    if center is not None:
        lowered = recentre(lowered, center)
    index = MonomialIndex(n, q)
    if exact:
        width = max([n] + [s.out_features for s in lowered.stages if isinstance(s, Affine)])
        peak = width * index.size * 200.0
    else:
        peak = truncated_peak_bytes(lowered, q)
    if peak > budget:
        raise refuse_truncated(n, q, peak, budget, n_outputs=lowered.n_outputs, exact=bool(exact))
    if exact:
        if exact == "modular":
            raise ValueError(
                "exact='modular' is not available with degree=; use exact=True (python-flint "
                "or SymPy rationals)."
            )
        kind = exact if isinstance(exact, str) else _exact_kind()
        coefficients = expand_truncated_exact(lowered, q, index, kind)
        engine = f"{kind} truncated"
    else:
        coefficients = expand_truncated(lowered, q, device)
        engine = "float64 truncated"
    names = variables if center is None else taylor_variables(variables, n)
    notes = taylor_notes(degree, center, D)
    return NetworkPolynomial(
        index,
        coefficients,
        degree_bound=D,
        variables=names,
        n_network_parameters=n_network_parameters,
        notes=notes,
        info={
            **(info or {}),
            "seconds": time.perf_counter() - start,
            "engine": engine,
            "device": str(device),
        },
    )


def _exact_kind() -> str:
    try:
        import flint  # noqa: F401

        return "flint"
    except ImportError:
        return "sympy"


def describe(poly: Any) -> str | None:
    """One line saying what a truncated or re-centred polynomial is, or None for a whole one."""
    taylor = (getattr(poly, "notes", None) or {}).get("taylor")  # stores keep no notes
    if not taylor:
        return None
    q, center, D = taylor.get("degree"), taylor.get("center"), taylor.get("network_degree")
    where = "at the origin" if center is None else "at x0, in u = x - x0"
    if q is None:
        return f"the network's whole polynomial, re-centred {where}"
    if D is not None and q >= D:
        return f"the network's whole polynomial (degree {D} <= {q}), {where}"
    return (
        f"the network's Taylor polynomial of degree {q} {where}: the part of degree <= {q} of "
        f"its degree-{D} polynomial, not the whole network"
    )


def expand_taylor(
    model,
    degree: int | None,
    at: ArrayLike | Tensor | None,
    *,
    exact: bool | str = False,
    device=None,
    inputs=None,
    fixed=None,
    max_memory=None,
    input_shape=None,
) -> NetworkPolynomial:
    """``expand(model, degree=, at=)``: the chain model's Taylor polynomial of degree ``degree``
    at ``at`` (the origin when None), or its whole polynomial re-centred at ``at``.

    ``model`` is a resolved chain (``expand`` has read checkpoints and traced custom chains).
    """
    import time

    from polynet.expansion.dense import FloatOps, plan, walk
    from polynet.expansion.dispatch import (
        _budget,
        _check_budget,
        _expand_exact,
        _work_device,
        lower_sliced,
    )
    from polynet.validation import check_int

    if degree is not None:
        degree = check_int(degree, "degree", 0, hint="degree=1 gives the constant and linear terms")
    lowered, variables, info = lower_sliced(model, input_shape, device, inputs, fixed)
    center = None if at is None else check_center(at, lowered.n_inputs)
    work_device = _work_device(lowered, device)
    budget = _budget(max_memory, work_device)
    n_params = sum(p.numel() for p in model.parameters())
    if degree is not None:
        return truncated_polynomial(
            lowered,
            degree,
            exact=exact,
            device=work_device,
            budget=budget,
            center=center,
            variables=variables,
            n_network_parameters=n_params,
            info=info,
        )
    # The whole polynomial re-centred: the dense walk on x = u + x0.
    start = time.perf_counter()
    shifted = recentre(lowered, center)
    the_plan = plan(shifted)
    _check_budget(shifted, the_plan, budget, exact, device=work_device)
    if exact:
        coefficients = _expand_exact(shifted, exact, the_plan, work_device, None)
    else:
        coefficients = walk(shifted, FloatOps(work_device), the_plan, work_device)
    names = variables or [f"x{i}" for i in range(lowered.n_inputs)]
    return NetworkPolynomial(
        the_plan.index,
        coefficients,
        degree_bound=lowered.degree_bound,
        variables=["u" + v[1:] for v in names],
        n_network_parameters=n_params,
        notes={
            "taylor": {
                "degree": None,
                "center": center.tolist(),
                "network_degree": lowered.degree_bound,
            }
        },
        info={
            **info,
            "seconds": time.perf_counter() - start,
            "engine": "float64" if not exact else str(exact),
            "device": str(work_device),
        },
    )


def homogeneous_values(block: Tensor, v: Tensor, d: int) -> Tensor:
    """Σ_α c_α v^α over one degree-d block: (rows × H(n, d)), (B × n) → (B × rows).

    Goes one leading variable at a time (the tuples starting with a are the degree-(d-1)
    block of the variables a..n-1), so no exponent table is built.
    """
    n = v.shape[1]
    if d == 0:
        return block[:, 0].expand(v.shape[0], -1).clone()
    if d == 1:
        return v @ block.T
    if d == 2:
        iu = torch.triu_indices(n, n, device=v.device)
        return (v[:, iu[0]] * v[:, iu[1]]) @ block.T
    out = v.new_zeros(v.shape[0], block.shape[0])
    pos = 0
    for a in range(n):
        size = _hom(n - a, d - 1)
        tail = homogeneous_values(block[:, pos : pos + size], v[:, a:], d - 1)
        out += v[:, a : a + 1] * tail
        pos += size
    return out


def taylor_errors(
    model: torch.nn.Module, poly: NetworkPolynomial, n_directions: int = 3, seed: int = 0
) -> list[float]:
    """Per degree block r, max over random directions v of |P_r(v) - (d/dt)^r f(x0 + t v)/r!|
    at t = 0, relative to the largest such derivative (absolute where it is 0).

    The reference is float64 autograd of the model (a copy) along each line; ``poly`` is a
    Taylor polynomial from ``expand(model, degree=q[, at=x0])`` (x0 = 0 without ``at``).
    """
    import copy

    taylor = poly.notes.get("taylor") or {}
    q = poly.index.degree
    n = poly.n_vars
    gen = torch.Generator().manual_seed(seed)
    directions = torch.randn(n_directions, n, generator=gen, dtype=torch.float64)
    directions = directions.to(poly.device)
    center = torch.as_tensor(taylor.get("center") or [0.0] * n, dtype=torch.float64)
    center = center.to(poly.device)
    net = copy.deepcopy(model).to(device=poly.device, dtype=torch.float64).eval()
    t = torch.zeros(n_directions, dtype=torch.float64, device=poly.device, requires_grad=True)
    x = center + t[:, None] * directions
    if poly.slice is not None:
        x = poly.slice.embed(x)
    shape = poly.input_shape
    y = net(x.reshape(-1, *shape) if shape and len(shape) > 1 else x).reshape(n_directions, -1)
    jets = torch.zeros(q + 1, n_directions, poly.n_outputs, dtype=torch.float64)
    for o in range(poly.n_outputs):
        g = y[:, o]
        for r in range(q + 1):
            jets[r, :, o] = g.detach().cpu() / math.factorial(r)
            if r < q:
                (g,) = torch.autograd.grad(g.sum(), t, create_graph=True, allow_unused=True)
                if g is None:  # no dependence left on t
                    break
    errors = []
    coef = poly.coefficients
    for r in range(q + 1):
        block = coef[:, _start(n, r) : _start(n, r + 1)]
        got = homogeneous_values(block, directions, r).cpu()
        scale = float(jets[r].abs().max())
        err = float((got - jets[r]).abs().max())
        errors.append(err / scale if scale > 0 else err)
    return errors


def point_from_checkpoint(ckpt, spec: str) -> np.ndarray:
    """The point ``--at`` names: ``test:I``/``train:I`` (a row of the checkpoint's data, in the
    model's own inputs), a bare ``I`` (= ``test:I``), or n comma-separated values."""
    text = str(spec).strip()
    split, _, row = text.rpartition(":")
    if "," in text or (not row.isdigit()):
        try:
            # "0.5," is one input's value (a bare "0" is a row number).
            return np.array([float(v) for v in text.split(",") if v.strip()], dtype=np.float64)
        except ValueError:
            raise ValueError(
                f"--at must be 'test:I', 'train:I', a row number I, or comma-separated input "
                f"values, got {spec!r}."
            ) from None
    split = split or "test"
    if split not in ("test", "train"):
        raise ValueError(f"--at names the split 'test' or 'train', got {split!r} in {spec!r}.")
    from polynet import data

    metadata = getattr(ckpt, "metadata", None) or {}
    if "dataset" not in metadata:
        raise ValueError(
            f"--at {spec} names a row of the model's data, but this model carries no data (an "
            "ONNX file, a .pt2 archive, module:Class, or a checkpoint trained on arrays); give "
            "the point as its input values separated by commas, e.g. --at 0.5,1,0 (one input: "
            "--at 0.5,)."
        )
    ds = data.from_metadata(metadata)
    rows = ds.X_test if split == "test" else ds.X_train
    i = int(row)
    if i >= len(rows):
        raise ValueError(
            f"--at {spec}: the {split} split has {len(rows)} rows (0..{len(rows) - 1})."
        )
    return np.asarray(rows[i], dtype=np.float64).reshape(-1)
