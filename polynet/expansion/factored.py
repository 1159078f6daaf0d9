"""expand_factored: an MLP computed as G(W1 x + b1), the value :class:`FactoredPolynomial`.

See :mod:`polynet.polynomial.factored_polynomial` for the form and its size.
"""

from __future__ import annotations

import time

import torch
from torch import nn

from polynet.errors import NotExpandableError
from polynet.expansion.dense import _groups
from polynet.expansion.network import LoweredNetwork, lower
from polynet.expansion.truncated import _compose
from polynet.polynomial.factored_polynomial import FactoredPolynomial
from polynet.polynomial.homogeneous import taylor_shift

__all__ = ["FactoredPolynomial", "expand_factored", "factored_applies"]


def factored_applies(model: nn.Module) -> bool:
    """Whether ``form="factored"`` holds this chain, read from its layers without lowering:
    Linear and SLAF layers (BatchNorm1d, Dropout, Identity, Flatten between), one SLAF, or
    two whose last has degree <= 2."""
    from polynet.slaf import SLAF

    allowed = (nn.Linear, SLAF, nn.BatchNorm1d, nn.Dropout, nn.Identity, nn.Flatten)
    layers = [m for m in model.modules() if not list(m.children())]
    if not layers or not all(isinstance(m, allowed) for m in layers):
        return False
    degrees = [m.degree for m in layers if isinstance(m, SLAF)]
    return len(degrees) == 1 or (len(degrees) == 2 and degrees[1] <= 2)


def factored_applies_lowered(lowered: LoweredNetwork) -> bool:
    """Whether ``form="factored"`` holds this lowered chain (as :func:`expand_factored` checks)."""
    polys = _groups(lowered)[1]
    return len(polys) == 1 or (len(polys) == 2 and polys[1].degree <= 2)


def expand_factored(
    model: nn.Module,
    *,
    device: torch.device | str | None = None,
    input_shape: tuple[int, ...] | None = None,
) -> FactoredPolynomial:
    """The whole polynomial of a chain with one or two polynomial stages as G(W1 x + b1).

    The last polynomial stage must have degree ≤ 2 when there are two (each monomial of G
    then involves at most two pre-activations). float64, on the model's device.

    Raises
    ------
    NotExpandableError
        For a network with no polynomial stage, more than two, or a last SLAF of degree > 2
        after a first one; the message says what to use instead.
    """
    start = time.perf_counter()
    lowered = lower(model, input_shape, device)
    affines, polys = _groups(lowered)
    work = next((s.bias.device for s in lowered.stages if hasattr(s, "bias")), torch.device("cpu"))
    L = len(polys)
    if L == 0 or L > 2 or (L == 2 and polys[1].degree > 2):
        why = (
            "it has no SLAF layer (it is affine)"
            if L == 0
            else f"it has {L} SLAF layers"
            if L > 2
            else f"its last SLAF has degree {polys[1].degree} (> 2)"
        )
        raise NotExpandableError(
            "form='factored' needs an MLP with one SLAF layer, or two whose last has degree "
            f"<= 2; {why}. Use polynet.expand(model, degree=q) for the exact low-degree part, "
            "or expand it whole."
        )
    weight, bias = _compose(affines[0], lowered.n_inputs, work)
    m1 = weight.shape[0]
    alpha1 = polys[0].coefficients.to(work)
    k1 = alpha1.shape[1] - 1
    if L == 1:
        v, c = _compose(affines[1], m1, work)
        constant = c + v @ alpha1[:, 0]
        univariate = v[:, :, None] * alpha1[None, :, 1:]
        pairs = None
    else:
        v1, c1 = _compose(affines[1], m1, work)
        alpha2 = polys[1].coefficients.to(work)
        m2 = v1.shape[0]
        v, c = _compose(affines[2], m2, work)
        h = [v1 * alpha1[:, r][None, :] for r in range(k1 + 1)]  # z2 = κ + Σ_r H_r z^r
        kappa = c1 + h[0].sum(1)
        beta = taylor_shift(alpha2, kappa)  # (m2, k2 + 1)
        n_out = v.shape[0]
        constant = c + v @ beta[:, 0]
        univariate = weight.new_zeros(n_out, m1, 2 * k1)
        pairs = weight.new_zeros(n_out, k1, k1, m1, m1)
        if beta.shape[1] > 1:
            lam1 = v * beta[:, 1][None, :]
            for r in range(1, k1 + 1):
                univariate[:, :, r - 1] += lam1 @ h[r]
        if beta.shape[1] > 2:
            lam2 = v * beta[:, 2][None, :]
            eye = torch.eye(m1, dtype=torch.bool, device=work)
            upper = torch.triu(torch.ones(m1, m1, dtype=torch.bool, device=work), diagonal=1)
            for o in range(n_out):
                for r in range(1, k1 + 1):
                    left = (h[r] * lam2[o][:, None]).T
                    for t in range(1, k1 + 1):
                        gram = left @ h[t]  # (m1 × m1): Σ_i λ_i H_r[i, j] H_t[i, l]
                        univariate[o, :, r + t - 1] += gram[eye]
                        pairs[o, r - 1, t - 1] = torch.where(upper, 2 * gram, 0.0)
    return FactoredPolynomial(
        weight,
        bias,
        constant,
        univariate,
        pairs,
        lowered.degree_bound,
        input_shape=lowered.input_shape,
        seconds=time.perf_counter() - start,
    )
