"""Training routines: :func:`fit`, its result, the optimizer it builds, and device choice.

:func:`fit` trains any torch model (SLNNs and their baselines) on a :class:`~polynet.data.Dataset`
or ``(X, y)`` arrays with the paper's routines: a separate learning rate for the SLAF
parameters, L1/L2 penalties on the SLAF coefficients, gradient clipping, learning-rate
schedules, early stopping on a validation split with the best weights restored, and a
divergence guard that stops on a non-finite loss, restores the last finite weights and says
what to try. It logs through :mod:`logging` and shows a progress bar only with
``progress=True``. Its options are one validated value, :class:`FitOptions`
(:mod:`polynet.fit_options`); keyword arguments to :func:`fit` override its fields.

Examples
--------
>>> from polynet import SLNN, data
>>> ds = data.xor(200, random_state=0)
>>> _ = torch.manual_seed(0)
>>> net = SLNN(2, [8], 2, out_features=2)
>>> result = fit(net, ds, epochs=20, batch_size=80, lr=0.05, threads=1, progress=False)
>>> result.stopped, result.metrics["test_accuracy"] > 0.9
('completed', True)
"""

from __future__ import annotations

import logging
import math
import sys
import time
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from numpy.typing import ArrayLike
from torch import Tensor, nn

from polynet import checkpoint as _checkpoint
from polynet.data import Dataset
from polynet.errors import DataError, PolynetWarning, TrainingDivergedError
from polynet.fit_options import FitOptions, OptimizerName, Schedule, Task, fit_options
from polynet.slaf import SLAF
from polynet.threads import limit_threads

__all__ = [
    "fit",
    "FitOptions",
    "FitResult",
    "TrainingInterrupted",
    "make_optimizer",
    "resolve_device",
    "slaf_parameters",
]

logger = logging.getLogger(__name__)

#: Why training ended; "in_progress" only appears in checkpoints written during a run,
#: "interrupted" in the one written when Ctrl-C stopped it (:class:`TrainingInterrupted`).
Stopped = Literal["completed", "early_stopping", "diverged", "in_progress", "interrupted"]

#: Samples per forward pass when evaluating (no gradients are kept, so this can be large).
EVAL_BATCH = 8192
#: A new best checkpoint is written at most this often; the final one is always written.
CHECKPOINT_INTERVAL_S = 30.0


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """Turn a device request into a ``torch.device``; ``"auto"`` (or None) picks CUDA if present.

    This is the one place polynet decides where training runs.

    Parameters
    ----------
    device : str or torch.device or None, default="auto"
        ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``, a ``torch.device``, or None
        (the same as ``"auto"``).

    Raises
    ------
    ValueError
        For an unknown device string, or CUDA (or a CUDA index) that is not available.

    Examples
    --------
    >>> resolve_device("cpu")
    device(type='cpu')
    """
    if device is None or (isinstance(device, str) and device.lower() == "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(
            f"device must be 'auto', 'cpu', 'cuda', 'cuda:N' or a torch.device, got {device!r}."
        ) from exc
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"device={str(device)!r} was asked for but CUDA is not available (torch "
                f"{torch.__version__}, built with CUDA {torch.version.cuda}); use "
                "device='cpu' or 'auto'."
            )
        count = torch.cuda.device_count()
        if resolved.index is not None and resolved.index >= count:
            raise ValueError(
                f"device={str(device)!r} was asked for but only {count} CUDA device(s) are "
                f"visible (cuda:0..cuda:{count - 1}); use one of those or 'auto'."
            )
    if resolved.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device={str(device)!r} is not available here; use 'cpu' or 'auto'.")
    return resolved


