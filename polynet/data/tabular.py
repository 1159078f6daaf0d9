"""Tabular regression data: Boston housing (embedded CSV) and scikit-learn's diabetes.

Boston comes with the Keras split and with a note on its column B (see :func:`load_boston`);
``"boston-no-b"`` is the same experiment without that column.
"""

from __future__ import annotations

import importlib.resources
from typing import Any

import numpy as np

from polynet.data.dataset import Dataset
from polynet.data.preprocessing import _split

__all__ = ["load_boston", "load_diabetes"]


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


def _sklearn_datasets(name: str) -> Any:
    """scikit-learn's ``datasets`` module, which ships the ``name`` data set."""
    from polynet.extras import require

    return require("sklearn.datasets", f"the {name} data set (it ships with scikit-learn)")


def load_diabetes(*, test_size: float = 0.2, random_state: int = 0) -> Dataset:
    """scikit-learn's diabetes regression data (442 patients, 10 raw features), seeded split.

    The features are the unscaled ones (``scaled=False``); use :meth:`Dataset.standardize`.
    Needs scikit-learn (``pip install "polynet-slaf[sklearn]"``).

    Parameters
    ----------
    test_size : float, default=0.2
        Fraction of samples in the test split.
    random_state : int, default=0
        Seed of the split.
    """
    raw = _sklearn_datasets("diabetes").load_diabetes(scaled=False)
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
