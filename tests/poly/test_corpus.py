"""The corpus: polynomial models written as the field writes them expand to their forward pass.

Each model is traced on real shapes (metadata checks, asserts, loops over buffers, in-place
ops and item assignment run as plain Python), expanded, and checked against its float64
forward pass at the degree its architecture implies; count_terms agrees on the degree; the
ONNX export of each expands through polynet.from_onnx to what onnxruntime computes.
Non-polynomial twins are refused naming the op and the line; ops that mix the samples of a
batch are refused, never expanded into a wrong polynomial. Hypothesis draws graphs mixing all
of these.
"""

from __future__ import annotations

import inspect
import io
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import polynet
from polynet.errors import NotExpandableError
from tests.poly.corpus_models import MIXING, MODELS, TWINS

#: Relative error against the float64 forward pass.
TOL = 1e-10
#: Relative error against onnxruntime, which computes in float32.
ORT_TOL = 1e-5
N_POINTS = 16

#: Models whose ONNX export polynet.from_onnx cannot read, and why.
ONNX_SKIPS: dict[str, str] = {}


def _flat(out, n: int) -> torch.Tensor:
    leaves = torch.utils._pytree.tree_leaves(out)
    return torch.cat([leaf.reshape(n, -1) for leaf in leaves], dim=1)


def _points(shape, n: int = N_POINTS) -> torch.Tensor:
    gen = torch.Generator().manual_seed(1)
    return torch.randn(n, *shape, dtype=torch.float64, generator=gen)


def _relative_error(poly, model: nn.Module, shape) -> float:
    x = _points(shape)
    with torch.no_grad():
        expected = _flat(model.double().eval()(x), len(x))
    got = poly(x.reshape(len(x), -1))
    return float((got - expected).abs().max() / expected.abs().max())


def _line_of(cls: type, mark: str = "# MARK") -> int:
    lines, start = inspect.getsourcelines(cls)
    return start + next(i for i, line in enumerate(lines) if mark in line)


@pytest.mark.parametrize("cls", MODELS, ids=lambda c: c.__name__)
def test_corpus_model_expands_to_its_forward_pass(cls):
    torch.manual_seed(0)
    model = cls().eval()
    poly = polynet.expand(model, input_shape=cls.SHAPE)
    assert poly.degree == cls.DEGREE
    assert _relative_error(poly, model, cls.SHAPE) < TOL
    assert polynet.count_terms(model, input_shape=cls.SHAPE).degree_bound == cls.DEGREE


@pytest.mark.parametrize("cls", MODELS, ids=lambda c: c.__name__)
def test_corpus_onnx_export_expands_to_onnxruntime(cls):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    if cls.__name__ in ONNX_SKIPS:
        pytest.skip(ONNX_SKIPS[cls.__name__])
    torch.manual_seed(0)
    model = cls().eval()
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (torch.randn(2, *cls.SHAPE),),
            buffer,
            dynamo=False,
            opset_version=17,
            input_names=["x"],
            dynamic_axes={"x": {0: "batch"}},
        )
    poly = polynet.expand(polynet.from_onnx(buffer.getvalue()))
    assert poly.degree == cls.DEGREE
    x = _points(cls.SHAPE).float().numpy()
    session = ort.InferenceSession(buffer.getvalue())
    outs = session.run(None, {session.get_inputs()[0].name: x})
    expected = np.concatenate([o.reshape(len(x), -1) for o in outs], axis=1)
    got = poly(torch.from_numpy(x).double().reshape(len(x), -1)).numpy()
    assert np.abs(got - expected).max() / np.abs(expected).max() < ORT_TOL


@pytest.mark.parametrize("cls, op", TWINS, ids=lambda v: v.__name__ if isinstance(v, type) else v)
def test_non_polynomial_twin_is_refused_naming_the_op_behind_the_checks(cls, op):
    with pytest.raises(NotExpandableError) as info:
        polynet.expand(cls().eval(), input_shape=cls.SHAPE)
    message = str(info.value)
    assert op in message and "not a polynomial" in message, message
    assert f"corpus_models.py:{_line_of(cls)}" in message, message
    assert "branches" not in message  # the shape checks are not blamed


