"""Polynomials for fixed activations and back: approximation (Theorem A), nearest activation.

Three public functions:

- :func:`approximate` fits one polynomial of degree k to a standard activation on an interval
  (Chebyshev interpolation, or a least-squares fit in the Taylor or Legendre basis) and can turn
  it into an evaluation-mode :class:`~polynet.slaf.SLAF`;
- :func:`from_network` converts a trained ``nn.Sequential`` of Linear (+ BatchNorm1d) layers and
  fixed activations into an SLNN of Linear and SLAF layers that approximates it on the range of
  some calibration data: each unit's activation becomes the Chebyshev interpolant of the
  activation on that unit's pre-activation interval;
- :func:`nearest_activation` goes the other way: the standard activation a·f(b·z + c) + d
  closest to a given function (a learned SLAF, say) by least squares, among
  :data:`STANDARD_ACTIVATIONS`.

The fits use numpy.polynomial throughout. The error analysis, with the bound these
approximations satisfy and the degree they need, is ``proofs/theorem_a.md``.
"""

from __future__ import annotations

import copy
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from numpy.polynomial import Chebyshev, Legendre, Polynomial
from numpy.polynomial import chebyshev as cheb
from numpy.polynomial import polynomial as npoly
from numpy.typing import ArrayLike
from torch import Tensor, nn

from polynet.errors import DataError, NotExpandableError, PolynetWarning
from polynet.slaf import SLAF
from polynet.validation import check_int, check_number

__all__ = [
    "ApproximationResult",
    "approximate",
    "from_network",
    "ACTIVATIONS",
    "NearestActivation",
    "nearest_activation",
    "NAME_R2",
    "STANDARD_ACTIVATIONS",
]

ActivationName = Literal["relu", "tanh", "sigmoid", "gelu", "silu", "leaky_relu"]
ApproxBasis = Literal["chebyshev", "taylor", "legendre"]

#: The activations :func:`approximate` knows by name, as float64 torch functions.
ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "relu": F.relu,
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
    "gelu": F.gelu,
    "silu": F.silu,
    "leaky_relu": F.leaky_relu,
}

# The series class each basis fits in; the SLAF basis of the same name evaluates it.
_SERIES: dict[str, type] = {"chebyshev": Chebyshev, "taylor": Polynomial, "legendre": Legendre}

# Elementwise activation modules from_network replaces by SLAFs (evaluated by the module itself).
_ELEMENTWISE = (
    nn.ReLU,
    nn.Tanh,
    nn.Sigmoid,
    nn.GELU,
    nn.SiLU,
    nn.LeakyReLU,
    nn.ELU,
    nn.CELU,
    nn.SELU,
    nn.Softplus,
    nn.Mish,
    nn.Hardtanh,
    nn.Softsign,
    nn.Tanhshrink,
)

#: Above this degree the monomial form of a Chebyshev series on [-1, 1] has lost about half of
#: float64's digits (cancellation grows like (1 + √2)^k), so from_network warns for "taylor".
TAYLOR_STABLE_DEGREE = 20

#: Points of the uniform grid on which :func:`approximate` measures the sup-norm error.
GRID_POINTS = 10_001


