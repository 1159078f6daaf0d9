"""The expansion equals the network: float vs forward pass, exact vs float, exact vs SymPy."""

import copy
from fractions import Fraction
from math import comb, prod

import pytest
import sympy
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

import polynet
from polynet import SLAF, SLNN, expand, verify

from ..conftest import FLOAT64_RTOL

#: Exact and float coefficients of the same network agree to this relative accuracy.
EXACT_FLOAT_RTOL = 1e-12


def with_running_stats(model: nn.Module, n_inputs: int, seed: int, scale: float = 1.5):
    """Give every SLAF non-trivial running statistics and coefficients, then eval()."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, SLAF):
                m.weight.normal_(0, 0.3, generator=g)
                m.bias.normal_(0, 0.3, generator=g)
                if m.gate is not None:
                    m.gate.normal_(0, 1.0, generator=g)
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(32, n_inputs, generator=g) * scale + 0.3)
    return model.eval()


architectures = st.fixed_dictionaries(
    {
        "n": st.integers(1, 4),
        "hidden": st.lists(st.integers(1, 5), min_size=1, max_size=3),
        "degree": st.lists(st.integers(1, 3), min_size=3, max_size=3),
        "out": st.integers(1, 2),
        "basis": st.sampled_from(["taylor", "chebyshev", "legendre"]),
        "share": st.sampled_from(["layer", "channel"]),
        "gate": st.booleans(),
        "seed": st.integers(0, 2**16),
    }
)


def build(arch) -> SLNN:
    torch.manual_seed(arch["seed"])
    degrees = arch["degree"][: len(arch["hidden"])]
    net = SLNN(
        arch["n"],
        arch["hidden"],
        degrees,
        arch["out"],
        arch["basis"],
        share=arch["share"],
        gate=arch["gate"],
    )
    return with_running_stats(net, arch["n"], arch["seed"])


@given(architectures)
def test_polynomial_equals_float64_forward_pass(arch):
    net = build(arch)
    poly = expand(net)
    x = torch.randn(64, arch["n"], dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    report = verify(net, poly, x, tol=FLOAT64_RTOL)
    assert report.passed, report


@given(architectures)
def test_degree_is_the_bound_and_every_monomial_appears_for_generic_weights(arch):
    net = build(arch)
    poly = expand(net)
    bound = prod(arch["degree"][: len(arch["hidden"])])
    assert poly.degree_bound == bound
    assert poly.degree == bound
    assert poly.n_terms == poly.max_terms == comb(arch["n"] + bound, bound)


@given(architectures)
def test_exact_and_float_paths_agree(arch):
    net = build(arch)
    exact = expand(net, exact=True)
    approx = expand(net)
    scale = approx.coefficients.abs().max()
    diff = (exact.coefficients - approx.coefficients).abs().max()
    assert diff <= EXACT_FLOAT_RTOL * scale
    assert exact.exact and not approx.exact


@pytest.mark.parametrize("seed", range(3))
def test_exact_engines_agree_exactly(seed):
    net = build(
        {
            "n": 3,
            "hidden": [4, 3],
            "degree": [3, 2, 1],
            "out": 2,
            "basis": "legendre",
            "share": "channel",
            "gate": True,
            "seed": seed,
        }
    )
    modular = expand(net, exact="modular").exact_coefficients
    assert (modular == expand(net, exact="sympy").exact_coefficients).all()
    pytest.importorskip("flint")
    assert (modular == expand(net, exact="flint").exact_coefficients).all()


def _symbolic_network(net: nn.Sequential, symbols):
    """The network as a SymPy expression built from its own layers, weights as rationals."""
    units = list(symbols)
    for layer in net:
        if isinstance(layer, nn.Linear):
            w = layer.weight.detach().double().tolist()
            b = layer.bias.detach().double().tolist()
            units = [
                sum(sympy.Rational(Fraction(wij)) * u for wij, u in zip(row, units))
                + sympy.Rational(Fraction(bi))
                for row, bi in zip(w, b)
            ]
        else:
            alpha = layer.polynomial().tolist()
            units = [
                sum(sympy.Rational(Fraction(a)) * u**i for i, a in enumerate(alpha[j]))
                for j, u in enumerate(units)
            ]
    return units


@pytest.mark.parametrize(
    "n, hidden, degrees, basis",
    [(2, [2], [2], "taylor"), (2, [3, 2], [2, 2], "chebyshev"), (3, [2], [3], "legendre")],
)
def test_exact_path_equals_sympy_expand_of_the_network(n, hidden, degrees, basis):
    net = with_running_stats(SLNN(n, hidden, degrees, 2, basis, share="channel"), n, 7)
    xs = sympy.symbols(f"x0:{n}")
    expected = [
        sympy.Poly(sympy.expand(e), *xs, domain=sympy.QQ) for e in _symbolic_network(net, xs)
    ]
    got = expand(net, exact=True).to_sympy(list(xs))
    assert got == expected


def test_structured_weights_give_fewer_terms():
    """An input the first layer ignores appears in no monomial: C((n-1)+D, D) terms."""
    net = with_running_stats(SLNN(3, [4, 3], [2, 2]), 3, 0)
    with torch.no_grad():
        net[0].weight[:, 0] = 0.0
    poly = expand(net)
    assert poly.degree == 4
    assert poly.n_terms == comb(2 + 4, 4) < poly.max_terms == comb(3 + 4, 4)
    assert (poly.exponents[poly.coefficients[0] != 0][:, 0] == 0).all()


def test_slice_equals_the_network_with_other_inputs_fixed():
    net = with_running_stats(SLNN(5, [6, 4], [3, 2], out_features=2), 5, 3)
    fixed = torch.randn(5, dtype=torch.float64)
    poly = expand(net, inputs=[3, 1], fixed=fixed)
    assert poly.variables == ("x3", "x1") and poly.n_vars == 2
    pts = torch.randn(40, 2, dtype=torch.float64)
    full = fixed.repeat(40, 1)
    full[:, [3, 1]] = pts
    expected = copy.deepcopy(net).double()(full)
    torch.testing.assert_close(poly(pts), expected, rtol=FLOAT64_RTOL, atol=1e-12)
    assert verify(net, poly, pts).passed
    exact = expand(net, exact=True, inputs=[3, 1], fixed=dict(enumerate(fixed.tolist())))
    assert (exact.coefficients - poly.coefficients).abs().max() < 1e-12


def test_supported_layers_fold_in():
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Sequential(nn.Linear(3, 5), nn.BatchNorm1d(5), nn.Dropout(0.3)),
        SLAF(5, 3, "chebyshev", share="channel"),
        nn.Identity(),
        nn.Sequential(nn.Linear(5, 4), SLAF(4, 2)),
        nn.Linear(4, 2),
    )
    with_running_stats(net, 3, 1)
    poly = expand(net)
    assert poly.degree == 6
    assert verify(net, poly, torch.randn(30, 3), tol=FLOAT64_RTOL).passed


@pytest.mark.parametrize(
    "conv, pool, shape",
    [
        (nn.Conv2d(2, 3, 3, padding=1), nn.AvgPool2d(2), (2, 4, 4)),
        (nn.Conv1d(2, 3, 3), nn.AvgPool1d(2), (2, 6)),
    ],
)
def test_convolution_and_average_pooling_fold_in(conv, pool, shape):
    torch.manual_seed(0)
    net = nn.Sequential(
        conv,
        SLAF(3, 2, share="channel"),
        pool,
        nn.Flatten(),
        nn.Linear(3 * (shape[1] // 2 if len(shape) == 2 else 4), 2),
    )
    if len(shape) == 2:
        net[-1] = nn.Linear(3 * ((shape[1] - 2) // 2), 2)
    g = torch.Generator().manual_seed(0)
    net.train()
    for _ in range(3):
        net(torch.randn(16, *shape, generator=g))
    net.eval()
    poly = expand(net, input_shape=shape)
    assert poly.n_vars == prod(shape) and poly.degree == 2
    x = torch.randn(20, *shape, dtype=torch.float64)
    assert verify(net, poly, x, tol=FLOAT64_RTOL).passed


def test_conv_slnn_records_its_input_shape():
    net = polynet.ConvSLNN(1, 4, [2], degrees=2, out_features=2)
    g = torch.Generator().manual_seed(0)
    net.train()
    net(torch.randn(16, 1, 4, 4, generator=g))
    net.eval()
    poly = expand(net)
    assert poly.n_vars == 16
    assert verify(net, poly, torch.randn(10, 1, 4, 4), tol=FLOAT64_RTOL).passed


def test_expand_leaves_the_model_untouched():
    net = with_running_stats(SLNN(2, [3], [2]), 2, 0)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    expand(net)
    expand(net, exact=True)
    verify(net, expand(net))
    assert not net.training
    assert all(p.dtype == torch.float32 for p in net.parameters())
    for k, v in net.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_linear_only_network_is_affine():
    net = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 1)).eval()
    poly = expand(net)
    assert poly.degree == 1 and poly.degree_bound == 1
    assert verify(net, poly, torch.randn(5, 3)).passed


@pytest.mark.gpu
def test_cuda_expansion_matches_cpu():
    net = with_running_stats(SLNN(4, [8, 4], [3, 2]), 4, 0)
    cpu = expand(net)
    gpu = expand(copy.deepcopy(net).cuda())
    assert gpu.coefficients.is_cuda
    torch.testing.assert_close(gpu.coefficients.cpu(), cpu.coefficients, rtol=1e-12, atol=1e-14)
    assert verify(net.cuda(), gpu, torch.randn(10, 4)).passed
    exact = expand(net.cuda(), exact=True)
    assert (exact.exact_coefficients == expand(net.cpu(), exact=True).exact_coefficients).all()


@pytest.mark.parametrize("seed", range(2))
def test_numba_residue_kernels_give_the_torch_walks_residues(seed, monkeypatch):
    from polynet.expansion import residue_kernels

    if not residue_kernels.available():
        pytest.skip("numba is not installed (the fast extra)")
    arch = {"n": 4, "hidden": [5, 3], "degree": [4, 2, 1], "out": 2, "basis": "taylor"}
    net = build({**arch, "share": "channel", "gate": False, "seed": seed})
    fast = expand(net, exact="modular").exact_coefficients
    monkeypatch.setenv("POLYNET_RESIDUE_KERNELS", "torch")
    assert not residue_kernels.available()
    assert (fast == expand(net, exact="modular").exact_coefficients).all()
