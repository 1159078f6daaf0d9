"""The field-by-field sparse expansion and the exact support count of conv chains."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

import polynet
from polynet.errors import ExpansionTooLargeError
from polynet.expansion.network import lower
from polynet.expansion.receptive import patterns_of_lowered, patterns_of_model
from polynet.polynomial.sparse_polynomial import SparsePolynomial

#: Relative agreement of two float64 computations of one polynomial.
RTOL = 1e-12


def _randomise(model: nn.Module, seed: int = 0) -> nn.Module:
    """Generic weights: every parameter and running statistic random, then evaluation mode."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.7)
        for m in model.modules():
            if isinstance(m, (polynet.SLAF, nn.BatchNorm2d, nn.BatchNorm1d)):
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.3)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
    return model.eval()


def _strided() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(1, 2, 3, stride=2, padding=0),
        polynet.SLAF(2, 2),
        nn.Conv2d(2, 2, 2, padding=1, bias=False),
        nn.BatchNorm2d(2),
        polynet.SLAF(2, 2),
        nn.Flatten(),
        nn.Linear(2 * 4 * 4, 2),
    )


def _one_d() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv1d(1, 2, 3, padding=1),
        polynet.SLAF(2, 2),
        nn.AvgPool1d(2),
        nn.Conv1d(2, 2, 3, padding="same", dilation=2),
        polynet.SLAF(2, 2),
        nn.Flatten(),
        nn.Linear(2 * 4, 3),
    )


# name: (model builder, input shape)
SMALL = {
    "one block": (lambda: polynet.ConvSLNN(1, 6, [2], 2, out_features=3), (1, 6, 6)),
    "one block, cubic, no pool": (
        lambda: polynet.ConvSLNN(1, 6, [2], 3, out_features=2, pool=1),
        (1, 6, 6),
    ),
    "two blocks": (lambda: polynet.ConvSLNN(1, 6, [2, 2], [2, 2], out_features=2), (1, 6, 6)),
    "two blocks, 5x5": (
        lambda: polynet.ConvSLNN(1, (3, 6), [1, 1], [2, 2], out_features=2, kernel_size=5, pool=1),
        (1, 3, 6),
    ),
    "stride, no padding, BatchNorm": (_strided, (1, 7, 7)),
    "Conv1d, dilation, pool": (_one_d, (1, 8)),
}


@pytest.mark.parametrize("name", list(SMALL))
def test_sparse_equals_dense_and_the_count_is_the_support(name):
    build, shape = SMALL[name]
    model = _randomise(build())
    dense = polynet.expand(model, input_shape=shape)
    sparse = polynet.expand(model, input_shape=shape, form="sparse")
    assert isinstance(sparse, SparsePolynomial)
    scale = float(dense.coefficients.abs().max())
    back = sparse.to_dense()
    assert float((back.coefficients - dense.coefficients).abs().max()) <= RTOL * scale
    # Sparse stores exactly the non-zero monomials, and count_terms counts them unexpanded.
    assert sparse.n_terms == dense.n_terms == len(sparse.codes)
    assert np.array_equal(sparse.codes, np.flatnonzero((dense.coefficients != 0).any(0)))
    assert polynet.count_terms(model, input_shape=shape).support == dense.n_terms
    assert sparse.degree == dense.degree and sparse.max_terms == dense.max_terms


@pytest.mark.parametrize("name", list(SMALL))
def test_patterns_read_from_layers_equal_the_lowered_ones(name):
    build, shape = SMALL[name]
    model = _randomise(build())
    lowered = patterns_of_lowered(lower(model, shape))
    read = patterns_of_model(model, shape)
    assert [s.kind for s in read] == [s.kind for s in lowered]
    for a, b in zip(read, lowered):
        if a.kind == "matrix":
            assert (a.pattern != b.pattern).nnz == 0


