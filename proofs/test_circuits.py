"""Checks of Theorem 2 for polynomial circuits (proofs/circuits.md) on random and built circuits.

The expansions are SymPy's exact arithmetic over QQ (``proofs/circuits.py``); the rules are the
statements of the theorem. Generic parameters are random rationals with numerators up to 1e9,
so a coefficient that is a non-zero polynomial of θ-degree e vanishes at them with probability
at most e / 1e9 (Schwartz–Zippel); the seeds are fixed, so the checks are deterministic.
"""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
import torch

from .circuits import (
    COUNTEREXAMPLES,
    Node,
    conv_circuit,
    coordinate_bounds,
    expand,
    full_set,
    homogeneous_part,
    input_through_dense_affine,
    is_positive,
    is_regular,
    leading_forms,
    n_monomials,
    node_bounds,
    ones,
    random_circuit,
    random_values,
    receptive_field_set,
    structural_support,
    x_degree,
    x_support,
)

#: (seed, options) of the random circuits: both signs, 1-3 inputs, with and without a dense
#: first layer.
CASES = [
    (
        seed,
        dict(
            n_vars=1 + seed % 3,
            positive=seed % 2 == 0,
            dense_input=seed % 4 < 2,
            n_nodes=4 + seed % 6,
        ),
    )
    for seed in range(400)
]


def _instances(filter_=lambda c: True):
    for seed, options in CASES:
        rng = random.Random(seed)
        circuit = random_circuit(rng, **options)
        if filter_(circuit):
            yield seed, circuit, random_values(circuit, rng)


@pytest.fixture(scope="module")
def instances() -> list:
    """(seed, circuit, generic values, expanded nodes, n_vars) for every case."""
    return [(s, c, v, *expand(c, v)) for s, c, v in _instances()]


def _coordinates(circuit, nodes):
    for k, node in enumerate(nodes):
        for j, poly in enumerate(node):
            yield k, j, poly


# --- C1: the bounds hold for every parameter value -------------------------------------------


def test_bounds_hold_everywhere(instances) -> None:
    checked = 0
    for seed, circuit, _, nodes, n in instances:
        cb, nb, S = coordinate_bounds(circuit), node_bounds(circuit), structural_support(circuit)
        for k, j, poly in _coordinates(circuit, nodes):
            assert x_degree(poly, n) <= cb[k][j] <= nb[k], (seed, k, j)
            assert x_support(poly, n) <= S[k][j], (seed, k, j)
            assert len(S[k][j]) <= n_monomials(n, max(cb[k][j], 0)), (seed, k, j)
            assert max((sum(b) for b in S[k][j]), default=-1) == cb[k][j], (seed, k, j)
            checked += 1
    assert checked > 3000


def test_bounds_hold_at_the_witness(instances) -> None:
    """At θ* = 1 (Theorem C4's witness) positive circuits have non-negative coefficients and
    support exactly S; signed circuits still stay inside S."""
    for seed, circuit, _, _, n in instances:
        nodes, _ = expand(circuit, ones(circuit))
        S = structural_support(circuit)
        for k, j, poly in _coordinates(circuit, nodes):
            assert x_support(poly, n) <= S[k][j]
            if is_positive(circuit):
                assert all(c > 0 for c in poly.values()), (seed, k, j)
                assert x_support(poly, n) == S[k][j], (seed, k, j)


# --- C2: leading forms -----------------------------------------------------------------------


def test_leading_forms_follow_the_rules(instances) -> None:
    for seed, circuit, values, nodes, n in instances:
        cb, L = coordinate_bounds(circuit), leading_forms(circuit, values)
        for k, j, poly in _coordinates(circuit, nodes):
            if cb[k][j] >= 0:
                assert homogeneous_part(poly, n, cb[k][j]) == L[k][j], (seed, k, j)
            else:
                assert poly == 0 and L[k][j] == 0


@pytest.mark.parametrize("seed", range(12))
def test_leading_forms_identically_in_the_parameters(seed: int) -> None:
    """The same identity in QQ[x, θ], i.e. for every parameter value at once."""
    circuit = random_circuit(random.Random(seed), n_nodes=5, max_bound=4, positive=seed % 2 == 0)
    nodes, n = expand(circuit)
    cb, L = coordinate_bounds(circuit), leading_forms(circuit)
    for k, j, poly in _coordinates(circuit, nodes):
        if cb[k][j] >= 0:
            assert homogeneous_part(poly, n, cb[k][j]) == L[k][j]


# --- C3/C4/C5: tightness ---------------------------------------------------------------------


