"""Polynomial models written the way people in the field write them (and non-polynomial twins).

Each model class carries ``SHAPE`` (one sample, without the batch axis) and ``DEGREE`` (the
degree its architecture implies). The styles: FHE-friendly layers that check their input's
rank and width, higher-order neural units gathering monomials through an index buffer,
learnable Hermite / Chebyshev / Lagrange activations with their recurrences in forward(),
products of polynomials, a fused HE CNN block with batch norm folded, buffers, in-place ops,
constants built like the input, item assignment, helper modules.
"""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
from torch import nn

import polynet


class CheckedSquare(nn.Module):
    """An FHE-friendly layer (x²-activation) that checks its input like torch layers do."""

    SHAPE, DEGREE = (4,), 2

    def __init__(self, in_features: int = 4, out_features: int = 3) -> None:
        super().__init__()
        self.in_features = in_features
        self.fc = nn.Linear(in_features, out_features)
        self.head = nn.Linear(out_features, 2)

    def _check_input(self, x):
        if x.dim() != 2:
            raise ValueError(f"expected 2D input (got {x.dim()}D input)")
        if x.size(-1) != self.in_features:
            raise ValueError(f"expected {self.in_features} features, got {x.size(-1)}")

    def forward(self, x):
        self._check_input(x)
        h = self.fc(x)
        return self.head(h * h + h)


class QuadraticNeuron(nn.Module):
    """A higher-order neural unit: all monomials x_i x_j gathered through an index buffer."""

    SHAPE, DEGREE = (4,), 2

    def __init__(self, n: int = 4) -> None:
        super().__init__()
        pairs = torch.tensor(list(itertools.combinations_with_replacement(range(n), 2)))
        self.register_buffer("pairs", pairs)
        self.w = nn.Parameter(torch.randn(n + len(pairs), 2) * 0.3)
        self.b = nn.Parameter(torch.randn(2))

    def forward(self, x):
        i, j = self.pairs.unbind(1)  # a loop-free gather over a constant buffer
        quad = x[:, i] * x[:, j]
        return torch.cat([x, quad], dim=1) @ self.w + self.b


class CubicNeuron(nn.Module):
    """A cubic HONU that loops over its constant index buffer."""

    SHAPE, DEGREE = (3,), 3

    def __init__(self, n: int = 3) -> None:
        super().__init__()
        triples = torch.tensor(list(itertools.combinations_with_replacement(range(n), 3)))
        self.register_buffer("triples", triples)
        self.weight = nn.Parameter(torch.randn(len(triples)) * 0.5)

    def forward(self, x):
        terms = []
        for idx in self.triples:  # iteration over a constant buffer
            terms.append(x[:, idx].prod(dim=1))
        return (torch.stack(terms, dim=1) * self.weight).sum(dim=1, keepdim=True)


class Hermite(nn.Module):
    """A learnable physicists' Hermite activation: H_{k+1} = 2x H_k - 2k H_{k-1}."""

    def __init__(self, channels: int, degree: int = 3) -> None:
        super().__init__()
        self.degree = degree
        self.coef = nn.Parameter(torch.randn(channels, degree + 1) * 0.3)

    def forward(self, x):
        h_prev, h = torch.ones_like(x), 2 * x
        out = self.coef[:, 0] * h_prev + self.coef[:, 1] * h
        for k in range(1, self.degree):
            h_prev, h = h, 2 * x * h - 2 * k * h_prev
            out = out + self.coef[:, k + 1] * h
        return out


class HermiteNet(nn.Module):
    SHAPE, DEGREE = (3,), 3

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 4)
        self.act = Hermite(4, 3)
        self.out = nn.Linear(4, 1)

    def forward(self, x):
        return self.out(self.act(self.fc(x)))


class Chebyshev(nn.Module):
    """A Chebyshev (KAN-style) activation: T_k stacked, mixed by einsum."""

    def __init__(self, channels: int, out: int, degree: int = 4) -> None:
        super().__init__()
        self.degree = degree
        self.coef = nn.Parameter(torch.randn(channels, out, degree + 1) * 0.2)

    def forward(self, x):
        t = [torch.ones_like(x), x]
        for _ in range(2, self.degree + 1):
            t.append(2 * x * t[-1] - t[-2])
        basis = torch.stack(t, dim=-1)  # (B, channels, degree + 1)
        return torch.einsum("bid,iod->bo", basis, self.coef)


