"""Custom-forward models expanded through torch.fx equal their float64 forward pass."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import polynet
from polynet.errors import CheckpointError, NotExpandableError
from tests.poly.graph_models import (
    BatchNormNet,
    CatBranches,
    CustomSLNN,
    EinsumNet,
    Functional,
    PiNet,
    Powers,
    Residual,
    SquareCNN,
    WideThenNarrow,
    relative_error,
    warmed,
)

TOL = 1e-10

CASES = [
    (CustomSLNN, (3,), 6),
    (Residual, (3,), 2),
    (PiNet, (3,), 3),
    (SquareCNN, (1, 6, 6), 2),
    (CatBranches, (3,), 2),
    (Powers, (3,), 3),
    (BatchNormNet, (3,), 2),
    (EinsumNet, (3,), 2),
    (WideThenNarrow, (3,), 3),
    (Functional, (2, 5), 4),
]


@pytest.mark.parametrize("cls, shape, degree", CASES, ids=[c[0].__name__ for c in CASES])
def test_graph_polynomial_equals_forward_pass(cls, shape, degree):
    torch.manual_seed(0)
    model = warmed(cls(), shape)
    kwargs = {"input_shape": shape}
    poly = polynet.expand(model, **kwargs)
    assert poly.degree_bound == degree
    assert poly.degree == degree  # generic weights reach the bound
    assert relative_error(poly, model, shape) < TOL
    counted = polynet.count_terms(model, **kwargs)
    assert counted.degree_bound == degree
    assert counted.layers[-1].degree == degree


def test_custom_forward_slnn_equals_sequential_expansion():
    torch.manual_seed(0)
    custom = warmed(CustomSLNN(), (3,))
    seq = nn.Sequential(
        custom.linears[0], custom.acts[0], custom.linears[1], custom.acts[1], custom.linears[2]
    ).eval()
    p_graph, p_chain = polynet.expand(custom), polynet.expand(seq)
    assert p_graph.index == p_chain.index
    torch.testing.assert_close(p_graph.coefficients, p_chain.coefficients, rtol=1e-12, atol=1e-14)


def test_sequential_holding_a_custom_block_goes_through_the_graph():
    torch.manual_seed(0)
    model = warmed(nn.Sequential(Residual(), nn.Linear(1, 2)), (3,))
    poly = polynet.expand(model)
    assert poly.degree == 2
    assert relative_error(poly, model, (3,)) < TOL


def test_verify_passes_on_graph_models():
    torch.manual_seed(0)
    model = warmed(SquareCNN(), (1, 6, 6))
    poly = polynet.expand(model, input_shape=(1, 6, 6))
    report = polynet.verify(model, poly)
    assert report.passed, report


def test_theorem2_table_has_a_row_per_node():
    torch.manual_seed(0)
    table = polynet.count_terms(Residual().eval())
    degrees = [row.degree for row in table.layers]
    assert degrees == sorted(degrees)  # this model only raises the degree
    assert {"inp", "slaf", "out"} <= {row.position for row in table.layers}
    assert {"Linear", "SLAF", "+"} <= {row.layer for row in table.layers}
    assert "slaf" in table.table()


def test_input_shape_needed_for_a_conv_model():
    with pytest.raises(NotExpandableError, match="pass input_shape="):
        polynet.expand(SquareCNN().eval())


def test_exact_on_a_graph_model_equals_float():
    # More in test_graph_exact.py: every corpus model, ONNX, independent flint references.
    torch.manual_seed(0)
    model = warmed(Residual(), (3,))
    exact = polynet.expand(model, exact=True)
    approx = polynet.expand(model)
    assert exact.exact and exact.info["engine"] in ("flint", "sympy")
    torch.testing.assert_close(exact.coefficients, approx.coefficients, rtol=1e-12, atol=1e-14)


def test_graph_model_in_training_mode_is_refused():
    with pytest.raises(NotExpandableError, match="training mode"):
        polynet.expand(Residual())


def test_path_to_a_file_that_is_not_a_checkpoint(tmp_path):
    path = tmp_path / "model.pt"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError):
        polynet.expand(path)
    with pytest.raises(CheckpointError):
        polynet.expand(str(path))


def test_missing_path_is_a_checkpoint_error(tmp_path):
    with pytest.raises(CheckpointError):
        polynet.expand(str(tmp_path / "missing.pt"))


def test_not_a_module_is_a_type_error():
    with pytest.raises(TypeError, match="nn.Module"):
        polynet.expand(42)


class _PlainChain(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.l1, self.act, self.l2 = nn.Linear(3, 4), polynet.SLAF(4, 2), nn.Linear(4, 1)

    def forward(self, x):
        return self.l2(self.act(self.l1(x)))


def test_a_forward_that_is_a_plain_chain_takes_the_chain_path_with_all_options():
    torch.manual_seed(0)
    model = warmed(_PlainChain(), (3,))
    poly = polynet.expand(model)
    assert poly.info["engine"] == "float64"
    exact = polynet.expand(model, exact=True)
    torch.testing.assert_close(exact.coefficients, poly.coefficients, rtol=1e-12, atol=1e-14)
    sliced = polynet.expand(model, inputs=[0], fixed=[0.0, 0.5, -0.5])
    assert sliced.n_vars == 1
    assert polynet.expand(Residual().eval()).info["engine"] == "float64 graph"


def test_a_checkpoint_path_is_loaded_and_expanded(tmp_path):
    from polynet.checkpoint import save

    torch.manual_seed(0)
    net = polynet.SLNN(3, [4], 2).eval()
    path = save(net, tmp_path / "net.safetensors")
    for given in (path, str(path)):
        poly = polynet.expand(given)
        assert relative_error(poly, net, (3,)) < TOL


def test_count_parameters_of_a_custom_model_lists_its_leaf_layers():
    model = Residual()
    counted = polynet.count_parameters(model)
    assert counted.total == sum(p.numel() for p in model.parameters())
    assert [row.position for row in counted.layers] == [
        "model.inp",
        "model.lin",
        "model.slaf",
        "model.out",
    ]


@pytest.mark.parametrize("cls, shape", [(PiNet, (3,)), (SquareCNN, (1, 6, 6))])
def test_graph_slice_equals_the_forward_pass_with_the_other_inputs_fixed(cls, shape):
    torch.manual_seed(0)
    model = warmed(cls(), shape)
    n = 1
    for s in shape:
        n *= s
    fixed = torch.linspace(-1, 1, n, dtype=torch.float64)
    poly = polynet.expand(model, inputs=[0, 2], fixed=fixed.numpy(), input_shape=shape)
    assert poly.n_vars == 2 and poly.variables == ("x0", "x2")
    x = torch.randn(16, 2, dtype=torch.float64)
    full = fixed.repeat(16, 1)
    full[:, [0, 2]] = x
    with torch.no_grad():
        expected = model.double()(full.reshape(16, *shape)).reshape(16, -1)
    got = poly(x)
    assert float((got - expected).abs().max() / expected.abs().max()) < TOL
    assert polynet.verify(model, poly).passed


def test_a_lone_table_layer_expands_as_a_one_layer_chain():
    torch.manual_seed(0)
    act = warmed(polynet.SLAF(3, 2), (3,))
    poly = polynet.expand(act)
    assert poly.degree == 2 and poly.n_outputs == 3
    assert relative_error(poly, act, (3,)) < TOL
    assert polynet.count_terms(act).degree_bound == 2
    assert polynet.expand(nn.Linear(3, 2).eval()).degree == 1


def test_graph_over_the_memory_budget_is_refused_before_expanding():
    from polynet.errors import ExpansionTooLargeError

    with pytest.raises(ExpansionTooLargeError, match="count_terms"):
        polynet.expand(PiNet().eval(), max_memory="1KiB")


def test_graph_polynomial_records_the_degree_of_each_node(tmp_path):
    torch.manual_seed(0)
    poly = polynet.expand(warmed(Residual(), (3,)))
    assert poly.info["node_degrees"] == {"inp": 1, "lin": 1, "slaf": 2, "add": 2, "out": 2}
    poly.save(tmp_path / "p.npz")


class _BatchedBias(nn.Module):
    """Attention-style scores with an added bias: ``baddbmm(bias, q, k)``, the bias a parameter
    broadcast over the batch or expanded to it (as ViT code expands its class token)."""

    def __init__(self, expand: bool):
        super().__init__()
        self.expand = expand
        self.q, self.k = nn.Linear(3, 4), nn.Linear(3, 4)
        self.bias = nn.Parameter(torch.randn(1, 2, 2))

    def forward(self, x):
        q, k = self.q(x).view(-1, 2, 2), self.k(x).view(-1, 2, 2)
        bias = self.bias.expand(x.shape[0], 2, 2) if self.expand else self.bias
        return torch.baddbmm(bias, q, k, beta=0.5, alpha=2.0).flatten(1)


class _ClassToken(nn.Module):
    """A learned token expanded to the batch and concatenated before the data, then squared."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Linear(2, 3)
        self.token = nn.Parameter(torch.randn(1, 1, 3))

    def forward(self, x):
        h = self.embed(x).unsqueeze(1)
        h = torch.cat([self.token.expand(x.shape[0], -1, -1), h], dim=1)
        return (h * h.flip(1)).sum(1)


@pytest.mark.parametrize("model", [_BatchedBias(False), _BatchedBias(True), _ClassToken()])
def test_a_bias_added_to_a_product_of_two_inputs_counts_once(model):
    # baddbmm's bias was added once per pair of monomials (off by about 10 absolute) before.
    torch.manual_seed(0)
    model = model.eval().double()
    shape = (model.q.in_features,) if hasattr(model, "q") else (2,)
    x = torch.randn(20, *shape, dtype=torch.float64)
    for exact in (False, True):
        poly = polynet.expand(model, input_shape=shape, exact=exact)
        assert torch.allclose(poly(x), model(x), rtol=1e-10, atol=1e-12), exact
    whole = polynet.expand(model, input_shape=shape)
    low = polynet.expand(model, input_shape=shape, degree=1)
    assert torch.allclose(low.coefficients, whole.coefficients[:, : low.index.size], atol=1e-12)
