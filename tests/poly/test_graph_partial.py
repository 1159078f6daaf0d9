"""degree=, at=, store=, client=, progress=, inputs=/fixed= on models with a custom forward().

The references are independent of the truncated arithmetic: the full expansion of the same
model (its monomials of degree <= q), the float64 forward pass at x0 + u, and the model's
derivatives along lines by autograd (polynet.expansion.truncated.taylor_errors).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import polynet
from polynet.errors import ExpansionTooLargeError, NotExpandableError, PartialPolynomialError
from polynet.expansion.truncated import taylor_errors
from tests.poly.corpus_models import (
    CheckedSquare,
    CubicNeuron,
    DivideProd,
    ExponentBuffer,
    FusedHEBlock,
    HermiteNet,
    InPlaceAffine,
    OuterProduct,
    PolyAttention,
    ProductOfPolynomials,
    SLAFResidualChecked,
    TwoHeads,
)
from tests.poly.graph_models import warmed
from tests.poly.test_graph_inputs import Elementwise
from tests.poly.test_graph_properties import RandomGraph, graphs

TOL = 1e-10


class WideInteractions(nn.Module):
    """Products of two branches, an in-place scale by a buffer, an SLAF feeding a narrower
    head (folded with it), a residual power, and a width check: degree 4."""

    DEGREE = 4

    def __init__(self, n: int = 6, width: int = 4) -> None:
        super().__init__()
        self.in_features = n
        self.a = nn.Linear(n, width)
        self.b = nn.Linear(n, width)
        self.act = polynet.SLAF(width, 2)
        self.head = nn.Linear(width, 2)
        self.register_buffer("scale", torch.linspace(0.5, 1.5, width))

    def forward(self, x):
        if x.size(-1) != self.in_features:
            raise ValueError(f"expected {self.in_features} features, got {x.size(-1)}")
        h = self.a(x) * self.b(x)
        h.mul_(self.scale)
        return self.head(self.act(h)) + h.sum(1, keepdim=True) ** 2 / 4


def _model(cls, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    model = cls().eval().double()
    with torch.no_grad():  # SLAFs start at the identity: give them curvature
        for m in model.modules():
            if isinstance(m, polynet.SLAF):
                m.weight.add_(0.3 * torch.randn_like(m.weight))
    return model


def _shape(model) -> tuple[int, ...]:
    return getattr(type(model), "SHAPE", (getattr(model, "in_features", 0),))


def _forward(model, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(x.reshape(len(x), *_shape(model))).reshape(len(x), -1)


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-300))


# Each arithmetic path: products (multiply), ** and pow by a buffer (power, _tensor_power),
# SLAF (unit_polynomial), SLAF folded into a narrower Linear (unit_polynomial_linear), bmm and
# einsum of two input-dependent values (_bilinear), prod(dim) (_prod), a conv block.
MODELS = [
    CheckedSquare,
    CubicNeuron,
    DivideProd,
    ExponentBuffer,
    FusedHEBlock,
    HermiteNet,
    InPlaceAffine,
    OuterProduct,
    PolyAttention,
    ProductOfPolynomials,
    SLAFResidualChecked,
    WideInteractions,
]


@pytest.mark.parametrize("cls", MODELS, ids=lambda c: c.__name__)
def test_degree_q_part_is_the_full_expansion_up_to_degree_q(cls):
    model = _model(cls)
    shape = _shape(model)
    full = polynet.expand(model, input_shape=shape)
    n, D = full.n_vars, full.degree_bound
    for q in range(D + 1):
        part = polynet.expand(model, input_shape=shape, degree=q)
        size = math.comb(n + q, q)
        assert part.index.n_vars == n and part.index.size == size
        assert part.degree_bound == D
        assert part.notes["taylor"] == {"degree": q, "center": None, "network_degree": D}
        scale = float(full.coefficients.abs().max())
        assert float((part.coefficients - full.coefficients[:, :size]).abs().max()) <= TOL * scale


@settings(max_examples=20, deadline=None)
@given(graphs(), st.integers(0, 8), st.booleans())
def test_random_graph_degree_q_part_is_the_prefix_of_the_whole(graph, q, recentre):
    n, plan, seed = graph
    torch.manual_seed(seed)
    model = warmed(RandomGraph(n, plan), (n,), seed).double()
    at = torch.linspace(-0.5, 0.5, n, dtype=torch.float64) if recentre else None
    whole = polynet.expand(model, input_shape=(n,), at=at)
    part = polynet.expand(model, input_shape=(n,), degree=q, at=at)
    size = math.comb(n + min(q, whole.degree_bound), min(q, whole.degree_bound))
    assert part.index.size == size and part.degree_bound == whole.degree_bound
    scale = max(float(whole.coefficients.abs().max()), 1e-300)
    assert float((part.coefficients - whole.coefficients[:, :size]).abs().max()) <= TOL * scale


@pytest.mark.parametrize(
    "cls", [CheckedSquare, HermiteNet, PolyAttention, WideInteractions], ids=lambda c: c.__name__
)
def test_at_x0_is_the_polynomial_recentred(cls):
    model = _model(cls)
    shape = _shape(model)
    full = polynet.expand(model, input_shape=shape)
    n = full.n_vars
    gen = torch.Generator().manual_seed(3)
    x0 = torch.randn(n, generator=gen, dtype=torch.float64)
    at = polynet.expand(model, input_shape=shape, at=x0)
    assert list(at.variables) == [f"u{i}" for i in range(n)]
    assert at.notes["taylor"]["center"] == x0.tolist()
    u = torch.randn(64, n, generator=gen, dtype=torch.float64)
    assert _rel(at(u), full(x0 + u)) < TOL
    assert _rel(at(u), _forward(model, x0 + u)) < TOL
    assert polynet.verify(model, at, tol=TOL).passed  # verify knows it is in u = x - x0
    for q in range(full.degree_bound):
        taylor = polynet.expand(model, input_shape=shape, degree=q, at=x0)
        size = taylor.index.size
        scale = float(at.coefficients.abs().max())
        assert float((taylor.coefficients - at.coefficients[:, :size]).abs().max()) <= TOL * scale
    assert taylor_errors(model, taylor) == pytest.approx([0.0] * (q + 1), abs=1e-8)
    with pytest.raises(PartialPolynomialError, match="Taylor polynomial of degree"):
        polynet.verify(model, taylor)


def test_slice_with_degree_and_at():
    model = _model(WideInteractions)
    n = model.in_features
    fixed = np.linspace(-0.5, 0.5, n)
    inputs = [1, 4]
    whole = polynet.expand(model, inputs=inputs, fixed=fixed)
    part = polynet.expand(model, inputs=inputs, fixed=fixed, degree=2)
    assert float((part.coefficients - whole.coefficients[:, :6]).abs().max()) < TOL
    x0 = np.array([0.3, -0.7])
    at = polynet.expand(model, inputs=inputs, fixed=fixed, at=x0)
    assert list(at.variables) == ["u1", "u4"]
    u = torch.randn(32, 2, dtype=torch.float64)
    x = torch.as_tensor(fixed).repeat(32, 1)
    x[:, inputs] = u + torch.as_tensor(x0)
    assert _rel(at(u), _forward(model, x)) < TOL
    assert polynet.verify(model, at, tol=TOL).passed
    taylor = polynet.expand(model, inputs=inputs, fixed=fixed, at=x0, degree=3)
    assert float((taylor.coefficients - at.coefficients[:, :10]).abs().max()) < TOL


def test_several_inputs_with_degree_and_at():
    torch.manual_seed(0)
    model = Elementwise().double().eval()
    shapes = {"x": (3,), "y": (3,)}
    full = polynet.expand(model, input_shape=shapes)
    part = polynet.expand(model, input_shape=shapes, degree=2)
    assert float((part.coefficients - full.coefficients[:, :28]).abs().max()) < TOL
    x0 = torch.linspace(-1, 1, 6, dtype=torch.float64)
    at = polynet.expand(model, input_shape=shapes, at=x0)
    assert list(at.variables) == [f"u_{a}{i}" for a in "xy" for i in range(3)]
    u = torch.randn(16, 6, dtype=torch.float64)
    assert _rel(at(u), full(u + x0)) < TOL
    assert polynet.verify(model, at, tol=TOL).passed


def test_verify_of_several_outputs_recentred():
    model = _model(TwoHeads)
    x0 = torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64)
    at = polynet.expand(model, at=x0)
    assert at.notes["outputs"] == {"0": 1, "1.aux": 2}
    assert polynet.verify(model, at, tol=TOL).passed  # a tuple and a dict of outputs
    assert not polynet.verify(_model(TwoHeads, seed=1), at).passed


def test_many_inputs_at_degree_2_fit_where_the_whole_polynomial_is_refused():
    model = _model(lambda: WideInteractions(n=200))
    budget = "64MiB"
    with pytest.raises(ExpansionTooLargeError, match=r"degree=2 \(20,301 monomials"):
        polynet.expand(model, max_memory=budget)
    assert polynet.expand.estimate(model).peak_bytes > 2**26
    estimate = polynet.expand.estimate(model, degree=2)
    assert estimate.peak_bytes < 2**23 and estimate.n_monomials == 20301
    poly = polynet.expand(model, degree=2, max_memory=budget)
    assert poly.index.size == 20301 and poly.degree_bound == 4
    assert max(taylor_errors(model, poly)) < TOL  # autograd along random lines
    x0 = torch.full((200,), 0.05, dtype=torch.float64)
    local = polynet.expand(model, degree=2, at=x0, max_memory=budget)
    assert max(taylor_errors(model, local)) < TOL
    with pytest.raises(ExpansionTooLargeError, match=r"the degree <= 3 part in 200 inputs has"):
        polynet.expand(model, degree=3, max_memory="1MiB")


def test_estimate_and_count_agree_with_expand_on_a_graph_model():
    model = _model(SLAFResidualChecked)
    full = polynet.expand(model)
    counted = polynet.count_terms(model)
    assert counted.degree_bound == full.degree_bound and counted.max_terms == full.index.size
    assert polynet.expand.estimate(model).n_monomials == full.index.size
    for q in (1, 2, 6):
        part = polynet.expand(model, degree=q)
        estimate = polynet.expand.estimate(model, degree=q)
        assert estimate.n_monomials == part.index.size
        assert estimate.result_bytes == 8 * part.coefficients.numel()
    assert "time not estimated" in str(polynet.expand.estimate(model))
    torch.manual_seed(0)
    chain = polynet.SLNN(5, [4], [3]).eval()  # the same degree= on a chain
    part = polynet.expand(chain, degree=2)
    estimate = polynet.expand.estimate(chain, degree=2)
    assert estimate.n_monomials == part.index.size
    assert estimate.result_bytes == 8 * part.coefficients.numel()


def test_store_round_trip_equals_the_in_memory_expansion(tmp_path):
    from polynet.polynomial.store import StoredPolynomial, open_store

    model = _model(WideInteractions)
    poly = polynet.expand(model)
    stored = polynet.expand(model, store=tmp_path / "g.zarr")
    assert isinstance(stored, StoredPolynomial)
    again = open_store(tmp_path / "g.zarr")
    assert torch.equal(again.to_memory().coefficients, poly.coefficients)
    assert again.degree_bound == poly.degree_bound and again.n_terms == poly.n_terms
    x = torch.randn(16, 6, dtype=torch.float64)
    assert _rel(torch.as_tensor(stored(x)), _forward(model, x)) < TOL
    assert polynet.verify(model, stored, tol=TOL).passed
    codecs = [type(c).__name__ for c in stored.coefficients._array.compressors]
    assert "Crc32cCodec" in codecs
    sliced = polynet.expand(model, inputs=[0, 2], fixed=np.zeros(6), store=tmp_path / "s.zarr")
    assert list(sliced.slice.inputs) == [0, 2]
    assert polynet.verify(model, sliced, tol=TOL).passed


def test_store_of_several_inputs_verifies(tmp_path):
    torch.manual_seed(0)
    model = Elementwise().double().eval()
    shapes = {"x": (3,), "y": (3,)}
    stored = polynet.expand(model, input_shape=shapes, store=tmp_path / "e.zarr")
    assert stored.notes["input_shapes"] == {"x": [3], "y": [3]}
    assert polynet.verify(model, stored, tol=TOL).passed
    assert polynet.verify(model, stored.to_memory(), tol=TOL).passed


def test_store_over_the_budget_is_refused_before_writing(tmp_path):
    model = _model(lambda: WideInteractions(n=200))
    with pytest.raises(ExpansionTooLargeError, match="over the budget"):
        polynet.expand(model, store=tmp_path / "big.zarr", max_memory="64MiB")
    assert not (tmp_path / "big.zarr").exists()


def test_progress_counts_the_traced_nodes(capsys, monkeypatch):
    from polynet.expansion import dispatch

    bars = []
    original = dispatch._progress

    def recording(enabled, total):
        bar = original(enabled, total)
        bars.append(bar)
        return bar

    monkeypatch.setattr(dispatch, "_progress", recording)
    model = _model(WideInteractions)
    poly = polynet.expand(model, degree=2, progress=True)
    (bar,) = bars
    nodes = polynet.count_terms(model).layers
    assert bar.total == len(nodes) == len(poly.notes["node_degrees"]) and bar.n == bar.total
    assert "expand" in capsys.readouterr().err


def test_unsupported_combinations_name_the_option(tmp_path):
    model = _model(CheckedSquare)
    with pytest.raises(NotExpandableError, match=r"client= distributes the blocks of a chain.*"):
        polynet.expand(model, client=object(), store=tmp_path / "c.zarr")
    with pytest.raises(NotExpandableError, match=r"exact= with degree= or at= is available for"):
        polynet.expand(model, degree=1, exact=True)
    with pytest.raises(ValueError, match=r"store= writes float64 coefficients; use exact=False"):
        polynet.expand(model, exact=True, store=tmp_path / "e.zarr")
    with pytest.raises(ValueError, match=r"at= returns its polynomial in memory; store="):
        polynet.expand(model, at=np.zeros(4), store=tmp_path / "a.zarr")
    with pytest.raises(ValueError, match=r"at= must have 4 values \(one per network input\)"):
        polynet.expand(model, at=np.zeros(3))
    with pytest.raises(ValueError, match=r"at= must have 2 values"):
        polynet.expand(model, inputs=[0, 1], fixed=np.zeros(4), at=np.zeros(4))
    with pytest.raises(ValueError, match=r"degree must be an integer >= 0"):
        polynet.expand(model, degree=-1)
    with pytest.raises(NotExpandableError, match=r"form='sparse' needs a chain model"):
        polynet.expand(model, form="sparse")
    assert not any(tmp_path.iterdir())


def test_cli_expands_an_onnx_graph_at_a_point_and_into_a_store(tmp_path, capsys):
    import warnings

    pytest.importorskip("onnx")
    from polynet.cli import main
    from polynet.polynomial.store import open_store

    torch.manual_seed(0)
    model = ProductOfPolynomials().eval()
    path = tmp_path / "m.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (torch.randn(2, 3),),
            str(path),
            dynamo=False,
            opset_version=17,
            input_names=["x"],
            dynamic_axes={"x": {0: "batch"}},
        )
    assert main(["expand", str(path), "--degree", "2", "--at", "0.1,0.2,0.3", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "Taylor polynomial of degree 2 at x0, in u = x - x0" in out and "u1 u2" in out
    assert main(["expand", str(path), "--out", str(tmp_path / "m.zarr"), "--no-progress"]) == 0
    stored = open_store(tmp_path / "m.zarr")
    x = torch.randn(8, 3, dtype=torch.float64)
    with torch.no_grad():
        expected = model.double()(x)
    assert _rel(torch.as_tensor(stored(x)), expected) < 1e-6  # the ONNX file holds float32