class ChebyshevKAN(nn.Module):
    SHAPE, DEGREE = (3,), 4

    def __init__(self) -> None:
        super().__init__()
        self.layer = Chebyshev(3, 2, 4)

    def forward(self, x):
        return self.layer(x)


class Lagrange(nn.Module):
    """A Lagrange-interpolation activation over fixed nodes (a buffer), learnable values."""

    def __init__(self, channels: int, nodes: int = 4) -> None:
        super().__init__()
        self.register_buffer("nodes", torch.linspace(-1, 1, nodes))
        self.values = nn.Parameter(torch.randn(channels, nodes) * 0.5)

    def forward(self, x):
        nodes = self.nodes.tolist()
        out = torch.zeros_like(x)
        for j, xj in enumerate(nodes):
            basis = torch.ones_like(x)
            for m, xm in enumerate(nodes):
                if m != j:
                    basis = basis * (x - xm) / (xj - xm)
            out += self.values[:, j] * basis
        return out


class LagrangeNet(nn.Module):
    SHAPE, DEGREE = (2,), 3

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(2, 3)
        self.act = Lagrange(3, 4)
        self.out = nn.Linear(3, 1)

    def forward(self, x):
        return self.out(self.act(self.fc(x)))


class ProductOfPolynomials(nn.Module):
    """(a·x)² times (b·x + c): a product of two polynomial branches."""

    SHAPE, DEGREE = (3,), 3

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(3, 2)
        self.b = nn.Linear(3, 2)

    def forward(self, x):
        return self.a(x).pow(2) * self.b(x)


class FusedHEBlock(nn.Module):
    """The deployment form of an HE CNN block: conv with BN folded in, x², global pooling."""

    SHAPE, DEGREE = (1, 4, 4), 2

    def __init__(self) -> None:
        super().__init__()
        conv = nn.Conv2d(1, 2, 3, padding=1)
        bn = nn.BatchNorm2d(2).eval()
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 1.5)
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        self.register_buffer("w", (conv.weight * scale[:, None, None, None]).detach())
        self.register_buffer("b", ((conv.bias - bn.running_mean) * scale + bn.bias).detach())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(2, 2)

    def forward(self, x):
        assert x.ndim == 4, "NCHW input expected"
        h = F.conv2d(x, self.w, self.b, stride=1, padding=1)  # keyword arguments
        h = h * h
        return self.fc(self.pool(h).flatten(1))


class InPlaceAffine(nn.Module):
    """Buffers and in-place ops: h *= scale; h += shift."""

    SHAPE, DEGREE = (3,), 2

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 3)
        self.register_buffer("scale", torch.tensor([0.5, 2.0, -1.0]))
        self.register_buffer("shift", torch.tensor([0.1, 0.0, 0.3]))
        self.out = nn.Linear(3, 1)

    def forward(self, x):
        h = self.fc(x)
        h.mul_(self.scale)
        h.add_(self.shift)
        h = h.clone()
        h *= h
        return self.out(h)


class ZerosLikeScatter(nn.Module):
    """A constant built like the input, filled by index assignment."""

    SHAPE, DEGREE = (4,), 2

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.out = nn.Linear(4, 2)

    def forward(self, x):
        h = self.fc(x)
        out = torch.zeros_like(h)
        out[:, :2] = h[:, :2] ** 2
        out[:, 2:] = h[:, 2:]
        return self.out(out)


class BiasColumn(nn.Module):
    """x.new_ones for a bias column (the homogeneous-coordinates trick), then a square."""

    SHAPE, DEGREE = (3,), 2

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.randn(4, 2))

    def forward(self, x):
        ones = x.new_ones(x.size(0), 1)
        z = torch.cat([x, ones], dim=1) @ self.w
        return z.square()


class MaskedConstant(nn.Module):
    """Item assignment into a constant mask built in forward()."""

    SHAPE, DEGREE = (2, 3), 2

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 3)

    def forward(self, x):
        mask = torch.ones(1, 2, 3)
        mask[0, -1, 0] = 0
        h = self.fc(x) * mask
        full = torch.full_like(h, 0.5)
        return (h * h + full).flatten(1)


