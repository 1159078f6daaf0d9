"""Pictures of what a network learned: its activations, and views of its polynomial.

Learned activations
    :func:`calibrate` records what each SLAF sees on some data; :func:`plot_activations`
    draws every SLAF over the range of its inputs, with their histogram and the nearest
    standard activation (:func:`nearest_activation`); :func:`plot_coefficients` shows the
    SLAF coefficients per basis element and how they moved in training
    (:func:`coefficient_snapshot` records them); :func:`plot_history` draws training curves.
The network polynomial
    :func:`plot_degree_profile` and :func:`terms_table` describe a
    :class:`~polynet.NetworkPolynomial`; :func:`plot_slice`, :func:`plot_surface` and
    :func:`plot_decision_boundary` draw it beside the network it came from and return the
    largest difference between the two.

Every ``plot_*`` function returns a :class:`matplotlib.figure.Figure` built without pyplot (no
global state, no display needed, safe on a headless machine) and, given ``path``, writes it;
the suffix picks the format (``.png``, ``.svg`` or ``.pdf``). matplotlib is imported at first
use: install the ``plots`` extra.
"""

from __future__ import annotations

import copy
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from numpy.polynomial import polynomial as npoly
from numpy.typing import ArrayLike
from torch import Tensor, nn

from polynet.errors import DataError
from polynet.poly.polynomial import NetworkPolynomial
from polynet.slaf import SLAF

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "calibrate",
    "NearestActivation",
    "nearest_activation",
    "STANDARD_ACTIVATIONS",
    "plot_activations",
    "coefficient_snapshot",
    "plot_coefficients",
    "plot_history",
    "plot_degree_profile",
    "terms_table",
    "PolynomialFigure",
    "plot_slice",
    "plot_surface",
    "plot_decision_boundary",
]

#: Resolution of the PNG files the plot functions write, in dots per inch.
DPI = 120
#: File suffixes the plot functions write; the suffix picks the format.
FORMATS = (".png", ".svg", ".pdf")
#: Values per channel that :func:`calibrate` keeps (a uniform sample, plus min and max).
CALIBRATION_SAMPLES = 2048
#: Channel curves drawn in one panel of a layer with shared coefficients.
MAX_CURVES = 48
#: Channels of a shared-coefficient layer fitted one by one for the panel's summary.
CHANNEL_FITS = 6
#: Points per curve.
CURVE_POINTS = 241

_MPL_HINT = 'polynet.plots needs matplotlib; install it with: pip install "polynet[plots]"'


def _figure(width: float, height: float) -> Figure:
    try:
        from matplotlib.figure import Figure
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(_MPL_HINT) from exc
    return Figure(figsize=(width, height), layout="constrained")


def _save(fig: Figure, path: str | os.PathLike[str] | None) -> None:
    if path is None:
        return
    path = Path(path)
    if path.suffix.lower() not in FORMATS:
        raise ValueError(
            f"path must end in .png, .svg or .pdf (the suffix picks the format), got {str(path)!r}."
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)


# --------------------------------------------------------------------------------------------
# Calibration
# --------------------------------------------------------------------------------------------


def _layer_label(name: str) -> str:
    return "SLAF" if name == "" else "model[" + name.replace(".", "][") + "]"


def _find_slafs(model: nn.Module) -> list[tuple[str, SLAF]]:
    found = [(name, m) for name, m in model.named_modules() if isinstance(m, SLAF)]
    if not found:
        raise ValueError(
            f"the {type(model).__name__} has no SLAF layers, so there is no learned activation "
            "to draw; build the model with SLAF activations (SLNN, or HybridNet/ConvSLNN with "
            "'slaf' layers)."
        )
    return found


def _model_tensor_kind(model: nn.Module) -> tuple[torch.device, torch.dtype]:
    for t in [*model.parameters(), *model.buffers()]:
        if t.is_floating_point():
            return t.device, t.dtype
    return torch.device("cpu"), torch.get_default_dtype()


def _as_inputs(x: ArrayLike | Tensor, name: str = "x") -> Tensor:
    try:
        t = x if isinstance(x, Tensor) else torch.as_tensor(np.asarray(x, dtype=np.float64))
    except (TypeError, ValueError) as exc:
        raise DataError(f"{name} must be a numeric array of inputs: {exc}") from exc
    t = t.detach()
    if t.dim() < 1 or t.shape[0] == 0:
        raise DataError(f"{name} must hold at least one sample, got shape {tuple(t.shape)}.")
    if t.is_floating_point() and not torch.isfinite(t).all():
        raise DataError(f"{name} holds NaN or infinite values; drop or impute them first.")
    return t


def calibrate(
    model: nn.Module,
    x: ArrayLike | Tensor,
    *,
    max_samples: int = CALIBRATION_SAMPLES,
    batch_size: int = 1024,
    seed: int = 0,
) -> dict[str, Tensor]:
    """Record what each SLAF of ``model`` receives on the inputs ``x``.

    A calibration pass: forward hooks on every SLAF, the model in evaluation mode without
    gradients, in batches; the model's modes are restored afterwards. Per channel it keeps a
    uniform random sample of the values (at most ``max_samples``, spatial positions of
    convolutional inputs counted as values), with the channel's minimum and maximum always in
    it, so the sample spans the whole observed range.

    Parameters
    ----------
    model : nn.Module
        A model containing :class:`~polynet.SLAF` layers (or an SLAF itself).
    x : array-like or Tensor of shape (N, n_features) or (N, C, H, W)
        Inputs, as the model takes them.
    max_samples : int, default=2048
        Values kept per channel.
    batch_size : int, default=1024
        Samples per forward pass.
    seed : int, default=0
        Seeds the sample.

    Returns
    -------
    dict of str to Tensor of shape (S, C), float64, on the CPU
        For each SLAF (by its name in ``model.named_modules()``), column c holds channel c's
        values; row 0 holds the minima and row 1 the maxima when values were left out.

    Examples
    --------
    >>> import polynet
    >>> net = polynet.SLNN(3, [4, 5], 2).eval()
    >>> seen = calibrate(net, torch.randn(100, 3))
    >>> {name: tuple(t.shape) for name, t in seen.items()}
    {'1': (100, 4), '3': (100, 5)}
    """
    if isinstance(max_samples, bool) or not isinstance(max_samples, int) or max_samples < 2:
        raise ValueError(f"max_samples must be an integer >= 2, got {max_samples!r}.")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}.")
    slafs = _find_slafs(model)
    data = _as_inputs(x)
    device, dtype = _model_tensor_kind(model)
    generator = torch.Generator().manual_seed(seed)
    kept: dict[str, tuple[Tensor, Tensor]] = {}
    extremes: dict[str, tuple[Tensor, Tensor]] = {}
    totals: dict[str, int] = {}

    def hook(name: str) -> Callable[..., None]:
        def record(module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> None:
            z = inputs[0].detach()
            z = z.movedim(1, -1).reshape(-1, z.shape[1]).to("cpu", torch.float64)
            keys = torch.rand(z.shape, generator=generator, dtype=torch.float64)
            if name in kept:
                old_keys, old_values = kept[name]
                keys, z_all = torch.cat([old_keys, keys]), torch.cat([old_values, z])
                low, high = extremes[name]
                extremes[name] = (torch.minimum(low, z.amin(0)), torch.maximum(high, z.amax(0)))
            else:
                z_all = z
                extremes[name] = (z.amin(0), z.amax(0))
            if keys.shape[0] > max_samples:
                top = keys.topk(max_samples, dim=0).indices
                keys, z_all = keys.gather(0, top), z_all.gather(0, top)
            kept[name] = (keys, z_all)
            totals[name] = totals.get(name, 0) + z.shape[0]

        return record

    modes = {m: m.training for m in model.modules()}
    handles = [m.register_forward_hook(hook(name or "slaf")) for name, m in slafs]
    try:
        model.eval()
        with torch.no_grad():
            for start in range(0, data.shape[0], batch_size):
                batch = data[start : start + batch_size].to(device=device, dtype=dtype)
                try:
                    model(batch)
                except (RuntimeError, ValueError) as exc:
                    raise DataError(
                        f"the model cannot take x: samples of shape {tuple(data.shape[1:])} gave "
                        f"{type(exc).__name__}: {exc}. Pass inputs shaped as the model takes them."
                    ) from exc
    finally:
        for handle in handles:
            handle.remove()
        for module, mode in modes.items():
            module.training = mode
    out = {}
    for name, _ in slafs:
        key = name or "slaf"
        values = kept[key][1].clone()
        if totals[key] > max_samples:
            values[0], values[1] = extremes[key]
        out[key] = values
    return out


# --------------------------------------------------------------------------------------------
# Nearest standard activation
# --------------------------------------------------------------------------------------------


def _leaky_relu(u: Tensor) -> Tensor:
    return F.leaky_relu(u, 0.01)


def _square(u: Tensor) -> Tensor:
    return u * u


def _identity(u: Tensor) -> Tensor:
    return u


#: The standard activations :func:`nearest_activation` tries, in order of preference (a later
#: one is named only when it fits clearly better): f(u) as float64 torch functions.
STANDARD_ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "identity": _identity,
    "square": _square,
    "relu": F.relu,
    "leaky_relu": _leaky_relu,
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
    "gelu": F.gelu,
    "silu": F.silu,
}

