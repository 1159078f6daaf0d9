"""Figures of an analysis: Sobol bars, the pairwise-interaction heatmap, error vs terms.

Each function returns a :class:`matplotlib.figure.Figure` and, given ``path``, writes it (the
suffix picks the format). matplotlib is imported at the first figure.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import numpy as np

from polynet.analysis.sobol import SobolIndices
from polynet.analysis.sparsify import Sparsification
from polynet.plots.figure import _figure, _save

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["plot_sobol", "plot_interactions", "plot_sparsification"]


def plot_sobol(
    indices: SobolIndices,
    path: str | os.PathLike[str] | None = None,
    *,
    output: int = 0,
    top: int = 20,
) -> Figure:
    """First-order and total Sobol index of each variable, largest total first."""
    first = np.asarray(indices.first[output], dtype=np.float64)
    total = np.asarray(indices.total[output], dtype=np.float64)
    order = np.argsort(-total, kind="stable")[:top]
    fig = _figure(max(4.0, 0.45 * len(order) + 1.5), 3.4)
    ax = fig.add_subplot()
    pos = np.arange(len(order))
    ax.bar(pos - 0.2, first[order], 0.4, label="first order $S_i$")
    ax.bar(pos + 0.2, total[order], 0.4, label="total $T_i$")
    ax.set_xticks(pos, [indices.variables[i] for i in order], rotation=45, ha="right")
    ax.set_ylabel("share of variance")
    ax.set_ylim(0, max(1e-3, float(total.max(initial=0))) * 1.1)
    ax.set_title(f"Sobol indices ({indices.distribution} inputs)")
    ax.legend(frameon=False)
    _save(fig, path)
    return fig


def plot_interactions(
    indices: SobolIndices,
    path: str | os.PathLike[str] | None = None,
    *,
    output: int = 0,
) -> Figure:
    """Heatmap of the pure pairwise indices S_ij of one output."""
    s = np.asarray(indices.second[output], dtype=np.float64)
    n = indices.n_vars
    fig = _figure(max(3.6, 0.35 * n + 2.0), max(3.0, 0.35 * n + 1.2))
    ax = fig.add_subplot()
    image = ax.imshow(s, cmap="viridis", vmin=0)
    ax.set_xticks(range(n), indices.variables, rotation=90)
    ax.set_yticks(range(n), indices.variables)
    ax.set_title("pairwise Sobol indices $S_{ij}$")
    fig.colorbar(image, ax=ax, shrink=0.8)
    _save(fig, path)
    return fig


def plot_sparsification(
    result: Sparsification, path: str | os.PathLike[str] | None = None
) -> Figure:
    """Certified bound and measured errors against the number of terms kept (log-log)."""
    fig = _figure(5.0, 3.4)
    ax = fig.add_subplot()
    keep = result.terms > 0
    terms = result.terms[keep]
    # Near all terms the errors fall to rounding (or 0); a floor below tol keeps the
    # interesting range readable on the log scale.
    top = float(np.nanmax(result.bounds)) if len(result.bounds) else 1.0
    floor = max(result.tol, top * 1e-12, np.finfo(np.float64).tiny) * 1e-3
    ax.loglog(terms, np.maximum(result.bounds[keep], floor), label="certified bound (box)")
    if np.isfinite(result.max_errors).any():
        ax.loglog(terms, np.maximum(result.max_errors[keep], floor), label="max error on data")
        ax.loglog(terms, np.maximum(result.rms_errors[keep], floor), label="RMS error on data")
    ax.axhline(result.tol, color="gray", lw=0.8, ls="--", label=f"tol = {result.tol:.3g}")
    ax.axvline(max(result.n_terms, 1), color="gray", lw=0.8, ls=":")
    ax.set_ylim(bottom=floor)
    ax.set_xlabel("terms kept")
    ax.set_ylabel("error")
    ax.set_title(f"{result.n_terms:,} terms keep the error within tol")
    ax.legend(frameon=False, fontsize="small")
    _save(fig, path)
    return fig
