"""Export: a checkpoint's polynomial in the data's original units, and the files that carry it.

:func:`raw_units_model` folds the standardisers a checkpoint was trained with into its
network (inputs, and regression targets, in their original units); :func:`expand_raw_units`
expands that network and names the variables after the data set's features.
:func:`write_bundle` writes a polynomial with its coefficient table, LaTeX and
:func:`summary`. The ``polynet expand`` command is these functions and printing.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from numpy.typing import ArrayLike

from polynet.atomic import atomic_dir, atomic_write, write_bytes_atomic
from polynet.errors import DataError
from polynet.polynomial.network_polynomial import NetworkPolynomial

logger = logging.getLogger(__name__)

if TYPE_CHECKING:
    from torch import nn

    from polynet.checkpoint import Checkpoint

__all__ = [
    "raw_units_model",
    "expand_raw_units",
    "name_variables",
    "write_bundle",
    "write_latex",
    "summary",
    "scaling_note",
    "raw_units_condition",
    "BUNDLE_FILES",
]

#: The files of an export bundle directory.
BUNDLE_FILES = (
    "polynomial.npz",
    "coefficients.csv",
    "polynomial.tex",
    "summary.json",
    "polynomial.onnx",
    "polynomial_numpy.py",
)


def _checkpoint(checkpoint: Checkpoint | str | os.PathLike[str]) -> Checkpoint:
    from polynet.checkpoint import load_checkpoint

    # A Checkpoint or a polynet.model_source.ModelSource: a model and its metadata.
    if hasattr(checkpoint, "model") and hasattr(checkpoint, "metadata"):
        return checkpoint
    return load_checkpoint(checkpoint)


def raw_units_model(
    checkpoint: Checkpoint | str | os.PathLike[str],
) -> tuple[nn.Module, list[str]]:
    """The checkpoint's network with its standardisers folded in, and the feature names.

    The returned model takes the original features and, for a regression model trained on
    standardised targets, returns the target in its original units. The checkpoint's model
    is not changed (it is wrapped, not copied).

    Raises
    ------
    DataError
        The checkpoint records no standardisation.
    """
    from torch import nn

    from polynet.data import Standardizer

    ckpt = _checkpoint(checkpoint)
    info = ckpt.metadata.get("dataset") or {}
    if not info.get("scaler") and not info.get("target_scaler"):
        raise DataError(
            "raw units need the standardisation the model was trained with, and this "
            "checkpoint records none (trained with --no-standardize?); expand the model in "
            "its own inputs instead."
        )
    layers = []
    if info.get("scaler"):
        layers.append(Standardizer.from_dict(info["scaler"]).as_linear())
    layers.append(ckpt.model)
    if info.get("target_scaler"):
        layers.append(Standardizer.from_dict(info["target_scaler"]).as_linear(inverse=True))
    return nn.Sequential(*layers).eval(), list(info.get("feature_names") or [])


def expand_raw_units(
    checkpoint: Checkpoint | str | os.PathLike[str],
    *,
    exact: Any = False,
    inputs: Sequence[int] | None = None,
    fixed: ArrayLike | Mapping[int, float] | None = None,
    **expand_options: Any,
) -> NetworkPolynomial:
    """:func:`polynet.expand` of :func:`raw_units_model`: the polynomial in the original
    features (named after them when the checkpoint records their names) and target units.

    ``exact``, ``inputs``, ``fixed`` and ``expand_options`` (``max_memory``, ``progress``,
    ``device``) are passed to :func:`polynet.expand`; ``fixed`` is in raw units too. The
    result has ``raw_units=True`` and the network's own parameter count.
    """
    from polynet.expansion.dispatch import expand

    ckpt = _checkpoint(checkpoint)
    model, names = raw_units_model(ckpt)
    poly = expand(model, exact=exact, inputs=inputs, fixed=fixed, **expand_options)
    changes: dict[str, Any] = {
        "raw_units": True,
        "n_network_parameters": sum(p.numel() for p in ckpt.model.parameters()),
    }
    return name_variables(poly.replace(**changes), names)


def name_variables(poly: NetworkPolynomial, feature_names: Sequence[str]) -> NetworkPolynomial:
    """``poly`` with its variables named after the network inputs' features.

    One naming scheme everywhere (terms, CSV, LaTeX, figures): a feature's name when the data
    set records one for every network input, ``x_i`` (the input number) otherwise. A slice
    polynomial takes the names of the inputs it is in.

    Examples
    --------
    >>> import polynet
    >>> p = polynet.expand(polynet.SLNN(2, [2], 1).eval())
    >>> name_variables(p, ["age", "dose"]).variables, name_variables(p, ["age"]).variables
    (('age', 'dose'), ('x0', 'x1'))
    """
    if not isinstance(poly, NetworkPolynomial):  # sparse, factored, stored: names as made
        return poly
    names = [str(n) for n in feature_names]
    inputs = list(poly.slice.inputs) if poly.slice is not None else None
    n_inputs = poly.slice.n_network_inputs if poly.slice is not None else poly.n_vars
    if not names or len(names) != n_inputs or len(set(names)) != len(names):
        return poly
    return poly.replace(variables=names if inputs is None else [names[i] for i in inputs])


def scaling_note(metadata: Mapping[str, Any] | None, *, raw_units: bool = False) -> str:
    """One line on the units of the polynomial's variables and output (for the CLI)."""
    from polynet.standalone import scaling_note as note

    return note(dict(metadata or {}), raw_units=raw_units)


