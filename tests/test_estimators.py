"""SLNNRegressor and SLNNClassifier: scikit-learn's estimator contract and what they promise.

scikit-learn's own checks run through ``parametrize_with_checks``; the other tests check each
promise against an independent reference: the polynomial against ``predict``, R² against
linear regression, ``clone`` against the constructor, our error against scikit-learn's.
"""

from __future__ import annotations

import pickle
import re
import sys
import types

import numpy as np
import pytest
import torch

pytest.importorskip("sklearn")

from sklearn.base import clone  # noqa: E402
from sklearn.datasets import make_blobs  # noqa: E402
from sklearn.exceptions import NotFittedError as SklearnNotFittedError  # noqa: E402
from sklearn.linear_model import LinearRegression  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

import polynet  # noqa: E402
from polynet import data, errors  # noqa: E402
from polynet.estimators import SLNNClassifier, SLNNRegressor  # noqa: E402

#: ``polynomial_(X)`` against ``predict(X)``: two float64 routes to the same function.
POLY_RTOL = 1e-9
#: Small settings that keep every fit in this module well under a second.
SMALL = {"hidden": 8, "epochs": 10, "device": "cpu", "random_state": 0}
NOT_FITTED = (
    "This {} instance is not fitted yet. Call 'fit' with appropriate arguments before using "
    "this estimator."
)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # Tiny networks: torch's intra-op threads only add synchronisation (on a busy 2-core
    # machine each step becomes tens of times slower).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# --------------------------------------------------------------------------------------------
# scikit-learn's estimator checks
# --------------------------------------------------------------------------------------------


def _expected_failed_checks(estimator) -> dict[str, str]:
    """Checks expected to fail, with the reason. None at the SMALL settings.

    With ``epochs=10`` every check passes. Checks that need a usable fit are the fragile
    ones: ``check_classifiers_train`` needs accuracy > 0.83 on blobs and fails at
    ``epochs=2`` (it passes from 4), ``check_regressors_train`` needs R² > 0.5. Checks
    that need pandas (``check_*_data_not_an_array``) or array-API support skip themselves.
    """
    return {}


@parametrize_with_checks(
    [SLNNRegressor(**SMALL), SLNNClassifier(**SMALL)],
    expected_failed_checks=_expected_failed_checks,
)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


# --------------------------------------------------------------------------------------------
# The polynomial equals the estimator
# --------------------------------------------------------------------------------------------


def _relative_error(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1.0)))


@pytest.mark.parametrize("standardize", [True, False])
def test_regressor_polynomial_equals_predict_on_boston(standardize):
    ds = data.load_boston()
    reg = SLNNRegressor(
        hidden=16,
        degrees=[3],
        epochs=20,
        standardize=standardize,
        device="cpu",
        random_state=0,
    ).fit(ds.X_train, ds.y_train)
    poly = reg.polynomial_
    assert poly.n_vars == 13 and poly.n_outputs == 1 and poly.degree <= 3
    for X in (ds.X_train, ds.X_test):
        predicted = reg.predict(X)
        assert _relative_error(poly(X).ravel(), predicted) < POLY_RTOL
    # Cached: expanded once, and a new fit starts a new one.
    assert reg.polynomial_ is poly
    reg.fit(ds.X_train[:200], ds.y_train[:200])
    assert reg.polynomial_ is not poly


def test_regressor_polynomial_multioutput_and_two_layers():
    ds = data.load_boston()
    Y = np.column_stack([ds.y_train, np.log(ds.y_train)])
    reg = SLNNRegressor(hidden=(6, 4), degrees=[2, 2], epochs=5, device="cpu", random_state=0)
    reg.fit(ds.X_train, Y)
    assert reg.predict(ds.X_test).shape == (102, 2)
    poly = reg.polynomial_
    assert poly.n_outputs == 2 and poly.degree_bound == 4
    assert _relative_error(poly(ds.X_test), reg.predict(ds.X_test)) < POLY_RTOL


@pytest.mark.parametrize("n_classes", [2, 3])
def test_classifier_polynomial_equals_decision_function(n_classes):
    X, y = make_blobs(200, n_features=4, centers=n_classes, random_state=0)
    X = X * [1.0, 10.0, 100.0, 0.1] + 5.0  # unequal scales: standardisation must fold in
    clf = SLNNClassifier(**SMALL).fit(X, y)
    logits = clf.decision_function(X)
    assert logits.shape == ((200,) if n_classes == 2 else (200, n_classes))
    poly = clf.polynomial_(X)
    assert _relative_error(poly.reshape(logits.shape), logits) < POLY_RTOL


def test_polynomial_in_float32_is_the_float32_network():
    ds = data.load_boston()
    reg = SLNNRegressor(**{**SMALL, "dtype": "float32"}).fit(ds.X_train, ds.y_train)
    assert next(reg.model_.parameters()).dtype == torch.float32
    # The polynomial is the float32 weights' exact function; predict rounds in float32.
    assert _relative_error(reg.polynomial_(ds.X_test).ravel(), reg.predict(ds.X_test)) < 1e-4


