"""Checks of the counting results (proofs/counting.md)."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from flint import fmpq, fmpq_mat
from torch import nn

import polynet

from .symbolic import parameter_jacobian


def p_train(n: int, hidden: list[int], degrees: list[int], o: int, share: str, gate: bool) -> int:
    """C1: trainable parameters of SLNN(n, hidden, degrees, o)."""
    widths = [n, *hidden]
    linear = sum((widths[i] + 1) * widths[i + 1] for i in range(len(hidden)))
    slaf = sum(
        (2 if gate else 1) * (1 if share == "layer" else m) * k + m for m, k in zip(hidden, degrees)
    )
    return linear + slaf + (hidden[-1] + 1) * o


def p_fold(n: int, hidden: list[int], degrees: list[int], o: int) -> int:
    """C1: numbers in the folded description (Linear layers and each channel's α)."""
    widths = [n, *hidden]
    linear = sum((widths[i] + 1) * widths[i + 1] for i in range(len(hidden)))
    return linear + sum(m * (k + 1) for m, k in zip(hidden, degrees)) + (hidden[-1] + 1) * o


ARCHS = [
    (13, [128, 64], [4, 2], 1),
    (2, [3], [2], 1),
    (5, [4, 3, 2], [2, 3, 2], 3),
    (1, [1], [7], 2),
]


@pytest.mark.parametrize(
    "arch, share, gate", list(itertools.product(ARCHS, ["layer", "channel"], [False, True]))
)
def test_parameter_counts(arch, share, gate):
    n, hidden, degrees, o = arch
    model = polynet.SLNN(n, hidden, degrees, o, share=share, gate=gate).eval()
    expected = p_train(n, hidden, degrees, o, share, gate)
    assert sum(p.numel() for p in model.parameters()) == expected
    assert polynet.count_parameters(model).total == expected
    terms = polynet.count_terms(model)
    assert terms.n_parameters == expected
    D = math.prod(degrees)
    assert terms.degree_bound == D and terms.max_terms == math.comb(n + D, D)
    folded = sum(m.weight.numel() + m.bias.numel() for m in model if isinstance(m, nn.Linear))
    folded += sum(m.polynomial().numel() for m in model if isinstance(m, polynet.SLAF))
    assert folded == p_fold(n, hidden, degrees, o)


def test_boston_table():
    model = polynet.SLNN(13, [128, 64], [4, 2])
    per_layer = [layer.parameters for layer in polynet.count_parameters(model).layers]
    assert per_layer == [1792, 132, 8256, 66, 65]
    assert sum(per_layer) == 10311
    assert sum(b.numel() for n, b in model.named_buffers() if "running" in n) == 1280
    assert p_fold(13, [128, 64], [4, 2], 1) == 10945
    terms = polynet.count_terms(model)
    assert terms.max_terms == math.comb(21, 8) == 203490
    assert round(terms.ratio, 1) == 19.7
    assert terms.max_terms != math.comb(13 + 8 - 1, 8)  # the wrong count C(n+D-1, D) is caught


def _smaller(n: int, degrees: list[int]) -> bool:
    terms = polynet.count_terms(polynet.SLNN(n, [128, 64], degrees))
    return terms.max_terms < terms.n_parameters


def test_crossover():
    assert [_smaller(n, [4, 2]) for n in range(1, 14)] == [True] * 7 + [False] * 6
    degree_pairs = [[1, 1], [2, 1], [3, 1], [2, 2], [5, 1], [3, 2], [7, 1], [4, 2]]
    assert [_smaller(13, ks) for ks in degree_pairs] == [True] * 5 + [False] * 3
    # "The network is always the smaller description" is a wrong claim, and it is caught.
    assert any(_smaller(n, [4, 2]) for n in range(1, 14))


def _random_slnn(n: int, hidden: list[int], degrees: list[int], seed: int = 0) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    model = polynet.SLNN(n, hidden, degrees, share="channel").double()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64))
        for m in model:
            if isinstance(m, polynet.SLAF):
                m.running_mean.normal_(0, 0.5, generator=g)
                m.running_var.uniform_(0.5, 2.0, generator=g)
    return model.eval()


