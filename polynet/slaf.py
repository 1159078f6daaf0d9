"""The SLAF module: a self-learnable activation function.

An SLAF maps each channel c of its input through

    a(z) = Σ_i c_{c,i} · (φ_i(z) − μ_{c,i}) / sqrt(σ²_{c,i} + ε) + b_c,      i = 1..k,

where φ_1..φ_k is a basis family (:mod:`polynet.bases`) and μ, σ² are batch statistics in
training and running statistics in evaluation, exactly as BatchNorm keeps them. In evaluation
mode a polynomial basis makes each channel one univariate polynomial of degree k; see
:meth:`SLAF.polynomial`.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from polynet.bases import Basis, BasisName, get_basis
from polynet.errors import NotExpandableError
from polynet.validation import check_int, check_number, is_number

__all__ = ["SLAF", "slaf"]

Share = Literal["layer", "channel"]


def slaf(
    z: Tensor,
    basis: Basis,
    degree: int,
    coefficient: Tensor,
    bias: Tensor,
    running_mean: Tensor | None,
    running_var: Tensor | None,
    training: bool,
    momentum: float,
    eps: float,
    scale: Tensor | None = None,
) -> Tensor:
    """The SLAF arithmetic: features, per-(channel, basis element) batch norm, weighted sum.

    ``coefficient`` has shape (k,) or (C, k); ``running_mean``/``running_var`` shape (C, k) and
    are updated in place in training (BatchNorm's rule). Returns a tensor shaped like ``z``.
    """
    n_channels = z.shape[1]
    terms = basis.terms(z, degree, scale)  # k tensors shaped like z
    c = coefficient.expand(n_channels, degree)
    # One batch_norm per basis element, on a tensor shaped like z: no (B, C, k) stack to build
    # and sum, and each call's working set is 1/k of it (on CPU it stays in cache). The
    # coefficient rides in BatchNorm's affine weight and the bias in the first call's affine
    # bias. The running statistics are stored (C, k); batch_norm updates rows of a contiguous
    # (k, C) copy, written back below.
    # A copy even when the transpose is already contiguous (C == 1 or k == 1): batch_norm saves
    # its running-stat rows for backward, and the copy_ back below must not bump their version.
    mean = None if running_mean is None else _transposed_copy(running_mean)
    var = None if running_var is None else _transposed_copy(running_var)
    out: Tensor | None = None
    for i, p in enumerate(terms):
        normed = F.batch_norm(
            p,
            None if mean is None else mean[i],
            None if var is None else var[i],
            # contiguous: torch 2.13's CPU batch_norm backward returns wrong input gradients
            # for a strided weight (the forward pass is right).
            c[:, i].contiguous(),
            bias if i == 0 else None,
            training,
            momentum,
            eps,
        )
        # In place: batch_norm's backward does not need its output.
        out = normed if out is None else out.add_(normed)
    if training and running_mean is not None:
        with torch.no_grad():
            running_mean.copy_(mean.t())
            running_var.copy_(var.t())
    return out


def _transposed_copy(t: Tensor) -> Tensor:
    return t.t().clone(memory_format=torch.contiguous_format)


class SLAF(nn.Module):
    r"""Self-learnable activation function: a learned combination of normalised basis functions.

    Parameters
    ----------
    num_features : int
        Number of channels C (the size of axis 1 of the input).
    degree : int, default=3
        Number of basis functions k (the polynomial degree for polynomial bases).
    basis : {"taylor", "chebyshev", "legendre", "emfn"} or Basis, default="taylor"
        Basis family φ_1..φ_k.
    share : {"layer", "channel"}, default="layer"
        Whether the coefficients c are one vector for the layer or one per channel.
    gate : bool, default=False
        Gate the coefficients: c = 2·sigmoid(g) ⊙ (w + e_1), so each term can be switched
        off (g → −∞) or doubled; at initialisation (g = 0) it equals the ungated c = w + e_1.
    eps : float, default=1e-5
        Added to the variance in the normalisation.
    momentum : float or None, default=0.1
        Running-statistics momentum; None for a cumulative average (BatchNorm's rule).
    init_std : float, default=0.01
        Standard deviation of the initial offset w; c starts at e_1 + w, close to the identity.
    device, dtype
        Where and in what precision the parameters and buffers are created.

    Shape
    -----
    Input (B, C), (B, C, L) or (B, C, H, W); output the same shape.

    Examples
    --------
    >>> act = SLAF(4, degree=3).eval()
    >>> act(torch.randn(8, 4)).shape
    torch.Size([8, 4])
    >>> act.polynomial().shape
    torch.Size([4, 4])
    """

    _version = 1
    num_features: int
    degree: int
    basis: Basis
    share: Share
    gate_enabled: bool
    eps: float
    momentum: float | None
    init_std: float

    def __init__(
        self,
        num_features: int,
        degree: int = 3,
        basis: BasisName | Basis = "taylor",
        *,
        share: Share = "layer",
        gate: bool = False,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        init_std: float = 0.01,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        num_features = check_int(num_features, "num_features")
        degree = check_int(degree, "degree", hint="use degree=1 for a linear SLAF")
        if share not in ("layer", "channel"):
            raise ValueError(f"share must be 'layer' or 'channel', got {share!r}.")
        eps = check_number(eps, "eps", low=0.0, strict=True)
        init_std = check_number(init_std, "init_std", low=0.0)
        if momentum is not None and not (is_number(momentum, 0.0) and momentum <= 1):
            raise ValueError(f"momentum must be in [0, 1] or None, got {momentum!r}.")
        factory = {"device": device, "dtype": dtype}
        self.num_features = num_features
        self.degree = degree
        self.basis = get_basis(basis)
        self.share = share
        self.gate_enabled = bool(gate)
        self.eps = float(eps)
        self.momentum = momentum
        self.init_std = float(init_std)

        coef_shape = (degree,) if share == "layer" else (num_features, degree)
        self.weight = nn.Parameter(torch.empty(coef_shape, **factory))
        if self.gate_enabled:
            self.gate = nn.Parameter(torch.empty(coef_shape, **factory))
        else:
            self.register_parameter("gate", None)
        self.bias = nn.Parameter(torch.empty(num_features, **factory))
        self.register_buffer("running_mean", torch.zeros(num_features, degree, **factory))
        self.register_buffer("running_var", torch.ones(num_features, degree, **factory))
        self.register_buffer(
            "num_batches_tracked", torch.tensor(0, dtype=torch.long, device=device)
        )
        if self.basis.needs_scale:
            self.register_buffer("running_absmax", torch.ones(num_features, **factory))
        else:
            self.register_buffer("running_absmax", None)
        self.reset_parameters()

    def reset_running_stats(self) -> None:
        """Zero the running means, set running variances (and scales) to one."""
        self.running_mean.zero_()
        self.running_var.fill_(1.0)
        self.num_batches_tracked.zero_()
        if self.running_absmax is not None:
            self.running_absmax.fill_(1.0)

    def reset_parameters(self) -> None:
        """Identity-offset initialisation: c = e_1 + small noise, gate open, bias zero."""
        self.reset_running_stats()
        with torch.no_grad():
            nn.init.normal_(self.weight, std=self.init_std)
            if self.gate is not None:
                self.gate.zero_()
            self.bias.zero_()

    def coefficient(self, dtype: torch.dtype | None = None) -> Tensor:
        """The effective coefficients c, shape (k,) or (C, k), with the identity offset applied.

        ``dtype`` computes them in another precision (``polynomial()`` uses float64).
        """
        weight = self.weight if dtype is None else self.weight.to(dtype)
        offset = torch.zeros_like(weight)
        offset[..., 0] = 1.0
        c = weight + offset
        if self.gate is not None:
            gate = self.gate if dtype is None else self.gate.to(dtype)
            c = 2 * torch.sigmoid(gate) * c
        return c

    def _check_input(self, z: Tensor) -> None:
        if z.dim() not in (2, 3, 4) or z.shape[1] != self.num_features:
            c = self.num_features
            raise ValueError(
                f"SLAF({c}) expects input of shape (B, {c}), (B, {c}, L) or (B, {c}, H, W), "
                f"got {tuple(z.shape)}."
            )
        if self.training and z.numel() // z.shape[1] < 2:
            raise ValueError(
                f"SLAF in training mode needs more than one value per channel to take batch "
                f"statistics, got input of shape {tuple(z.shape)}; use a batch of 2 or more, "
                "or call .eval() first."
            )

    def _momentum(self) -> float:
        if not self.training:
            return 0.0
        self.num_batches_tracked.add_(1)
        if self.momentum is None:
            return 1.0 / float(self.num_batches_tracked)
        return self.momentum

    def _scale(self, z: Tensor, momentum: float) -> Tensor | None:
        if self.running_absmax is None:
            return None
        if not self.training:
            return self.running_absmax
        dims = [d for d in range(z.dim()) if d != 1]
        batch = z.detach().abs().amax(dim=dims).clamp_min(self.eps)
        with torch.no_grad():
            self.running_absmax.mul_(1 - momentum).add_(momentum * batch)
        return batch

    def forward(self, z: Tensor) -> Tensor:
        self._check_input(z)
        momentum = self._momentum()
        return slaf(
            z,
            self.basis,
            self.degree,
            self.coefficient(),
            self.bias,
            self.running_mean,
            self.running_var,
            self.training,
            momentum,
            self.eps,
            self._scale(z, momentum),
        )

    @torch.no_grad()
    def polynomial(self) -> Tensor:
        """Each channel's SLAF as monomial coefficients, low to high, in evaluation mode.

        Returns
        -------
        Tensor of shape (C, k+1), float64, on the module's device
            Row c holds α with a_c(z) = Σ_j α[c, j] z^j, the exact function the module
            computes in evaluation mode (in float64 arithmetic).

        Raises
        ------
        NotExpandableError
            In training mode (batch statistics make the output depend on the batch), or for a
            basis that is not polynomial (EMFN).
        """
        if self.training:
            raise NotExpandableError(
                "SLAF.polynomial() needs evaluation mode: in training mode the output depends "
                "on the batch statistics; call .eval() on the model first."
            )
        to_monomial = torch.as_tensor(
            _to_monomial(self.basis, self.degree), device=self.weight.device
        )
        c = self.coefficient(torch.float64).expand(self.num_features, self.degree)
        w = c / torch.sqrt(self.running_var.double() + self.eps)  # (C, k)
        alpha = w @ to_monomial.T  # (C, k+1)
        alpha[:, 0] += self.bias.double() - (w * self.running_mean.double()).sum(dim=1)
        return alpha

    def extra_repr(self) -> str:
        parts = [f"{self.num_features}", f"degree={self.degree}", f"basis={self.basis.name!r}"]
        parts.append(f"share={self.share!r}")
        if self.gate_enabled:
            parts.append("gate=True")
        if self.eps != 1e-5:
            parts.append(f"eps={self.eps}")
        if self.momentum != 0.1:
            parts.append(f"momentum={self.momentum}")
        return ", ".join(parts)


_MONOMIAL_CACHE: dict[tuple[type, int], np.ndarray] = {}


def _to_monomial(basis: Basis, degree: int) -> np.ndarray:
    key = (type(basis), degree)
    if key not in _MONOMIAL_CACHE:
        _MONOMIAL_CACHE[key] = basis.to_monomial(degree)
    return _MONOMIAL_CACHE[key]