def slaf_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The parameters of every :class:`~polynet.SLAF` in ``model`` (coefficients, gates, biases)."""
    return [p for m in model.modules() if isinstance(m, SLAF) for p in m.parameters()]


def make_optimizer(
    model: nn.Module,
    optimizer: OptimizerName = "adam",
    lr: float = 1e-3,
    *,
    activation_lr: float | None = None,
    momentum: float = 0.9,
    weight_decay: float = 0.0,
) -> torch.optim.Optimizer:
    """The optimizer :func:`fit` uses: one parameter group, or two with ``activation_lr``.

    With ``activation_lr`` the SLAF parameters (:func:`slaf_parameters`) form a second group,
    named ``"activation"``, with that learning rate; the first group, ``"weights"``, holds the
    rest.

    Examples
    --------
    >>> from polynet import SLNN
    >>> opt = make_optimizer(SLNN(2, [3], 2), lr=0.01, activation_lr=0.05)
    >>> [(g["name"], g["lr"]) for g in opt.param_groups]
    [('weights', 0.01), ('activation', 0.05)]
    """
    activation = slaf_parameters(model)
    if activation_lr is None:
        groups = [{"params": list(model.parameters()), "lr": lr, "name": "weights"}]
    else:
        ids = {id(p) for p in activation}
        weights = [p for p in model.parameters() if id(p) not in ids]
        groups = [
            {"params": weights, "lr": lr, "name": "weights"},
            {"params": activation, "lr": activation_lr, "name": "activation"},
        ]
        groups = [g for g in groups if g["params"]]
    if optimizer == "adam":
        cls, options = torch.optim.Adam, {"weight_decay": weight_decay}
    elif optimizer == "sgd":
        cls, options = torch.optim.SGD, {"momentum": momentum, "weight_decay": weight_decay}
    else:
        raise ValueError(f"optimizer must be 'adam' or 'sgd', got {optimizer!r}.")
    # The fused kernels update every parameter in one call: about 4x faster than the
    # per-tensor loop for the many small tensors of an SLNN. Older torch versions and some
    # devices lack them; the result is the same optimizer either way.
    try:
        return cls(groups, lr=lr, fused=True, **options)
    except (RuntimeError, TypeError, ValueError):
        return cls(groups, lr=lr, **options)


@dataclass
class FitResult:
    """What :func:`fit` returns.

    Attributes
    ----------
    model : nn.Module
        The trained model (the same object that was passed in), in evaluation mode, on
        ``device``; with early stopping it holds the best epoch's weights.
    history : list of dict
        One dict per epoch: ``epoch``, ``train_loss`` (mean over the epoch's batches, without
        penalties), ``val_loss``/``val_<metric>`` and ``test_loss``/``test_<metric>`` (None
        when there is no such split), ``lr`` (per parameter group name), ``seconds``.
    best_epoch : int or None
        The epoch whose weights the model holds (None if no epoch finished).
    stopped : {"completed", "early_stopping", "diverged"}
        Why training ended.
    metrics : dict of str to float
        Final ``<split>_loss`` and ``<split>_<metric>`` for each split (train, val, test), in
        evaluation mode; regression RMSE is in the targets' original units.
    checkpoint : Path or None
        The checkpoint written (``out/model.safetensors``), if any.
    device : str
        Where training ran.
    seconds : float
        Wall-clock time of the whole call.
    task : {"regression", "classification"}
        The task trained for.
    metric : {"rmse", "accuracy"}
        The name of the metric in ``history`` and ``metrics``.
    """

    model: nn.Module
    history: list[dict[str, Any]]
    best_epoch: int | None
    stopped: Stopped
    metrics: dict[str, float]
    checkpoint: Path | None
    device: str
    seconds: float
    task: Task
    metric: str
    options: dict[str, Any] = field(default_factory=dict, repr=False)

    def __repr__(self) -> str:
        shown = {k: round(v, 4) for k, v in self.metrics.items() if k.endswith(self.metric)}
        return (
            f"FitResult(stopped={self.stopped!r}, epochs={len(self.history)}, "
            f"best_epoch={self.best_epoch}, {', '.join(f'{k}={v}' for k, v in shown.items())}, "
            f"device={self.device!r}, seconds={self.seconds:.1f})"
        )


# --------------------------------------------------------------------------------------------
# Data preparation
# --------------------------------------------------------------------------------------------


@dataclass
class _Split:
    X: Tensor
    y: Tensor


@dataclass
class _Prepared:
    task: Task
    binary: bool
    splits: dict[str, _Split]
    target_scale: Tensor  # multiplies standardised regression errors into original units
    dataset: Dataset | None


def _as_array(value: Any, name: str) -> np.ndarray:
    if isinstance(value, Tensor):
        value = value.detach().cpu().numpy()
    array = np.asarray(value)
    if array.dtype == object or array.size == 0:
        raise DataError(f"{name} must be a non-empty numeric array, got {type(value).__name__}.")
    return array


def _infer_task(y: np.ndarray, task: Task | None) -> Task:
    if task is not None:
        if task not in ("regression", "classification"):
            raise ValueError(f"task must be 'regression' or 'classification', got {task!r}.")
        return task
    return "classification" if y.dtype.kind in "biu" else "regression"


def _output_width(model: nn.Module, X: Tensor) -> int:
    """Run two samples through the model in evaluation mode to learn its output width."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(X[:2])
    except (RuntimeError, ValueError) as exc:
        raise DataError(
            f"the model cannot take the inputs: samples of shape {tuple(X.shape[1:])} gave "
            f"{type(exc).__name__}: {exc}. Build the model for {tuple(X.shape[1:])} inputs "
            "(e.g. SLNN(in_features=...))."
        ) from exc
    finally:
        model.train(was_training)
    if out.dim() != 2:
        raise DataError(
            f"fit needs a model with outputs of shape (B, out_features), got {tuple(out.shape)}."
        )
    return out.shape[1]


