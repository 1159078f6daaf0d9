"""Optional dependencies: import one, or say in one line which extra installs it.

Each optional package polynet can use is listed in :data:`EXTRAS` with the
``pip install "polynet-slaf[...]"`` extra that brings it. :func:`require` imports it or raises
:class:`~polynet.errors.MissingExtraError` (a :class:`PolynetError` and an :class:`ImportError`)
whose message names the feature, the package and the command, chained to the original
ImportError; the CLI prints that one line and exits 1.

Examples
--------
>>> require("numpy", "evaluating").__name__
'numpy'
>>> EXTRAS["zarr"]
'scale'
"""

from __future__ import annotations

import sys
from types import ModuleType

from polynet.errors import MissingExtraError

__all__ = ["EXTRAS", "require", "install_hint"]

#: import name -> the extra of ``polynet-slaf`` that installs it.
EXTRAS: dict[str, str] = {
    "zarr": "scale",
    "dask": "scale",
    "distributed": "scale",
    "flint": "flint",
    "sklearn": "sklearn",
    "onnx": "onnx",
    "onnxruntime": "onnx",
    "numba": "fast",
}

#: import name -> the name pip knows it by, where the two differ.
_PIP_NAMES = {"flint": "python-flint", "sklearn": "scikit-learn"}


def install_hint(module: str) -> str:
    """``pip install "polynet-slaf[extra]"`` for ``module`` (its pip name when it has no extra)."""
    extra = EXTRAS.get(module)
    if extra is None:
        return f"pip install {_PIP_NAMES.get(module, module)}"
    return f'pip install "polynet-slaf[{extra}]"'


def require(module: str, feature: str, alternative: str | None = None) -> ModuleType:
    """Import ``module`` for ``feature``, or raise one line that says what to install.

    Parameters
    ----------
    module : str
        The import name, e.g. ``"zarr"`` or ``"sklearn.datasets"``.
    feature : str
        What needs it, as the user asked for it, e.g. ``"store="`` or ``"--dataset diabetes"``.
    alternative : str or None, default=None
        Another way to get the result without the package, appended to the message.

    Returns
    -------
    module

    Raises
    ------
    MissingExtraError
        When the module (or its top-level package) cannot be imported.
    """
    try:
        # builtins.__import__, not importlib: a hook or a test that replaces the import
        # statement's machinery sees this import too.
        __import__(module)
        return sys.modules[module]
    except ImportError as exc:
        top = module.split(".")[0]
        pip_name = _PIP_NAMES.get(top, top)
        tail = f" or {alternative}" if alternative else ""
        raise MissingExtraError(
            f"{feature} needs {pip_name}, which is not installed; install it with "
            f"{install_hint(top)}{tail}.",
            module=top,
            extra=EXTRAS.get(top),
        ) from exc
