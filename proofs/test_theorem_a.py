"""Checks of Theorem A (proofs/theorem_a.md): the SLNN approximation bound and its rates."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

import polynet

from .theorem_a import (
    TANH_POLES,
    algebraic_order,
    analytic_error,
    bernstein_rho,
    certified_sup,
    degrees_for_target,
    geometric_rate,
    jackson_degree,
    jackson_error,
    single_thread,
    theorem_a_bound,
    toy_data,
    train_network,
)

MARGIN = 0.25
TANH_DEGREES = list(range(4, 41, 4))
RELU_DEGREES = [4, 8, 16, 32, 64, 128]
#: Rounding allowance when comparing a measured float64 error with its bound.
ROUNDING = 1e-12


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    with single_thread():
        yield


@pytest.fixture(scope="module")
def tanh_sweep():
    net = train_network(nn.Tanh)
    x, _ = toy_data()
    return net, x, [theorem_a_bound(net, x, k, MARGIN) for k in TANH_DEGREES]


@pytest.fixture(scope="module")
def relu_sweep():
    net = train_network(nn.ReLU)
    x, _ = toy_data()
    return net, x, [theorem_a_bound(net, x, k, MARGIN) for k in RELU_DEGREES]


def bound_holds(report, scale: float = 1.0) -> bool:
    """Theorem A1 (claimed bound times ``scale``), where its slack hypothesis holds."""
    if not report.certified:
        return True  # the theorem claims nothing
    pre = all(np.all(m <= E + ROUNDING) for m, E in zip(report.measured_pre, report.E))
    return pre and report.measured <= scale * report.bound + ROUNDING


@pytest.mark.parametrize("sweep", ["tanh_sweep", "relu_sweep"])
def test_measured_error_is_within_the_bound(sweep, request):
    _, _, reports = request.getfixturevalue(sweep)
    for r in reports:
        assert bound_holds(r)
        assert r.bound <= r.norm_bound * (1 + 1e-12)  # Corollary A2 is the weaker form
    certified = [r.certified for r in reports]
    # Once δ is small enough the slack condition holds, and it keeps holding.
    assert certified[-3:] == [True] * 3
    assert certified == sorted(certified)


def test_tanh_converges_at_the_bernstein_rate(tanh_sweep):
    _, _, reports = tanh_sweep
    for layer in range(2):
        center, radius = reports[-1].intervals[layer]
        log_rho = math.log(bernstein_rho(center, radius, TANH_POLES).min())
        rate = geometric_rate(TANH_DEGREES, [r.delta[layer].max() for r in reports])
        assert rate == pytest.approx(log_rho, rel=0.05)
    log_rho = min(math.log(bernstein_rho(c, r, TANH_POLES).min()) for c, r in reports[-1].intervals)
    tail = [(r.degree, r.measured) for r in reports if r.degree >= 20]
    rate = geometric_rate(*zip(*tail))
    assert 0.9 * log_rho <= rate <= 1.2 * log_rho
    # The wrong claim "tanh converges like 1/k" is caught: the errors fall much faster.
    assert algebraic_order(TANH_DEGREES, [r.measured for r in reports]) > 3


def test_relu_converges_like_one_over_k(relu_sweep):
    _, _, reports = relu_sweep
    for layer in range(2):
        order = algebraic_order(RELU_DEGREES, [r.delta[layer].max() for r in reports])
        assert 0.85 <= order <= 1.15
    order = algebraic_order(RELU_DEGREES, [r.measured for r in reports])
    assert 0.8 <= order <= 1.4
    assert not 1.8 <= order <= 2.2  # the wrong claim "1/k², as for smooth σ" is caught


def test_unit_errors_obey_jackson_and_bernstein(tanh_sweep, relu_sweep):
    for r in relu_sweep[2]:
        for delta, (_, radius) in zip(r.delta, r.intervals):
            bound = [jackson_error(1.0, rad, r.degree, interpolation=True) for rad in radius]
            assert np.all(delta <= bound)  # even the certified upper bound obeys Jackson
    for r in tanh_sweep[2]:
        center, radius = r.intervals[1]
        for j in range(0, len(center), 5):
            rho = (1 + bernstein_rho(center[j], radius[j], TANH_POLES)) / 2
            bound = analytic_error(np.tanh, center[j], radius[j], rho, r.degree)
            # A counterexample needs an evaluated |p − σ| above the bound (rounding aside).
            assert r.delta_seen[1][j] <= bound + ROUNDING


def test_jackson_degree_reaches_its_target():
    for activation, lipschitz in (("relu", 1.0), ("tanh", 1.0)):
        for delta in (0.1, 0.02):
            k = jackson_degree(lipschitz, 2.0, delta, interpolation=True)
            assert polynet.approximate(activation, k, interval=(-2, 2)).max_error <= delta


def test_degrees_for_a_target_error(tanh_sweep):
    """Theorem A3: the constructive degrees reach the target, with the slack condition."""
    net, x, _ = tanh_sweep
    target = 1e-2
    degrees, _ = degrees_for_target(net, x, target, MARGIN)
    r = theorem_a_bound(net, x, degrees, MARGIN)
    assert r.certified and r.measured <= r.bound <= r.norm_bound <= target


def _line(weight: float, bias: float) -> nn.Linear:
    layer = nn.Linear(1, 1).double()
    with torch.no_grad():
        layer.weight.fill_(weight)
        layer.bias.fill_(bias)
    return layer


def test_single_path_network_attains_the_bound():
    net = nn.Sequential(_line(2, 0), nn.Tanh(), _line(10, 0)).eval()
    x = torch.linspace(-1, 1, 20001, dtype=torch.float64)[:, None]
    r = theorem_a_bound(net, x, 6, margin=0.0)
    assert r.certified and bound_holds(r)
    assert r.measured >= 0.99 * r.bound  # the bound is attained up to the sampling of K
    # Wrong claims are caught: no amplification by the weights, or half the bound.
    assert r.measured > max(d.max() for d in r.delta)
    assert not bound_holds(r, scale=0.5)


def test_without_slack_the_bound_fails():
    """Dropping the hypothesis E_l <= ρ_l is a wrong claim: the SLNN leaves the intervals."""
    net = nn.Sequential(_line(1, 0), nn.ReLU(), _line(10, -1), nn.Tanh(), _line(1, 0)).eval()
    x = torch.linspace(-1, 1, 2001, dtype=torch.float64)[:, None]
    r = theorem_a_bound(net, x, [1, 30], margin=0.0)
    assert not r.certified and r.measured > 10 * r.bound
    ok = theorem_a_bound(net, x, [1, 30], margin=1.5)
    assert ok.certified and bound_holds(ok)


def test_certified_sup_is_an_upper_bound_and_tight():
    def err(t):
        return np.abs(np.sin(40 * t) * np.exp(-t))

    true = np.abs(
        np.sin(40 * np.linspace(-1, 1, 2_000_001)) * np.exp(-np.linspace(-1, 1, 2_000_001))
    )
    seen, upper = certified_sup(err, lipschitz=40 * math.e + math.e, points=33)
    assert seen <= true.max() <= upper <= true.max() * (1 + 2e-3)
