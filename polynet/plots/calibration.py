"""Calibration: what each SLAF of a model receives on some data.

:func:`calibrate` runs the model once over the inputs with hooks on its SLAFs and keeps, per
channel, a uniform sample of the observed pre-activations (with their minimum and maximum);
:func:`~polynet.plots.plot_activations` draws each activation over that range.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from numpy.typing import ArrayLike
from torch import Tensor, nn

from polynet.errors import DataError
from polynet.slaf import SLAF
from polynet.validation import check_int

__all__ = ["calibrate", "CALIBRATION_SAMPLES"]

#: Values per channel that :func:`calibrate` keeps (a uniform sample, plus min and max).
CALIBRATION_SAMPLES = 2048


def _layer_label(name: str) -> str:
    """``model[1]`` for a Sequential's layer, ``act1`` for an attribute, ``block[2].act``."""
    if name == "":
        return "SLAF"
    parts = name.split(".")
    label = f"model[{parts[0]}]" if parts[0].isdigit() else parts[0]
    return label + "".join(f"[{p}]" if p.isdigit() else f".{p}" for p in parts[1:])


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
    max_samples = check_int(max_samples, "max_samples", minimum=2)
    batch_size = check_int(batch_size, "batch_size")
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