def _matrix(rows: list[list]) -> fmpq_mat:
    return fmpq_mat(
        len(rows),
        len(rows[0]),
        [fmpq(int(v.numerator), int(v.denominator)) for r in rows for v in r],
    )


def symmetry_generators(model: nn.Module, names: list[str], values: dict) -> list[list]:
    """The 4H infinitesimal symmetries of counting.md, C4, as vectors over the parameters."""
    index = {name: i for i, name in enumerate(names)}
    zero = values[names[0]] * 0
    gens = []
    layers = list(model)
    for s, layer in enumerate(layers):
        if not isinstance(layer, polynet.SLAF):
            continue
        k, W_out = layer.degree, layers[s + 1].weight.shape
        for j in range(layer.num_features):
            alpha = [values[f"L{s}_alpha{j}_{m}"] for m in range(k + 1)]
            vecs = [[zero] * len(names) for _ in range(4)]
            # 1: input scale; 2: input shift; 3: output scale; 4: output shift.
            for c in range(layers[s - 1].weight.shape[1]):
                vecs[0][index[f"L{s - 1}_w_{j}_{c}"]] = values[f"L{s - 1}_w_{j}_{c}"]
            vecs[0][index[f"L{s - 1}_b_{j}"]] = values[f"L{s - 1}_b_{j}"]
            vecs[1][index[f"L{s - 1}_b_{j}"]] = zero + 1
            for m in range(k + 1):
                a = index[f"L{s}_alpha{j}_{m}"]
                vecs[0][a] = -m * alpha[m]
                vecs[1][a] = -(m + 1) * alpha[m + 1] if m < k else zero
                vecs[2][a] = alpha[m]
            vecs[3][index[f"L{s}_alpha{j}_0"]] = zero + 1
            for u in range(W_out[0]):
                w = values[f"L{s + 1}_w_{u}_{j}"]
                vecs[2][index[f"L{s + 1}_w_{u}_{j}"]] = -w
                vecs[3][index[f"L{s + 1}_b_{u}"]] = -w
            gens += vecs
    return gens


#: (n, widths, degrees) -> exact rank of dΦ at random weights (counting.md, C4).
RANKS = {
    (2, (1,), (4,)): 6,
    (2, (2,), (3,)): 9,
    (2, (2,), (4,)): 11,
    (2, (2, 2), (2, 2)): 10,
    (3, (2, 2), (2, 2)): 12,
    (2, (3, 3), (2, 2)): 15,
}


@pytest.mark.parametrize("arch", list(RANKS))
def test_dimension_of_the_network_polynomials(arch):
    n, hidden, degrees = arch
    model = _random_slnn(n, list(hidden), list(degrees))
    names, values, rows, J = parameter_jacobian(model, n)
    N, P, H = len(rows), len(names), sum(hidden)
    D = math.prod(degrees)
    assert N == math.comb(n + D, D) and P == p_fold(n, list(hidden), list(degrees), 1)
    rank = _matrix(J).rank()
    assert rank == RANKS[arch]
    assert rank <= min(N, P - 4 * H)  # C4
    S = symmetry_generators(model, names, values)
    assert _matrix(S).rank() == 4 * H  # the generators are independent ...
    JS = _matrix(J) * _matrix(S).transpose()
    assert all(JS[i, j] == 0 for i in range(JS.nrows()) for j in range(JS.ncols()))  # ... in ker
    if arch in [(2, (2,), (3,)), (2, (2, 2), (2, 2))]:
        assert rank < min(N, P)  # "dimension min(N, P)" is a wrong claim, and it is caught


def test_thin_family_with_full_support():
    """SLNN(2, [2, 2], [2, 2]) reaches a 10-dimensional set, but each polynomial has all 15."""
    model = _random_slnn(2, [2, 2], [2, 2])
    poly = polynet.expand(model)
    assert poly.n_terms == poly.max_terms == 15
    names, _, _, J = parameter_jacobian(model, 2)
    assert _matrix(J).rank() == 10 < 15
