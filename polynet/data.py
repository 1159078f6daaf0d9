"""Data sets and their splits: embedded, from scikit-learn, generated, and MNIST-style IDX files.

Every loader returns a :class:`Dataset`: float64 arrays with a fixed train/test split, the task,
the feature names, and the loader's name and arguments, so that a checkpoint can record where
its data came from and :func:`from_metadata` can load the same points again.

=================  ========================================================  ==============
name               what                                                      split
=================  ========================================================  ==============
``"boston"``       Boston housing, 13 features, target MEDV (embedded CSV)   Keras: 404/102
``"boston-no-b"``  the same without column B                                 Keras: 404/102
``"diabetes"``     scikit-learn's diabetes regression, 10 features           seeded
``"digits"``       scikit-learn's 8x8 digits, 10 classes                     seeded
``"spirals"``      the paper's two-spirals generator, 2 classes              seeded
``"xor"``          XOR on the square [-1, 1]², 2 classes                     seeded
``"sparse-poly"``  the paper's sparse polynomial regression, ``true_terms``  seeded
``"mnist"``        MNIST from IDX files (local or downloaded), 10 classes    official
``"fashion-mnist"`` Fashion-MNIST from IDX files, 10 classes                  official
=================  ========================================================  ==============

Examples
--------
>>> ds = load("boston").standardize(targets=True)
>>> ds
Dataset('boston', regression, 13 features, 404 train / 102 test, standardized inputs+targets)
>>> float(ds.target_scaler.inverse_transform(ds.y_train[:1])[0])
15.2
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import importlib.resources
import inspect
import logging
import math
import os
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike

from polynet.errors import DataError

__all__ = [
    "Dataset",
    "Standardizer",
    "load",
    "load_boston",
    "load_diabetes",
    "load_digits",
    "two_spirals",
    "xor",
    "sparse_polynomial",
    "load_mnist",
    "load_fashion_mnist",
    "read_idx",
    "from_metadata",
    "LOADERS",
]

logger = logging.getLogger(__name__)

Task = Literal["regression", "classification"]

_SKLEARN_HINT = 'install it with: pip install "polynet[sklearn]"'


# --------------------------------------------------------------------------------------------
# Standardizer
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Standardizer:
    """Per-feature standardisation ``(x - mean_) / scale_`` with training-set statistics.

    Constant features get ``scale_ = 1`` (they are only centred), as in scikit-learn's
    ``StandardScaler``.

    Attributes
    ----------
    mean_ : ndarray of shape (n_features,) or ()
        Training-set mean of each feature (a 0-d array for 1-D targets).
    scale_ : ndarray of the same shape
        Training-set standard deviation (population, ddof=0) of each feature.

    Examples
    --------
    >>> s = Standardizer.fit([[1.0, 10.0], [3.0, 10.0]])
    >>> s.mean_, s.scale_
    (array([ 2., 10.]), array([1., 1.]))
    >>> s.transform([[3.0, 11.0]])
    array([[1., 1.]])
    >>> Standardizer.from_dict(s.to_dict()).inverse_transform([[1.0, 1.0]])
    array([[ 3., 11.]])
    """

    mean_: np.ndarray
    scale_: np.ndarray

    @classmethod
    def fit(cls, X: ArrayLike) -> Standardizer:
        """Learn the mean and scale of each column of ``X`` (axis 0 is the sample axis)."""
        X = np.asarray(X, dtype=np.float64)
        if X.shape[0] < 1:
            raise DataError("cannot standardise an empty array; pass at least one sample.")
        mean = X.mean(axis=0)
        std = X.std(axis=0)
        # Round-off leaves a tiny std on constant columns; treat those as constant.
        constant = std <= 10 * np.finfo(np.float64).eps * np.maximum(np.abs(mean), 1.0)
        return cls(np.asarray(mean), np.asarray(np.where(constant, 1.0, std)))

    def transform(self, X: ArrayLike) -> np.ndarray:
        """Standardise ``X``: ``(X - mean_) / scale_``."""
        return (np.asarray(X, dtype=np.float64) - self.mean_) / self.scale_

    def inverse_transform(self, X: ArrayLike) -> np.ndarray:
        """Undo :meth:`transform`: ``X * scale_ + mean_``."""
        return np.asarray(X, dtype=np.float64) * self.scale_ + self.mean_

    def to_dict(self) -> dict[str, Any]:
        """The statistics as plain JSON values (nested lists, or floats for 0-d)."""
        return {"mean": self.mean_.tolist(), "scale": self.scale_.tolist()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Standardizer:
        """Rebuild a standardizer from :meth:`to_dict`'s output."""
        if not isinstance(d, dict) or set(d) != {"mean", "scale"}:
            got = sorted(d) if isinstance(d, dict) else type(d).__name__
            raise DataError(
                f"a standardizer dict needs exactly the keys ['mean', 'scale'], got {got}; "
                "pass the output of Standardizer.to_dict()."
            )
        mean = np.asarray(d["mean"], dtype=np.float64)
        scale = np.asarray(d["scale"], dtype=np.float64)
        if mean.shape != scale.shape:
            raise DataError(
                f"standardizer mean has shape {mean.shape} but scale has shape {scale.shape}; "
                "they must match."
            )
        return cls(mean, scale)

    def as_linear(
        self,
        *,
        inverse: bool = False,
        device: Any = None,
        dtype: Any = None,
    ) -> Any:
        """An ``nn.Linear`` (float64 by default) computing :meth:`transform` (or its inverse).

        Prepend it to a model trained on standardised inputs to get a model (and, expanded, a
        polynomial) in the raw input variables; append the ``inverse=True`` layer of a target
        standardizer to get outputs in the target's original units.

        Examples
        --------
        >>> import torch
        >>> s = Standardizer(np.array([1.0, 2.0]), np.array([2.0, 4.0]))
        >>> s.as_linear()(torch.tensor([[3.0, 6.0]], dtype=torch.float64))
        tensor([[1., 1.]], dtype=torch.float64, grad_fn=<AddmmBackward0>)
        """
        import torch
        from torch import nn

        if self.mean_.ndim > 1:
            raise DataError(
                f"as_linear() needs 1-D statistics, got shape {self.mean_.shape}; flatten the "
                "inputs (e.g. load_mnist(flatten=True)) before standardising."
            )
        dtype = torch.float64 if dtype is None else dtype
        mean = np.atleast_1d(self.mean_)
        scale = np.atleast_1d(self.scale_)
        if inverse:
            weight, bias = scale, mean
        else:
            weight, bias = 1.0 / scale, -mean / scale
        layer = nn.Linear(mean.size, mean.size, device=device, dtype=dtype)
        with torch.no_grad():
            layer.weight.copy_(torch.diag(torch.as_tensor(weight, dtype=dtype)))
            layer.bias.copy_(torch.as_tensor(bias, dtype=dtype))
        return layer


