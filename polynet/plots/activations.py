"""The learned activations of a model in one figure: :func:`plot_activations`.

Each SLAF is drawn as its evaluation-mode function over the range its inputs take (observed
by :func:`~polynet.plots.calibrate`, or implied by its running statistics), with the
histogram of those inputs and the nearest standard activation
(:func:`~polynet.approximate.nearest_activation`).
"""

from __future__ import annotations

import copy
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from numpy.typing import ArrayLike
from torch import Tensor, nn

from polynet.approximate import _MAX_FIT_POINTS, NAME_R2, NearestActivation, _fit_nearest
from polynet.plots.calibration import _as_inputs, _find_slafs, _layer_label, calibrate
from polynet.plots.figure import _figure, _save
from polynet.slaf import SLAF
from polynet.validation import check_int

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["plot_activations", "MAX_CURVES", "CHANNEL_FITS", "CURVE_POINTS"]

#: Channel curves drawn in one panel of a layer with shared coefficients.
MAX_CURVES = 48
#: Channels of a shared-coefficient layer fitted one by one for the panel's summary.
CHANNEL_FITS = 6
#: Points per curve.
CURVE_POINTS = 241


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
    max_panels = check_int(max_panels, "max_panels")
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
    drew_nearest = False
    for ax, (layer, channels) in zip(grid.flat, panels):
        drew_nearest |= _draw_activation_panel(ax, layer, channels, fit_nearest)
    where = (
        f"input ranges and histograms observed on {n_observed:,} samples"
        if n_observed is not None
        else "no data given: each curve spans its running mean ± 3σ"
    )
    title = f"Learned activations ({where})"
    if any(len(channels) > 1 for _, channels in panels):
        notes.append(
            "shared = one polynomial per layer; curves differ by each channel's normalisation"
        )
    if notes:
        title += "\n" + ";\n".join(notes)
    fig.suptitle(title, fontsize=10)
    # x labels on the axes (a figure-level one would sit on top of the legend below).
    for ax, _ in zip(grid.flat, panels):
        ax.set_xlabel("SLAF input z", fontsize=8.5, labelpad=1)
    fig.supylabel("SLAF output a(z)", fontsize=10)
    _legend(fig, n_observed is not None, drew_nearest, 1 if ncols == 1 else min(3, ncols))
    _save(fig, path)
    return fig


def _legend(fig: Figure, histogram: bool, nearest: bool, ncols: int) -> None:
    """One legend for every panel: what the solid, dashed and grey marks are."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    handles = [Line2D([], [], color="C0", lw=1.5, label="learned activation a(z), one per channel")]
    if nearest:
        handles.append(
            Line2D(
                [],
                [],
                color="C3",
                ls="--",
                lw=1.3,
                label=f"nearest standard activation a·f(bz+c)+d, if R² ≥ {NAME_R2}",
            )
        )
    if histogram:
        handles.append(
            Patch(color="0.82", label="inputs z on the data, channels pooled (count: right axis)")
        )
    fig.legend(
        handles=handles,
        loc="outside lower center",
        ncols=min(ncols, len(handles)),
        fontsize=7.5,
        frameon=False,
    )


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


def _draw_activation_panel(ax: Axes, layer: _Layer, channels: list[int], fit_nearest: bool) -> bool:
    """Draw one panel; True when it drew a nearest-activation line."""
    z, y = layer.curves(channels)
    single = len(channels) == 1
    if layer.samples is not None:
        twin = ax.twinx()
        values = layer.samples[:, channels].reshape(-1)
        counts, _, _ = twin.hist(values, bins=40, color="0.82", edgecolor="none")
        twin.set_ylim(0, max(float(counts.max()), 1.0) * 2.8)
        twin.tick_params(axis="y", labelsize=6.5, colors="0.55", length=2)
        twin.set_ylabel("count", fontsize=7, color="0.55", labelpad=1)
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
        shown = "" if len(channels) == slaf.num_features else f" ({len(channels)} drawn)"
        ax.set_title(
            f"{_layer_label(layer.name)} · shared, {slaf.num_features} channels{shown}",
            fontsize=9,
        )
    text = kind
    drawn = False
    if fit_nearest:
        near = _panel_nearest(layer, channels)
        drawn = near.close
        if near.close:
            zz = np.linspace(z.min(), z.max(), CURVE_POINTS)
            ax.plot(zz, near(zz), ls="--", color="C3", lw=1.3)
        if single:
            text = f"{_short(near)}\n{kind}"
        else:
            summary = _per_channel_summary(layer, channels)
            text = f"all channels: {_short(near)}\n{summary} · {kind}"
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
    return drawn


def _limit_y(ax: Axes, y: np.ndarray) -> None:
    """Room at the top for the label box."""
    lo, hi = float(np.min(y)), float(np.max(y))
    span = hi - lo if hi > lo else max(1.0, abs(hi))
    ax.set_ylim(lo - 0.05 * span, hi + 0.35 * span)


def _per_channel_summary(layer: _Layer, channels: list[int]) -> str:
    """Nearest activations of a few channels fitted one by one, counted by name: "4 channels
    fitted alone: tanh ×2, −square ×1, no close match ×1 (median R² 0.97)"."""
    chosen = [channels[i] for i in _evenly(len(channels), CHANNEL_FITS)]
    fits = [_panel_nearest(layer, [ch]) for ch in chosen]
    names: dict[str, int] = {}
    for fit in fits:
        name = ("−" if fit.a < 0 else "") + fit.name if fit.close else "no close match"
        names[name] = names.get(name, 0) + 1
    ranked = sorted(names.items(), key=lambda kv: (kv[0] == "no close match", -kv[1]))
    counted = ", ".join(f"{name} ×{n}" for name, n in ranked)
    median = float(np.median([fit.r2 for fit in fits]))
    return f"{len(fits)} channels alone: {counted}\nmedian R² {median:.3f}"


def _short(near: NearestActivation) -> str:
    """A figure label: "≈ tanh (R² 0.991)", or "no close match (best gelu, R² 0.475)"."""
    sign = "−" if near.a < 0 else ""
    quality = f"R² {near.r2:.3f}" if near.r2 < 0.9995 else f"1 − R² {max(1 - near.r2, 0):.0e}"
    if not near.close:
        return f"no close match (best {sign}{near.name}, {quality})"
    return f"≈ {sign}{near.name} ({quality})"


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
