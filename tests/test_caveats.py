"""Caveats printed beside results: Sobol indices on a box far wider than the data, a
sparsification that drops nothing, and nearest-activation names below the R² threshold."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import polynet
from polynet import cli
from polynet.analysis import analyze
from polynet.analysis.sobol import VARIANCE_RATIO_WARN, sobol
from polynet.analysis.sparsify import NOTHING_TO_DROP, sparsify
from polynet.approximate import NAME_R2, NearestActivation, nearest_activation


def _poly(coefs: dict[tuple[int, ...], float], n: int, degree: int) -> polynet.NetworkPolynomial:
    idx = polynet.MonomialIndex(n, degree)
    c = torch.zeros(1, idx.size, dtype=torch.float64)
    for e, v in coefs.items():
        c[0, idx.position([list(e)])] = v
    return polynet.NetworkPolynomial(idx, c)


def test_sobol_caveat_states_the_variance_ratio_measured_on_the_data():
    # p = x0^4 on the box [-3, 3] against data in [-0.5, 0.5]: the box variance dwarfs the data's.
    p = _poly({(4, 0): 1.0, (0, 1): 0.1}, 2, 4)
    rng = np.random.default_rng(0)
    data = rng.uniform(-0.5, 0.5, size=(500, 2))
    s = sobol(p, low=-3.0, high=3.0, data=data)
    on_data = (data[:, 0] ** 4 + 0.1 * data[:, 1]).var()  # numpy reference
    assert float(s.data_variance[0]) == pytest.approx(on_data, rel=1e-12)
    ratio = float(s.variance[0]) / on_data
    assert ratio > VARIANCE_RATIO_WARN
    assert s.variance_ratio() == pytest.approx(ratio, rel=1e-12)
    line = s.table().split("\n\n")[-1]
    assert line.startswith("caveat: output 0 varies ")
    assert f"{ratio:,.0f}x more under these uniform inputs than on the data" in line
    assert "permutation_importance" in line
    # On the data's own box the two variances are comparable: no caveat.
    near = sobol(p, low=-0.5, high=0.5, data=data)
    assert near.caveat() is None and "caveat" not in near.table()
    # Without data nothing can be compared.
    assert sobol(p, low=-3.0, high=3.0).caveat() is None


def test_sparsify_says_nothing_to_drop_when_it_keeps_nearly_all_terms():
    # Equal coefficients on a small box: dropping any term breaks a tight tol.
    p = _poly({(1, 0): 1.0, (0, 1): 1.0, (1, 1): 1.0, (2, 0): 1.0}, 2, 2)
    sp = sparsify(p, tol=1e-6, low=-1.0, high=1.0)
    assert sp.n_terms >= NOTHING_TO_DROP * int(sp.terms[-1])
    assert sp.caveat().startswith("nothing to drop: ")
    assert f"({sp.n_terms:,} of {int(sp.terms[-1]):,})" in sp.caveat()
    # A polynomial with one large term and many tiny ones sheds the tiny ones: no caveat.
    small = {(i, j): 1e-9 for i in range(4) for j in range(4 - i) if i + j}
    q = _poly({**small, (1, 0): 1.0}, 2, 3)
    sq = sparsify(q, tol=1e-3, low=-1.0, high=1.0)
    assert sq.n_terms < NOTHING_TO_DROP * int(sq.terms[-1]) and sq.caveat() is None


def test_nearest_activation_named_only_above_the_threshold():
    z = np.linspace(-2, 2, 201)
    fit = nearest_activation(np.tanh, (-2.0, 2.0))
    assert fit.r2 >= NAME_R2 and fit.close and fit.label().startswith("≈ ")
    assert np.max(np.abs(fit(z) - np.tanh(z))) < 1e-3
    far = NearestActivation("gelu", 1.0, 1.0, 0.0, 0.0, r2=NAME_R2 - 0.2)
    assert not far.close
    assert far.label().startswith("no close standard activation (best gelu, R² = ")
    edge = NearestActivation("tanh", 1.0, 1.0, 0.0, 0.0, r2=NAME_R2)
    assert edge.close and edge.label().startswith("≈ tanh")


def test_plot_draws_the_nearest_line_only_when_close():
    from polynet.plots.activations import _short

    assert _short(NearestActivation("gelu", -1.0, 1.0, 0.0, 0.0, r2=0.5)) == (
        "no close match (best −gelu, R² 0.500)"
    )


def test_analyze_cli_says_nothing_to_drop(tmp_path, capsys):
    from polynet import data, training
    from polynet.checkpoint import load_checkpoint

    torch.manual_seed(0)
    model = polynet.SLNN(2, [6], [4])
    ds = data.xor(200, random_state=0)
    training.fit(model, ds, epochs=3, threads=1, progress=False, out=tmp_path / "run")
    ckpt = tmp_path / "run" / "model.safetensors"
    # A tolerance far below every coefficient: no term can go.
    assert cli.main(["analyze", str(ckpt), "--rtol", "1e-12"]) == 0
    out = capsys.readouterr().out
    poly = polynet.expand(load_checkpoint(ckpt).model)
    X = np.concatenate([ds.X_train, ds.X_test])
    expected = analyze(poly, X=X, rtol=1e-12).sparsification
    assert expected.n_terms == poly.n_terms
    assert f"**{expected.caveat()}**" in out


def test_report_prints_the_sobol_caveat(tmp_path):
    from polynet.report import report

    torch.manual_seed(0)
    model = polynet.SLNN(2, [6], [4]).eval()
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 2))
    X[:2] = [[25.0, -25.0], [-25.0, 25.0]]  # two far points stretch the box
    page = report(model, tmp_path / "r", data=X).with_name("report.md").read_text()
    s = analyze(polynet.expand(model), X=X[:500]).sobol
    assert s.variance_ratio() > VARIANCE_RATIO_WARN
    assert "**Caveat.** " + s.caveat().removeprefix("caveat: ") in page
