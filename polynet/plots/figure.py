"""Figures without pyplot: how every plot function makes its canvas and writes it.

A figure is a plain :class:`matplotlib.figure.Figure` (no global state, no display needed),
laid out with the constrained engine; given a path, it is written in the format the suffix
names. matplotlib is imported here, at the first figure, never by ``import polynet``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["DPI", "FORMATS"]

#: Resolution of the PNG files the plot functions write, in dots per inch.
DPI = 120
#: File suffixes the plot functions write; the suffix picks the format.
FORMATS = (".png", ".svg", ".pdf")

_MPL_HINT = "polynet.plots needs matplotlib; install it with: pip install matplotlib"


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