def test_sparse_equals_the_forward_pass_on_a_bigger_net():
    # 100 inputs, D = 4: 4.6 M dense monomials; 100 fields of 25 pixels.
    model = _randomise(polynet.ConvSLNN(1, 10, [2, 2], [2, 2], out_features=3, pool=1))
    poly = polynet.expand(model, form="sparse")
    counted = polynet.count_terms(model)
    assert poly.n_terms == counted.support < counted.max_terms // 10
    x = torch.rand(16, 1, 10, 10, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    with torch.no_grad():
        expected = model.double()(x)
    got = poly(x.reshape(16, -1))
    assert float((got - expected).abs().max()) <= RTOL * float(expected.abs().max())
    report = polynet.verify(model, poly, x, n_box=20)
    assert report.passed and report.n_terms == poly.n_terms


def test_auto_dispatch_takes_the_sparse_path_when_the_dense_one_is_over_budget():
    model = _randomise(polynet.ConvSLNN(1, 10, [2, 2], [2, 2], out_features=3, pool=1))
    from polynet.expansion.dispatch import estimate
    from polynet.expansion.field_expand import plan_fields

    dense_peak = estimate(model).peak_bytes
    sparse_peak = plan_fields(lower(model)).peak_bytes
    assert sparse_peak < dense_peak
    budget = int((sparse_peak + dense_peak) / 2)
    poly = polynet.expand(model, max_memory=budget)
    assert isinstance(poly, SparsePolynomial)
    with pytest.raises(ExpansionTooLargeError, match=r"With form='sparse': the sparse form"):
        polynet.expand(model, max_memory=int(sparse_peak / 4))
    with pytest.raises(ExpansionTooLargeError, match="over the budget") as info:
        polynet.expand(model, max_memory=budget, form="dense")
    assert "sparse" not in str(info.value)
    small = _randomise(polynet.ConvSLNN(1, 6, [2], 2, out_features=1))
    assert not isinstance(polynet.expand(small), SparsePolynomial)  # the dense form fits


def test_sparse_refuses_what_it_cannot_do():
    model = _randomise(polynet.ConvSLNN(1, 6, [2], 2, out_features=1))
    with pytest.raises(ValueError, match="form='sparse' expands the whole network in float64"):
        polynet.expand(model, form="sparse", exact=True)
    # Without convolutions the sparse form is the dense one: the refusal offers the factored
    # form instead, and form="sparse" says it does not help.
    mlp = _randomise(polynet.SLNN(40, [8, 4], [2, 2]))
    with pytest.raises(ExpansionTooLargeError, match='form="factored"') as info:
        polynet.expand(mlp, max_memory="1MiB")
    assert "sparse" not in str(info.value)
    with pytest.raises(ExpansionTooLargeError, match="sparse form"):
        polynet.expand(mlp, max_memory="1MiB", form="sparse")


def test_count_terms_support_of_mlps_and_the_image_size_nets():
    assert polynet.count_terms(polynet.SLNN(5, [3], 2)).support == math.comb(7, 2)
    big = polynet.count_terms(polynet.SLNN(784, [128, 64], [2, 2]))
    assert big.support == big.max_terms  # dense layers: every monomial (Theorem 2(c))
    one_block = polynet.count_terms(polynet.ConvSLNN(1, 28, [8], 2))
    assert one_block.support == 10_155  # the report's count for the one-block MNIST net
    assert "exact support (generic)    10,155" in one_block.table()
    assert one_block.as_dict()["support"] == 10_155
    # The paper's trunk: far too many to enumerate; reported as unknown, quickly.
    trunk = polynet.count_terms(polynet.ConvSLNN(1, 28, [16, 32], [4, 4], kernel_size=5))
    assert trunk.support is None and "exact support" not in trunk.table()


@pytest.mark.parametrize("name", list(SMALL))
def test_the_lower_bound_is_below_the_support(name):
    from polynet.expansion.receptive import support_lower_bound

    build, shape = SMALL[name]
    model = _randomise(build())
    bound = support_lower_bound(model, shape)
    assert 1 < bound <= polynet.count_terms(model, input_shape=shape).support


def test_refusals_from_counts_say_the_sparse_form_does_not_fit_either():
    trunk = polynet.ConvSLNN(1, 28, [16, 32], [4, 4], kernel_size=5).eval()  # the paper's
    with pytest.raises(ExpansionTooLargeError, match=r"The sparse form \(form='sparse'\) does not"):
        polynet.expand(trunk)
    with pytest.raises(ExpansionTooLargeError) as info:
        polynet.expand(trunk, form="dense")
    assert "sparse" not in str(info.value)
