"""polynet 0.2's name for the expansion and the polynomial value; kept so old code runs.

The code now lives in two packages: :mod:`polynet.expansion` (trace, ops table, lowering,
engines, ``expand``) and :mod:`polynet.polynomial` (the index, the value types and what is
computed from them). ``polynet.poly.<module>`` still imports, as an alias of the module's new
home, with a :class:`DeprecationWarning`; the names below stay here without one.

Conventions, fixed here once:

- univariate coefficients (an SLAF's ``polynomial()``) run low to high, as in numpy;
- monomials are in graded order, scikit-learn's ``PolynomialFeatures`` column order
  (``1, x0, x1, x0^2, x0 x1, x1^2, ...``), and are named like ``x0^2 x1``.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import warnings
from types import ModuleType

from polynet.expansion.dispatch import expand
from polynet.polynomial.index import MonomialIndex
from polynet.polynomial.network_polynomial import NetworkPolynomial, Provenance, Slice, Term
from polynet.polynomial.sparse_polynomial import SparsePolynomial

__all__ = [
    "expand",
    "MonomialIndex",
    "NetworkPolynomial",
    "SparsePolynomial",
    "Term",
    "Slice",
    "Provenance",
]

#: Each 0.2 module of ``polynet.poly`` and its new home.
MOVED = {
    "calculus": "polynet.polynomial.calculus",
    "count": "polynet.expansion.count",
    "dense": "polynet.expansion.dense",
    "evaluate": "polynet.polynomial.evaluate",
    "exact": "polynet.polynomial.exact",
    "expand": "polynet.expansion.dispatch",
    "factored": "polynet.expansion.factored",
    "field_expand": "polynet.expansion.field_expand",
    "finite": "polynet.expansion.finite",
    "fold": "polynet.expansion.fold",
    "graph": "polynet.expansion.graph",
    "index": "polynet.polynomial.index",
    "inputs": "polynet.expansion.inputs",
    "modular": "polynet.expansion.modular",
    "monomial_codes": "polynet.polynomial.monomial_codes",
    "network": "polynet.expansion.network",
    "polynomial": "polynet.polynomial.network_polynomial",
    "receptive": "polynet.expansion.receptive",
    "refusal": "polynet.expansion.refusal",
    "residue_kernels": "polynet.expansion.residue_kernels",
    "rules": "polynet.expansion.rules",
    "sparse": "polynet.expansion.ring_walk",
    "sparse_polynomial": "polynet.polynomial.sparse_polynomial",
    "split_eval": "polynet.polynomial.split_eval",
    "store": "polynet.polynomial.store",
    "trace": "polynet.expansion.trace",
    "truncated": "polynet.expansion.truncated",
    "truncation": "polynet.polynomial.truncation",
    "uncertainty": "polynet.polynomial.uncertainty",
}


def _moved(name: str) -> ModuleType:
    target = MOVED[name]
    warnings.warn(
        f"polynet.poly.{name} moved to {target}; import it from there "
        "(the old name will be removed in polynet 0.4).",
        DeprecationWarning,
        stacklevel=3,
    )
    return importlib.import_module(target)


class _AliasLoader(importlib.abc.Loader):
    """Loads ``polynet.poly.<old>`` as the very module object at its new home."""

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        return _moved(spec.name.rsplit(".", 1)[1])

    def exec_module(self, module: ModuleType) -> None:
        # Keep `polynet.poly.expand` the function: the import system binds the loaded submodule
        # as an attribute of its parent package right after this.
        pass


class _AliasFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname: str, path=None, target=None):
        prefix, _, name = fullname.rpartition(".")
        if prefix != __name__ or name not in MOVED:
            return None
        return importlib.machinery.ModuleSpec(fullname, _AliasLoader())


if not any(isinstance(f, _AliasFinder) for f in sys.meta_path):
    sys.meta_path.insert(0, _AliasFinder())


class _Package(ModuleType):
    def __setattr__(self, name: str, value) -> None:
        # `import polynet.poly.expand` must not rebind the public function `expand` to a module.
        if name in __all__ and isinstance(value, ModuleType):
            return
        super().__setattr__(name, value)


def __getattr__(name: str):
    if name in MOVED:
        return _moved(name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


sys.modules[__name__].__class__ = _Package