# Shapes whose scale b is absorbed by a (f(b u) = b f(u) for b > 0): only sign(b) is searched.
_HOMOGENEOUS = {"relu", "leaky_relu"}
# A later candidate replaces the current best only when it leaves clearly less unexplained.
_TIE_RELATIVE = 0.01
_TIE_ABSOLUTE = 1e-12
_FIT_POINTS = 401
_MAX_FIT_POINTS = 500


@dataclass(frozen=True)
class NearestActivation:
    """The standard activation nearest to a function on an interval: a·f(b·z + c) + d.

    Attributes
    ----------
    name : str
        A key of :data:`STANDARD_ACTIVATIONS`, or ``"constant"`` for a constant function.
    a, b, c, d : float
        The least-squares parameters of a·f(b·z + c) + d.
    r2 : float
        Coefficient of determination of the fit on the points it was fitted on (1 is exact).
    """

    name: str
    a: float
    b: float
    c: float
    d: float
    r2: float

    def __call__(self, z: ArrayLike) -> np.ndarray:
        """Evaluate a·f(b·z + c) + d at ``z`` (any shape), in float64."""
        z = torch.as_tensor(np.asarray(z, dtype=np.float64))
        if self.name == "constant":
            return np.full(z.shape, self.d)
        f = STANDARD_ACTIVATIONS[self.name]
        return (self.a * f(self.b * z + self.c) + self.d).numpy()

    def label(self) -> str:
        """Short text for a figure: the name and the fit quality."""
        unexplained = 1.0 - self.r2
        if unexplained < 1e-4:
            quality = f"1 − R² = {max(unexplained, 0.0):.1e}"
        else:
            quality = f"R² = {self.r2:.4f}"
        sign = "−" if self.a < 0 else ""
        return f"≈ {sign}{self.name}  ({quality})"

    def __str__(self) -> str:
        if self.name == "constant":
            return f"{self.d:.4g} (constant)"
        return (
            f"{self.a:.4g}·{self.name}({self.b:.4g}·z {self.c:+.4g}) {self.d:+.4g} "
            f"(R² = {self.r2:.6f})"
        )


def _points(interval: tuple[float, float], samples: ArrayLike | Tensor | None) -> np.ndarray:
    try:
        lo, hi = (float(v) for v in interval)
    except (TypeError, ValueError):
        raise ValueError(
            f"interval must be a pair (lo, hi) of numbers, got {interval!r}."
        ) from None
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise ValueError(f"interval must be finite with lo < hi, got {interval!r}.")
    if samples is None:
        return np.linspace(lo, hi, _FIT_POINTS)
    if isinstance(samples, Tensor):
        samples = samples.detach().cpu().numpy()
    z = np.asarray(samples, dtype=np.float64).reshape(-1)
    z = np.sort(z[np.isfinite(z) & (z >= lo) & (z <= hi)])
    if z.size < 4:
        raise ValueError(
            f"samples must hold at least 4 finite values inside interval {interval}, got "
            f"{z.size}; pass samples=None to fit on a uniform grid of the interval."
        )
    if z.size > _MAX_FIT_POINTS:  # evenly spaced order statistics keep the distribution
        z = z[np.linspace(0, z.size - 1, _MAX_FIT_POINTS).round().astype(int)]
    return z


def nearest_activation(
    fn_or_coefficients: Callable[[np.ndarray], ArrayLike] | ArrayLike | Tensor,
    interval: tuple[float, float],
    samples: ArrayLike | Tensor | None = None,
) -> NearestActivation:
    """The standard activation a·f(b·z + c) + d closest to a function, by least squares.

    f runs over :data:`STANDARD_ACTIVATIONS` (identity, square, ReLU, leaky ReLU with slope
    0.01, tanh, sigmoid, GELU, SiLU). For each f, a and d are solved exactly for every (b, c)
    of a grid that is then refined around its best point (variable projection); the f with
    the largest R² is named, where an earlier f in the list wins near-ties.

    Parameters
    ----------
    fn_or_coefficients : callable or array-like of shape (k+1,)
        A function of float64 numpy arrays, or monomial coefficients low to high (a row of
        :meth:`SLAF.polynomial`).
    interval : (float, float)
        The range [lo, hi] on which to compare.
    samples : array-like, optional
        Points of the interval to fit on (e.g. the inputs an SLAF actually received), so the
        fit weighs the range by where the data lies; by default a uniform grid.

    Returns
    -------
    NearestActivation

    Notes
    -----
    tanh and sigmoid are the same family here (σ(u) = ½ + ½·tanh(u/2)), so a sigmoid-shaped
    function is named tanh, with the parameters converted. ReLU with its kink outside the
    interval is linear, and square fits every parabola: the order of preference names such
    functions identity and square.

    Examples
    --------
    >>> nearest_activation(np.tanh, (-3, 3)).name
    'tanh'
    >>> nearest_activation([0.5, 2.0, 1.0], (-1, 1)).name  # 0.5 + 2z + z^2
    'square'
    >>> fit = nearest_activation(lambda z: 2 * np.maximum(z - 0.5, 0), (-2, 2))
    >>> fit.name, round(fit.r2, 6)
    ('relu', 1.0)
    """
    z = _points(interval, samples)
    if callable(fn_or_coefficients):
        y = np.asarray(fn_or_coefficients(z), dtype=np.float64)
        if y.shape != z.shape:
            raise ValueError(
                f"the function must return an array shaped like its input {z.shape}, got "
                f"{y.shape}; make it elementwise (e.g. np.tanh)."
            )
    else:
        coef = fn_or_coefficients
        if isinstance(coef, Tensor):
            coef = coef.detach().cpu().numpy()
        coef = np.asarray(coef, dtype=np.float64)
        if coef.ndim != 1 or coef.size < 1:
            raise ValueError(
                f"coefficients must be a 1-D array (low to high), got shape {coef.shape}; pass "
                "one row of SLAF.polynomial()."
            )
        y = npoly.polyval(z, coef)
    if not np.isfinite(y).all():
        raise ValueError("the function is not finite on the interval; narrow the interval.")
    return _fit_nearest(z, y)


def _fit_nearest(z: np.ndarray, y: np.ndarray) -> NearestActivation:
    """Nearest standard activation to the points (z, y)."""
    # Many small tensor operations: one thread is several times faster than a busy pool.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _fit_nearest_points(z, y)
    finally:
        torch.set_num_threads(threads)


def _fit_nearest_points(z: np.ndarray, y: np.ndarray) -> NearestActivation:
    zt, yt = torch.as_tensor(z, dtype=torch.float64), torch.as_tensor(y, dtype=torch.float64)
    y_mean = float(yt.mean())
    yc = yt - y_mean
    syy = float(yc @ yc)
    if syy <= (1e-12 * max(1.0, abs(y_mean))) ** 2 * len(y):
        return NearestActivation("constant", 0.0, 1.0, 0.0, y_mean, 1.0)
    lo, hi = float(zt.min()), float(zt.max())
    center, scale = (lo + hi) / 2, max((hi - lo) / 2, 1e-12)
    t = (zt - center) / scale
    best: tuple[float, NearestActivation] | None = None
    for name in STANDARD_ACTIVATIONS:
        if name == "sigmoid":
            continue  # the same family as tanh (see Notes): fitted as tanh
        if name == "identity":
            fit = _fit_polynomial(zt, yt, 1)
        elif name == "square":
            fit = _fit_polynomial(zt, yt, 2)
        else:
            fit = _fit_shape(name, t, yc, syy, center, scale, y_mean)
        unexplained = _unexplained(fit, zt, yt, syy)
        fit = NearestActivation(fit.name, fit.a, fit.b, fit.c, fit.d, 1.0 - unexplained)
        if best is None or unexplained < best[0] * (1 - _TIE_RELATIVE) - _TIE_ABSOLUTE:
            best = (unexplained, fit)
    assert best is not None
    return best[1]


