"""exact=True on traced graph and ONNX models: the recorded program run in an exact ring.

Exact equals float on every corpus model and its ONNX export; the flint and SymPy rings give
the same rationals; on small graphs the result equals the polynomial built directly in
python-flint from the model's weights (not through polynet); a slice equals the whole
polynomial with the fixed inputs substituted; truncation after every product keeps the exact
low-degree part.
"""

from __future__ import annotations

import io
import itertools
import warnings
from fractions import Fraction

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import polynet
from polynet.errors import ExpansionTooLargeError
from tests.poly.corpus_models import (
    MODELS,
    ExponentBuffer,
    HermiteNet,
    PolyAttention,
    ProductOfPolynomials,
    QuadraticNeuron,
    SLAFResidualChecked,
    ZerosLikeScatter,
)
from tests.poly.graph_models import CustomSLNN, SquareCNN, warmed
from tests.poly.test_corpus import ONNX_SKIPS, STEPS, _Drawn
from tests.poly.test_graph import CASES as GRAPH_CASES

#: |float - exact| relative to the largest coefficient.
EXACT_FLOAT_RTOL = 1e-10


def _assert_exact_matches_float(exact, approx) -> None:
    assert exact.exact and not approx.exact
    assert exact.index == approx.index and exact.n_outputs == approx.n_outputs
    fractions = exact.exact_coefficients
    floats = np.vectorize(float, otypes=[float])(fractions)
    np.testing.assert_array_equal(floats, exact.coefficients.numpy())  # its floats are its own
    scale = approx.coefficients.abs().max().item()
    diff = np.abs(floats - approx.coefficients.numpy()).max()
    assert diff <= EXACT_FLOAT_RTOL * scale, (diff, scale)


@pytest.mark.parametrize("cls", MODELS, ids=lambda c: c.__name__)
def test_corpus_model_exact_equals_float(cls):
    torch.manual_seed(0)
    model = cls().eval()
    approx = polynet.expand(model, input_shape=cls.SHAPE)
    exact = polynet.expand(model, input_shape=cls.SHAPE, exact=True)
    _assert_exact_matches_float(exact, approx)
    assert exact.degree == cls.DEGREE and exact.info["engine"] in ("flint", "sympy")
    assert exact.info.get("outputs") == approx.info.get("outputs")


def _onnx(model: nn.Module, shape) -> bytes:
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (torch.randn(2, *shape),),
            buffer,
            dynamo=False,
            opset_version=17,
            input_names=["x"],
            dynamic_axes={"x": {0: "batch"}},
        )
    return buffer.getvalue()


@pytest.mark.parametrize(
    "cls", [c for c in MODELS if c.__name__ not in ONNX_SKIPS], ids=lambda c: c.__name__
)
def test_corpus_onnx_export_exact_equals_float(cls):
    pytest.importorskip("onnx")
    torch.manual_seed(0)
    graph = polynet.from_onnx(_onnx(cls().eval(), cls.SHAPE))
    _assert_exact_matches_float(polynet.expand(graph, exact=True), polynet.expand(graph))


@pytest.mark.parametrize(
    "cls, shape", [c[:2] for c in GRAPH_CASES], ids=[c[0].__name__ for c in GRAPH_CASES]
)
def test_graph_model_with_running_statistics_exact_equals_float(cls, shape):
    torch.manual_seed(0)
    model = warmed(cls(), shape)
    exact = polynet.expand(model, exact=True, input_shape=shape)
    _assert_exact_matches_float(exact, polynet.expand(model, input_shape=shape))


@pytest.mark.parametrize("cls", [ProductOfPolynomials, HermiteNet, QuadraticNeuron])
def test_flint_and_sympy_rings_give_the_same_rationals(cls):
    pytest.importorskip("flint")
    torch.manual_seed(1)
    model = cls().eval()
    flint_poly = polynet.expand(model, input_shape=cls.SHAPE, exact="flint")
    sympy_poly = polynet.expand(model, input_shape=cls.SHAPE, exact="sympy")
    assert flint_poly.info["engine"] == "flint" and sympy_poly.info["engine"] == "sympy"
    assert (flint_poly.exact_coefficients == sympy_poly.exact_coefficients).all()
    assert flint_poly == sympy_poly


