"""polynet expand / polynet verify, end to end on a small trained checkpoint."""

import json

import numpy as np
import pytest
import torch

from polynet import SLNN, NetworkPolynomial, data
from polynet.checkpoint import load, save
from polynet.cli import main

from .poly.test_expand import with_running_stats


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """An SLNN on standardised Boston data, saved with the metadata training would write."""
    ds = data.load("boston").standardize(targets=True)
    net = with_running_stats(SLNN(13, [6, 4], [2, 2]), 13, 0)
    path = tmp_path_factory.mktemp("ckpt") / "model.safetensors"
    save(net, path, metadata={"dataset": ds.to_metadata()})
    return path


def test_expand_prints_the_facts_and_writes_the_bundle(checkpoint, tmp_path, capsys):
    out = tmp_path / "bundle"
    assert main(["expand", str(checkpoint), "--out", str(out), "--top", "3", "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "degree       4 (bound D = 4)" in text
    assert "terms        2,380 non-zero of C(n+D, D) = 2,380" in text
    assert "monomials C(13+4, 4)" in text
    assert sorted(p.name for p in out.iterdir()) == [
        "coefficients.csv",
        "polynomial.npz",
        "polynomial.onnx",
        "polynomial.tex",
        "polynomial_numpy.py",
        "summary.json",
    ]
    poly = NetworkPolynomial.load(out / "polynomial.npz")
    model = load(checkpoint)
    x = torch.randn(10, 13, dtype=torch.float64)
    torch.testing.assert_close(poly(x), model.double()(x), rtol=1e-10, atol=1e-12)
    table = np.genfromtxt(out / "coefficients.csv", delimiter=",", names=True)
    assert len(table) == 2380
    np.testing.assert_allclose(table["coefficient_0"], poly.coefficients[0].numpy())
    assert json.loads((out / "summary.json").read_text())["degree_bound"] == 4


def test_verify_passes_on_the_checkpoint_data_and_fails_on_a_wrong_polynomial(
    checkpoint, tmp_path, capsys
):
    main(["expand", str(checkpoint), "--out", str(tmp_path / "p.npz"), "--no-progress"])
    assert main(["verify", str(checkpoint), "--poly", str(tmp_path / "p.npz")]) == 0
    assert "506 from the data" in capsys.readouterr().out
    wrong = NetworkPolynomial.load(tmp_path / "p.npz") * 1.01
    wrong.save(tmp_path / "wrong.npz")
    assert main(["verify", str(checkpoint), "--poly", str(tmp_path / "wrong.npz")]) == 1
    assert "FAILED" in capsys.readouterr().out


def test_raw_units_polynomial_uses_feature_names_and_verifies(checkpoint, tmp_path, capsys):
    out = tmp_path / "raw"
    assert main(["expand", str(checkpoint), "--raw-units", "--out", str(out), "--no-progress"]) == 0
    poly = NetworkPolynomial.load(out / "polynomial.npz")
    assert poly.variables[:3] == ("CRIM", "ZN", "INDUS")
    assert main(["verify", str(checkpoint), "--poly", str(out)]) == 0
    assert r"\mathrm{CRIM}" in (out / "polynomial.tex").read_text()


def test_slice_from_the_command_line(checkpoint, tmp_path, capsys):
    out = tmp_path / "slice.json"
    args = ["expand", str(checkpoint), "--inputs", "5", "12", "--out", str(out), "--no-progress"]
    assert main(args) == 0
    poly = NetworkPolynomial.load(out)
    assert poly.variables == ("RM", "LSTAT") and poly.max_terms == 15  # feature names
    assert main(["verify", str(checkpoint), "--poly", str(out)]) == 0


def test_expand_refuses_a_relu_network_with_the_layer_named(tmp_path, capsys):
    from polynet import HybridNet

    path = tmp_path / "relu.safetensors"
    save(HybridNet(3, [4], "relu").eval(), path)
    assert main(["expand", str(path), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert (
        "cannot expand model[2] (ReLU): ReLU is not a polynomial; replace it with an SLAF "
        "or expand model[:2]." in err
    )


def test_expand_degree_at_a_test_row_says_what_it_prints(checkpoint, capsys):
    assert main(["expand", str(checkpoint), "--degree", "2", "--at", "test:0", "--top", "2"]) == 0
    text = capsys.readouterr().out
    assert "this is      the network's Taylor polynomial of degree 2 at x0, in u = x - x0" in text
    assert "terms        105 non-zero of C(n+q, q) = C(13+2, 2) = 105" in text
    ds = data.load("boston").standardize(targets=True)
    local = __import__("polynet").expand(load(checkpoint), degree=2, at=ds.X_test[0])
    top = local.terms(top=1)[0]
    assert f"{top.coefficient:+.6e}  {top.monomial}" in text
