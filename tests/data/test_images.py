"""polynet.data.images: IDX files against an independent reader, MNIST splits, downloads, digits."""

import gzip
import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest

from polynet import data
from polynet.data import images

MNIST_T10K = Path(__file__).resolve().parents[3] / "shared" / "data" / "mnist-t10k"
needs_mnist = pytest.mark.skipif(
    not (MNIST_T10K / "t10k-images-idx3-ubyte.gz").is_file(),
    reason="the MNIST t10k files are not in ../shared/data/mnist-t10k",
)


def test_digits_seeded_split():
    digits = data.load("digits", test_size=0.25)
    assert digits.n_classes == 10 and digits.X_train.shape[1] == 64
    assert digits.y_train.dtype == np.int64 and len(digits.X_test) == 450


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
            md5[name] = images._IDX_MD5["mnist"][f"t10k-{kind}-ubyte.gz"]
    monkeypatch.setitem(images._IDX_MIRRORS, "mnist", [mirror.as_uri() + "/"])
    monkeypatch.setitem(images._IDX_MD5, "mnist", md5)
    target = tmp_path / "cache"
    ds = data.load_mnist(target, download=True)
    assert ds.X_train.shape == (10000, 784) and ds.X_test.shape == (10000, 784)
    assert sorted(p.name for p in target.iterdir()) == sorted(md5)  # no partial files


def test_fetch_writes_whole_verified_files_or_nothing(tmp_path):
    payload = bytes(range(256)) * 4096  # 1 MiB: more than one read of the download loop
    source = tmp_path / "mirror" / "file.gz"
    source.parent.mkdir()
    source.write_bytes(payload)
    cache = tmp_path / "cache"
    cache.mkdir()
    target = cache / "file.gz"
    images._fetch(source.as_uri(), target, hashlib.md5(payload).hexdigest())
    assert target.read_bytes() == payload
    wrong = cache / "wrong.gz"
    with pytest.raises(ValueError, match="differs from the expected 0+"):
        images._fetch(source.as_uri(), wrong, "0" * 32)
    missing = cache / "missing.gz"
    with pytest.raises(OSError):
        images._fetch((tmp_path / "mirror" / "absent.gz").as_uri(), missing, "0" * 32)
    assert [p.name for p in cache.iterdir()] == ["file.gz"]  # no partial or temporary files
