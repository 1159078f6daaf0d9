"""expand(model, degree=q, at=x0): the exact low-degree part and the Taylor polynomial."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

import polynet
from polynet import SLAF, SLNN, ConvSLNN
from polynet.errors import PartialPolynomialError
from polynet.expansion.truncated import (
    homogeneous_tuples,
    homogeneous_values,
    taylor_errors,
    tuple_rank,
)
from polynet.polynomial.index import MonomialIndex

from .test_expand import with_running_stats

#: Agreement of two float64 routes to the same coefficients, relative to the largest.
RTOL = 1e-10
#: Agreement with float64 autograd derivatives, relative to the largest per degree block.
AUTOGRAD_RTOL = 1e-10


def trained(model: nn.Module, n: int, seed: int, scale: float = 1.5) -> nn.Module:
    return with_running_stats(model, n, seed, scale).double()


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    scale = float(b.abs().max())
    return float((a - b).abs().max()) / (scale if scale > 0 else 1.0)


architectures = st.fixed_dictionaries(
    {
        "n": st.integers(1, 8),
        "hidden": st.lists(st.integers(1, 7), min_size=1, max_size=3),
        "degree": st.lists(st.integers(1, 3), min_size=3, max_size=3),
        "out": st.integers(1, 2),
        "basis": st.sampled_from(["taylor", "chebyshev", "legendre"]),
        "q": st.integers(0, 4),
        "seed": st.integers(0, 2**16),
    }
)


@given(architectures)
def test_truncated_equals_the_full_expansion_truncated(arch):
    degrees = arch["degree"][: len(arch["hidden"])]
    net = SLNN(arch["n"], arch["hidden"], degrees, out_features=arch["out"], basis=arch["basis"])
    net = trained(net, arch["n"], arch["seed"])
    full = polynet.expand(net)
    q = arch["q"]
    part = polynet.expand(net, degree=q)
    # q above D: the whole polynomial, over degree D (as a traced model gives it).
    assert part.index == MonomialIndex(arch["n"], min(q, full.degree_bound))
    assert part.degree_bound == full.degree_bound  # the network's D, not q
    cut = full.coefficients[:, : min(part.index.size, full.index.size)]
    assert rel_err(part.coefficients[:, : cut.shape[1]], cut) <= RTOL
    assert not part.coefficients[:, cut.shape[1] :].any()  # nothing above the network's D
    # at a point: the whole polynomial re-centred there (the dense walk), then truncated
    x0 = torch.randn(arch["n"], dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    local = polynet.expand(net, degree=q, at=x0)
    whole = polynet.expand(net, at=x0)
    cut = whole.coefficients[:, : min(local.index.size, whole.index.size)]
    assert rel_err(local.coefficients[:, : cut.shape[1]], cut) <= RTOL


@pytest.mark.parametrize(
    "make, n",
    [
        (lambda: nn.Sequential(SLAF(5, 3), nn.Linear(5, 2)), 5),  # univariate in x itself
        (
            lambda: nn.Sequential(
                nn.Linear(6, 4),
                nn.BatchNorm1d(4),
                SLAF(4, 2),
                nn.Linear(4, 3),
                SLAF(3, 2),
                nn.Linear(3, 1),
            ),
            6,
        ),
        (lambda: nn.Sequential(nn.Linear(9, 3), SLAF(3, 2), nn.Linear(3, 8), SLAF(8, 3)), 9),
    ],
)
def test_custom_chains(make, n):
    net = trained(make(), n, 1)
    full = polynet.expand(net)
    for q in range(0, 4):
        part = polynet.expand(net, degree=q)
        cut = full.coefficients[:, : min(part.index.size, full.index.size)]
        assert rel_err(part.coefficients[:, : cut.shape[1]], cut) <= RTOL


def test_conv_chain():
    net = ConvSLNN(1, (4, 4), [2], 2, out_features=2).double()
    net = net.eval()
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, SLAF):
                m.weight.normal_(0, 0.3)
    full = polynet.expand(net)
    part = polynet.expand(net, degree=1)
    assert rel_err(part.coefficients, full.coefficients[:, :17]) <= RTOL


def test_bottleneck_degree_3_push_forward():
    # m1 = 5 < n = 12: the walk runs in the 5 pre-activations and pushes blocks to x.
    net = trained(SLNN(12, [5, 4], [2, 2], out_features=2), 12, 3)
    part = polynet.expand(net, degree=3)
    full = polynet.expand(net)
    assert rel_err(part.coefficients, full.coefficients[:, : part.index.size]) <= RTOL
    # n = 30, D = 8 (48.9 M terms in full): against autograd jets instead.
    net = trained(SLNN(30, [6, 5], [4, 2]), 30, 3, scale=0.5)
    assert max(taylor_errors(net, polynet.expand(net, degree=3), n_directions=4)) <= AUTOGRAD_RTOL


def test_local_degree_2_is_the_gradient_and_half_hessian():
    net = trained(SLNN(7, [5, 4], [3, 2]), 7, 4)
    x0 = torch.randn(7, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    local = polynet.expand(net, degree=2, at=x0)
    assert local.variables[:2] == ("u0", "u1")
    f = lambda x: net(x[None])[0, 0]  # noqa: E731
    grad = torch.autograd.functional.jacobian(f, x0)
    hess = torch.autograd.functional.hessian(f, x0)
    iu = np.triu_indices(7)
    half = np.where(iu[0] == iu[1], hess.numpy()[iu] / 2, hess.numpy()[iu])
    c = local.coefficients[0]
    value = float(f(x0).detach())
    assert abs(float(c[0]) - value) <= RTOL * abs(value)
    assert rel_err(c[1:8], grad) <= AUTOGRAD_RTOL
    assert rel_err(c[8:], torch.from_numpy(half)) <= AUTOGRAD_RTOL


def test_local_degree_3_matches_autograd_jets():
    net = trained(SLNN(12, [5, 3], [2, 3], out_features=2), 12, 5)
    x0 = torch.rand(12, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    local = polynet.expand(net, degree=3, at=x0)
    assert max(taylor_errors(net, local, n_directions=4)) <= AUTOGRAD_RTOL


def test_at_without_degree_is_the_whole_polynomial_recentred():
    net = trained(SLNN(3, [4, 3], [2, 2]), 3, 6)
    x0 = torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64)
    whole = polynet.expand(net, at=x0)
    u = torch.randn(9, 3, dtype=torch.float64)
    with torch.no_grad():
        assert rel_err(whole(u), net(u + x0)) <= RTOL
    assert polynet.verify(net, whole).passed
    # the Taylor polynomial of degree >= D is the whole re-centred polynomial
    assert rel_err(polynet.expand(net, degree=4, at=x0).coefficients, whole.coefficients) <= RTOL


def test_exact_truncation_is_the_exact_full_expansion_truncated():
    net = trained(SLNN(3, [3, 2], [2, 2], out_features=2), 3, 7)
    full = polynet.expand(net, exact=True)
    for q in (1, 2, 3):
        part = polynet.expand(net, degree=q, exact=True)
        assert part.exact
        exact = part.exact_coefficients
        assert isinstance(exact[0, 0], Fraction)
        np.testing.assert_array_equal(exact, full.exact_coefficients[:, : part.index.size])
        assert rel_err(part.coefficients, polynet.expand(net, degree=q).coefficients) <= RTOL


def test_exact_local_agrees_with_float():
    net = trained(SLNN(4, [3, 2], [3, 2]), 4, 8)
    x0 = [0.25, -0.5, 1.0, 0.125]
    part = polynet.expand(net, degree=3, at=x0, exact=True)
    assert rel_err(part.coefficients, polynet.expand(net, degree=3, at=x0).coefficients) <= RTOL


def test_truncated_part_is_not_verified_as_the_network():
    net = trained(SLNN(3, [4], [3]), 3, 9)
    part = polynet.expand(net, degree=2)
    assert part.notes["taylor"] == {"degree": 2, "center": None, "network_degree": 3}
    with pytest.raises(PartialPolynomialError, match="Taylor polynomial of degree 2 at the origin"):
        polynet.verify(net, part)
    # degree >= D: the whole polynomial, verifiable
    assert polynet.verify(net, polynet.expand(net, degree=3)).passed


def test_homogeneous_tuples_follow_the_graded_order():
    for n, d in [(4, 3), (5, 2), (3, 4)]:
        idx = MonomialIndex(n, d)
        exps = idx.exponents[idx.n_monomials(d - 1) :]
        tuples = homogeneous_tuples(n, d)
        counts = np.stack([(tuples == v).sum(1) for v in range(n)], axis=1)
        np.testing.assert_array_equal(counts, exps)
        np.testing.assert_array_equal(tuple_rank(tuples, n), np.arange(len(tuples)))


def test_homogeneous_values_match_the_evaluator():
    idx = MonomialIndex(4, 3)
    coef = torch.randn(2, idx.size, dtype=torch.float64)
    poly = polynet.NetworkPolynomial(idx, coef)
    v = torch.randn(5, 4, dtype=torch.float64)
    total = sum(
        homogeneous_values(coef[:, idx.n_monomials(d - 1) if d else 0 : idx.n_monomials(d)], v, d)
        for d in range(4)
    )
    assert rel_err(total, poly(v)) <= RTOL


def test_large_input_count_degree_2_matches_autograd():
    # n = 200 with a narrow first layer: the degree-2 block is pushed from 8 pre-activations.
    net = trained(SLNN(200, [8, 4], [4, 2]), 200, 10, scale=0.3)
    part = polynet.expand(net, degree=2)
    assert part.index.size == math.comb(202, 2)
    assert max(taylor_errors(net, part)) <= AUTOGRAD_RTOL
