import numpy as np
import pytest
import torch
from numpy.polynomial import chebyshev, legendre
from numpy.polynomial import polynomial as P
from torch import nn

import polynet
from polynet import SLAF, approximate, from_network
from polynet.approximate import ACTIVATIONS, GRID_POINTS, nearest_activation
from polynet.errors import DataError, NotExpandableError, PolynetWarning

from .conftest import FLOAT64_RTOL, trained_like

BASES = ["chebyshev", "taylor", "legendre"]
NAMES = sorted(ACTIVATIONS)


def _torch_activation(name):
    return lambda z: ACTIVATIONS[name](torch.from_numpy(np.asarray(z, dtype=float))).numpy()


# --- approximate -------------------------------------------------------------------------------


def test_public_names():
    assert polynet.approximate is approximate and polynet.from_network is from_network
    assert {"approximate", "from_network"} <= set(polynet.__all__)


@pytest.mark.parametrize("basis", BASES)
@pytest.mark.parametrize("name", NAMES)
def test_coefficients_agree_with_the_series_and_the_error_is_measured(name, basis):
    fit = approximate(name, 7, basis, interval=(-2.0, 3.0))
    assert fit.coefficients.shape == fit.basis_coefficients.shape == (8,)
    z = np.linspace(-2, 3, 97)
    np.testing.assert_allclose(P.polyval(z, fit.coefficients), fit(z), rtol=1e-9, atol=1e-12)
    grid = np.linspace(-2, 3, GRID_POINTS)
    expected = np.max(np.abs(fit(grid) - _torch_activation(name)(grid)))
    assert fit.max_error == pytest.approx(expected, rel=1e-12)


def test_chebyshev_is_numpys_interpolant():
    fit = approximate("tanh", 11, "chebyshev", interval=(-3, 3))
    ref = chebyshev.Chebyshev.interpolate(np.tanh, 11, domain=[-3, 3])
    np.testing.assert_allclose(fit.basis_coefficients, ref.coef, atol=1e-15)
    # An interpolant: exact at the Chebyshev points of the first kind.
    nodes = 3 * chebyshev.chebpts1(12)
    np.testing.assert_allclose(fit(nodes), np.tanh(nodes), atol=1e-14)


@pytest.mark.parametrize("basis, fitter", [("taylor", P.polyfit), ("legendre", legendre.legfit)])
def test_least_squares_fits_are_numpys(basis, fitter):
    fit = approximate("gelu", 6, basis, interval=(-1, 1))
    z = np.linspace(-1, 1, GRID_POINTS)
    np.testing.assert_allclose(
        fit.basis_coefficients, fitter(z, _torch_activation("gelu")(z), 6), atol=1e-12
    )


def test_callable_activation_and_exact_polynomials():
    cube = approximate(lambda z: z**3 - 2 * z, 3, "taylor", interval=(-1, 2))
    np.testing.assert_allclose(cube.coefficients, [0, -2, 0, 1], atol=1e-12)
    assert cube.activation == "callable" and cube.max_error < 1e-12


@pytest.mark.parametrize("name, rate", [("tanh", "geometric"), ("relu", "algebraic")])
def test_error_decreases_at_the_expected_rate(name, rate):
    errors = [approximate(name, k, interval=(-3, 3)).max_error for k in (4, 8, 16, 32)]
    assert all(b < a for a, b in zip(errors, errors[1:]))
    if rate == "geometric":
        assert errors[-1] < 1e-6
    else:  # ~1/k: doubling the degree roughly halves the error
        ratios = np.array(errors[:-1]) / np.array(errors[1:])
        assert np.all((ratios > 1.5) & (ratios < 2.7))


@pytest.mark.parametrize("basis", BASES)
def test_to_slaf_computes_the_polynomial(basis):
    fit = approximate("silu", 6, basis, interval=(-3, 3))
    slaf = fit.to_slaf(4, dtype=torch.float64)
    assert isinstance(slaf, SLAF) and not slaf.training and slaf.basis.name == basis
    alpha = slaf.polynomial()
    np.testing.assert_allclose(alpha.numpy(), np.tile(fit.coefficients, (4, 1)), atol=1e-12)
    z = torch.linspace(-3, 3, 51, dtype=torch.float64)[:, None].repeat(1, 4)
    np.testing.assert_allclose(slaf(z).detach().numpy()[:, 2], fit(z[:, 2].numpy()), atol=1e-12)


