"""Theorem A, executable: the error bound of an SLNN that replaces a network's activations.

The objects of ``proofs/theorem_a.md`` computed for a concrete network: the calibration
intervals, the per-unit approximation errors δ, the propagated bounds E_l (pre-activations),
e_l (activations) and the output bound, in the per-unit form and in the operator-norm form; and
the measured errors they bound. :func:`polynet.from_network` builds the SLNN; everything else here
is computed independently of it, from the original network and the SLNN's layers.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from numpy.polynomial import chebyshev as cheb
from torch import Tensor, nn

import polynet

__all__ = [
    "LIPSCHITZ",
    "BoundReport",
    "toy_data",
    "train_network",
    "theorem_a_bound",
    "bernstein_rho",
    "jackson_degree",
    "jackson_error",
    "analytic_error",
    "algebraic_order",
    "geometric_rate",
    "single_thread",
    "certified_sup",
    "calibration",
    "gains",
    "degrees_for_target",
    "TANH_POLES",
]

#: Global Lipschitz constants of the activations (sup |σ'|).
LIPSCHITZ = {nn.Tanh: 1.0, nn.ReLU: 1.0, nn.Sigmoid: 0.25}
#: sup |σ''| of the smooth activations (ReLU has none: its δ is certified to first order).
CURVATURE = {nn.Tanh: 4 / (3 * math.sqrt(3)), nn.Sigmoid: math.sqrt(3) / 18}

#: Points of the probing grid of the certified supremum (:func:`certified_sup`).
GRID = 257
#: The most points of its first uniform grid.
MAX_GRID = 65537
#: Relative accuracy to which :func:`certified_sup` pins down each δ.
SUP_RTOL = 1e-3


def toy_data(n: int = 512, seed: int = 0) -> tuple[Tensor, Tensor]:
    """A 2-D regression task on [−1, 1]²: y = sin(π x0)·cos(π x1 / 2) + x0·x1."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 2, generator=g, dtype=torch.float64) * 2 - 1
    y = torch.sin(math.pi * x[:, :1]) * torch.cos(math.pi * x[:, 1:] / 2) + x[:, :1] * x[:, 1:]
    return x, y


def train_network(
    activation: type[nn.Module], hidden: tuple[int, ...] = (16, 16), steps: int = 300, seed: int = 0
) -> nn.Sequential:
    """A small float64 MLP with the given activation, trained briefly on :func:`toy_data`."""
    with single_thread():
        return _train(activation, hidden, steps, seed)


def _train(activation: type[nn.Module], hidden: tuple[int, ...], steps: int, seed: int):
    torch.manual_seed(seed)
    layers: list[nn.Module] = []
    width = 2
    for h in hidden:
        layers += [nn.Linear(width, h), activation()]
        width = h
    layers.append(nn.Linear(width, 1))
    net = nn.Sequential(*layers).double()
    x, y = toy_data(seed=seed)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(steps):
        opt.zero_grad()
        loss = ((net(x) - y) ** 2).mean()
        loss.backward()
        opt.step()
    return net.eval()


@dataclass
class BoundReport:
    """Measured errors and the Theorem A bounds for one network, SLNN and calibration set."""

    degree: int
    measured: float  # max over data and outputs of |SLNN(x) − net(x)|
    bound: float  # per-unit bound max_o (|A_{L+1}| e_L)_o
    norm_bound: float  # operator-norm corollary
    certified: bool  # the slack condition E_l <= ρ_l holds for every layer
    delta: list[np.ndarray]  # δ_l per unit, certified from above
    delta_seen: list[np.ndarray]  # the largest |p − σ| evaluated: a lower bound on δ_l
    slack: list[np.ndarray]  # ρ_l per unit
    E: list[np.ndarray]  # propagated pre-activation bounds E_l per unit
    measured_pre: list[np.ndarray]  # max over data of |ũ_l − u_l| per unit
    intervals: list[tuple[np.ndarray, np.ndarray]]  # (center, radius) per layer


def _split(model: nn.Sequential) -> tuple[list[tuple[Tensor, Tensor]], list[nn.Module]]:
    affine, acts = [], []
    for layer in model:
        if isinstance(layer, nn.Linear):
            affine.append((layer.weight.detach().double(), layer.bias.detach().double()))
        elif type(layer) in LIPSCHITZ:
            acts.append(layer)
        else:
            raise ValueError(f"theorem_a_bound handles Linear + {list(LIPSCHITZ)} MLPs only")
    if len(affine) != len(acts) + 1:
        raise ValueError("expected Linear, activation, ..., Linear")
    return affine, acts


