import csv
import gzip
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from polynet import data
from polynet.data import Dataset, Standardizer

MNIST_T10K = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist-t10k"
needs_mnist = pytest.mark.skipif(
    not (MNIST_T10K / "t10k-images-idx3-ubyte.gz").is_file(),
    reason="the MNIST t10k files are not in ../shared/data/mnist-t10k",
)

#: float64 agreement of two routes through the same affine map.
AFFINE_RTOL = 1e-12


def _boston_csv() -> tuple[list[str], np.ndarray]:
    """The embedded CSV read with the csv module, as an independent reference."""
    path = Path(data.__file__).parent / "datasets" / "boston_house_prices.csv"
    with path.open() as f:
        rows = list(csv.reader(f))
    return rows[0], np.array(rows[1:], dtype=float)


# --- Boston ---------------------------------------------------------------------------------


def test_boston_keras_split_facts():
    ds = data.load_boston()
    assert ds.X_train.shape == (404, 13) and ds.X_test.shape == (102, 13)
    assert ds.y_train[0] == 15.2 and ds.y_test[0] == 7.2
    assert ds.task == "regression" and ds.n_classes is None
    header, table = _boston_csv()
    assert ds.feature_names == header[:-1]
    # Every row is a CSV row, each used once: the split is a permutation of the file.
    together = np.concatenate([np.c_[ds.X_train, ds.y_train], np.c_[ds.X_test, ds.y_test]])
    assert np.array_equal(np.sort(together, axis=0), np.sort(table, axis=0))
    assert ds.X_train.dtype == np.float64 and "Black" in ds.description


def test_boston_without_b_is_the_same_experiment():
    full, no_b = data.load_boston(), data.load("boston-no-b")
    assert no_b.name == "boston-no-b" and no_b.X_train.shape == (404, 12)
    assert "B" not in no_b.feature_names
    b = full.feature_names.index("B")
    assert np.array_equal(np.delete(full.X_train, b, axis=1), no_b.X_train)
    assert np.array_equal(full.y_test, no_b.y_test)


# --- Standardizer ---------------------------------------------------------------------------


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


def test_standardize_uses_training_statistics_only():
    raw = data.load_boston()
    ds = raw.standardize(targets=True)
    assert np.allclose(ds.X_train.mean(axis=0), 0) and not np.allclose(ds.X_test.mean(axis=0), 0)
    assert np.allclose(ds.scaler.mean_, raw.X_train.mean(axis=0))
    assert np.allclose(ds.target_scaler.inverse_transform(ds.y_test), raw.y_test)
    assert raw.scaler is None  # standardize returns a new data set


def test_from_metadata_reloads_the_same_points():
    ds = data.load("spirals", n_samples=60, noise=0.2, random_state=4).standardize()
    meta = json.loads(json.dumps({"dataset": ds.to_metadata()}))  # as a checkpoint stores it
    again = data.from_metadata(meta)
    assert again.name == "spirals" and again.params == ds.params
    for field in ("X_train", "y_train", "X_test", "y_test"):
        assert np.array_equal(getattr(again, field), getattr(ds, field))


# --- scikit-learn data ----------------------------------------------------------------------


def test_diabetes_and_digits_seeded_splits():
    diabetes = data.load_diabetes()
    assert diabetes.X_train.shape == (353, 10) and diabetes.X_test.shape == (89, 10)
    assert np.array_equal(diabetes.X_test, data.load_diabetes().X_test)
    assert not np.array_equal(diabetes.X_test, data.load_diabetes(random_state=1).X_test)
    digits = data.load("digits", test_size=0.25)
    assert digits.n_classes == 10 and digits.X_train.shape[1] == 64
    assert digits.y_train.dtype == np.int64 and len(digits.X_test) == 450


# --- generated data -------------------------------------------------------------------------


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


def _reference_idx(path: Path) -> np.ndarray:
    raw = gzip.decompress(path.read_bytes())
    ndim = raw[3]
    shape = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw[4 + 4 * ndim :], dtype=np.uint8).reshape(shape)


@needs_mnist
def test_read_idx_gz_and_plain(tmp_path):
    gz = MNIST_T10K / "t10k-labels-idx1-ubyte.gz"
    labels = data.read_idx(gz)
    assert labels.shape == (10000,) and np.array_equal(labels, _reference_idx(gz))
    plain = tmp_path / "t10k-labels-idx1-ubyte"
    plain.write_bytes(gzip.decompress(gz.read_bytes()))
    assert np.array_equal(data.read_idx(plain), labels)


@needs_mnist
def test_mnist_test_files_only_are_split_into_train_and_test():
    ds = data.load_mnist(MNIST_T10K)
    assert ds.X_train.shape == (8000, 784) and ds.X_test.shape == (2000, 784)
    assert 0.0 <= ds.X_train.min() and ds.X_train.max() == 1.0
    assert set(np.unique(ds.y_train)) == set(range(10))
    images = _reference_idx(MNIST_T10K / "t10k-images-idx3-ubyte.gz")
    order = np.random.RandomState(0).permutation(10000)
    assert np.array_equal(ds.X_train[0], images[order[0]].reshape(-1) / 255.0)
    assert "only the test files" in ds.description
    square = data.load_mnist(MNIST_T10K, flatten=False, test_size=0.5)
    assert square.X_test.shape == (5000, 1, 28, 28)


@needs_mnist
def test_download_fetches_verifies_and_uses_the_official_split(tmp_path, monkeypatch):
    # A local "mirror" (file:// URLs) standing in for the network; the t10k files double as
    # the training files, with their MD5s.
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    md5 = {}
    for split in ("train", "t10k"):
        for kind in ("images-idx3", "labels-idx1"):
            name = f"{split}-{kind}-ubyte.gz"
            shutil.copy(MNIST_T10K / f"t10k-{kind}-ubyte.gz", mirror / name)
            md5[name] = data._IDX_MD5["mnist"][f"t10k-{kind}-ubyte.gz"]
    monkeypatch.setitem(data._IDX_MIRRORS, "mnist", [mirror.as_uri() + "/"])
    monkeypatch.setitem(data._IDX_MD5, "mnist", md5)
    target = tmp_path / "cache"
    ds = data.load_mnist(target, download=True)
    assert ds.X_train.shape == (10000, 784) and ds.X_test.shape == (10000, 784)
    assert sorted(p.name for p in target.iterdir()) == sorted(md5)  # no partial files


def test_registry_names_every_loader():
    assert sorted(data.LOADERS) == [
        "boston",
        "boston-no-b",
        "diabetes",
        "digits",
        "fashion-mnist",
        "mnist",
        "sparse-poly",
        "spirals",
        "xor",
    ]
    assert isinstance(data.load("Sparse_Poly", n_samples=10), Dataset)
