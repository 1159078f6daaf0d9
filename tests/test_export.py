"""polynet.export: raw-units folding and the export bundle, without the CLI."""

import csv
import json
from fractions import Fraction

import numpy as np
import pytest
import torch

from polynet import SLNN, NetworkPolynomial, data, expand, export
from polynet.checkpoint import load_checkpoint, save
from polynet.errors import DataError

from .poly.test_expand import with_running_stats


@pytest.fixture(scope="module")
def ds():
    return data.load("boston").standardize(targets=True)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, ds):
    net = with_running_stats(SLNN(13, [5, 3], [2, 2]), 13, 0)
    path = tmp_path_factory.mktemp("ckpt") / "model.safetensors"
    save(net, path, metadata={"dataset": ds.to_metadata()})
    return path


def test_raw_units_polynomial_equals_the_network_on_raw_features(checkpoint, ds):
    poly = export.expand_raw_units(checkpoint)
    ckpt = load_checkpoint(checkpoint)
    assert poly.raw_units and poly.variables[:2] == ("CRIM", "ZN")
    assert poly.n_network_parameters == sum(p.numel() for p in ckpt.model.parameters())
    raw = ds.scaler.inverse_transform(ds.X_test[:20])
    z = torch.as_tensor(ds.X_test[:20], dtype=torch.float64)
    want = ckpt.model.double()(z).detach().numpy()
    want = ds.target_scaler.inverse_transform(want) if ds.target_scaler is not None else want
    np.testing.assert_allclose(poly(raw), want, rtol=1e-8)


def test_raw_units_slice_names_the_sliced_features(checkpoint, ds):
    raw_mean = ds.scaler.inverse_transform(np.zeros((1, 13)))[0]
    poly = export.expand_raw_units(checkpoint, inputs=[5, 12], fixed=raw_mean)
    assert poly.variables == ("RM", "LSTAT") and poly.slice.inputs == (5, 12)


def test_raw_units_need_a_standardiser(tmp_path):
    path = tmp_path / "model.safetensors"
    save(SLNN(2, [3], [2]).eval(), path)
    with pytest.raises(DataError, match="records none"):
        export.raw_units_model(path)


def test_bundle_holds_the_polynomial_table_latex_and_summary(tmp_path):
    net = with_running_stats(SLNN(3, [4], [2], out_features=2), 3, 0)
    poly = expand(net, exact=True)
    written = export.write_bundle(poly, tmp_path / "bundle")
    assert sorted(p.name for p in written) == sorted(export.BUNDLE_FILES)
    assert NetworkPolynomial.load(tmp_path / "bundle" / "polynomial.npz") == poly
    with open(tmp_path / "bundle" / "coefficients.csv", newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["x0", "x1", "x2", "coefficient_0", "coefficient_1"]
    # an exact polynomial's CSV holds its rationals, p/q
    keep = poly.coefficients.numpy().any(0)
    got = [Fraction(r[4]) for r in rows[1:]]
    assert got == list(poly.exact_coefficients[1, keep])
    tex = (tmp_path / "bundle" / "polynomial.tex").read_text().splitlines()
    assert tex[0].startswith("p_{0}(x) = ") and tex[1].startswith("p_{1}(x) = ")
    facts = json.loads((tmp_path / "bundle" / "summary.json").read_text())
    assert facts.items() >= json.loads(json.dumps(export.summary(poly))).items()
    assert facts["scaling"]["inputs"] is None and facts["coefficients_csv"] == "p/q rationals"
    assert (
        facts["exact"] and facts["degree"] == poly.degree and facts["engine"] in ("flint", "sympy")
    )
    single = export.write_bundle(poly, tmp_path / "only.json")
    assert [p.name for p in single] == ["only.json"] and not list(tmp_path.glob(".*tmp"))
