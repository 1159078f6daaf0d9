"""examples/mnist_image_polynomial.py in quick mode: every exact object it builds is checked.

The script runs once in a subprocess (one thread) on the offline MNIST t10k files; the test
then reads its results.json. The script's checks are independent references (float64 autograd
derivatives, the float64 forward pass), so the numbers asserted here are real properties of
the trained networks, not of the script's bookkeeping.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "examples" / "mnist_image_polynomial.py"
T10K = next(
    (
        base / "shared" / "data" / "mnist-t10k"
        for base in ROOT.parents[:3]
        if (base / "shared" / "data" / "mnist-t10k").is_dir()
    ),
    None,
)

pytestmark = pytest.mark.skipif(T10K is None, reason="offline MNIST t10k files not present")


@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    out = tmp_path_factory.mktemp("mnist_image_polynomial")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    cmd = [sys.executable, str(SCRIPT), "--quick", "--out", str(out), "--data", str(T10K)]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads((out / "results.json").read_text()), out


def test_networks_learned(quick: tuple[dict, Path]) -> None:
    res, _ = quick
    assert res["mode"] == "quick"
    assert res["mlp_training"]["test_accuracy"] > 0.5  # chance is 0.1
    assert res["conv_training"]["test_accuracy"] > 0.2
    assert "average pooling" in res["pooling"]


def test_degree2_and_local_polynomials_match_autograd(quick: tuple[dict, Path]) -> None:
    mlp = quick[0]["mlp"]
    assert mlp["degree2"]["n_terms_per_output"] == math.comb(784 + 2, 2)
    assert len(mlp["degree2"]["autograd_rel_error_per_degree"]) == 3
    assert mlp["degree2"]["max_autograd_rel_error"] < 1e-10
    assert mlp["local"]["max_autograd_rel_error"] < 1e-10


def test_local_polynomial_follows_the_network_nearby(quick: tuple[dict, Path]) -> None:
    nearby = quick[0]["mlp"]["local"]["nearby"]
    # Close to the image the degree-2 polynomial beats the linear one and its error shrinks
    # at least quadratically faster than the radius (it is O(|u|^3)).
    small = nearby[1]  # |u| = 0.01
    assert small["error_degree2"] < 1e-3 * small["error_linear"]
    for a, b in zip(nearby[1:], nearby[2:]):
        ratio = b["radius"] / a["radius"]
        assert b["error_degree2"] > 0.1 * ratio**3 * a["error_degree2"]
        assert b["error_degree2"] < 10 * ratio**3 * a["error_degree2"]


def test_factored_form_equals_the_network(quick: tuple[dict, Path]) -> None:
    fac = quick[0]["mlp"]["factored"]
    assert fac["forward_rel_error"] < 1e-10
    assert fac["truncate2_vs_degree2_max_abs_diff"] < 1e-10
    # [64, 32] with degrees (2, 2): 1 + m·2k1 + C(m, 2)·k1² terms in the m = 64 pre-activations
    assert fac["n_terms"] == 1 + 64 * 4 + math.comb(64, 2) * 4


def test_sparse_conv_polynomial_equals_the_network(quick: tuple[dict, Path]) -> None:
    conv = quick[0]["conv"]
    assert conv["forward_rel_error"] < 1e-10
    assert conv["verify_passed"]
    assert conv["n_terms"] == conv["support"] < conv["count"]["max_terms"]


def test_files_written(quick: tuple[dict, Path]) -> None:
    res, out = quick
    for name in [*res["mlp"]["figures"], "results.md"]:
        path = out / name
        assert path.is_file() and path.stat().st_size > 1000, name
    assert "NOT THE OFFICIAL SPLIT" in (out / "results.md").read_text()