def _unexplained(fit: NearestActivation, z: Tensor, y: Tensor, syy: float) -> float:
    residual = y - torch.as_tensor(fit(z.numpy()))
    return float(residual @ residual) / syy


def _fit_polynomial(z: Tensor, y: Tensor, degree: int) -> NearestActivation:
    zn = z.numpy()
    center, scale = float(zn.mean()), float(zn.std()) or 1.0
    p = npoly.Polynomial.fit(zn, y.numpy(), degree, domain=[center - scale, center + scale])
    coef = p.convert(domain=[-1, 1], window=[-1, 1]).coef
    coef = np.concatenate([coef, np.zeros(degree + 1 - coef.size)])
    if degree == 1:
        return NearestActivation("identity", float(coef[1]), 1.0, 0.0, float(coef[0]), 0.0)
    a = float(coef[2])
    if a == 0.0:  # a straight line: the square family only reaches it in the limit
        return NearestActivation("square", 0.0, 1.0, 0.0, float(coef[0]), 0.0)
    c = float(coef[1]) / (2 * a)
    return NearestActivation("square", a, 1.0, c, float(coef[0]) - a * c * c, 0.0)


def _fit_shape(
    name: str, t: Tensor, yc: Tensor, syy: float, center: float, scale: float, y_mean: float
) -> NearestActivation:
    """a·f(β·(t − t0)) + d on t ∈ [-1, 1] by a refined grid over (log β, t0); a, d exact."""
    f = STANDARD_ACTIVATIONS[name]
    homogeneous = name in _HOMOGENEOUS
    signs = (1.0, -1.0) if name not in ("tanh", "sigmoid") else (1.0,)
    n_lb, n_t0 = (1, 121) if homogeneous else (20, 61)
    log_betas = torch.linspace(-1.3, 1.6, n_lb, dtype=torch.float64) if n_lb > 1 else None
    if log_betas is None:
        log_betas = torch.zeros(1, dtype=torch.float64)
    t0s = torch.linspace(-3.0, 3.0, n_t0, dtype=torch.float64)
    # The coarse search runs on at most 101 of the points; the refinement on all of them.
    coarse = torch.linspace(0, len(t) - 1, min(len(t), 101)).round().long()
    t_c, yc_c = t[coarse], yc[coarse] - yc[coarse].mean()
    syy_c = float(yc_c @ yc_c) or syy
    best = (math.inf, 0.0, 0.0, 1.0)  # (unexplained, log β, t0, sign)
    for sign in signs:
        lb, tt = (g.reshape(-1) for g in torch.meshgrid(log_betas, t0s, indexing="ij"))
        u, i = _grid_scores(f, t_c, yc_c, syy_c, sign * 10**lb, tt)
        if u < best[0]:
            best = (u, float(lb[i]), float(tt[i]), sign)
    _, log_beta, t0, sign = best
    step_lb = 0.0 if homogeneous else float(log_betas[1] - log_betas[0])
    step_t0 = float(t0s[1] - t0s[0])
    offsets = torch.linspace(-1.0, 1.0, 7, dtype=torch.float64)
    for _ in range(9):
        lb, tt = torch.meshgrid(log_beta + step_lb * offsets, t0 + step_t0 * offsets, indexing="ij")
        lb, tt = lb.reshape(-1), tt.reshape(-1)
        _, i = _grid_scores(f, t, yc, syy, sign * 10**lb, tt)
        log_beta, t0 = float(lb[i]), float(tt[i])
        step_lb, step_t0 = step_lb / 3, step_t0 / 3
    beta = sign * 10**log_beta
    feature = f(beta * (t - t0))
    fc = feature - feature.mean()
    sff = float(fc @ fc)
    a = float(fc @ yc) / sff if sff > 0 else 0.0
    d = y_mean - a * float(feature.mean())
    if homogeneous:  # f(u / s) = f(u) / s for s > 0: report b = ±1, the scale moves into a
        return NearestActivation(name, a / scale, beta, -beta * (center + scale * t0), d, 0.0)
    return NearestActivation(name, a, beta / scale, -beta * (center / scale + t0), d, 0.0)


def _grid_scores(
    f: Callable[[Tensor], Tensor], t: Tensor, yc: Tensor, syy: float, beta: Tensor, t0: Tensor
) -> tuple[float, int]:
    """Smallest unexplained fraction over the parameter pairs, and its index."""
    feature = f(beta[:, None] * (t[None, :] - t0[:, None]))
    fc = feature - feature.mean(dim=1, keepdim=True)
    sff = (fc * fc).sum(dim=1)
    sfy = fc @ yc
    explained = torch.where(sff > 1e-300, sfy * sfy / (sff * syy).clamp_min(1e-300), 0.0)
    i = int(torch.argmax(explained))
    return 1.0 - float(explained[i]), i


# --------------------------------------------------------------------------------------------
# Learned activations
# --------------------------------------------------------------------------------------------


@dataclass
class _Layer:
    name: str
    slaf: SLAF  # an evaluation-mode float64 CPU copy
    ranges: np.ndarray  # (C, 2): the interval each channel is drawn over
    samples: np.ndarray | None  # (S, C) observed inputs, or None

    @property
    def shared(self) -> bool:
        return self.slaf.share == "layer"

    def curves(self, channels: Sequence[int], n: int = CURVE_POINTS) -> tuple[np.ndarray, ...]:
        """(z, y) of shape (len(channels), n): each channel over its own range."""
        z = np.linspace(self.ranges[:, 0], self.ranges[:, 1], n)  # (n, C)
        return z.T[list(channels)], self.evaluate(z)[:, list(channels)].T

    def evaluate(self, z: np.ndarray) -> np.ndarray:
        """a_c(z[:, c]) for z of shape (n, C): the polynomial, or the module for EMFN."""
        if self.slaf.basis.is_polynomial:
            alpha = self.slaf.polynomial().numpy()  # (C, k+1)
            powers = z[..., None] ** np.arange(alpha.shape[1])
            return (powers * alpha).sum(-1)
        with torch.no_grad():
            return self.slaf(torch.as_tensor(z)).numpy()


def _running_range(slaf: SLAF) -> np.ndarray:
    """Per channel, the interval the running statistics imply (x=None)."""
    if slaf.running_absmax is not None:  # EMFN scales by the running max of |z|
        m = slaf.running_absmax.double().cpu().numpy()
        return np.stack([-m, m], axis=1)
    first = slaf.basis.to_monomial(1)[:, 0] if slaf.basis.is_polynomial else None
    if first is not None and np.allclose(first, [0.0, 1.0]):  # φ_1(z) = z: its statistics
        mean = slaf.running_mean[:, 0].double().cpu().numpy()
        std = np.sqrt(slaf.running_var[:, 0].double().cpu().numpy())
        return np.stack([mean - 3 * std, mean + 3 * std], axis=1)
    c = slaf.num_features
    return np.tile([-3.0, 3.0], (c, 1))


def _widen(ranges: np.ndarray) -> np.ndarray:
    lo, hi = ranges[:, 0].copy(), ranges[:, 1].copy()
    narrow = hi - lo < 1e-9 * np.maximum(1.0, np.abs(lo))
    pad = 1e-3 * np.maximum(1.0, np.abs(lo))
    lo[narrow] -= pad[narrow]
    hi[narrow] += pad[narrow]
    return np.stack([lo, hi], axis=1)


def _select(model: nn.Module, layers: Sequence[str | int] | None) -> list[tuple[str, SLAF]]:
    found = _find_slafs(model)
    if layers is None:
        return found
    names = {name or "slaf": (name, m) for name, m in found}
    out = []
    for layer in layers:
        key = str(layer)
        if key not in names:
            raise ValueError(
                f"layers= names {layer!r}, which is not an SLAF of the model; its SLAF layers "
                f"are {sorted(names)} (names as in model.named_modules(); an integer i means "
                "model[i])."
            )
        out.append(names[key])
    return out