def test_result_repr_is_one_line():
    text = repr(approximate("relu", 4))
    assert "\n" not in text and "relu" in text and "degree=4" in text


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"activation": "swish", "degree": 3}, "activation must be one of"),
        ({"activation": "tanh", "degree": 0}, "degree must be an integer >= 1, got 0"),
        ({"activation": "tanh", "degree": 2.5}, "degree must be an integer >= 1"),
        ({"activation": "tanh", "degree": 3, "basis": "emfn"}, "basis must be one of"),
        ({"activation": "tanh", "degree": 3, "interval": (2, 1)}, "a < b"),
        ({"activation": "tanh", "degree": 3, "interval": (0, np.inf)}, "finite"),
        ({"activation": lambda z: 1.0, "degree": 3}, "shaped like its input"),
    ],
)
def test_approximate_refusals(kwargs, match):
    with pytest.raises(ValueError, match=match):
        approximate(**kwargs)


# --- from_network ------------------------------------------------------------------------------


def _net(*layers):
    torch.manual_seed(0)
    return nn.Sequential(*layers).double().eval()


def _x(n=300, d=2, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, d, generator=g, dtype=torch.float64) * 2 - 1


def _intervals(z, margin):
    lo, hi = z.min(0).values, z.max(0).values
    center, radius = (lo + hi) / 2, (hi - lo) * (0.5 + margin)
    return center, radius


def test_structure_folding_and_slaf_polynomial_match_the_interpolant():
    net = _net(nn.Linear(2, 5), nn.Tanh(), nn.Linear(5, 3), nn.Sigmoid(), nn.Linear(3, 1))
    x, margin, k = _x(), 0.2, 9
    slnn = from_network(net, k, x, margin=margin)
    assert [type(m).__name__ for m in slnn] == ["Linear", "SLAF", "Linear", "SLAF", "Linear"]
    assert not slnn.training and all(p.dtype == torch.float64 for p in slnn.parameters())
    z = net[0](x)
    center, radius = _intervals(z, margin)
    # The interval map z -> (z - c)/r is folded into the first Linear layer.
    torch.testing.assert_close(slnn[0].weight, net[0].weight / radius[:, None])
    torch.testing.assert_close(slnn[0].bias, (net[0].bias - center) / radius)
    slaf = slnn[1]
    assert slaf.basis.name == "chebyshev" and slaf.share == "channel" and slaf.degree == k
    torch.testing.assert_close(slaf.running_var + slaf.eps, torch.ones_like(slaf.running_var))
    # Its folded polynomial is numpy's cheb2poly of each unit's mapped interpolant.
    alpha = slaf.polynomial().numpy()
    for j in range(5):
        c, r = center[j].item(), radius[j].item()
        interp = chebyshev.chebinterpolate(lambda t, c=c, r=r: np.tanh(c + r * t), k)
        np.testing.assert_allclose(alpha[j], chebyshev.cheb2poly(interp), atol=1e-12)


@pytest.mark.parametrize("basis", BASES)
def test_bases_give_the_same_network(basis):
    net = _net(nn.Linear(3, 6), nn.GELU(), nn.Linear(6, 2))
    x = _x(d=3)
    ref = from_network(net, 8, x)
    other = from_network(net, 8, x, basis=basis)
    assert other[1].basis.name == basis
    torch.testing.assert_close(other(x), ref(x), rtol=FLOAT64_RTOL, atol=1e-11)


@pytest.mark.parametrize("act", [nn.Tanh(), nn.Sigmoid(), nn.GELU(), nn.SiLU(), nn.Softplus()])
def test_smooth_activations_converge_fast(act):
    net = _net(nn.Linear(2, 8), act, nn.Linear(8, 8), act, nn.Linear(8, 1))
    x = _x()
    errors = [(from_network(net, k, x)(x) - net(x)).abs().max().item() for k in (4, 8, 16)]
    assert errors[0] > errors[1] > errors[2] and errors[2] < 1e-6