def test_positive_circuits_attain_every_bound(instances) -> None:
    positive = [i for i in instances if is_positive(i[1])]
    assert len(positive) >= 150
    reached = 0
    for seed, circuit, _, nodes, n in positive:
        cb, S = coordinate_bounds(circuit), structural_support(circuit)
        for k, j, poly in _coordinates(circuit, nodes):
            assert x_degree(poly, n) == cb[k][j], (seed, k, j)
            assert x_support(poly, n) == S[k][j], (seed, k, j)
        reached = max(reached, max(cb[-1]))
    assert reached >= 6


def test_regular_circuits_have_exact_node_bounds(instances) -> None:
    """Remark C1': in a regular circuit every coordinate bound is its node's bound, so for a
    positive regular circuit the node-by-node bound is the degree."""
    seen = 0
    for seed, circuit, _, nodes, n in instances:
        if not is_regular(circuit):
            continue
        seen += 1
        nb = node_bounds(circuit)
        assert all(set(b) == {nb[k]} for k, b in enumerate(coordinate_bounds(circuit))), seed
        if is_positive(circuit):
            assert max(x_degree(p, n) for p in nodes[-1]) == nb[-1], seed
    assert seen >= 30


def test_dense_input_gives_every_monomial(instances) -> None:
    """Corollary C5 (Theorem 2(c) for circuits): all C(n+D, D) coefficients are non-zero."""
    seen = 0
    for seed, circuit, _, nodes, n in instances:
        if not (is_positive(circuit) and input_through_dense_affine(circuit)):
            continue
        seen += 1
        for j, poly in enumerate(nodes[-1]):
            D = coordinate_bounds(circuit)[-1][j]
            assert x_support(poly, n) == full_set(n, D), (seed, j)
            assert len(poly) == n_monomials(n, D)
    assert seen >= 80


@pytest.mark.parametrize("seed", range(1, 60, 2))
def test_signed_circuits_generic_equals_identical(seed: int) -> None:
    """Theorem C3's dichotomy: for each monomial, the coefficient at generic values is non-zero
    exactly when it is a non-zero polynomial in θ. Where a signed circuit falls short of its
    bound, it does so for every parameter value."""
    rng = random.Random(seed)
    circuit = random_circuit(rng, n_nodes=5, max_bound=4, positive=False)
    symbolic, n = expand(circuit)
    generic, _ = expand(circuit, random_values(circuit, rng))
    for a, b in zip(symbolic[-1], generic[-1]):
        assert x_support(a, n) == x_support(b, n)


def test_signed_circuits_do_fall_short(instances) -> None:
    """Without positivity the bound is not always attained (so C4's hypothesis is needed)."""
    short = [
        seed
        for seed, circuit, _, nodes, n in instances
        if any(x_degree(p, n) < b for p, b in zip(nodes[-1], coordinate_bounds(circuit)[-1]))
    ]
    assert short and all(not is_positive(c) for s, c, *_ in instances if s in short)


# --- the counterexamples, identically in the parameters ----------------------------------------


@pytest.mark.parametrize("name", [k for k in COUNTEREXAMPLES if k != "cat, then product"])
def test_counterexamples_fall_short_for_every_parameter(name: str) -> None:
    circuit, _ = COUNTEREXAMPLES[name]
    nodes, n = expand(circuit)  # parameters symbolic
    bound = coordinate_bounds(circuit)[-1][0]
    assert x_degree(nodes[-1][0], n) < bound
    assert not is_positive(circuit)  # every one needs a negative fixed coefficient


def test_counterexample_values() -> None:
    degree = {}
    for name, (circuit, _) in COUNTEREXAMPLES.items():
        nodes, n = expand(circuit)
        degree[name] = [x_degree(p, n) for p in nodes[-1]]
    assert degree["x - x"] == [-1, -1]
    assert degree["product with a zero branch"] == [-1]
    assert degree["power of a cancelling sum"] == [0]
    assert degree["h*h - h**2"] == degree["lin(x) - lin(x), tied"] == [-1]


def test_node_bound_overshoots_after_cat() -> None:
    circuit, _ = COUNTEREXAMPLES["cat, then product"]
    nodes, n = expand(circuit)
    assert is_positive(circuit)
    assert node_bounds(circuit)[-1] == 4
    assert coordinate_bounds(circuit)[-1] == (3, 3)
    assert [x_degree(p, n) for p in nodes[-1]] == [3, 3]


def test_untied_subtraction_is_generic() -> None:
    """lin1(x) - lin2(x) with separate parameters does not cancel (Proposition C6)."""
    lin = lambda p: Node("affine", (0,), 1, matrix=((1, 1),), param=p)  # noqa: E731
    circuit = (
        Node("input", width=2),
        lin("u"),
        lin("v"),
        Node("pow", (1,), 1, degree=2),
        Node("pow", (2,), 1, degree=2),
        Node("add", (3, 4), 1, coefficients=(1, -1)),
    )
    nodes, n = expand(circuit)
    assert x_support(nodes[-1][0], n) == full_set(2, 2)