def _prepare(
    model: nn.Module,
    data: Dataset | tuple[ArrayLike, ArrayLike],
    task: Task | None,
    val_fraction: float,
    seed: int,
    device: torch.device,
    dtype: torch.dtype,
) -> _Prepared:
    if isinstance(data, Dataset):
        dataset: Dataset | None = data
        raw = {"train": (data.X_train, data.y_train), "test": (data.X_test, data.y_test)}
        task = _infer_task(data.y_train, task or data.task)
    elif isinstance(data, (tuple, list)) and len(data) == 2:
        dataset = None
        raw = {"train": (_as_array(data[0], "X"), _as_array(data[1], "y"))}
        task = _infer_task(raw["train"][1], task)
    else:
        raise DataError(
            f"data must be a polynet.data.Dataset or a pair (X, y), got {type(data).__name__}"
            + (f" of length {len(data)}" if isinstance(data, (tuple, list)) else "")
            + "."
        )
    for split, (X, y) in raw.items():
        for name, a in ((f"X_{split}", X), (f"y_{split}", y)):
            bad = a.size - int(np.isfinite(a).sum()) if a.dtype.kind == "f" else 0
            if bad:
                raise DataError(
                    f"{name} holds {bad} non-finite value(s) (NaN or inf); remove or impute "
                    "them before training."
                )
        if len(X) != len(y):
            raise DataError(f"X_{split} has {len(X)} samples but y_{split} has {len(y)}.")
    X_train, y_train = raw["train"]
    if val_fraction > 0:
        n_val = max(1, round(val_fraction * len(X_train)))
        if len(X_train) - n_val < 2:
            raise DataError(
                f"val_fraction={val_fraction} leaves {len(X_train) - n_val} training samples; "
                "use a smaller val_fraction or more data."
            )
        order = np.random.RandomState(seed).permutation(len(X_train))
        val, train = order[:n_val], order[n_val:]
        raw["val"] = (X_train[val], y_train[val])
        raw["train"] = (X_train[train], y_train[train])
    if len(raw["train"][0]) < 2:
        raise DataError(
            f"training needs at least 2 samples (batch statistics), got {len(raw['train'][0])}."
        )

    def inputs(X: np.ndarray) -> Tensor:
        return torch.as_tensor(np.asarray(X, dtype=np.float64)).to(device=device, dtype=dtype)

    X_probe = inputs(raw["train"][0][:2])
    width = _output_width(model, X_probe)
    binary = False
    if task == "classification":
        labels = np.concatenate([np.asarray(y).reshape(-1) for _, y in raw.values()])
        if labels.dtype.kind == "f" and not np.all(labels == np.round(labels)):
            raise DataError("classification targets must be integer class labels 0..K-1.")
        labels = labels.astype(np.int64)
        n_classes = dataset.n_classes if dataset and dataset.n_classes else int(labels.max()) + 1
        if labels.min() < 0 or labels.max() >= max(n_classes, 2):
            raise DataError(
                f"class labels must lie in 0..{n_classes - 1}, got {labels.min()}..{labels.max()}."
            )
        binary = width == 1
        if binary and n_classes > 2:
            raise DataError(
                f"the model has 1 output but the data has {n_classes} classes; build it with "
                f"out_features={n_classes}."
            )
        if not binary and width < n_classes:
            raise DataError(
                f"the model has {width} outputs but the data has {n_classes} classes; build it "
                f"with out_features={n_classes} (or 1 for a binary task)."
            )

        def targets(y: np.ndarray) -> Tensor:
            y = torch.as_tensor(np.asarray(y).astype(np.int64), device=device)
            return y.to(dtype).unsqueeze(1) if binary else y

    else:
        n_out = 1 if np.asarray(y_train).ndim == 1 else np.asarray(y_train).shape[1]
        if n_out != width:
            raise DataError(
                f"the model has {width} outputs but the regression targets have {n_out} "
                f"column(s); build it with out_features={n_out}."
            )

        def targets(y: np.ndarray) -> Tensor:
            y = torch.as_tensor(np.asarray(y, dtype=np.float64)).to(device=device, dtype=dtype)
            return y.reshape(len(y), -1)

    scale = torch.ones((), device=device, dtype=torch.float64)
    if dataset is not None and dataset.target_scaler is not None:
        scale = torch.as_tensor(dataset.target_scaler.scale_, device=device, dtype=torch.float64)
    splits = {name: _Split(inputs(X), targets(y)) for name, (X, y) in raw.items()}
    return _Prepared(task, binary, splits, scale, dataset)


