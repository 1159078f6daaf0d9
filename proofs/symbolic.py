"""A SymPy mirror of polynet models: the network as a polynomial in its inputs and parameters.

:func:`network_polynomial` walks an evaluation-mode ``nn.Sequential`` of Linear, Conv2d,
AvgPool2d, Flatten, BatchNorm and SLAF layers and returns each output as an element of a SymPy
polynomial ring over QQ whose generators are the inputs x0, x1, ... and, in symbolic mode, every
parameter of the model. It shares no code with polynet's forward pass or expander: the basis
polynomials come from SymPy's own ``chebyshevt`` and ``legendre``, so agreement with the torch
forward pass (:func:`max_forward_error`) is an independent check of both.

Parameters of an SLAF are named by what they are in the SLAF formula
``a(z) = Σ_i c_i · r_i · (φ_i(z) − μ_i) + b`` with ``r_i = 1/sqrt(σ²_i + ε)``: the reciprocal
standard deviation is its own generator, so the network is a polynomial in all of them.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cache
from math import comb

import numpy as np
import sympy
import torch
from sympy import QQ
from sympy.polys.rings import PolyElement, PolyRing, ring
from torch import nn

import polynet

__all__ = [
    "basis_matrix",
    "network_polynomial",
    "NetworkPoly",
    "x_support",
    "x_degree",
    "homogeneous_part",
    "max_forward_error",
    "n_monomials",
    "parameter_jacobian",
]


def n_monomials(n_vars: int, degree: int) -> int:
    """C(n + D, D): the number of monomials of total degree <= D in n variables."""
    return comb(n_vars + degree, degree)


@cache
def basis_matrix(basis: str, degree: int) -> tuple[tuple[sympy.Rational, ...], ...]:
    """M with φ_i(z) = Σ_j M[j][i-1] z^j, from SymPy's own definitions of the basis polynomials.

    >>> basis_matrix("chebyshev", 2)
    ((0, -1), (1, 0), (0, 2))
    """
    z = sympy.Symbol("z")
    family: dict[str, Callable[[int], sympy.Expr]] = {
        "taylor": lambda i: z**i,
        "chebyshev": lambda i: sympy.chebyshevt(i, z),
        "legendre": lambda i: sympy.legendre(i, z),
    }
    if basis not in family:
        raise ValueError(f"no polynomial basis {basis!r}")
    cols = []
    for i in range(1, degree + 1):
        coeffs = sympy.Poly(family[basis](i), z).all_coeffs()[::-1]
        cols.append(
            [sympy.Rational(c) for c in coeffs] + [sympy.Rational(0)] * (degree + 1 - len(coeffs))
        )
    return tuple(tuple(cols[i][j] for i in range(degree)) for j in range(degree + 1))


@dataclass
class NetworkPoly:
    """The outputs of a model as ring elements, with the ring and the number of inputs."""

    ring: PolyRing
    n_vars: int
    input_shape: tuple[int, ...]
    outputs: list[PolyElement]
    params: dict[str, PolyElement]


def _exact(value: float) -> object:
    return QQ(*float(value).as_integer_ratio())


class _Source:
    """Parameter values: a fresh generator per name (symbolic) or the exact float (numeric)."""

    def __init__(self, symbolic: bool, folded: bool) -> None:
        self.symbolic = symbolic
        self.folded = folded
        self.names: list[str] = []
        self.gens: dict[str, PolyElement] | None = None
        self.one: object = 1
        self.values: dict[str, object] = {}
        self.perturb: str | None = None  # numeric mode: this parameter becomes value + eps
        self.eps: object = 0

    def get(self, name: str, value: float) -> object:
        if not self.symbolic:
            out = self.one * _exact(value)
            return out + self.eps if name == self.perturb else out
        if self.gens is None:  # first pass: record the name and its value
            self.names.append(name)
            self.values[name] = _exact(value)
            return 0
        return self.gens[name]

    def array(self, name: str, values: torch.Tensor) -> np.ndarray:
        flat = values.detach().double().reshape(-1).tolist()
        out = np.empty(len(flat), dtype=object)
        for i, v in enumerate(flat):
            index = np.unravel_index(i, tuple(values.shape)) if values.dim() else ()
            out[i] = self.get(f"{name}_{'_'.join(map(str, index))}", v)
        return out.reshape(tuple(values.shape))


def _slaf(layer: polynet.SLAF, h: np.ndarray, name: str, src: _Source) -> np.ndarray:
    k = layer.degree
    basis = layer.basis.name
    out = np.empty_like(h)
    if src.folded:
        alpha = layer.polynomial()
    else:
        M = [[QQ(m.p, m.q) for m in row] for row in basis_matrix(basis, k)]
        coef = layer.coefficient().detach()
        if coef.dim() == 1:
            coefs = src.array(f"{name}_c", coef)
            coefs = np.tile(coefs, (layer.num_features, 1))
        else:
            coefs = src.array(f"{name}_c", coef)
        r = 1 / torch.sqrt(layer.running_var.double() + layer.eps)
        rs = src.array(f"{name}_r", r)
        mus = src.array(f"{name}_mu", layer.running_mean)
        bs = src.array(f"{name}_b", layer.bias)
    for j in range(layer.num_features):
        zs = h[j]
        powers = [np.ones_like(zs) * src.one if isinstance(zs, np.ndarray) else src.one, zs]
        for _ in range(k - 1):
            powers.append(powers[-1] * zs)
        if src.folded:
            a = src.array(f"{name}_alpha{j}", alpha[j])
            out[j] = sum(powers[m] * a[m] for m in range(k + 1))
            continue
        acc = powers[0] * bs[j]
        for i in range(k):
            phi = sum(powers[m] * M[m][i] for m in range(i + 2) if M[m][i] != 0)
            acc = acc + (phi - mus[j, i]) * (coefs[j, i] * rs[j, i])
        out[j] = acc
    return out


def _conv(layer: nn.Conv2d, h: np.ndarray, name: str, src: _Source) -> np.ndarray:
    if layer.stride != (1, 1) or layer.dilation != (1, 1) or layer.groups != 1:
        raise NotImplementedError("the mirror supports stride 1, dilation 1, groups 1 only")
    if layer.padding_mode != "zeros" or isinstance(layer.padding, str):
        raise NotImplementedError("the mirror supports integer zero padding only")
    W = src.array(f"{name}_w", layer.weight)
    b = src.array(f"{name}_b", layer.bias) if layer.bias is not None else None
    ph, pw = layer.padding
    c_in, height, width = h.shape
    padded = np.full((c_in, height + 2 * ph, width + 2 * pw), 0, dtype=object)
    padded[:, ph : ph + height, pw : pw + width] = h
    kh, kw = layer.kernel_size
    oh, ow = height + 2 * ph - kh + 1, width + 2 * pw - kw + 1
    out = np.empty((layer.out_channels, oh, ow), dtype=object)
    for o in range(layer.out_channels):
        for i in range(oh):
            for j in range(ow):
                acc = (W[o] * padded[:, i : i + kh, j : j + kw]).sum()
                out[o, i, j] = acc + (b[o] if b is not None else 0)
    return out


def _avgpool(layer: nn.AvgPool2d, h: np.ndarray) -> np.ndarray:
    k = layer.kernel_size if isinstance(layer.kernel_size, int) else layer.kernel_size[0]
    stride = layer.stride if isinstance(layer.stride, int) else layer.stride[0]
    if stride != k or layer.padding not in (0, (0, 0)):
        raise NotImplementedError("the mirror supports AvgPool2d(k) with stride k, no padding")
    c, height, width = h.shape
    out = np.empty((c, height // k, width // k), dtype=object)
    for i in range(height // k):
        for j in range(width // k):
            block = h[:, i * k : (i + 1) * k, j * k : (j + 1) * k]
            out[:, i, j] = block.reshape(c, -1).sum(axis=1) * QQ(1, k * k)
    return out


def _batchnorm(layer: nn.modules.batchnorm._BatchNorm, h, name, src) -> np.ndarray:
    r = 1 / torch.sqrt(layer.running_var.double() + layer.eps)
    rs, mus = src.array(f"{name}_r", r), src.array(f"{name}_mu", layer.running_mean)
    gamma = src.array(f"{name}_g", layer.weight)
    beta = src.array(f"{name}_beta", layer.bias)
    out = np.empty_like(h)
    for c in range(h.shape[0]):
        out[c] = (h[c] - mus[c]) * (rs[c] * gamma[c]) + beta[c]
    return out


def _walk(model: nn.Sequential, xs: list, src: _Source, input_shape: tuple[int, ...]) -> list:
    h = np.empty(len(xs), dtype=object)
    h[:] = xs
    h = h.reshape(input_shape)
    for i, layer in enumerate(model):
        name = f"L{i}"
        if isinstance(layer, nn.Linear):
            W = src.array(f"{name}_w", layer.weight)
            h = W @ h
            if layer.bias is not None:
                h = h + src.array(f"{name}_b", layer.bias)
        elif isinstance(layer, polynet.SLAF):
            h = _slaf(layer, h, name, src)
        elif isinstance(layer, nn.Conv2d):
            h = _conv(layer, h, name, src)
        elif isinstance(layer, nn.AvgPool2d):
            h = _avgpool(layer, h)
        elif isinstance(layer, nn.Flatten):
            h = h.reshape(-1)
        elif isinstance(layer, (nn.BatchNorm1d, nn.BatchNorm2d)):
            h = _batchnorm(layer, h, name, src)
        elif isinstance(layer, (nn.Dropout, nn.Identity)):
            pass
        else:
            raise NotImplementedError(f"the mirror has no rule for {type(layer).__name__}")
    return list(h.reshape(-1))


def network_polynomial(
    model: nn.Sequential,
    input_shape: int | tuple[int, ...],
    *,
    symbolic: bool = True,
    folded: bool = False,
) -> NetworkPoly:
    """Each output of ``model`` (evaluation mode) as a polynomial over QQ.

    With ``symbolic=True`` every parameter is a generator of the ring (so a coefficient of a
    monomial in x is a polynomial in the parameters); with ``symbolic=False`` the parameters
    are the model's float64 values as exact rationals and the ring has only the x's. With
    ``folded=True`` each SLAF channel is parametrised by its monomial coefficients α_j
    (the folding lemma) instead of (c, r, μ, b).

    >>> net = polynet.SLNN(2, [1], 2).double().eval()
    >>> p = network_polynomial(net, 2)
    >>> x_degree(p.outputs[0], p.n_vars)
    2
    """
    shape = (input_shape,) if isinstance(input_shape, int) else tuple(input_shape)
    n_vars = int(np.prod(shape))
    xnames = [f"x{i}" for i in range(n_vars)]
    src = _Source(symbolic, folded)
    if symbolic:
        with torch.no_grad():
            _walk(model, [0] * n_vars, src, shape)  # records the parameter names
    R, *gens = ring(xnames + src.names, QQ)
    src.gens = dict(zip(src.names, gens[n_vars:]))
    src.one = R.one
    with torch.no_grad():
        outs = _walk(model, gens[:n_vars], src, shape)
    return NetworkPoly(R, n_vars, shape, [R(o) for o in outs], src.gens)


def x_support(poly: PolyElement, n_vars: int) -> dict[tuple[int, ...], PolyElement]:
    """Group ``poly`` by its x-monomial: exponent of x -> coefficient (a polynomial in the rest).

    An x-monomial is present iff its coefficient is a non-zero polynomial in the parameters,
    i.e. iff it is non-zero for generic parameters.
    """
    R = poly.ring
    groups: dict[tuple[int, ...], PolyElement] = {}
    for monom, coeff in poly.items():
        key = monom[:n_vars]
        rest = (0,) * n_vars + monom[n_vars:]
        groups[key] = groups.get(key, R.zero) + R({rest: coeff})
    return groups


def x_degree(poly: PolyElement, n_vars: int) -> int:
    """Total degree of ``poly`` in x0..x_{n-1} (-1 for the zero polynomial)."""
    return max((sum(m[:n_vars]) for m in poly.itermonoms()), default=-1)


def homogeneous_part(poly: PolyElement, n_vars: int, degree: int) -> PolyElement:
    """The terms of ``poly`` of total degree ``degree`` in x."""
    R = poly.ring
    return R({m: c for m, c in poly.items() if sum(m[:n_vars]) == degree})


def max_forward_error(
    model: nn.Module, poly: NetworkPoly, points: Iterable[Iterable[float]]
) -> float:
    """max |polynomial(x) − model(x)| over ``points`` (numeric-mode polynomials, float64)."""
    pts = [list(map(float, p)) for p in points]
    with torch.no_grad():
        ref = model(torch.tensor(pts, dtype=torch.float64).reshape(len(pts), *poly.input_shape))
    ref = ref.reshape(len(pts), -1)
    worst = 0.0
    for i, p in enumerate(pts):
        vals = [_exact(v) for v in p]
        for o, out in enumerate(poly.outputs):
            worst = max(worst, abs(float(out(*vals)) - ref[i, o].item()))
    return worst


def parameter_jacobian(
    model: nn.Sequential, input_shape: int | tuple[int, ...]
) -> tuple[list[str], dict[str, object], list[tuple[int, tuple[int, ...]]], list[list[object]]]:
    """The exact Jacobian of the map θ ↦ coefficients, at the model's own parameter values.

    θ are the folded parameters (Linear/BatchNorm entries and each SLAF channel's monomial
    coefficients α, named ``L{i}_alpha{j}_{m}``). Returns the parameter names, their values
    (exact rationals), the rows' (output, exponent) labels in a fixed order, and J as a list of
    rows of rationals: J[row][col] = ∂ coefficient(row) / ∂ θ[col]. Each column comes from one
    walk with that parameter replaced by value + ε, reading off the coefficient of ε.
    """
    shape = (input_shape,) if isinstance(input_shape, int) else tuple(input_shape)
    n_vars = int(np.prod(shape))
    rec = _Source(symbolic=True, folded=True)
    with torch.no_grad():
        _walk(model, [0] * n_vars, rec, shape)
    R, *gens = ring([f"x{i}" for i in range(n_vars)] + ["eps"], QQ)
    columns: list[dict[tuple[int, tuple[int, ...]], object]] = []
    for name in rec.names:
        src = _Source(symbolic=False, folded=True)
        src.one, src.eps, src.perturb = R.one, gens[n_vars], name
        with torch.no_grad():
            outs = _walk(model, gens[:n_vars], src, shape)
        col = {}
        for o, out in enumerate(outs):
            for monom, coeff in R(out).items():
                if monom[n_vars] == 1:
                    col[(o, monom[:n_vars])] = coeff
        columns.append(col)
    D = math.prod(m.degree for m in model.modules() if isinstance(m, polynet.SLAF))
    n_out = len(outs)
    exps = [
        tuple(combo.count(i) for i in range(n_vars))
        for d in range(D + 1)
        for combo in itertools.combinations_with_replacement(range(n_vars), d)
    ]
    rows = [(o, e) for o in range(n_out) for e in exps]
    J = [[col.get(row, QQ(0)) for col in columns] for row in rows]
    return rec.names, rec.values, rows, J
