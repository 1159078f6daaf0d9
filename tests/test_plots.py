"""polynet.plots: figures are written and readable, curves are the networks' own functions."""

import subprocess
import sys

import matplotlib.image
import numpy as np
import pytest
import torch
from torch import nn

from polynet import (
    SLAF,
    SLNN,
    HybridNet,
    MonomialIndex,
    NetworkPolynomial,
    approximate,
    expand,
    plots,
)
from polynet.errors import DataError

#: Largest |polynomial − network| accepted on a drawn grid (float64 throughout).
SLICE_TOL = 1e-9


def trained_like(model: nn.Module, n_inputs: int, seed: int = 0) -> nn.Module:
    """Give every SLAF non-trivial coefficients and running statistics, then eval()."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, SLAF):
                m.weight.normal_(0, 0.3, generator=g)
                m.bias.normal_(0, 0.3, generator=g)
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(32, n_inputs, generator=g, dtype=torch.float64) * 1.5 + 0.3)
    return model.eval()


def read_png(path, figure) -> np.ndarray:
    """The image, checked non-empty and of the figure's size in pixels."""
    assert path.stat().st_size > 1000
    image = matplotlib.image.imread(path)
    width, height = figure.get_size_inches() * plots.DPI
    assert image.shape[:2] == (round(height), round(width))
    assert image[..., :3].std() > 0.01  # not a blank canvas
    return image


@pytest.fixture
def net():
    return trained_like(SLNN(3, [5, 4], [3, 2], dtype=torch.float64), 3)


@pytest.fixture
def x():
    return torch.randn(64, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)


# --- calibrate ----------------------------------------------------------------------------------


def test_calibrate_records_each_slafs_inputs_and_restores_the_model(net, x):
    net.train()
    seen = plots.calibrate(net, x, max_samples=16)
    assert net.training and all(m.training for m in net.modules())
    assert all(not m._forward_hooks for m in net.modules())
    assert set(seen) == {"1", "3"} and seen["1"].shape == (16, 5) and seen["3"].shape == (16, 4)
    with torch.no_grad():
        z1 = net[0](x)  # what model[1] receives
        z3 = net[2](net.eval()[1](z1))
    for z, got in ((z1, seen["1"]), (z3, seen["3"])):
        torch.testing.assert_close(got[0], z.min(0).values)
        torch.testing.assert_close(got[1], z.max(0).values)
        for c in range(z.shape[1]):  # every kept value is one the channel received
            assert torch.isin(got[:, c], z[:, c]).all()


def test_calibrate_keeps_everything_when_it_fits_and_flattens_images():
    from polynet import ConvSLNN

    conv = ConvSLNN(1, 6, [3], degrees=2, out_features=2).eval()
    seen = plots.calibrate(conv, torch.randn(4, 1, 6, 6))
    assert seen["1"].shape == (4 * 6 * 6, 3)


def test_calibrate_refusals(net):
    with pytest.raises(DataError, match="cannot take x"):
        plots.calibrate(net, torch.randn(5, 7))
    with pytest.raises(ValueError, match="no SLAF layers"):
        plots.calibrate(nn.Sequential(nn.Linear(2, 2)), torch.randn(3, 2))
    with pytest.raises(ValueError, match="max_samples"):
        plots.calibrate(net, torch.randn(5, 3), max_samples=1)


# --- nearest_activation -------------------------------------------------------------------------


def test_nearest_activation_recovers_a_planted_tanh():
    slaf = approximate("tanh", 7, interval=(-3, 3)).to_slaf()
    fit = plots.nearest_activation(slaf.polynomial()[0], (-3, 3))
    assert fit.name == "tanh" and fit.r2 > 0.999
    assert fit.a == pytest.approx(1, abs=0.05) and fit.b == pytest.approx(1, abs=0.05)
    assert abs(fit.c) < 1e-6 and abs(fit.d) < 1e-6


def test_nearest_activation_names_identity_for_a_degree_one_slaf():
    slaf = trained_like(SLAF(2, degree=1, dtype=torch.float64), 2)
    fit = plots.nearest_activation(slaf.polynomial()[1], (-2, 5))
    assert fit.name == "identity" and fit.r2 == pytest.approx(1, abs=1e-12)
    alpha = slaf.polynomial()[1].numpy()
    assert (fit.a, fit.d) == (pytest.approx(alpha[1]), pytest.approx(alpha[0]))