def theorem_a_bound(
    net: nn.Sequential, data: Tensor, degree: int, margin: float, slnn: nn.Sequential | None = None
) -> BoundReport:
    """Convert ``net`` with :func:`polynet.from_network` and compare its error with Theorem A.

    The compact set K is the finite calibration set ``data``; the intervals are its ranges
    widened by ``margin``·(hi − lo) on each side, as ``from_network`` documents.
    """
    if slnn is None:
        slnn = polynet.from_network(net, degree, data, margin=margin)
    affine, acts = _split(net)
    s_affine = [m for m in slnn if isinstance(m, nn.Linear)]
    slafs = [m for m in slnn if isinstance(m, polynet.SLAF)]
    h, h_t = data.double(), data.double()
    delta, delta_seen, slack, E, measured_pre, intervals = [], [], [], [], [], []
    e_prev = np.zeros(data.shape[1])
    with torch.no_grad():
        for layer, ((A, a), act) in enumerate(zip(affine, acts)):
            u = h @ A.T + a
            lo, hi = u.min(0).values, u.max(0).values
            center, radius = (lo + hi) / 2, (hi - lo) * (0.5 + margin)
            # The SLNN computes t = (ũ − c)/r; its pre-activation in the original variable is ũ.
            W_s, b_s = s_affine[layer].weight.double(), s_affine[layer].bias.double()
            if not torch.allclose(W_s * radius[:, None], A, rtol=1e-12, atol=1e-14):
                raise AssertionError(f"layer {layer}: the SLNN's Linear is not A/r")
            t = h_t @ W_s.T + b_s
            u_t = center + radius * t
            slaf = slafs[layer]
            # δ_l: sup over I = [c − r, c + r] of |p(z) − σ(z)|, p(z) = SLAF((z − c)/r).
            L = LIPSCHITZ[type(act)]
            seen, upper = _certified_delta(slaf, act, center, radius, L)
            d = torch.from_numpy(upper)
            delta_seen.append(seen)
            E_l = np.abs(A.numpy()) @ e_prev if layer else np.zeros(len(center))
            e_prev = d.numpy() + L * E_l
            delta.append(d.numpy())
            slack.append((margin * (hi - lo)).numpy())
            E.append(E_l)
            measured_pre.append((u_t - u).abs().max(0).values.numpy())
            intervals.append((center.numpy(), radius.numpy()))
            h, h_t = act(u), slaf(t)
        A_out, a_out = affine[-1]
        out_bound = np.abs(A_out.numpy()) @ e_prev
        measured = (slnn(data.double()) - net(data.double())).abs().max().item()
    # Operator-norm corollary: ‖A_{L+1}‖ Σ_l ‖δ_l‖ Π_{i>l} L_i ‖A_i‖ (∞-norms).
    norms = [np.abs(A.numpy()).sum(1).max() for A, _ in affine]
    Ls = [LIPSCHITZ[type(a)] for a in acts]
    norm_bound = 0.0
    for layer, d in enumerate(delta):
        prod = np.prod([Ls[i] * norms[i] for i in range(layer + 1, len(acts))])
        norm_bound += d.max() * prod
    norm_bound *= norms[-1]
    certified = all(np.all(E_l <= rho) for E_l, rho in zip(E, slack))
    return BoundReport(
        degree,
        measured,
        float(out_bound.max()),
        float(norm_bound),
        bool(certified),
        delta,
        delta_seen,
        slack,
        E,
        measured_pre,
        intervals,
    )


