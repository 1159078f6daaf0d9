"""examples/activation_approximation.py (RQ1) in quick mode: results complete and sensible."""

import json
import math
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ACTIVATIONS = ("relu", "tanh", "sigmoid", "gelu", "silu")


def test_activation_approximation_quick(tmp_path):
    out = tmp_path / "rq1"
    run = subprocess.run(
        [
            sys.executable,
            str(ROOT / "examples" / "activation_approximation.py"),
            "--quick",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    results = json.loads((out / "results.json").read_text())
    assert results["mode"] == "quick" and (out / "results.md").exists()
    degrees = results["degrees"]
    k4, k16 = degrees.index(4), degrees.index(16)
    for name in ACTIVATIONS:
        errors = results["results"][name]["errors"]
        for basis in ("chebyshev", "legendre", "taylor"):
            values = errors[basis]
            assert len(values) == len(degrees)
            assert all(math.isfinite(v) and v >= 0 for v in values)
        # More degree, less error: every activation here is at least Lipschitz.
        assert errors["chebyshev"][k16] < errors["chebyshev"][k4]
    # Analytic activations converge geometrically: far faster than ReLU's ~1/k.
    tanh, relu = results["results"]["tanh"]["errors"], results["results"]["relu"]["errors"]
    assert tanh["chebyshev"][k16] < 1e-2 * tanh["chebyshev"][k4]
    assert relu["chebyshev"][k16] > 0.1 * relu["chebyshev"][k4]
    for figure in results["figures"]:
        assert (out / figure).stat().st_size > 10_000