def test_nearest_activation_names_square_and_recovers_its_parameters():
    fit = plots.nearest_activation(lambda z: 3 * (z - 0.5) ** 2 + 1, (-2, 2))
    assert fit.name == "square" and fit.r2 == pytest.approx(1, abs=1e-12)
    assert (fit.a, fit.b, fit.c, fit.d) == pytest.approx((3, 1, -0.5, 1), abs=1e-9)


@pytest.mark.parametrize(
    "name, f",
    [
        ("relu", lambda z: 2 * np.maximum(z - 0.5, 0) + 1),
        ("gelu", lambda z: torch.nn.functional.gelu(torch.from_numpy(1.5 * z)).numpy()),
        ("silu", lambda z: -torch.nn.functional.silu(torch.from_numpy(z - 1)).numpy()),
    ],
)
def test_nearest_activation_recovers_planted_activations(name, f):
    fit = plots.nearest_activation(f, (-3, 3))
    assert fit.name == name and fit.r2 > 1 - 1e-8
    z = np.linspace(-3, 3, 101)
    np.testing.assert_allclose(fit(z), f(z), atol=1e-3)


def test_sigmoid_is_named_tanh_with_converted_parameters():
    fit = plots.nearest_activation(lambda z: 1 / (1 + np.exp(-z)), (-4, 4))
    assert fit.name == "tanh" and fit.r2 > 1 - 1e-10  # σ(u) = 1/2 + tanh(u/2)/2
    assert (fit.a, fit.b, fit.d) == pytest.approx((0.5, 0.5, 0.5), abs=1e-4)


def test_nearest_activation_on_samples_and_constants():
    samples = np.random.default_rng(0).normal(0, 1, 500)
    assert plots.nearest_activation(np.tanh, (-4, 4), samples=samples).name == "tanh"
    assert plots.nearest_activation([2.0], (-1, 1)).name == "constant"
    with pytest.raises(ValueError, match="interval must be finite"):
        plots.nearest_activation(np.tanh, (1, -1))
    with pytest.raises(ValueError, match="at least 4 finite values"):
        plots.nearest_activation(np.tanh, (-1, 1), samples=[5.0, 6.0])
    with pytest.raises(ValueError, match="1-D array"):
        plots.nearest_activation(np.ones((2, 2)), (-1, 1))


# --- plot_activations ---------------------------------------------------------------------------


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
        assert "≈" in ax.texts[0].get_text()  # the nearest activation is named


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


# --- coefficients and history -------------------------------------------------------------------


def test_coefficients_and_their_history(net, tmp_path):
    snapshots = []
    for step in range(4):
        with torch.no_grad():
            net[1].weight.add_(0.1 * step)
        snapshots.append(plots.coefficient_snapshot(net))
    path = tmp_path / "coef.png"
    fig = plots.plot_coefficients(net, snapshots, path)
    read_png(path, fig)
    assert len(fig.axes) == 4
    bars = [p.get_height() for p in fig.axes[0].patches]
    np.testing.assert_allclose(bars, net[1].coefficient().detach().numpy())
    path_c1 = fig.axes[2].lines[0].get_ydata()  # model[1], c_1, against epoch
    np.testing.assert_allclose(path_c1, [s["1"][0] for s in snapshots])
    with pytest.raises(ValueError, match="training.fit's history keeps losses"):
        plots.plot_coefficients(net, [{"epoch": 1, "train_loss": 0.3}])


def test_history_figure(tmp_path):
    history = [
        {"epoch": e, "train_loss": 1 / e, "val_loss": None, "test_loss": 2 / e,
         "test_accuracy": 1 - 1 / (e + 1), "val_accuracy": None, "lr": {"weights": 0.1}}
        for e in range(1, 8)
    ]  # fmt: skip
    fig = plots.plot_history(history, tmp_path / "h.png")
    read_png(tmp_path / "h.png", fig)
    assert [ax.get_ylabel() for ax in fig.axes] == ["loss", "accuracy"]
    assert [line.get_label() for line in fig.axes[0].lines] == ["train", "test"]


# --- polynomial views ---------------------------------------------------------------------------


def test_degree_profile_and_terms_table(net, tmp_path):
    poly = expand(net)
    fig = plots.plot_degree_profile(poly, tmp_path / "d.png")
    read_png(tmp_path / "d.png", fig)
    heights = [p.get_height() for p in fig.axes[0].patches]
    np.testing.assert_allclose(heights, poly.degree_profile()[0][poly.degree_profile()[0] > 0])
    table = plots.terms_table(poly, top=5).splitlines()
    assert len(table) == 7 and table[0].startswith("| # | coefficient | monomial")
    for line, term in zip(table[2:], poly.terms(top=5)):
        assert f"`{term.monomial}`" in line and f"{term.coefficient:.6g}" in line
    with pytest.raises(ValueError, match="top must be"):
        plots.terms_table(poly, top=0)