def raw_units_condition(poly: NetworkPolynomial, source: Any, X: ArrayLike | None) -> Any:
    """:func:`polynet.standalone.raw_units_condition` of a raw-unit polynomial on the box of
    ``X`` (points in the model's standardised inputs, as ``polynet.model_source.points`` gives
    them; None: the box of the data set the metadata names), against the target's scale.

    Raises
    ------
    DataError
        No data to take the box from.
    """
    import numpy as np

    from polynet.data import Standardizer
    from polynet.standalone import raw_units_condition as condition

    info = dict(_checkpoint(source).metadata.get("dataset") or {})
    if X is None:
        raise DataError(
            "the raw-unit condition needs the data's box, and no data is known; pass --data."
        )
    X = np.asarray(X, dtype=np.float64)
    if info.get("scaler"):
        X = Standardizer.from_dict(info["scaler"]).inverse_transform(X)
    if poly.slice is not None:
        X = X[:, list(poly.slice.inputs)]
    scale = None
    if info.get("target_scaler"):
        scale = float(np.max(np.atleast_1d(info["target_scaler"]["scale"])))
    return condition(poly, X.min(0), X.max(0), scale, X)


def write_latex(poly: NetworkPolynomial, path: str | os.PathLike[str], top: int | None) -> Path:
    """Write the LaTeX of every output, the ``top`` largest terms of each (all if None)."""
    text = "\n".join(
        f"p_{{{o}}}(x) = {poly.to_latex(output=o, top=top)}" for o in range(poly.n_outputs)
    )
    return write_bytes_atomic(Path(path), (text + "\n").encode())


def summary(poly: NetworkPolynomial) -> dict[str, Any]:
    """The facts of a polynomial as a JSON-ready dict (what ``summary.json`` holds)."""
    out: dict[str, Any] = {
        "n_vars": poly.n_vars,
        "n_outputs": poly.n_outputs,
        "variables": list(poly.variables),
        "degree": poly.degree,
        "degree_bound": poly.degree_bound,
        "n_terms": poly.n_terms,
        "max_terms": poly.max_terms,
        "n_network_parameters": poly.n_network_parameters,
        "exact": poly.exact,
        "raw_units": poly.raw_units,
    }
    if poly.slice is not None:
        out["slice"] = poly.slice.as_dict()
    out.update({k: v for k, v in poly.provenance.as_dict().items() if v is not None})
    return out


