import pytest
import torch

from polynet import SLNN, NetworkPolynomial, expand, verify

from .poly.test_expand import with_running_stats


def test_report_counts_and_passes():
    net = with_running_stats(SLNN(3, [5, 4], [3, 2]), 3, 0)
    poly = expand(net)
    x = torch.randn(40, 3)
    report = verify(net, poly, x, n_box=200)
    assert report.passed and report.n_data_points == 40 and report.n_box_points == 200
    assert (report.degree, report.degree_bound) == (6, 6)
    assert report.n_terms == report.max_terms == 84
    assert report.n_network_parameters == sum(p.numel() for p in net.parameters())
    assert "PASSED" in str(report) and report.max_rel_error < 1e-12


def test_a_wrong_polynomial_fails():
    net = with_running_stats(SLNN(2, [3], [2]), 2, 0)
    poly = expand(net) * 1.001
    report = verify(net, poly, torch.randn(20, 2))
    assert not report.passed and "FAILED" in str(report)


def test_verify_runs_without_data_on_the_unit_box():
    net = with_running_stats(SLNN(2, [3], [2]), 2, 0)
    report = verify(net, expand(net))
    assert report.n_data_points == 0 and report.passed


def test_data_error_is_reported_and_judged_on_its_own():
    """Box corners can dominate max|net| at high degree: the data's own error is kept apart
    and must pass too."""
    net = with_running_stats(SLNN(1, [2], [2]), 1, 0)
    poly = expand(net)
    bumped = poly + NetworkPolynomial(poly.index, torch.tensor([[1e-7, 0.0, 0.0]]))
    x = torch.linspace(-0.5, 0.5, 11)[:, None]
    report = verify(net, bumped, x, n_box=10, tol=1e-3)
    assert report.data_max_abs_error == pytest.approx(1e-7, rel=1e-3)
    with torch.no_grad():
        data_scale = float(net.double()(x.double()).abs().max())
    assert report.data_max_rel_error == pytest.approx(1e-7 / data_scale, rel=1e-3)
    assert report.passed
    strict = verify(net, bumped, x, n_box=10, tol=0.5 * report.data_max_rel_error)
    assert not strict.passed and "(data" in str(strict)


def test_progress_evaluates_in_batches_to_the_same_report(capsys):
    net = SLNN(4, [6], 2).eval()
    poly = expand(net)
    x = torch.randn(300, 4, dtype=torch.float64)
    quiet = verify(net, poly, x, n_box=200)
    shown = verify(net, poly, x, n_box=200, progress=True)
    assert shown.passed and shown.n_data_points == 300 and shown.n_box_points == 200
    assert shown.max_abs_error == pytest.approx(quiet.max_abs_error, rel=1e-6, abs=1e-15)
    assert "verify" in capsys.readouterr().err  # the bar, on stderr
