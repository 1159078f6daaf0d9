"""polynet.plots.activations: each SLAF drawn as the module computes it, panels chosen."""

import numpy as np
import pytest
import torch

from polynet import SLNN, HybridNet, plots

from ..conftest import trained_like
from .conftest import read_png


def test_activation_grid_draws_each_slaf_as_the_module_computes_it(net, x, tmp_path):
    path = tmp_path / "act.png"
    fig = plots.plot_activations(net, x, path)
    read_png(path, fig)
    panels = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title() for ax in panels] == [
        "model[1] · shared, 5 channels",
        "model[3] · shared, 4 channels",
    ]
    seen = plots.calibrate(net, x)
    for ax, (name, slaf) in zip(panels, [("1", net[1]), ("3", net[3])]):
        curves = [line for line in ax.lines if line.get_color() == "C0"]
        assert len(curves) == slaf.num_features
        for c, line in enumerate(curves):
            z, y = line.get_xdata(), line.get_ydata()
            # Over the range the channel's inputs took ...
            assert z[0] == pytest.approx(float(seen[name][:, c].min()))
            assert z[-1] == pytest.approx(float(seen[name][:, c].max()))
            # ... the function the module computes in evaluation mode.
            inputs = torch.zeros(len(z), slaf.num_features, dtype=torch.float64)
            inputs[:, c] = torch.from_numpy(z)
            with torch.no_grad():
                np.testing.assert_allclose(y, slaf(inputs)[:, c].numpy(), rtol=1e-9, atol=1e-9)
        text = ax.texts[0].get_text()  # the nearest activation is named, or said to be far
        assert "≈" in text.splitlines()[0] or "no close match" in text.splitlines()[0]


def test_per_channel_panels_are_capped_and_chosen(tmp_path):
    model = trained_like(SLNN(2, [6], 3, share="channel", dtype=torch.float64), 2)
    fig = plots.plot_activations(model, torch.randn(50, 2), max_panels=4, fit_nearest=False)
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titles == [f"model[1] · channel {c}" for c in (0, 2, 3, 5)]
    assert "4 of 6 channels shown" in fig.get_suptitle()
    fig = plots.plot_activations(model, units=[1, 4], fit_nearest=False)
    assert [ax.get_title() for ax in fig.axes if ax.get_title()] == [
        "model[1] · channel 1",
        "model[1] · channel 4",
    ]
    assert "running mean ± 3σ" in fig.get_suptitle()
    for suffix in (".svg", ".pdf"):
        path = tmp_path / f"act{suffix}"
        plots.plot_activations(model, path=path, units=[0], fit_nearest=False)
        assert path.stat().st_size > 1000


def test_activation_plot_of_emfn_and_hybrid_models(tmp_path):
    emfn = trained_like(SLNN(2, [3], 4, basis="emfn", dtype=torch.float64), 2)
    fig = plots.plot_activations(emfn, torch.randn(40, 2, dtype=torch.float64), tmp_path / "e.png")
    read_png(tmp_path / "e.png", fig)
    hybrid = trained_like(HybridNet(2, [3, 3], ["relu", "slaf"], dtype=torch.float64), 2)
    fig = plots.plot_activations(hybrid, layers=[4], fit_nearest=False)
    assert [ax.get_title() for ax in fig.axes if ax.get_title()] == [
        "model[4] · shared, 3 channels"
    ]


def test_activation_plot_refusals(net):
    with pytest.raises(
        ValueError, match=r"not an SLAF of the model; its SLAF layers are \['1', '3'\]"
    ):
        plots.plot_activations(net, layers=[0])
    with pytest.raises(ValueError, match="units= must be channel numbers in 0..4"):
        plots.plot_activations(net, units=[9])
    with pytest.raises(ValueError, match=r"path must end in .png, .svg or .pdf"):
        plots.plot_activations(net, path="figure.jpg", fit_nearest=False)
    with pytest.raises(ValueError, match="max_panels"):
        plots.plot_activations(net, max_panels=0)


def test_legend_explains_every_mark_and_the_count_axis():
    torch.manual_seed(0)
    net = SLNN(2, [4, 3], [3, 2], dtype=torch.float64).eval()
    x = torch.randn(200, 2, dtype=torch.float64)
    fig = plots.plot_activations(net, x)
    (legend,) = fig.legends
    labels = [t.get_text() for t in legend.get_texts()]
    assert labels[0].startswith("learned activation a(z)")
    assert any(label.startswith("inputs z on the data") for label in labels)
    dashed = [ax for ax in fig.axes for line in ax.lines if line.get_linestyle() == "--"]
    # The nearest-activation entry is in the legend exactly when a panel drew its line.
    assert any("nearest standard activation" in label for label in labels) == bool(dashed)
    counts = [ax for ax in fig.axes if ax.get_ylabel() == "count"]
    assert len(counts) == 2 and all(len(ax.get_yticklabels()) > 0 for ax in counts)
    assert "shared = one polynomial per layer" in fig._suptitle.get_text()
    no_data = plots.plot_activations(net, None)
    assert not any("inputs z" in t.get_text() for t in no_data.legends[0].get_texts())
