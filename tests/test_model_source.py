"""Your own model, saved every way, through every command; your own data; what a file is.

The model is a class as a user writes it (shape checks in forward(), a registered buffer),
trained in its own loop, then saved with polynet.save (.pt2), torch.export.save (.pt2),
torch.onnx.export (.onnx) and torch.save of its state_dict (used as module:Class). Every
form must expand to the same polynomial as the network's float64 forward pass.
"""

from __future__ import annotations

import io
import json
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

import polynet
from polynet import cli
from polynet.errors import CheckpointError
from polynet.model_source import points, resolve

#: The polynomial must equal the float64 forward pass to this relative error.
TOL = 1e-10
#: ... and an ONNX file's model (float32 constants) equals the network to this.
ONNX_TOL = 1e-6

NET_SOURCE = textwrap.dedent(
    """
    import torch
    from torch import nn

    import polynet


    class Net(nn.Module):
        def __init__(self, n_in=3, hidden=5, degree=2):
            super().__init__()
            self.n_in = n_in
            self.fc1 = nn.Linear(n_in, hidden)
            self.act = polynet.SLAF(hidden, degree)
            self.fc2 = nn.Linear(hidden, 1)
            self.register_buffer("offset", torch.tensor([0.25]))

        def forward(self, x):
            if x.dim() != 2 or x.shape[1] != self.n_in:
                raise ValueError(f"expected (B, {self.n_in}), got {tuple(x.shape)}")
            return self.fc2(self.act(self.fc1(x))) + self.offset
    """
)


@pytest.fixture(scope="module")
def own(tmp_path_factory):
    """The user's class, trained briefly in their own loop, and saved every way."""
    root = tmp_path_factory.mktemp("own")
    (root / "mynet.py").write_text(NET_SOURCE)
    namespace: dict = {}
    exec(compile(NET_SOURCE, str(root / "mynet.py"), "exec"), namespace)
    Net = namespace["Net"]
    torch.manual_seed(0)
    X = torch.randn(64, 3)
    y = (X[:, :1] * X[:, 1:2] - X[:, 2:]).detach()
    net = Net()
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(20):
        opt.zero_grad()
        loss = ((net(X) - y) ** 2).mean()
        loss.backward()
        opt.step()
    net.eval()
    np.savetxt(
        root / "data.csv",
        np.column_stack([X.numpy(), y.numpy()]),
        delimiter=",",
        header="a,b,c,target",
        comments="",
    )
    files = {
        "polynet.save": polynet.save(net, root / "net.pt2", X[:4]),
        "torch.export.save": root / "exported.pt2",
        "onnx": root / "net.onnx",
        "state_dict": root / "net_state.pt",
    }
    torch.export.save(torch.export.export(net, (X[:4],)), files["torch.export.save"])
    buffer = io.BytesIO()
    torch.onnx.export(
        net, (X[:4],), buffer, dynamo=False, input_names=["x"], dynamic_axes={"x": {0: "n"}}
    )
    files["onnx"].write_bytes(buffer.getvalue())
    torch.save(net.state_dict(), files["state_dict"])
    return {"root": root, "net": net, "X": X, "files": files}


def _args(own, form: str) -> list[str]:
    files = own["files"]
    if form == "state_dict":
        return [f"{own['root'] / 'mynet.py'}:Net", "--state-dict", str(files[form])]
    return [str(files[form])]


FORMS = ["polynet.save", "torch.export.save", "onnx", "state_dict"]


@pytest.mark.parametrize("form", FORMS)
def test_every_form_expands_to_the_forward_pass(own, form):
    source = resolve(*_args(own, form)[:1], **_kwargs(own, form))
    poly = polynet.expand(source.model, input_shape=source.input_shape)
    x = torch.randn(50, 3, dtype=torch.float64)
    with torch.no_grad():
        expected = own["net"].double()(x)
        own["net"].float()
        error = (poly(x) - expected).abs().max() / expected.abs().max()
    # The ONNX exporter folds the SLAF's normalisation into float32 constants: its model is
    # the network to float32 precision, and the polynomial is that model's.
    assert float(error) < (ONNX_TOL if form == "onnx" else TOL)
    assert polynet.verify(source.model, poly, x.numpy(), tol=TOL).passed
    assert poly.degree == 2 and source.input_shape == (3,)


def _kwargs(own, form):
    if form == "state_dict":
        return {"state_dict": own["files"]["state_dict"]}
    return {}


@pytest.mark.parametrize("form", FORMS)
def test_every_form_goes_through_every_command(own, form, tmp_path, capsys):
    args = _args(own, form)
    data = ["--data", str(own["root"] / "data.csv"), "--target", "target"]
    assert cli.main(["count", *args]) == 0
    assert "degree bound D             2" in capsys.readouterr().out
    assert cli.main(["expand", *args, "--no-progress", "--out", str(tmp_path / "p")]) == 0
    assert "terms        10 non-zero of C(n+D, D) = 10" in capsys.readouterr().out
    assert cli.main(["verify", *args, *data]) == 0
    out = capsys.readouterr().out
    assert "verification PASSED" in out and "64 from the data" in out
    assert cli.main(["analyze", *args, *data]) == 0
    assert "Sobol" in capsys.readouterr().out
    if form == "onnx":  # ONNX holds the SLAF's ops, not the module: plot says what to do
        assert cli.main(["plot", *args, *data, "--out", str(tmp_path / "a.png")]) == 1
        assert "holds the SLAFs' arithmetic, not SLAF modules" in capsys.readouterr().err
    else:
        assert cli.main(["plot", *args, *data, "--out", str(tmp_path / "a.png")]) == 0
        assert (tmp_path / "a.png").stat().st_size > 0
    assert cli.main(["report", *args, *data, "--out", str(tmp_path / "r")]) == 0
    assert "verification" in (tmp_path / "r" / "report.md").read_text().lower()


