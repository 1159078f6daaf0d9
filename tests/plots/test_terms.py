"""polynet.plots.terms: the degree profile and the terms table against the polynomial."""

import numpy as np
import pytest
import torch

from polynet import MonomialIndex, NetworkPolynomial, expand, plots

from .conftest import read_png


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


def test_polynomial_without_a_network_shape():
    p = NetworkPolynomial(MonomialIndex(2, 2), torch.tensor([[1.0, 0, -3, 0, 0.5, 0]]))
    assert "| 1 | -3 | `x1` | 1 | 66.7% |" in plots.terms_table(p)
