"""The network polynomial drawn beside the network it came from.

:func:`plot_slice` draws a 1-D or 2-D slice through any number of inputs;
:func:`plot_surface` (regression) and :func:`plot_decision_boundary` (classification) draw
models of one or two inputs over their data. Each evaluates the network (float64, on a copy)
and the polynomial on the same grid and returns the largest difference with the figure.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import torch
from numpy.typing import ArrayLike
from torch import Tensor, nn

from polynet.errors import DataError
from polynet.plots.calibration import _as_inputs
from polynet.plots.figure import _figure, _save
from polynet.polynomial.network_polynomial import NetworkPolynomial

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["PolynomialFigure", "plot_slice", "plot_surface", "plot_decision_boundary"]


class PolynomialFigure(NamedTuple):
    """A figure of a polynomial beside its network, and the largest difference drawn."""

    figure: Figure
    max_difference: float


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
    return poly.slice.n_network_inputs if poly.slice is not None else poly.n_vars


def _restrict(
    poly: NetworkPolynomial, dims: Sequence[int], point: np.ndarray, output: int
) -> tuple[np.ndarray, np.ndarray]:
    """p(x) with the inputs outside ``dims`` fixed at ``point``: (coefficients, exponents).

    Exact substitution into the monomials (cheap next to evaluating every monomial on a
    grid), so the slice of a large polynomial is drawn at the cost of a small one.
    """
    variables = list(poly.slice.inputs) if poly.slice is not None else list(range(poly.n_vars))
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
    if poly.slice is not None:
        point = poly.slice.point()
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
    net_f = _network(model, poly.input_shape)
    net_values = net_f(torch.from_numpy(full))[:, output].numpy()
    coef, exps = _restrict(poly, dims, point, output)
    poly_values = _eval_restricted(coef, exps, grid)
    diff = poly_values - net_values
    max_diff = float(np.max(np.abs(diff)))
    inputs = list(poly.slice.inputs) if poly.slice is not None else list(range(poly.n_vars))
    names = [poly.variables[inputs.index(d)] for d in dims]
    held = (
        "given values"
        if fixed is not None
        else ("the slice's values" if poly.slice is not None else "the data mean")
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
    if poly.slice is not None:
        raise ValueError(
            "this plot needs the polynomial in all the network's inputs, got a slice; expand "
            "without inputs=, or use plot_slice."
        )
    net_values = _network(model, poly.input_shape)(torch.from_numpy(grid)).numpy()
    poly_values = np.asarray(poly.to("cpu")(grid))
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
        ax.set_xlabel(poly.variables[0])
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
            ax.set_xlabel(poly.variables[0])
            ax.set_ylabel(poly.variables[1])
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
