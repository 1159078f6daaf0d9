"""The command line with a model whose forward() takes several tensors (--input-shape)."""

from __future__ import annotations

import textwrap

import numpy as np
import pytest
import torch

import polynet
from polynet.cli import main
from polynet.errors import CheckpointError, NotExpandableError
from polynet.expansion.inputs import parse_inputs
from polynet.input_shape_flag import parse_input_shape
from polynet.model_source import resolve

TOL = 1e-10
MODULE = "cli_inputs_models"
SOURCE = textwrap.dedent(
    '''
    import torch
    from torch import nn

    import polynet


    class TwoIn(nn.Module):
        """x of shape (B, 3) and y of shape (B, 2, 2): degree 4."""

        def __init__(self, hidden: int = 4):
            super().__init__()
            self.a = nn.Linear(3, hidden)
            self.b = nn.Linear(4, hidden)
            self.act = polynet.SLAF(hidden, 2)
            self.out = nn.Linear(hidden, 2)

        def forward(self, x, y):
            if x.dim() != 2 or y.shape[1:] != (2, 2):
                raise ValueError("x must be (B, 3) and y (B, 2, 2)")
            return self.out(self.act(self.a(x) * self.b(y.flatten(1))))
    '''
)
SHAPES = {"x": (3,), "y": (2, 2)}
N_VARS = 7


@pytest.fixture
def model_dir(tmp_path, monkeypatch):
    """The model module and its weights in the working directory, as a user runs polynet."""
    (tmp_path / f"{MODULE}.py").write_text(SOURCE)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delitem(__import__("sys").modules, MODULE, raising=False)
    namespace: dict = {}
    exec(SOURCE, namespace)
    torch.manual_seed(3)
    model = namespace["TwoIn"](hidden=3).eval()
    with torch.no_grad():  # non-trivial SLAF coefficients, so every degree appears
        model.act.weight.normal_()
    torch.save(model.state_dict(), tmp_path / "w.pt")
    return tmp_path, model


def _model_args(*shape: str) -> list[str]:
    return [f"{MODULE}:TwoIn", "--state-dict", "w.pt", "--init-args", '{"hidden": 3}'] + (
        ["--input-shape", *shape] if shape else []
    )


def _forward(model, n: int = 40):
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(n, 3, dtype=torch.float64, generator=gen)
    y = torch.randn(n, 2, 2, dtype=torch.float64, generator=gen)
    with torch.no_grad():
        expected = model.double()(x, y)
    return torch.cat([x, y.flatten(1)], 1), expected


def _write_csv(path, X, header):
    np.savetxt(path, X, delimiter=",", header=",".join(header), comments="")


# --------------------------------------------------------------------------------------------
# The flag's forms
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "words, expected",
    [
        (["1", "28", "28"], (1, 28, 28)),
        (["13"], (13,)),
        (["x=3", "y=2,2"], {"x": (3,), "y": (2, 2)}),
        (["y=(2, 2)", "x=3,"], {"y": (2, 2), "x": (3,)}),
        (["3", "2,2"], ((3,), (2, 2))),
        (["3,", "4,"], ((3,), (4,))),
        (["[1,4,4]", "5"], ((1, 4, 4), (5,))),
        (["1x28x28"], (1, 28, 28)),
        (["13,"], (13,)),
        (["3", "2x2"], ((3,), (2, 2))),
        (["x=3", "y=2x2"], {"x": (3,), "y": (2, 2)}),
    ],
)
def test_the_flag_forms_give_what_expand_takes(words, expected):
    assert parse_input_shape(words) == expected


@pytest.mark.parametrize(
    "words, match",
    [
        (["x=3", "2,2"], "'x=3' names its input but '2,2' does not"),
        (["y=2,a"], "'y=2,a' is not a shape: 'a' is not a size"),
        (["3", "0,2"], "'0' is not a size"),
        (["x=3", "x=4"], "'x' is given twice"),
        (["=3"], "'' is not an argument name"),
        (["x="], "'x=' gives no sizes"),
        (["3", "2,2", "mods:Net"], "if it is the model, name MODEL before --input-shape"),
    ],
)
def test_bad_forms_are_usage_errors_naming_the_flag_and_its_forms(model_dir, capsys, words, match):
    assert main(["count", *_model_args(*words)]) == 2
    err = capsys.readouterr().err
    assert "argument --input-shape" in err and match in err
    assert "--input-shape x=3 y=2,2" in err and "--input-shape 3 2,2" in err