# ---------------------------------------------------------------- independent flint references


def _q(x: float):
    import flint

    f = Fraction(float(x))
    return flint.fmpq(f.numerator, f.denominator)


def _linear(layer: nn.Linear, units: list) -> list:
    w = layer.weight.detach().double().tolist()
    b = layer.bias.detach().double().tolist()
    return [sum((u * _q(wij) for wij, u in zip(row, units)), _q(bi)) for row, bi in zip(w, b)]


def _assert_equals_flint(poly, reference: list) -> None:
    """Every coefficient of ``poly`` equals the flint polynomial's, as rationals."""
    got = poly.exact_coefficients
    exps = np.asarray(poly.exponents)
    for o, p in enumerate(reference):
        want = {
            tuple(int(v) for v in e): Fraction(int(c.p), int(c.q)) for e, c in p.to_dict().items()
        }
        row = {tuple(e.tolist()): got[o, k] for k, e in enumerate(exps) if got[o, k] != 0}
        assert row == want, (o, row, want)


def _gens(n: int):
    flint = pytest.importorskip("flint")
    return list(flint.fmpq_mpoly_ctx.get(("x", n), "deglex").gens())


def test_product_of_two_branches_equals_flint():
    torch.manual_seed(2)
    model = ProductOfPolynomials().eval()
    x = _gens(3)
    a, b = _linear(model.a, x), _linear(model.b, x)
    _assert_equals_flint(polynet.expand(model, exact=True), [a[i] ** 2 * b[i] for i in range(2)])


def test_hermite_recurrence_activation_equals_flint():
    torch.manual_seed(3)
    model = HermiteNet().eval()
    x = _gens(3)
    z = _linear(model.fc, x)
    coef = model.act.coef.detach().double().tolist()
    act = []
    for c, zc in enumerate(z):
        h_prev, h = zc * 0 + 1, 2 * zc
        out = h_prev * _q(coef[c][0]) + h * _q(coef[c][1])
        for k in range(1, model.act.degree):
            h_prev, h = h, 2 * zc * h - 2 * k * h_prev
            out = out + h * _q(coef[c][k + 1])
        act.append(out)
    _assert_equals_flint(polynet.expand(model, exact=True), _linear(model.out, act))


def test_index_buffer_gather_honu_equals_flint():
    torch.manual_seed(4)
    model = QuadraticNeuron().eval()
    x = _gens(4)
    features = x + [x[i] * x[j] for i, j in itertools.combinations_with_replacement(range(4), 2)]
    w = model.w.detach().double().tolist()
    b = model.b.detach().double().tolist()
    expected = [sum((f * _q(w[k][o]) for k, f in enumerate(features)), _q(b[o])) for o in range(2)]
    _assert_equals_flint(polynet.expand(model, exact=True, input_shape=(4,)), expected)


