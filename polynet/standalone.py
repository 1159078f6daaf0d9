"""The polynomial in forms that need no polynet: ONNX, a NumPy file, rationals, its scaling.

:func:`to_onnx` builds a float64 ONNX graph of a polynomial: the monomials in graded order by
``Gather`` and ``Mul`` (each monomial is its parent monomial times one variable, as
:meth:`NetworkPolynomial.monomials` computes them), then one ``MatMul`` with the coefficient
matrix. :func:`numpy_source` writes a single Python file that imports only numpy (and the
standard library) and evaluates the polynomial, with ``predict(features)`` applying the input
and output standardisation explicitly. :func:`scaling` is the standardisation a model was
trained with, as recorded in its metadata; :func:`raw_units_condition` says how badly a
raw-unit polynomial cancels on the data's box, and warns when float32 evaluation would lose
more than 1 % of the output's scale.
"""

from __future__ import annotations

import base64
import warnings
import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from polynet.errors import PolynetWarning
from polynet.polynomial.network_polynomial import NetworkPolynomial

__all__ = [
    "to_onnx",
    "numpy_source",
    "scaling",
    "scaling_note",
    "RawUnitsCondition",
    "raw_units_condition",
    "FLOAT32_LOSS_LIMIT",
]

#: float32 evaluation may lose at most this fraction of the output's scale without a warning.
FLOAT32_LOSS_LIMIT = 0.01
_FLOAT32_EPS = float(np.finfo(np.float32).eps) / 2  # unit roundoff


# --------------------------------------------------------------------------------------------
# Scaling
# --------------------------------------------------------------------------------------------


def scaling(metadata: dict[str, Any] | None, *, raw_units: bool = False) -> dict[str, Any]:
    """The input and output standardisation of a model, from its metadata (JSON-ready).

    ``{"inputs": {"features", "mean", "scale"} or None, "output": {"target", "mean", "scale"}
    or None, "variables": "standardised" | "raw"}``; with ``raw_units`` the polynomial already
    takes raw features and returns raw targets (the scalers are listed, not to be applied).
    """
    info = dict((metadata or {}).get("dataset") or {})
    scaler, target = info.get("scaler"), info.get("target_scaler")
    names = info.get("feature_names")
    params = info.get("params") or {}
    out: dict[str, Any] = {
        "inputs": None
        if not scaler
        else {"features": names, "mean": scaler["mean"], "scale": scaler["scale"]},
        "output": None
        if not target
        else {
            "target": params.get("target") or info.get("target_name"),
            "mean": target["mean"],
            "scale": target["scale"],
        },
        "variables": "raw" if raw_units or not scaler else "standardised",
        "applied_in_polynomial": bool(raw_units),
    }
    if raw_units:
        out["formula"] = "y = p(features): the scaling is folded into the coefficients"
    elif scaler or target:
        parts = []
        if scaler:
            parts.append("x_i = (feature_i - inputs.mean[i]) / inputs.scale[i]")
        parts.append(
            "y = p(x) * output.scale + output.mean" if target else "y = p(x) (output not scaled)"
        )
        out["formula"] = "; ".join(parts)
    return out


def scaling_note(metadata: dict[str, Any] | None, *, raw_units: bool = False) -> str:
    """One CLI line on the units of the polynomial's variables and output."""
    s = scaling(metadata, raw_units=raw_units)
    if raw_units:
        return (
            "units        raw: the polynomial takes the original features and returns the "
            "target in its units"
        )
    if s["inputs"] is None and s["output"] is None:
        return "units        the model's own inputs and outputs (no standardisation recorded)"
    parts = []
    if s["inputs"] is not None:
        parts.append("inputs standardised: each variable is (feature - mean) / scale")
    if s["output"] is not None:
        o = s["output"]
        mean = float(np.asarray(o["mean"]).reshape(-1)[0])
        scale = float(np.asarray(o["scale"]).reshape(-1)[0])
        parts.append(
            f"output standardised too: p(x) = ({o['target'] or 'target'} - {mean:.6g}) / "
            f"{scale:.6g}"
        )
    return (
        "units        "
        + "; ".join(parts)
        + " (means and scales in summary.json; --raw-units for the original units)"
    )