# --------------------------------------------------------------------------------------------
# It learns
# --------------------------------------------------------------------------------------------


def test_regressor_reaches_linear_regression_r2_on_diabetes():
    ds = data.load_diabetes()
    linear = LinearRegression().fit(ds.X_train, ds.y_train).score(ds.X_test, ds.y_test)
    reg = SLNNRegressor(hidden=8, epochs=30, device="cpu", random_state=0)
    score = reg.fit(ds.X_train, ds.y_train).score(ds.X_test, ds.y_test)
    assert linear > 0.55
    assert score > linear - 0.1
    assert reg.n_iter_ == 30 and len(reg.history_) == 30


def test_regressor_early_stopping_stops():
    ds = data.load_diabetes()
    reg = SLNNRegressor(
        hidden=8, epochs=500, early_stopping=True, patience=3, device="cpu", random_state=0
    ).fit(ds.X_train, ds.y_train)
    assert reg.n_iter_ < 500
    assert reg.history_[0]["val_loss"] is not None


def test_classifier_separates_xor_with_string_labels():
    ds = data.xor(400, random_state=0)
    names = np.array(["no", "yes"])
    clf = SLNNClassifier(hidden=8, epochs=40, device="cpu", random_state=0)
    clf.fit(ds.X_train, names[ds.y_train])
    assert list(clf.classes_) == ["no", "yes"]
    assert clf.model_[-1].out_features == 1  # binary: one logit
    assert clf.score(ds.X_test, names[ds.y_test]) > 0.95
    proba = clf.predict_proba(ds.X_test)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    np.testing.assert_array_equal(clf.classes_[proba.argmax(axis=1)], clf.predict(ds.X_test))
    np.testing.assert_allclose(np.exp(clf.predict_log_proba(ds.X_test)), proba, rtol=1e-12)
    # XOR is the sign of x0·x1: a degree-2 polynomial, and the expansion finds its term.
    top = clf.polynomial_.terms(top=1)[0]
    assert top.monomial == "x0 x1"


# --------------------------------------------------------------------------------------------
# The contract: parameters, fitted state, errors
# --------------------------------------------------------------------------------------------


def test_get_params_set_params_clone_round_trip():
    reg = SLNNRegressor(hidden=(4, 3), degrees=[2, 3], lr=0.05, random_state=7)
    params = reg.get_params()
    assert params["hidden"] == (4, 3) and params["degrees"] == [2, 3] and params["lr"] == 0.05
    twin = clone(reg)
    assert twin is not reg and twin.get_params() == params
    assert twin.set_params(l2=1e-3, basis="chebyshev") is twin
    assert twin.get_params() == {**params, "l2": 1e-3, "basis": "chebyshev"}
    assert SLNNRegressor(**twin.get_params()).get_params() == twin.get_params()
    with pytest.raises(ValueError, match="Invalid parameter 'width'"):
        reg.set_params(width=3)


def test_clone_of_fitted_estimator_is_unfitted_and_same_seed_same_model():
    X, y = make_blobs(60, n_features=3, centers=2, random_state=1)
    clf = SLNNClassifier(**SMALL).fit(X, y)
    twin = clone(clf)
    assert not hasattr(twin, "model_") and not hasattr(twin, "polynomial_")
    np.testing.assert_array_equal(twin.fit(X, y).decision_function(X), clf.decision_function(X))
    other = clone(clf).set_params(random_state=1).fit(X, y)
    assert not np.allclose(other.decision_function(X), clf.decision_function(X))


@pytest.mark.parametrize("cls", [SLNNRegressor, SLNNClassifier])
def test_unfitted_use_raises_polynets_not_fitted_error(cls, tmp_path):
    est = cls()
    message = NOT_FITTED.format(cls.__name__)
    calls = [lambda: est.predict([[0.0]]), lambda: est.polynomial_, est.plot_activations]
    if cls is SLNNClassifier:
        calls += [lambda: est.predict_proba([[0.0]]), lambda: est.decision_function([[0.0]])]
    for call in calls:
        with pytest.raises(errors.NotFittedError) as info:
            call()
        assert str(info.value) == message
        # One exception, every except clause a user may have written.
        assert isinstance(info.value, (SklearnNotFittedError, ValueError, AttributeError))
        assert isinstance(info.value, polynet.PolynetError)
    assert not hasattr(est, "polynomial_")