# --------------------------------------------------------------------------------------------
# expand / verify / count, against the Python API and the forward pass
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [("x=3", "y=2,2"), ("3", "2,2"), ("y=2,2", "x=3")])
def test_expand_saves_the_python_api_polynomial(model_dir, capsys, shape):
    tmp, model = model_dir
    assert main(["expand", *_model_args(*shape), "--out", "p.npz", "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert f"polynomial   2 output(s) in {N_VARS} variables" in text
    assert "inputs       x of shape (3,): x0..x2\n             y of shape (2, 2): y0..y3" in text
    assert "degree       4 (bound D = 4)" in text
    saved = polynet.NetworkPolynomial.load(tmp / "p.npz")
    reference = polynet.expand(model, input_shape=SHAPES)
    assert (
        saved.variables
        == reference.variables
        == tuple([f"x{i}" for i in range(3)] + [f"y{i}" for i in range(4)])
    )
    assert dict(saved.notes)["input_shapes"] == {"x": [3], "y": [2, 2]}
    torch.testing.assert_close(saved.coefficients, reference.coefficients, rtol=0, atol=0)
    points, expected = _forward(model)
    got = saved(points)
    assert float((got - expected).abs().max() / expected.abs().max()) < TOL


def test_verify_with_data_columns_in_argument_order(model_dir, capsys):
    tmp, model = model_dir
    points, _ = _forward(model, n=25)
    target = np.arange(25.0)[:, None]
    names = [f"x{i}" for i in range(3)] + [f"y{i}" for i in range(4)] + ["t"]
    _write_csv(tmp / "d.csv", np.hstack([points.numpy(), target]), names)
    args = ["verify", *_model_args("x=3", "y=2,2"), "--data", "d.csv", "--target", "t"]
    assert main([*args, "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "verification PASSED" in text and "25 from the data" in text
    # A polynomial of the wrong model fails on the same data.
    wrong = polynet.expand(model, input_shape=SHAPES) * 1.01
    wrong.save(tmp / "wrong.npz")
    assert main([*args, "--poly", "wrong.npz", "--no-progress"]) == 1
    assert "FAILED" in capsys.readouterr().out


def test_data_of_the_wrong_width_says_what_was_expected(model_dir, capsys):
    tmp, _ = model_dir
    _write_csv(tmp / "d.csv", np.zeros((4, 6)), ["a", "b", "c", "d", "e", "t"])
    assert main(["verify", *_model_args("3", "2,2"), "--data", "d.csv", "--target", "t"]) == 1
    err = capsys.readouterr().err
    assert "'d.csv' has 5 feature columns" in err
    assert "the model takes 7 input values" in err
    assert "x of shape (3,): x0..x2; y of shape (2, 2): y0..y3" in err


def test_count_agrees_with_the_python_api(model_dir, capsys):
    _, model = model_dir
    assert main(["count", *_model_args("x=3", "y=2,2")]) == 0
    text = capsys.readouterr().out
    assert text.strip() == polynet.count_terms(model, SHAPES).table().strip()
    assert "monomials C(7+4, 4)" in text


def test_report_and_plot_run_on_concatenated_rows(model_dir, capsys):
    tmp, model = model_dir
    points, _ = _forward(model, n=30)
    names = [f"c{i}" for i in range(N_VARS)] + ["t"]
    _write_csv(tmp / "d.csv", np.hstack([points.numpy(), np.zeros((30, 1))]), names)
    data = ["--data", "d.csv", "--target", "t"]
    assert main(["report", *_model_args("3", "2,2"), *data, "--out", "rep"]) == 0
    report = (tmp / "rep" / "report.md").read_text()
    assert "**PASSED**" in report
    assert "activations.png" in report and "slice.png" in report
    assert main(["plot", *_model_args("3", "2,2"), *data, "--out", "a.png"]) == 0
    assert (tmp / "a.png").stat().st_size > 0


# --------------------------------------------------------------------------------------------
# Shapes checked against forward()'s arguments
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "shape, match",
    [
        (
            ("x=3", "yy=2,2"),
            r"names \['yy'\] that are not arguments of TwoIn.forward\(x, y\); "
            r"did you mean 'y'\?",
        ),
        (("x=3", "z=2,2"), r"the arguments not given are \['y'\]"),
        (("3", "4"), r"--input-shape gives 1 shape\(s\) but TwoIn.forward\(x, y\) needs 2"),
        (("3,", "2,2", "5,"), r"gives 3 shapes but TwoIn.forward\(x, y\) takes 2"),
        ((), r"TwoIn.forward\(x, y\) takes 2 input tensors; .*--input-shape x=SHAPE y=SHAPE"),
    ],
)
def test_shapes_that_do_not_fit_forward_are_refused(model_dir, capsys, shape, match):
    import re

    assert main(["expand", *_model_args(*shape), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert re.search(match, err), err
    assert "Traceback" not in err


def test_several_shapes_for_a_one_input_file_are_refused(tmp_path):
    net = polynet.SLNN(3, [2], [2]).eval()
    path = polynet.save(net, tmp_path / "m.safetensors")
    with pytest.raises(CheckpointError, match="several inputs are for a model given as"):
        resolve(path, input_shape={"x": (3,), "y": (2,)})


def test_python_names_get_a_did_you_mean(model_dir):
    _, model = model_dir
    with pytest.raises(NotExpandableError, match=r"input_shape names \['yy'\].*did you mean 'y'"):
        parse_inputs(model, {"x": (3,), "yy": (2, 2)})
    with pytest.raises(NotExpandableError, match=r"input_shape=\{'x': \(\.\.\.\), 'y'"):
        polynet.expand(model, input_shape=(3,))
    source = resolve(model, input_shape=((3,), (2, 2)))
    assert source.input_shape == SHAPES


# --------------------------------------------------------------------------------------------
# An ONNX graph with several inputs
# --------------------------------------------------------------------------------------------


def _export_two_inputs(model, path) -> None:
    import io
    import warnings

    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model.float().eval(),
            (torch.randn(2, 3), torch.randn(2, 2, 2)),
            buffer,
            dynamo=False,
            opset_version=17,
            input_names=["x", "y"],
            dynamic_axes={"x": {0: "b"}, "y": {0: "b"}},
        )
    path.write_bytes(buffer.getvalue())


def test_an_onnx_graph_with_several_inputs_expands_to_onnxruntime(model_dir, capsys):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    tmp, model = model_dir
    _export_two_inputs(model, tmp / "two.onnx")
    assert main(["expand", "two.onnx", "--out", "p.npz", "--no-progress"]) == 0
    assert "inputs       x of shape (3,): x0..x2" in capsys.readouterr().out
    poly = polynet.NetworkPolynomial.load(tmp / "p.npz")
    points, _ = _forward(model, n=9)
    x, y = points[:, :3].float().numpy(), points[:, 3:].reshape(9, 2, 2).float().numpy()
    expected = ort.InferenceSession(str(tmp / "two.onnx")).run(None, {"x": x, "y": y})[0]
    got = poly(points).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
    assert main(["expand", "two.onnx", "--input-shape", "x=3", "yy=2,2"]) == 1
    assert "did you mean 'y'?" in capsys.readouterr().err


def test_from_onnx_takes_one_shape_per_free_input():
    pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Mul", ["a", "b"], ["p"]), helper.make_node("Add", ["p", "a"], ["o"])],
        "g",
        [
            helper.make_tensor_value_info("a", TensorProto.FLOAT, ["n", "k"]),
            helper.make_tensor_value_info("b", TensorProto.FLOAT, ["n", "k"]),
        ],
        [helper.make_tensor_value_info("o", TensorProto.FLOAT, None)],
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(polynet.PolynetError, match="free axes"):
        polynet.from_onnx(proto)
    with pytest.raises(polynet.PolynetError, match="gives 1 shapes but the ONNX graph has 2"):
        polynet.from_onnx(proto, input_shape=((2,),))
    for given in ({"a": (2,), "b": (2,)}, ((2,), (2,))):
        net = polynet.from_onnx(proto, input_shape=given)
        assert net.input_shapes == {"a": (2,), "b": (2,)}
        poly = polynet.expand(net, input_shape=net.input_shapes)
        a, b = torch.randn(5, 2, dtype=torch.float64), torch.randn(5, 2, dtype=torch.float64)
        torch.testing.assert_close(poly(torch.cat([a, b], 1)), a * b + a)


# --------------------------------------------------------------------------------------------
# polynet.save of a model of several inputs
# --------------------------------------------------------------------------------------------


def test_save_with_one_example_per_input_writes_a_pt2_the_cli_expands(model_dir, capsys):
    tmp, model = model_dir
    example = (torch.randn(2, 3, dtype=torch.float64), torch.randn(2, 2, 2, dtype=torch.float64))
    path = polynet.save(model.double(), tmp / "m.pt2", example)
    loaded = polynet.load(path)
    points, expected = _forward(model, n=6)
    with torch.no_grad():
        got = loaded(points[:, :3], points[:, 3:].reshape(6, 2, 2))
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
    source = resolve(path)
    assert source.input_shape == SHAPES
    assert main(["expand", "m.pt2", "--out", "p.npz", "--no-progress"]) == 0
    assert "             y of shape (2, 2): y0..y3" in capsys.readouterr().out
    saved = polynet.NetworkPolynomial.load(tmp / "p.npz")
    reference = polynet.expand(model, input_shape=SHAPES)
    torch.testing.assert_close(saved.coefficients, reference.coefficients, rtol=1e-12, atol=1e-14)
    assert main(["verify", "m.pt2", "--poly", "p.npz", "--no-progress"]) == 0
    assert main(["count", "m.pt2", "--input-shape", "3", "2,3"]) == 1
    assert "exported on inputs of shapes" in capsys.readouterr().err


def test_verify_a_model_of_several_inputs_and_a_dict_of_outputs():
    """Each output leaf is one block of polynomial outputs, in pytree order."""

    class TwoOut(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = torch.nn.Linear(3, 2)
            self.b = torch.nn.Linear(2, 2)

        def forward(self, x, y):
            return {"p": self.a(x) * self.b(y), "q": self.a(x).sum(1)}

    torch.manual_seed(0)
    model = TwoOut().eval()
    shapes = {"x": (3,), "y": (2,)}
    poly = polynet.expand(model, input_shape=shapes)
    assert poly.n_outputs == 3
    report = polynet.verify(model, poly, n_box=50)
    assert report.passed and report.max_rel_error < TOL
    assert not polynet.verify(model, poly * 1.01, n_box=50).passed


def test_a_store_and_a_taylor_part_of_a_several_input_model(model_dir, capsys):
    pytest.importorskip("zarr")
    tmp, model = model_dir
    assert main(["expand", *_model_args("x=3", "y=2,2"), "--out", "p.zarr", "--no-progress"]) == 0
    assert main(["verify", *_model_args("x=3", "y=2,2"), "--poly", "p.zarr", "--no-progress"]) == 0
    assert "verification PASSED" in capsys.readouterr().out
    args = ["expand", *_model_args("3", "2,2"), "--degree", "2", "--out", "t.npz"]
    assert main([*args, "--no-progress"]) == 0
    part = polynet.NetworkPolynomial.load(tmp / "t.npz")
    reference = polynet.expand(model, input_shape=SHAPES, degree=2)
    torch.testing.assert_close(part.coefficients, reference.coefficients, rtol=0, atol=0)
    assert part.variables == reference.variables and part.n_vars == N_VARS