class ShapeGeneric(nn.Module):
    """Reads its own shapes: len(x.shape), *x.shape[2:], device checks, size asserts."""

    SHAPE, DEGREE = (2, 6), 2

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv1d(2, 3, 3)
        self.fc = nn.Linear(12, 1)

    def forward(self, x):
        if len(x.shape) != 3:
            raise ValueError("expected (N, C, L)")
        if x.device.type == "cuda":
            x = x.contiguous()
        h = self.conv(x)
        assert h.size(0) == x.size(0)
        h = h.view(x.size(0), -1, *h.shape[2:])  # (N, 3, 4)
        h = h * h
        return self.fc(h.reshape(h.shape[0], -1))


class DivideProd(nn.Module):
    """torch.divide by a constant and a product along the channel axis."""

    SHAPE, DEGREE = (3,), 3

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 3)

    def forward(self, x):
        h = torch.divide(self.fc(x), 3.0)
        return h.prod(dim=1, keepdim=True) + h.sum(dim=1, keepdim=True)


class TransposedConv1d(nn.Module):
    """ConvTranspose1d, x², AdaptiveAvgPool1d."""

    SHAPE, DEGREE = (2, 4), 2

    def __init__(self) -> None:
        super().__init__()
        self.up = nn.ConvTranspose1d(2, 2, 3, stride=2)
        self.pool = nn.AdaptiveAvgPool1d(3)
        self.fc = nn.Linear(6, 1)

    def forward(self, x):
        h = self.up(x)
        return self.fc(self.pool(h * h).flatten(1))


class TransposedConv2dBN(nn.Module):
    """ConvTranspose2d then F.batch_norm in evaluation mode with its own statistics."""

    SHAPE, DEGREE = (1, 2, 2), 2

    def __init__(self) -> None:
        super().__init__()
        self.up = nn.ConvTranspose2d(1, 2, 2)
        self.register_buffer("mean", torch.tensor([0.1, -0.2]))
        self.register_buffer("var", torch.tensor([1.5, 0.7]))
        self.fc = nn.Linear(18, 1)

    def forward(self, x):
        h = F.batch_norm(self.up(x), self.mean, self.var, training=False, eps=1e-3)
        return self.fc((h * h).flatten(1))


class PolyAttention(nn.Module):
    """Softmax-free attention: (Q Kᵀ) V with Q, K, V from the input (degree 3)."""

    SHAPE, DEGREE = (3, 2), 3

    def __init__(self) -> None:
        super().__init__()
        self.q = nn.Linear(2, 2)
        self.k = nn.Linear(2, 2, bias=False)
        self.v = nn.Linear(2, 2)

    def forward(self, x):
        q, k, v = self.q(x), self.k(x), self.v(x)
        scores = q @ k.transpose(-1, -2) / 2.0
        return torch.bmm(scores, v).flatten(1)


class BiasedScores(nn.Module):
    """Attention scores with a learned relative-position bias expanded to the batch, as
    transformer code writes it: ``baddbmm(bias, q, kᵀ)`` (degree 2)."""

    SHAPE, DEGREE = (3, 2), 2

    def __init__(self) -> None:
        super().__init__()
        self.q = nn.Linear(2, 2)
        self.k = nn.Linear(2, 2)
        self.position = nn.Parameter(torch.randn(1, 3, 3))

    def forward(self, x):
        if x.dim() != 3:
            raise ValueError(f"expected (batch, tokens, features), got {tuple(x.shape)}")
        bias = self.position.expand(x.shape[0], -1, -1)
        scores = torch.baddbmm(bias, self.q(x), self.k(x).transpose(1, 2), alpha=0.5)
        return scores.flatten(1)


class ExponentBuffer(nn.Module):
    """pow with a tensor of whole-number exponents (a buffer)."""

    SHAPE, DEGREE = (2,), 3

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(2, 4)
        self.register_buffer("exps", torch.tensor([1, 2, 3, 0]))
        self.out = nn.Linear(4, 1)

    def forward(self, x):
        return self.out(self.fc(x) ** self.exps)


