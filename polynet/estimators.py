"""scikit-learn estimators: :class:`SLNNRegressor` and :class:`SLNNClassifier`.

Each wraps an :class:`~polynet.SLNN` trained by :func:`polynet.training.fit` in scikit-learn's
estimator contract (``get_params``/``set_params``/``clone``, ``fit`` returning ``self``,
``predict``, ``score``), so an SLNN drops into pipelines, grid searches and cross-validation.
After fitting, ``polynomial_`` is the trained network as one explicit polynomial in the raw
input variables: input standardisation and target scaling are folded in, so
``polynomial_(X)`` equals ``predict(X)`` (the regressor) or ``decision_function(X)`` (the
classifier).

This module needs scikit-learn (``pip install "polynet-slaf[sklearn]"``); ``import polynet`` does
not load it, ``polynet.SLNNRegressor`` does.
"""

from __future__ import annotations

import copy
import os
import warnings
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any, Literal

import numpy as np
import torch
from numpy.typing import ArrayLike
from torch import nn

try:
    from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
    from sklearn.exceptions import NotFittedError as _SklearnNotFittedError
    from sklearn.preprocessing import LabelEncoder
    from sklearn.utils.multiclass import check_classification_targets
    from sklearn.utils.validation import check_is_fitted, check_random_state
except ImportError:  # pragma: no cover - depends on the environment
    from polynet.extras import require

    require("sklearn", "polynet.SLNNRegressor and polynet.SLNNClassifier")
    raise

try:
    from sklearn.utils.validation import validate_data
except ImportError:  # pragma: no cover - scikit-learn < 1.6

    def validate_data(_estimator: Any, /, X: Any, y: Any = "no_validation", **kwargs: Any) -> Any:
        return _estimator._validate_data(X, y, **kwargs)


from polynet import errors
from polynet.data import Standardizer
from polynet.expansion.dispatch import expand
from polynet.nets import SLNN
from polynet.polynomial.network_polynomial import NetworkPolynomial
from polynet.validation import is_int, is_number

__all__ = ["SLNNRegressor", "SLNNClassifier", "NotFittedError"]

#: Samples per forward pass in ``predict`` (no gradients are kept).
PREDICT_BATCH = 8192

_DTYPES = {"float32": torch.float32, "float64": torch.float64}


class NotFittedError(errors.NotFittedError, _SklearnNotFittedError):
    """:class:`polynet.errors.NotFittedError` that is also scikit-learn's ``NotFittedError``.

    Raised by an estimator used before ``fit``, so ``except polynet.errors.NotFittedError``,
    ``except sklearn.exceptions.NotFittedError``, ``except ValueError`` and
    ``except AttributeError`` (``hasattr``) all catch it.
    """


# --------------------------------------------------------------------------------------------
# Parameter constraints, checked at the top of fit
# --------------------------------------------------------------------------------------------


def _is_int_or_ints(v: Any) -> bool:
    if is_int(v, 1):
        return True
    return isinstance(v, Sequence) and not isinstance(v, str) and all(is_int(x, 1) for x in v)


#: name -> (test, what the value must be); nets.SLNN and training.fit check the rest again.
_PARAMETER_CONSTRAINTS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "hidden": (
        lambda v: _is_int_or_ints(v) and (is_int(v, 1) or len(v) >= 1),
        "an integer >= 1 or a non-empty list of them",
    ),
    "degrees": (_is_int_or_ints, "an integer >= 1 or a list of them (one per hidden layer)"),
    "basis": (lambda v: isinstance(v, str), "a basis name such as 'taylor' or 'chebyshev'"),
    "epochs": (lambda v: is_int(v, 1), "an integer >= 1"),
    "max_epochs": (lambda v: v is None or is_int(v, 1), "None or an integer >= 1"),
    "batch_size": (lambda v: is_int(v, 2), "an integer >= 2 (SLAF takes batch statistics)"),
    "lr": (lambda v: is_number(v, 0, strict=True), "a finite number > 0"),
    "activation_lr": (
        lambda v: v is None or is_number(v, 0, strict=True),
        "None or a finite number > 0",
    ),
    "optimizer": (lambda v: v in ("adam", "sgd"), "'adam' or 'sgd'"),
    "clip_norm": (lambda v: v is None or is_number(v, 0, strict=True), "None or a number > 0"),
    "l1": (lambda v: is_number(v, 0), "a finite number >= 0"),
    "l2": (lambda v: is_number(v, 0), "a finite number >= 0"),
    "share": (lambda v: v in ("layer", "channel"), "'layer' or 'channel'"),
    "gate": (lambda v: isinstance(v, (bool, np.bool_)), "True or False"),
    "standardize": (lambda v: isinstance(v, (bool, np.bool_)), "True or False"),
    "early_stopping": (lambda v: isinstance(v, (bool, np.bool_)), "True or False"),
    "patience": (lambda v: is_int(v, 1), "an integer >= 1"),
    "validation_fraction": (
        lambda v: is_number(v, 0, strict=True) and v < 1,
        "a number in (0, 1)",
    ),
    "dtype": (lambda v: v in _DTYPES, "'float32' or 'float64'"),
    "threads": (lambda v: v is None or is_int(v, 1), "None or an integer >= 1"),
    "device": (
        lambda v: v is None or isinstance(v, (str, torch.device)),
        "'auto', 'cpu', 'cuda', 'cuda:N' or a torch.device",
    ),
    "verbose": (lambda v: isinstance(v, (bool, np.bool_, int)), "True or False"),
}