@dataclass(frozen=True, eq=False)
class ApproximationResult:
    """A polynomial approximation of an activation on an interval, from :func:`approximate`.

    Attributes
    ----------
    activation : str
        The activation's name (``"callable"`` for a user function).
    degree : int
        The polynomial degree k.
    basis : {"chebyshev", "taylor", "legendre"}
        The basis the polynomial was fitted in.
    interval : (float, float)
        The interval [a, b] of the fit.
    coefficients : ndarray of shape (k+1,)
        Monomial coefficients in the input z, low to high: p(z) = Σ_j coefficients[j] z^j.
    basis_coefficients : ndarray of shape (k+1,)
        Coefficients in ``basis`` of the variable t = (2z − a − b)/(b − a), which maps [a, b]
        onto [−1, 1] (numpy.polynomial's domain and window); the well-conditioned form.
    max_error : float
        max |p(z) − activation(z)| over a uniform grid of ``GRID_POINTS`` points on [a, b].
    """

    activation: str
    degree: int
    basis: str
    interval: tuple[float, float]
    coefficients: np.ndarray
    basis_coefficients: np.ndarray
    max_error: float

    def series(self) -> Polynomial | Chebyshev | Legendre:
        """The approximation as a numpy.polynomial series on ``interval`` (stable to evaluate)."""
        return _SERIES[self.basis](self.basis_coefficients, domain=list(self.interval))

    def __call__(self, z: ArrayLike) -> np.ndarray:
        """Evaluate the polynomial at ``z`` (any shape), in float64."""
        return self.series()(np.asarray(z, dtype=np.float64))

    def to_slaf(
        self,
        num_features: int = 1,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> SLAF:
        """An evaluation-mode SLAF that computes this polynomial on every channel.

        The SLAF uses ``basis`` on the raw input z (its features are φ_i(z), not φ_i(t)), with
        coefficients shared by the layer, identity normalisation (running mean 0, running
        variance 1 − eps) and bias the constant term. On wide intervals and high degrees the
        monomial-like conditioning of φ_i(z) costs accuracy; :func:`from_network` avoids it by
        folding the map z → t into the preceding linear layer.

        Parameters
        ----------
        num_features : int, default=1
            Number of channels of the SLAF.
        device, dtype
            Where and in what precision the SLAF is created (torch's defaults when None).

        Returns
        -------
        SLAF
            In evaluation mode; ``slaf.polynomial()[c]`` equals ``coefficients`` for each c.

        Examples
        --------
        >>> fit = approximate("tanh", 5, interval=(-2, 2))
        >>> slaf = fit.to_slaf(3, dtype=torch.float64)
        >>> bool(torch.allclose(slaf.polynomial()[0], torch.from_numpy(fit.coefficients)))
        True
        """
        coef = _convert(self.coefficients, _SERIES[self.basis], self.degree, Polynomial)
        slaf = SLAF(
            num_features, self.degree, self.basis, share="layer", device=device, dtype=dtype
        )
        _set_slaf(slaf, torch.from_numpy(coef[1:]), torch.tensor(coef[0]))
        return slaf.eval()

    def __repr__(self) -> str:
        a, b = self.interval
        return (
            f"ApproximationResult({self.activation!r}, degree={self.degree}, "
            f"basis={self.basis!r}, interval=({a:g}, {b:g}), max_error={self.max_error:.3g})"
        )


def approximate(
    activation: ActivationName | Callable[[np.ndarray], ArrayLike],
    degree: int,
    basis: ApproxBasis = "chebyshev",
    interval: tuple[float, float] = (-3.0, 3.0),
) -> ApproximationResult:
    """Fit a polynomial of degree ``degree`` to an activation on ``interval``.

    ``basis="chebyshev"`` interpolates at the k+1 Chebyshev points of the first kind (within a
    factor 2 + (2/π)·log(k+1) of the best uniform approximation); ``"taylor"`` and
    ``"legendre"`` are least-squares fits on a uniform grid of ``GRID_POINTS`` points, in the
    monomial and Legendre bases of the interval mapped onto [−1, 1].

    Parameters
    ----------
    activation : {"relu", "tanh", "sigmoid", "gelu", "silu", "leaky_relu"} or callable
        The function to approximate; a callable takes and returns float64 numpy arrays of the
        same shape. The named ones are torch's (``leaky_relu`` with slope 0.01, exact ``gelu``).
    degree : int
        Polynomial degree k >= 1.
    basis : {"chebyshev", "taylor", "legendre"}, default="chebyshev"
        How the polynomial is fitted, and the SLAF basis :meth:`~ApproximationResult.to_slaf`
        uses.
    interval : (float, float), default=(-3, 3)
        The interval [a, b], a < b, on which the activation is approximated.

    Returns
    -------
    ApproximationResult
        Monomial and basis coefficients, and the measured sup-norm error.

    Raises
    ------
    ValueError
        For an unknown activation or basis, a degree below 1 or an empty interval.

    Examples
    --------
    >>> fit = approximate("tanh", 9, interval=(-2, 2))
    >>> fit.coefficients.shape
    (10,)
    >>> fit.max_error < 1e-3
    True
    >>> abs(float(fit(1.0)) - 0.7616) < 1e-3
    True
    """
    func, name = _activation_function(activation)
    degree = _degree(degree, "degree")
    if basis not in _SERIES:
        raise ValueError(
            f"basis must be one of {sorted(_SERIES)}, got {basis!r}; EMFN is not a polynomial "
            "basis and cannot hold a polynomial approximation."
        )
    a, b = _interval(interval)
    if basis == "chebyshev":
        series = Chebyshev.interpolate(func, degree, domain=[a, b])
    else:
        z = np.linspace(a, b, GRID_POINTS)
        series = _SERIES[basis].fit(z, func(z), degree, domain=[a, b])
    basis_coefficients = np.zeros(degree + 1)
    basis_coefficients[: series.coef.size] = series.coef
    monomial = series.convert(kind=Polynomial, domain=[-1, 1], window=[-1, 1]).coef
    coefficients = np.zeros(degree + 1)
    coefficients[: monomial.size] = monomial
    grid = np.linspace(a, b, GRID_POINTS)
    max_error = float(np.max(np.abs(series(grid) - func(grid))))
    return ApproximationResult(
        name, degree, basis, (a, b), coefficients, basis_coefficients, max_error
    )


def from_network(
    model: nn.Module,
    degree: int | Sequence[int],
    data: ArrayLike | Tensor,
    *,
    basis: ApproxBasis = "chebyshev",
    margin: float = 0.1,
    dtype: torch.dtype | None = None,
) -> nn.Sequential:
    """Convert a network with fixed activations into an SLNN that approximates it (Theorem A).

    The model is run (in float64, evaluation mode, on a copy) on the calibration inputs
    ``data`` to find each hidden unit's pre-activation range [lo, hi]; the range is widened by
    ``margin``·(hi − lo) on each side to the interval I = [c − r, c + r]. The map z → (z − c)/r
    onto [−1, 1] is folded into the preceding affine layer, and the activation becomes an SLAF
    whose evaluation-mode function on that unit is the Chebyshev interpolant of degree k of
    t ↦ σ(c + r·t) (identity normalisation, per-channel coefficients). BatchNorm1d (evaluation
    mode), Dropout, Identity and Flatten are affine and fold into the Linear layers; SLAF
    layers already in the model are kept.

    Parameters
    ----------
    model : nn.Sequential
        Linear, BatchNorm1d, Dropout, Identity, Flatten, SLAF and elementwise activation layers
        (ReLU, Tanh, Sigmoid, GELU, SiLU, LeakyReLU, ELU, CELU, SELU, Softplus, Mish, Hardtanh,
        Softsign, Tanhshrink); nested ``nn.Sequential`` blocks are flattened.
    degree : int or list of int
        Interpolation degree k >= 1 for every activation layer, or one per activation layer.
    data : array-like or Tensor of shape (N, n_features)
        Calibration inputs; the approximation is accurate on (a neighbourhood of) their range.
    basis : {"chebyshev", "taylor", "legendre"}, default="chebyshev"
        The SLAF basis; the interpolant is the same, converted to this basis of t ∈ [−1, 1]
        (Chebyshev is the numerically stable choice at high degree).
    margin : float, default=0.1
        Relative widening of each unit's range; it is the slack that absorbs the approximate
        network's own deviation from the original (``proofs/theorem_a.md``). A range narrower
        than 1e-3·max(1, |lo|, |hi|) is first widened to that width.
    dtype : torch.dtype, optional
        Precision of the result; by default the model's parameter dtype.

    Returns
    -------
    nn.Sequential
        Linear and SLAF layers in evaluation mode, on the model's device.

    Raises
    ------
    NotExpandableError
        For a layer that is neither affine nor elementwise (e.g. Conv2d, MaxPool1d, Softmax).
    DataError
        When ``data`` is not a finite 2-D array with the model's input width.

    Examples
    --------
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> net = nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 1)).double()
    >>> x = torch.rand(200, 2, dtype=torch.float64) * 2 - 1
    >>> slnn = from_network(net, 12, x)
    >>> [type(m).__name__ for m in slnn]
    ['Linear', 'SLAF', 'Linear']
    >>> bool((slnn(x) - net(x)).abs().max() < 1e-6)
    True
    """
    layers = _flatten_sequential(model)
    if basis not in _SERIES:
        raise ValueError(f"basis must be one of {sorted(_SERIES)}, got {basis!r}.")
    margin = check_number(margin, "margin", low=0.0, hint="the default is 0.1")
    n_activations = sum(isinstance(m, _ELEMENTWISE) for m in layers)
    degrees = _degrees(degree, n_activations)
    if basis == "taylor" and max(degrees, default=0) > TAYLOR_STABLE_DEGREE:
        warnings.warn(
            f"basis='taylor' at degree {max(degrees)} > {TAYLOR_STABLE_DEGREE}: the monomial "
            "coefficients of a Chebyshev interpolant lose about 0.38 decimal digits per degree "
            "to cancellation, so the SLNN may not match the interpolant; use basis='chebyshev'.",
            PolynetWarning,
            stacklevel=2,
        )
    params = [p for p in model.parameters()]
    device = params[0].device if params else torch.device("cpu")
    out_dtype = dtype or (params[0].dtype if params else torch.get_default_dtype())
    h = _calibration_data(data, device)

    out: list[nn.Module] = []
    pending: tuple[Tensor, Tensor] | None = None  # affine map (A, a) since the last activation
    k_iter = iter(degrees)
    with torch.no_grad():
        for i, layer in enumerate(layers):
            if isinstance(layer, (nn.Dropout, nn.Identity, nn.Flatten)):
                continue
            if isinstance(layer, (nn.Linear, nn.BatchNorm1d)):
                step = _affine(layer, i, h.shape[1], device)
                h = h @ step[0].T + step[1]
                pending = step if pending is None else _compose(step, pending)
                continue
            if pending is None:  # an activation straight after another: identity in between
                pending = (
                    torch.eye(h.shape[1], dtype=h.dtype, device=device),
                    h.new_zeros(h.shape[1]),
                )
            if isinstance(layer, SLAF):
                slaf = copy.deepcopy(layer).to(device=device, dtype=torch.float64).eval()
                out.append(_linear(*pending))
                out.append(slaf)
                h = slaf(h)
            elif isinstance(layer, _ELEMENTWISE):
                act = copy.deepcopy(layer).to(device=device, dtype=torch.float64).eval()
                center, radius = _intervals(h, margin)
                A, a = pending
                out.append(_linear(A / radius[:, None], (a - center) / radius))
                out.append(_interpolating_slaf(act, center, radius, next(k_iter), basis))
                h = act(h)
            else:
                raise NotExpandableError(
                    f"from_network cannot convert model[{i}] ({type(layer).__name__}): it is "
                    "neither affine (Linear, BatchNorm1d, Dropout, Identity, Flatten) nor an "
                    "elementwise activation; convert the part of the model before it, or "
                    "replace the layer."
                )
            pending = None
        if pending is not None:
            out.append(_linear(*pending))
    return nn.Sequential(*out).to(device=device, dtype=out_dtype).eval()


def _activation_function(
    activation: str | Callable[[np.ndarray], ArrayLike],
) -> tuple[Callable[[np.ndarray], np.ndarray], str]:
    if isinstance(activation, str):
        key = activation.lower()
        if key not in ACTIVATIONS:
            raise ValueError(
                f"activation must be one of {sorted(ACTIVATIONS)} or a callable, got "
                f"{activation!r}."
            )
        torch_func = ACTIVATIONS[key]

        def func(z: np.ndarray) -> np.ndarray:
            return torch_func(torch.from_numpy(np.asarray(z, dtype=np.float64))).numpy()

        return func, key
    if callable(activation):

        def checked(z: np.ndarray) -> np.ndarray:
            values = np.asarray(activation(z), dtype=np.float64)
            if values.shape != np.shape(z):
                raise ValueError(
                    f"the activation callable must return an array shaped like its input "
                    f"{np.shape(z)}, got {values.shape}; make it elementwise (e.g. use np.tanh)."
                )
            return values

        return checked, "callable"
    raise ValueError(
        f"activation must be one of {sorted(ACTIVATIONS)} or a callable, got {activation!r}."
    )


def _degree(value: object, name: str) -> int:
    return check_int(value, name, hint=f"use {name}=1 for a linear polynomial")


def _degrees(degree: int | Sequence[int], n_layers: int) -> list[int]:
    if isinstance(degree, Sequence) and not isinstance(degree, str):
        degrees = [_degree(k, f"degree[{i}]") for i, k in enumerate(degree)]
        if len(degrees) != n_layers:
            raise ValueError(
                f"degree must have one entry per activation layer ({n_layers}), got "
                f"{len(degrees)}: {degrees}; pass a single integer to use it for every layer."
            )
        return degrees
    return [_degree(degree, "degree")] * n_layers


def _interval(interval: tuple[float, float]) -> tuple[float, float]:
    try:
        a, b = (float(v) for v in interval)
    except (TypeError, ValueError):
        raise ValueError(f"interval must be a pair (a, b) of numbers, got {interval!r}.") from None
    if not (math.isfinite(a) and math.isfinite(b) and a < b):
        raise ValueError(f"interval must be finite with a < b, got {interval!r}.")
    return a, b


def _flatten_sequential(model: nn.Module) -> list[nn.Module]:
    if not isinstance(model, nn.Sequential):
        raise NotExpandableError(
            f"from_network needs an nn.Sequential model, got {type(model).__name__}; wrap the "
            "layers in nn.Sequential(...)."
        )
    layers: list[nn.Module] = []
    for layer in model:
        layers += _flatten_sequential(layer) if isinstance(layer, nn.Sequential) else [layer]
    return layers


def _calibration_data(data: ArrayLike | Tensor, device: torch.device) -> Tensor:
    try:
        x = torch.as_tensor(np.asarray(data) if not isinstance(data, Tensor) else data)
    except (TypeError, ValueError, RuntimeError) as err:
        raise DataError(f"data must be an array of shape (N, n_features): {err}") from err
    x = x.detach().to(device=device, dtype=torch.float64)
    if x.dim() != 2 or x.shape[0] < 1:
        raise DataError(
            f"data must have shape (N, n_features) with N >= 1, got {tuple(x.shape)}; "
            "reshape single samples with x.reshape(1, -1)."
        )
    if not torch.isfinite(x).all():
        raise DataError("data contains NaN or infinite values; drop or impute those rows first.")
    return x


def _affine(
    layer: nn.Module, index: int, width: int, device: torch.device
) -> tuple[Tensor, Tensor]:
    """The layer as (A, a) with layer(h) = h @ A.T + a, in float64."""
    if isinstance(layer, nn.Linear):
        if layer.in_features != width:
            raise DataError(
                f"model[{index}] (Linear) expects {layer.in_features} inputs, but data gives it "
                f"{width}; pass data of shape (N, {layer.in_features})."
            )
        A = layer.weight.detach().to(device=device, dtype=torch.float64)
        if layer.bias is None:
            return A, A.new_zeros(A.shape[0])
        return A, layer.bias.detach().to(device=device, dtype=torch.float64)
    if layer.num_features != width:
        raise DataError(
            f"model[{index}] (BatchNorm1d) expects {layer.num_features} features, but data "
            f"gives it {width}; pass data of shape (N, {layer.num_features})."
        )
    if layer.running_mean is None or layer.running_var is None:
        raise NotExpandableError(
            f"model[{index}] (BatchNorm1d) keeps no running statistics, so it normalises with "
            "batch statistics even in evaluation mode; build it with track_running_stats=True."
        )
    factory = {"device": device, "dtype": torch.float64}
    mean = layer.running_mean.to(**factory)
    scale = 1 / torch.sqrt(layer.running_var.to(**factory) + layer.eps)
    if layer.weight is not None:
        scale = scale * layer.weight.detach().to(**factory)
    shift = -mean * scale
    if layer.bias is not None:
        shift = shift + layer.bias.detach().to(**factory)
    return torch.diag(scale), shift


def _compose(outer: tuple[Tensor, Tensor], inner: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
    return outer[0] @ inner[0], outer[0] @ inner[1] + outer[1]


def _linear(A: Tensor, a: Tensor) -> nn.Linear:
    layer = nn.Linear(A.shape[1], A.shape[0], device=A.device, dtype=A.dtype)
    layer.weight.copy_(A)
    layer.bias.copy_(a)
    return layer


def _intervals(z: Tensor, margin: float) -> tuple[Tensor, Tensor]:
    """Each unit's (center, radius) of its range on z, widened by margin on each side."""
    lo, hi = z.amin(dim=0), z.amax(dim=0)
    floor = 1e-3 * torch.maximum(lo.abs().maximum(hi.abs()), torch.ones_like(lo))
    width = torch.maximum(hi - lo, floor)
    center = (lo + hi) / 2
    return center, width * (0.5 + margin)


def _interpolating_slaf(
    act: nn.Module, center: Tensor, radius: Tensor, degree: int, basis: str
) -> SLAF:
    """An SLAF whose channel j computes the Chebyshev interpolant of t ↦ act(c_j + r_j t)."""

    def func(t: np.ndarray) -> np.ndarray:
        z = center + radius * torch.from_numpy(t).to(center)[:, None]  # (k+1, C)
        return act(z).cpu().numpy()

    coef = cheb.chebinterpolate(func, degree)  # (k+1, C), Chebyshev series in t
    if basis != "chebyshev":
        coef = np.stack([_convert(c, _SERIES[basis], degree) for c in coef.T], axis=1)
    slaf = SLAF(
        center.numel(), degree, basis, share="channel", device=center.device, dtype=torch.float64
    )
    coef_t = torch.from_numpy(np.ascontiguousarray(coef.T)).to(center.device)  # (C, k+1)
    _set_slaf(slaf, coef_t[:, 1:], coef_t[:, 0])
    return slaf.eval()


def _convert(coef: np.ndarray, kind: type, degree: int, source: type = Chebyshev) -> np.ndarray:
    """Coefficients of the ``source`` series ``coef`` in the basis ``kind``, padded to k+1."""
    converted = source(coef).convert(kind=kind).coef
    out = np.zeros(degree + 1)
    out[: converted.size] = converted
    return out


def _set_slaf(slaf: SLAF, coefficients: Tensor, bias: Tensor) -> None:
    """Make ``slaf`` compute Σ_i coefficients_i φ_i + bias exactly: identity normalisation."""
    with torch.no_grad():
        offset = torch.zeros_like(slaf.weight)
        offset[..., 0] = 1.0
        slaf.weight.copy_(coefficients.to(slaf.weight) - offset)
        slaf.bias.copy_(bias.to(slaf.bias).expand_as(slaf.bias))
        slaf.running_mean.zero_()
        # sqrt(running_var + eps) = 1, so the normalisation is the identity.
        slaf.running_var.fill_(1.0 - slaf.eps)


# --------------------------------------------------------------------------------------------
# Nearest standard activation: the inverse question, which activation a polynomial resembles
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


#: A nearest standard activation is named ("≈ tanh") only when its fit reaches this R²; below
#: it the label says "no close standard activation" (a gelu at R² 0.47 is not a gelu).
NAME_R2 = 0.95


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

    @property
    def close(self) -> bool:
        """Whether the fit is close enough to name the activation (R² ≥ :data:`NAME_R2`)."""
        return self.name == "constant" or self.r2 >= NAME_R2

    def label(self) -> str:
        """Short text for a figure: the name and the fit quality, or "no close standard
        activation" (with the best candidate) when R² < :data:`NAME_R2`."""
        unexplained = 1.0 - self.r2
        if unexplained < 1e-4:
            quality = f"1 − R² = {max(unexplained, 0.0):.1e}"
        else:
            quality = f"R² = {self.r2:.4f}"
        sign = "−" if self.a < 0 else ""
        if not self.close:
            return f"no close standard activation (best {sign}{self.name}, {quality})"
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