def test_fitted_estimator_pickles_and_keeps_predicting():
    ds = data.load_boston()
    reg = SLNNRegressor(**SMALL).fit(ds.X_train, ds.y_train)
    poly = reg.polynomial_
    again = pickle.loads(pickle.dumps(reg))
    np.testing.assert_array_equal(again.predict(ds.X_test), reg.predict(ds.X_test))
    assert _relative_error(again.polynomial_(ds.X_test), poly(ds.X_test)) == 0


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (
            {"epochs": 0},
            "The 'epochs' parameter of SLNNRegressor must be an integer >= 1, got 0.",
        ),
        (
            {"max_epochs": 0},
            "The 'max_epochs' parameter of SLNNRegressor must be None or an integer >= 1, got 0.",
        ),
        (
            {"lr": -1.0},
            "The 'lr' parameter of SLNNRegressor must be a finite number > 0, got -1.0.",
        ),
        ({"hidden": []}, "The 'hidden' parameter of SLNNRegressor must be an integer >= 1 or a "),
        ({"dtype": "float16"}, "The 'dtype' parameter of SLNNRegressor must be 'float32' or "),
        ({"batch_size": 1}, "The 'batch_size' parameter of SLNNRegressor must be an integer >= 2"),
        ({"validation_fraction": 1.0}, "The 'validation_fraction' parameter of SLNNRegressor "),
    ],
)
def test_bad_parameters_are_refused_in_fit_not_init(params, message):
    reg = SLNNRegressor(**params)  # __init__ stores, nothing else
    with pytest.raises(ValueError, match=re.escape(message)):
        reg.fit([[0.0], [1.0], [2.0]], [0.0, 1.0, 2.0])


def test_one_class_is_refused_and_the_previous_fit_survives():
    X, y = make_blobs(60, n_features=2, centers=2, random_state=0)
    clf = SLNNClassifier(**SMALL).fit(X, y)
    before = clf.decision_function(X)
    with pytest.raises(ValueError, match="needs samples of at least 2 classes, got 1 class"):
        clf.fit(X[:3] * 100, ["a", "a", "a"])
    assert list(clf.classes_) == [0, 1]
    np.testing.assert_array_equal(clf.decision_function(X), before)


def test_feature_names_become_polynomial_variables():
    pd = pytest.importorskip("pandas")
    ds = data.load_diabetes()
    frame = pd.DataFrame(ds.X_train, columns=ds.feature_names)
    reg = SLNNRegressor(**SMALL).fit(frame, ds.y_train)
    assert list(reg.feature_names_in_) == ds.feature_names
    assert list(reg.polynomial_.variables) == ds.feature_names


# --------------------------------------------------------------------------------------------
# Plots and the package surface
# --------------------------------------------------------------------------------------------


def test_plot_activations_delegates_with_standardised_inputs(monkeypatch):
    calls = []
    fake = types.ModuleType("polynet.plots")
    fake.plot_activations = lambda model, x, path, **kw: calls.append((model, x, path, kw))
    monkeypatch.setitem(sys.modules, "polynet.plots", fake)
    monkeypatch.setattr(polynet, "plots", fake, raising=False)
    X = np.array([[1.0, 10.0], [3.0, 30.0], [5.0, 50.0]])
    reg = SLNNRegressor(**SMALL).fit(X, [0.0, 1.0, 2.0])
    reg.plot_activations("out.png", X=X, max_panels=4)
    ((model, x, path, kw),) = calls
    assert model is reg.model_ and path == "out.png" and kw == {"max_panels": 4}
    np.testing.assert_allclose(x, reg.scaler_.transform(X))


def test_plot_activations_draws(tmp_path):
    pytest.importorskip("matplotlib")
    plots = pytest.importorskip("polynet.plots")
    assert hasattr(plots, "plot_activations")
    ds = data.xor(100, random_state=0)
    clf = SLNNClassifier(hidden=4, epochs=2, device="cpu", random_state=0)
    clf.fit(ds.X_train, ds.y_train)
    clf.plot_activations(tmp_path / "act.png", X=ds.X_train)
    assert (tmp_path / "act.png").stat().st_size > 0


def test_estimators_load_lazily_from_the_package():
    assert {"SLNNRegressor", "SLNNClassifier"} <= set(polynet.__all__)
    assert polynet.SLNNRegressor is SLNNRegressor and polynet.SLNNClassifier is SLNNClassifier
    # tests/test_api.py checks in a fresh process that `import polynet` loads no sklearn.
    with pytest.raises(AttributeError, match="has no attribute 'SLNNRegresor'"):
        polynet.SLNNRegresor  # noqa: B018


def test_max_epochs_is_a_deprecated_alias_of_epochs():
    X = np.random.RandomState(0).randn(40, 2)
    y = X[:, 0] * X[:, 1]
    with pytest.warns(FutureWarning, match="max_epochs=...\\) is deprecated; use epochs"):
        old = SLNNRegressor(hidden=4, max_epochs=3, device="cpu", random_state=0).fit(X, y)
    new = SLNNRegressor(hidden=4, epochs=3, device="cpu", random_state=0).fit(X, y)
    assert len(old.history_) == len(new.history_) == 3
    np.testing.assert_array_equal(old.predict(X), new.predict(X))
