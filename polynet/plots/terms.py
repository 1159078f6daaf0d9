"""What a network polynomial holds: its degree profile and its largest terms.

:func:`plot_degree_profile` draws the coefficient mass per total degree against Theorem 2's
bound; :func:`terms_table` lists the largest terms of one output as Markdown.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import numpy as np

from polynet.plots.figure import _figure, _save
from polynet.polynomial.network_polynomial import NetworkPolynomial
from polynet.validation import check_int

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["plot_degree_profile", "terms_table"]


def plot_degree_profile(
    poly: NetworkPolynomial, path: str | os.PathLike[str] | None = None
) -> Figure:
    """Coefficient mass Σ|c| by total degree (log scale), with Theorem 2's bound marked.

    Examples
    --------
    >>> import polynet
    >>> poly = polynet.expand(polynet.SLNN(2, [4], 3).eval())
    >>> plot_degree_profile(poly).axes[0].get_yscale()
    'log'
    """
    profile = poly.degree_profile()
    degrees = np.arange(profile.shape[1])
    fig = _figure(6.0, 3.6)
    ax = fig.subplots()
    n_out = profile.shape[0]
    if n_out == 1:
        mass = profile[0]
        shown = mass > 0
        ax.bar(degrees[shown], mass[shown], color="C0", width=0.7)
    else:
        for o in range(min(n_out, 10)):
            mass = np.where(profile[o] > 0, profile[o], np.nan)
            ax.plot(degrees, mass, "o-", ms=4, lw=1.2, label=f"output {o}")
        ax.legend(fontsize=7, ncols=2)
    ax.set_yscale("log")
    ax.axvline(poly.degree_bound, color="C3", ls="--", lw=1.2)
    ax.text(
        poly.degree_bound,
        0.98,
        f" bound ∏k = {poly.degree_bound}",
        transform=ax.get_xaxis_transform(),
        ha="right" if poly.degree_bound >= degrees[-1] else "left",
        va="top",
        color="C3",
        fontsize=8,
    )
    ax.set_xticks(degrees)
    ax.set_xlim(-0.6, max(degrees[-1], poly.degree_bound) + 0.6)
    ax.set_xlabel("total degree")
    ax.set_ylabel("Σ |coefficient|")
    ax.set_title(
        f"Degree profile: degree {poly.degree}, {poly.n_terms:,} of {poly.max_terms:,} "
        f"possible terms",
        fontsize=10,
    )
    _save(fig, path)
    return fig


def terms_table(poly: NetworkPolynomial, top: int = 10, output: int = 0) -> str:
    """The largest terms of one output as a Markdown table.

    Examples
    --------
    >>> import torch
    >>> from polynet import MonomialIndex, NetworkPolynomial
    >>> p = NetworkPolynomial(MonomialIndex(2, 2), torch.tensor([[1.0, 0, -3, 0, 0.5, 0]]))
    >>> print(terms_table(p, top=2))
    | # | coefficient | monomial | degree | share of Σ\\|c\\| |
    |---|---:|---|---:|---:|
    | 1 | -3 | `x1` | 1 | 66.7% |
    | 2 | 1 | `1` | 0 | 22.2% |
    """
    top = check_int(top, "top")
    if not 0 <= output < poly.n_outputs:
        raise ValueError(f"output must be in 0..{poly.n_outputs - 1}, got {output!r}.")
    terms = poly.terms(top=top, output=output)
    total = float(poly.coefficients[output].abs().sum())
    lines = [
        "| # | coefficient | monomial | degree | share of Σ\\|c\\| |",
        "|---|---:|---|---:|---:|",
    ]
    for rank, term in enumerate(terms, 1):
        share = abs(term.coefficient) / total if total else 0.0
        lines.append(
            f"| {rank} | {term.coefficient:.6g} | `{term.monomial}` | {sum(term.exponents)} "
            f"| {share:.1%} |"
        )
    return "\n".join(lines)
