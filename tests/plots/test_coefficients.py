"""polynet.plots.coefficients: the bars are the SLAF's coefficients, the paths its snapshots."""

import numpy as np
import pytest
import torch

from polynet import plots

from .conftest import read_png


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
