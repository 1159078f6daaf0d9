"""What is done to the arrays of a data set: standardisation and the seeded train/test split.

:class:`Standardizer` holds training-set statistics and can become an ``nn.Linear`` that folds
the transform into a model; ``_split`` is the one seeded shuffle-and-cut every generated or
scikit-learn data set uses.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from polynet.errors import DataError
from polynet.validation import is_number

__all__ = ["Standardizer"]


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


def _split(
    X: np.ndarray, y: np.ndarray, test_size: float, random_state: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Seeded shuffle, then the last ceil(test_size * n) samples are the test split."""
    if not (is_number(test_size, 0.0, strict=True) and test_size < 1):
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