class InPlaceResidual(nn.Module):
    """A residual added in place, and an in-place add into a view of the output."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(3, 3)
        self.fc2 = nn.Linear(3, 3)

    def forward(self, x):
        h = self.fc1(x)
        y = self.fc2(h * h)
        y += x
        y[:, 0] += h[:, 1]
        return y


def test_residual_with_inplace_adds_equals_flint():
    torch.manual_seed(5)
    model = InPlaceResidual().eval()
    x = _gens(3)
    h = _linear(model.fc1, x)
    y = [yo + xo for yo, xo in zip(_linear(model.fc2, [hj * hj for hj in h]), x)]
    y[0] = y[0] + h[1]
    poly = polynet.expand(model, exact=True)
    _assert_equals_flint(poly, y)
    assert poly.info["engine"] == "flint"


def test_exact_graph_result_converts_to_sympy_over_the_rationals():
    sympy = pytest.importorskip("sympy")
    torch.manual_seed(6)
    model = InPlaceResidual().eval()
    poly = polynet.expand(model, exact=True)
    polys = poly.to_sympy()
    assert all(p.domain == sympy.QQ for p in polys)
    exps = np.asarray(poly.exponents)
    for o, p in enumerate(polys):
        terms = {m: Fraction(int(c.p), int(c.q)) for m, c in p.terms()}
        assert terms == {
            tuple(e.tolist()): poly.exact_coefficients[o, k]
            for k, e in enumerate(exps)
            if poly.exact_coefficients[o, k] != 0
        }


# ---------------------------------------------------------------- slices, float32, truncation


def test_exact_slice_equals_the_float_slice_and_the_substituted_whole():
    sympy = pytest.importorskip("sympy")
    torch.manual_seed(7)
    model = HermiteNet().eval()
    fixed = [0.5, -0.25, 1.5]
    exact = polynet.expand(model, exact=True, inputs=[2, 0], fixed=fixed)
    _assert_exact_matches_float(exact, polynet.expand(model, inputs=[2, 0], fixed=fixed))
    assert exact.variables == ("x2", "x0")
    whole = polynet.expand(model, exact=True).to_sympy()[0].as_expr()
    x0, x1, x2 = sympy.symbols("x0 x1 x2")
    substituted = whole.subs(x1, sympy.Rational(-1, 4))
    sliced = exact.to_sympy()[0].as_expr()  # in x2, x0 (named as the inputs)
    assert sympy.expand(substituted - sliced) == 0


class FoldedInFloat32(nn.Module):
    """Batch norm folded into a Linear in float32 inside forward(): the folded weights are
    float32 roundings (not the float64 fold), and are what the polynomial is exact in."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 4)
        self.register_buffer("mean", torch.tensor([0.1, -0.3, 0.7, 0.2]))
        self.register_buffer("var", torch.tensor([0.3, 1.7, 0.9, 2.2]))
        self.gamma = nn.Parameter(torch.tensor([1.1, 0.9, -0.7, 1.3]))
        self.beta = nn.Parameter(torch.tensor([0.05, -0.1, 0.2, 0.0]))
        self.out = nn.Linear(4, 1)

    def forward(self, x):
        scale = self.gamma / torch.sqrt(self.var + 1e-5)
        h = F.linear(x, self.fc.weight * scale[:, None], (self.fc.bias - self.mean) * scale)
        h = h + self.beta
        h = F.batch_norm(h, self.mean, self.var, self.gamma, self.beta, False, 0.0, 1e-3)
        return self.out(h * h / 3.0)


def test_float32_model_with_inexact_folded_weights_is_exact_in_its_float64_values():
    torch.manual_seed(8)
    model = FoldedInFloat32().eval()
    exact = polynet.expand(model, exact=True)
    assert any(f.denominator > 2**40 for f in exact.exact_coefficients.reshape(-1))
    _assert_exact_matches_float(exact, polynet.expand(model))


def test_truncated_program_is_the_exact_low_degree_part():
    from polynet.expansion.graph import expand_graph
    from polynet.expansion.ir_ring import expand_program
    from polynet.polynomial.index import MonomialIndex

    torch.manual_seed(9)
    model = warmed(CustomSLNN(), (3,))
    program = expand_graph(model, (3,), record=True).program
    full = polynet.expand(model, exact=True)
    for q in (1, 2, 4):
        index = MonomialIndex(3, q)
        for kind in ("flint", "sympy"):
            if kind == "flint":
                pytest.importorskip("flint")
            part = expand_program(program, kind, index, max_degree=q)
            assert (part == full.exact_coefficients[:, : index.size]).all()


