"""The graph-model examples (residual SLNN, Pi-net, square CNN) in quick mode, one seed each.

Each runs in-process through ``main([...])``; the tests check the circuit theorem's claims on
the trained networks (proofs/circuits.md): the expanded polynomial reproduces the network,
its degree equals the propagated bound and the bound the rules predict, and for the
dense-input circuits (residual SLNN, Pi-net) every one of the C(n+D, D) terms is present.
"""

from __future__ import annotations

import importlib
import json
import math
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _run(name: str, out: Path) -> dict:
    if str(EXAMPLES) not in sys.path:
        sys.path.insert(0, str(EXAMPLES))
    module = importlib.import_module(name)
    assert module.main(["--quick", "--out", str(out), "--device", "cpu", "--seeds", "1"]) == 0
    assert (out / "results.md").read_text().strip()
    results = json.loads((out / "results.json").read_text())
    assert results["mode"] == "quick"
    return results


@pytest.mark.parametrize("name", ["residual_slnn", "pi_net", "square_cnn"])
def test_example_polynomial(name: str, tmp_path: Path) -> None:
    results = _run(name, tmp_path)
    poly = results["polynomial"]
    assert poly["verified"] and poly["verify_max_rel_error"] < 1e-10
    assert poly["degree"] == poly["degree_bound"] == poly["theory_bound"]
    assert poly["max_terms"] == poly["binomial"]
    assert 0 < poly["n_terms"] <= poly["max_terms"]
    if name != "square_cnn":
        # Corollary C5: positive circuit, dense biased first layer -> every coefficient.
        assert poly["n_terms"] == poly["max_terms"]
        assert math.isfinite(poly["test_rmse_of_polynomial"])
        assert abs(poly["test_rmse_of_polynomial"] - results["test_rmse"][0]) < 1e-6 * max(
            1.0, results["test_rmse"][0]
        )
    else:
        assert 0.5 < results["test_accuracy"][0] <= 1.0