# --------------------------------------------------------------------------------------------
# Losses and evaluation
# --------------------------------------------------------------------------------------------


def _loss(prep: _Prepared, out: Tensor, y: Tensor) -> Tensor:
    if prep.task == "regression":
        return F.mse_loss(out, y)
    if prep.binary:
        return F.binary_cross_entropy_with_logits(out, y)
    return F.cross_entropy(out, y)


@torch.no_grad()
def _evaluate(model: nn.Module, prep: _Prepared, split: _Split) -> tuple[Tensor, Tensor]:
    """(loss, metric) on a whole split in evaluation mode, as 0-d device tensors."""
    loss_sum = torch.zeros((), device=split.X.device, dtype=torch.float64)
    metric_sum = torch.zeros((), device=split.X.device, dtype=torch.float64)
    n = len(split.X)
    for start in range(0, n, EVAL_BATCH):
        X, y = split.X[start : start + EVAL_BATCH], split.y[start : start + EVAL_BATCH]
        out = model(X)
        loss_sum += _loss(prep, out, y).double() * len(X)
        if prep.task == "regression":
            err = (out - y).double() * prep.target_scale
            metric_sum += err.pow(2).mean(dim=1).sum()
        elif prep.binary:
            metric_sum += ((out > 0).to(y.dtype) == y).sum()
        else:
            metric_sum += (out.argmax(dim=1) == y).sum()
    metric = metric_sum / n
    return loss_sum / n, metric.sqrt() if prep.task == "regression" else metric


