"""Models whose forward() takes several tensors: variables are all their entries, by argument."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import polynet
from polynet.errors import NotExpandableError
from polynet.polynomial.network_polynomial import NetworkPolynomial

TOL = 1e-10


class Bilinear(nn.Module):
    """x @ W @ y plus a linear term: degree 2, one output per row of W's stack."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.randn(2, 3, 4))
        self.lin = nn.Linear(4, 2)

    def forward(self, x, y):
        return torch.einsum("bi,oij,bj->bo", x, self.w, y) + self.lin(y)


class Elementwise(nn.Module):
    """(x * y) then a Linear and a square: degree 4."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(3, 2)

    def forward(self, x, y):
        return self.lin(x * y) ** 2


class ThreeInputs(nn.Module):
    """An image, a vector and a matrix of different shapes: degree 3."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 2)
        self.lin = nn.Linear(2, 3)

    def forward(self, img, v, m):
        a = self.conv(img).flatten(1)  # (B, 2*1*2)
        b = (m @ v.unsqueeze(-1)).squeeze(-1)  # (B, 2): degree 2
        return a[:, :2] * self.lin(b)[:, :2] + v[:, :2]


def _forward(model: nn.Module, shapes, n: int = 32):
    gen = torch.Generator().manual_seed(1)
    xs = [torch.randn(n, *s, dtype=torch.float64, generator=gen) for s in shapes]
    with torch.no_grad():
        expected = model.double().eval()(*xs).reshape(n, -1)
    return torch.cat([x.reshape(n, -1) for x in xs], dim=1), expected


def _check(model: nn.Module, input_shape, shapes, names, degree: int):
    poly = polynet.expand(model.eval(), input_shape=input_shape)
    n = sum(math.prod(s) for s in shapes)
    assert poly.n_vars == n
    assert list(poly.variables) == [
        f"{a}{i}" for a, s in zip(names, shapes) for i in range(math.prod(s))
    ]
    assert poly.degree_bound == degree
    assert poly.degree == degree
    points, expected = _forward(model, shapes)
    got = poly(points)
    assert float((got - expected).abs().max() / expected.abs().max()) < TOL
    counted = polynet.count_terms(model, input_shape=input_shape)
    assert counted.n_vars == n
    assert counted.degree_bound == degree
    return poly


@pytest.mark.parametrize("as_dict", [False, True])
def test_bilinear_two_inputs_equals_forward_pass(as_dict):
    torch.manual_seed(0)
    shape = {"x": (3,), "y": (4,)} if as_dict else ((3,), (4,))
    _check(Bilinear(), shape, [(3,), (4,)], ["x", "y"], 2)


def test_elementwise_product_of_two_inputs(tmp_path):
    torch.manual_seed(0)
    poly = _check(Elementwise(), ((3,), (3,)), [(3,), (3,)], ["x", "y"], 4)
    assert poly.info["input_shapes"] == {"x": [3], "y": [3]}
    loaded = NetworkPolynomial.load(poly.save(tmp_path / "p"))
    assert loaded.variables == poly.variables
    assert loaded.info["input_shapes"] == {"x": [3], "y": [3]}


def test_three_inputs_of_different_shapes():
    torch.manual_seed(0)
    shapes = [(1, 2, 3), (2,), (2, 2)]
    _check(
        ThreeInputs(),
        {"img": (1, 2, 3), "v": (2,), "m": (2, 2)},
        shapes,
        ["img", "v", "m"],
        3,
    )


def test_slice_of_a_two_input_model_names_its_variables():
    torch.manual_seed(0)
    model = Bilinear().eval()
    fixed = torch.randn(7, dtype=torch.float64)
    poly = polynet.expand(model, input_shape=((3,), (4,)), inputs=[0, 4], fixed=fixed)
    assert list(poly.variables) == ["x0", "y1"]
    points = torch.randn(5, 2, dtype=torch.float64)
    full = fixed.repeat(5, 1)
    full[:, [0, 4]] = points
    with torch.no_grad():
        expected = model.double()(full[:, :3], full[:, 3:])
    assert torch.allclose(poly(points), expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize(
    "input_shape, words",
    [
        (((3,),), "needs 2 input tensors"),
        (((3,), (4,), (5,)), "gives 3 shapes"),
        ((3,), "needs 2 input tensors"),
        (None, "needs 2 input tensors"),
        ({"x": (3,), "z": (4,)}, "not arguments"),
        ({"y": (4,)}, "in order"),
    ],
)
def test_wrong_input_shape_count_is_refused(input_shape, words):
    model = Bilinear().eval()
    with pytest.raises(NotExpandableError, match=words) as info:
        polynet.expand(model, input_shape=input_shape)
    assert "Bilinear.forward(x, y)" in str(info.value)
    with pytest.raises(NotExpandableError, match=words):
        polynet.count_terms(model, input_shape=input_shape)


def test_verify_feeds_each_input_its_tensor():
    torch.manual_seed(0)
    model = ThreeInputs().eval()
    poly = polynet.expand(model, input_shape={"img": (1, 2, 3), "v": (2,), "m": (2, 2)})
    report = polynet.verify(model, poly)
    assert report.passed
    assert report.max_rel_error < TOL
