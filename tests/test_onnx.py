"""from_onnx: ONNX models become torch modules equal to onnxruntime, traceable, expandable."""

from __future__ import annotations

import io
import warnings

import numpy as np
import pytest
import torch
from torch import nn

import polynet
from polynet.errors import NotExpandableError, PolynetError

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

RNG = np.random.default_rng(0)


def _export(model: nn.Module, example: torch.Tensor, opset: int = 17) -> bytes:
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model.eval(),
            (example,),
            buffer,
            dynamo=False,
            opset_version=opset,
            input_names=["x"],
            output_names=["y"],
            dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}},
        )
    return buffer.getvalue()


def _runtime(model_bytes: bytes, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def _graph_model(nodes, inputs, outputs, initializers, opset: int = 17) -> bytes:
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model.SerializeToString()


def _init(name: str, array) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(array, dtype=np.float32), name)


def _ints(name: str, values) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(values, dtype=np.int64), name)


def _x(shape) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", *shape])


def _y() -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info("y", TensorProto.FLOAT, None)


class _Residual(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(3, 3)
        self.act = polynet.SLAF(3, 2)
        self.out = nn.Linear(3, 1)

    def forward(self, x):
        h = x + self.act(self.a(x))
        return self.out(h)


class _Product(nn.Module):
    def __init__(self):
        super().__init__()
        self.u = nn.Linear(3, 4)
        self.v = nn.Linear(3, 4)
        self.c = nn.Linear(4, 2)

    def forward(self, x):
        return self.c(self.u(x) * self.v(x) + x.sum(1, keepdim=True) ** 2)


class _SquareCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3, stride=1, padding=1)
        self.bn = nn.BatchNorm2d(2)
        self.pool = nn.AvgPool2d(2)
        self.fc = nn.Linear(2 * 2 * 2, 2)

    def forward(self, x):
        h = self.pool(self.bn(self.conv(x)) ** 2)
        return self.fc(h.view(h.size(0), -1))


def _slnn() -> nn.Module:
    torch.manual_seed(0)
    net = polynet.SLNN(3, [4], [3], 2)
    with torch.no_grad():  # non-trivial running statistics, as after training
        for m in net.modules():
            if isinstance(m, polynet.SLAF):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    return net.eval()


def _bn_stats(net: nn.Module) -> nn.Module:
    torch.manual_seed(1)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    return net.eval()


TORCH_MODELS = {
    "slnn": (_slnn, (3,)),
    "residual": (lambda: (torch.manual_seed(2), _Residual().eval())[1], (3,)),
    "product": (lambda: (torch.manual_seed(3), _Product().eval())[1], (3,)),
    "square_cnn": (lambda: _bn_stats(_SquareCNN()), (1, 4, 4)),
}


def _hand_models() -> dict[str, tuple[bytes, tuple[int, ...]]]:
    w = RNG.standard_normal((2, 3))
    gemm = _graph_model(
        [helper.make_node("Gemm", ["x", "w", "c"], ["y"], transB=1, alpha=0.5, beta=2.0)],
        [_x([3])],
        [_y()],
        [_init("w", w), _init("c", RNG.standard_normal(2))],
    )
    shapes = _graph_model(
        [
            helper.make_node("Reshape", ["x", "s"], ["r"]),  # (n, 6) -> (n, 2, 3)
            helper.make_node("Transpose", ["r"], ["t"], perm=[0, 2, 1]),
            helper.make_node("Mul", ["t", "t"], ["sq"]),
            helper.make_node("Concat", ["t", "sq"], ["cat"], axis=2),  # (n, 3, 4)
            helper.make_node("Slice", ["cat", "st", "en", "ax"], ["sl"]),  # (n, 3, 3)
            helper.make_node("Gather", ["sl", "gi"], ["g"], axis=1),  # (n, 2, 3)
            helper.make_node("Unsqueeze", ["g", "ua"], ["u"]),  # (n, 1, 2, 3)
            helper.make_node("ReduceSum", ["u", "ra"], ["rs"], keepdims=0),  # (n, 1, 3)
            helper.make_node("Squeeze", ["rs", "ua"], ["sq2"]),  # (n, 3)
            helper.make_node("MatMul", ["sq2", "m"], ["mm"]),
            helper.make_node("Add", ["mm", "b"], ["y"]),
        ],
        [_x([6])],
        [_y()],
        [
            _ints("s", [0, 2, -1]),
            _ints("st", [1]),
            _ints("en", [2**62]),
            _ints("ax", [2]),
            _ints("gi", [2, 0]),
            _ints("ua", [1]),
            _ints("ra", [2]),
            _init("m", RNG.standard_normal((3, 2))),
            _init("b", RNG.standard_normal(2)),
        ],
        opset=13,
    )
    conv = _graph_model(
        [
            helper.make_node(
                "Conv", ["x", "k", "kb"], ["c"], pads=[1, 1, 1, 1], strides=[2, 1], group=1
            ),
            helper.make_node("Pow", ["c", "two"], ["p"]),
            helper.make_node("AveragePool", ["p"], ["a"], kernel_shape=[2, 2], count_include_pad=1),
            helper.make_node("Flatten", ["a"], ["f"], axis=1),
            helper.make_node("Gemm", ["f", "fw"], ["y"]),
        ],
        [_x([2, 5, 4])],
        [_y()],
        [
            _init("k", RNG.standard_normal((3, 2, 3, 2))),
            _init("kb", RNG.standard_normal(3)),
            _init("two", 2.0),
            _init("fw", RNG.standard_normal((3 * 2 * 4, 2))),  # (3, 3, 5) pooled to (3, 2, 4)
        ],
        opset=21,
    )
    return {"gemm_transB": (gemm, (3,)), "shape_ops": (shapes, (6,)), "conv_pow": (conv, (2, 5, 4))}


