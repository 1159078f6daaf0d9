"""The regression examples (Boston housing, polynomial regression, degree study) in quick mode.

Each script runs in-process through its ``main([...])`` into a temporary directory; the tests
check that ``results.json`` is complete: the keys are there, the numbers are finite, the rows
are the ones the example promises.
"""

from __future__ import annotations

import importlib
import json
import math
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _run(name: str, out: Path, *args: str) -> dict:
    if str(EXAMPLES) not in sys.path:
        sys.path.insert(0, str(EXAMPLES))
    module = importlib.import_module(name)
    assert module.main(["--quick", "--out", str(out), "--device", "cpu", *args]) == 0
    assert (out / "results.md").read_text().strip()
    results = json.loads((out / "results.json").read_text())
    assert results["mode"] == "quick"
    for figure in results["figures"]:
        assert (out / figure).stat().st_size > 0
    return results


def _finite(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@pytest.fixture(scope="module")
def boston(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return _run("boston_housing", tmp_path_factory.mktemp("boston"))


def test_boston_rows(boston: dict) -> None:
    rows = boston["rows"]
    for variant in ("boston", "boston-no-b"):
        models = [r["model"] for r in rows if r["data"] == variant]
        assert {"nn_relu_bn", "slnn", "poly_sgd_l1", "poly_lasso"} <= set(models)
    keys = ("train_rmse", "test_rmse", "train_rmse_std", "test_rmse_std")
    for row in rows:
        for key in ("model", *keys, "paper_train_rmse", "paper_test_rmse"):
            assert key in row, (row["model"], key)
        assert all(_finite(row[k]) and row[k] >= 0 for k in keys), row
        # Paper numbers exist exactly for the with-B rows of the paper's four models.
        has_paper = row["data"] == "boston" and row["model"] != "slnn_ensemble"
        assert _finite(row["paper_test_rmse"]) == has_paper
        assert _finite(row["paper_train_rmse"]) == has_paper
    by_model = {r["model"]: r for r in rows if r["data"] == "boston"}
    assert by_model["slnn"]["paper_test_rmse"] == 3.98
    assert by_model["nn_relu_bn"]["paper_test_rmse"] == 3.78
    # Quick mode says it used lower-degree features.
    assert by_model["poly_lasso"]["poly_degree"] < 8


def test_boston_polynomial(boston: dict) -> None:
    poly = boston["polynomial"]
    assert poly["degree"] == poly["degree_bound"] == 8
    assert poly["max_terms"] == 203_490
    assert 0 < poly["n_terms"] <= poly["max_terms"]
    assert poly["verification"]["passed"]
    assert _finite(poly["verification"]["max_rel_error"])
    assert _finite(poly["test_rmse_of_polynomial"])
    mass = poly["l1_mass_terms"]
    assert 1 <= mass["50%"] <= mass["90%"] <= mass["99%"] <= poly["max_terms"]
    trunc = poly["truncation"]
    assert trunc[-1]["k"] == poly["max_terms"]
    # Keeping every term reproduces the full polynomial.
    assert trunc[-1]["rmse_to_full_by_coefficient"] < 1e-6
    assert all(_finite(v) for t in trunc for v in t.values())
    assert boston["polynomials"]["boston-no-b"]["max_terms"] == 125_970


def test_polynomial_regression(tmp_path: Path) -> None:
    results = _run("polynomial_regression", tmp_path)
    assert isinstance(results["recovered"], bool) and "criterion" in results
    assert results["tasks"]
    for task in results["tasks"]:
        for key in (
            "found_in_top",
            "max_rel_error",
            "rms_rel_error",
            "spurious_mass",
            "slnn_test_rmse",
            "relu_test_rmse",
            "tanh_test_rmse",
            "verify_max_rel_error",
        ):
            assert _finite(task[key]), (task["task"], key)
        assert 0 <= task["found_in_top"] <= task["n_true_terms"]
        assert 0 <= task["spurious_mass"] <= 1
        assert task["verified"]
        assert task["poly_degree"] <= task["degree_bound"] == task["degree"]
        assert task["recovered"] == (task["recovered_seeds"] == task["n_seeds"])


def test_degree_study(tmp_path: Path) -> None:
    results = _run("degree_study", tmp_path)
    rows = results["rows"]
    assert {r["task"] for r in rows} == {"boston-no-b", "cubic-10"}
    assert len({r["basis"] for r in rows}) >= 2
    for row in rows:
        for key in ("degree_bound", "max_terms", "n_parameters", "diverged"):
            assert _finite(row[key]), (row["config"], key)
        assert row["degree_bound"] == math.prod(row["degrees"])
        n = 12 if row["task"] == "boston-no-b" else 10
        assert row["max_terms"] == math.comb(n + row["degree_bound"], row["degree_bound"])
        if row["diverged"] < row["n_seeds"]:
            assert _finite(row["test_error"]) and _finite(row["loss_curve_spread"])


def test_boston_sobol_indices(boston: dict) -> None:
    sob = boston["polynomial"]["sobol"]
    for distribution in ("uniform", "normal"):
        s = sob[distribution]
        assert len(s["total"]) == 13 and s["variance"] > 0
        assert all(0 <= s["first"][k] <= s["total"][k] + 1e-9 <= 1 + 1e-9 for k in s["total"])
        assert abs(sum(s["by_order"]) - 1) < 1e-6