# --------------------------------------------------------------------------------------------
# ONNX
# --------------------------------------------------------------------------------------------


def _needed_rows(poly: NetworkPolynomial) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows of the non-zero terms and all their graded ancestors, sorted, with parent/var."""
    parent, var = poly.index.parents()
    needed = poly._nonzero().numpy().any(0).copy()
    needed[0] = True
    degrees = poly.index.degrees
    for d in range(poly.index.degree, 0, -1):  # a monomial needs its parent, one degree down
        needed[parent[np.flatnonzero(needed & (degrees == d))]] = True
    rows = np.flatnonzero(needed)
    return rows, parent[rows].astype(np.int64), var[rows].astype(np.int64)


def to_onnx(poly: NetworkPolynomial, *, opset: int = 17) -> Any:
    """A float64 ONNX model computing ``poly(x)``: input ``x`` (N, n_vars), output ``y``
    (N, n_outputs).

    Monomials are built degree by degree over the non-zero terms and their graded ancestors:
    the block of degree d is a ``Gather`` of its parents from the block of degree d - 1 times
    a ``Gather`` of one variable each, and its ``MatMul`` with its coefficients is added to
    ``y``; only two blocks are alive at a time. Needs the ``onnx`` package.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rows, parent, var = _needed_rows(poly)
    degrees = poly.index.degrees[rows]
    starts = np.searchsorted(degrees, np.arange(poly.index.degree + 2))
    position = np.searchsorted(rows, parent)  # parent's position among the kept rows
    coef = poly.coefficients.detach().cpu().numpy()[:, rows].T.copy()  # (m, n_outputs)
    inits = [
        numpy_helper.from_array(np.array([1], dtype=np.int64), "one_i"),
        numpy_helper.from_array(np.array(1.0, dtype=np.float64), "one_f"),
        numpy_helper.from_array(coef[:1], "coef_0"),
    ]
    nodes = [
        helper.make_node("Shape", ["x"], ["x_shape"], start=0, end=1),
        helper.make_node("Concat", ["x_shape", "one_i"], ["ones_shape"], axis=0),
        helper.make_node("Expand", ["one_f", "ones_shape"], ["block_0"]),
        helper.make_node("MatMul", ["block_0", "coef_0"], ["y_0"]),
    ]
    sums = ["y_0"]
    for d in range(1, poly.index.degree + 1):
        a, b = int(starts[d]), int(starts[d + 1])
        if a == b:
            break
        local = (position[a:b] - starts[d - 1]).astype(np.int64)  # within block d - 1
        inits.append(numpy_helper.from_array(local, f"parent_{d}"))
        inits.append(numpy_helper.from_array(var[a:b].astype(np.int64), f"var_{d}"))
        inits.append(numpy_helper.from_array(coef[a:b], f"coef_{d}"))
        nodes.append(
            helper.make_node("Gather", [f"block_{d - 1}", f"parent_{d}"], [f"p_{d}"], axis=1)
        )
        nodes.append(helper.make_node("Gather", ["x", f"var_{d}"], [f"v_{d}"], axis=1))
        nodes.append(helper.make_node("Mul", [f"p_{d}", f"v_{d}"], [f"block_{d}"]))
        nodes.append(helper.make_node("MatMul", [f"block_{d}", f"coef_{d}"], [f"y_{d}"]))
        sums.append(f"y_{d}")
    nodes.append(helper.make_node("Sum", sums, ["y"]))
    graph = helper.make_graph(
        nodes,
        "network_polynomial",
        [helper.make_tensor_value_info("x", TensorProto.DOUBLE, ["N", poly.n_vars])],
        [helper.make_tensor_value_info("y", TensorProto.DOUBLE, ["N", poly.n_outputs])],
        inits,
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="polynet"
    )
    model.doc_string = (
        f"polynet NetworkPolynomial: {poly.n_outputs} output(s) in {poly.n_vars} variables "
        f"{list(poly.variables)}, degree {poly.degree}, {poly.n_terms} terms; float64."
    )
    model.ir_version = min(model.ir_version, 9)
    onnx.checker.check_model(model)
    return model


