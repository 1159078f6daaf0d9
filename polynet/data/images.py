"""Image data: IDX files (MNIST, Fashion-MNIST; local or downloaded) and scikit-learn's digits.

:func:`read_idx` reads one IDX file, gzipped or not; :func:`load_mnist` and
:func:`load_fashion_mnist` find the four files in a directory (or fetch them, MD5-verified,
written atomically) and use the official split, or split a lone pair themselves.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import os
import urllib.error
import urllib.request
import zlib
from pathlib import Path

import numpy as np

from polynet.atomic import atomic_write
from polynet.data.dataset import Dataset
from polynet.data.preprocessing import _split
from polynet.data.tabular import _sklearn_datasets
from polynet.errors import DataError

__all__ = ["read_idx", "load_mnist", "load_fashion_mnist", "load_digits"]

logger = logging.getLogger(__name__)


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
        except (OSError, EOFError, zlib.error) as exc:  # zlib.error: damaged deflate data
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
    # atomic_write renames the file into place only when the block ends without an error, so
    # a failed, interrupted or corrupt (MD5) download never leaves a file under the real name.
    digest = hashlib.md5()
    with (
        atomic_write(target, suffix=".part") as out,
        urllib.request.urlopen(url, timeout=60) as response,
    ):
        while chunk := response.read(1 << 20):
            digest.update(chunk)
            out.write(chunk)
        if digest.hexdigest() != md5:
            raise ValueError(f"MD5 {digest.hexdigest()} differs from the expected {md5}")


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


def load_digits(*, test_size: float = 0.2, random_state: int = 0) -> Dataset:
    """scikit-learn's 8x8 handwritten digits (1,797 images, pixel values 0..16), seeded split.

    Inputs are flattened to 64 features. Needs scikit-learn (``pip install
    "polynet-slaf[sklearn]"``).

    Parameters
    ----------
    test_size : float, default=0.2
        Fraction of samples in the test split.
    random_state : int, default=0
        Seed of the split.
    """
    raw = _sklearn_datasets("digits").load_digits()
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
