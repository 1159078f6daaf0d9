"""polynet: neural networks with learned polynomial activations, collapsed into one polynomial.

The public API is the names in ``__all__``; :mod:`polynet.training`, :mod:`polynet.data`,
:mod:`polynet.plots`, :mod:`polynet.export`, :mod:`polynet.report` and :mod:`polynet.analysis`
are used as modules (``polynet.training.fit`` works after ``import polynet``; they are imported
on first use). Importing polynet loads neither matplotlib, scikit-learn nor python-flint.
"""

from __future__ import annotations

from polynet.analysis.sobol import SobolIndices, sobol
from polynet.approximate import approximate, from_network
from polynet.bases import Basis
from polynet.errors import (
    CheckpointError,
    DataError,
    ExpansionTooLargeError,
    NotExpandableError,
    NotFittedError,
    PolynetError,
    PolynetWarning,
    TrainingDivergedError,
)
from polynet.expansion.count import count_parameters, count_terms
from polynet.expansion.dispatch import expand
from polynet.model_source import load, save
from polynet.nets import SLNN, ConvSLNN, HybridNet
from polynet.polynomial.index import MonomialIndex
from polynet.polynomial.network_polynomial import NetworkPolynomial
from polynet.slaf import SLAF
from polynet.verify import VerificationReport, verify

__version__ = "0.1.0"

__all__ = [
    "SLAF",
    "SLNN",
    "HybridNet",
    "ConvSLNN",
    "Basis",
    "load",
    "save",
    "expand",
    "verify",
    "count_terms",
    "count_parameters",
    "NetworkPolynomial",
    "MonomialIndex",
    "VerificationReport",
    "PolynetError",
    "NotExpandableError",
    "ExpansionTooLargeError",
    "CheckpointError",
    "NotFittedError",
    "DataError",
    "TrainingDivergedError",
    "PolynetWarning",
    "approximate",
    "from_network",
    "from_onnx",
    "sobol",
    "SobolIndices",
    "SLNNRegressor",
    "SLNNClassifier",
]

_ESTIMATORS = ("SLNNRegressor", "SLNNClassifier")
#: Submodules the README uses as ``polynet.<name>``, imported on first access (they load
#: matplotlib or scikit-learn only when used).
_SUBMODULES = (
    "training",
    "data",
    "plots",
    "export",
    "report",
    "analysis",
    "checkpoint",
    "expansion",
    "polynomial",
    "poly",
)


def from_onnx(model: object, *, input_shape: tuple[int, ...] | None = None) -> object:
    """An ONNX model as a module that :func:`expand` takes (:func:`polynet.onnx.from_onnx`)."""
    # Imported on call: `import polynet` must not load the onnx package.
    from polynet.onnx import from_onnx as _from_onnx

    return _from_onnx(model, input_shape=input_shape)


def __getattr__(name: str) -> object:
    # The estimators need scikit-learn, which `import polynet` must not load: import them on
    # first access (PEP 562).
    if name in _ESTIMATORS:
        from polynet import estimators

        return getattr(estimators, name)
    if name in _SUBMODULES:
        import importlib

        return importlib.import_module(f"polynet.{name}")
    raise AttributeError(f"module 'polynet' has no attribute {name!r}")
