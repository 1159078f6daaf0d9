"""Data of your own from a file: CSV with a header, NPZ with ``X``/``y``, or Parquet.

:func:`read_table` reads the features and (optionally) the target column of a file and refuses
what a model cannot take with a :class:`~polynet.errors.DataError` that names the file, the
column and the row: a missing column, a cell that is not a number, rows with NaN (counted).
:func:`load_file` makes a :class:`Dataset` of it with a seeded train/test split; it is the
``"file"`` loader of the registry, so a checkpoint trained on a file records the path and the
target and :func:`~polynet.data.from_metadata` reads the same points again.

Examples
--------
>>> import tempfile, pathlib
>>> with tempfile.TemporaryDirectory() as tmp:
...     path = pathlib.Path(tmp) / "d.csv"
...     _ = path.write_text("a,b,y\\n1,2,3\\n4,5,9\\n7,8,15\\n2,2,4\\n3,1,4\\n")
...     ds = load_file(path, target="y", test_size=0.4)
>>> ds.feature_names, ds.X_train.shape, ds.X_test.shape
(['a', 'b'], (3, 2), (2, 2))
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from polynet.data.dataset import Dataset
from polynet.data.preprocessing import _split
from polynet.errors import DataError

__all__ = ["Table", "read_table", "load_file", "SUFFIXES"]

#: The file suffixes :func:`read_table` reads.
SUFFIXES = (".csv", ".npz", ".parquet", ".pq")


@dataclass(frozen=True)
class Table:
    """Features (and a target) read from a file.

    Attributes
    ----------
    X : ndarray of shape (n, n_features), float64
    y : ndarray of shape (n,) or None
        The target column, None when no target was asked for.
    feature_names : list of str
    target_name : str or None
    n_dropped : int
        Rows dropped because they held NaN (``dropna=True``).
    """

    X: np.ndarray
    y: np.ndarray | None
    feature_names: list[str]
    target_name: str | None
    n_dropped: int = 0


def _columns_csv(path: Path) -> tuple[list[str], list[list[str]]]:
    with path.open(newline="", encoding="utf-8-sig") as fh:
        rows = list(csv.reader(fh))
    if not rows:
        raise DataError(f"{str(path)!r} is empty; a CSV needs a header row and data rows.")
    header = [h.strip() for h in rows[0]]
    body = [r for r in rows[1:] if any(cell.strip() for cell in r)]
    for i, r in enumerate(body):
        if len(r) != len(header):
            raise DataError(
                f"{str(path)!r} row {i + 2} has {len(r)} cells but the header has "
                f"{len(header)}; every row needs one cell per column."
            )
    return header, body


def _numbers_csv(path: Path, header: list[str], body: list[list[str]], cols: list[str]):
    out = np.empty((len(body), len(cols)), dtype=np.float64)
    where = [header.index(c) for c in cols]
    for i, r in enumerate(body):
        for j, k in enumerate(where):
            cell = r[k].strip()
            if cell == "" or cell.lower() in ("nan", "na", "null"):
                out[i, j] = np.nan
                continue
            try:
                out[i, j] = float(cell)
            except ValueError:
                raise DataError(
                    f"{str(path)!r} row {i + 2}, column {cols[j]!r} holds {cell!r}, which is not "
                    "a number; polynomial models take numeric features only: encode or drop "
                    "that column (--features)."
                ) from None
    return out


def _frame_parquet(path: Path) -> Any:
    try:
        import pandas as pd
    except ImportError as exc:
        raise DataError(
            f"reading {str(path)!r} needs pandas (and pyarrow or fastparquet): "
            'pip install "pandas[parquet]", or save the data as CSV or NPZ.'
        ) from exc
    try:
        return pd.read_parquet(path)
    except ImportError as exc:
        raise DataError(
            f"reading {str(path)!r} needs a Parquet engine ({exc}); pip install pyarrow, or "
            "save the data as CSV or NPZ."
        ) from exc


def _pick(path: Path, header: list[str], target: str | None, features: list[str] | None):
    for name in [target] if target is not None else []:
        if name not in header:
            raise DataError(
                f"{str(path)!r} has no column {name!r} (--target); its columns are {header}."
            )
    if features is None:
        features = [h for h in header if h != target]
    missing = [f for f in features if f not in header]
    if missing:
        raise DataError(
            f"{str(path)!r} has no column(s) {missing} (--features); its columns are {header}."
        )
    if not features:
        raise DataError(f"{str(path)!r} has no feature columns besides the target {target!r}.")
    return features


def read_table(
    path: str | os.PathLike[str],
    target: str | None = None,
    *,
    features: list[str] | None = None,
    dropna: bool = True,
) -> Table:
    """Read features and a target column from a CSV, NPZ or Parquet file.

    Parameters
    ----------
    path : str or path-like
        ``.csv`` (a header row, then one row per sample), ``.npz`` (arrays ``X`` of shape
        (n, n_features) and optionally ``y``; feature names from an optional ``feature_names``
        array) or ``.parquet`` (needs pandas).
    target : str, optional
        The target column (for an NPZ: ``"y"``). None reads features only.
    features : list of str, optional
        The feature columns (default: every column but the target).
    dropna : bool, default=True
        Drop rows holding NaN (counted in ``n_dropped``); otherwise they are refused.

    Raises
    ------
    DataError
        A missing file or column, a non-numeric cell (row and column named), no rows left.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"no data file at {str(path)!r}; check the path (--data).")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        header, body = _columns_csv(path)
        features = _pick(path, header, target, features)
        X = _numbers_csv(path, header, body, features)
        y = None if target is None else _numbers_csv(path, header, body, [target])[:, 0]
    elif suffix == ".npz":
        with np.load(path, allow_pickle=False) as z:
            if "X" not in z:
                raise DataError(
                    f"{str(path)!r} has no array 'X' (it holds {sorted(z.files)}); an NPZ data "
                    "file needs X of shape (n_samples, n_features) and optionally y."
                )
            X = np.asarray(z["X"], dtype=np.float64)
            names = [str(s) for s in z["feature_names"]] if "feature_names" in z else None
            y = None
            if target is not None:
                if target not in z:
                    raise DataError(
                        f"{str(path)!r} has no array {target!r} (--target); it holds "
                        f"{sorted(z.files)}."
                    )
                y = np.asarray(z[target], dtype=np.float64).reshape(-1)
        if X.ndim != 2:
            raise DataError(f"{str(path)!r}: X has shape {X.shape}; it must be 2-D (n, features).")
        all_names = names or [f"x{i}" for i in range(X.shape[1])]
        if features is not None:
            features = _pick(path, all_names, None, features)
            X = X[:, [all_names.index(f) for f in features]]
        else:
            features = all_names
        if y is not None and len(y) != len(X):
            raise DataError(f"{str(path)!r}: X has {len(X)} rows but {target} has {len(y)}.")
    elif suffix in (".parquet", ".pq"):
        frame = _frame_parquet(path)
        header = [str(c) for c in frame.columns]
        features = _pick(path, header, target, features)
        for col in features + ([target] if target else []):
            if not np.issubdtype(frame[col].dtype, np.number):
                raise DataError(
                    f"{str(path)!r} column {col!r} has type {frame[col].dtype}, not numbers; "
                    "encode or drop it (--features)."
                )
        X = frame[features].to_numpy(np.float64)
        y = None if target is None else frame[target].to_numpy(np.float64)
    else:
        raise DataError(
            f"{str(path)!r}: unknown data file type {suffix!r}; polynet reads {list(SUFFIXES)}."
        )
    bad = np.isnan(X).any(1) | (np.isnan(y) if y is not None else False)
    n_bad = int(bad.sum())
    if n_bad and not dropna:
        first = int(np.flatnonzero(bad)[0])
        raise DataError(
            f"{str(path)!r} has {n_bad} row(s) with missing values (NaN), the first is data row "
            f"{first + 1}; fill or drop them."
        )
    if n_bad:
        X, y = X[~bad], (None if y is None else y[~bad])
    if len(X) == 0:
        raise DataError(f"{str(path)!r} has no complete rows ({n_bad} dropped for missing values).")
    return Table(X, y, list(features), target, n_bad)


