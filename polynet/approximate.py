"""Polynomial approximation of fixed activations, and of whole networks by SLNNs (Theorem A).

Two public functions:

- :func:`approximate` fits one polynomial of degree k to a standard activation on an interval
  (Chebyshev interpolation, or a least-squares fit in the Taylor or Legendre basis) and can turn
  it into an evaluation-mode :class:`~polynet.slaf.SLAF`;
- :func:`from_network` converts a trained ``nn.Sequential`` of Linear (+ BatchNorm1d) layers and
  fixed activations into an SLNN of Linear and SLAF layers that approximates it on the range of
  some calibration data: each unit's activation becomes the Chebyshev interpolant of the
  activation on that unit's pre-activation interval.

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
from numpy.typing import ArrayLike
from torch import Tensor, nn

from polynet.errors import DataError, NotExpandableError, PolynetWarning
from polynet.slaf import SLAF

__all__ = ["ApproximationResult", "approximate", "from_network", "ACTIVATIONS"]

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
    if isinstance(margin, bool) or not isinstance(margin, (int, float)) or not margin >= 0:
        raise ValueError(f"margin must be a number >= 0, got {margin!r}; the default is 0.1.")
    if not math.isfinite(margin):
        raise ValueError(f"margin must be finite, got {margin!r}.")
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
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(
            f"{name} must be an integer >= 1, got {value!r}; use {name}=1 for a linear polynomial."
        )
    return int(value)


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
