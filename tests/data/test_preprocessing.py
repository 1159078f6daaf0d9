"""polynet.data.preprocessing: Standardizer statistics, its linear layer, the seeded split."""

import json

import numpy as np
import pytest
import torch

from polynet.data import Standardizer
from polynet.data.preprocessing import _split
from polynet.errors import DataError

#: float64 agreement of two routes through the same affine map.
AFFINE_RTOL = 1e-12


def test_standardizer_statistics_and_round_trip():
    X = np.random.default_rng(0).normal(3.0, 2.0, size=(50, 4))
    X[:, 2] = 7.0  # a constant column is only centred
    s = Standardizer.fit(X)
    assert np.allclose(s.mean_, X.mean(axis=0)) and s.scale_[2] == 1.0
    Z = s.transform(X)
    assert np.allclose(Z.mean(axis=0), 0) and np.allclose(np.delete(Z.std(axis=0), 2), 1)
    assert np.allclose(s.inverse_transform(Z), X, rtol=AFFINE_RTOL)
    again = Standardizer.from_dict(json.loads(json.dumps(s.to_dict())))
    assert np.array_equal(again.mean_, s.mean_) and np.array_equal(again.scale_, s.scale_)


def test_as_linear_equals_transform_and_inverse():
    X = np.random.default_rng(1).normal(size=(20, 3)) * [1.0, 10.0, 0.1] + [5.0, -2.0, 0.0]
    s = Standardizer.fit(X)
    layer = s.as_linear()
    assert layer.weight.dtype == torch.float64
    with torch.no_grad():
        forward = layer(torch.from_numpy(X)).numpy()
        back = s.as_linear(inverse=True)(torch.from_numpy(s.transform(X))).numpy()
    assert np.allclose(forward, s.transform(X), rtol=AFFINE_RTOL, atol=1e-13)
    assert np.allclose(back, X, rtol=AFFINE_RTOL)


def test_split_is_a_seeded_partition_with_the_test_fraction_rounded_up():
    X = np.arange(30.0).reshape(10, 3)
    y = np.arange(10)
    X_train, y_train, X_test, y_test = _split(X, y, 0.25, random_state=3)
    assert len(X_test) == 3 and len(X_train) == 7  # ceil(0.25 * 10)
    assert sorted(np.concatenate([y_train, y_test]).tolist()) == list(range(10))
    assert np.array_equal(np.concatenate([X_train, X_test]), X[np.r_[y_train, y_test]])
    again = _split(X, y, 0.25, random_state=3)
    assert np.array_equal(again[3], y_test)
    with pytest.raises(DataError, match="leaves no training samples out of 2"):
        _split(X[:2], y[:2], 0.9, random_state=0)