def _all_models() -> dict[str, tuple[bytes, tuple[int, ...]]]:
    out = {}
    for name, (make, shape) in TORCH_MODELS.items():
        out[name] = (_export(make(), torch.randn(2, *shape)), shape)
    out.update(_hand_models())
    return out


MODELS = _all_models()


@pytest.mark.parametrize("name", sorted(MODELS))
def test_module_equals_onnxruntime(name):
    model_bytes, shape = MODELS[name]
    net = polynet.from_onnx(model_bytes)
    assert tuple(net.input_shape) == shape
    for batch in (1, 5):
        x = RNG.standard_normal((batch, *shape)).astype(np.float32)
        expected = _runtime(model_bytes, x)
        with torch.no_grad():
            got = net(torch.from_numpy(x)).numpy()
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
    traced = torch.fx.symbolic_trace(net)
    with torch.no_grad():
        np.testing.assert_allclose(
            traced(torch.from_numpy(x)).numpy(), expected, rtol=1e-4, atol=1e-5
        )


@pytest.mark.parametrize("name", sorted(MODELS))
def test_expansion_equals_onnxruntime(name):
    model_bytes, shape = MODELS[name]
    net = polynet.from_onnx(model_bytes)
    poly = polynet.expand(net, input_shape=shape)
    x = RNG.standard_normal((6, *shape)).astype(np.float32)
    expected = _runtime(model_bytes, x)
    got = poly(torch.from_numpy(x.reshape(6, -1)).double()).cpu().numpy()
    np.testing.assert_allclose(got.reshape(expected.shape), expected, rtol=1e-4, atol=1e-5)


def test_slnn_from_torch_keeps_linear_and_batchnorm_layers():
    net = polynet.from_onnx(MODELS["slnn"][0])
    kinds = {type(m).__name__ for m in net.modules()}
    assert {"Linear", "BatchNorm1d"} <= kinds
    assert "OnnxOp" not in kinds


def test_relu_is_refused_naming_the_onnx_node():
    model_bytes = _graph_model(
        [
            helper.make_node("Gemm", ["x", "w"], ["h"], name="dense"),
            helper.make_node("Relu", ["h"], ["y"], name="my_relu"),
        ],
        [_x([2])],
        [_y()],
        [_init("w", RNG.standard_normal((2, 2)))],
    )
    net = polynet.from_onnx(model_bytes)
    x = RNG.standard_normal((4, 2)).astype(np.float32)
    got = net(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(got, _runtime(model_bytes, x), rtol=1e-5, atol=1e-6)
    with pytest.raises(NotExpandableError, match="my_relu"):
        polynet.expand(net, input_shape=(2,))


def test_division_by_a_variable_is_refused_naming_the_node():
    model_bytes = _graph_model(
        [helper.make_node("Div", ["x", "x"], ["y"], name="ratio")], [_x([2])], [_y()], []
    )
    with pytest.raises(NotExpandableError, match="ratio"):
        polynet.expand(polynet.from_onnx(model_bytes), input_shape=(2,))


def test_unsupported_op_lists_the_supported_set():
    model_bytes = _graph_model(
        [helper.make_node("DepthToSpace", ["x"], ["y"], blocksize=1, name="d2s")],
        [_x([1, 1, 1])],
        [_y()],
        [],
    )
    with pytest.raises(PolynetError, match="DepthToSpace.*Supported: .*Conv"):
        polynet.from_onnx(model_bytes)


def test_data_dependent_if_is_refused():
    then = helper.make_graph([helper.make_node("Identity", ["x"], ["o"])], "t", [], [_y_named("o")])
    other = helper.make_graph([helper.make_node("Neg", ["x"], ["o"])], "e", [], [_y_named("o")])
    model_bytes = _graph_model(
        [
            helper.make_node("ReduceSum", ["x"], ["s"], keepdims=0),
            helper.make_node("Greater", ["s", "zero"], ["c"]),
            helper.make_node("If", ["c"], ["y"], then_branch=then, else_branch=other, name="br"),
        ],
        [_x([2])],
        [_y()],
        [_init("zero", 0.0)],
    )
    with pytest.raises(NotExpandableError, match="br"):
        polynet.from_onnx(model_bytes)


def _y_named(name: str) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, None)


