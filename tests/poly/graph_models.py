"""Custom-forward polynomial models shared by the graph tests."""

from __future__ import annotations

import torch
from torch import nn

import polynet


def warmed(model: nn.Module, shape: tuple[int, ...], seed: int = 0) -> nn.Module:
    """``model`` after a few training-mode passes (non-trivial running statistics), in eval."""
    gen = torch.Generator().manual_seed(seed)
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(32, *shape, generator=gen))
    return model.eval()


def relative_error(poly, model: nn.Module, shape: tuple[int, ...], n: int = 64) -> float:
    """max |p(x) - f(x)| / max |f(x)| over random points, f the float64 forward pass."""
    x = torch.randn(n, *shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    net = model.double().eval()
    with torch.no_grad():
        expected = net(x).reshape(n, -1)
    got = poly(x.reshape(n, -1))
    return float((got - expected).abs().max() / expected.abs().max())


class CustomSLNN(nn.Module):
    def __init__(self, sizes=(3, 5, 4, 2), degrees=(3, 2)) -> None:
        super().__init__()
        self.linears = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes, sizes[1:]))
        self.acts = nn.ModuleList(polynet.SLAF(b, k) for b, k in zip(sizes[1:], degrees))

    def forward(self, x):
        for lin, act in zip(self.linears, self.acts):
            x = act(lin(x))
        return self.linears[-1](x)


class Residual(nn.Module):
    def __init__(self, n: int = 3, width: int = 4) -> None:
        super().__init__()
        self.inp = nn.Linear(n, width)
        self.lin = nn.Linear(width, width)
        self.slaf = polynet.SLAF(width, 2)
        self.out = nn.Linear(width, 1)

    def forward(self, x):
        h = self.inp(x)
        h = h + self.slaf(self.lin(h))
        return self.out(h)


class PiNet(nn.Module):
    """CCP: x_{k+1} = (U_k x) * x_k + x_k, a Hadamard product of branches."""

    def __init__(self, n: int = 3, width: int = 4, order: int = 3) -> None:
        super().__init__()
        self.first = nn.Linear(n, width)
        self.u = nn.ModuleList(nn.Linear(n, width, bias=False) for _ in range(order - 1))
        self.out = nn.Linear(width, 2)

    def forward(self, x):
        h = self.first(x)
        for u in self.u:
            h = u(x) * h + h
        return self.out(h)


class SquareCNN(nn.Module):
    """CryptoNets-style: conv, x * x, average pooling, linear."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3)
        self.pool = nn.AvgPool2d(2)
        self.fc = nn.Linear(8, 3)

    def forward(self, x):
        h = self.conv(x)
        h = h * h
        h = self.pool(h)
        return self.fc(h.view(h.size(0), -1))


class CatBranches(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(3, 2)
        self.b = nn.Linear(3, 3)
        self.slaf = polynet.SLAF(3, 2)
        self.out = nn.Linear(5, 2)

    def forward(self, x):
        return self.out(torch.cat([self.a(x), self.slaf(self.b(x))], dim=1))


class Powers(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(3, 4)
        self.out = nn.Linear(4, 1)

    def forward(self, x):
        h = self.lin(x)
        return self.out(h**2 - 0.5 * torch.pow(h, 3) / 2.0 + 1.0)


class BatchNormNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(3, 4)
        self.bn = nn.BatchNorm1d(4)
        self.out = nn.Linear(4, 2)

    def forward(self, x):
        h = self.bn(self.lin(x))
        return self.out(h * h)


class EinsumNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.randn(3, 4))
        self.register_buffer("v", torch.randn(4, 2))

    def forward(self, x):
        h = torch.einsum("bi,ij->bj", x, self.w)
        h = h * h + x.sum(dim=1, keepdim=True)
        return h @ self.v + x.mean(dim=1, keepdim=True) ** 2


class WideThenNarrow(nn.Module):
    """An SLAF feeding only a narrower Linear (the fused fold), behind a non-chain op."""

    def __init__(self) -> None:
        super().__init__()
        self.inp = nn.Linear(3, 6)
        self.slaf = polynet.SLAF(6, 3)
        self.out = nn.Linear(6, 2)

    def forward(self, x):
        return self.out(self.slaf(self.inp(x) * 2.0))


class Functional(nn.Module):
    """Functional ops and tensor methods on a (2, 5) input (channels, length)."""

    def __init__(self) -> None:
        super().__init__()
        self.kernel = nn.Parameter(torch.randn(3, 2, 2))
        self.bias = nn.Parameter(torch.randn(3))
        self.conv = nn.Conv1d(3, 2, 2)
        self.bn = nn.BatchNorm1d(2)
        self.fc = nn.Linear(6, 2)

    def forward(self, x):
        h = torch.nn.functional.conv1d(x, self.kernel, self.bias)  # (3, 4)
        h = torch.nn.functional.avg_pool1d(h, 2, 1)  # (3, 3)
        a, b = h.chunk(2, dim=2)[0], h[:, :, 1:]  # (3, 2), (3, 2)
        h = torch.stack([a, b], dim=1).sum(dim=1)  # (3, 2)
        h = torch.sub(h.pow(2), -h / 4).transpose(1, 2).permute(0, 2, 1)
        h = self.bn(self.conv(torch.square(h).unsqueeze(1).squeeze(1)))  # (2, 1)
        g = x.reshape(x.shape[0], -1)[:, 2:6]  # (4,)
        return self.fc(torch.cat([h.flatten(1), -g], dim=1))
