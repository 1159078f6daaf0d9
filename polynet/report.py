"""report: everything polynet can say about one trained network, in HTML and Markdown.

:func:`report` writes ``report.html`` (self-contained: figures embedded as base64 PNG, no
external assets) and ``report.md`` (figures as PNG files beside it) with the architecture and
parameter counts, the training curves, Theorem 2's table, the expansion and its verification
against the network, the largest terms and the degree profile, a slice of the polynomial
beside the network, the exact Sobol indices, pairwise interactions and sparsification curve
of the polynomial, and the learned activations. A step that cannot be done (a ReLU or EMFN
layer, an expansion over the memory budget, data that cannot be reloaded) is reported with
its error message, and the rest of the report is still written.
"""

from __future__ import annotations

import base64
import copy
import html
import io
import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import ArrayLike
from torch import nn

from polynet import plots
from polynet.data import Dataset, from_metadata
from polynet.errors import PolynetError
from polynet.expansion.count import count_parameters, count_terms
from polynet.expansion.dispatch import expand
from polynet.polynomial.network_polynomial import NetworkPolynomial
from polynet.slaf import SLAF
from polynet.verify import verify

__all__ = ["report"]

logger = logging.getLogger(__name__)

#: Data points the verification uses at most (a seeded subset of the data beyond that).
VERIFY_POINTS = 2000
#: Points sampled from the data's bounding box in the verification.
VERIFY_BOX_POINTS = 200
#: Samples the activation calibration uses at most.
CALIBRATION_POINTS = 5000


@dataclass
class _Figure:
    name: str  # file name beside report.md
    png: bytes
    caption: str


@dataclass
class _Section:
    title: str
    blocks: list[tuple[str, Any]] = field(default_factory=list)

    def text(self, value: str) -> None:
        self.blocks.append(("text", value))

    def code(self, value: str) -> None:
        self.blocks.append(("code", value))

    def table(self, header: list[str], rows: list[list[Any]]) -> None:
        self.blocks.append(("table", (header, rows)))

    def markdown_table(self, value: str) -> None:
        self.blocks.append(("mdtable", value))

    def problem(self, value: str) -> None:
        self.blocks.append(("problem", value))

    def caveat(self, value: str) -> None:
        """A result shown, with what it does not mean (one line, highlighted)."""
        self.blocks.append(("caveat", value.removeprefix("caveat: ")))

    def figure(self, figure: _Figure) -> None:
        self.blocks.append(("figure", figure))


@dataclass
class _Data:
    X: np.ndarray | None  # the points the report uses (train and test inputs)
    y: np.ndarray | None
    X_train: np.ndarray | None
    dataset: Dataset | None
    note: str | None


def _png(fig: Any) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=plots.DPI)
    return buffer.getvalue()


def _resolve_data(data: Any, metadata: dict[str, Any]) -> _Data:
    if data is None:
        if "dataset" not in metadata or metadata["dataset"] is None:
            return _Data(
                None,
                None,
                None,
                None,
                "no data: the checkpoint names no data set and none was passed (data=).",
            )
        try:
            data = from_metadata(metadata)
        except (PolynetError, OSError, ImportError) as exc:
            return _Data(None, None, None, None, f"the data set could not be reloaded: {exc}")
    if isinstance(data, Dataset):
        X = np.concatenate([data.X_train, data.X_test])
        y = np.concatenate([data.y_train, data.y_test])
        return _Data(X, y, data.X_train, data, None)
    if isinstance(data, (tuple, list)) and len(data) == 2:
        X, y = (np.asarray(v.cpu() if isinstance(v, torch.Tensor) else v) for v in data)
        return _Data(X.astype(np.float64), y, X.astype(np.float64), None, None)
    X = np.asarray(data.cpu() if isinstance(data, torch.Tensor) else data, dtype=np.float64)
    return _Data(X, None, X, None, None)