def load_file(
    path: str | os.PathLike[str],
    target: str,
    *,
    features: list[str] | None = None,
    task: str = "regression",
    test_size: float = 0.2,
    random_state: int = 0,
) -> Dataset:
    """A :class:`Dataset` from a data file (:func:`read_table`), split with a seed.

    Parameters
    ----------
    path : str or path-like
        The file (CSV, NPZ or Parquet).
    target : str
        The target column.
    features : list of str, optional
        The feature columns (default: all others).
    task : {"regression", "classification"}, default="regression"
        Classification targets must be integer labels 0..C-1.
    test_size : float, default=0.2
        Fraction of the rows in the test split.
    random_state : int, default=0
        Seed of the split.
    """
    table = read_table(path, target, features=features)
    y = table.y
    n_classes = None
    if task == "classification":
        if not np.all(y == np.round(y)) or y.min() < 0:
            raise DataError(
                f"{str(path)!r} column {target!r} holds non-integer or negative values; "
                "classification needs class labels 0..C-1."
            )
        y = y.astype(np.int64)
        n_classes = int(y.max()) + 1
    if len(y) < 2:
        raise DataError(f"{str(path)!r} has {len(y)} complete row(s); a split needs at least 2.")
    parts = _split(table.X, y, test_size, random_state)
    note = f" ({table.n_dropped} rows with NaN dropped)" if table.n_dropped else ""
    return Dataset(
        "file",
        *parts,
        task=task,  # type: ignore[arg-type]
        feature_names=table.feature_names,
        n_classes=n_classes,
        description=f"{Path(path).name}, target {target!r}{note}.",
        params={
            "path": str(Path(path).resolve()),
            "target": target,
            "features": features,
            "task": task,
            "test_size": test_size,
            "random_state": random_state,
        },
    )
