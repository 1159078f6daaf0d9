"""analyze: the Sobol table, the top interactions, the sparsification curve and the figures."""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from polynet.analysis.sobol import SobolIndices, sobol, sobol_bounds
from polynet.analysis.sparsify import Sparsification, sparsify
from polynet.atomic import write_bytes_atomic
from polynet.polynomial.network_polynomial import NetworkPolynomial
from polynet.validation import check_int

__all__ = ["Analysis", "analyze"]


@dataclass(frozen=True)
class Analysis:
    """What :func:`analyze` found; ``summary()`` is the markdown it writes."""

    sobol: SobolIndices
    interactions: list[tuple[str, str, float]]
    sparsification: Sparsification
    output: int
    figures: list[Path] = field(default_factory=list)

    def summary(self) -> str:
        s, sp = self.sobol, self.sparsification
        params = ", ".join(
            f"{k} in [{min(map(float, v)):.3g}, {max(map(float, v)):.3g}]"
            for k, v in s.parameters.items()
        )
        lines = [
            f"## Sobol indices of output {self.output} ({s.distribution} inputs; {params})",
            "",
            s.table(self.output),
            "",
            "## Top pairwise interactions",
            "",
            "| pair | S_ij |",
            "|---|---:|",
            *[f"| {a} × {b} | {v:.4f} |" for a, b, v in self.interactions],
            "",
            "## Sparsification",
            "",
            f"{sp.n_terms:,} of {int(sp.terms[-1]):,} terms keep every output within "
            f"tol = {sp.tol:.3g} on the box "
            f"(certified bound {sp.bound:.3g}"
            + (
                f"; measured on the data: max {sp.max_error:.3g}, RMS {sp.rms_error:.3g})."
                if sp.max_error is not None
                else ")."
            ),
            *(["", f"**{sp.caveat()}**"] if sp.caveat() else []),
            "",
            sp.table(),
        ]
        return "\n".join(lines) + "\n"

    def to_dict(self) -> dict[str, Any]:
        s, sp = self.sobol, self.sparsification

        def floats(a):
            return np.asarray(a, dtype=np.float64).tolist()

        return {
            "distribution": s.distribution,
            "parameters": {k: floats(v) for k, v in s.parameters.items()},
            "variables": s.variables,
            "mean": floats(s.mean),
            "variance": floats(s.variance),
            "data_variance": None if s.data_variance is None else floats(s.data_variance),
            "caveat": s.caveat(self.output),
            "first": floats(s.first),
            "total": floats(s.total),
            "second": floats(s.second),
            "by_order": floats(s.by_order()),
            "interactions": [list(t) for t in self.interactions],
            "sparsification": {
                "tol": sp.tol,
                "n_terms": sp.n_terms,
                "bound": sp.bound,
                "max_error": sp.max_error,
                "rms_error": sp.rms_error,
                "caveat": sp.caveat(),
                "terms": sp.terms.tolist(),
                "bounds": floats(sp.bounds),
                "max_errors": floats(sp.max_errors),
                "rms_errors": floats(sp.rms_errors),
            },
        }


def analyze(
    poly: NetworkPolynomial,
    out_dir: str | os.PathLike[str] | None = None,
    *,
    X: ArrayLike | None = None,
    distribution: str = "uniform",
    low: ArrayLike | float | None = None,
    high: ArrayLike | float | None = None,
    mean: ArrayLike | float | None = None,
    std: ArrayLike | float | None = None,
    tol: float | None = None,
    rtol: float = 1e-2,
    top: int = 10,
    output: int = 0,
    variables: list[str] | None = None,
    figures: bool = True,
) -> Analysis:
    """Sobol indices, top interactions and sparsification of ``poly``, optionally written.

    Parameters
    ----------
    poly : NetworkPolynomial
    out_dir : str or path-like, optional
        Where to write ``analysis.md``, ``analysis.json`` and (``figures=True``)
        ``sobol.png``, ``interactions.png``, ``sparsification.png``.
    X : array-like of shape (n_samples, n_vars), optional
        Data in the polynomial's variables: the distribution's parameters default to its box
        (uniform) or its mean and std (normal), and the sparsification is measured on it.
    distribution, low, high, mean, std
        As in :func:`polynet.sobol` (explicit parameters win over X).
    tol, rtol
        As in :func:`polynet.analysis.sparsify`; without X, the box is the uniform's
        [low, high] or the normal's mean ± 3 std.
    top : int, default=10
        Pairwise interactions listed.
    output : int, default=0
        The output the table, interactions and figures describe.
    variables : list of str, optional
        Names to show for the variables (default ``poly.variables``), e.g. feature names.
    figures : bool, default=True
        Draw the figures (needs matplotlib) when writing to ``out_dir``.
    """
    top = check_int(top, "top", 1)
    output = check_int(output, "output", 0)
    if output >= poly.n_outputs:
        raise ValueError(f"output must be < n_outputs = {poly.n_outputs}, got {output}.")
    params = {"low": low, "high": high, "mean": mean, "std": std}
    if X is not None and all(v is None for v in params.values()):
        params.update(sobol_bounds(X, distribution))
    indices = sobol(poly, distribution, **params, data=X)
    if variables is not None:
        if len(variables) != poly.n_vars:
            raise ValueError(f"variables must have {poly.n_vars} names, got {len(variables)}.")
        indices = dataclasses.replace(indices, variables=[str(v) for v in variables])
    box = {}
    if X is None:  # the distribution's box: [low, high], or mean ± 3 std
        if distribution == "uniform":
            box = {"low": indices.parameters["low"], "high": indices.parameters["high"]}
        else:
            m, sd = (np.asarray(indices.parameters[k], dtype=np.float64) for k in ("mean", "std"))
            box = {"low": m - 3 * sd, "high": m + 3 * sd}
    sp = sparsify(poly, X, tol=tol, rtol=rtol, **box)
    result = Analysis(indices, indices.interactions(top, output), sp, output)
    if out_dir is None:
        return result
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    if figures:
        from polynet.analysis import figures as fig

        for name, draw in (
            ("sobol.png", lambda p: fig.plot_sobol(indices, p, output=output)),
            ("interactions.png", lambda p: fig.plot_interactions(indices, p, output=output)),
            ("sparsification.png", lambda p: fig.plot_sparsification(sp, p)),
        ):
            draw(out / name)
            written.append(out / name)
    result = Analysis(indices, result.interactions, sp, output, written)
    write_bytes_atomic(out / "analysis.md", result.summary().encode())
    write_bytes_atomic(out / "analysis.json", json.dumps(result.to_dict(), indent=1).encode())
    return result
