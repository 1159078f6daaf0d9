"""polynet.data.tabular: Boston with the Keras split (with and without B), and diabetes."""

import csv
import importlib.resources

import numpy as np

from polynet import data


def _boston_csv() -> tuple[list[str], np.ndarray]:
    """The embedded CSV read with the csv module, as an independent reference."""
    path = importlib.resources.files("polynet") / "datasets" / "boston_house_prices.csv"
    with path.open() as f:
        rows = list(csv.reader(f))
    return rows[0], np.array(rows[1:], dtype=float)


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


def test_diabetes_seeded_split():
    diabetes = data.load_diabetes()
    assert diabetes.X_train.shape == (353, 10) and diabetes.X_test.shape == (89, 10)
    assert np.array_equal(diabetes.X_test, data.load_diabetes().X_test)
    assert not np.array_equal(diabetes.X_test, data.load_diabetes(random_state=1).X_test)
