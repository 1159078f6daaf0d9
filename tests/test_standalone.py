"""The polynomial without polynet: ONNX, the NumPy file, rationals, scaling, float32 condition."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import warnings
from fractions import Fraction

import numpy as np
import pytest
import torch

import polynet
from polynet import cli, export, training
from polynet.data import load
from polynet.errors import PolynetWarning
from polynet.model_source import points, resolve
from polynet.standalone import FLOAT32_LOSS_LIMIT, numpy_source, raw_units_condition, to_onnx

#: Exports evaluate the same float64 coefficients in another order: agree to this, relative.
EXPORT_TOL = 1e-12


@pytest.fixture(scope="module")
def poly():
    torch.manual_seed(3)
    net = polynet.SLNN(3, [5, 4], [3, 2], out_features=2).eval()
    return polynet.expand(net)


def _points(n=40, d=3):
    return np.random.RandomState(0).uniform(-2, 2, size=(n, d))


def _rel(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return float(np.abs(a - b).max() / np.abs(b).max())


def test_onnx_graph_equals_the_polynomial(poly):
    ort = pytest.importorskip("onnxruntime")
    model = to_onnx(poly)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    x = _points()
    (y,) = session.run(None, {"x": x})
    assert y.dtype == np.float64 and y.shape == (40, 2)
    assert _rel(y, poly(x)) < EXPORT_TOL


def test_numpy_file_runs_without_polynet_and_equals_the_polynomial(poly, tmp_path):
    (tmp_path / "polynomial_numpy.py").write_text(numpy_source(poly))
    x = _points()
    np.save(tmp_path / "x.npy", x)
    script = (
        "import sys\n"
        # polynet and torch are made unimportable: the file must need numpy only.
        "for name in ('polynet', 'torch'): sys.modules[name] = None\n"
        f"sys.path.insert(0, {str(tmp_path)!r})\n"
        "import numpy as np, polynomial_numpy as p\n"
        f"x = np.load({str(tmp_path / 'x.npy')!r})\n"
        f"np.save({str(tmp_path / 'y.npy')!r}, p.polynomial(x))\n"
        "print(sorted(m for m in ('polynet', 'torch') if sys.modules.get(m) is not None))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
    assert _rel(np.load(tmp_path / "y.npy"), poly(x)) < EXPORT_TOL


def test_numpy_predict_applies_the_recorded_scaling(poly):
    meta = {
        "dataset": {
            "scaler": {"mean": [1.0, -2.0, 0.5], "scale": [2.0, 4.0, 0.5]},
            "target_scaler": {"mean": 10.0, "scale": 3.0},
        }
    }
    namespace: dict = {}
    exec(numpy_source(poly, meta), namespace)
    features = _points() * 3 + 1
    x = (features - np.array([1.0, -2.0, 0.5])) / np.array([2.0, 4.0, 0.5])
    expected = poly(x) * 3.0 + 10.0
    assert _rel(namespace["predict"](features), expected) < EXPORT_TOL


def test_exact_csv_holds_the_rationals(tmp_path):
    torch.manual_seed(0)
    net = polynet.SLNN(2, [3], 2).eval()
    exact = polynet.expand(net, exact=True)
    export.write_bundle(exact, tmp_path)
    with open(tmp_path / "coefficients.csv", newline="") as fh:
        rows = list(csv.reader(fh))
    fractions = exact.exact_coefficients
    for row in rows[1:]:
        exps = tuple(int(e) for e in row[:2])
        column = next(i for i, e in enumerate(exact.exponents.tolist()) if tuple(e) == exps)
        assert Fraction(row[2]) == fractions[0, column]
    assert "/" in rows[1][2]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["coefficients_csv"] == "p/q rationals"


def test_latex_top_keeps_top_terms(tmp_path, capsys):
    out = tmp_path / "run"
    cli.main(
        ["train", "--dataset", "xor", "--hidden", "3", "--degrees", "2", "--epochs", "1"]
        + ["--no-progress", "--out", str(out)]
    )
    tex = tmp_path / "p.tex"
    assert cli.main(["expand", str(out), "--no-progress", "--latex", str(tex), "--top", "3"]) == 0
    lines = tex.read_text().splitlines()
    poly = polynet.expand(polynet.load(out))
    assert len(lines) == poly.n_outputs
    for o, line in enumerate(lines):
        # 3 terms: two signs between them, and one before the note on the rest
        assert line.count(" + ") + line.count(" - ") == 3
        assert f"({poly.n_terms_per_output()[o] - 3} more terms)" in line


def test_condition_of_a_benign_polynomial_does_not_warn(poly):
    x = _points()
    condition = raw_units_condition(poly, x.min(0), x.max(0), 1.0, x)
    assert condition.float32_measured < FLOAT32_LOSS_LIMIT
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        condition.warn()


def test_raw_units_float32_warning_on_the_boston_demo_network(tmp_path):
    # The demo network of `make demo` (13 -> 16 -> 8 -> 1, degrees 4 and 2, cosine schedule),
    # trained for 60 of its 300 epochs: its raw-unit coefficients already cancel.
    ds = load("boston").standardize(targets=True)
    torch.manual_seed(0)
    net = polynet.SLNN(13, [16, 8], [4, 2], 1)
    options = training.FitOptions(
        epochs=60, lr=3e-3, schedule="cosine", threads=1, progress=False, out=tmp_path
    )
    training.fit(net, ds, options)
    source = resolve(tmp_path)
    raw = export.expand_raw_units(source, progress=False)
    X = points(source).X
    condition = export.raw_units_condition(raw, source, X)
    with pytest.warns(PolynetWarning, match="float32 evaluation .* is off by"):
        condition.warn()
    # independently: the raw-unit polynomial in float32 numpy against float64
    raw_x = ds.scaler.inverse_transform(X)[:64]
    namespace: dict = {}
    exec(numpy_source(raw, source.metadata), namespace)
    terms, coef = namespace["TERMS"], namespace["COEFFICIENTS"]
    x32 = raw_x.astype(np.float32)
    powers = x32[:, :, None] ** np.arange(terms.max() + 1, dtype=np.float32)
    mono = np.ones((len(x32), len(terms)), dtype=np.float32)
    for v in range(terms.shape[1]):  # 64 x 203,490 float32: 52 MB
        mono *= powers[:, v, terms[:, v]]
    y32 = mono @ coef.astype(np.float32)
    y64 = namespace["polynomial"](raw_x)
    assert np.abs(y32 - y64).max() / condition.output_scale > FLOAT32_LOSS_LIMIT
    # the standardised polynomial, the alternative the warning names, stays far below it
    std = polynet.expand(source.model, progress=False)
    assert raw_units_condition(std, X.min(0), X.max(0), 1.0, X[:256]).float32_measured < 1e-3