# --------------------------------------------------------------------------------------------
# NumPy
# --------------------------------------------------------------------------------------------

_NUMPY_TEMPLATE = '''"""A polynomial exported by polynet: evaluate it with NumPy alone.

{doc}

    import numpy as np, polynomial_numpy as p
    p.polynomial(x)        # x: (N, {n_vars}) polynomial variables {variables_note}
    p.predict(features)    # features: (N, {n_vars}) in the original units{predict_note}

Monomials are built in graded order, each one its PARENT monomial times one variable VAR,
so a point costs one multiplication per monomial; TERMS lists each monomial's exponents.
"""

import base64
import zlib

import numpy as np

VARIABLES = {variables!r}
N_OUTPUTS = {n_outputs}
DEGREE = {degree}
#: Input standardisation applied by predict(): x = (features - INPUT_MEAN) / INPUT_SCALE.
INPUT_MEAN = {input_mean}
INPUT_SCALE = {input_scale}
#: Output standardisation undone by predict(): y = p(x) * OUTPUT_SCALE + OUTPUT_MEAN.
OUTPUT_MEAN = {output_mean}
OUTPUT_SCALE = {output_scale}


def _array(blob, dtype, shape):
    return np.frombuffer(zlib.decompress(base64.b64decode(blob)), dtype=dtype).reshape(shape)


#: Monomial i (i >= 1) is monomial PARENT[i] times variable VAR[i]; monomial 0 is 1.
PARENT = _array({parent!r}, np.int64, ({n_rows},))
VAR = _array({var!r}, np.int64, ({n_rows},))
#: Exponents of each monomial (one row per monomial, one column per variable).
TERMS = _array({exponents!r}, np.int16, ({n_rows}, {n_vars}))
#: Coefficients of each monomial, one column per output (float64).
COEFFICIENTS = _array({coefficients!r}, np.float64, ({n_rows}, {n_outputs}))
_STARTS = np.searchsorted(TERMS.sum(1), np.arange(DEGREE + 2))  # graded: degree blocks


def polynomial(x, chunk=1 << 22):
    """p(x) for points x of shape (N, {n_vars}) in the polynomial's variables: (N, {n_outputs})."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 1:
        x = x[None, :]
    if x.ndim != 2 or x.shape[1] != len(VARIABLES):
        raise ValueError(f"x must have shape (N, {{len(VARIABLES)}}), got {{x.shape}}")
    out = np.empty((x.shape[0], N_OUTPUTS))
    step = max(1, chunk // len(PARENT))
    for start in range(0, x.shape[0], step):
        xs = x[start : start + step].T.copy()  # (variables, points): gathers read rows
        mono = np.empty((len(PARENT), xs.shape[1]))
        mono[0] = 1.0
        for d in range(1, DEGREE + 1):  # degree d from degree d - 1: one block at a time
            a, b = _STARTS[d], _STARTS[d + 1]
            mono[a:b] = mono[PARENT[a:b]] * xs[VAR[a:b]]
        out[start : start + step] = mono.T @ COEFFICIENTS
    return out


def predict(features):
    """The model's prediction for features in their original units: (N, {n_outputs})."""
    x = np.asarray(features, dtype=np.float64)
    if INPUT_MEAN is not None:
        x = (x - np.asarray(INPUT_MEAN)) / np.asarray(INPUT_SCALE)
    y = polynomial(x)
    if OUTPUT_MEAN is not None:
        y = y * np.asarray(OUTPUT_SCALE) + np.asarray(OUTPUT_MEAN)
    return y
'''


