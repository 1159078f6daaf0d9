"""FactoredPolynomial: an MLP's whole polynomial as G(W1 x + b1)."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

import polynet
from polynet import SLAF, SLNN
from polynet.errors import NotExpandableError
from polynet.expansion.factored import FactoredPolynomial

from .test_expand import with_running_stats

#: Agreement of two float64 routes to the same numbers, relative to the largest.
RTOL = 1e-10


def trained(model: nn.Module, n: int, seed: int, scale: float = 1.5) -> nn.Module:
    return with_running_stats(model, n, seed, scale).double()


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    scale = float(b.abs().max())
    return float((a - b).abs().max()) / (scale if scale > 0 else 1.0)


@given(
    st.fixed_dictionaries(
        {
            "n": st.integers(1, 3),
            "hidden": st.lists(st.integers(1, 4), min_size=1, max_size=2),
            "k1": st.integers(1, 3),
            "k2": st.integers(1, 2),
            "basis": st.sampled_from(["taylor", "chebyshev", "legendre"]),
            "seed": st.integers(0, 2**16),
        }
    )
)
def test_every_coefficient_equals_the_dense_expansion(arch):
    degrees = [arch["k1"], arch["k2"]][: len(arch["hidden"])]
    net = SLNN(arch["n"], arch["hidden"], degrees, out_features=2, basis=arch["basis"])
    net = trained(net, arch["n"], arch["seed"])
    g = polynet.expand(net, form="factored")
    dense = polynet.expand(net)
    assert g.degree_bound == dense.degree_bound
    got = torch.tensor(
        [[g.coefficient(e, o) for e in dense.index.exponents] for o in range(2)],
        dtype=torch.float64,
    )
    assert rel_err(got, dense.coefficients) <= RTOL
    x = torch.randn(6, arch["n"], dtype=torch.float64)
    assert rel_err(g(x), dense(x)) <= RTOL


def test_term_count_follows_the_formula():
    # 1 + m·2k1 + C(m, 2)·k1² for two SLAF layers (the image-size report, section 3b)
    for m, k1 in [(16, 4), (16, 2), (12, 3)]:
        net = trained(SLNN(5, [m, 3], [k1, 2]), 5, 0)
        assert (
            polynet.expand(net, form="factored").n_terms == 1 + m * 2 * k1 + math.comb(m, 2) * k1**2
        )


def test_image_size_mlp_equals_its_forward_pass_and_truncation():
    net = trained(SLNN(300, [32, 16], [4, 2], out_features=2), 300, 1, scale=0.5)
    g = polynet.expand(net, form="factored")
    assert isinstance(g, FactoredPolynomial)
    assert g.n_terms == 1 + 32 * 8 + math.comb(32, 2) * 16
    x = torch.rand(10, 300, dtype=torch.float64)
    with torch.no_grad():
        assert rel_err(g(x), net(x)) <= RTOL
    for q in (1, 2):
        part = polynet.expand(net, degree=q)
        assert rel_err(g.truncate(q).coefficients, part.coefficients) <= RTOL
    # a coefficient on demand equals the truncated expansion's
    assert abs(g.coefficient("x3 x200", 1) - part.coefficient("x3 x200", 1)) <= RTOL * float(
        part.coefficients.abs().max()
    )


def test_gradient_equals_autograd_of_the_network():
    net = trained(SLNN(6, [4, 3], [3, 2], out_features=2), 6, 2)
    g = polynet.expand(net, form="factored")
    x = torch.randn(5, 6, dtype=torch.float64)
    jac = torch.autograd.functional.jacobian(lambda z: net(z).sum(0), x)  # (outputs, B, n)
    assert rel_err(g.gradient(x), jac.permute(1, 0, 2)) <= RTOL


def test_one_slaf_layer_and_a_slaf_first_chain():
    net = trained(nn.Sequential(SLAF(4, 3), nn.Linear(4, 2)), 4, 3)
    g = polynet.expand(net, form="factored")
    x = torch.randn(7, 4, dtype=torch.float64)
    with torch.no_grad():
        assert rel_err(g(x), net(x)) <= RTOL
    assert g.pairs is None


@pytest.mark.parametrize(
    "net, match",
    [
        (SLNN(3, [2, 2, 2], [2, 2, 2]), "it has 3 SLAF layers"),
        (SLNN(3, [2, 2], [2, 3]), r"its last SLAF has degree 3 \(> 2\)"),
        (nn.Sequential(nn.Linear(3, 2)), "it has no SLAF layer"),
    ],
)
def test_refuses_networks_it_does_not_factor(net, match):
    with pytest.raises(NotExpandableError, match=match):
        polynet.expand(net.eval(), form="factored")


def test_degree_3_truncation_equals_the_truncated_walk():
    net = trained(SLNN(40, [12, 6], [3, 2]), 40, 4, scale=0.5)
    g = polynet.expand(net, form="factored")
    assert rel_err(g.truncate(3).coefficients, polynet.expand(net, degree=3).coefficients) <= RTOL