@pytest.mark.parametrize("cls", MIXING, ids=lambda c: c.__name__)
@pytest.mark.parametrize("fn", [polynet.expand, polynet.count_terms], ids=["expand", "count"])
def test_ops_that_mix_the_samples_are_refused(cls, fn):
    with pytest.raises(NotExpandableError) as info:
        fn(cls().eval(), input_shape=cls.SHAPE)
    message = str(info.value)
    assert "mixes the samples" in message, message
    assert f"corpus_models.py:{_line_of(cls)}" in message, message


def test_several_outputs_are_one_polynomial_per_entry_in_order():
    from tests.poly.corpus_models import TwoHeads

    torch.manual_seed(0)
    model = TwoHeads().eval()
    poly = polynet.expand(model)
    assert poly.n_outputs == 3
    assert poly.info["outputs"] == {"0": 1, "1.aux": 2}


class _ValueBranch(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 2)

    def forward(self, x):
        h = self.fc(x)
        if (h[:, 0] > 0).any():  # MARK
            return h * h
        return h


class _DeadNonPolynomial(nn.Module):
    """A non-polynomial value that never reaches the output does not stop the expansion."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 2)

    def forward(self, x):
        h = self.fc(x)
        _ = torch.tanh(h)
        return h * h


def test_control_flow_on_input_values_is_refused_as_such():
    with pytest.raises(NotExpandableError, match="branches or loops on the values") as info:
        polynet.expand(_ValueBranch().eval())
    assert f"test_corpus.py:{_line_of(_ValueBranch)}" in str(info.value)


def test_non_polynomial_dead_code_does_not_stop_the_expansion():
    torch.manual_seed(0)
    model = _DeadNonPolynomial().eval()
    poly = polynet.expand(model)
    assert poly.degree == 2 and _relative_error(poly, model, (3,)) < TOL


# ---------------------------------------------------------------- hypothesis

STEPS = (
    "linear",
    "square",
    "check",
    "view_by_shape",
    "inplace_mul",
    "inplace_add",
    "inplace_pow",
    "like_fill",
    "ones_like",
    "assign",
    "new_zeros_assign",
    "divide",
    "pad_cat",
    "outer_bias",
    "mix",
)

#: Ops that mix the samples of a batch, each refused naming it (as in the message).
MIXES = {
    "sum": (lambda h: h - h.sum(0, keepdim=True), ".sum()"),
    "mean": (lambda h: h - h.mean(0, keepdim=True), ".mean()"),
    "index": (lambda h: h * h[:1], "indexing"),
    "cumsum": (lambda h: h.cumsum(0), ".cumsum()"),
    "flip": (lambda h: h.flip(0), ".flip()"),
    "roll": (lambda h: torch.roll(h, 1, 0), "torch.roll"),
    "gram": (lambda h: h @ (h.T @ h), "@"),
    "batch_norm": (lambda h: F.batch_norm(h, None, None, training=True), "F.batch_norm"),
}


class _Drawn(nn.Module):
    """A chain of drawn steps on a (B, width) value; 'mix' steps must be refused."""

    def __init__(self, n: int, steps: list[str], mix: str = "mean") -> None:
        super().__init__()
        self.steps = steps
        self.width = n
        self.mix = MIXES[mix][0]
        self.layers = nn.ModuleList(nn.Linear(n, n) for _ in steps)
        self.register_buffer("scale", torch.linspace(0.5, 1.5, n))
        self.outer = nn.Parameter(torch.randn(1, n, n))
        self.degree = 1
        for step in steps:
            if step in ("square", "inplace_pow", "outer_bias"):
                self.degree *= 2
        self.out = nn.Linear(n, 1)

    def forward(self, x):
        h = x
        for step, layer in zip(self.steps, self.layers):
            if step == "linear":
                h = layer(h)
            elif step == "square":
                h = h * h
            elif step == "check":
                if h.dim() != 2 or h.size(-1) != self.width:
                    raise ValueError("shape")
                assert h.shape[0] == x.shape[0]
            elif step == "view_by_shape":
                h = h.view(h.size(0), *h.shape[1:]).reshape(h.shape[0], -1)
                if len(h.shape) == 2 and h.ndim == 2 and x.shape[-1] == self.width:
                    h = h * 1.5
            elif step == "inplace_mul":
                h = h.clone()
                h.mul_(self.scale)
            elif step == "inplace_add":
                h = h + 0
                h += self.scale
            elif step == "inplace_pow":
                h = h.clone()
                h.pow_(2)
            elif step == "like_fill":
                c = torch.full_like(h, 0.25)
                h = h - c
            elif step == "ones_like":
                h = h * torch.ones_like(h) + torch.zeros_like(h) - 0.5 * torch.ones_like(h)
            elif step == "assign":
                out = torch.zeros_like(h)
                out[:, 0] = h[:, 0] * 2
                out[:, 1:] = h[:, 1:]
                h = out
            elif step == "new_zeros_assign":
                out = h.new_zeros(h.shape)
                out[:, -1] = h[:, -1]
                out[:, :-1] = 0.5 * h[:, :-1] + 1.0
                h = out
            elif step == "divide":
                h = torch.divide(h, 2.0)
            elif step == "pad_cat":
                h = torch.cat([h, h.new_ones(h.size(0), 1)], dim=1)[:, : self.width]
            elif step == "outer_bias":
                # An outer product of the value with itself plus a bias expanded to the batch.
                bias = self.outer.expand(h.shape[0], -1, -1)
                h = torch.baddbmm(bias, h.unsqueeze(2), h.unsqueeze(1), beta=0.5).sum(2)
            elif step == "mix":
                h = self.mix(h)
        return self.out(h)


@settings(max_examples=20, deadline=None)
@given(
    n=st.integers(1, 3),
    steps=st.lists(st.sampled_from(STEPS), min_size=1, max_size=5).filter(
        lambda s: s.count("square") + s.count("inplace_pow") + s.count("outer_bias") <= 2
    ),
    mix=st.sampled_from(sorted(MIXES)),
)
def test_drawn_graphs_expand_or_refuse_batch_mixing(n, steps, mix):
    torch.manual_seed(0)
    model = _Drawn(n, steps, mix).eval()
    if "mix" in steps:
        with pytest.raises(NotExpandableError, match="mixes the samples") as info:
            polynet.expand(model, input_shape=(n,))
        assert f"cannot expand {MIXES[mix][1]} at " in str(info.value)
        return
    poly = polynet.expand(model, input_shape=(n,))
    assert poly.degree <= model.degree
    assert _relative_error(poly, model, (n,)) < TOL


def test_functional_conv2d_with_keyword_arguments():
    # The fx path popped `bias` from fx's immutable kwargs and failed.
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = nn.Parameter(torch.randn(2, 1, 3, 3))

        def forward(self, x):
            return F.conv2d(x, self.w, stride=1, padding=1).flatten(1)

    torch.manual_seed(0)
    model = Net().eval()
    poly = polynet.expand(model, input_shape=(1, 3, 3))
    assert _relative_error(poly, model, (1, 3, 3)) < TOL


def test_store_on_a_graph_model_is_written_not_ignored(tmp_path):
    from tests.poly.corpus_models import CheckedSquare

    model = CheckedSquare().eval()
    stored = polynet.expand(model, store=tmp_path / "c.zarr")
    assert (tmp_path / "c.zarr").exists()
    assert _relative_error(stored.to_memory(), model, CheckedSquare.SHAPE) < TOL
    with pytest.raises(NotExpandableError, match="client= distributes the blocks of a chain"):
        polynet.expand(model, client=object())


def test_progress_on_a_graph_model(capsys):
    from tests.poly.corpus_models import HermiteNet

    torch.manual_seed(0)
    model = HermiteNet().eval()
    poly = polynet.expand(model, progress=True)
    assert _relative_error(poly, model, HermiteNet.SHAPE) < TOL
    assert "expand" in capsys.readouterr().err