def write_bundle(
    poly: NetworkPolynomial,
    out: str | os.PathLike[str],
    *,
    metadata: Mapping[str, Any] | None = None,
) -> list[Path]:
    """Write ``poly`` to ``out`` and return the paths written.

    A ``.npz`` or ``.json`` path gets the polynomial alone (:meth:`NetworkPolynomial.save`);
    any other path is a directory that gets :data:`BUNDLE_FILES`: the polynomial, the
    non-zero coefficients as CSV (one exponent column per variable, one coefficient column
    per output; ``p/q`` rationals for an exact polynomial), the LaTeX of every output,
    :func:`summary` with the input and output ``scaling`` of ``metadata`` (the model's
    checkpoint metadata), a float64 ONNX graph of the polynomial (when the ``onnx`` package
    is installed) and ``polynomial_numpy.py``, an evaluator that imports only numpy. The
    bundle is written to a temporary sibling and swapped into place whole
    (:func:`polynet.atomic.atomic_dir`): an interrupted write leaves the earlier bundle as it
    was; other files in the directory stay.
    """
    target = Path(out)
    if target.suffix in (".npz", ".json"):
        return [poly.save(target)]
    if target.exists() and not target.is_dir():
        raise DataError(f"{target} is a file; give a directory or a .npz/.json path.")
    with atomic_dir(target, replaces=BUNDLE_FILES) as folder:
        written = _write_bundle_files(poly, folder, metadata)
    return [target / path.relative_to(folder) for path in written]


def _write_bundle_files(
    poly: NetworkPolynomial, target: Path, metadata: Mapping[str, Any] | None
) -> list[Path]:
    from polynet.standalone import numpy_source, scaling

    written = [poly.save(target / "polynomial.npz")]
    written.append(_write_csv(poly, target / "coefficients.csv"))
    tex = "\n".join(f"p_{{{o}}}(x) = {poly.to_latex(output=o)}" for o in range(poly.n_outputs))
    written.append(write_bytes_atomic(target / "polynomial.tex", (tex + "\n").encode()))
    facts = summary(poly)
    facts["scaling"] = scaling(dict(metadata or {}), raw_units=poly.raw_units)
    facts["coefficients_csv"] = "p/q rationals" if poly.exact else "float64 (repr, round-trips)"
    text = json.dumps(facts, indent=2) + "\n"
    written.append(write_bytes_atomic(target / "summary.json", text.encode()))
    onnx_model = _onnx_or_none(poly)
    if onnx_model is not None:
        blob = onnx_model.SerializeToString()
        written.append(write_bytes_atomic(target / "polynomial.onnx", blob))
    code = numpy_source(poly, dict(metadata or {}))
    written.append(write_bytes_atomic(target / "polynomial_numpy.py", code.encode()))
    return written


def _onnx_or_none(poly: NetworkPolynomial) -> Any:
    try:
        import onnx  # noqa: F401
    except ImportError:
        logger.info("onnx is not installed: the bundle has no polynomial.onnx")
        return None
    from polynet.standalone import to_onnx

    return to_onnx(poly)


def _write_csv(poly: NetworkPolynomial, path: Path) -> Path:
    coef = poly.coefficients.cpu().numpy()
    keep = (coef != 0).any(0)
    with atomic_write(path) as fh:
        text = io.TextIOWrapper(fh, newline="", encoding="utf-8")
        writer = csv.writer(text)
        writer.writerow([*poly.variables, *(f"coefficient_{o}" for o in range(poly.n_outputs))])
        if poly.exact:  # the rationals themselves, not their float64 rounding
            fractions = poly.exact_coefficients[:, keep].T
            for row, values in zip(poly.exponents[keep], fractions):
                writer.writerow(
                    [*row.tolist(), *(f"{v.numerator}/{v.denominator}" for v in values)]
                )
        else:
            for row, values in zip(poly.exponents[keep], coef[:, keep].T):
                writer.writerow([*row.tolist(), *(repr(float(v)) for v in values)])
        text.flush()
        text.detach()  # leave fh open for atomic_write to sync and close
    return path
