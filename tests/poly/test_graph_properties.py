"""Property tests: random polynomial graphs expand to their float64 forward pass."""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import polynet
from tests.poly.graph_models import relative_error, warmed

#: Largest propagated degree a random graph may reach (keeps each example small).
MAX_DEGREE = 8
OPS = ("linear", "slaf", "square", "power", "residual", "product", "cat", "scale", "bn", "mean")


class RandomGraph(nn.Module):
    """A chain of ops on one value, several of them with branches that join again."""

    def __init__(self, n: int, plan: list[tuple[str, int]]) -> None:
        super().__init__()
        self.plan = [op for op, _ in plan]
        self.args = [arg for _, arg in plan]
        self.blocks = nn.ModuleList()
        self.degree = 1
        width = n
        for op, arg in plan:
            block = nn.ModuleDict()
            if op == "linear":
                block["a"] = nn.Linear(width, arg)
                width = arg
            elif op == "slaf":
                block["a"] = polynet.SLAF(width, arg)
                self.degree *= arg
            elif op == "square":
                self.degree *= 2
            elif op == "power":
                self.degree *= arg
            elif op == "residual":
                block["a"] = nn.Linear(width, width)
            elif op == "product":
                block["a"] = nn.Linear(width, width)
                block["b"] = nn.Linear(width, width)
                self.degree *= 2
            elif op == "cat":
                block["a"] = nn.Linear(width, arg)
                width += arg
            elif op == "bn":
                block["a"] = nn.BatchNorm1d(width)
            self.blocks.append(block)
        self.out = nn.Linear(width, 2)

    def forward(self, x):
        h = x
        for op, arg, block in zip(self.plan, self.args, self.blocks):
            if op in ("linear", "slaf", "bn"):
                h = block["a"](h)
            elif op == "square":
                h = h * h
            elif op == "power":
                h = h**arg
            elif op == "residual":
                h = h + block["a"](h)
            elif op == "product":
                h = block["a"](h) * block["b"](h) + h
            elif op == "cat":
                h = torch.cat([h, block["a"](h)], dim=1)
            elif op == "scale":
                h = 0.5 * h - 1.0 + h / 3.0
            elif op == "mean":
                h = h + h.mean(dim=1, keepdim=True)
        return self.out(h)


@st.composite
def graphs(draw):
    n = draw(st.integers(1, 3))
    plan, degree = [], 1
    for _ in range(draw(st.integers(1, 5))):
        op = draw(st.sampled_from(OPS))
        arg = draw(st.integers(1, 3)) if op in ("linear", "slaf", "cat") else 0
        if op == "power":
            arg = draw(st.integers(2, 3))
        factor = {"slaf": arg, "power": arg, "square": 2, "product": 2}.get(op, 1)
        if degree * factor > MAX_DEGREE:
            continue
        degree *= factor
        plan.append((op, arg))
    seed = draw(st.integers(0, 2**16))
    return n, plan, seed


@settings(max_examples=25, deadline=None)
@given(graphs())
def test_random_graph_polynomial_equals_forward_and_reaches_the_bound(graph):
    n, plan, seed = graph
    torch.manual_seed(seed)
    model = warmed(RandomGraph(n, plan), (n,), seed)
    poly = polynet.expand(model, input_shape=(n,))
    assert poly.degree_bound == model.degree
    assert polynet.count_terms(model, input_shape=(n,)).degree_bound == model.degree
    assert relative_error(poly, model, (n,)) < 1e-10
    assert poly.degree == model.degree  # generic weights: the bound is reached


SIGNAL_OPS = ("conv", "pool", "square", "slaf", "bn", "residual", "flip")


class RandomSignalGraph(nn.Module):
    """Ops on (channels, length) signals: Conv1d, AvgPool1d, SLAF per channel, x * x, ..."""

    def __init__(self, plan: list[str], channels: int = 2, length: int = 6) -> None:
        super().__init__()
        self.plan = plan
        self.blocks = nn.ModuleList()
        self.degree = 1
        c, n = channels, length
        for op in plan:
            if op == "conv":
                self.blocks.append(nn.Conv1d(c, 2, 2))
                c, n = 2, n - 1
            elif op == "pool":
                self.blocks.append(nn.AvgPool1d(2, 1))
                n -= 1
            elif op == "slaf":
                self.blocks.append(polynet.SLAF(c, 2))
                self.degree *= 2
            elif op == "bn":
                self.blocks.append(nn.BatchNorm1d(c))
            elif op == "residual":
                self.blocks.append(nn.Conv1d(c, c, 1))
            else:
                self.blocks.append(nn.Identity())
                self.degree *= 2 if op == "square" else 1
        self.out = nn.Linear(c * n, 1)

    def forward(self, x):
        h = x
        for op, block in zip(self.plan, self.blocks):
            if op == "square":
                h = h * h
            elif op == "residual":
                h = h + block(h)
            elif op == "flip":
                h = h.transpose(1, 2).transpose(1, 2)[:, :, torch.arange(h.shape[2] - 1, -1, -1)]
            else:
                h = block(h)
        return self.out(torch.flatten(h, 1))


@st.composite
def signal_graphs(draw):
    plan, degree, length = [], 1, 6
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(SIGNAL_OPS))
        factor = 2 if op in ("square", "slaf") else 1
        if degree * factor > 4 or (op in ("conv", "pool") and length <= 2):
            continue
        degree *= factor
        length -= op in ("conv", "pool")
        plan.append(op)
    return plan, draw(st.integers(0, 2**16))


@settings(max_examples=25, deadline=None)
@given(signal_graphs())
def test_random_signal_graph_polynomial_equals_forward_and_reaches_the_bound(graph):
    plan, seed = graph
    torch.manual_seed(seed)
    model = warmed(RandomSignalGraph(plan), (2, 6), seed)
    poly = polynet.expand(model, input_shape=(2, 6))
    assert poly.degree_bound == model.degree
    assert relative_error(poly, model, (2, 6)) < 1e-10
    assert poly.degree == model.degree
