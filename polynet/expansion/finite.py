"""Refuse a network with NaN or Inf in its weights before expanding it.

A non-finite weight or running statistic turns every coefficient it reaches into NaN, and the
expansion would finish without a word; :func:`check_finite` names the first such tensor.
"""

from __future__ import annotations

import torch
from torch import nn

from polynet.errors import NotExpandableError

__all__ = ["check_finite"]


def _tensors(model: nn.Module):
    """(name, owning module, tensor) of every parameter, buffer and plain tensor attribute
    (constants of a traced or ONNX graph module)."""
    seen: set[int] = set()
    for prefix, module in model.named_modules():
        own = [
            *module.named_parameters(recurse=False),
            *module.named_buffers(recurse=False),
            *((k, v) for k, v in vars(module).items() if isinstance(v, torch.Tensor)),
        ]
        for name, tensor in own:
            if tensor is None or id(tensor) in seen:
                continue
            seen.add(id(tensor))
            yield (f"{prefix}.{name}" if prefix else name), module, tensor


def check_finite(model: nn.Module) -> None:
    """Raise :class:`NotExpandableError` naming the first weight or running statistic of
    ``model`` that holds NaN or Inf.

    Examples
    --------
    >>> import torch, polynet
    >>> net = polynet.SLNN(2, [3], 1).eval()
    >>> check_finite(net)  # finite: nothing happens
    >>> with torch.no_grad():
    ...     net[0].weight[1, 0] = float("nan")
    >>> check_finite(net)
    Traceback (most recent call last):
    ...
    polynet.errors.NotExpandableError: cannot expand: 0.weight (Linear) holds 1 NaN/Inf value ...
    """
    for name, module, tensor in _tensors(model):
        if not (tensor.is_floating_point() or tensor.is_complex()):
            continue
        bad = ~torch.isfinite(tensor.detach())
        count = int(bad.sum())
        if count:
            where = tuple(int(i) for i in bad.nonzero()[0].tolist())
            value = tensor.detach()[where].item() if where else tensor.detach().item()
            plural = "value" if count == 1 else "values"
            raise NotExpandableError(
                f"cannot expand: {name} ({type(module).__name__}) holds {count} NaN/Inf "
                f"{plural} (first at index {where}: {value}); its polynomial would be NaN. "
                "Training probably diverged: retrain (a lower learning rate) or load an earlier "
                "checkpoint."
            )
