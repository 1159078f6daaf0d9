"""What a network polynomial says: Sobol indices, orthogonal coefficients, sparsification.

- :func:`sobol` / :class:`SobolIndices`: exact variance decomposition under uniform or normal
  inputs (``sobol_bounds`` builds the parameters from data).
- :func:`orthogonal_coefficients`: the coefficients in a Legendre, Hermite or Chebyshev basis.
- :func:`sparsify`: the fewest terms whose dropped part is bounded on a box.
- :func:`analyze`: all of it, with figures, into a directory.
"""

from __future__ import annotations

from polynet.analysis.analyze import Analysis, analyze
from polynet.analysis.orthogonal import orthogonal_coefficients
from polynet.analysis.sobol import SobolIndices, sobol, sobol_bounds
from polynet.analysis.sparsify import Sparsification, sparsify

__all__ = [
    "SobolIndices",
    "sobol",
    "sobol_bounds",
    "orthogonal_coefficients",
    "Sparsification",
    "sparsify",
    "Analysis",
    "analyze",
]