# --- convolutions: the exact generic support, against polynet ---------------------------------


def test_convolution_support_is_exact_and_below_receptive_fields() -> None:
    """Two conv blocks: the structural support S (116 monomials) is what polynet.expand finds;
    Theorem 2(d)'s receptive-field set (here all 126) is not attained."""
    polynet = pytest.importorskip("polynet")
    circuit = conv_circuit(5, (2, 2))
    S = structural_support(circuit)[-1][0]
    assert len(S) == 116 < len(receptive_field_set(circuit, 4)) == n_monomials(5, 4) == 126
    torch.manual_seed(0)
    model = polynet.ConvSLNN(1, (1, 5), [1, 1], degrees=[2, 2], pool=1, out_features=1).double()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, dtype=torch.float64))
    poly = polynet.expand(model.eval())
    exps, coefs = np.asarray(poly.exponents), np.asarray(poly.coefficients)[0]
    found = {tuple(int(e) for e in row) for row, c in zip(exps, coefs) if abs(c) > 1e-12}
    assert found == set(S)
    nodes, n = expand(circuit, random_values(circuit, random.Random(0)))
    assert x_support(nodes[-1][0], n) == set(S)


def test_one_conv_block_meets_receptive_fields() -> None:
    """With one block the two sets agree (the example of theorem2.md, 14 of 15)."""
    circuit = conv_circuit(4, (2,))
    S = structural_support(circuit)[-1][0]
    assert S == receptive_field_set(circuit, 2) and len(S) == 14


# --- wrong claims are caught -----------------------------------------------------------------


def _product_takes_max(circuit) -> list[int]:
    """A wrong rule: products take the max degree, like sums."""
    out: list[int] = []
    for node in circuit:
        args = [out[a] for a in node.args]
        if node.op in ("input", "const"):
            out.append(1 if node.op == "input" else 0)
        elif node.op in ("mul", "add", "cat"):
            out.append(max(args))
        elif node.op in ("slaf", "pow"):
            out.append(node.degree * args[0])
        else:
            out.append(args[0])
    return out


def _without_lambda(circuit, values: dict) -> dict:
    """The values with every SLAF's leading coefficient α_k replaced by 1."""
    lead = {
        f"{nd.param}_a{j}_{nd.degree}" for nd in circuit if nd.op == "slaf" for j in range(nd.width)
    }
    return {k: (1 if k in lead else v) for k, v in values.items()}


def test_wrong_claims_are_rejected(instances) -> None:
    """A check that cannot fail would prove nothing: the wrong product rule max, the count
    C(n+D-1, D) and a leading form without the λ's all fail on some circuit."""
    wrong_product = wrong_count = wrong_lambda = False
    for _, circuit, values, nodes, n in instances:
        D = max(x_degree(p, n) for p in nodes[-1])
        wrong_product |= D > _product_takes_max(circuit)[-1]
        if is_positive(circuit) and input_through_dense_affine(circuit) and D >= 1:
            wrong_count |= len(nodes[-1][0]) > math.comb(n + D - 1, D)
        if any(nd.op == "slaf" for nd in circuit):
            cb = coordinate_bounds(circuit)
            L = leading_forms(circuit, _without_lambda(circuit, values))
            wrong_lambda |= any(
                homogeneous_part(p, n, cb[-1][j]) != L[-1][j] for j, p in enumerate(nodes[-1])
            )
    assert wrong_product and wrong_count and wrong_lambda


def test_polynet_graph_bounds_match_the_node_rules() -> None:
    """polynet's graph expansion propagates the node bound: 4 after cat-then-product, where
    the degree is 3 (Remark C1'), and 2 for h*h - h**2, whose degree-2 parts cancel for every
    weight (only the added x0 survives)."""
    polynet = pytest.importorskip("polynet")
    from torch import nn

    class CatProduct(nn.Module):
        def forward(self, x):
            a = torch.cat([x[:, :1] * x[:, :1], x[:, 1:2]], 1)
            b = torch.cat([x[:, :1], x[:, 1:2] * x[:, 1:2]], 1)
            return a * b

    class Cancel(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = nn.Linear(2, 1)

        def forward(self, x):
            h = self.lin(x)
            return h * h - h**2 + x[:, :1]

    for model, circuit, degree in [
        (CatProduct(), COUNTEREXAMPLES["cat, then product"][0], 3),
        (Cancel().double(), COUNTEREXAMPLES["h*h - h**2"][0], 1),
    ]:
        poly = polynet.expand(model.eval(), input_shape=(2,))
        assert poly.degree_bound == node_bounds(circuit)[-1]
        assert poly.degree == degree < poly.degree_bound