# --------------------------------------------------------------------------------------------
# The shared base
# --------------------------------------------------------------------------------------------


class _SLNNEstimator(BaseEstimator):
    """What the regressor and the classifier share: parameters, training, prediction, export."""

    _task: Literal["regression", "classification"]

    def __init__(
        self,
        hidden: int | Sequence[int] = (32,),
        degrees: int | Sequence[int] = 2,
        *,
        basis: str = "taylor",
        epochs: int = 200,
        batch_size: int = 64,
        lr: float = 1e-2,
        activation_lr: float | None = None,
        optimizer: Literal["adam", "sgd"] = "adam",
        clip_norm: float | None = 1.0,
        l1: float = 0.0,
        l2: float = 0.0,
        share: Literal["layer", "channel"] = "layer",
        gate: bool = False,
        standardize: bool = True,
        early_stopping: bool = False,
        patience: int = 10,
        validation_fraction: float = 0.1,
        dtype: Literal["float32", "float64"] = "float64",
        device: str | torch.device | None = "auto",
        random_state: int | np.random.RandomState | None = None,
        threads: int | None = None,
        verbose: bool = False,
        max_epochs: int | None = None,
    ) -> None:
        self.hidden = hidden
        self.degrees = degrees
        self.basis = basis
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.activation_lr = activation_lr
        self.optimizer = optimizer
        self.clip_norm = clip_norm
        self.l1 = l1
        self.l2 = l2
        self.share = share
        self.gate = gate
        self.standardize = standardize
        self.early_stopping = early_stopping
        self.patience = patience
        self.validation_fraction = validation_fraction
        self.dtype = dtype
        self.device = device
        self.random_state = random_state
        self.threads = threads
        self.verbose = verbose
        self.max_epochs = max_epochs

    # -- sklearn plumbing -----------------------------------------------------------------
    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.non_deterministic = False
        tags.input_tags.allow_nan = False
        return tags

    def __sklearn_is_fitted__(self) -> bool:
        return "model_" in vars(self)

    def _check_fitted(self) -> None:
        try:
            check_is_fitted(self)
        except _SklearnNotFittedError as exc:
            raise NotFittedError(str(exc)) from None

    def _check_params(self) -> None:
        for name, (test, rule) in _PARAMETER_CONSTRAINTS.items():
            value = getattr(self, name)
            if not test(value):
                raise ValueError(
                    f"The '{name}' parameter of {type(self).__name__} must be {rule}, "
                    f"got {value!r}."
                )

    def __getstate__(self) -> dict[str, Any]:
        # Pickles are read on machines without the training GPU: store the model on the CPU.
        state = super().__getstate__()
        model = state.get("model_")
        if model is not None and any(t.device.type != "cpu" for t in model.state_dict().values()):
            state = {**state, "model_": copy.deepcopy(model).cpu()}
            state.pop("_polynomial", None)
        return state

    def _epochs(self) -> int:
        if self.max_epochs is None:
            return int(self.epochs)
        warnings.warn(
            f"{type(self).__name__}(max_epochs=...) is deprecated; use epochs=..., the word "
            "training.fit, FitOptions and the CLI use. max_epochs overrides epochs until it is "
            "removed.",
            FutureWarning,
            stacklevel=4,
        )
        return int(self.max_epochs)

    # -- fitting --------------------------------------------------------------------------
    def _fit(self, X: np.ndarray, targets: np.ndarray, n_outputs: int, **fitted: Any) -> None:
        """Build and train ``model_``; set it and the ``fitted`` attributes only on success."""
        from polynet import training

        rng = check_random_state(self.random_state)
        init_seed, fit_seed = (int(s) for s in rng.randint(np.iinfo(np.int32).max, size=2))
        scaler = Standardizer.fit(X) if self.standardize else None
        Xs = X if scaler is None else scaler.transform(X)
        dtype = _DTYPES[self.dtype]
        hidden = [int(self.hidden)] if is_int(self.hidden, 1) else [int(h) for h in self.hidden]
        degrees = int(self.degrees) if is_int(self.degrees, 1) else [int(k) for k in self.degrees]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(init_seed)
            model = SLNN(
                X.shape[1],
                hidden,
                degrees,
                out_features=n_outputs,
                basis=self.basis,
                share=self.share,
                gate=bool(self.gate),
                dtype=dtype,
            )
        early = bool(self.early_stopping)
        options = training.FitOptions(
            task=self._task,
            epochs=self._epochs(),
            batch_size=int(self.batch_size),
            optimizer=self.optimizer,
            lr=float(self.lr),
            activation_lr=None if self.activation_lr is None else float(self.activation_lr),
            l1=float(self.l1),
            l2=float(self.l2),
            clip_norm=None if self.clip_norm is None else float(self.clip_norm),
            patience=int(self.patience) if early else None,
            val_fraction=float(self.validation_fraction) if early else 0.0,
            device=self.device,
            dtype=dtype,
            seed=fit_seed,
            threads=None if self.threads is None else int(self.threads),
            progress=bool(self.verbose),
        )
        result = training.fit(model, (Xs, targets), options)
        # A failed refit must not leave a new scaler next to the old model: assign at the end.
        for name, value in {**fitted, "scaler_": scaler}.items():
            setattr(self, name, value)
        self.model_ = result.model.eval()
        self.history_ = result.history
        self.n_iter_ = len(result.history)
        self._polynomial: NetworkPolynomial | None = None

    # -- prediction -----------------------------------------------------------------------
    def _forward(self, X: ArrayLike) -> np.ndarray:
        """The network's raw outputs (B, n_outputs) at X, float64, in evaluation mode."""
        self._check_fitted()
        X = validate_data(self, X, reset=False, dtype=np.float64)
        if self.scaler_ is not None:
            X = self.scaler_.transform(X)
        params = next(self.model_.parameters())
        was_training = self.model_.training
        self.model_.eval()
        try:
            with torch.no_grad():
                parts = [
                    self.model_(
                        torch.as_tensor(X[s : s + PREDICT_BATCH]).to(params.device, params.dtype)
                    )
                    .double()
                    .cpu()
                    .numpy()
                    for s in range(0, len(X), PREDICT_BATCH)
                ]
        finally:
            self.model_.train(was_training)
        return np.concatenate(parts)

    # -- the polynomial -------------------------------------------------------------------
    def _output_layer(self) -> nn.Module | None:
        """An affine layer mapping network outputs to the estimator's units (None: identity)."""
        return None

    def _raw_model(self) -> nn.Sequential:
        """The fitted network in the raw input variables, as one ``nn.Sequential``.

        Input standardisation is the first layer and (for the regressor) target scaling the
        last, so on float64 inputs it computes ``predict(X)`` (regressor) or
        ``decision_function(X)`` (classifier). It shares its middle layers with ``model_``.
        """
        self._check_fitted()
        params = next(self.model_.parameters())
        layers: list[tuple[str, nn.Module]] = []
        if self.scaler_ is not None:
            layers.append(("standardize", self.scaler_.as_linear(device=params.device)))
        layers.append(("model", self.model_))
        output = self._output_layer()
        if output is not None:
            layers.append(("output", output.to(params.device)))
        return nn.Sequential(OrderedDict(layers)).eval()

    @property
    def polynomial_(self) -> NetworkPolynomial:
        """The fitted network as one explicit polynomial in the raw inputs (expanded once).

        ``polynomial_(X)`` equals ``predict(X)`` for the regressor and ``decision_function(X)``
        for the classifier; variables are named after ``feature_names_in_`` when ``fit`` was
        given a DataFrame, else ``x0 .. x{n-1}``.
        """
        self._check_fitted()
        if getattr(self, "_polynomial", None) is None:
            poly = expand(self._raw_model())
            names = getattr(self, "feature_names_in_", None)
            self._polynomial = poly.replace(
                variables=None if names is None else [str(n) for n in names],
                n_network_parameters=sum(p.numel() for p in self.model_.parameters()),
            )
        return self._polynomial

    def plot_activations(
        self, path: str | os.PathLike[str] | None = None, X: ArrayLike | None = None, **kwargs: Any
    ) -> Any:
        """Draw each learned activation: :func:`polynet.plots.plot_activations` on ``model_``.

        Parameters
        ----------
        path : str or path-like, optional
            Write the figure there (``.png``, ``.svg`` or ``.pdf``).
        X : array-like of shape (n_samples, n_features), optional
            Raw inputs (standardised here as in ``fit``) whose pre-activations set each
            curve's range and histogram.
        **kwargs
            Further options of :func:`polynet.plots.plot_activations` (``layers``, ``units``,
            ``max_panels``, ``fit_nearest``).

        Returns
        -------
        matplotlib.figure.Figure
        """
        self._check_fitted()
        from polynet import plots

        if X is not None:
            X = validate_data(self, X, reset=False, dtype=np.float64)
            if self.scaler_ is not None:
                X = self.scaler_.transform(X)
        return plots.plot_activations(self.model_, X, path, **kwargs)