def _blob(array: np.ndarray) -> str:
    return base64.b64encode(zlib.compress(np.ascontiguousarray(array).tobytes(), 6)).decode()


def numpy_source(poly: NetworkPolynomial, metadata: dict[str, Any] | None = None) -> str:
    """The text of ``polynomial_numpy.py``: a file that imports only numpy (and base64/zlib)
    and evaluates ``poly``; ``predict()`` applies the recorded standardisation.
    """
    rows, parent, var = _needed_rows(poly)
    position = np.searchsorted(rows, parent)
    exps = poly._exponents_of(rows).astype(np.int16)
    coef = poly.coefficients.detach().cpu().numpy()[:, rows].T.astype(np.float64)
    s = scaling(metadata, raw_units=poly.raw_units)
    inputs = None if poly.raw_units else s["inputs"]
    output = None if poly.raw_units else s["output"]

    def lst(v: Any) -> str:
        return "None" if v is None else repr(np.asarray(v, dtype=np.float64).tolist())

    doc = (
        f"{poly.n_outputs} output(s) in {poly.n_vars} variables, degree {poly.degree}, "
        f"{poly.n_terms} non-zero terms, float64 coefficients."
    )
    if poly.raw_units:
        doc += " Raw units: the standardisation is folded into the coefficients."
    return _NUMPY_TEMPLATE.format(
        doc=doc,
        n_vars=poly.n_vars,
        n_outputs=poly.n_outputs,
        degree=poly.degree,
        variables=list(poly.variables),
        variables_note="(standardised)" if inputs is not None else "",
        predict_note="" if (inputs or output) else " (no standardisation: same as polynomial)",
        input_mean=lst(None if inputs is None else inputs["mean"]),
        input_scale=lst(None if inputs is None else inputs["scale"]),
        output_mean=lst(None if output is None else output["mean"]),
        output_scale=lst(None if output is None else output["scale"]),
        parent=_blob(position.astype(np.int64)),
        var=_blob(var.astype(np.int64)),
        exponents=_blob(exps),
        coefficients=_blob(coef),
        n_rows=len(rows),
    )


# --------------------------------------------------------------------------------------------
# Raw-unit condition
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RawUnitsCondition:
    """How much a raw-unit polynomial cancels on the data's box.

    Attributes
    ----------
    largest_term : float
        max over terms of |coefficient| × max over the box of |monomial|.
    sum_terms : float
        The sum of those sizes over all terms.
    output_scale : float
        The output's scale (the target's standard deviation when recorded).
    float32_bound : float
        ``u32 · sum_terms / output_scale``: the fraction of the output scale that rounding the
        terms to float32 can cost at worst (u32 = 2^-24).
    term : str
        The monomial of the largest term.
    float32_measured : float or None
        max |p32(x) - p64(x)| / output_scale over data points, when they were given.
    """

    largest_term: float
    sum_terms: float
    output_scale: float
    float32_bound: float
    term: str
    float32_measured: float | None = None

    @property
    def float32_loss(self) -> float:
        """The measured float32 loss when known, else the bound (what :meth:`warn` judges)."""
        return self.float32_bound if self.float32_measured is None else self.float32_measured

    @property
    def condition(self) -> float:
        """largest_term / output_scale."""
        return self.largest_term / self.output_scale

    def describe(self) -> str:
        """Two CLI lines: the largest term against the output scale, and the float32 loss."""
        measured = (
            ""
            if self.float32_measured is None
            else f"measured {self.float32_measured:.3%} on the data, "
        )
        return (
            f"condition    largest |coefficient x monomial| on the data box "
            f"{self.largest_term:.3e} ({self.term}) = {self.condition:.3g}x the output scale "
            f"{self.output_scale:.4g}\n"
            f"float32      {measured}at most {self.float32_bound:.3%} of the output scale "
            "(rounding bound)"
        )

    def warn(self) -> None:
        """A :class:`PolynetWarning` when float32 would lose more than FLOAT32_LOSS_LIMIT."""
        if self.float32_loss > FLOAT32_LOSS_LIMIT:
            how = "is off by" if self.float32_measured is not None else "may be off by"
            where = " on the data" if self.float32_measured is not None else ""
            warnings.warn(
                f"the raw-unit polynomial cancels: terms up to {self.largest_term:.3e} "
                f"({self.term}) sum to an output of scale {self.output_scale:.4g}, so float32 "
                f"evaluation (GPU, ONNX float, C float) {how} {self.float32_loss:.1%} "
                f"of the output scale{where} (about {self.float32_loss * self.output_scale:.3g} "
                "in output units). Evaluate it in float64, or use the standardised polynomial "
                "with the scaling in summary.json.",
                PolynetWarning,
                stacklevel=2,
            )


