"""polynet.plots.calibration: calibrate records what each SLAF receives."""

import numpy as np
import pytest
import torch
from torch import nn

from polynet import plots
from polynet.errors import DataError


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
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1, got True"):
        plots.calibrate(net, torch.randn(5, 3), batch_size=True)


def test_calibrate_takes_numpy_integers_and_batches_alike(net, x):
    whole = plots.calibrate(net, x)
    batched = plots.calibrate(net, x.numpy(), batch_size=np.int64(7), max_samples=np.int32(64))
    for name in whole:  # everything fits: the same values, whatever the batching
        torch.testing.assert_close(batched[name].sort(0).values, whole[name].sort(0).values)
