"""polynet.report and the `polynet plot` / `polynet report` commands, end to end."""

import base64
import io
import re

import matplotlib.image
import pytest
import torch

from polynet import SLNN, HybridNet, checkpoint, data, training
from polynet.cli import main
from polynet.report import report

from .conftest import trained_like

SECTIONS = [
    "Model",
    "Data",
    "Training",
    "Theorem 2: size of the network polynomial",
    "The network polynomial",
    "What the polynomial says: Sobol indices and sparsification",
    "Learned activations",
]


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    """An SLNN trained for a few epochs on XOR, saved by training.fit with its data set."""
    out = tmp_path_factory.mktemp("tiny")
    torch.manual_seed(0)
    training.fit(
        SLNN(2, [4], 2), data.xor(80), epochs=3, lr=0.02, progress=False, out=out, device="cpu"
    )
    return out / checkpoint.DEFAULT_NAME


def _embedded_pngs(text: str) -> list[bytes]:
    return [base64.b64decode(m) for m in re.findall(r'src="data:image/png;base64,([^"]+)"', text)]


def test_polynet_report_writes_self_contained_html_and_markdown(tiny_checkpoint, tmp_path, capsys):
    out = tmp_path / "report"
    assert main(["report", str(tiny_checkpoint), "--out", str(out), "--top", "5"]) == 0
    assert f"wrote        {out / 'report.html'}" in capsys.readouterr().out
    page = (out / "report.html").read_text()
    md = (out / "report.md").read_text()
    for title in SECTIONS:
        assert f"<h2>{title}</h2>" in page and f"## {title}" in md
    assert "Verification on 80 data points" in md and "**PASSED**" in md
    assert "monomials C(2+2, 2)" in md and "| # | coefficient | monomial |" in md
    assert "Not shown" not in md
    # Self-contained: every image inline, nothing fetched.
    assert not re.search(r'(src|href)="(?!data:)', page) and "<script" not in page
    pngs = _embedded_pngs(page)
    files = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert len(pngs) == len(files) == 8
    assert sorted(files) == sorted(
        ["training.png", "degree_profile.png", "slice.png", "activations.png", "coefficients.png"]
        + ["sobol.png", "interactions.png", "sparsification.png"]
    )
    assert "| variable | first S_i | total T_i |" in md and "Sparsification: " in md
    for png, name in zip(pngs, files):
        assert matplotlib.image.imread(io.BytesIO(png)).shape[0] > 100
        assert (out / name).stat().st_size > 1000


def test_polynet_plot_draws_the_activations(tiny_checkpoint, tmp_path, capsys):
    path = tmp_path / "act.png"
    assert main(["plot", str(tiny_checkpoint), "--out", str(path)]) == 0
    assert str(path) in capsys.readouterr().out
    image = matplotlib.image.imread(path)
    assert image.shape[0] > 200 and image[..., :3].std() > 0.01
    assert main(["plot", str(tmp_path / "missing")]) == 1
    assert "polynet plot: error: no checkpoint at" in capsys.readouterr().err


def test_report_explains_a_network_that_is_not_a_polynomial(tmp_path):
    model = trained_like(HybridNet(2, [3, 3], ["slaf", "relu"], dtype=torch.float64), 2).train()
    X = torch.randn(30, 2, dtype=torch.float64)
    md = report(model, tmp_path, data=(X, X[:, 0])).with_name("report.md").read_text()
    assert model.training  # the caller's model is left as it was
    assert "Theorem 2 does not apply: cannot expand model[4] (ReLU): ReLU is not a polynomial" in md
    assert "the network was not expanded" in md
    assert "![" in md and (tmp_path / "activations.png").exists()  # the rest is still there


def test_report_explains_emfn_and_a_refused_expansion(tmp_path):
    emfn = trained_like(SLNN(2, [3], 3, basis="emfn", dtype=torch.float64), 2)
    md = report(emfn, tmp_path / "emfn").with_name("report.md").read_text()
    assert "its 'emfn' basis is not a polynomial" in md
    assert (tmp_path / "emfn" / "activations.png").exists()
    net = trained_like(SLNN(3, [4], 2, dtype=torch.float64), 3)
    md = report(net, tmp_path / "big", max_memory=64).with_name("report.md").read_text()
    assert "expansion refused: expanding this network needs about" in md
    assert "over the budget of 64.0 B" in md and "monomials C(3+2, 2)" in md


def test_report_without_slafs_or_data(tmp_path):
    relu = HybridNet(2, [3], ["relu"]).eval()
    path = checkpoint.save(
        relu, tmp_path / "relu.safetensors", metadata={"dataset": {"name": "no-such-data"}}
    )
    md = report(path, tmp_path / "r").with_name("report.md").read_text()
    assert "the data set could not be reloaded" in md
    assert "the model has no SLAF layers" in md
    assert "## Model" in md
    html = (tmp_path / "r" / "report.html").read_text()
    assert '<p class="problem">' in html


def test_report_takes_the_input_shape_of_a_model_that_does_not_tell_it(tmp_path):
    """A conv model of one's own: its shape from input_shape=, verified on data rows."""
    from torch import nn

    from polynet import SLAF

    class ConvNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(1, 2, 2)
            self.act = SLAF(2, 2)
            self.fc = nn.Linear(8, 1)

        def forward(self, x):
            return self.fc(self.act(self.conv(x.reshape(-1, 1, 3, 3))).flatten(1))

    torch.manual_seed(0)
    net = ConvNet().eval()
    path = report(net, tmp_path, data=torch.randn(20, 9), input_shape=(9,))
    text = path.with_name("report.md").read_text()
    assert "**PASSED**" in text
    assert "monomials C(9+2, 2)" in text
