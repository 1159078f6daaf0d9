"""First- and second-order coefficients of an image model's polynomial, drawn as images.

:func:`plot_image_coefficients` takes a polynomial with a degree ≤ 2 part (the whole one, or
``expand(model, degree=2[, at=x0])`` for any image size) and draws two H × W maps: the linear
coefficient of each pixel, and for one pixel p the coefficients of x_p x_j over all pixels j
(x_p² at p itself): what the network's output does when p and another pixel change together.
"""

from __future__ import annotations

import math
import os
from typing import TYPE_CHECKING

import numpy as np

from polynet.plots.figure import _figure, _save
from polynet.polynomial.network_polynomial import NetworkPolynomial

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["plot_image_coefficients", "image_coefficients"]


def _image_shape(poly: NetworkPolynomial, shape: tuple[int, int] | None) -> tuple[int, int]:
    n = poly.n_vars
    if shape is None and poly.input_shape is not None and len(poly.input_shape) == 3:
        c, h, w = poly.input_shape
        if c == 1:
            shape = (h, w)
    if shape is None:
        side = math.isqrt(n)
        if side * side != n:
            raise ValueError(
                f"cannot draw {n} inputs as an image: pass shape=(H, W) with H·W = {n}."
            )
        shape = (side, side)
    if shape[0] * shape[1] != n:
        raise ValueError(f"shape={tuple(shape)} has {shape[0] * shape[1]} pixels, not {n}.")
    return int(shape[0]), int(shape[1])


def image_coefficients(
    poly: NetworkPolynomial, pixel: int | None = None, output: int = 0
) -> tuple[np.ndarray, np.ndarray, int]:
    """(linear coefficients (n,), interaction row of ``pixel`` (n,), pixel) from the degree-1
    and degree-2 blocks; ``pixel`` defaults to the largest |linear coefficient|.

    Entry j of the row is the coefficient of x_pixel x_j (of x_pixel² at j = pixel).
    """
    from polynet.expansion.truncated import tuple_rank

    n = poly.n_vars
    if poly.index.degree < 2:
        raise ValueError(
            f"the polynomial has degree {poly.index.degree}; the interaction map needs its "
            "degree-2 part: expand(model, degree=2)."
        )
    if not 0 <= int(output) < poly.n_outputs:
        raise ValueError(f"output must be in 0..{poly.n_outputs - 1}, got {output!r}.")
    coef = poly.coefficients[int(output)].detach().cpu().numpy()
    linear = coef[1 : n + 1]
    if pixel is None:
        pixel = int(np.argmax(np.abs(linear)))
    if not 0 <= int(pixel) < n:
        raise ValueError(f"pixel must be in 0..{n - 1}, got {pixel!r}.")
    pixel = int(pixel)
    others = np.arange(n)
    pairs = np.sort(np.stack([np.full(n, pixel), others], axis=1), axis=1)
    row = coef[n + 1 + tuple_rank(pairs, n)]
    return linear.copy(), row, pixel


def plot_image_coefficients(
    poly: NetworkPolynomial,
    pixel: int | None = None,
    *,
    output: int = 0,
    shape: tuple[int, int] | None = None,
    path: str | os.PathLike[str] | None = None,
) -> Figure:
    """Two maps: the linear coefficient of each pixel, and the interactions of one pixel.

    Parameters
    ----------
    poly : NetworkPolynomial
        A polynomial of degree ≥ 2 in the pixels (``expand(model, degree=2)`` at any size).
    pixel : int, optional
        The pixel (flattened index) whose interactions are drawn; default: the one with the
        largest |linear coefficient|.
    output : int, default=0
        Which output.
    shape : (H, W), optional
        Image shape (default: the polynomial's input shape, or a square).
    path : str or path-like, optional
        Write the figure here (.png, .svg, .pdf).

    Examples
    --------
    >>> import polynet
    >>> net = polynet.SLNN(16, [3], 2).eval()
    >>> fig = plot_image_coefficients(polynet.expand(net, degree=2))
    >>> len(fig.axes)
    4
    """
    h, w = _image_shape(poly, shape)
    linear, row, pixel = image_coefficients(poly, pixel, output)
    fig = _figure(8.0, 3.6)
    axes = fig.subplots(1, 2)
    taylor = poly.notes.get("taylor") or {}
    where = "at x0 (u = x - x0)" if taylor.get("center") is not None else "at 0"
    for ax, values, title in [
        (axes[0], linear, f"output {output}: linear coefficients {where}"),
        (axes[1], row, f"x_p · x_j coefficients, p = {pixel} (row {pixel // w}, col {pixel % w})"),
    ]:
        bound = float(np.abs(values).max()) or 1.0
        image = ax.imshow(values.reshape(h, w), cmap="RdBu_r", vmin=-bound, vmax=bound)
        ax.set_title(title, fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
        fig.colorbar(image, ax=ax, shrink=0.8)
    axes[1].plot([pixel % w], [pixel // w], marker="s", mfc="none", mec="k", ms=6)
    _save(fig, path)
    return fig