# --------------------------------------------------------------------------------------------
# The estimators
# --------------------------------------------------------------------------------------------

_PARAMETERS_DOC = """
    Parameters
    ----------
    hidden : int or list of int, default=(32,)
        Width of each hidden layer.
    degrees : int or list of int, default=2
        SLAF degree per hidden layer (one integer for all); the network is a polynomial of
        total degree at most the product of the degrees.
    basis : {"taylor", "chebyshev", "legendre", "emfn"}, default="taylor"
        SLAF basis family ("emfn" trains but has no ``polynomial_``).
    epochs : int, default=200
        Passes over the training data.
    batch_size : int, default=64
        Samples per optimisation step.
    lr : float, default=0.01
        Learning rate.
    activation_lr : float or None, default=None
        A separate learning rate for the SLAF parameters.
    optimizer : {"adam", "sgd"}, default="adam"
        The optimizer.
    clip_norm : float or None, default=1.0
        Clip the global gradient norm to this value (None: no clipping).
    l1, l2 : float, default=0.0
        Penalties on the SLAF coefficients.
    share : {"layer", "channel"}, default="layer"
        One SLAF coefficient vector per layer, or one per unit.
    gate : bool, default=False
        Sigmoid-gated SLAF coefficients.
    standardize : bool, default=True
        Standardise the inputs{targets} with training-set statistics.
    early_stopping : bool, default=False
        Hold out ``validation_fraction`` of the data and stop after ``patience`` epochs
        without improvement, keeping the best epoch's weights.
    patience : int, default=10
        Epochs without improvement before stopping (with ``early_stopping``).
    validation_fraction : float, default=0.1
        Share of the training data held out for early stopping.
    dtype : {"float32", "float64"}, default="float64"
        Training and prediction precision.
    device : str or torch.device, default="auto"
        Where to train (:func:`polynet.training.resolve_device`; "auto" is CUDA when present).
    random_state : int, RandomState instance or None, default=None
        Seeds the initial weights, the batch order and the validation split.
    threads : int or None, default=None
        CPU threads while training; None lets polynet choose (one per core no other process
        is using, one for a small network: :func:`polynet.threads.choose_threads`).
    verbose : bool, default=False
        Show a progress bar while training.
    max_epochs : int or None, default=None
        Deprecated name of ``epochs`` (warns, and overrides ``epochs`` when given).

    Attributes
    ----------
    model_ : SLNN
        The trained network, in evaluation mode, on standardised inputs.
    polynomial_ : NetworkPolynomial
        The network as one polynomial in the raw inputs, expanded at first access.
    scaler_ : Standardizer or None
        The input standardisation (None with ``standardize=False``).
    history_ : list of dict
        Per-epoch training history (:class:`polynet.training.FitResult`), in the units the
        network was trained in (standardised targets when ``standardize=True``).
    n_iter_ : int
        Epochs trained.
    n_features_in_ : int
        Number of features seen in ``fit``.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Feature names, when ``fit`` was given a DataFrame with string column names."""