def _channels_of(
    name: str, n_channels: int, units: Sequence[int] | Mapping[str, Sequence[int]] | None
) -> list[int] | None:
    """The channels units= asks for in this layer (None: not specified)."""
    if units is None:
        return None
    if isinstance(units, Mapping):
        keys = [name or "slaf", int(name)] if name.isdigit() else [name or "slaf"]
        chosen = next((units[k] for k in keys if k in units), None)
        if chosen is None:
            return None
    else:
        chosen = units
    chosen = [int(u) for u in chosen]
    bad = [u for u in chosen if not 0 <= u < n_channels]
    if bad or not chosen:
        raise ValueError(
            f"units= must be channel numbers in 0..{n_channels - 1} for {_layer_label(name)}, "
            f"got {list(chosen)}."
        )
    return chosen


def _evenly(n_channels: int, n: int) -> list[int]:
    if n >= n_channels:
        return list(range(n_channels))
    return sorted({int(round(v)) for v in np.linspace(0, n_channels - 1, n)})


def plot_activations(
    model: nn.Module,
    x: ArrayLike | Tensor | None = None,
    path: str | os.PathLike[str] | None = None,
    *,
    layers: Sequence[str | int] | None = None,
    units: Sequence[int] | Mapping[str, Sequence[int]] | None = None,
    max_panels: int = 16,
    fit_nearest: bool = True,
) -> Figure:
    """Every learned activation of a model in one figure, over the range its inputs take.

    A layer with shared coefficients gets one panel with a curve per channel (channels
    differ through their own normalisation statistics); a layer with per-channel
    coefficients gets a panel per channel. Each curve is the SLAF's evaluation-mode function
    (from :meth:`SLAF.polynomial` for polynomial bases, the module itself for EMFN), drawn
    over the channel's observed range, with the histogram of its inputs behind it and the
    nearest standard activation (:func:`nearest_activation`) dashed and named.

    Parameters
    ----------
    model : nn.Module
        A model containing SLAF layers (or an SLAF).
    x : array-like or Tensor, optional
        Inputs to calibrate on (:func:`calibrate`). Without them each channel is drawn over
        its running mean ± 3 standard deviations (± the running max of |z| for EMFN), as
        the title says, and no histogram is shown.
    path : str or path-like, optional
        Write the figure there (``.png``, ``.svg`` or ``.pdf``).
    layers : list of str or int, optional
        SLAF layers to draw, by name in ``model.named_modules()`` (an integer i is model[i]);
        default all.
    units : list of int or dict of layer name to list of int, optional
        Channels to draw (for per-channel layers: a panel each); default evenly spaced.
    max_panels : int, default=16
        Most panels in the figure; the title says what was left out.
    fit_nearest : bool, default=True
        Fit and draw the nearest standard activation in each panel.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> import polynet
    >>> net = polynet.SLNN(2, [4, 3], [3, 2]).eval()
    >>> fig = plot_activations(net, torch.randn(64, 2), fit_nearest=False)
    >>> [ax.get_title() for ax in fig.axes if ax.get_title()]
    ['model[1] · shared, 4 channels', 'model[3] · shared, 3 channels']
    """
    if isinstance(max_panels, bool) or not isinstance(max_panels, int) or max_panels < 1:
        raise ValueError(f"max_panels must be an integer >= 1, got {max_panels!r}.")
    selected = _select(model, layers)
    observed = calibrate(model, x) if x is not None else None
    n_observed = None if x is None else _as_inputs(x).shape[0]
    prepared = []
    for name, slaf in selected:
        copy_ = copy.deepcopy(slaf).to(device="cpu", dtype=torch.float64).eval()
        if observed is not None:
            samples = observed[name or "slaf"].numpy()
            ranges = np.stack([samples.min(0), samples.max(0)], axis=1)
        else:
            samples, ranges = None, _running_range(copy_)
        prepared.append(_Layer(name, copy_, _widen(ranges), samples))

    panels, notes = _plan_panels(prepared, units, max_panels)
    n = len(panels)
    ncols = min(4, n)
    nrows = math.ceil(n / ncols)
    fig = _figure(3.7 * ncols, 2.9 * nrows + 0.5)
    grid = fig.subplots(nrows, ncols, squeeze=False)
    for ax in grid.flat[n:]:
        ax.set_visible(False)
    for ax, (layer, channels) in zip(grid.flat, panels):
        _draw_activation_panel(ax, layer, channels, fit_nearest)
    where = (
        f"input ranges and histograms observed on {n_observed:,} samples"
        if n_observed is not None
        else "no data given: each curve spans its running mean ± 3σ"
    )
    title = f"Learned activations ({where})"
    if notes:
        title += "\n" + "; ".join(notes)
    fig.suptitle(title, fontsize=11)
    fig.supxlabel("SLAF input z", fontsize=10)
    fig.supylabel("SLAF output a(z)", fontsize=10)
    _save(fig, path)
    return fig


