"""The data set type: float64 arrays with a fixed train/test split, and where they came from.

Every loader returns a :class:`Dataset`; its ``name`` and ``params`` are what
:func:`~polynet.data.from_metadata` needs to load the same points again.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from polynet.data.preprocessing import Standardizer
from polynet.errors import DataError

__all__ = ["Dataset", "Task"]

Task = Literal["regression", "classification"]


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
