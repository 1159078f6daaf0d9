"""polynet.plots.comparison: slices, surfaces and boundaries coincide with the network."""

import numpy as np
import pytest
import torch

from polynet import SLNN, expand, plots
from polynet.errors import DataError

from ..conftest import trained_like
from .conftest import SLICE_TOL, read_png


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
        np.testing.assert_allclose(poly(points)[:, 0], expected, atol=SLICE_TOL)


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