class SLNNRegressor(RegressorMixin, _SLNNEstimator):
    __doc__ = (
        """A regressor: an SLNN (Linear, SLAF, ..., Linear) trained with the mean squared error.
"""
        + _PARAMETERS_DOC.replace("{targets}", " (and the targets)")
        + """
    target_scaler_ : Standardizer or None
        The target standardisation (None with ``standardize=False``).
    n_outputs_ : int
        Number of regression targets.

    Examples
    --------
    >>> from sklearn.datasets import load_diabetes
    >>> X, y = load_diabetes(return_X_y=True)
    >>> reg = SLNNRegressor(hidden=8, epochs=10, device="cpu", random_state=0).fit(X, y)
    >>> reg.score(X, y) > 0.4
    True
    >>> bool(np.allclose(reg.polynomial_(X).ravel(), reg.predict(X)))
    True
    """
    )

    _task = "regression"

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags

    def _more_tags(self) -> dict[str, Any]:  # scikit-learn < 1.6
        return {"multioutput": True, "allow_nan": False}

    def fit(self, X: ArrayLike, y: ArrayLike) -> SLNNRegressor:
        """Train on X of shape (n_samples, n_features) and y of shape (n_samples,) or
        (n_samples, n_outputs); returns ``self``."""
        self._check_params()
        X, y = validate_data(
            self, X, y, dtype=np.float64, y_numeric=True, multi_output=True, ensure_min_samples=2
        )
        y = np.asarray(y, dtype=np.float64)
        Y = y.reshape(len(y), -1)
        target_scaler = Standardizer.fit(Y) if self.standardize else None
        targets = Y if target_scaler is None else target_scaler.transform(Y)
        self._fit(
            X,
            targets,
            Y.shape[1],
            n_outputs_=Y.shape[1],
            target_scaler_=target_scaler,
            _y_ndim=y.ndim,
        )
        return self

    def predict(self, X: ArrayLike) -> np.ndarray:
        """Predicted targets, shape (n_samples,) or (n_samples, n_outputs) like ``y`` in fit."""
        out = self._forward(X)
        if self.target_scaler_ is not None:
            out = self.target_scaler_.inverse_transform(out)
        return out.ravel() if self._y_ndim == 1 else out

    def _output_layer(self) -> nn.Module | None:
        if self.target_scaler_ is None:
            return None
        return self.target_scaler_.as_linear(inverse=True)


