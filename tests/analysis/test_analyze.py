"""analyze() and `polynet analyze`, end to end on a small Boston checkpoint."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import polynet
from polynet import SLNN, data
from polynet.analysis import analyze, sobol
from polynet.checkpoint import save
from polynet.cli import main

from ..conftest import trained_like
from ..poly.test_expand import with_running_stats


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    ds = data.load("boston").standardize(targets=True)
    net = with_running_stats(SLNN(13, [6, 4], [2, 2]), 13, 0)
    path = tmp_path_factory.mktemp("ckpt") / "model.safetensors"
    save(net, path, metadata={"dataset": ds.to_metadata()})
    return path, net, ds


def test_cli_analyze_prints_the_table_and_writes_figures(checkpoint, tmp_path, capsys):
    path, net, ds = checkpoint
    out = tmp_path / "analysis"
    assert main(["analyze", str(path), "--out", str(out), "--top", "3"]) == 0
    text = capsys.readouterr().out
    assert "## Sobol indices of output 0 (uniform inputs" in text
    assert "| variable | first S_i | total T_i |" in text and "| LSTAT |" in text
    assert "## Top pairwise interactions" in text and "## Sparsification" in text
    assert sorted(p.name for p in out.iterdir()) == [
        "analysis.json",
        "analysis.md",
        "interactions.png",
        "sobol.png",
        "sparsification.png",
    ]
    saved = json.loads((out / "analysis.json").read_text())
    X = np.concatenate([ds.X_train, ds.X_test])
    expect = sobol(polynet.expand(net), low=X.min(0), high=X.max(0))
    np.testing.assert_allclose(saved["total"], expect.total, rtol=1e-9)
    assert len(saved["interactions"]) == 3


def test_cli_analyze_normal_without_out(checkpoint, capsys):
    path, _, _ = checkpoint
    assert main(["analyze", str(path), "--distribution", "normal", "--tol", "0.5"]) == 0
    text = capsys.readouterr().out
    assert "(normal inputs; mean in" in text and "tol = 0.5" in text


def test_analyze_without_data_uses_the_default_box():
    net = trained_like(SLNN(3, [4], [2], dtype=torch.float64), 3)
    result = analyze(polynet.expand(net), top=2)
    assert result.sobol.parameters["low"] == [-1.0] * 3 and len(result.interactions) == 2
    assert result.sparsification.low == [-1.0] * 3 and result.figures == []
    with pytest.raises(ValueError, match="output must be < n_outputs = 1, got 1"):
        analyze(polynet.expand(net), output=1)
    with pytest.raises(ValueError, match="variables must have 3 names, got 2"):
        analyze(polynet.expand(net), variables=["a", "b"])