def test_recording_keeps_the_float_trace_unchanged():
    from polynet.expansion.graph import expand_graph

    torch.manual_seed(10)
    model = HermiteNet().eval()
    recorded = expand_graph(model, HermiteNet.SHAPE, record=True)
    plain = expand_graph(model, HermiteNet.SHAPE, symbolic=True)
    assert plain.program is None and recorded.ops == plain.ops
    assert recorded.output.degree == plain.output.degree == HermiteNet.DEGREE
    summary = recorded.program.summary()
    assert summary["Input"] == 1 and summary["Product"] >= 2


# ---------------------------------------------------------------- budget


def test_exact_graph_over_the_memory_budget_is_refused_before_work():
    torch.manual_seed(11)
    match = "needs at least .* over the budget of 2.0 KiB.*exact=False"
    with pytest.raises(ExpansionTooLargeError, match=match):
        polynet.expand(HermiteNet().eval(), exact=True, max_memory=2000)


def test_exact_graph_refused_after_recording_when_its_values_together_do_not_fit(monkeypatch):
    import polynet.expansion.graph_exact as graph_exact

    # Past the first check (the largest value alone fits), the recorded program's live values
    # are counted together.
    monkeypatch.setattr(graph_exact, "check_sketch_budget", lambda *args: None)
    torch.manual_seed(11)
    with pytest.raises(ExpansionTooLargeError, match="needs about .* over the budget of 2.0 KiB"):
        polynet.expand(HermiteNet().eval(), exact=True, max_memory=2000)
    with pytest.raises(ExpansionTooLargeError, match="exact='modular' needs about"):
        polynet.expand(HermiteNet().eval(), exact="modular", max_memory=2000)


def test_exact_graph_over_the_term_products_limit_offers_a_slice(monkeypatch):
    import polynet.expansion.graph_exact as graph_exact

    monkeypatch.setattr(graph_exact, "MAX_SECONDS", 1e-4)
    torch.manual_seed(12)
    with pytest.raises(ExpansionTooLargeError, match="products of terms") as info:
        polynet.expand(SquareCNN().eval(), exact=True, input_shape=(1, 6, 6))
    assert "inputs=[...]" in str(info.value) and "exact=False" in str(info.value)


@pytest.mark.parametrize(
    "name, shapes",
    [
        ("Bilinear", {"x": (3,), "y": (4,)}),
        ("Elementwise", {"x": (3,), "y": (3,)}),
        ("ThreeInputs", {"img": (1, 2, 3), "v": (2,), "m": (2, 2)}),
    ],
)
def test_several_inputs_exact_equals_float(name, shapes):
    from tests.poly import test_graph_inputs

    torch.manual_seed(13)
    model = getattr(test_graph_inputs, name)().eval()
    exact = polynet.expand(model, input_shape=shapes, exact=True)
    approx = polynet.expand(model, input_shape=shapes)
    _assert_exact_matches_float(exact, approx)
    assert exact.variables == approx.variables
    fixed = [0.5] * exact.n_vars
    sliced = polynet.expand(model, input_shape=shapes, exact=True, inputs=[0, 4], fixed=fixed)
    _assert_exact_matches_float(
        sliced, polynet.expand(model, input_shape=shapes, inputs=[0, 4], fixed=fixed)
    )


@settings(max_examples=10, deadline=None)
@given(
    n=st.integers(1, 3),
    steps=st.lists(
        st.sampled_from([s for s in STEPS if s != "mix"]), min_size=1, max_size=5
    ).filter(lambda s: s.count("square") + s.count("inplace_pow") + s.count("outer_bias") <= 2),
)
def test_drawn_graphs_exact_equals_float(n, steps):
    torch.manual_seed(0)
    model = _Drawn(n, steps).eval()
    exact = polynet.expand(model, input_shape=(n,), exact=True)
    _assert_exact_matches_float(exact, polynet.expand(model, input_shape=(n,)))
    modular = polynet.expand(model, input_shape=(n,), exact="modular")
    assert (modular.exact_coefficients == exact.exact_coefficients).all()