def _certified_delta(
    slaf: polynet.SLAF, act: nn.Module, center: Tensor, radius: Tensor, lipschitz: float
) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper bounds on δ_j = sup over t in [−1, 1] of |p_j(t) − σ(c_j + r_j t)|.

    p_j is the SLAF's channel j as a Chebyshev series (Lemma 1 of slaf_folding.md:
    Σ_i v_i T_i + b − v·μ with v = c/sqrt(σ² + ε)). On [−1, 1], |p'| <= Σ_i |d_i| and
    |p''| <= Σ_i |d2_i| for d, d2 the Chebyshev coefficients of p' and p'' (|T_i| <= 1); in t,
    σ(c + r t) has Lipschitz constant L·r and curvature r²·sup|σ''|.
    """
    if slaf.basis.name != "chebyshev":
        raise ValueError("the certified δ needs a Chebyshev SLAF (from_network's default)")
    with torch.no_grad():
        v = slaf.coefficient().double() / torch.sqrt(slaf.running_var.double() + slaf.eps)
        const = slaf.bias.double() - (v * slaf.running_mean.double()).sum(1)
    series = np.concatenate([const.numpy()[:, None], v.numpy()], axis=1)  # (C, k+1)
    out = np.empty((2, len(center)))
    for j, (c, r) in enumerate(zip(center.tolist(), radius.tolist())):
        coef = series[j]
        lip = np.abs(cheb.chebder(coef)).sum() + lipschitz * r
        curvature = None
        if type(act) in CURVATURE:
            curvature = np.abs(cheb.chebder(coef, 2)).sum() + CURVATURE[type(act)] * r * r

        def err(t: np.ndarray, coef=coef, c=c, r=r) -> np.ndarray:
            sigma = act(torch.from_numpy(c + r * t)).numpy()
            return np.abs(cheb.chebval(t, coef) - sigma)

        out[:, j] = certified_sup(err, lip, curvature=curvature)
    return out[0], out[1]


def certified_sup(
    err: Callable[[np.ndarray], np.ndarray],
    lipschitz: float,
    *,
    curvature: float | None = None,
    points: int = GRID,
    rtol: float = SUP_RTOL,
    atol: float = 1e-10,
    split: int = 16,
    levels: int = 8,
    max_cells: int = 50_000,
) -> tuple[float, float]:
    """Bounds (S, U) with S <= sup |e| <= U over [−1, 1], for |e| = ``err``, e Λ-Lipschitz.

    S is the largest value evaluated.
    Branch and bound on a uniform grid: on a cell [a, b] of width h,
    |e| <= (|e(a)| + |e(b)| + Λh)/2, or, when e is C² with |e''| <= ``curvature`` = K,
    |e| <= max(|e(a)|, |e(b)|) + K h²/8 (the linear interpolation error), whichever is smaller.
    The first grid is chosen from a probe of ``points`` points so that these slacks are at most
    half the probed maximum. Cells whose bound exceeds (1 + rtol)·(best value seen) + atol are
    split into ``split`` parts, until none is left; then U <= (1 + rtol)·sup f + atol, and
    U >= sup f always.
    When more than ``max_cells`` cells (or ``levels`` levels) would be needed, the bound of the
    cells left is returned: still an upper bound, only a looser one.
    """

    def bound(fl: np.ndarray, fr: np.ndarray, h: float) -> np.ndarray:
        first = (fl + fr + lipschitz * h) / 2
        if curvature is None:
            return first
        return np.minimum(first, np.maximum(fl, fr) + curvature * h * h / 8)

    # Probe, then start on a grid fine enough that few cells need splitting: the cell bound's
    # slack (Λh/2 or Kh²/8) at most half the probed maximum.
    best = float(err(np.linspace(-1.0, 1.0, points)).max())
    target = max(best, atol) / 2
    h = target * 2 / lipschitz if lipschitz > 0 else 2.0
    if curvature:
        h = max(h, math.sqrt(8 * target / curvature))
    n = int(min(MAX_GRID, max(points, math.ceil(2.0 / h) + 1)))
    t = np.linspace(-1.0, 1.0, n)
    f = err(t)
    best = max(best, float(f.max()))
    h = 2.0 / (n - 1)
    left, fl, fr = t[:-1], f[:-1], f[1:]

    ceiling = 0.0  # the largest bound of a cell dropped so far
    for _ in range(levels):
        bounds = bound(fl, fr, h)
        keep = bounds > (1 + rtol) * best + atol
        if (~keep).any():
            ceiling = max(ceiling, float(bounds[~keep].max()))
        if not keep.any():
            return best, max(best, ceiling)
        if keep.sum() > max_cells:
            break
        left, fl, fr = left[keep], fl[keep], fr[keep]
        h /= split
        inner = left[:, None] + h * np.arange(1, split)[None, :]
        finner = err(inner.reshape(-1)).reshape(inner.shape)
        best = max(best, float(finner.max()))
        values = np.concatenate([fl[:, None], finner, fr[:, None]], axis=1)
        left = np.concatenate([left[:, None], inner], axis=1).reshape(-1)
        fl, fr = values[:, :-1].reshape(-1), values[:, 1:].reshape(-1)
    return best, max(best, ceiling, float(bound(fl, fr, h).max()))


def calibration(
    net: nn.Sequential, data: Tensor, margin: float
) -> list[tuple[Tensor, Tensor, Tensor]]:
    """(center, radius, slack) per activation layer: the intervals I = [c − r, c + r]."""
    affine, acts = _split(net)
    h, out = data.double(), []
    with torch.no_grad():
        for (A, a), act in zip(affine, acts):
            u = h @ A.T + a
            lo, hi = u.min(0).values, u.max(0).values
            out.append(((lo + hi) / 2, (hi - lo) * (0.5 + margin), margin * (hi - lo)))
            h = act(u)
    return out


def gains(net: nn.Sequential) -> tuple[float, list[float]]:
    """G and G_l of Theorem A3: with every δ_l <= δ̄, the output error is <= δ̄·G and
    ‖E_l‖ <= δ̄·G_l (∞-norms, global Lipschitz constants)."""
    affine, acts = _split(net)
    norms = [float(np.abs(A.numpy()).sum(1).max()) for A, _ in affine]
    G_pre, e = [0.0], 1.0  # E_1 = 0, so e_1 = δ̄
    for layer in range(1, len(acts)):
        G_pre.append(norms[layer] * e)
        e = 1.0 + LIPSCHITZ[type(acts[layer])] * G_pre[-1]
    return norms[-1] * e, G_pre


def degrees_for_target(
    net: nn.Sequential, data: Tensor, target: float, margin: float
) -> tuple[list[int], float]:
    """Per-layer degrees that Theorem A3 guarantees reach ``target``, and the δ̄ they aim at.

    δ̄ = min(target/G, min_l ρ_l/G_l). Smooth activations use the analytic (Bernstein
    ellipse) bound with ρ halfway to the nearest pole; ReLU uses Jackson's bound.
    """
    G, G_pre = gains(net)
    cal = calibration(net, data, margin)
    delta = target / G
    for g, (_, _, slack) in zip(G_pre, cal):
        if g > 0:
            delta = min(delta, float(slack.min()) / g)
    _, acts = _split(net)
    degrees = []
    for act, (center, radius, _) in zip(acts, cal):
        ks = []
        for c, r in zip(center.tolist(), radius.tolist()):
            if isinstance(act, nn.ReLU):
                ks.append(jackson_degree(1.0, r, delta, interpolation=True))
                continue
            rho = (1 + float(bernstein_rho(np.array(c), np.array(r), TANH_POLES))) / 2
            k = 1
            while analytic_error(np.tanh, c, r, rho, k) > delta:
                k += 1
            ks.append(k)
        degrees.append(max(ks))
    return degrees, delta


#: The poles of tanh nearest the real axis (all lie at iπ(m + 1/2)).
TANH_POLES = (0.5j * np.pi, -0.5j * np.pi, 1.5j * np.pi, -1.5j * np.pi)


def bernstein_rho(center: np.ndarray, radius: np.ndarray, poles: tuple[complex, ...]) -> np.ndarray:
    """ρ of the largest Bernstein ellipse of [c − r, c + r] free of ``poles`` (per unit).

    Chebyshev interpolants of a function analytic inside that ellipse converge like ρ^(−k).
    """
    rho = np.full(np.shape(center), np.inf)
    for pole in poles:
        t = (pole - center) / radius
        root = np.sqrt(t * t - 1 + 0j)
        rho = np.minimum(rho, np.maximum(np.abs(t + root), np.abs(t - root)))
    return rho


def jackson_error(lipschitz: float, radius: float, degree: int, *, interpolation: bool) -> float:
    """Jackson's bound on the degree-k error for an L-Lipschitz function on [c − r, c + r].

    Best approximation: π L r / (2(k+1)). Chebyshev interpolation (points of the first kind)
    multiplies it by 1 + Λ_k <= 2 + (2/π) log(k+1), Λ_k the Lebesgue constant.
    """
    best = math.pi * lipschitz * radius / (2 * (degree + 1))
    return best * (2 + 2 / math.pi * math.log(degree + 1)) if interpolation else best


def jackson_degree(lipschitz: float, radius: float, delta: float, *, interpolation: bool) -> int:
    """Smallest degree k whose :func:`jackson_error` is at most ``delta``."""
    k = max(0, math.ceil(math.pi * lipschitz * radius / (2 * delta)) - 1)
    while jackson_error(lipschitz, radius, k, interpolation=interpolation) > delta:
        k += 1
    return k


def analytic_error(
    func: Callable[[np.ndarray], np.ndarray], center: float, radius: float, rho: float, degree: int
) -> float:
    """4 M ρ^(−k) / (ρ − 1): the Chebyshev interpolation bound for f analytic in E_ρ.

    M = max |f| on the Bernstein ellipse E_ρ of [c − r, c + r], taken on 4096 boundary points
    (f is analytic inside, so |f| peaks on the boundary; the sampling is an estimate).
    """
    theta = np.linspace(0, 2 * np.pi, 4096, endpoint=False)
    w = rho * np.exp(1j * theta)
    M = np.max(np.abs(func(center + radius * (w + 1 / w) / 2)))
    return float(4 * M * rho ** (-degree) / (rho - 1))


def algebraic_order(degrees: Sequence[int], errors: Sequence[float]) -> float:
    """−slope of log(error) against log(k): p for errors ~ k^(−p)."""
    return float(-np.polyfit(np.log(degrees), np.log(errors), 1)[0])


def geometric_rate(degrees: Sequence[int], errors: Sequence[float]) -> float:
    """−slope of log(error) against k: log ρ for errors ~ ρ^(−k)."""
    return float(-np.polyfit(np.asarray(degrees, float), np.log(errors), 1)[0])


@contextlib.contextmanager
def single_thread() -> Iterator[None]:
    """Run torch on one thread (these tensors are small; threads only contend)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