def _evaluate_all(
    model: nn.Module, prep: _Prepared, names: Iterable[str], metric: str
) -> dict[str, float | None]:
    was_training = model.training
    model.eval()
    try:
        pairs = {name: _evaluate(model, prep, prep.splits[name]) for name in names}
    finally:
        model.train(was_training)
    if not pairs:
        return {}
    values = torch.stack([v for pair in pairs.values() for v in pair]).tolist()  # one sync
    out: dict[str, float | None] = {}
    for i, name in enumerate(pairs):
        out[f"{name}_loss"], out[f"{name}_{metric}"] = values[2 * i], values[2 * i + 1]
    return out


# --------------------------------------------------------------------------------------------
# fit
# --------------------------------------------------------------------------------------------


def _state_copy(model: nn.Module) -> dict[str, Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def _make_scheduler(
    optimizer: torch.optim.Optimizer, schedule: Schedule, epochs: int, step_size: int, gamma: float
) -> torch.optim.lr_scheduler.LRScheduler | None:
    if schedule == "constant":
        return None
    if schedule == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=step_size, gamma=gamma)
    return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)


def fit(
    model: nn.Module,
    data: Dataset | tuple[ArrayLike, ArrayLike],
    options: FitOptions | None = None,
    **overrides: Any,
) -> FitResult:
    """Train ``model`` on ``data`` and return the trained model with its history and metrics.

    Regression uses the mean squared error (metric: RMSE, in the targets' original units when
    the data set standardised them); classification uses cross-entropy, or binary
    cross-entropy on logits when the model has one output (metric: accuracy). The model is
    moved to ``device`` (and ``dtype``) in place and returned in evaluation mode.

    Parameters
    ----------
    model : nn.Module
        The network, e.g. :class:`~polynet.SLNN`; changed in place.
    data : Dataset or (X, y)
        A :class:`~polynet.data.Dataset` (its test split is evaluated, never trained on), or
        training arrays/tensors ``X`` of shape (n, n_features) and ``y`` of shape (n,) or
        (n, n_outputs).
    options : FitOptions or None, default=None
        How to train (:class:`FitOptions`, every field documented there); None is the
        defaults.
    **overrides
        Any :class:`FitOptions` field by name (``epochs=20, lr=0.01, patience=10, out=...``),
        applied over ``options``. An unknown name is a TypeError that suggests close matches.

    Returns
    -------
    FitResult

    Raises
    ------
    TrainingDivergedError
        When a loss, gradient or parameter becomes NaN or infinite; the model then holds the
        last finite (epoch-end) weights, also written to ``out``, and the error's ``result``
        is the :class:`FitResult` up to there.
    DataError
        For data that does not fit the model or the task.
    ValueError
        For an option out of range (raised by :class:`FitOptions`).

    Examples
    --------
    >>> from polynet import SLNN, data
    >>> opts = FitOptions(epochs=5, batch_size=40, lr=0.05, threads=1, progress=False)
    >>> _ = torch.manual_seed(0)
    >>> fit(SLNN(2, [4], 2), data.xor(100, random_state=0), opts, seed=1).stopped
    'completed'
    """
    started = time.perf_counter()
    opts = fit_options(options, overrides)
    val_fraction = opts.resolved_val_fraction()
    if opts.out is not None:
        _checkpoint.check_saveable(model)
    metadata = None if opts.metadata is None else dict(opts.metadata)
    # One step's work is about batch_size x parameters multiply-adds; a small network trains
    # fastest, and unharmed by other processes' load, on one thread (polynet.threads).
    work = opts.batch_size * sum(p.numel() for p in model.parameters())
    with limit_threads(opts.threads, work=work):
        return _fit(model, data, opts, started, val_fraction, metadata)