class PaddedConv(nn.Module):
    """F.pad with a constant, a convolution, x²."""

    SHAPE, DEGREE = (1, 4), 2

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv1d(1, 2, 3)
        self.fc = nn.Linear(8, 1)

    def forward(self, x):
        h = F.pad(x, (1, 1), value=0.5)
        h = self.conv(h)
        return self.fc((h * h).flatten(1))


class OuterProduct(nn.Module):
    """Second-order features by einsum of the input with itself."""

    SHAPE, DEGREE = (3,), 2

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(9, 2)

    def forward(self, x):
        return self.fc(torch.einsum("bi,bj->bij", x, x).flatten(1))


class SLAFResidualChecked(nn.Module):
    """An SLAF block with a residual, a shape assert and a helper module."""

    SHAPE, DEGREE = (3,), 4

    def __init__(self) -> None:
        super().__init__()
        self.inp = nn.Linear(3, 3)
        self.act1 = polynet.SLAF(3, 2)
        self.act2 = polynet.SLAF(3, 2)
        self.out = nn.Linear(3, 1)

    def forward(self, x):
        h = self.inp(x)
        r = self.act2(self.act1(h))
        assert r.shape == h.shape
        return self.out(h + r)


class TwoHeads(nn.Module):
    """Several outputs: a tuple and a dict."""

    SHAPE, DEGREE = (3,), 2

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 3)
        self.a = nn.Linear(3, 1)
        self.b = nn.Linear(3, 2)

    def forward(self, x):
        h = self.fc(x)
        return self.a(h * h), {"aux": self.b(h)}


MODELS = [
    CheckedSquare,
    QuadraticNeuron,
    CubicNeuron,
    HermiteNet,
    ChebyshevKAN,
    LagrangeNet,
    ProductOfPolynomials,
    FusedHEBlock,
    InPlaceAffine,
    ZerosLikeScatter,
    BiasColumn,
    MaskedConstant,
    ShapeGeneric,
    DivideProd,
    TransposedConv1d,
    TransposedConv2dBN,
    PolyAttention,
    BiasedScores,
    ExponentBuffer,
    PaddedConv,
    OuterProduct,
    SLAFResidualChecked,
    TwoHeads,
]


# ---------------------------------------------------------------- non-polynomial twins


class CheckedSiLU(CheckedSquare):
    """The FHE layer with a SiLU behind its input checks."""

    def __init__(self) -> None:
        super().__init__()
        self.act = nn.SiLU()

    def forward(self, x):
        self._check_input(x)
        return self.head(self.act(self.fc(x)))  # MARK


class GatedSigmoid(CheckedSquare):
    """A sigmoid gate behind a shape check."""

    def forward(self, x):
        if x.size(-1) != self.in_features:
            raise ValueError("width")
        h = self.fc(x)
        return self.head(h * torch.sigmoid(h))  # MARK


class AbsBehindRank(ShapeGeneric):
    def forward(self, x):
        if len(x.shape) != 3:
            raise ValueError("expected (N, C, L)")
        h = self.conv(x).abs()  # MARK
        return self.fc(h.reshape(h.shape[0], -1))


TWINS = [(CheckedSiLU, "SiLU"), (GatedSigmoid, "sigmoid"), (AbsBehindRank, "abs")]


# ---------------------------------------------------------------- batch-mixing models


class Centred(nn.Module):
    """x - x.sum(0): subtracts a statistic over the batch (a silent wrong answer before)."""

    SHAPE = (3,)

    def forward(self, x):
        return x - x.sum(0, keepdim=True)  # MARK


class FirstSample(nn.Module):
    SHAPE = (3,)

    def forward(self, x):
        return x * x[0]  # MARK


class Flipped(nn.Module):
    SHAPE = (3,)

    def forward(self, x):
        return x * x.flip(0)  # MARK


class TrainingBatchNorm(nn.Module):
    SHAPE = (3,)

    def forward(self, x):
        return F.batch_norm(x, None, None, training=True)  # MARK


class BatchMean(nn.Module):
    SHAPE = (3,)

    def forward(self, x):
        return x * x.mean()  # MARK


MIXING = [Centred, FirstSample, Flipped, TrainingBatchNorm, BatchMean]