def test_module_colon_class_with_init_args(own, monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(own["root"]))
    wrong = ["mynet:Net", "--state-dict", str(own["files"]["state_dict"])]
    assert cli.main(["count", *wrong, "--init-args", '{"hidden": 7}']) == 1
    err = capsys.readouterr().err
    assert "does not fit mynet:Net built with {'hidden': 7}" in err
    assert "--init-args" in err
    assert cli.main(["count", *wrong, "--init-args", '{"hidden": 5, "degree": 2}']) == 0


def test_polynet_save_load_round_trip_records_shape_and_scaling(own, tmp_path):
    meta = {"dataset": {"scaler": {"mean": [1.0, 2.0, 3.0], "scale": [2.0, 2.0, 2.0]}}}
    path = polynet.save(own["net"], tmp_path / "m.pt2", own["X"][:2], metadata=meta)
    source = resolve(path)
    assert source.input_shape == (3,)
    assert source.dataset["scaler"]["mean"] == [1.0, 2.0, 3.0]
    x = torch.randn(9, 3, dtype=torch.float64)
    loaded = polynet.load(path)
    expected = own["net"].double()(x)
    own["net"].float()
    torch.testing.assert_close(loaded(x), expected, rtol=1e-12, atol=1e-12)


def test_a_custom_class_needs_an_example_input_and_a_pt2_name(own, tmp_path):
    with pytest.raises(CheckpointError, match="needs an example input"):
        polynet.save(own["net"], tmp_path / "m.pt2")
    with pytest.raises(CheckpointError, match="with the suffix .pt2"):
        polynet.save(own["net"], tmp_path / "m.safetensors", own["X"][:2])


def test_a_torch_save_file_is_named_for_what_it_is(own):
    with pytest.raises(CheckpointError, match="is a torch.save file") as info:
        polynet.expand(str(own["files"]["state_dict"]))
    assert "--state-dict" in str(info.value) and "polynet.save" in str(info.value)


def test_pt2_with_pickled_objects_is_refused(own, tmp_path):
    import zipfile

    bad = tmp_path / "bad.pt2"
    with zipfile.ZipFile(own["files"]["torch.export.save"]) as src, zipfile.ZipFile(bad, "w") as z:
        for item in src.infolist():
            z.writestr(item, src.read(item))
        prefix = src.namelist()[0].split("/")[0]
        z.writestr(f"{prefix}/data/constants/opaque_obj_0", b"\x80\x04N.")
    with pytest.raises(CheckpointError, match="pickled objects"):
        resolve(bad)


def test_pt2_loading_forces_weights_only(own, monkeypatch):
    # torch.export.load falls back to torch.load(weights_only=False); inside load_program
    # every torch.load must run weights-only.
    seen = []
    original = torch.load

    def spy(*args, **kwargs):
        import os

        seen.append(os.environ.get("TORCH_FORCE_WEIGHTS_ONLY_LOAD"))
        return original(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    resolve(own["files"]["torch.export.save"])
    assert seen and set(seen) == {"1"}


def test_csv_round_trip_train_then_verify(tmp_path, capsys):
    rng = np.random.RandomState(0)
    X = rng.randn(120, 2)
    y = 1.5 * X[:, 0] * X[:, 1] + X[:, 1] ** 2 + 3
    path = tmp_path / "mine.csv"
    np.savetxt(path, np.column_stack([X, y]), delimiter=",", header="u,v,price", comments="")
    out = tmp_path / "run"
    argv = ["train", "--data", str(path), "--target", "price", "--hidden", "4", "--degrees", "2"]
    assert cli.main([*argv, "--epochs", "3", "--no-progress", "--out", str(out)]) == 0
    assert "dataset      file: regression, 96 train / 24 test, 2 features" in (
        capsys.readouterr().out
    )
    ckpt = polynet.checkpoint.load_checkpoint(out)
    assert ckpt.metadata["dataset"]["params"]["target"] == "price"
    assert ckpt.metadata["dataset"]["feature_names"] == ["u", "v"]
    # verify reloads the file from the checkpoint, and takes it with --data
    assert cli.main(["verify", str(out)]) == 0
    assert "120 from the data" in capsys.readouterr().out
    assert cli.main(["verify", str(out), "--data", str(path)]) == 0
    assert "120 from the data" in capsys.readouterr().out
    # the points are standardised as in training
    source = resolve(out)
    found = points(source, path)
    scaler = ckpt.metadata["dataset"]["scaler"]
    np.testing.assert_allclose(found.X, (X - scaler["mean"]) / np.array(scaler["scale"]))


def test_summary_json_carries_the_scaling(tmp_path, capsys):
    out = tmp_path / "run"
    cli.main(
        ["train", "--dataset", "xor", "--hidden", "3", "--degrees", "2", "--epochs", "1"]
        + ["--no-progress", "--out", str(out)]
    )
    cli.main(["expand", str(out), "--no-progress", "--out", str(tmp_path / "p")])
    text = capsys.readouterr().out
    assert "inputs standardised" in text
    summary = json.loads((tmp_path / "p" / "summary.json").read_text())
    scaler = polynet.checkpoint.load_checkpoint(out).metadata["dataset"]["scaler"]
    assert summary["scaling"]["inputs"]["mean"] == scaler["mean"]
    assert summary["scaling"]["variables"] == "standardised"
    assert Path(tmp_path / "p" / "polynomial_numpy.py").is_file()