class SLNNClassifier(ClassifierMixin, _SLNNEstimator):
    __doc__ = (
        """A classifier: an SLNN trained with cross-entropy (one logit for two classes).
"""
        + _PARAMETERS_DOC.replace("{targets}", "")
        + """
    classes_ : ndarray of shape (n_classes,)
        The class labels (sorted, as ``LabelEncoder`` orders them).

    Examples
    --------
    >>> from polynet.data import xor
    >>> ds = xor(200, random_state=0)
    >>> clf = SLNNClassifier(hidden=8, epochs=30, device="cpu", random_state=0)
    >>> clf.fit(ds.X_train, ds.y_train).score(ds.X_test, ds.y_test) > 0.9
    True
    """
    )

    _task = "classification"

    def fit(self, X: ArrayLike, y: ArrayLike) -> SLNNClassifier:
        """Train on X of shape (n_samples, n_features) and class labels y; returns ``self``."""
        self._check_params()
        X, y = validate_data(self, X, y, dtype=np.float64, ensure_min_samples=2)
        check_classification_targets(y)
        encoder = LabelEncoder().fit(y)
        classes = encoder.classes_
        if len(classes) < 2:
            raise ValueError(
                f"{type(self).__name__} needs samples of at least 2 classes, got 1 class "
                f"({classes[0]!r}); a classifier cannot learn from one class."
            )
        codes = encoder.transform(y).astype(np.int64)
        n_outputs = 1 if len(classes) == 2 else len(classes)
        self._fit(X, codes, n_outputs, classes_=classes)
        return self

    def decision_function(self, X: ArrayLike) -> np.ndarray:
        """Logits: shape (n_samples,) for two classes (positive means ``classes_[1]``), else
        (n_samples, n_classes)."""
        out = self._forward(X)
        return out.ravel() if out.shape[1] == 1 else out

    def predict_proba(self, X: ArrayLike) -> np.ndarray:
        """Class probabilities, shape (n_samples, n_classes), columns in ``classes_`` order."""
        logits = torch.from_numpy(self._forward(X))
        if logits.shape[1] == 1:
            # sigmoid(-z) rather than 1 - sigmoid(z): small probabilities keep their digits.
            return torch.cat([torch.sigmoid(-logits), torch.sigmoid(logits)], dim=1).numpy()
        return torch.softmax(logits, dim=1).numpy()

    def predict_log_proba(self, X: ArrayLike) -> np.ndarray:
        """Log of :meth:`predict_proba`, computed stably from the logits."""
        logits = torch.from_numpy(self._forward(X))
        if logits.shape[1] == 1:
            logsigmoid = torch.nn.functional.logsigmoid
            return torch.cat([logsigmoid(-logits), logsigmoid(logits)], dim=1).numpy()
        return torch.log_softmax(logits, dim=1).numpy()

    def predict(self, X: ArrayLike) -> np.ndarray:
        """Predicted class labels, shape (n_samples,)."""
        out = self._forward(X)
        codes = (out[:, 0] > 0).astype(np.int64) if out.shape[1] == 1 else out.argmax(axis=1)
        return self.classes_[codes]