def _subset(X: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    if len(X) <= n:
        return X
    return X[np.sort(np.random.RandomState(seed).choice(len(X), n, replace=False))]


def _step(section: _Section, what: str, action: Callable[[], Any]) -> Any:
    """Run one part of the report; a failure becomes a note in the section."""
    try:
        return action()
    except (PolynetError, ValueError, MemoryError, RuntimeError) as exc:
        logger.info("report: %s failed: %s", what, exc)
        section.problem(f"{what}: {exc}")
        return None


def report(
    checkpoint: str | os.PathLike[str] | nn.Module,
    out_dir: str | os.PathLike[str],
    *,
    data: Dataset | tuple[ArrayLike, ArrayLike] | ArrayLike | None = None,
    max_memory: int | str | None = "2GiB",
    top: int = 20,
    max_panels: int = 16,
    title: str | None = None,
    input_shape: dict[str, Any] | tuple | None = None,
) -> Path:
    """Write ``report.html`` and ``report.md`` about a trained network into ``out_dir``.

    Parameters
    ----------
    checkpoint : str, path-like or nn.Module
        A checkpoint (file, or directory holding ``model.safetensors``) or a model (which
        is copied, not changed).
    out_dir : str or path-like
        Where to write ``report.html``, ``report.md`` and the PNG figures (created).
    data : Dataset, (X, y) or X, optional
        Data for the verification, the activation ranges and the slice. By default the data
        set the checkpoint's metadata names, reloaded and standardised as in training.
    max_memory : int or str or None, default="2GiB"
        Memory budget of the expansion (None: half the free memory); over it, the report
        says so and gives the alternatives.
    top : int, default=20
        Number of largest terms listed.
    max_panels : int, default=16
        Most panels of the activation figure.
    title : str, optional
        Report title (default: the architecture and checkpoint name).
    input_shape : tuple of int, tuple of shapes or dict, optional
        As for :func:`polynet.expand`: one sample's shape when the model does not tell it,
        or for a ``forward()`` taking several tensors their shapes (``data`` rows are then
        the inputs flattened and concatenated in argument order).

    Returns
    -------
    Path
        The ``report.html`` written.

    Examples
    --------
    >>> import tempfile, polynet
    >>> net = polynet.SLNN(2, [3], 2).eval()
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     path = report(net, tmp, data=torch.randn(20, 2))
    ...     sorted(p.name for p in path.parent.iterdir())[:3]
    ['activations.png', 'coefficients.png', 'degree_profile.png']
    """
    from polynet.checkpoint import load_checkpoint

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if isinstance(checkpoint, nn.Module):
        # A copy: the report runs the model in evaluation mode and must not change the caller's.
        model, metadata, source = copy.deepcopy(checkpoint), {}, None
        architecture = getattr(model, "architecture", type(model).__name__)
    else:
        loaded = load_checkpoint(checkpoint)
        model, metadata, source = loaded.model, loaded.metadata, loaded.path
        architecture = loaded.architecture
    model.eval()
    resolved = _resolve_data(data, metadata)
    heading = title or f"{architecture} report" + (f": {source.name}" if source else "")
    sections = [
        _model_section(model, architecture, source),
        _data_section(resolved),
        _training_section(metadata),
    ]
    from polynet.expansion.inputs import SplitInputs, is_several, parse_inputs

    several = parse_inputs(model, input_shape).as_dict() if is_several(input_shape) else None
    # Slices and activations run the model on data rows: split them for several inputs.
    on_rows = model if several is None else SplitInputs(model, several)
    shape = input_shape if several is None else several
    theorem, poly = _polynomial_sections(model, resolved, max_memory, top, shape, on_rows)
    sections += theorem
    if poly is not None:
        sections.append(_analysis_section(poly, resolved))
    if several is None:
        sections.append(_image_section(model, resolved))
    sections.append(_activation_section(on_rows, resolved, max_panels))
    sections = [s for s in sections if s.blocks]
    _write_markdown(out / "report.md", heading, sections)
    path = out / "report.html"
    path.write_text(_html(heading, sections), encoding="utf-8")
    logger.info("report written to %s", path)
    return path


def _model_section(model: nn.Module, architecture: str, source: Path | None) -> _Section:
    section = _Section("Model")
    section.text(f"Architecture: **{architecture}**" + (f", from `{source}`" if source else ""))
    config = getattr(model, "config", None)
    if isinstance(config, dict):
        section.code(json.dumps(config, indent=None))
    section.code(repr(model))
    counts = count_parameters(model)
    rows = [[layer.position, layer.layer, f"{layer.parameters:,}"] for layer in counts.layers]
    rows.append(["", "**total**", f"**{counts.total:,}**"])
    section.table(["layer", "kind", "parameters"], rows)
    return section


def _data_section(resolved: _Data) -> _Section:
    section = _Section("Data")
    if resolved.note:
        section.problem(resolved.note)
        return section
    ds = resolved.dataset
    if ds is not None:
        section.text(f"`{ds!r}`")
        if ds.description:
            section.text(ds.description)
        if ds.n_features <= 64:
            section.table(
                ["variable", "feature"],
                [[f"x{i}", name] for i, name in enumerate(ds.feature_names)],
            )
    elif resolved.X is not None:
        section.text(f"{len(resolved.X):,} points passed as data=.")
    return section


def _training_section(metadata: dict[str, Any]) -> _Section:
    section = _Section("Training")
    metrics = metadata.get("metrics")
    if isinstance(metrics, dict) and metrics:
        section.table(
            ["metric", "value"],
            [[k, "" if v is None else f"{v:.6g}"] for k, v in metrics.items()],
        )
    training = metadata.get("training")
    if isinstance(training, dict) and training:
        shown = {k: v for k, v in training.items() if v is not None}
        section.code(
            ", ".join(
                f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in shown.items()
            )
        )
    history = metadata.get("history")
    if isinstance(history, list) and history:
        fig = _step(section, "training curves", lambda: plots.plot_history(history))
        if fig is not None:
            section.figure(_Figure("training.png", _png(fig), "Training curves."))
    return section


def _polynomial_sections(
    model: nn.Module,
    resolved: _Data,
    max_memory: int | str | None,
    top: int,
    input_shape: tuple | dict[str, Any] | None = None,
    on_rows: nn.Module | None = None,
) -> tuple[list[_Section], NetworkPolynomial | None]:
    theorem = _Section("Theorem 2: size of the network polynomial")
    counts = _step(theorem, "Theorem 2 does not apply", lambda: count_terms(model, input_shape))
    if counts is not None:
        theorem.text(
            "An SLNN in evaluation mode is a polynomial of total degree at most D = ∏k in its "
            "n inputs, so it has at most C(n+D, D) coefficients, whatever its width."
        )
        theorem.code(counts.table())
    section = _Section("The network polynomial")
    if counts is None:
        section.problem("the network was not expanded: it is not a polynomial (see above).")
        return [theorem, section], None
    poly = _step(
        section,
        "expansion refused",
        lambda: expand(model, max_memory=max_memory, input_shape=input_shape),
    )
    if poly is None:
        return [theorem, section], None
    if resolved.dataset is not None:  # one naming scheme: feature names when known
        from polynet.export import name_variables

        poly = name_variables(poly, resolved.dataset.feature_names)
    made = poly.provenance
    seconds = float("nan") if made.seconds is None else made.seconds
    section.text(
        f"`{poly!r}`, expanded in {seconds:.2f} s "
        f"({made.engine or 'float64'} on {made.device or 'cpu'})."
    )
    points = None if resolved.X is None else _subset(resolved.X, VERIFY_POINTS)
    check = _step(
        section,
        "verification failed to run",
        lambda: verify(model, poly, points, n_box=VERIFY_BOX_POINTS),
    )
    if check is not None:
        where = "" if points is None else f" on {len(points):,} data points and"
        section.text(
            f"Verification{where} {check.n_box_points} points of their bounding box: "
            f"**{'PASSED' if check.passed else 'FAILED'}**."
        )
        section.code(str(check))
    section.text(f"Largest terms of output 0 (of {poly.n_outputs}):")
    section.markdown_table(plots.terms_table(poly, top=top))
    fig = _step(section, "degree profile", lambda: plots.plot_degree_profile(poly))
    if fig is not None:
        section.figure(
            _Figure("degree_profile.png", _png(fig), "Coefficient mass by total degree.")
        )
    if resolved.X is not None:
        _slice_figure(section, model if on_rows is None else on_rows, poly, resolved)
    return [theorem, section], poly


def _image_section(model: nn.Module, resolved: _Data) -> _Section:
    """For an image model: its degree <= 2 coefficients as images (polynet.plots.images),
    at 0 and at the first data image, from expand(model, degree=2[, at=x0])."""
    from polynet.expansion.network import is_chain, lower

    section = _Section("Low-order coefficients as images")
    try:
        shape = lower(model, None, "cpu").input_shape if is_chain(model) else None
    except PolynetError:
        shape = None
    ds = resolved.dataset
    if shape is not None and len(shape) == 1 and ds is not None and ds.name in IMAGE_DATASETS:
        side = int(np.sqrt(shape[0]))
        shape = (1, side, side) if side * side == shape[0] else None
    if shape is None or len(shape) != 3 or shape[0] != 1:
        return section  # not a one-channel image model: no section
    hw = (shape[1], shape[2])
    centres = [None]
    if resolved.X is not None:
        centres.append(np.asarray(resolved.X[0], dtype=np.float64).reshape(-1))
    for i, x0 in enumerate(centres):
        where = "at 0" if x0 is None else "at the first data image (in u = x - x0)"
        poly = _step(
            section, f"degree-2 part {where}", lambda x0=x0: expand(model, degree=2, at=x0)
        )
        if poly is None:
            continue
        fig = _step(
            section,
            "coefficient images",
            lambda poly=poly: plots.plot_image_coefficients(poly, shape=hw),
        )
        if fig is not None:
            section.figure(
                _Figure(
                    f"image_coefficients_{i}.png",
                    _png(fig),
                    f"The exact degree-1 and degree-2 coefficients {where} "
                    "(expand(model, degree=2)): each pixel's linear coefficient, and the "
                    "coefficients of x_p x_j for the pixel p with the largest one.",
                )
            )
    return section


#: Data sets whose flattened rows are square one-channel images.
IMAGE_DATASETS = ("mnist", "fashion-mnist", "digits")


def _analysis_section(poly: NetworkPolynomial, resolved: _Data) -> _Section:
    from polynet.analysis import analyze
    from polynet.analysis import figures as analysis_figures

    section = _Section("What the polynomial says: Sobol indices and sparsification")
    X = None if resolved.X is None else resolved.X.reshape(len(resolved.X), -1)
    names = None
    if resolved.dataset is not None and len(resolved.dataset.feature_names) == poly.n_vars:
        names = list(resolved.dataset.feature_names)
    result = _step(
        section,
        "analysis",
        lambda: analyze(poly, X=None if X is None else _subset(X, VERIFY_POINTS), variables=names),
    )
    if result is None:
        return section
    s, sp = result.sobol, result.sparsification
    where = "the data's bounding box" if X is not None else "[-1, 1] per input"
    section.text(
        f"Exact Sobol indices of output 0 (of {poly.n_outputs}), inputs independent and uniform "
        f"on {where}: computed from the polynomial's Legendre coefficients, not sampled."
    )
    table, *notes = s.table(0).split("\n\n")
    section.markdown_table(table)
    section.text(notes[0] + ".")
    for caveat in notes[1:]:  # the box-vs-data variance caveat
        section.caveat(caveat)
    fig = _step(section, "Sobol figure", lambda: analysis_figures.plot_sobol(s))
    if fig is not None:
        section.figure(_Figure("sobol.png", _png(fig), "First-order and total Sobol indices."))
    if poly.n_vars >= 2:
        section.table(
            ["pair", "S_ij"], [[f"{a} × {b}", f"{v:.4f}"] for a, b, v in result.interactions]
        )
        fig = _step(section, "interaction figure", lambda: analysis_figures.plot_interactions(s))
        if fig is not None:
            section.figure(_Figure("interactions.png", _png(fig), "Pairwise Sobol indices S_ij."))
    measured = (
        f"; measured on the data: max {sp.max_error:.3g}, RMS {sp.rms_error:.3g}"
        if sp.max_error is not None
        else ""
    )
    section.text(
        f"Sparsification: {sp.n_terms:,} of {int(sp.terms[-1]):,} terms keep every output "
        f"within {sp.tol:.3g} on the box (certified bound {sp.bound:.3g}{measured})."
    )
    if sp.caveat():
        section.caveat(sp.caveat())
    fig = _step(section, "sparsification figure", lambda: analysis_figures.plot_sparsification(sp))
    if fig is not None:
        section.figure(
            _Figure("sparsification.png", _png(fig), "Error against the number of terms kept.")
        )
    return section


def _slice_figure(
    section: _Section, model: nn.Module, poly: NetworkPolynomial, resolved: _Data
) -> None:
    X = resolved.X.reshape(len(resolved.X), -1)
    n = X.shape[1]
    y = resolved.y
    classification = resolved.dataset is not None and resolved.dataset.task == "classification"
    if n <= 2 and y is not None:
        draw = plots.plot_decision_boundary if classification else plots.plot_surface
        result = _step(section, "figure", lambda: draw(model, poly, X, y))
        caption = "The polynomial over the data, with the network."
    else:
        # The input whose linear coefficient is largest, the others at the data mean.
        linear = poly.coefficients[0, 1 : n + 1].abs().cpu().numpy()
        dim = int(np.argmax(linear)) if linear.size else 0
        result = _step(section, "slice", lambda: plots.plot_slice(model, poly, X, dims=(dim,)))
        caption = (
            f"The polynomial and the network along {poly.variables[dim]} (its largest linear "
            "coefficient), the other inputs at the data mean."
        )
    if result is not None:
        fig, diff = result
        section.figure(_Figure("slice.png", _png(fig), f"{caption} max |p − f| = {diff:.2e}."))


def _activation_section(model: nn.Module, resolved: _Data, max_panels: int) -> _Section:
    section = _Section("Learned activations")
    if not any(isinstance(m, SLAF) for m in model.modules()):
        section.problem("the model has no SLAF layers, so there are no learned activations.")
        return section
    x = None if resolved.X_train is None else _subset(resolved.X_train, CALIBRATION_POINTS)
    fig = _step(
        section,
        "activation figure",
        lambda: plots.plot_activations(model, x, max_panels=max_panels),
    )
    if fig is not None:
        section.figure(
            _Figure(
                "activations.png",
                _png(fig),
                "Each SLAF over the range of its inputs"
                + (" on the training data" if x is not None else " (running mean ± 3σ)")
                + ", the histogram of those inputs behind it, and the nearest standard "
                "activation a·f(b·z + c) + d dashed.",
            )
        )
    fig = _step(section, "coefficient figure", lambda: plots.plot_coefficients(model))
    if fig is not None:
        section.figure(
            _Figure("coefficients.png", _png(fig), "SLAF coefficients per basis element.")
        )
    return section


# --------------------------------------------------------------------------------------------
# Writers
# --------------------------------------------------------------------------------------------


def _md_cell(value: Any) -> str:
    return str(value).replace("|", "\\|")


def _write_markdown(path: Path, heading: str, sections: list[_Section]) -> None:
    lines = [f"# {heading}", ""]
    for section in sections:
        lines += [f"## {section.title}", ""]
        for kind, value in section.blocks:
            if kind == "text":
                lines += [value, ""]
            elif kind == "code":
                lines += ["```", value, "```", ""]
            elif kind == "problem":
                lines += [f"> **Not shown.** {value}", ""]
            elif kind == "caveat":
                lines += [f"> **Caveat.** {value}", ""]
            elif kind == "mdtable":
                lines += [value, ""]
            elif kind == "table":
                header, rows = value
                lines.append("| " + " | ".join(header) + " |")
                lines.append("|" + "---|" * len(header))
                lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows]
                lines.append("")
            elif kind == "figure":
                (path.parent / value.name).write_bytes(value.png)
                alt = value.name.removesuffix(".png").replace("_", " ")
                lines += [f"![{alt}]({value.name})", "", f"*{value.caption}*", ""]
    path.write_text("\n".join(lines), encoding="utf-8")


_CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; max-width: 1100px;
       margin: 2em auto; padding: 0 1em; color: #222; line-height: 1.45; }
h1 { border-bottom: 2px solid #ddd; padding-bottom: .3em; }
h2 { border-bottom: 1px solid #eee; padding-bottom: .2em; margin-top: 2em; }
pre { background: #f6f8fa; padding: .8em; overflow-x: auto; font-size: 85%; }
code { background: #f6f8fa; padding: .1em .3em; }
table { border-collapse: collapse; margin: 1em 0; font-size: 90%; }
th, td { border: 1px solid #ddd; padding: .3em .7em; }
th { background: #f6f8fa; }
td.num { text-align: right; }
.problem { background: #fff8e1; border-left: 4px solid #f0b400; padding: .6em 1em; }
figure { margin: 1.2em 0; }
figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { color: #555; font-size: 90%; }
"""


def _inline(text: str) -> str:
    """Escape, then the two Markdown marks the report uses inline: **bold** and `code`."""
    out = html.escape(text)
    parts = out.split("`")
    for i in range(1, len(parts), 2):
        parts[i] = f"<code>{parts[i]}</code>"
    out = "".join(parts)
    pieces = out.split("**")
    for i in range(1, len(pieces), 2):
        pieces[i] = f"<strong>{pieces[i]}</strong>"
    return "".join(pieces)


def _html_table(header: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{_inline(str(h))}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{_inline(str(c))}</td>" for c in row) + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _md_table_to_html(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines()]

    def cells(line: str) -> list[str]:
        line = line.strip("|").replace("\\|", "\0")
        return [c.strip().replace("\0", "|") for c in line.split("|")]

    return _html_table(cells(lines[0]), [cells(line) for line in lines[2:]])


def _html(heading: str, sections: list[_Section]) -> str:
    body = [f"<h1>{html.escape(heading)}</h1>"]
    for section in sections:
        body.append(f"<h2>{html.escape(section.title)}</h2>")
        for kind, value in section.blocks:
            if kind == "text":
                body.append(f"<p>{_inline(value)}</p>")
            elif kind == "code":
                body.append(f"<pre>{html.escape(value)}</pre>")
            elif kind == "problem":
                body.append(f'<p class="problem"><strong>Not shown.</strong> {_inline(value)}</p>')
            elif kind == "caveat":
                body.append(f'<p class="problem"><strong>Caveat.</strong> {_inline(value)}</p>')
            elif kind == "mdtable":
                body.append(_md_table_to_html(value))
            elif kind == "table":
                body.append(_html_table(*value))
            elif kind == "figure":
                data = base64.b64encode(value.png).decode("ascii")
                body.append(
                    f'<figure><img alt="{html.escape(value.caption)}" '
                    f'src="data:image/png;base64,{data}"><figcaption>'
                    f"{_inline(value.caption)}</figcaption></figure>"
                )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(heading)}</title><style>{_CSS}</style></head><body>\n"
        + "\n".join(body)
        + "\n</body></html>\n"
    )