def test_relu_and_leaky_relu_converge():
    for act in (nn.ReLU(), nn.LeakyReLU(0.1)):
        net = _net(nn.Linear(2, 8), act, nn.Linear(8, 1))
        x = _x()
        errors = [(from_network(net, k, x)(x) - net(x)).abs().max().item() for k in (8, 32, 128)]
        assert errors[0] > errors[1] > errors[2]


def test_batchnorm_folds_into_the_linear_layer():
    net = _net(nn.Linear(2, 6), nn.BatchNorm1d(6), nn.Tanh(), nn.Dropout(0.3), nn.Linear(6, 1))
    with torch.no_grad():
        net[1].running_mean.normal_()
        net[1].running_var.uniform_(0.3, 3)
        net[1].weight.normal_()
        net[1].bias.normal_()
    x = _x()
    slnn = from_network(net, 20, x)
    assert [type(m).__name__ for m in slnn] == ["Linear", "SLAF", "Linear"]
    assert (slnn(x) - net(x)).abs().max() < 1e-7


def test_slaf_layers_are_kept_and_nested_sequentials_flattened():
    inner = SLAF(4, 3, "legendre", share="channel", dtype=torch.float64)
    with torch.no_grad():
        inner.weight.normal_(0, 0.3)
        inner.running_var.uniform_(0.5, 2)
    net = _net(nn.Sequential(nn.Linear(2, 4), inner.eval()), nn.Linear(4, 4), nn.ReLU())
    x = _x()
    slnn = from_network(net, 64, x)
    assert [type(m).__name__ for m in slnn] == ["Linear", "SLAF", "Linear", "SLAF"]
    torch.testing.assert_close(slnn[1].polynomial(), inner.polynomial())
    assert (slnn(x) - net(x)).abs().max() < 0.05


def test_activation_first_and_float32_model():
    net = nn.Sequential(nn.Tanh(), nn.Linear(2, 1))
    x = _x()
    slnn = from_network(net, 12, x)
    assert slnn[0].weight.dtype == torch.float32
    assert (slnn(x.float()) - net(x.float())).abs().max() < 1e-5
    assert from_network(net, 12, x, dtype=torch.float64)[0].weight.dtype == torch.float64


def test_per_layer_degrees_and_margin():
    net = _net(nn.Linear(2, 4), nn.Tanh(), nn.Linear(4, 4), nn.Tanh(), nn.Linear(4, 1))
    slnn = from_network(net, [3, 5], _x(), margin=0.0)
    assert [slnn[1].degree, slnn[3].degree] == [3, 5]


def test_constant_unit_does_not_divide_by_zero():
    net = _net(nn.Linear(2, 3), nn.Tanh(), nn.Linear(3, 1))
    with torch.no_grad():
        net[0].weight[1] = 0.0
    x = _x()
    slnn = from_network(net, 10, x)
    assert torch.isfinite(slnn[0].weight).all()
    assert (slnn(x) - net(x)).abs().max() < 1e-4


def test_caller_model_is_unchanged():
    net = nn.Sequential(nn.Linear(2, 3), nn.BatchNorm1d(3), nn.ReLU(), nn.Linear(3, 1)).train()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    from_network(net, 4, _x())
    assert net.training and next(net.parameters()).dtype == torch.float32
    for key, value in net.state_dict().items():
        assert torch.equal(value, before[key])


def test_taylor_at_high_degree_warns():
    net = _net(nn.Linear(2, 3), nn.Tanh(), nn.Linear(3, 1))
    with pytest.warns(PolynetWarning, match="basis='chebyshev'"):
        from_network(net, 30, _x(), basis="taylor")