def test_missing_file_and_free_axes_are_clear_errors(tmp_path):
    with pytest.raises(PolynetError, match="no ONNX file"):
        polynet.from_onnx(tmp_path / "absent.onnx")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a protobuf at all")
    with pytest.raises(PolynetError, match="not an ONNX model"):
        polynet.from_onnx(bad)
    free = _graph_model(
        [helper.make_node("Mul", ["x", "x"], ["y"])],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", "m"])],
        [_y()],
        [],
    )
    with pytest.raises(PolynetError, match="input_shape"):
        polynet.from_onnx(free)
    assert tuple(polynet.from_onnx(free, input_shape=(3,)).input_shape) == (3,)


def test_cli_expands_an_onnx_file(tmp_path, capsys):
    from polynet.cli import main

    path = tmp_path / "net.onnx"
    path.write_bytes(MODELS["product"][0])
    assert main(["expand", str(path), "--no-progress", "--top", "2"]) == 0
    out = capsys.readouterr().out
    assert "in 3 variables" in out and "degree       2" in out


def _opset_cases() -> dict[str, tuple[bytes, tuple[int, ...]]]:
    """Attribute forms that moved between opsets, each checked against onnxruntime."""
    w = RNG.standard_normal((4, 3))
    cases = {}
    # opset 11: Squeeze/Unsqueeze/ReduceSum take axes as attributes; 13: as inputs.
    cases["axes_attributes_opset11"] = (
        _graph_model(
            [
                helper.make_node("Unsqueeze", ["x"], ["u"], axes=[1, -1]),  # (n, 1, 3, 1)
                helper.make_node("ReduceSum", ["u"], ["r"], axes=[2], keepdims=1),
                helper.make_node("Squeeze", ["r"], ["s"], axes=[1, 3]),  # (n, 1)
                helper.make_node("Mul", ["s", "x"], ["y"]),
            ],
            [_x([3])],
            [_y()],
            [],
            opset=11,
        ),
        (3,),
    )
    cases["gemm_transA_bias_matrix"] = (
        _graph_model(
            [
                helper.make_node("Transpose", ["x"], ["xt"]),
                helper.make_node("Gemm", ["xt", "w", "c"], ["y"], transA=1, alpha=2.0),
            ],
            [_x([4])],
            [_y()],
            [_init("w", w), _init("c", RNG.standard_normal((1, 3)))],
        ),
        (4,),
    )
    cases["conv1d_same_upper_grouped"] = (
        _graph_model(
            [
                helper.make_node(
                    "Conv", ["x", "k"], ["c"], auto_pad="SAME_UPPER", group=2, strides=[2]
                ),
                helper.make_node("Mul", ["c", "c"], ["y"]),
            ],
            [_x([4, 7])],
            [_y()],
            [_init("k", RNG.standard_normal((4, 2, 2)))],
        ),
        (4, 7),
    )
    cases["asymmetric_pads_and_softmax_opset11"] = (
        _graph_model(
            [
                helper.make_node("Conv", ["x", "k"], ["c"], pads=[0, 1]),
                helper.make_node("Flatten", ["c"], ["f"], axis=1),
                helper.make_node("Softmax", ["f"], ["y"], axis=1),
            ],
            [_x([1, 5])],
            [_y()],
            [_init("k", RNG.standard_normal((2, 1, 2)))],
            opset=11,
        ),
        (1, 5),
    )
    # A Keras/tf2onnx-style NHWC input: Transpose to NCHW, Conv, back, Reshape with 0 and -1.
    cases["nhwc_reshape_zero"] = (
        _graph_model(
            [
                helper.make_node("Transpose", ["x"], ["t"], perm=[0, 3, 1, 2]),
                helper.make_node("Conv", ["t", "k", "kb"], ["c"], pads=[1, 1, 1, 1]),
                helper.make_node("Transpose", ["c"], ["h"], perm=[0, 2, 3, 1]),
                helper.make_node("Reshape", ["h", "s"], ["r"]),
                helper.make_node("ReduceMean", ["r", "ax"], ["y"], keepdims=0),
            ],
            [_x([3, 3, 2])],
            [_y()],
            [
                _init("k", RNG.standard_normal((2, 2, 3, 3))),
                _init("kb", RNG.standard_normal(2)),
                _ints("s", [0, -1]),
                _ints("ax", [1]),
            ],
            opset=18,
        ),
        (3, 3, 2),
    )
    return cases


