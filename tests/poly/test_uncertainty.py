"""chaospy / OpenTURNS conversions and the Jupyter representations."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import polynet


@pytest.fixture(scope="module")
def poly():
    torch.manual_seed(1)
    return polynet.expand(polynet.SLNN(3, [4], 3, out_features=2).eval())


def test_to_chaospy_evaluates_like_the_polynomial(poly):
    pytest.importorskip("numpoly")
    p = poly.to_chaospy()
    x = np.random.RandomState(0).uniform(-1, 1, size=(3, 25))
    np.testing.assert_allclose(np.asarray(p(*x)).T, np.asarray(poly(x.T)), rtol=1e-12, atol=1e-12)
    one = poly.to_chaospy(output=1)
    np.testing.assert_allclose(one(*x), np.asarray(poly(x.T))[:, 1], rtol=1e-12, atol=1e-12)


def test_chaospy_mean_matches_sobol_mean(poly):
    chaospy = pytest.importorskip("chaospy")
    dist = chaospy.J(*[chaospy.Uniform(-1, 1) for _ in range(3)])
    mean = chaospy.E(poly.to_chaospy(), dist)
    np.testing.assert_allclose(mean, polynet.sobol(poly).mean, rtol=1e-10)


def test_to_openturns(poly):
    ot = pytest.importorskip("openturns")
    f = poly.to_openturns(output=0)
    x = [0.3, -0.2, 0.9]
    assert abs(f(x)[0] - float(poly(np.array([x]))[0, 0])) < 1e-12 * (1 + abs(f(x)[0]))
    assert ot is not None


def test_repr_latex_shows_top_terms_only(poly):
    text = poly._repr_latex_()
    assert text.startswith("$$\\begin{aligned}") and text.count("&=") == 2
    assert "more terms" in text  # 20 terms, 10 shown per output


def test_repr_html_of_the_theorem_2_table_and_sobol(poly):
    html = polynet.count_terms(polynet.SLNN(3, [4], 3))._repr_html_()
    assert html.count("<tr>") == 1 + 3 and "C(3+3, 3) = 20" in html
    sobol_html = polynet.sobol(poly)._repr_html_()
    assert sobol_html.count("<table>") == 2 and sobol_html.count("<tr>") == 2 * (1 + 3)
