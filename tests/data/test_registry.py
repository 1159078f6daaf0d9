"""polynet.data.registry: every loader by name, and reloading from checkpoint metadata."""

import json

import numpy as np

from polynet import data
from polynet.data import Dataset


def test_from_metadata_reloads_the_same_points():
    ds = data.load("spirals", n_samples=60, noise=0.2, random_state=4).standardize()
    meta = json.loads(json.dumps({"dataset": ds.to_metadata()}))  # as a checkpoint stores it
    again = data.from_metadata(meta)
    assert again.name == "spirals" and again.params == ds.params
    for field in ("X_train", "y_train", "X_test", "y_test"):
        assert np.array_equal(getattr(again, field), getattr(ds, field))


def test_registry_names_every_loader():
    assert sorted(data.LOADERS) == [
        "boston",
        "boston-no-b",
        "diabetes",
        "digits",
        "fashion-mnist",
        "file",
        "mnist",
        "sparse-poly",
        "spirals",
        "xor",
    ]
    assert isinstance(data.load("Sparse_Poly", n_samples=10), Dataset)