def _fit(
    model: nn.Module,
    data: Any,
    opts: FitOptions,
    started: float,
    val_fraction: float,
    metadata: dict[str, Any] | None,
) -> FitResult:
    epochs, patience, monitor, dtype = opts.epochs, opts.patience, opts.monitor, opts.dtype
    target = resolve_device(opts.device)
    if dtype is None:
        floats = [p.dtype for p in model.parameters() if p.is_floating_point()]
        dtype = floats[0] if floats else torch.get_default_dtype()
    model.to(device=target, dtype=dtype)
    prep = _prepare(model, data, opts.task, val_fraction, opts.seed, target, dtype)
    if monitor == "test":
        if "test" not in prep.splits:
            raise ValueError("monitor='test' needs data with a test split (a Dataset).")
        if patience is not None:
            warnings.warn(
                "early stopping on the test split selects the model on the test set, so its "
                "test metric is optimistic; use monitor='val' for an honest test score.",
                PolynetWarning,
                stacklevel=2,
            )
    metric = "rmse" if prep.task == "regression" else "accuracy"
    watched = "val" if "val" in prep.splits else ("test" if monitor == "test" else None)
    if patience is not None and watched is None:
        raise ValueError("patience needs a validation or test split to watch.")
    eval_names = [s for s in ("val", "test") if s in prep.splits]
    # The options as run (defaults resolved), JSON-ready for the checkpoint's metadata.
    options = {
        name: getattr(opts, name)
        for name in (
            "epochs",
            "batch_size",
            "optimizer",
            "lr",
            "activation_lr",
            "momentum",
            "weight_decay",
            "l1",
            "l2",
            "clip_norm",
            "schedule",
        )
    }
    options.update(
        step_size=opts.resolved_step_size(),
        gamma=opts.gamma,
        patience=patience,
        val_fraction=val_fraction,
        monitor=monitor,
        seed=opts.seed,
        threads=opts.threads,
        dtype=str(dtype).removeprefix("torch."),
        task=prep.task,
    )
    out_path = None if opts.out is None else Path(opts.out) / _checkpoint.DEFAULT_NAME
    logger.info(
        "fit: %s on %s (%d train samples), %d epochs, device %s",
        type(model).__name__,
        "arrays" if prep.dataset is None else prep.dataset.name,
        len(prep.splits["train"].X),
        epochs,
        target,
    )

    def record(stopped: Stopped, best_epoch: int | None, log: list[dict[str, Any]]) -> FitResult:
        model.eval()
        metrics = _evaluate_all(model, prep, ["train", *eval_names], metric)
        result = FitResult(
            model=model,
            history=log if opts.history else [],
            best_epoch=best_epoch,
            stopped=stopped,
            metrics=metrics,
            checkpoint=None,
            device=str(target),
            seconds=time.perf_counter() - started,
            task=prep.task,
            metric=metric,
            options=options,
        )
        return result

    def write(result: FitResult) -> None:
        if out_path is None:
            return
        info = {
            "dataset": None if prep.dataset is None else prep.dataset.to_metadata(),
            "training": {
                **options,
                "device": result.device,
                "stopped": result.stopped,
                "best_epoch": result.best_epoch,
                "seconds": result.seconds,
                "metric": metric,
            },
            "history": result.history,
            "metrics": result.metrics,
        }
        result.checkpoint = _checkpoint.save(model, out_path, metadata={**(metadata or {}), **info})

    fork_devices = [target.index or 0] if target.type == "cuda" else []
    with torch.random.fork_rng(devices=fork_devices):
        torch.manual_seed(opts.seed)
        result = _train_loop(
            model,
            prep,
            options,
            target,
            watched,
            eval_names,
            metric,
            opts.progress,
            record,
            write,
            out_path,
        )
    result.seconds = time.perf_counter() - started
    logger.info(
        "fit: %s after %d epochs in %.1f s", result.stopped, len(result.history), result.seconds
    )
    return result


