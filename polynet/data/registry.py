"""Data sets by name: the registry :data:`LOADERS`, :func:`load`, and :func:`from_metadata`.

A name maps to its loader; a checkpoint's ``"dataset"`` metadata (name, loader arguments,
scalers) loads and standardises the same points again.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from polynet.data.dataset import Dataset
from polynet.data.files import load_file
from polynet.data.images import load_digits, load_fashion_mnist, load_mnist
from polynet.data.preprocessing import Standardizer
from polynet.data.synthetic import sparse_polynomial, two_spirals, xor
from polynet.data.tabular import _load_boston_no_b, load_boston, load_diabetes
from polynet.errors import DataError

__all__ = ["LOADERS", "NEEDS_EXTRA", "load", "from_metadata"]

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
    "file": load_file,
}

#: Data sets whose loader needs an optional package: name -> its import name (see
#: :data:`polynet.extras.EXTRAS` for the extra that installs it).
NEEDS_EXTRA: dict[str, str] = {"diabetes": "sklearn", "digits": "sklearn"}


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