OPSET_CASES = _opset_cases()


@pytest.mark.parametrize("name", sorted(OPSET_CASES))
def test_opset_forms_equal_onnxruntime(name):
    model_bytes, shape = OPSET_CASES[name]
    net = polynet.from_onnx(model_bytes)
    x = RNG.standard_normal((4, *shape)).astype(np.float32)
    with torch.no_grad():
        got = net(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, _runtime(model_bytes, x), rtol=1e-4, atol=1e-5)
    torch.fx.symbolic_trace(net)


def test_fixed_batch_export_runs_on_any_batch():
    torch.manual_seed(4)
    net = _SquareCNN().eval()
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (torch.randn(1, 1, 4, 4),), buffer, dynamo=False, opset_version=13)
    module = polynet.from_onnx(buffer.getvalue())
    x = torch.randn(7, 1, 4, 4)
    with torch.no_grad():
        torch.testing.assert_close(module(x), net(x), rtol=1e-4, atol=1e-5)


def test_constant_if_is_inlined():
    then = helper.make_graph([helper.make_node("Mul", ["x", "x"], ["o"])], "t", [], [_y_named("o")])
    other = helper.make_graph([helper.make_node("Neg", ["x"], ["o"])], "e", [], [_y_named("o")])
    model_bytes = _graph_model(
        [helper.make_node("If", ["flag"], ["y"], then_branch=then, else_branch=other)],
        [_x([2])],
        [_y()],
        [numpy_helper.from_array(np.array(True), "flag")],
    )
    poly = polynet.expand(polynet.from_onnx(model_bytes), input_shape=(2,))
    assert poly.degree == 2


def test_missing_onnx_package_names_the_extra(monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "onnx", None)
    with pytest.raises(PolynetError, match=r'pip install "polynet-slaf\[onnx\]"'):
        polynet.from_onnx("model.onnx")


def test_count_terms_and_verify_take_the_module():
    model_bytes, shape = MODELS["square_cnn"]
    net = polynet.from_onnx(model_bytes)
    poly = polynet.expand(net, input_shape=shape)
    assert polynet.count_terms(net, input_shape=shape).degree_bound == poly.degree == 2
    assert polynet.verify(net, poly).passed


@pytest.mark.parametrize("pads,strides", [([1, 0, 1, 1], [2, 1]), ([0, 1, 2, 0], [2, 1])])
def test_asymmetric_padding_expands(pads, strides):
    model_bytes = _graph_model(
        [
            helper.make_node("Conv", ["x", "k"], ["c"], pads=pads, strides=strides),
            helper.make_node("Mul", ["c", "c"], ["m"]),
            helper.make_node(
                "AveragePool",
                ["m"],
                ["y"],
                kernel_shape=[2, 2],
                pads=[0, 0, 1, 1],
                count_include_pad=1,
            ),
        ],
        [_x([1, 5, 4])],
        [_y()],
        [_init("k", RNG.standard_normal((2, 1, 3, 2)))],
    )
    net = polynet.from_onnx(model_bytes)
    x = RNG.standard_normal((3, 1, 5, 4)).astype(np.float32)
    expected = _runtime(model_bytes, x)
    with torch.no_grad():
        np.testing.assert_allclose(net(torch.from_numpy(x)).numpy(), expected, rtol=1e-4, atol=1e-5)
    poly = polynet.expand(net, input_shape=(1, 5, 4))
    got = poly(torch.from_numpy(x.reshape(3, -1)).double()).cpu().numpy()
    np.testing.assert_allclose(got.reshape(expected.shape), expected, rtol=1e-4, atol=1e-5)


def test_cli_input_shape_fills_free_axes(tmp_path, capsys):
    from polynet.cli import main

    free = _graph_model(
        [helper.make_node("Mul", ["x", "x"], ["y"])],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", "m"])],
        [_y()],
        [],
    )
    path = tmp_path / "free.onnx"
    path.write_bytes(free)
    assert main(["expand", str(path), "--no-progress", "--input-shape", "2"]) == 0
    assert "2 output(s) in 2 variables" in capsys.readouterr().out
    assert main(["expand", str(path), "--no-progress"]) == 1
    assert "input_shape" in capsys.readouterr().err
