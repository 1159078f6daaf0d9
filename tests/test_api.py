"""The public surface: the names polynet promises, and what importing it loads."""

import subprocess
import sys

import polynet

CONTRACT = {
    "SLAF",
    "SLNN",
    "HybridNet",
    "ConvSLNN",
    "Basis",
    "expand",
    "verify",
    "count_terms",
    "count_parameters",
    "NetworkPolynomial",
    "MonomialIndex",
    "VerificationReport",
    "load",
    "save",
    "approximate",
    "from_network",
    "from_onnx",
    "SLNNRegressor",
    "SLNNClassifier",
    "PolynetError",
    "NotExpandableError",
    "ExpansionTooLargeError",
    "CheckpointError",
    "NotFittedError",
    "DataError",
    "TrainingDivergedError",
    "PolynetWarning",
    "sobol",
    "SobolIndices",
}


def test_all_is_the_contract():
    assert set(polynet.__all__) == CONTRACT
    for name in CONTRACT:
        assert getattr(polynet, name) is not None


def test_import_loads_no_optional_heavyweights():
    code = (
        "import sys, polynet; "
        "print(sorted(m for m in ('matplotlib', 'sklearn', 'flint', 'onnx', 'onnxruntime') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_documented_submodules_resolve_after_import_polynet():
    # README names: polynet.training.fit, polynet.export.expand_raw_units, polynet.data.load,
    # polynet.plots, polynet.report.report, polynet.analysis.analyze; loaded lazily.
    code = (
        "import sys, polynet; "
        "before = sorted(m for m in ('matplotlib', 'sklearn') if m in sys.modules); "
        "names = [polynet.training.fit, polynet.export.expand_raw_units, polynet.data.load, "
        "polynet.report.report, polynet.analysis.analyze, polynet.plots.plot_activations]; "
        "print(before, all(callable(f) for f in names))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[] True"


def test_estimate_is_reachable_from_the_expand_function():
    net = polynet.SLNN(3, [4], 2).eval()
    from importlib import import_module

    module = import_module("polynet.expansion.dispatch")
    assert polynet.poly.expand.estimate(net) == module.estimate(net)
