"""One variable-naming scheme everywhere: the data set's feature names when it records one per
input, x_i otherwise (expand's terms, the bundle's CSV and LaTeX, the report, the slice plot,
analyze)."""

from __future__ import annotations

import csv
import re

import pytest
import torch

import polynet
from polynet import cli, data, training
from polynet.export import name_variables


@pytest.fixture(scope="module")
def boston_ckpt(tmp_path_factory):
    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("run")
    ds = data.load("boston").standardize(targets=True)
    training.fit(polynet.SLNN(13, [4], [2]), ds, epochs=2, threads=1, progress=False, out=out)
    return out / "model.safetensors", list(ds.feature_names)


def test_expand_terms_csv_and_latex_use_feature_names(boston_ckpt, tmp_path, capsys):
    ckpt, names = boston_ckpt
    assert cli.main(["expand", str(ckpt), "--top", "13", "--out", str(tmp_path / "b")]) == 0
    out = capsys.readouterr().out
    terms = [line.split()[-1] for line in out.splitlines() if line.startswith("  ")]
    linear = [t for t in terms if t in names]
    assert linear and not any(t.startswith("x") and t[1:].isdigit() for t in terms)
    with open(tmp_path / "b" / "coefficients.csv") as f:
        assert next(csv.reader(f))[:13] == names
    tex = (tmp_path / "b" / "polynomial.tex").read_text()
    assert r"\mathrm{LSTAT}" in tex and "x_{12}" not in tex


def test_report_and_analyze_agree_on_names(boston_ckpt, tmp_path):
    from polynet.report import report

    ckpt, names = boston_ckpt
    page = report(ckpt, tmp_path / "r").with_name("report.md").read_text()
    assert "along x" not in page
    terms = page.split("Largest terms of output 0")[1].split("\n\n")[1]
    assert any(n in terms for n in names)
    assert not re.search(r"\bx\d+\b", terms), terms
    caption = next(
        line for line in page.splitlines() if "The polynomial and the network along" in line
    )
    assert any(f"along {n} " in caption for n in names)
    assert "| LSTAT |" in page  # the Sobol table (analyze) uses the same names


def test_name_variables_falls_back_to_input_numbers():
    torch.manual_seed(0)
    net = polynet.SLNN(3, [2], 1).eval()
    p = polynet.expand(net)
    assert name_variables(p, ["a", "b", "c"]).variables == ("a", "b", "c")
    assert name_variables(p, ["a", "b"]).variables == ("x0", "x1", "x2")  # wrong count
    assert name_variables(p, ["a", "a", "c"]).variables == ("x0", "x1", "x2")  # not unique
    s = polynet.expand(net, inputs=[2, 0], fixed=[0.0, 0.0, 0.0])
    named = name_variables(s, ["a", "b", "c"])
    assert named.variables == ("c", "a")
    x = torch.randn(5, 2, dtype=torch.float64)
    torch.testing.assert_close(named(x), s(x), rtol=0, atol=0)  # names change nothing else
