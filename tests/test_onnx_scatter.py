"""from_onnx reads ScatterND and ScatterElements (item assignment) as affine per-sample maps.

torch's exporter writes ``out[:, :2] = h`` as ScatterND over indices it builds from the batch
size (Range, Expand); each model here is compared with onnxruntime, as a module and expanded.
Scatters that are not one polynomial map per sample are refused by name.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import polynet
from polynet.errors import NotExpandableError
from tests.poly.test_corpus import STEPS, _Drawn

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

#: onnxruntime computes in float32.
RTOL, ATOL = 1e-4, 1e-5


def _export(model: nn.Module, shape) -> bytes:
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model.eval(),
            (torch.randn(2, *shape),),
            buffer,
            dynamo=False,
            opset_version=17,
            input_names=["x"],
            output_names=["y"],
            dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}},
        )
    return buffer.getvalue()


def _runtime(model_bytes: bytes, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})[0]


def _op_types(model_bytes: bytes) -> set[str]:
    return {n.op_type for n in onnx.load_from_string(model_bytes).graph.node}


class ColumnProduct(nn.Module):
    """One column overwritten by a product of two others: degree 2."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        h = self.fc(x)
        out = h.clone()
        out[:, 1] = h[:, 0] * h[:, 2]
        return out


class Blocks(nn.Module):
    """Two blocks of a (3, 3) sample written into zeros built like the input: degree 2."""

    def forward(self, x):
        out = x.new_zeros(x.shape)
        out[:, :, 0] = x[:, :, 1] ** 2
        out[:, 1:, 2:] = x[:, :2, :1] * 3
        return out


class ConstantColumn(nn.Module):
    """A constant written into a column, then a product with the input: degree 2."""

    def forward(self, x):
        out = x.clone()
        out[:, 0] = 1.5
        return out * x


class IndexBuffer(nn.Module):
    """Assignment through a constant index buffer: degree 2."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("idx", torch.tensor([3, 1]))

    def forward(self, x):
        out = torch.zeros_like(x)
        out[:, self.idx] = x[:, :2] * x[:, 2:]
        return out + x


class ScatterBuffer(nn.Module):
    """torch.scatter along the features with a constant index: ScatterElements, degree 2."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("idx", torch.tensor([[2, 0]]))

    def forward(self, x):
        return x.scatter(1, self.idx.expand(x.shape[0], -1), x[:, :2] ** 2)