def _network_values(net, points):
    with torch.no_grad():
        return net.double()(torch.as_tensor(points, dtype=torch.float64)).numpy()


@pytest.mark.parametrize("dims", [(1,), (0, 2)])
def test_slices_coincide_with_the_network(net, x, dims, tmp_path):
    poly = expand(net)
    path = tmp_path / "slice.png"
    fig, diff = plots.plot_slice(net, poly, x, dims=dims, path=path, n_points=41)
    read_png(path, fig)
    assert diff < SLICE_TOL
    if len(dims) == 1:  # the drawn curves against an independent evaluation
        network_line, poly_line = fig.axes[0].lines[:2]
        t = network_line.get_xdata()
        points = np.tile(x.mean(0).numpy(), (len(t), 1))
        points[:, dims[0]] = t
        expected = _network_values(net, points)[:, 0]
        np.testing.assert_allclose(network_line.get_ydata(), expected, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(poly_line.get_ydata(), expected, rtol=0, atol=SLICE_TOL)
        np.testing.assert_allclose(poly(points)[:, 0].numpy(), expected, atol=SLICE_TOL)


def test_slice_of_a_slice_polynomial_and_fixed_values(net, x):
    fixed = {0: 0.5, 1: -1.0, 2: 2.0}
    part = expand(net, inputs=[0, 2], fixed=[0.5, -1.0, 2.0])
    _, diff = plots.plot_slice(net, part, x, dims=(2,), n_points=31)
    assert diff < SLICE_TOL
    _, diff = plots.plot_slice(net, expand(net), x, dims=2, fixed=fixed, n_points=31)
    assert diff < SLICE_TOL
    with pytest.raises(ValueError, match="not all variables of the polynomial"):
        plots.plot_slice(net, part, x, dims=(1,))
    with pytest.raises(ValueError, match="dims must be one or two distinct"):
        plots.plot_slice(net, expand(net), x, dims=(0, 1, 2))
    with pytest.raises(DataError, match=r"x must have shape \(N, 3\)"):
        plots.plot_slice(net, expand(net), x[:, :2], dims=(0,))


def test_surface_and_decision_boundaries(tmp_path):
    g = torch.Generator().manual_seed(3)
    X = torch.randn(60, 2, generator=g, dtype=torch.float64)
    regressor = trained_like(SLNN(2, [4], [3], dtype=torch.float64), 2)
    fig, diff = plots.plot_surface(regressor, expand(regressor), X, X[:, 0] * X[:, 1],
                                   tmp_path / "s.png", n_points=41)  # fmt: skip
    read_png(tmp_path / "s.png", fig)
    assert diff < SLICE_TOL
    for out_features, labels in (
        (1, (X[:, 0] > 0).long()),
        (3, (X[:, 0] > 0).long() + (X[:, 1] > 0)),
    ):
        clf = trained_like(SLNN(2, [5], [2], out_features, dtype=torch.float64), 2)
        path = tmp_path / f"b{out_features}.png"
        fig, diff = plots.plot_decision_boundary(clf, expand(clf), X, labels, path, n_points=61)
        read_png(path, fig)
        assert diff < SLICE_TOL and "decisions agree on 100.00%" in fig.get_suptitle()
    one = trained_like(SLNN(1, [3], [2], 1, dtype=torch.float64), 1)
    assert plots.plot_surface(one, expand(one), X[:, :1], X[:, 1]).max_difference < SLICE_TOL
    assert (
        plots.plot_decision_boundary(one, expand(one), X[:, :1], labels.clamp(max=1))[1] < SLICE_TOL
    )
    with pytest.raises(ValueError, match="draws models with 1 or 2 inputs, this one has 3"):
        wide = trained_like(SLNN(3, [2], 2, dtype=torch.float64), 3)
        plots.plot_surface(wide, expand(wide), torch.randn(5, 3))


def test_polynomial_without_a_network_shape():
    p = NetworkPolynomial(MonomialIndex(2, 2), torch.tensor([[1.0, 0, -3, 0, 0.5, 0]]))
    assert "| 1 | -3 | `x1` | 1 | 66.7% |" in plots.terms_table(p)


def test_importing_plots_and_report_loads_no_matplotlib():
    code = "import sys, polynet.plots, polynet.report; print('matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
