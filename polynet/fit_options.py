"""The options of :func:`polynet.training.fit`, as one documented, validated value.

:class:`FitOptions` is a frozen dataclass: every field has a default and is checked once, in
``__post_init__``, so a bad option fails when the options are made, before any data is moved.
``fit(model, data, options, **overrides)`` takes one; the keyword form ``fit(model, data,
epochs=10)`` still works and builds one (:func:`fit_options`).

Examples
--------
>>> opts = FitOptions(epochs=20, lr=0.05)
>>> opts.replace(batch_size=32).batch_size
32
>>> FitOptions(epochs=0)
Traceback (most recent call last):
...
ValueError: epochs must be an integer >= 1, got 0.
>>> fit_options(None, {"epoch": 3})
Traceback (most recent call last):
...
TypeError: unknown fit option 'epoch'; did you mean 'epochs'? See polynet.training.FitOptions.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch

from polynet.errors import did_you_mean
from polynet.validation import check_int, check_number

__all__ = ["FitOptions", "fit_options"]

Task = Literal["regression", "classification"]
OptimizerName = Literal["adam", "sgd"]
Schedule = Literal["constant", "step", "cosine"]
Monitor = Literal["val", "test"]

#: Checkpoint metadata keys that fit writes itself.
RESERVED_METADATA = frozenset({"dataset", "training", "history", "metrics"})
_DTYPE_NAMES = {"float16": torch.float16, "bfloat16": torch.bfloat16}
_DTYPE_NAMES.update({"float32": torch.float32, "float64": torch.float64})


def _choice(value: Any, name: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        listed = ", ".join(repr(a) for a in allowed[:-1]) + f" or {allowed[-1]!r}"
        raise ValueError(f"{name} must be {listed}, got {value!r}.")


@dataclass(frozen=True)
class FitOptions:
    """How :func:`polynet.training.fit` trains: optimizer, schedule, stopping, device, output.

    Every field is keyword-only in spirit (pass them by name); all have defaults. Values are
    checked on construction; numpy integers and floats are accepted, bools are not numbers.
    ``step_size`` and ``val_fraction`` may stay None: :meth:`resolved_step_size` and
    :meth:`resolved_val_fraction` give the values fit uses.
    """

    task: Task | None = None
    """None takes the data set's task, or for arrays: integer ``y`` means classification."""
    epochs: int = 100
    """Passes over the training data."""
    batch_size: int = 64
    """Samples per step (a leftover batch of one sample is skipped that epoch)."""
    optimizer: OptimizerName = "adam"
    """``"adam"`` or ``"sgd"`` (see :func:`polynet.training.make_optimizer`)."""
    lr: float = 1e-3
    """Learning rate (of the non-SLAF parameters when ``activation_lr`` is set)."""
    activation_lr: float | None = None
    """A separate learning rate for the SLAF parameters (a second parameter group)."""
    momentum: float = 0.9
    """SGD momentum."""
    weight_decay: float = 0.0
    """The optimizer's weight decay, on all parameters."""
    l1: float = 0.0
    """Penalty ``l1·Σ|c|`` on every SLAF's coefficients ``SLAF.coefficient()``."""
    l2: float = 0.0
    """Penalty ``l2·Σc²`` on every SLAF's coefficients."""
    clip_norm: float | None = None
    """Clip the global gradient norm to this value (> 0)."""
    schedule: Schedule = "constant"
    """Learning-rate schedule stepped once per epoch: ``"constant"``, ``"step"`` (times
    ``gamma`` every ``step_size`` epochs) or ``"cosine"`` (anneals to 0 over ``epochs``)."""
    step_size: int | None = None
    """For ``"step"``; None means ``max(1, epochs // 3)``."""
    gamma: float = 0.1
    """For ``"step"`` (> 0)."""
    patience: int | None = None
    """Early stopping: stop after this many epochs without a lower validation loss and
    restore the best epoch's weights. None trains all epochs and keeps the last weights."""
    val_fraction: float | None = None
    """Fraction of the training data held out (seeded) for validation, in [0, 1); None means
    0.1 when ``patience`` is set (and ``monitor="val"``), else 0."""
    monitor: Monitor = "val"
    """The split early stopping watches; ``"test"`` makes the test score optimistic (warns)."""
    device: str | torch.device | None = "auto"
    """Where to train (:func:`polynet.training.resolve_device`); ``"auto"`` is CUDA when
    available. Resolved when fit runs, so options can be made on a machine without CUDA."""
    dtype: torch.dtype | None = None
    """Training precision (a torch floating dtype or its name, e.g. ``"float64"``); None keeps
    the model's."""
    seed: int = 0
    """Seeds the validation split, the batch order and torch's global RNG during the call."""
    threads: int | None = None
    """CPU threads during the call (restored afterwards); None lets polynet choose
    (:func:`polynet.threads.choose_threads`: one per free core, one for a small network)."""
    progress: bool = True
    """Show a progress bar (tqdm, on stderr)."""
    out: str | os.PathLike[str] | None = None
    """Directory for ``model.safetensors`` (written at the end and at new best epochs)."""
    metadata: Mapping[str, Any] | None = None
    """Extra JSON metadata for the checkpoint (not the keys fit writes itself)."""
    history: bool = True
    """Keep the per-epoch history in the result and the checkpoint."""

    def __post_init__(self) -> None:
        def put(name: str, value: Any) -> None:
            object.__setattr__(self, name, value)

        if self.task is not None:
            _choice(self.task, "task", ("regression", "classification"))
        put("epochs", check_int(self.epochs, "epochs"))
        put("batch_size", check_int(self.batch_size, "batch_size"))
        _choice(self.optimizer, "optimizer", ("adam", "sgd"))
        put("lr", check_number(self.lr, "lr", low=0.0))
        if self.activation_lr is not None:
            put("activation_lr", check_number(self.activation_lr, "activation_lr", low=0.0))
        put("momentum", check_number(self.momentum, "momentum", low=0.0))
        put("weight_decay", check_number(self.weight_decay, "weight_decay", low=0.0))
        put("l1", check_number(self.l1, "l1", low=0.0))
        put("l2", check_number(self.l2, "l2", low=0.0))
        if self.clip_norm is not None:
            put("clip_norm", check_number(self.clip_norm, "clip_norm", low=0.0, strict=True))
        _choice(self.schedule, "schedule", ("constant", "step", "cosine"))
        if self.step_size is not None:
            put("step_size", check_int(self.step_size, "step_size"))
        put("gamma", check_number(self.gamma, "gamma", low=0.0, strict=True))
        if self.patience is not None:
            put("patience", check_int(self.patience, "patience"))
        _choice(self.monitor, "monitor", ("val", "test"))
        if self.val_fraction is not None:
            fraction = check_number(self.val_fraction, "val_fraction", low=0.0)
            if fraction >= 1:
                raise ValueError(f"val_fraction must be in [0, 1), got {self.val_fraction!r}.")
            put("val_fraction", fraction)
        if self.patience is not None and self.monitor == "val" and self.val_fraction == 0:
            raise ValueError(
                "patience needs a validation split to watch, but val_fraction=0; set "
                "val_fraction > 0 (e.g. 0.1), or drop patience."
            )
        if self.device is not None and not isinstance(self.device, (str, torch.device)):
            raise ValueError(
                "device must be 'auto', 'cpu', 'cuda', 'cuda:N' or a torch.device, got "
                f"{self.device!r}."
            )
        if isinstance(self.dtype, str) and self.dtype.removeprefix("torch.") in _DTYPE_NAMES:
            put("dtype", _DTYPE_NAMES[self.dtype.removeprefix("torch.")])
        if self.dtype is not None and not (
            isinstance(self.dtype, torch.dtype) and self.dtype.is_floating_point
        ):
            raise ValueError(
                f"dtype must be None or a floating torch dtype (e.g. torch.float64), got "
                f"{self.dtype!r}."
            )
        put("seed", check_int(self.seed, "seed", minimum=0))
        if self.threads is not None:
            put("threads", check_int(self.threads, "threads"))
        for name in ("progress", "history"):
            if not isinstance(getattr(self, name), (bool, np.bool_)):
                raise ValueError(f"{name} must be True or False, got {getattr(self, name)!r}.")
            put(name, bool(getattr(self, name)))
        if self.out is not None and not isinstance(self.out, (str, os.PathLike)):
            raise ValueError(f"out must be None or a directory path, got {self.out!r}.")
        if self.metadata is not None:
            if not isinstance(self.metadata, Mapping):
                raise ValueError(f"metadata must be None or a dict, got {self.metadata!r}.")
            clash = sorted(RESERVED_METADATA & set(self.metadata))
            if clash:
                raise ValueError(f"metadata keys {clash} are written by fit itself; rename them.")

    def replace(self, **changes: Any) -> FitOptions:
        """A copy with ``changes`` applied (validated again); unknown names are a TypeError."""
        _check_names(changes)
        return dataclasses.replace(self, **changes)

    def resolved_step_size(self) -> int:
        """``step_size``, or ``max(1, epochs // 3)`` when it is None."""
        return max(1, self.epochs // 3) if self.step_size is None else self.step_size

    def resolved_val_fraction(self) -> float:
        """``val_fraction``, or 0.1 with early stopping on ``"val"`` and 0 otherwise."""
        if self.val_fraction is not None:
            return self.val_fraction
        return 0.1 if self.patience is not None and self.monitor == "val" else 0.0


_NAMES = tuple(f.name for f in dataclasses.fields(FitOptions))


def _check_names(names: Mapping[str, Any]) -> None:
    for name in names:
        if name not in _NAMES:
            hint = did_you_mean(name, _NAMES, n=3) or f"the options are {', '.join(_NAMES)}."
            raise TypeError(f"unknown fit option {name!r}; {hint} See polynet.training.FitOptions.")


def fit_options(options: FitOptions | None, overrides: Mapping[str, Any]) -> FitOptions:
    """``options`` (or the defaults) with ``overrides`` applied; what fit's keywords mean."""
    if options is not None and not isinstance(options, FitOptions):
        raise TypeError(
            f"options must be a polynet.training.FitOptions or None, got "
            f"{type(options).__name__}; pass keyword options as fit(model, data, epochs=...)."
        )
    _check_names(overrides)
    if options is None:
        return FitOptions(**overrides)
    return dataclasses.replace(options, **overrides) if overrides else options
