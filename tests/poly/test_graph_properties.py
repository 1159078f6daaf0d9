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