class GatherBuffer(nn.Module):
    """torch.gather with a constant index buffer: GatherElements, degree 2."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("idx", torch.tensor([[2, 0, 1, 1]]))

    def forward(self, x):
        return torch.gather(x, 1, self.idx.expand(x.shape[0], -1)) * x


TORCH_MODELS = {
    "column_product": (ColumnProduct, (4,), "ScatterND"),
    "blocks": (Blocks, (3, 3), "ScatterND"),
    "constant_column": (ConstantColumn, (3,), "ScatterND"),
    "index_buffer": (IndexBuffer, (4,), "ScatterND"),
    "scatter_buffer": (ScatterBuffer, (4,), "ScatterElements"),
    "gather_buffer": (GatherBuffer, (4,), "GatherElements"),
}


@pytest.mark.parametrize("name", sorted(TORCH_MODELS))
def test_torch_item_assignment_equals_onnxruntime(name):
    cls, shape, op = TORCH_MODELS[name]
    torch.manual_seed(0)
    model_bytes = _export(cls(), shape)
    assert op in _op_types(model_bytes)
    net = polynet.from_onnx(model_bytes)
    rng = np.random.default_rng(1)
    for batch in (1, 5):
        x = rng.standard_normal((batch, *shape)).astype(np.float32)
        with torch.no_grad():
            got = net(torch.from_numpy(x)).numpy()
        np.testing.assert_allclose(got, _runtime(model_bytes, x), rtol=RTOL, atol=ATOL)
    poly = polynet.expand(net)
    assert poly.degree == 2
    x = rng.standard_normal((7, *shape)).astype(np.float32)
    expected = _runtime(model_bytes, x).reshape(7, -1)
    got = poly(torch.from_numpy(x.reshape(7, -1)).double()).numpy()
    np.testing.assert_allclose(got, expected, rtol=RTOL, atol=ATOL)


# --------------------------------------------------------------------------------------------
# Hand-written graphs: constant indices on a non-batch axis, and the refusals
# --------------------------------------------------------------------------------------------


def _graph(nodes, initializers, shape=(4,)) -> bytes:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", *shape])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    graph = helper.make_graph(nodes, "g", [x], [y], initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    return model.SerializeToString()


def _ints(name: str, values) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(values, dtype=np.int64), name)


def _rows_scatter(reduction: str = "none", indices=((1,), (3,))) -> bytes:
    """x (n, 4) transposed to (4, n); rows of it overwritten by squares of x's first two
    features (constant indices, the batch on the last axis); transposed back."""
    return _graph(
        [
            helper.make_node("Transpose", ["x"], ["t"], perm=[1, 0]),
            helper.make_node("Slice", ["x", "s0", "s1", "ax"], ["head"]),
            helper.make_node("Mul", ["head", "head"], ["sq"]),
            helper.make_node("Transpose", ["sq"], ["upd"], perm=[1, 0]),
            helper.make_node(
                "ScatterND", ["t", "idx", "upd"], ["o"], reduction=reduction, name="write_rows"
            ),
            helper.make_node("Transpose", ["o"], ["y"], perm=[1, 0]),
        ],
        [
            _ints("s0", [0]),
            _ints("s1", [2]),
            _ints("ax", [1]),
            _ints("idx", [list(i) for i in indices]),
        ],
    )


def test_constant_indices_on_a_feature_axis_equal_onnxruntime():
    model_bytes = _rows_scatter()
    net = polynet.from_onnx(model_bytes)
    poly = polynet.expand(net)
    x = np.random.default_rng(2).standard_normal((6, 4)).astype(np.float32)
    expected = _runtime(model_bytes, x)
    np.testing.assert_allclose(
        poly(torch.from_numpy(x).double()).numpy(), expected, rtol=RTOL, atol=ATOL
    )
    assert poly.degree == 2


@pytest.mark.parametrize("reduction", ["add", "mul", "max"])
def test_reductions_other_than_none_are_refused(reduction):
    with pytest.raises(NotExpandableError, match=f"write_rows.*reduction='{reduction}'"):
        polynet.from_onnx(_rows_scatter(reduction))


def test_indices_computed_from_the_input_are_refused():
    model_bytes = _graph(
        [
            helper.make_node("Slice", ["x", "s0", "s1", "ax"], ["first"]),  # (n, 1)
            helper.make_node("Cast", ["first"], ["idx"], to=TensorProto.INT64),
            helper.make_node("ScatterElements", ["x", "idx", "first"], ["y"], axis=1, name="sc"),
        ],
        [_ints("s0", [0]), _ints("s1", [1]), _ints("ax", [1])],
    )
    with pytest.raises(NotExpandableError, match="'sc'.*indices depend on the input values"):
        polynet.from_onnx(model_bytes)


def test_gather_with_indices_from_the_input_is_refused_naming_the_node():
    model_bytes = _graph(
        [
            helper.make_node("Slice", ["x", "s0", "s1", "ax"], ["first"]),  # (n, 1)
            helper.make_node("Cast", ["first"], ["idx"], to=TensorProto.INT64),
            helper.make_node("GatherElements", ["x", "idx"], ["y"], axis=1, name="pick"),
        ],
        [_ints("s0", [0]), _ints("s1", [1]), _ints("ax", [1])],
    )
    net = polynet.from_onnx(model_bytes)
    x = np.array([[1.2, 5.0, 6.0, 7.0], [3.1, 5.0, 6.0, 7.0]], dtype=np.float32)
    with torch.no_grad():
        np.testing.assert_allclose(net(torch.from_numpy(x)).numpy(), _runtime(model_bytes, x))
    with pytest.raises(NotExpandableError, match="pick"):
        polynet.expand(net)


def test_constant_indices_into_the_batch_axis_are_refused():
    """ScatterND with indices [[0]] into x (n, 4) writes sample 0 only: it mixes the batch."""
    model_bytes = _graph(
        [helper.make_node("ScatterND", ["x", "idx", "row"], ["y"], name="first_sample")],
        [
            _ints("idx", [[0]]),
            numpy_helper.from_array(np.ones((1, 4), dtype=np.float32), "row"),
        ],
    )
    with pytest.raises(NotExpandableError, match="'first_sample'.*different entries in different"):
        polynet.from_onnx(model_bytes)


# --------------------------------------------------------------------------------------------
# Drawn graphs: item assignment, in-place ops and constants built like the input, exported
# --------------------------------------------------------------------------------------------


@settings(max_examples=8, deadline=None)
@given(
    n=st.integers(1, 3),
    steps=st.lists(st.sampled_from([s for s in STEPS if s != "mix"]), min_size=1, max_size=4)
    .filter(lambda s: s.count("square") + s.count("inplace_pow") <= 2)
    .filter(lambda s: {"assign", "new_zeros_assign"} & set(s)),
)
def test_drawn_graphs_with_assignment_expand_to_onnxruntime(n, steps):
    torch.manual_seed(0)
    model = _Drawn(n, steps).eval()
    model_bytes = _export(model, (n,))
    poly = polynet.expand(polynet.from_onnx(model_bytes))
    assert poly.degree <= model.degree
    x = np.random.default_rng(3).standard_normal((6, n)).astype(np.float32)
    expected = _runtime(model_bytes, x)
    got = poly(torch.from_numpy(x).double()).numpy()
    np.testing.assert_allclose(got, expected, rtol=RTOL, atol=ATOL * np.abs(expected).max())


def test_an_empty_slice_assigned_leaves_the_data_as_it_was():
    """Shrunk from the drawn graphs: with one feature, ``out[:, :-1] = ...`` assigns nothing
    (a ScatterND of zero updates after a Reshape to (batch, 0))."""
    torch.manual_seed(0)
    model = _Drawn(1, ["new_zeros_assign"]).eval()
    model_bytes = _export(model, (1,))
    poly = polynet.expand(polynet.from_onnx(model_bytes))
    x = np.random.default_rng(4).standard_normal((5, 1)).astype(np.float32)
    expected = _runtime(model_bytes, x)
    np.testing.assert_allclose(
        poly(torch.from_numpy(x).double()).numpy(), expected, rtol=RTOL, atol=ATOL
    )


class SampleIndex(nn.Module):
    """Adds each sample's position in the batch: not one polynomial map per sample."""

    def forward(self, x):
        return x + torch.arange(x.shape[0])[:, None]


def test_arithmetic_with_the_sample_index_is_refused_naming_the_node():
    model_bytes = _export(SampleIndex(), (3,))
    assert "Range" in _op_types(model_bytes)
    with pytest.raises(polynet.PolynetError, match="built from the batch size"):
        polynet.from_onnx(model_bytes)