@pytest.mark.parametrize(
    "model, kwargs, error, match",
    [
        (nn.Linear(2, 1), {}, NotExpandableError, "needs an nn.Sequential"),
        (
            nn.Sequential(nn.Linear(2, 3), nn.Softmax(dim=1)),
            {},
            NotExpandableError,
            r"model\[1\] \(Softmax\)",
        ),
        (nn.Sequential(nn.Linear(3, 1)), {}, DataError, r"shape \(N, 3\)"),
        (
            nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2, track_running_stats=False)),
            {},
            NotExpandableError,
            "track_running_stats=True",
        ),
        (nn.Sequential(nn.Linear(2, 2), nn.Tanh()), {"degree": 0}, ValueError, "degree must"),
        (
            nn.Sequential(nn.Linear(2, 2), nn.Tanh()),
            {"degree": [3, 4]},
            ValueError,
            r"one entry per activation layer \(1\)",
        ),
        (nn.Sequential(nn.Tanh()), {"margin": -0.1}, ValueError, "margin must be"),
        (nn.Sequential(nn.Tanh()), {"basis": "emfn"}, ValueError, "basis must be one of"),
        (nn.Sequential(nn.Tanh()), {"data": torch.zeros(5)}, DataError, r"\(N, n_features\)"),
        (
            nn.Sequential(nn.Tanh()),
            {"data": torch.full((3, 2), float("nan"))},
            DataError,
            "NaN",
        ),
    ],
)
def test_from_network_refusals(model, kwargs, error, match):
    args = {"degree": 3, "data": _x()} | kwargs
    with pytest.raises(error, match=match):
        from_network(model, args.pop("degree"), args.pop("data"), **args)


# --- nearest_activation: the inverse question, which standard activation a function resembles


def test_nearest_activation_recovers_a_planted_tanh():
    slaf = approximate("tanh", 7, interval=(-3, 3)).to_slaf()
    fit = nearest_activation(slaf.polynomial()[0], (-3, 3))
    assert fit.name == "tanh" and fit.r2 > 0.999
    assert fit.a == pytest.approx(1, abs=0.05) and fit.b == pytest.approx(1, abs=0.05)
    assert abs(fit.c) < 1e-6 and abs(fit.d) < 1e-6


def test_nearest_activation_names_identity_for_a_degree_one_slaf():
    slaf = trained_like(SLAF(2, degree=1, dtype=torch.float64), 2)
    fit = nearest_activation(slaf.polynomial()[1], (-2, 5))
    assert fit.name == "identity" and fit.r2 == pytest.approx(1, abs=1e-12)
    alpha = slaf.polynomial()[1].numpy()
    assert (fit.a, fit.d) == (pytest.approx(alpha[1]), pytest.approx(alpha[0]))


def test_nearest_activation_names_square_and_recovers_its_parameters():
    fit = nearest_activation(lambda z: 3 * (z - 0.5) ** 2 + 1, (-2, 2))
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
    fit = nearest_activation(f, (-3, 3))
    assert fit.name == name and fit.r2 > 1 - 1e-8
    z = np.linspace(-3, 3, 101)
    np.testing.assert_allclose(fit(z), f(z), atol=1e-3)


def test_sigmoid_is_named_tanh_with_converted_parameters():
    fit = nearest_activation(lambda z: 1 / (1 + np.exp(-z)), (-4, 4))
    assert fit.name == "tanh" and fit.r2 > 1 - 1e-10  # σ(u) = 1/2 + tanh(u/2)/2
    assert (fit.a, fit.b, fit.d) == pytest.approx((0.5, 0.5, 0.5), abs=1e-4)


def test_nearest_activation_on_samples_and_constants():
    samples = np.random.default_rng(0).normal(0, 1, 500)
    assert nearest_activation(np.tanh, (-4, 4), samples=samples).name == "tanh"
    assert nearest_activation([2.0], (-1, 1)).name == "constant"
    with pytest.raises(ValueError, match="interval must be finite"):
        nearest_activation(np.tanh, (1, -1))
    with pytest.raises(ValueError, match="at least 4 finite values"):
        nearest_activation(np.tanh, (-1, 1), samples=[5.0, 6.0])
    with pytest.raises(ValueError, match="1-D array"):
        nearest_activation(np.ones((2, 2)), (-1, 1))
