"""SLAF coefficients per basis element, and their paths through training.

:func:`coefficient_snapshot` records every SLAF's effective coefficients (call it once per
epoch); :func:`plot_coefficients` draws the current ones and, given the snapshots, how they
moved.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from polynet.plots.activations import MAX_CURVES, _evenly
from polynet.plots.calibration import _find_slafs, _layer_label
from polynet.plots.figure import _figure, _save

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["coefficient_snapshot", "plot_coefficients"]


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
