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
