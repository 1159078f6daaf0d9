"""polynet.data.dataset: the Dataset type, its standardised copies and its metadata."""

import json

import numpy as np
import pytest

from polynet import data
from polynet.data import Dataset
from polynet.errors import DataError


def test_standardize_uses_training_statistics_only():
    raw = data.load_boston()
    ds = raw.standardize(targets=True)
    assert np.allclose(ds.X_train.mean(axis=0), 0) and not np.allclose(ds.X_test.mean(axis=0), 0)
    assert np.allclose(ds.scaler.mean_, raw.X_train.mean(axis=0))
    assert np.allclose(ds.target_scaler.inverse_transform(ds.y_test), raw.y_test)
    assert raw.scaler is None  # standardize returns a new data set


def test_dataset_checks_its_splits_and_records_its_metadata():
    X, y = np.zeros((4, 2)), np.zeros(4)
    with pytest.raises(DataError, match="X_test has 4 samples but y_test has 3"):
        Dataset("arrays", X, y, X, y[:3], task="regression", feature_names=["a", "b"])
    ds = Dataset("arrays", X, y, X[:2], y[:2], task="regression", feature_names=["a", "b"])
    meta = json.loads(json.dumps(ds.standardize(targets=True).to_metadata()))
    assert meta["name"] == "arrays" and meta["n_features"] == 2
    assert meta["scaler"] == {"mean": [0.0, 0.0], "scale": [1.0, 1.0]}
    assert meta["target_scaler"] == {"mean": 0.0, "scale": 1.0}