def _train_loop(
    model: nn.Module,
    prep: _Prepared,
    options: dict[str, Any],
    device: torch.device,
    watched: str | None,
    eval_names: list[str],
    metric: str,
    progress: bool,
    record: Any,
    write: Any,
    out_path: Path | None,
) -> FitResult:
    from tqdm import tqdm

    epochs, batch_size = options["epochs"], options["batch_size"]
    l1, l2, clip_norm, patience = (
        options["l1"],
        options["l2"],
        options["clip_norm"],
        options["patience"],
    )
    optim = make_optimizer(
        model,
        options["optimizer"],
        options["lr"],
        activation_lr=options["activation_lr"],
        momentum=options["momentum"],
        weight_decay=options["weight_decay"],
    )
    scheduler = _make_scheduler(
        optim, options["schedule"], epochs, options["step_size"], options["gamma"]
    )
    slafs = [m for m in model.modules() if isinstance(m, SLAF)]
    params = [p for p in model.parameters() if p.requires_grad]
    train = prep.splits["train"]
    n = len(train.X)
    # A leftover batch of one sample cannot take batch statistics: skip it (it is reshuffled
    # into a full batch the next epoch).
    starts = [s for s in range(0, n, batch_size) if n - s > 1 or s == 0]
    generator = torch.Generator(device=device).manual_seed(options["seed"])
    log: list[dict[str, Any]] = []
    last_good = _state_copy(model)
    best_state: dict[str, Tensor] | None = None
    best_loss, best_epoch, since_best = math.inf, None, 0
    last_write = time.perf_counter()
    stopped: Stopped = "completed"
    bar = tqdm(
        range(1, epochs + 1),
        desc="fit",
        unit="epoch",
        file=sys.stderr,
        disable=not progress,
        dynamic_ncols=True,
    )
    try:
        for epoch in bar:
            tic = time.perf_counter()
            model.train()
            perm = torch.randperm(n, device=device, generator=generator)
            # Per-batch values stay on the device; they are read once at the end of the epoch.
            batch_losses = torch.zeros(len(starts), device=device, dtype=torch.float64)
            grad_norms = torch.zeros(len(starts), device=device, dtype=torch.float64)
            for b, start in enumerate(starts):
                idx = perm[start : start + batch_size]
                out = model(train.X.index_select(0, idx))
                loss = _loss(prep, out, train.y.index_select(0, idx))
                objective = loss
                if l1 or l2:
                    for m in slafs:
                        c = m.coefficient()
                        if l1:
                            objective = objective + l1 * c.abs().sum()
                        if l2:
                            objective = objective + l2 * c.pow(2).sum()
                optim.zero_grad(set_to_none=True)
                objective.backward()
                if clip_norm is not None:
                    grad_norms[b] = nn.utils.clip_grad_norm_(params, clip_norm)
                optim.step()
                batch_losses[b] = loss.detach()
            state_ok = torch.stack([t.isfinite().all() for t in _float_state(model)]).all()
            loss_sum, norm_sum, ok = torch.stack(
                [batch_losses.sum(), grad_norms.sum(), state_ok.double()]
            ).tolist()
            if not (math.isfinite(loss_sum) and math.isfinite(norm_sum) and ok):
                message = _divergence_message(epoch, batch_losses, grad_norms, len(starts), options)
                model.load_state_dict(last_good)
                bar.close()
                result = record("diverged", len(log) or None, log)
                write(result)
                logger.warning("fit: %s", message)
                raise TrainingDivergedError(message, result)
            entry: dict[str, Any] = {"epoch": epoch, "train_loss": loss_sum / len(starts)}
            entry.update({f"{s}_{k}": None for s in ("val", "test") for k in ("loss", metric)})
            entry.update(_evaluate_all(model, prep, eval_names, metric))
            entry["lr"] = {g.get("name", str(i)): g["lr"] for i, g in enumerate(optim.param_groups)}
            if scheduler is not None:
                scheduler.step()
            last_good = _state_copy(model)
            entry["seconds"] = time.perf_counter() - tic
            log.append(entry)
            postfix = {"loss": f"{entry['train_loss']:.4g}"}
            if watched is not None:
                postfix[watched] = f"{entry[f'{watched}_loss']:.4g}"
            bar.set_postfix(postfix, refresh=False)
            if watched is not None and patience is not None:
                current = entry[f"{watched}_loss"]
                if current is not None and current < best_loss:
                    best_loss, best_epoch, since_best = current, epoch, 0
                    best_state = last_good
                    if (
                        out_path is not None
                        and time.perf_counter() - last_write > CHECKPOINT_INTERVAL_S
                    ):
                        write(record("in_progress", best_epoch, log))
                        model.train()
                        last_write = time.perf_counter()
                else:
                    since_best += 1
                    if since_best >= patience:
                        stopped = "early_stopping"
                        break
    except KeyboardInterrupt:
        bar.close()
        raise _interrupted(model, best_state, best_epoch, last_good, log, record, write) from None
    bar.close()
    if best_state is not None:
        model.load_state_dict(best_state)
    else:
        best_epoch = len(log)
    result = record(stopped, best_epoch, log)
    write(result)
    return result


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped :func:`fit`; the model holds the kept weights, written to ``out`` if set.

    A :class:`KeyboardInterrupt`, so an interrupted script still stops; the message says which
    weights were kept and where they were written.

    Attributes
    ----------
    result : FitResult
        The training result up to the interruption (``stopped == "interrupted"``); its
        ``checkpoint`` is the file written, or None without ``out``.
    """

    def __init__(self, message: str, result: FitResult) -> None:
        super().__init__(message)
        self.result = result


def _interrupted(
    model: nn.Module,
    best_state: dict[str, Tensor] | None,
    best_epoch: int | None,
    last_good: dict[str, Tensor],
    log: list[dict[str, Any]],
    record: Any,
    write: Any,
) -> TrainingInterrupted:
    """Keep the best (else the last completed epoch's) weights, write them, say where."""
    import signal
    import threading

    # The epoch in flight is half-updated: fall back to a whole epoch's weights.
    if best_state is not None:
        model.load_state_dict(best_state)
        kept = f"the best epoch's weights (epoch {best_epoch})"
    else:
        model.load_state_dict(last_good)
        best_epoch = len(log) or None
        kept = (
            f"the weights of the last completed epoch ({len(log)})"
            if log
            else "the initial weights (no epoch completed)"
        )
    # A second Ctrl-C must not cut the checkpoint write short (it is atomic anyway).
    main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN) if main else None
    try:
        result = record("interrupted", best_epoch, log)
        write(result)
    finally:
        if main:
            signal.signal(signal.SIGINT, previous)
    where = (
        f"wrote them to {result.checkpoint}"
        if result.checkpoint is not None
        else "nothing was written (no out= directory)"
    )
    logger.info("fit: interrupted; kept %s, %s", kept, where)
    return TrainingInterrupted(
        f"training interrupted after {len(log)} epochs; the model holds {kept}; {where}.",
        result,
    )