def _plan_panels(
    layers: list[_Layer],
    units: Sequence[int] | Mapping[str, Sequence[int]] | None,
    max_panels: int,
) -> tuple[list[tuple[_Layer, list[int]]], list[str]]:
    """Panels as (layer, channels), in model order, capped at max_panels."""
    notes = []
    n_shared = sum(layer.shared for layer in layers)
    per_channel = [layer for layer in layers if not layer.shared]
    budget = max(1, (max_panels - n_shared) // len(per_channel)) if per_channel else 0
    panels: list[tuple[_Layer, list[int]]] = []
    for layer in layers:
        c = layer.slaf.num_features
        asked = _channels_of(layer.name, c, units)
        if layer.shared:
            channels = asked if asked is not None else _evenly(c, MAX_CURVES)
            if len(channels) > MAX_CURVES:
                channels = [channels[i] for i in _evenly(len(channels), MAX_CURVES)]
            if len(channels) < c:
                notes.append(f"{_layer_label(layer.name)}: {len(channels)} of {c} channels drawn")
            panels.append((layer, channels))
        else:
            channels = asked if asked is not None else _evenly(c, budget)
            if len(channels) > budget:
                channels = channels[:budget]
            if len(channels) < c:
                notes.append(f"{_layer_label(layer.name)}: {len(channels)} of {c} channels shown")
            panels += [(layer, [ch]) for ch in channels]
    if len(panels) > max_panels:
        notes.append(f"{len(panels) - max_panels} panels over max_panels={max_panels} left out")
        panels = panels[:max_panels]
    return panels, notes


def _draw_activation_panel(ax: Axes, layer: _Layer, channels: list[int], fit_nearest: bool) -> None:
    z, y = layer.curves(channels)
    single = len(channels) == 1
    if layer.samples is not None:
        twin = ax.twinx()
        values = layer.samples[:, channels].reshape(-1)
        counts, _, _ = twin.hist(values, bins=40, color="0.82", edgecolor="none")
        twin.set_ylim(0, max(float(counts.max()), 1.0) * 2.8)
        twin.set_yticks([])
        ax.set_zorder(twin.get_zorder() + 1)
        ax.patch.set_visible(False)
    alpha = 1.0 if single else max(0.25, min(0.8, 6 / len(channels)))
    for zc, yc in zip(z, y):
        ax.plot(zc, yc, color="C0", lw=2.0 if single else 0.9, alpha=alpha)
    ax.axhline(0, color="0.6", lw=0.5, zorder=0)
    ax.axvline(0, color="0.6", lw=0.5, zorder=0)
    slaf = layer.slaf
    kind = f"k={slaf.degree}, {slaf.basis.name}"
    if single:
        ax.set_title(f"{_layer_label(layer.name)} · channel {channels[0]}", fontsize=9)
    else:
        ax.set_title(
            f"{_layer_label(layer.name)} · shared, {slaf.num_features} channels", fontsize=9
        )
    text = kind
    if fit_nearest:
        near = _panel_nearest(layer, channels)
        zz = np.linspace(z.min(), z.max(), CURVE_POINTS)
        ax.plot(zz, near(zz), ls="--", color="C3", lw=1.3)
        if single:
            text = f"{near.label()}\n{kind}"
        else:
            summary = _per_channel_summary(layer, channels)
            text = f"all: {near.label()}\n{summary} · {kind}"
    ax.text(
        0.03,
        0.97,
        text,
        transform=ax.transAxes,
        va="top",
        fontsize=7.5,
        bbox={"boxstyle": "round,pad=0.25", "fc": "white", "ec": "0.8", "alpha": 0.85},
    )
    _limit_y(ax, y)
    ax.tick_params(labelsize=8)


def _limit_y(ax: Axes, y: np.ndarray) -> None:
    """Room at the top for the label box."""
    lo, hi = float(np.min(y)), float(np.max(y))
    span = hi - lo if hi > lo else max(1.0, abs(hi))
    ax.set_ylim(lo - 0.05 * span, hi + 0.35 * span)


def _per_channel_summary(layer: _Layer, channels: list[int]) -> str:
    """Nearest activations of a few channels fitted one by one, counted by name."""
    chosen = [channels[i] for i in _evenly(len(channels), CHANNEL_FITS)]
    fits = [_panel_nearest(layer, [ch]) for ch in chosen]
    names: dict[str, int] = {}
    for fit in fits:
        name = ("−" if fit.a < 0 else "") + fit.name
        names[name] = names.get(name, 0) + 1
    ranked = sorted(names.items(), key=lambda kv: -kv[1])
    counted = ", ".join(f"{name} {n}/{len(fits)}" for name, n in ranked)
    median = float(np.median([fit.r2 for fit in fits]))
    return f"each: {counted}\n(median R² {median:.3f})"


def _panel_nearest(layer: _Layer, channels: list[int]) -> NearestActivation:
    """Nearest activation to the panel's curves, on the observed values (pooled if many)."""
    chosen = [channels[i] for i in _evenly(len(channels), 32)]
    per_channel = _MAX_FIT_POINTS // len(chosen)
    zs = []
    for ch in chosen:
        lo, hi = layer.ranges[ch]
        if layer.samples is not None:
            values = np.sort(layer.samples[:, ch])
            values = values[
                np.linspace(0, values.size - 1, min(per_channel, values.size)).astype(int)
            ]
        else:
            values = np.linspace(lo, hi, per_channel)
        zs.append(values)
    z = np.full((max(len(v) for v in zs), layer.slaf.num_features), np.nan)
    for ch, values in zip(chosen, zs):
        z[: len(values), ch] = values
    filled = np.where(np.isnan(z), 0.0, z)
    y = layer.evaluate(filled)
    mask = ~np.isnan(z)
    return _fit_nearest(z[mask], y[mask])


def coefficient_snapshot(model: nn.Module) -> dict[str, np.ndarray]:
    """Every SLAF's effective coefficients c (after gate and identity offset), by layer name.

    Record one per epoch to pass as ``history`` to :func:`plot_coefficients`.

    Examples
    --------
    >>> import polynet
    >>> {k: v.shape for k, v in coefficient_snapshot(polynet.SLNN(2, [3], 4)).items()}
    {'1': (4,)}
    """
    return {
        name or "slaf": slaf.coefficient(torch.float64).detach().cpu().numpy()
        for name, slaf in _find_slafs(model)
    }


def _coefficient_history(
    history: Sequence[Mapping[str, Any]], names: list[str]
) -> dict[str, np.ndarray]:
    """Per layer, an array (epochs, k) or (epochs, C, k) from snapshots."""
    snapshots = []
    for i, entry in enumerate(history):
        snap = entry.get("slaf_coefficients", entry) if isinstance(entry, Mapping) else None
        if not isinstance(snap, Mapping) or not all(n in snap for n in names):
            raise ValueError(
                f"history[{i}] holds no SLAF coefficients for layers {names}: history must be a "
                "list of per-epoch snapshots from plots.coefficient_snapshot(model) (or of "
                "entries with a 'slaf_coefficients' key). training.fit's history keeps losses "
                "and metrics only; record a snapshot after each epoch."
            )
        snapshots.append(snap)
    return {n: np.stack([np.asarray(s[n], dtype=np.float64) for s in snapshots]) for n in names}


def plot_coefficients(
    model: nn.Module,
    history: Sequence[Mapping[str, Any]] | None = None,
    path: str | os.PathLike[str] | None = None,
) -> Figure:
    """SLAF coefficients against basis element, per layer; with ``history``, their paths.

    The coefficients shown are the effective c of each SLAF (gate and identity offset
    applied), which multiply normalised features, so their sizes compare across degrees.
    Per-channel layers show each channel thinly and the median boldly.

    Parameters
    ----------
    model : nn.Module
        A model containing SLAF layers.
    history : list of dict, optional
        Per-epoch snapshots, each ``coefficient_snapshot(model)`` or an entry with a
        ``"slaf_coefficients"`` key holding one; adds a row of coefficient-against-epoch
        panels.
    path : str or path-like, optional
        Write the figure there.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> import polynet
    >>> net = polynet.SLNN(2, [3], 4)
    >>> fig = plot_coefficients(net, [coefficient_snapshot(net)] * 3)
    >>> len(fig.axes)
    2
    """
    found = _find_slafs(model)
    names = [name or "slaf" for name, _ in found]
    paths = _coefficient_history(history, names) if history else None
    ncols = len(found)
    nrows = 2 if paths else 1
    fig = _figure(max(4.2 * ncols, 5.0), 3.2 * nrows + 0.4)
    grid = fig.subplots(nrows, ncols, squeeze=False)
    for j, (name, slaf) in enumerate(found):
        c = slaf.coefficient(torch.float64).detach().cpu().numpy()
        ax = grid[0, j]
        i = np.arange(1, slaf.degree + 1)
        if c.ndim == 1:
            ax.bar(i, c, color="C0", width=0.6)
        else:
            for row in c[_evenly(c.shape[0], MAX_CURVES)]:
                ax.plot(i, row, color="C0", lw=0.7, alpha=0.3)
            ax.plot(i, np.median(c, axis=0), "o-", color="C3", lw=2, label="median channel")
            ax.legend(fontsize=8)
        ax.axhline(0, color="0.6", lw=0.6)
        ax.set_xticks(i)
        ax.set_xlabel(f"basis element i ({slaf.basis.name})", fontsize=9)
        ax.set_ylabel("coefficient c_i", fontsize=9)
        share = "shared" if c.ndim == 1 else f"per channel, {c.shape[0]} channels"
        ax.set_title(f"{_layer_label(name)} · {share}", fontsize=10)
        if paths:
            ax2 = grid[1, j]
            p = paths[name or "slaf"]
            if p.ndim == 3:
                p = np.median(p, axis=1)
            epochs = np.arange(1, p.shape[0] + 1)
            for k in range(p.shape[1]):
                ax2.plot(epochs, p[:, k], lw=1.5, label=f"c_{k + 1}", color=f"C{k % 10}")
            ax2.axhline(0, color="0.6", lw=0.6)
            ax2.set_xlabel("epoch", fontsize=9)
            ax2.set_ylabel("coefficient" + (" (median channel)" if c.ndim > 1 else ""), fontsize=9)
            ax2.legend(fontsize=7, ncols=min(4, p.shape[1]))
    fig.suptitle("SLAF coefficients", fontsize=11)
    _save(fig, path)
    return fig


def plot_history(
    history: Sequence[Mapping[str, Any]], path: str | os.PathLike[str] | None = None
) -> Figure:
    """Training curves from ``FitResult.history`` (or a checkpoint's ``"history"`` metadata).

    One panel of losses (train, validation, test; log scale) and one of the metric (RMSE or
    accuracy) on the splits that recorded it.

    Examples
    --------
    >>> h = [{"epoch": e, "train_loss": 1 / e, "test_loss": 1.2 / e, "test_rmse": 2 / e}
    ...      for e in range(1, 6)]
    >>> [ax.get_ylabel() for ax in plot_history(h).axes]
    ['loss', 'rmse']
    """
    if not history:
        raise ValueError("history is empty; train with history=True to record one.")
    epochs = [entry.get("epoch", i + 1) for i, entry in enumerate(history)]
    losses = [k for k in ("train_loss", "val_loss", "test_loss") if _series(history, k)]
    metrics = sorted(
        {
            k
            for entry in history
            for k, v in entry.items()
            if k.startswith(("train_", "val_", "test_"))
            and not k.endswith("_loss")
            and v is not None
            and isinstance(v, (int, float))
        }
    )
    ncols = 1 + bool(metrics)
    fig = _figure(5.0 * ncols, 3.6)
    axes = fig.subplots(1, ncols, squeeze=False)[0]
    for key in losses:
        values = _series(history, key)
        axes[0].plot(epochs, values, label=key.removesuffix("_loss"), lw=1.6)
    positive = all(v is None or v > 0 for k in losses for v in _series(history, k))
    if positive and losses:
        axes[0].set_yscale("log")
    axes[0].set_xlabel("epoch")
    axes[0].set_ylabel("loss")
    axes[0].legend(fontsize=8)
    if metrics:
        name = metrics[0].split("_", 1)[1]
        for key in metrics:
            axes[1].plot(epochs, _series(history, key), label=key.split("_", 1)[0], lw=1.6)
        axes[1].set_xlabel("epoch")
        axes[1].set_ylabel(name)
        axes[1].legend(fontsize=8)
    fig.suptitle("Training", fontsize=11)
    _save(fig, path)
    return fig


def _series(history: Sequence[Mapping[str, Any]], key: str) -> list[float] | None:
    values = [entry.get(key) for entry in history]
    if all(v is None for v in values):
        return None
    return [math.nan if v is None else float(v) for v in values]


# --------------------------------------------------------------------------------------------
# The network polynomial
# --------------------------------------------------------------------------------------------


class PolynomialFigure(NamedTuple):
    """A figure of a polynomial beside its network, and the largest difference drawn."""

    figure: Figure
    max_difference: float


def plot_degree_profile(
    poly: NetworkPolynomial, path: str | os.PathLike[str] | None = None
) -> Figure:
    """Coefficient mass Σ|c| by total degree (log scale), with Theorem 2's bound marked.

    Examples
    --------
    >>> import polynet
    >>> poly = polynet.expand(polynet.SLNN(2, [4], 3).eval())
    >>> plot_degree_profile(poly).axes[0].get_yscale()
    'log'
    """
    profile = poly.degree_profile()
    degrees = np.arange(profile.shape[1])
    fig = _figure(6.0, 3.6)
    ax = fig.subplots()
    n_out = profile.shape[0]
    if n_out == 1:
        mass = profile[0]
        shown = mass > 0
        ax.bar(degrees[shown], mass[shown], color="C0", width=0.7)
    else:
        for o in range(min(n_out, 10)):
            mass = np.where(profile[o] > 0, profile[o], np.nan)
            ax.plot(degrees, mass, "o-", ms=4, lw=1.2, label=f"output {o}")
        ax.legend(fontsize=7, ncols=2)
    ax.set_yscale("log")
    ax.axvline(poly.degree_bound, color="C3", ls="--", lw=1.2)
    ax.text(
        poly.degree_bound,
        0.98,
        f" bound ∏k = {poly.degree_bound}",
        transform=ax.get_xaxis_transform(),
        ha="right" if poly.degree_bound >= degrees[-1] else "left",
        va="top",
        color="C3",
        fontsize=8,
    )
    ax.set_xticks(degrees)
    ax.set_xlim(-0.6, max(degrees[-1], poly.degree_bound) + 0.6)
    ax.set_xlabel("total degree")
    ax.set_ylabel("Σ |coefficient|")
    ax.set_title(
        f"Degree profile: degree {poly.degree}, {poly.n_terms:,} of {poly.max_terms:,} "
        f"possible terms",
        fontsize=10,
    )
    _save(fig, path)
    return fig


def terms_table(poly: NetworkPolynomial, top: int = 10, output: int = 0) -> str:
    """The largest terms of one output as a Markdown table.

    Examples
    --------
    >>> from polynet import MonomialIndex, NetworkPolynomial
    >>> p = NetworkPolynomial(MonomialIndex(2, 2), torch.tensor([[1.0, 0, -3, 0, 0.5, 0]]))
    >>> print(terms_table(p, top=2))
    | # | coefficient | monomial | degree | share of Σ\\|c\\| |
    |---|---:|---|---:|---:|
    | 1 | -3 | `x1` | 1 | 66.7% |
    | 2 | 1 | `1` | 0 | 22.2% |
    """
    if isinstance(top, bool) or not isinstance(top, int) or top < 1:
        raise ValueError(f"top must be an integer >= 1, got {top!r}.")
    if not 0 <= output < poly.n_outputs:
        raise ValueError(f"output must be in 0..{poly.n_outputs - 1}, got {output!r}.")
    terms = poly.terms(top=top, output=output)
    total = float(poly.coefficients[output].abs().sum())
    lines = [
        "| # | coefficient | monomial | degree | share of Σ\\|c\\| |",
        "|---|---:|---|---:|---:|",
    ]
    for rank, term in enumerate(terms, 1):
        share = abs(term.coefficient) / total if total else 0.0
        lines.append(
            f"| {rank} | {term.coefficient:.6g} | `{term.monomial}` | {sum(term.exponents)} "
            f"| {share:.1%} |"
        )
    return "\n".join(lines)


def _network(model: nn.Module, input_shape: Sequence[int] | None) -> Callable[[Tensor], Tensor]:
    """The model as a float64 CPU function of flattened inputs (a copy; the model is kept)."""
    net = copy.deepcopy(model).to(device="cpu", dtype=torch.float64).eval()
    shape = tuple(input_shape) if input_shape and len(input_shape) > 1 else None

    def f(points: Tensor) -> Tensor:
        with torch.no_grad():
            out = net(points.reshape(-1, *shape) if shape else points)
        return out.reshape(points.shape[0], -1)

    return f


def _n_inputs(poly: NetworkPolynomial) -> int:
    fixed = poly.info.get("fixed")
    return len(fixed) if poly.info.get("inputs") is not None and fixed else poly.n_vars


def _restrict(
    poly: NetworkPolynomial, dims: Sequence[int], point: np.ndarray, output: int
) -> tuple[np.ndarray, np.ndarray]:
    """p(x) with the inputs outside ``dims`` fixed at ``point``: (coefficients, exponents).

    Exact substitution into the monomials (cheap next to evaluating every monomial on a
    grid), so the slice of a large polynomial is drawn at the cost of a small one.
    """
    inputs = poly.info.get("inputs")
    variables = list(inputs) if inputs is not None else list(range(poly.n_vars))
    position = {v: j for j, v in enumerate(variables)}
    missing = [d for d in dims if d not in position]
    if missing:
        raise ValueError(
            f"dims {list(dims)} are not all variables of the polynomial (a slice in inputs "
            f"{variables}); draw dims among them, or expand the model in all inputs."
        )
    keep = [position[d] for d in dims]
    others = [j for j in range(len(variables)) if j not in keep]
    exps = poly.exponents
    coef = poly.coefficients[output].detach().cpu().numpy()
    values = point[[variables[j] for j in others]]
    factor = np.prod(values[None, :] ** exps[:, others], axis=1) if others else 1.0
    reduced, inverse = np.unique(exps[:, keep], axis=0, return_inverse=True)
    out = np.zeros(len(reduced))
    np.add.at(out, inverse.reshape(-1), coef * factor)
    return out, reduced


def _eval_restricted(coef: np.ndarray, exps: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Σ_r coef[r] Π_j grid[:, j]^exps[r, j] for grid of shape (B, len(dims))."""
    return (np.prod(grid[:, None, :] ** exps[None, :, :], axis=2) * coef).sum(axis=1)


def _check_dims(dims: Sequence[int] | int, n: int) -> list[int]:
    dims = [dims] if isinstance(dims, (int, np.integer)) else [int(d) for d in dims]
    if len(dims) not in (1, 2) or len(set(dims)) != len(dims) or not all(0 <= d < n for d in dims):
        raise ValueError(
            f"dims must be one or two distinct input numbers in 0..{n - 1}, got {dims}."
        )
    return dims


def _data_matrix(x: ArrayLike | Tensor, n: int, name: str = "x") -> np.ndarray:
    data = _as_inputs(x, name).to(torch.float64).cpu().numpy()
    data = data.reshape(data.shape[0], -1) if data.ndim > 2 else data
    if data.ndim == 1 and n == 1:
        data = data[:, None]
    if data.ndim != 2 or data.shape[1] != n:
        raise DataError(
            f"{name} must have shape (N, {n}) (the network's inputs), got {tuple(data.shape)}."
        )
    return data


def _fixed_point(
    poly: NetworkPolynomial, data: np.ndarray, fixed: ArrayLike | Mapping[int, float] | None
) -> np.ndarray:
    n = data.shape[1]
    if poly.info.get("inputs") is not None:
        point = np.asarray(poly.info["fixed"], dtype=np.float64).copy()
    else:
        point = data.mean(axis=0)
    if fixed is None:
        return point
    if isinstance(fixed, Mapping):
        for i, v in fixed.items():
            if not 0 <= int(i) < n:
                raise ValueError(f"fixed= names input {i}, but the network has inputs 0..{n - 1}.")
            point[int(i)] = float(v)
        return point
    arr = np.asarray(fixed, dtype=np.float64).reshape(-1)
    if arr.shape != (n,):
        raise ValueError(
            f"fixed= must have length {n} (one value per input) or be a dict {{input: value}}, "
            f"got shape {arr.shape}."
        )
    return arr.copy()


def _axis_range(values: np.ndarray, pad: float = 0.0) -> tuple[float, float]:
    lo, hi = float(values.min()), float(values.max())
    if hi - lo < 1e-12:
        lo, hi = lo - 1.0, hi + 1.0
    span = hi - lo
    return lo - pad * span, hi + pad * span


def _safe_log_diff(diff: np.ndarray) -> np.ndarray:
    return np.log10(np.maximum(np.abs(diff), 1e-18))


def plot_slice(
    model: nn.Module,
    poly: NetworkPolynomial,
    x: ArrayLike | Tensor,
    dims: Sequence[int] | int,
    fixed: ArrayLike | Mapping[int, float] | None = None,
    path: str | os.PathLike[str] | None = None,
    *,
    output: int = 0,
    n_points: int | None = None,
) -> PolynomialFigure:
    """A 1-D or 2-D slice of the network polynomial drawn beside the network itself.

    The inputs in ``dims`` run over the range of the data ``x``; the others are held at
    ``fixed`` (default: the data mean, or a slice polynomial's own fixed values). The
    network runs in float64 evaluation mode on a copy; the polynomial is restricted to the
    slice by exact substitution. They must coincide: the figure draws both and the
    difference, and the largest difference is returned.

    Parameters
    ----------
    model : nn.Module
        The network.
    poly : NetworkPolynomial
        Its polynomial (:func:`polynet.expand`), in all inputs or a slice containing ``dims``.
    x : array-like of shape (N, n_inputs)
        Data: the slice spans its range in ``dims``; its points are marked.
    dims : int or (int,) or (int, int)
        The inputs to vary.
    fixed : array of length n_inputs or dict {input: value}, optional
        Values of the other inputs.
    path : str or path-like, optional
        Write the figure there.
    output : int, default=0
        Which output to draw.
    n_points : int, optional
        Points per axis (default 401 for 1-D, 121 for 2-D).

    Returns
    -------
    PolynomialFigure
        ``(figure, max_difference)``, the difference max |p − f| over the drawn grid.

    Examples
    --------
    >>> import polynet
    >>> net = polynet.SLNN(3, [5], 2).eval()
    >>> x = torch.randn(50, 3)
    >>> fig, diff = plot_slice(net, polynet.expand(net), x, dims=(0, 2))
    >>> diff < 1e-12
    True
    """
    n = _n_inputs(poly)
    dims = _check_dims(dims, n)
    if not 0 <= output < poly.n_outputs:
        raise ValueError(f"output must be in 0..{poly.n_outputs - 1}, got {output!r}.")
    data = _data_matrix(x, n)
    point = _fixed_point(poly, data, fixed)
    n_points = n_points or (401 if len(dims) == 1 else 121)
    axes_values = [np.linspace(*_axis_range(data[:, d]), n_points) for d in dims]
    mesh = np.meshgrid(*axes_values, indexing="xy")
    grid = np.stack([m.reshape(-1) for m in mesh], axis=1)
    full = np.tile(point, (grid.shape[0], 1))
    full[:, dims] = grid
    net_f = _network(model, poly.info.get("input_shape"))
    net_values = net_f(torch.from_numpy(full))[:, output].numpy()
    coef, exps = _restrict(poly, dims, point, output)
    poly_values = _eval_restricted(coef, exps, grid)
    diff = poly_values - net_values
    max_diff = float(np.max(np.abs(diff)))
    names = [f"x{d}" for d in dims]
    held = (
        "given values"
        if fixed is not None
        else ("the slice's values" if poly.info.get("inputs") is not None else "the data mean")
    )
    title = f"output {output} along {', '.join(names)}, other inputs at {held}"
    if len(dims) == 1:
        fig = _figure(6.4, 5.0)
        top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=[3, 1])
        t = axes_values[0]
        top.plot(t, net_values, color="0.75", lw=5, label="network (float64)")
        top.plot(t, poly_values, color="C3", lw=1.4, ls="--", label="polynomial")
        top.plot(
            data[:, dims[0]],
            np.full(data.shape[0], top.get_ylim()[0]),
            "|",
            color="C0",
            ms=8,
            alpha=0.5,
            label="data",
        )
        top.set_ylabel(f"output {output}")
        top.legend(fontsize=8)
        bottom.semilogy(t, np.maximum(np.abs(diff), 1e-18), color="C2", lw=1)
        bottom.set_ylabel("|p − f|", fontsize=9)
        bottom.set_xlabel(names[0])
        fig.suptitle(f"Slice: {title}\nmax |p − f| = {max_diff:.2e}", fontsize=10)
    else:
        fig = _figure(14.0, 4.4)
        axes = fig.subplots(1, 3)
        shape = mesh[0].shape
        levels = np.linspace(
            min(net_values.min(), poly_values.min()), max(net_values.max(), poly_values.max()), 21
        )
        if levels[-1] <= levels[0]:
            levels = np.linspace(levels[0] - 1, levels[0] + 1, 21)
        for ax, values, label in (
            (axes[0], net_values, "network f (float64)"),
            (axes[1], poly_values, "polynomial p"),
        ):
            filled = ax.contourf(*mesh, values.reshape(shape), levels=levels, cmap="viridis")
            ax.contour(*mesh, values.reshape(shape), levels=levels[::4], colors="k", linewidths=0.4)
            ax.scatter(data[:, dims[0]], data[:, dims[1]], s=4, c="w", alpha=0.5, lw=0)
            ax.set_title(label, fontsize=10)
            ax.set_xlabel(names[0])
            ax.set_ylabel(names[1])
        fig.colorbar(filled, ax=list(axes[:2]), label=f"output {output}", shrink=0.9)
        err = axes[2].pcolormesh(*mesh, _safe_log_diff(diff).reshape(shape), cmap="magma")
        axes[2].set_title("log10 |p − f|", fontsize=10)
        axes[2].set_xlabel(names[0])
        axes[2].set_ylabel(names[1])
        fig.colorbar(err, ax=axes[2])
        fig.suptitle(f"Slice: {title}; max |p − f| = {max_diff:.2e}", fontsize=10)
    _save(fig, path)
    return PolynomialFigure(fig, max_diff)


def _full_grid(data: np.ndarray, n_points: int, pad: float = 0.05) -> tuple[list, np.ndarray]:
    axes_values = [
        np.linspace(*_axis_range(data[:, j], pad), n_points) for j in range(data.shape[1])
    ]
    mesh = np.meshgrid(*axes_values, indexing="xy")
    return mesh, np.stack([m.reshape(-1) for m in mesh], axis=1)


def _both(
    model: nn.Module, poly: NetworkPolynomial, grid: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    if poly.info.get("inputs") is not None:
        raise ValueError(
            "this plot needs the polynomial in all the network's inputs, got a slice; expand "
            "without inputs=, or use plot_slice."
        )
    net_values = _network(model, poly.info.get("input_shape"))(torch.from_numpy(grid)).numpy()
    poly_values = poly.to("cpu")(grid).numpy()
    return net_values, poly_values


def _few_inputs(poly: NetworkPolynomial, what: str) -> int:
    n = _n_inputs(poly)
    if n > 2:
        raise ValueError(
            f"{what} draws models with 1 or 2 inputs, this one has {n}; draw slices with "
            "plot_slice(model, poly, x, dims=(i, j)) instead."
        )
    return n


def plot_surface(
    model: nn.Module,
    poly: NetworkPolynomial,
    X: ArrayLike | Tensor,
    y: ArrayLike | Tensor | None = None,
    path: str | os.PathLike[str] | None = None,
    *,
    output: int = 0,
    n_points: int = 121,
) -> PolynomialFigure:
    """A 1- or 2-input regression network's polynomial over the data, with the network.

    One input: the data, the network and the polynomial as curves. Two inputs: the
    polynomial as a filled contour map with the network's contour lines over it and the
    data coloured by target, beside a map of |p − f|.

    Returns
    -------
    PolynomialFigure
        ``(figure, max_difference)`` over the drawn grid.

    Examples
    --------
    >>> import polynet
    >>> net = polynet.SLNN(2, [4], 2).eval()
    >>> X = torch.randn(30, 2)
    >>> plot_surface(net, polynet.expand(net), X, X[:, 0]).max_difference < 1e-12
    True
    """
    n = _few_inputs(poly, "plot_surface")
    data = _data_matrix(X, n, "X")
    target = None if y is None else _as_inputs(y, "y").double().cpu().numpy().reshape(-1)
    if target is not None and target.shape[0] != data.shape[0]:
        raise DataError(f"y has {target.shape[0]} values for {data.shape[0]} samples in X.")
    mesh, grid = _full_grid(data, 401 if n == 1 else n_points)
    net_values, poly_values = _both(model, poly, grid)
    net_values, poly_values = net_values[:, output], poly_values[:, output]
    diff = poly_values - net_values
    max_diff = float(np.max(np.abs(diff)))
    if n == 1:
        fig = _figure(6.4, 4.4)
        ax = fig.subplots()
        if target is not None:
            ax.scatter(data[:, 0], target, s=8, color="C0", alpha=0.5, label="data")
        ax.plot(grid[:, 0], net_values, color="0.7", lw=5, label="network")
        ax.plot(grid[:, 0], poly_values, color="C3", lw=1.4, ls="--", label="polynomial")
        ax.set_xlabel("x0")
        ax.set_ylabel(f"output {output}")
        ax.legend(fontsize=8)
    else:
        fig = _figure(11.5, 4.6)
        left, right = fig.subplots(1, 2)
        shape = mesh[0].shape
        values = poly_values if target is None else np.concatenate([poly_values, target])
        levels = np.linspace(values.min(), values.max(), 21)
        if levels[-1] <= levels[0]:
            levels = np.linspace(levels[0] - 1, levels[0] + 1, 21)
        filled = left.contourf(*mesh, poly_values.reshape(shape), levels=levels, cmap="viridis")
        lines = np.linspace(net_values.min(), net_values.max(), 9)[1:-1]
        if lines[-1] > lines[0]:
            left.contour(*mesh, net_values.reshape(shape), levels=lines, colors="w", linewidths=0.8)
        if target is not None:
            left.scatter(
                data[:, 0],
                data[:, 1],
                c=target,
                cmap="viridis",
                vmin=levels[0],
                vmax=levels[-1],
                s=16,
                edgecolors="k",
                linewidths=0.4,
            )
        fig.colorbar(filled, ax=left, label=f"output {output}")
        left.set_title("polynomial (fill) and network (white contours)", fontsize=10)
        err = right.pcolormesh(*mesh, _safe_log_diff(diff).reshape(shape), cmap="magma")
        fig.colorbar(err, ax=right)
        right.set_title("log10 |p − f|", fontsize=10)
        for ax in (left, right):
            ax.set_xlabel("x0")
            ax.set_ylabel("x1")
    fig.suptitle(
        f"Network polynomial (degree {poly.degree}, {poly.n_terms:,} terms) over the data; "
        f"max |p − f| = {max_diff:.2e}",
        fontsize=10,
    )
    _save(fig, path)
    return PolynomialFigure(fig, max_diff)


def _decisions(values: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """Predicted class and, for two classes, the score whose zero level is the boundary."""
    if values.shape[1] == 1:
        return (values[:, 0] > 0).astype(int), values[:, 0]
    if values.shape[1] == 2:
        score = values[:, 1] - values[:, 0]
        return (score > 0).astype(int), score
    return values.argmax(axis=1), None


def plot_decision_boundary(
    model: nn.Module,
    poly: NetworkPolynomial,
    X: ArrayLike | Tensor,
    y: ArrayLike | Tensor,
    path: str | os.PathLike[str] | None = None,
    *,
    n_points: int = 241,
) -> PolynomialFigure:
    """A 1- or 2-input classifier's decision regions from its polynomial, with the network's.

    Regions are the polynomial's decisions (one output: the sign of the logit; several:
    the largest); the network's boundary is drawn solid and the polynomial's dashed over
    it, with the data coloured by class. The title gives max |p − f| over all outputs and
    the share of the grid where the two decide alike.

    Returns
    -------
    PolynomialFigure
        ``(figure, max_difference)`` over the drawn grid and all outputs.

    Examples
    --------
    >>> import polynet
    >>> net = polynet.SLNN(2, [6], 2, out_features=2).eval()
    >>> X = torch.randn(40, 2)
    >>> plot_decision_boundary(net, polynet.expand(net), X, (X[:, 0] > 0).long())[1] < 1e-12
    True
    """
    from matplotlib.colors import ListedColormap
    from matplotlib.lines import Line2D

    n = _few_inputs(poly, "plot_decision_boundary")
    data = _data_matrix(X, n, "X")
    labels = _as_inputs(y, "y").cpu().numpy().reshape(-1)
    if labels.shape[0] != data.shape[0]:
        raise DataError(f"y has {labels.shape[0]} labels for {data.shape[0]} samples in X.")
    labels = labels.astype(int)
    mesh, grid = _full_grid(data, 801 if n == 1 else n_points, pad=0.08)
    net_values, poly_values = _both(model, poly, grid)
    max_diff = float(np.max(np.abs(poly_values - net_values)))
    net_class, net_score = _decisions(net_values)
    poly_class, poly_score = _decisions(poly_values)
    agree = float(np.mean(net_class == poly_class))
    n_classes = max(int(labels.max()) + 1, int(poly_values.shape[1]), 2)
    colors = [f"C{k % 10}" for k in range(n_classes)]
    cmap = ListedColormap(colors)
    if n == 1:
        fig = _figure(6.4, 4.2)
        ax = fig.subplots()
        t = grid[:, 0]
        for o in range(poly_values.shape[1]):
            ax.plot(t, net_values[:, o], color="0.7", lw=5)
            ax.plot(t, poly_values[:, o], color=colors[o], ls="--", lw=1.4, label=f"output {o}")
        ax.scatter(
            data[:, 0],
            np.zeros(len(data)),
            c=labels,
            cmap=cmap,
            vmin=0,
            vmax=n_classes - 1,
            s=18,
            edgecolors="k",
            linewidths=0.4,
            zorder=3,
        )
        ax.axhline(0, color="0.5", lw=0.6)
        ax.set_xlabel("x0")
        ax.set_ylabel("logit")
        ax.legend(fontsize=8)
    else:
        fig = _figure(6.6, 5.6)
        ax = fig.subplots()
        shape = mesh[0].shape
        ax.pcolormesh(
            *mesh,
            poly_class.reshape(shape),
            cmap=cmap,
            vmin=0,
            vmax=n_classes - 1,
            alpha=0.22,
            shading="auto",
        )
        if net_score is not None:
            ax.contour(
                *mesh, net_score.reshape(shape), levels=[0], colors="k", linewidths=3, alpha=0.35
            )
            ax.contour(
                *mesh,
                poly_score.reshape(shape),
                levels=[0],
                colors="C3",
                linewidths=1.3,
                linestyles="--",
            )
        else:
            # Region k's border is the zero level of its margin out_k - max_{j != k} out_j.
            for values, style in (
                (net_values, {"colors": "k", "linewidths": 3, "alpha": 0.35}),
                (poly_values, {"colors": "C3", "linewidths": 1.3, "linestyles": "--"}),
            ):
                for k in range(values.shape[1]):
                    margin = values[:, k] - np.delete(values, k, axis=1).max(axis=1)
                    if margin.min() < 0 < margin.max():
                        ax.contour(*mesh, margin.reshape(shape), levels=[0], **style)
        ax.scatter(
            data[:, 0],
            data[:, 1],
            c=labels,
            cmap=cmap,
            vmin=0,
            vmax=n_classes - 1,
            s=14,
            edgecolors="k",
            linewidths=0.4,
        )
        ax.legend(
            [
                Line2D([], [], color="k", lw=3, alpha=0.35),
                Line2D([], [], color="C3", lw=1.3, ls="--"),
            ],
            ["network boundary", "polynomial boundary"],
            fontsize=8,
            loc="upper right",
        )
        ax.set_xlabel("x0")
        ax.set_ylabel("x1")
    fig.suptitle(
        f"Decision boundary of the network and of its polynomial (degree {poly.degree}, "
        f"{poly.n_terms:,} terms)\nmax |p − f| = {max_diff:.2e}; decisions agree on "
        f"{agree:.2%} of the grid",
        fontsize=10,
    )
    _save(fig, path)
    return PolynomialFigure(fig, max_diff)