@pytest.mark.parametrize(
    "cls", [HermiteNet, PolyAttention, ZerosLikeScatter, ExponentBuffer, SLAFResidualChecked]
)
def test_modular_engine_over_the_program_equals_the_ring(cls):
    torch.manual_seed(14)
    model = cls().eval()
    modular = polynet.expand(model, input_shape=cls.SHAPE, exact="modular")
    ring = polynet.expand(model, input_shape=cls.SHAPE, exact="sympy")
    assert modular.info["engine"] == "modular"
    assert (modular.exact_coefficients == ring.exact_coefficients).all()


@pytest.mark.parametrize("cls", MODELS, ids=lambda c: c.__name__)
def test_float_walk_over_the_program_equals_the_traced_float_path(cls):
    from polynet.expansion.graph import expand_graph
    from polynet.expansion.ir_dense import expand_program_float

    torch.manual_seed(15)
    model = cls().eval()
    program = expand_graph(model, cls.SHAPE, record=True).program
    approx = polynet.expand(model, input_shape=cls.SHAPE).coefficients
    got = expand_program_float(program)
    assert got.shape == approx.shape
    assert (got - approx).abs().max() <= EXACT_FLOAT_RTOL * approx.abs().max()


# ---------------------------------------------------------------- degree= and at=


@pytest.mark.parametrize("engine", ["flint", "sympy", "modular"])
def test_exact_degree_part_of_a_graph_is_the_prefix_of_the_whole(engine):
    if engine == "flint":
        pytest.importorskip("flint")
    torch.manual_seed(16)
    model = warmed(SLAFResidualChecked(), (3,))  # a residual graph of degree 4
    whole = polynet.expand(model, exact=True)
    assert whole.info["engine"] in ("flint", "sympy")  # not the chain path
    for q in (0, 2, 3):
        part = polynet.expand(model, degree=q, exact=engine)
        assert part.exact and part.degree_bound == 4 and part.notes["taylor"]
        assert part.info["engine"] == engine
        assert part.index.degree == q
        assert (part.exact_coefficients == whole.exact_coefficients[:, : part.index.size]).all()
        _assert_exact_matches_float(part, polynet.expand(model, degree=q))


def test_exact_at_a_point_is_the_whole_polynomial_recentred():
    sympy = pytest.importorskip("sympy")
    torch.manual_seed(17)
    model = HermiteNet().eval()
    x0 = [0.5, -1.25, 2.0]
    at = polynet.expand(model, at=x0, exact=True)
    _assert_exact_matches_float(at, polynet.expand(model, at=x0))
    assert at.variables == ("u0", "u1", "u2")
    xs, us = sympy.symbols("x0:3"), sympy.symbols("u0:3")
    whole = polynet.expand(model, exact=True).to_sympy()[0].as_expr()
    shifted = whole.subs({x: u + sympy.Rational(v) for x, u, v in zip(xs, us, x0)})
    assert sympy.expand(shifted - at.to_sympy()[0].as_expr()) == 0
    local = polynet.expand(model, at=x0, degree=1, exact=True)
    assert (local.exact_coefficients == at.exact_coefficients[:, :4]).all()


def test_modular_degree_part_is_walked_at_degree_q_not_computed_whole():
    # exact="modular" with degree= used to compute the whole polynomial and keep a prefix.
    class Squares(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = torch.nn.Linear(8, 8)

        def forward(self, x):
            h = self.a(x)
            for _ in range(3):
                h = h * h  # degree 8 in 8 inputs: C(16, 8) = 12,870 terms per entry
            return h.sum(1, keepdim=True)

    torch.manual_seed(18)
    model = Squares().eval()
    with pytest.raises(polynet.ExpansionTooLargeError, match="exactly with modular needs"):
        polynet.expand(model, exact="modular", max_memory="1MiB")
    part = polynet.expand(model, exact="modular", degree=2, max_memory="1MiB")
    ring = polynet.expand(model, exact="sympy", degree=2)
    assert part.index.degree == 2 and (part.exact_coefficients == ring.exact_coefficients).all()
    _assert_exact_matches_float(part, polynet.expand(model, degree=2))
