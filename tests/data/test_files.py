"""Data files: what is read, and the messages for files a model cannot take."""

from __future__ import annotations

import numpy as np
import pytest

from polynet.data import from_metadata, load, read_table
from polynet.errors import DataError


def _csv(tmp_path, text: str):
    path = tmp_path / "d.csv"
    path.write_text(text)
    return path


def test_csv_reads_features_and_target_by_name(tmp_path):
    path = _csv(tmp_path, "a,b,y\n1,2,3\n4,5.5,9\n")
    table = read_table(path, "y")
    np.testing.assert_array_equal(table.X, [[1, 2], [4, 5.5]])
    np.testing.assert_array_equal(table.y, [3, 9])
    assert table.feature_names == ["a", "b"] and table.n_dropped == 0


def test_missing_target_column_names_the_columns(tmp_path):
    path = _csv(tmp_path, "a,b,y\n1,2,3\n")
    with pytest.raises(DataError, match=r"has no column 'price' \(--target\); its columns are"):
        read_table(path, "price")


def test_non_numeric_cell_names_row_and_column(tmp_path):
    path = _csv(tmp_path, "a,b,y\n1,2,3\n4,red,9\n")
    with pytest.raises(DataError, match=r"row 3, column 'b' holds 'red', which is not a number"):
        read_table(path, "y")


def test_nan_rows_are_counted_and_dropped(tmp_path):
    path = _csv(tmp_path, "a,b,y\n1,2,3\n4,,9\nnan,1,1\n2,2,2\n")
    table = read_table(path, "y")
    assert table.n_dropped == 2 and len(table.X) == 2
    with pytest.raises(
        DataError, match="has 2 row\\(s\\) with missing values \\(NaN\\), the first"
    ):
        read_table(path, "y", dropna=False)


def test_ragged_row_is_refused(tmp_path):
    path = _csv(tmp_path, "a,b,y\n1,2,3\n4,5\n")
    with pytest.raises(DataError, match="row 3 has 2 cells but the header has 3"):
        read_table(path, "y")


def test_npz_with_x_and_y(tmp_path):
    path = tmp_path / "d.npz"
    X = np.arange(12.0).reshape(6, 2)
    np.savez(path, X=X, y=X.sum(1))
    table = read_table(path, "y")
    np.testing.assert_array_equal(table.X, X)
    assert table.feature_names == ["x0", "x1"]
    np.savez(tmp_path / "bad.npz", features=X)
    with pytest.raises(DataError, match="has no array 'X'"):
        read_table(tmp_path / "bad.npz", "y")


def test_parquet_when_pandas_reads_it(tmp_path):
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame({"a": [1.0, 2.0, 3.0], "y": [2.0, 4.0, 6.0]})
    path = tmp_path / "d.parquet"
    try:
        frame.to_parquet(path)
    except ImportError:
        with pytest.raises(DataError, match="needs a Parquet engine|needs pandas"):
            path.write_bytes(b"PAR1")
            read_table(path, "y")
        return
    np.testing.assert_array_equal(read_table(path, "y").X, [[1.0], [2.0], [3.0]])


def test_unknown_suffix(tmp_path):
    path = tmp_path / "d.xlsx"
    path.write_bytes(b"x")
    with pytest.raises(DataError, match="unknown data file type '.xlsx'"):
        read_table(path)


def test_file_loader_round_trips_through_metadata(tmp_path):
    rng = np.random.RandomState(1)
    rows = np.column_stack([rng.randn(30, 2), rng.randn(30)])
    path = tmp_path / "d.csv"
    np.savetxt(path, rows, delimiter=",", header="p,q,t", comments="")
    ds = load("file", path=str(path), target="t").standardize(targets=True)
    again = from_metadata({"dataset": ds.to_metadata()})
    np.testing.assert_array_equal(again.X_test, ds.X_test)
    np.testing.assert_array_equal(again.y_train, ds.y_train)
    assert again.feature_names == ["p", "q"] and len(ds.X_train) == 24