# --------------------------------------------------------------------------------------------
# Dataset
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Dataset:
    """A data set with a fixed train/test split.

    Attributes
    ----------
    name : str
        The registry name that reloads it with :func:`load` (``"arrays"`` when not loadable).
    X_train, X_test : ndarray of shape (n, n_features) or (n, C, H, W), float64
        Inputs.
    y_train, y_test : ndarray of shape (n,)
        Targets: float64 for regression, int64 class labels 0..n_classes-1 for classification.
    task : {"regression", "classification"}
        What the targets are.
    feature_names : list of str
        One name per input feature (per pixel for flattened images).
    n_classes : int or None
        Number of classes; None for regression.
    description : str
        One paragraph on where the data comes from.
    scaler : Standardizer or None
        Set by :meth:`standardize`: the input standardisation applied to ``X_*``.
    target_scaler : Standardizer or None
        Set by ``standardize(targets=True)``: the target standardisation applied to ``y_*``.
    true_terms : dict or None
        For generated polynomial data: exponent tuple -> coefficient of the true polynomial.
    params : dict
        The loader's keyword arguments; ``load(name, **params)`` gives the same data.
    """

    name: str
    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    task: Task
    feature_names: list[str]
    n_classes: int | None = None
    description: str = ""
    scaler: Standardizer | None = None
    target_scaler: Standardizer | None = None
    true_terms: dict[tuple[int, ...], float] | None = None
    params: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.task not in ("regression", "classification"):
            raise DataError(f"task must be 'regression' or 'classification', got {self.task!r}.")
        for split in ("train", "test"):
            X, y = getattr(self, f"X_{split}"), getattr(self, f"y_{split}")
            if len(X) != len(y):
                raise DataError(
                    f"X_{split} has {len(X)} samples but y_{split} has {len(y)}; "
                    "they must have one target per sample."
                )
        if self.X_train.shape[1:] != self.X_test.shape[1:]:
            raise DataError(
                f"X_train samples have shape {self.X_train.shape[1:]} but X_test samples have "
                f"shape {self.X_test.shape[1:]}; both splits need the same features."
            )

    @property
    def n_features(self) -> int:
        """Number of input features (product of the sample shape for images)."""
        return int(np.prod(self.X_train.shape[1:]))

    def standardize(self, *, targets: bool = False) -> Dataset:
        """A copy with inputs (and, for regression, optionally targets) standardised.

        The statistics come from the training split only and are kept in ``scaler`` (and
        ``target_scaler``), so predictions can be mapped back and the transform can be folded
        into a model with :meth:`Standardizer.as_linear`.

        Parameters
        ----------
        targets : bool, default=False
            Also standardise the targets (regression only).
        """
        if self.scaler is not None or self.target_scaler is not None:
            raise DataError(
                f"data set {self.name!r} is already standardised; call standardize() on the "
                "data as loaded, not twice."
            )
        if targets and self.task != "regression":
            raise DataError(
                f"targets=True standardises regression targets, but {self.name!r} is a "
                f"{self.task} data set; use targets=False."
            )
        scaler = Standardizer.fit(self.X_train)
        target_scaler = Standardizer.fit(self.y_train) if targets else None
        return self._with_scalers(scaler, target_scaler)

    def _with_scalers(
        self, scaler: Standardizer | None, target_scaler: Standardizer | None
    ) -> Dataset:
        changes: dict[str, Any] = {"scaler": scaler, "target_scaler": target_scaler}
        if scaler is not None:
            changes["X_train"] = scaler.transform(self.X_train)
            changes["X_test"] = scaler.transform(self.X_test)
        if target_scaler is not None:
            changes["y_train"] = target_scaler.transform(self.y_train)
            changes["y_test"] = target_scaler.transform(self.y_test)
        return dataclasses.replace(self, **changes)

    def to_metadata(self) -> dict[str, Any]:
        """What a checkpoint stores to find these points again (plain JSON values).

        See Also
        --------
        from_metadata : the inverse.
        """
        return {
            "name": self.name,
            "params": dict(self.params),
            "task": self.task,
            "n_features": self.n_features,
            "n_classes": self.n_classes,
            "feature_names": list(self.feature_names),
            "scaler": None if self.scaler is None else self.scaler.to_dict(),
            "target_scaler": None if self.target_scaler is None else self.target_scaler.to_dict(),
        }

    def __repr__(self) -> str:
        parts = [
            repr(self.name),
            self.task,
            f"{self.n_features} features",
            f"{len(self.X_train)} train / {len(self.X_test)} test",
        ]
        if self.n_classes is not None:
            parts.insert(2, f"{self.n_classes} classes")
        if self.scaler is not None or self.target_scaler is not None:
            what = "+".join(
                w
                for w, s in (("inputs", self.scaler), ("targets", self.target_scaler))
                if s is not None
            )
            parts.append(f"standardized {what}")
        return f"Dataset({', '.join(parts)})"