def _evaluate_in(poly: NetworkPolynomial, x: np.ndarray, dtype: Any) -> np.ndarray:
    """poly at x with every operation in ``dtype`` (graded recursion, as polynomial_numpy)."""
    rows, parent, var = _needed_rows(poly)
    position = np.searchsorted(rows, parent)
    starts = np.searchsorted(poly.index.degrees[rows], np.arange(poly.index.degree + 2))
    coef = poly.coefficients.detach().cpu().numpy()[:, rows].T.astype(dtype)
    x = np.asarray(x, dtype=dtype)
    out = np.empty((len(x), poly.n_outputs), dtype=dtype)
    step = max(1, (1 << 22) // len(rows))
    for s in range(0, len(x), step):
        xs = x[s : s + step].T.copy()  # (n_vars, points): monomials are gathered by row
        mono = np.empty((len(rows), xs.shape[1]), dtype=dtype)
        mono[0] = 1
        for d in range(1, poly.index.degree + 1):
            a, b = starts[d], starts[d + 1]
            mono[a:b] = mono[position[a:b]] * xs[var[a:b]]
        out[s : s + step] = mono.T @ coef
    return out


def raw_units_condition(
    poly: NetworkPolynomial,
    low: np.ndarray,
    high: np.ndarray,
    output_scale: float | None = None,
    X: np.ndarray | None = None,
) -> RawUnitsCondition:
    """The condition of ``poly`` on the box [low, high] (raw units) against ``output_scale``.

    Without ``output_scale``, the largest |constant term| or 1 is used. With data points
    ``X`` (raw units; the first 128 are used), the float32 loss is measured there too:
    the polynomial evaluated with float32 coefficients, points and arithmetic, against
    float64.
    """
    size = np.maximum(np.abs(np.asarray(low, float)), np.abs(np.asarray(high, float)))
    keep = poly._nonzero().numpy().any(0)
    rows = np.flatnonzero(keep)
    exps = poly._exponents_of(rows)
    with np.errstate(over="ignore", divide="ignore"):
        log_size = exps @ np.log(np.where(size > 0, size, 1e-300))
        mono = np.exp(log_size)
    coef = np.abs(poly.coefficients.detach().cpu().numpy()[:, rows]).max(0)
    terms = coef * mono
    at = int(np.argmax(terms)) if len(terms) else 0
    largest = float(terms[at]) if len(terms) else 0.0
    total = float(terms.sum())
    if output_scale is None or not output_scale > 0:
        output_scale = 1.0
    name = poly._names(rows[at : at + 1])[0] if len(rows) else "1"
    measured = None
    if X is not None and len(X):
        sample = np.asarray(X, dtype=np.float64)[:128]
        error = np.abs(
            _evaluate_in(poly, sample, np.float32).astype(np.float64)
            - _evaluate_in(poly, sample, np.float64)
        ).max()
        measured = float(error) / output_scale
    return RawUnitsCondition(
        largest,
        total,
        float(output_scale),
        _FLOAT32_EPS * total / output_scale,
        name or "1",
        measured,
    )
