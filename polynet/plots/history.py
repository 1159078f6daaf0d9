"""Training curves: losses and the metric per epoch, from ``FitResult.history``."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from polynet.plots.figure import _figure, _save

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["plot_history"]


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
