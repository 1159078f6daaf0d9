"""plot_image_coefficients: an image model's degree-1 and degree-2 coefficients as images."""

import numpy as np
import pytest
import torch

import polynet
from polynet import SLAF, ConvSLNN
from polynet.plots.images import image_coefficients, plot_image_coefficients
from polynet.report import report


def test_maps_hold_the_polynomial_coefficients():
    net = polynet.SLNN(16, [4], 2).eval().double()
    poly = polynet.expand(net)
    linear, row, pixel = image_coefficients(poly, pixel=5)
    assert pixel == 5
    np.testing.assert_array_equal(linear, [poly.coefficient(f"x{j}") for j in range(16)])
    names = [f"x{min(5, j)} x{max(5, j)}" if j != 5 else "x5^2" for j in range(16)]
    np.testing.assert_array_equal(row, [poly.coefficient(name) for name in names])
    fig = plot_image_coefficients(poly, pixel=5)
    assert len(fig.axes) == 4  # two maps and their colour bars


def test_refuses_what_is_not_an_image():
    poly = polynet.expand(polynet.SLNN(6, [2], 2).eval())
    with pytest.raises(ValueError, match=r"cannot draw 6 inputs as an image: pass shape="):
        plot_image_coefficients(poly)


def test_report_of_an_image_model_draws_the_maps(tmp_path):
    net = ConvSLNN(1, (4, 4), [2], 2).eval()
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, SLAF):
                m.weight.normal_(0, 0.3)
    report(net, tmp_path, data=torch.rand(8, 1, 4, 4))
    text = (tmp_path / "report.md").read_text()
    assert "## Low-order coefficients as images" in text
    assert (tmp_path / "image_coefficients_0.png").exists()
    assert (tmp_path / "image_coefficients_1.png").exists()
