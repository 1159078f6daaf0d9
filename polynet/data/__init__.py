"""Data sets and their splits: embedded, from scikit-learn, generated, and MNIST-style IDX files.

Every loader returns a :class:`Dataset`: float64 arrays with a fixed train/test split, the task,
the feature names, and the loader's name and arguments, so that a checkpoint can record where
its data came from and :func:`from_metadata` can load the same points again.

=================  ========================================================  ==============
name               what                                                      split
=================  ========================================================  ==============
``"boston"``       Boston housing, 13 features, target MEDV (embedded CSV)   Keras: 404/102
``"boston-no-b"``  the same without column B                                 Keras: 404/102
``"diabetes"``     scikit-learn's diabetes regression, 10 features           seeded
``"digits"``       scikit-learn's 8x8 digits, 10 classes                     seeded
``"spirals"``      the paper's two-spirals generator, 2 classes              seeded
``"xor"``          XOR on the square [-1, 1]², 2 classes                     seeded
``"sparse-poly"``  the paper's sparse polynomial regression, ``true_terms``  seeded
``"mnist"``        MNIST from IDX files (local or downloaded), 10 classes    official
``"fashion-mnist"`` Fashion-MNIST from IDX files, 10 classes                  official
``"file"``         your CSV/NPZ/Parquet file, ``path=`` and ``target=``      seeded
=================  ========================================================  ==============

The modules, one job each: :mod:`~polynet.data.dataset` (the :class:`Dataset` type),
:mod:`~polynet.data.preprocessing` (:class:`Standardizer`, the seeded split),
:mod:`~polynet.data.tabular` (Boston, diabetes), :mod:`~polynet.data.synthetic` (spirals, XOR,
sparse polynomials), :mod:`~polynet.data.images` (IDX files, MNIST, Fashion-MNIST, digits) and
:mod:`~polynet.data.registry` (loading by name and from checkpoint metadata).

Examples
--------
>>> ds = load("boston").standardize(targets=True)
>>> ds
Dataset('boston', regression, 13 features, 404 train / 102 test, standardized inputs+targets)
>>> float(ds.target_scaler.inverse_transform(ds.y_train[:1])[0])
15.2
"""

from __future__ import annotations

from polynet.data.dataset import Dataset
from polynet.data.dataset import Task as Task
from polynet.data.files import load_file, read_table
from polynet.data.images import load_digits, load_fashion_mnist, load_mnist, read_idx
from polynet.data.preprocessing import Standardizer
from polynet.data.registry import LOADERS, from_metadata, load
from polynet.data.synthetic import sparse_polynomial, two_spirals, xor
from polynet.data.tabular import load_boston, load_diabetes

__all__ = [
    "Dataset",
    "Standardizer",
    "load",
    "load_boston",
    "load_diabetes",
    "load_digits",
    "two_spirals",
    "xor",
    "sparse_polynomial",
    "load_mnist",
    "load_fashion_mnist",
    "read_idx",
    "read_table",
    "load_file",
    "from_metadata",
    "LOADERS",
]