def _split(
    X: np.ndarray, y: np.ndarray, test_size: float, random_state: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Seeded shuffle, then the last ceil(test_size * n) samples are the test split."""
    if not 0 < test_size < 1:
        raise DataError(f"test_size must be in (0, 1), got {test_size!r}; 0.2 is common.")
    n = len(X)
    n_test = math.ceil(test_size * n)
    if n_test >= n:
        raise DataError(
            f"test_size={test_size} leaves no training samples out of {n}; use a smaller value."
        )
    order = np.random.RandomState(random_state).permutation(n)
    train, test = order[: n - n_test], order[n - n_test :]
    return X[train], y[train], X[test], y[test]


# --------------------------------------------------------------------------------------------
# Embedded and scikit-learn data
# --------------------------------------------------------------------------------------------

_BOSTON_DESCRIPTION = (
    "Boston housing (Harrison & Rubinfeld 1978): 506 census tracts, 13 features, target MEDV "
    "(median home value in $1000s). Split as Keras does: RandomState(113) shuffle, first 404 "
    "train, last 102 test. Column B = 1000 (Bk - 0.63)^2, Bk the share of Black residents: the "
    "reason scikit-learn removed this data set. It is kept only for a faithful reproduction of "
    "published results; 'boston-no-b' runs the same experiment without it."
)


def load_boston(drop_b: bool = False) -> Dataset:
    """The Boston housing data with the Keras train/test split (the paper's experiment).

    The rows of the embedded CSV are shuffled with ``numpy.random.RandomState(113)``; the first
    404 are the training split and the last 102 the test split, as in
    ``keras.datasets.boston_housing`` (the first training target is 15.2, the first test
    target 7.2).

    Parameters
    ----------
    drop_b : bool, default=False
        Drop column B (returned under the name ``"boston-no-b"``).

    Returns
    -------
    Dataset
        Regression, 13 features (12 with ``drop_b``), targets in $1000s.

    Notes
    -----
    Column B is ``1000 (Bk - 0.63)^2`` where Bk is the proportion of Black residents by town,
    an encoding built on a racist assumption and the reason scikit-learn dropped the data set
    in version 1.2. polynet keeps it only so that published results (the paper's table) can be
    reproduced faithfully; ``drop_b=True`` (or ``load("boston-no-b")``) gives the same
    experiment without that column, and is the variant to use for anything new.

    Examples
    --------
    >>> ds = load_boston()
    >>> ds.X_train.shape, ds.X_test.shape, ds.y_train[0], ds.y_test[0]
    ((404, 13), (102, 13), np.float64(15.2), np.float64(7.2))
    >>> load_boston(drop_b=True).feature_names[-2:]
    ['PTRATIO', 'LSTAT']
    """
    resource = importlib.resources.files("polynet") / "datasets" / "boston_house_prices.csv"
    with resource.open("r", encoding="utf-8") as f:
        header = f.readline().strip().split(",")
        table = np.loadtxt(f, delimiter=",", dtype=np.float64)
    names = [h.strip().strip('"') for h in header]
    X, y = table[:, :-1], table[:, -1]
    features = names[:-1]
    if drop_b:
        keep = [i for i, n in enumerate(features) if n != "B"]
        X, features = X[:, keep], [features[i] for i in keep]
    order = np.random.RandomState(113).permutation(len(X))
    X, y = X[order], y[order]
    return Dataset(
        name="boston-no-b" if drop_b else "boston",
        X_train=X[:404],
        y_train=y[:404],
        X_test=X[404:],
        y_test=y[404:],
        task="regression",
        feature_names=features,
        description=_BOSTON_DESCRIPTION,
    )


def _load_boston_no_b() -> Dataset:
    return load_boston(drop_b=True)


def _sklearn_datasets() -> Any:
    try:
        import sklearn.datasets
    except ImportError as exc:
        raise ImportError(f"this data set ships with scikit-learn; {_SKLEARN_HINT}") from exc
    return sklearn.datasets


def load_diabetes(*, test_size: float = 0.2, random_state: int = 0) -> Dataset:
    """scikit-learn's diabetes regression data (442 patients, 10 raw features), seeded split.

    The features are the unscaled ones (``scaled=False``); use :meth:`Dataset.standardize`.
    Needs scikit-learn (``pip install "polynet[sklearn]"``).

    Parameters
    ----------
    test_size : float, default=0.2
        Fraction of samples in the test split.
    random_state : int, default=0
        Seed of the split.
    """
    raw = _sklearn_datasets().load_diabetes(scaled=False)
    parts = _split(
        raw.data.astype(np.float64), raw.target.astype(np.float64), test_size, random_state
    )
    return Dataset(
        "diabetes",
        *parts,
        task="regression",
        feature_names=list(raw.feature_names),
        description="Diabetes progression one year after baseline (Efron et al. 2004), "
        "via scikit-learn.",
        params={"test_size": test_size, "random_state": random_state},
    )


def load_digits(*, test_size: float = 0.2, random_state: int = 0) -> Dataset:
    """scikit-learn's 8x8 handwritten digits (1,797 images, pixel values 0..16), seeded split.

    Inputs are flattened to 64 features. Needs scikit-learn (``pip install
    "polynet[sklearn]"``).

    Parameters
    ----------
    test_size : float, default=0.2
        Fraction of samples in the test split.
    random_state : int, default=0
        Seed of the split.
    """
    raw = _sklearn_datasets().load_digits()
    parts = _split(
        raw.data.astype(np.float64), raw.target.astype(np.int64), test_size, random_state
    )
    return Dataset(
        "digits",
        *parts,
        task="classification",
        feature_names=[f"pixel_{r}_{c}" for r in range(8) for c in range(8)],
        n_classes=10,
        description="UCI optical recognition of handwritten digits (8x8), via scikit-learn.",
        params={"test_size": test_size, "random_state": random_state},
    )


# --------------------------------------------------------------------------------------------
# Generated data
# --------------------------------------------------------------------------------------------


def two_spirals(
    n_samples: int = 2000,
    noise: float = 0.1,
    turns: float = 2.0,
    random_state: int = 0,
    *,
    test_size: float = 0.2,
) -> Dataset:
    """The paper's two interleaved spirals, a binary classification in the plane.

    Each spiral has ``n_samples // 2`` points at angles t = sqrt(u) · 780° (u uniform on
    [0, 1)), at (-t cos(turns·t), t sin(turns·t)) plus uniform noise in [0, noise) per
    coordinate; the second spiral is the first mirrored through the origin. Labels are 0 and 1.

    Parameters
    ----------
    n_samples : int, default=2000
        Total number of points (split evenly between the spirals).
    noise : float, default=0.1
        Width of the uniform noise added to each coordinate.
    turns : float, default=2.0
        Angular speed: more turns wind the spirals tighter.
    random_state : int, default=0
        Seed of the points and of the split.
    test_size : float, default=0.2
        Fraction of points in the test split.

    Examples
    --------
    >>> ds = two_spirals(100, random_state=1)
    >>> ds.X_train.shape, sorted(set(ds.y_train.tolist()))
    ((80, 2), [0, 1])
    """
    n = _check_count(n_samples, "n_samples", minimum=4) // 2
    rng = np.random.RandomState(random_state)
    t = np.sqrt(rng.rand(n)) * np.deg2rad(780.0)
    first = np.stack([-np.cos(turns * t) * t, np.sin(turns * t) * t], axis=1)
    first = first + rng.rand(n, 2) * noise
    X = np.concatenate([first, -first])
    y = np.concatenate([np.zeros(n, np.int64), np.ones(n, np.int64)])
    return Dataset(
        "spirals",
        *_split(X, y, test_size, random_state),
        task="classification",
        feature_names=["x0", "x1"],
        n_classes=2,
        description="Two interleaved spirals (the paper's generator).",
        params={
            "n_samples": n_samples,
            "noise": noise,
            "turns": turns,
            "random_state": random_state,
            "test_size": test_size,
        },
    )


def xor(
    n_samples: int = 400,
    noise: float = 0.0,
    random_state: int = 0,
    *,
    test_size: float = 0.2,
) -> Dataset:
    """XOR on the square: label 1 where exactly one coordinate is positive.

    Points are uniform on [-1, 1]²; the label is taken before Gaussian noise of standard
    deviation ``noise`` is added to the inputs. The decision function x0·x1 is a degree-2
    polynomial, so an SLNN with one degree-2 SLAF can represent it exactly.

    Parameters
    ----------
    n_samples : int, default=400
        Number of points.
    noise : float, default=0.0
        Standard deviation of the input noise.
    random_state : int, default=0
        Seed of the points and of the split.
    test_size : float, default=0.2
        Fraction of points in the test split.

    Examples
    --------
    >>> ds = xor(50)
    >>> bool(((ds.X_train[:, 0] * ds.X_train[:, 1] < 0) == (ds.y_train == 1)).all())
    True
    """
    n = _check_count(n_samples, "n_samples", minimum=4)
    rng = np.random.RandomState(random_state)
    X = rng.uniform(-1.0, 1.0, size=(n, 2))
    y = ((X[:, 0] > 0) != (X[:, 1] > 0)).astype(np.int64)
    X = X + noise * rng.standard_normal((n, 2))
    return Dataset(
        "xor",
        *_split(X, y, test_size, random_state),
        task="classification",
        feature_names=["x0", "x1"],
        n_classes=2,
        description="XOR of the signs of two uniform coordinates on [-1, 1]^2.",
        params={
            "n_samples": n_samples,
            "noise": noise,
            "random_state": random_state,
            "test_size": test_size,
        },
    )


def sparse_polynomial(
    n_samples: int = 10000,
    n_features: int = 10,
    degree: int = 3,
    n_terms: int | None = None,
    noise: float = 0.0,
    random_state: int = 0,
    *,
    test_size: float = 0.5,
) -> Dataset:
    """The paper's polynomial regression: a sum of random monomials of one degree.

    Inputs are standard normal. Each of ``n_terms`` draws picks ``degree`` input indices with
    replacement and adds their product (coefficient 1) to the target; draws that pick the same
    monomial add up, so ``true_terms`` can hold fewer than ``n_terms`` entries with
    coefficients above 1. Gaussian noise of standard deviation ``noise`` is added to y.

    Parameters
    ----------
    n_samples : int, default=10000
        Number of samples.
    n_features : int, default=10
        Number of inputs.
    degree : int, default=3
        Total degree of every monomial.
    n_terms : int or None, default=None
        Number of monomial draws; None means ``n_features``.
    noise : float, default=0.0
        Standard deviation of the target noise.
    random_state : int, default=0
        Seed of the inputs, the monomials, the noise and the split.
    test_size : float, default=0.5
        Fraction of samples in the test split (the paper uses half).

    Returns
    -------
    Dataset
        With ``true_terms``: exponent tuple (one entry per input) -> coefficient.

    Examples
    --------
    >>> ds = sparse_polynomial(200, n_features=3, degree=2, n_terms=2, random_state=3)
    >>> ds.true_terms
    {(1, 1, 0): 1.0, (0, 0, 2): 1.0}
    """
    n = _check_count(n_samples, "n_samples", minimum=2)
    n_features = _check_count(n_features, "n_features")
    degree = _check_count(degree, "degree")
    n_terms = n_features if n_terms is None else _check_count(n_terms, "n_terms")
    rng = np.random.RandomState(random_state)
    X = rng.standard_normal((n, n_features))
    terms: dict[tuple[int, ...], float] = {}
    for _ in range(n_terms):
        picks = rng.randint(n_features, size=degree)
        exponents = tuple(int(e) for e in np.bincount(picks, minlength=n_features))
        terms[exponents] = terms.get(exponents, 0.0) + 1.0
    y = np.zeros(n)
    for exponents, coef in terms.items():
        y += coef * np.prod(X ** np.asarray(exponents), axis=1)
    y += noise * rng.standard_normal(n)
    return Dataset(
        "sparse-poly",
        *_split(X, y, test_size, random_state),
        task="regression",
        feature_names=[f"x{i}" for i in range(n_features)],
        description=f"Sum of {n_terms} random degree-{degree} monomials in {n_features} "
        "standard normal inputs (the paper's polynomial experiment).",
        true_terms=terms,
        params={
            "n_samples": n_samples,
            "n_features": n_features,
            "degree": degree,
            "n_terms": n_terms,
            "noise": noise,
            "random_state": random_state,
            "test_size": test_size,
        },
    )


def _check_count(value: Any, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise DataError(f"{name} must be an integer >= {minimum}, got {value!r}.")
    return int(value)


# --------------------------------------------------------------------------------------------
# IDX files: MNIST and Fashion-MNIST
# --------------------------------------------------------------------------------------------

_IDX_DTYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

_IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}

# MD5 of the official .gz files (the same for every mirror).
_IDX_MD5 = {
    "mnist": {
        "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
        "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
        "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
    },
    "fashion-mnist": {
        "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
        "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
        "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
    },
}

_IDX_MIRRORS = {
    "mnist": [
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
    ],
    "fashion-mnist": [
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
    ],
}

_FASHION_CLASSES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read one IDX file (the MNIST format), gzip-compressed or not.

    Parameters
    ----------
    path : str or path-like
        The file; a gzip file is recognised by its magic bytes, whatever its name.

    Returns
    -------
    ndarray
        With the file's dtype and shape (e.g. uint8 of shape (10000, 28, 28)).

    Raises
    ------
    DataError
        If the file is missing, not IDX, or shorter than its header says.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read IDX file {str(path)!r}: {exc.strerror or exc}.") from exc
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise DataError(
                f"{str(path)!r} looks gzip-compressed but does not decompress ({exc}); the "
                "file is damaged: delete it and fetch it again."
            ) from exc
    if len(raw) < 4 or raw[:2] != b"\x00\x00" or raw[2] not in _IDX_DTYPES:
        raise DataError(
            f"{str(path)!r} is not an IDX file (bad magic number {raw[:4].hex() or 'empty'}); "
            "expected the MNIST-format files such as t10k-images-idx3-ubyte.gz."
        )
    dtype, ndim = _IDX_DTYPES[raw[2]], raw[3]
    offset = 4 + 4 * ndim
    if len(raw) < offset:
        raise DataError(f"IDX file {str(path)!r} is truncated inside its header.")
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(raw) - offset != expected:
        raise DataError(
            f"IDX file {str(path)!r} holds {len(raw) - offset} data bytes but its header "
            f"announces shape {shape} ({expected} bytes); the file is truncated or damaged: "
            "delete it and fetch it again."
        )
    return (
        np.frombuffer(raw, dtype=dtype, offset=offset)
        .reshape(shape)
        .astype(dtype.newbyteorder("="))
    )


def _default_data_dir(name: str) -> Path:
    root = os.environ.get("POLYNET_DATA") or os.path.join("~", ".cache", "polynet")
    return Path(root).expanduser() / name


def _find_idx(directory: Path, base: str) -> Path | None:
    for candidate in (directory / f"{base}.gz", directory / base):
        if candidate.is_file():
            return candidate
    return None


def _download_idx(name: str, directory: Path) -> None:
    """Fetch the four files of ``name`` into ``directory``, each verified by MD5."""
    directory.mkdir(parents=True, exist_ok=True)
    for filename, md5 in _IDX_MD5[name].items():
        target = directory / filename
        if target.is_file():
            continue
        errors = []
        for mirror in _IDX_MIRRORS[name]:
            url = mirror + filename
            try:
                _fetch(url, target, md5)
                logger.info("downloaded %s", url)
                break
            except (OSError, urllib.error.URLError, ValueError) as exc:
                errors.append(f"{url}: {exc}")
        else:
            raise DataError(
                f"could not download {filename} for {name}: "
                + "; ".join(errors)
                + f". Download the four IDX files by hand into {str(directory)!r} and call "
                "again with download=False."
            )


def _fetch(url: str, target: Path, md5: str) -> None:
    # Write to a temporary file beside the target and rename it, so an interrupted download
    # never leaves a partial file under the real name.
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    try:
        digest = hashlib.md5()
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=60) as response:
            while chunk := response.read(1 << 20):
                digest.update(chunk)
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        if digest.hexdigest() != md5:
            raise ValueError(f"MD5 {digest.hexdigest()} differs from the expected {md5}")
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _load_idx_dataset(
    name: str,
    path: str | os.PathLike[str] | None,
    download: bool,
    test_size: float,
    random_state: int,
    flatten: bool,
) -> Dataset:
    directory = _default_data_dir(name) if path is None else Path(path).expanduser()
    if download:
        _download_idx(name, directory)
    if path is not None and not directory.is_dir():
        raise DataError(
            f"{name} directory {str(directory)!r} does not exist; pass the directory that "
            "holds the IDX files (e.g. t10k-images-idx3-ubyte.gz), or download=True."
        )
    found = {key: _find_idx(directory, base) for key, base in _IDX_FILES.items()}
    have_train = found["train_images"] is not None and found["train_labels"] is not None
    have_test = found["test_images"] is not None and found["test_labels"] is not None
    if not (have_train or have_test):
        missing = [f"{base}[.gz]" for key, base in _IDX_FILES.items() if found[key] is None]
        raise DataError(
            f"no {name} IDX files in {str(directory)!r}: expected the pairs "
            f"{', '.join(missing)}. Put the files there, pass path= the directory that holds "
            f"them, or call load_{name.replace('-', '_')}(download=True) to fetch them."
        )

    def pair(split: str) -> tuple[np.ndarray, np.ndarray]:
        images = read_idx(found[f"{split}_images"]).astype(np.float64) / 255.0
        labels = read_idx(found[f"{split}_labels"]).astype(np.int64)
        if len(images) != len(labels):
            raise DataError(
                f"{found[f'{split}_images']} holds {len(images)} images but "
                f"{found[f'{split}_labels']} holds {len(labels)} labels; the files do not "
                "belong together."
            )
        return images, labels

    if have_train and have_test:
        X_train, y_train = pair("train")
        X_test, y_test = pair("test")
        split_note = "the official train/test split"
    else:
        # Only one pair (e.g. the 10,000-image t10k set): split it ourselves, seeded.
        only = "train" if have_train else "test"
        X_train, y_train, X_test, y_test = _split(*pair(only), test_size, random_state)
        split_note = (
            f"only the {only} files were found, so they were split into train/test with "
            f"test_size={test_size}, random_state={random_state}"
        )
    height, width = X_train.shape[1:]
    if flatten:
        X_train = X_train.reshape(len(X_train), -1)
        X_test = X_test.reshape(len(X_test), -1)
    else:
        X_train, X_test = X_train[:, None], X_test[:, None]
    title = "MNIST handwritten digits" if name == "mnist" else "Fashion-MNIST (Zalando)"
    return Dataset(
        name,
        X_train,
        y_train,
        X_test,
        y_test,
        task="classification",
        feature_names=[f"pixel_{r}_{c}" for r in range(height) for c in range(width)],
        n_classes=10,
        description=f"{title}, 28x28 grey levels scaled to [0, 1], from {directory}; {split_note}.",
        params={
            "path": str(directory.resolve()),
            "test_size": test_size,
            "random_state": random_state,
            "flatten": flatten,
        },
    )


def load_mnist(
    path: str | os.PathLike[str] | None = None,
    download: bool = False,
    *,
    test_size: float = 0.2,
    random_state: int = 0,
    flatten: bool = True,
) -> Dataset:
    """MNIST from its IDX files (``*-idx3-ubyte`` and ``*-idx1-ubyte``, gzipped or not).

    With all four files in the directory, the official 60,000/10,000 split is used. With only
    one pair, e.g. just the 10,000-image ``t10k`` test files, that pair is split into our own
    train and test sets (seeded, ``test_size``): fine for small experiments, but the numbers
    are then not comparable with results on the official split.

    Parameters
    ----------
    path : str or path-like or None, default=None
        Directory of the IDX files; None means ``$POLYNET_DATA/mnist`` or
        ``~/.cache/polynet/mnist``.
    download : bool, default=False
        Download missing files (MD5-verified) into that directory first.
    test_size : float, default=0.2
        Test fraction when only one pair of files is present.
    random_state : int, default=0
        Seed of that split.
    flatten : bool, default=True
        Return inputs of shape (n, 784) (for MLPs); False gives (n, 1, 28, 28) (for
        :class:`~polynet.nets.ConvSLNN`).

    Raises
    ------
    DataError
        When the files are missing, damaged, or the download fails.
    """
    return _load_idx_dataset("mnist", path, download, test_size, random_state, flatten)


def load_fashion_mnist(
    path: str | os.PathLike[str] | None = None,
    download: bool = False,
    *,
    test_size: float = 0.2,
    random_state: int = 0,
    flatten: bool = True,
) -> Dataset:
    """Fashion-MNIST from its IDX files; the same format and rules as :func:`load_mnist`.

    Classes 0..9 are: T-shirt/top, Trouser, Pullover, Dress, Coat, Sandal, Shirt, Sneaker,
    Bag, Ankle boot. ``path=None`` means ``$POLYNET_DATA/fashion-mnist`` or
    ``~/.cache/polynet/fashion-mnist``.
    """
    return _load_idx_dataset("fashion-mnist", path, download, test_size, random_state, flatten)


# --------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------

LOADERS: dict[str, Callable[..., Dataset]] = {
    "boston": load_boston,
    "boston-no-b": _load_boston_no_b,
    "diabetes": load_diabetes,
    "digits": load_digits,
    "spirals": two_spirals,
    "xor": xor,
    "sparse-poly": sparse_polynomial,
    "mnist": load_mnist,
    "fashion-mnist": load_fashion_mnist,
}


def load(name: str, **kwargs: Any) -> Dataset:
    """Load a data set by its registry name (see the module docstring for the list).

    Parameters
    ----------
    name : str
        One of ``LOADERS`` (case-insensitive; ``_`` and ``-`` are the same).
    **kwargs
        The loader's keyword arguments (e.g. ``drop_b=True``, ``n_samples=500``).

    Examples
    --------
    >>> load("xor", n_samples=20).X_train.shape
    (16, 2)
    """
    key = str(name).lower().replace("_", "-")
    if key not in LOADERS:
        raise DataError(f"unknown data set {name!r}; valid names are {sorted(LOADERS)}.")
    loader = LOADERS[key]
    accepted = inspect.signature(loader).parameters
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise DataError(
            f"data set {key!r} has no option(s) {unknown}; its options are {list(accepted)}."
        )
    return loader(**kwargs)


def from_metadata(metadata: dict[str, Any], **overrides: Any) -> Dataset:
    """Load the data a checkpoint's model was trained on, standardised as it was then.

    Parameters
    ----------
    metadata : dict
        A checkpoint's metadata (with a ``"dataset"`` entry written by ``training.fit``), or
        that entry itself (:meth:`Dataset.to_metadata`).
    **overrides
        Replace loader arguments, e.g. ``path=`` when the MNIST files moved.

    Examples
    --------
    >>> ds = load("boston").standardize(targets=True)
    >>> again = from_metadata({"dataset": ds.to_metadata()})
    >>> bool((again.X_test == ds.X_test).all() and (again.y_train == ds.y_train).all())
    True
    """
    info = metadata.get("dataset", metadata) if isinstance(metadata, dict) else None
    if not isinstance(info, dict) or "name" not in info:
        raise DataError(
            "the metadata has no 'dataset' entry, so the data cannot be reloaded: the model was "
            "trained on arrays passed to fit() directly; load those arrays yourself."
        )
    if info["name"] not in LOADERS:
        raise DataError(
            f"the model was trained on data set {info['name']!r}, which polynet cannot reload "
            f"(known data sets: {sorted(LOADERS)}); load that data yourself."
        )
    ds = load(info["name"], **{**info.get("params", {}), **overrides})
    scaler = info.get("scaler")
    target_scaler = info.get("target_scaler")
    return ds._with_scalers(
        None if scaler is None else Standardizer.from_dict(scaler),
        None if target_scaler is None else Standardizer.from_dict(target_scaler),
    )