def _float_state(model: nn.Module) -> list[Tensor]:
    return [t for t in model.state_dict().values() if t.is_floating_point()]


def _divergence_message(
    epoch: int, losses: Tensor, norms: Tensor, n_batches: int, options: dict[str, Any]
) -> str:
    bad_loss = (~torch.isfinite(losses)).nonzero()
    bad_norm = (~torch.isfinite(norms)).nonzero()
    if len(bad_loss) and (not len(bad_norm) or bad_loss[0] <= bad_norm[0]):
        b = int(bad_loss[0])
        where = f"the loss became {losses[b].item()} at epoch {epoch}, batch {b + 1} of {n_batches}"
    elif len(bad_norm):
        b = int(bad_norm[0])
        where = (
            f"the gradient norm became {norms[b].item()} at epoch {epoch}, batch {b + 1} of "
            f"{n_batches}"
        )
    else:
        where = f"a parameter or running statistic became non-finite during epoch {epoch}"
    tips = [f"a lower lr (now {options['lr']:g})"]
    if options["clip_norm"] is None:
        tips.append("clip_norm=1.0")
    tips.append("lower SLAF degrees")
    if options["activation_lr"] is not None:
        tips.append(f"a lower activation_lr (now {options['activation_lr']:g})")
    held = f"the weights from the end of epoch {epoch - 1}" if epoch > 1 else "its initial weights"
    return (
        f"training diverged: {where}. The model holds {held} (the last finite state). "
        f"Try {', '.join(tips[:-1])} or {tips[-1]}."
    )
