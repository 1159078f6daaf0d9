"""polynet.data.synthetic: two spirals, XOR and sparse polynomials against their definitions."""

import numpy as np
import pytest

from polynet import data
from polynet.errors import DataError


def test_two_spirals_are_mirror_images():
    ds = data.two_spirals(200, noise=0.0, random_state=2)
    X = np.concatenate([ds.X_train, ds.X_test])
    y = np.concatenate([ds.y_train, ds.y_test])
    a, b = X[y == 0], X[y == 1]
    assert len(a) == len(b) == 100
    key = lambda P: P[np.lexsort(P.T)]  # noqa: E731
    assert np.allclose(key(a), key(-b))
    # Without noise a point at angle t lies at radius t (t up to 780 degrees).
    assert np.linalg.norm(a, axis=1).max() <= np.deg2rad(780)


def test_xor_labels_follow_the_signs():
    ds = data.xor(100, noise=0.0, random_state=5)
    X, y = ds.X_train, ds.y_train
    assert np.array_equal(y, (np.sign(X[:, 0]) != np.sign(X[:, 1])).astype(int))
    assert ds.n_classes == 2


def test_sparse_polynomial_targets_are_the_true_polynomial():
    ds = data.sparse_polynomial(300, n_features=6, degree=3, n_terms=5, random_state=7)
    assert sum(ds.true_terms.values()) == 5
    assert all(len(e) == 6 and sum(e) == 3 for e in ds.true_terms)
    for X, y in ((ds.X_train, ds.y_train), (ds.X_test, ds.y_test)):
        reference = sum(c * np.prod(X ** np.array(e), axis=1) for e, c in ds.true_terms.items())
        assert np.allclose(y, reference)
    assert len(ds.X_test) == 150  # the paper's half/half split


# --- IDX / MNIST ----------------------------------------------------------------------------


def test_counts_accept_numpy_integers_and_refuse_bools():
    ds = data.sparse_polynomial(np.int64(20), n_features=np.int32(3), degree=np.int64(2))
    assert ds.X_train.shape[1] == 3 and ds.params["n_features"] == 3
    assert type(ds.params["n_features"]) is int  # JSON-ready for a checkpoint
    with pytest.raises(DataError, match="degree must be an integer >= 1, got True"):
        data.sparse_polynomial(20, degree=True)
