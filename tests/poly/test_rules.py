"""The rules table: what is polynomial, and the refusals naming the op and the line."""

from __future__ import annotations

import inspect

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import polynet
from polynet.errors import NotExpandableError
from polynet.expansion.rules import FUNCTION_RULES, METHOD_RULES, MODULE_RULES, module_rule


def test_every_refused_rule_says_why_and_what_to_do():
    for rule in [*MODULE_RULES.values(), *FUNCTION_RULES.values(), *METHOD_RULES.values()]:
        assert rule.degree
        if not rule.polynomial:
            why, _, fix = rule.hint.partition("; ")
            assert why and fix, rule


def test_table_knows_subclasses():
    class MyLinear(nn.Linear):
        pass

    assert module_rule(MyLinear(2, 2)).kind == "affine"
    assert module_rule(nn.Sequential()) is None


def _layers():
    return [
        nn.Identity(),
        nn.Dropout(),
        nn.AlphaDropout(),
        nn.BatchNorm1d(3),
        nn.BatchNorm1d(3, track_running_stats=False),
        nn.BatchNorm1d(3, affine=False),
        polynet.SLAF(3, 2),
        polynet.SLAF(3, 2, "chebyshev"),
        polynet.SLAF(3, 2, "emfn"),
        nn.Flatten(),
        nn.ReLU(),
        nn.Tanh(),
        nn.Sigmoid(),
        nn.GELU(),
        nn.Softmax(dim=1),
        nn.LayerNorm(3),
        nn.Hardtanh(),
    ]


class _Wrap(nn.Module):
    """The same layer inside a custom forward()."""

    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        self.lin = nn.Linear(3, 3)
        self.layer = layer
        self.out = nn.Linear(3, 1)

    def forward(self, x):
        return self.out(self.layer(self.lin(x)))


def _accepts(fn, model) -> bool:
    try:
        fn(model)
    except NotExpandableError:
        return False
    return True


@pytest.mark.parametrize("layer", _layers(), ids=lambda m: repr(m))
@pytest.mark.parametrize("wrap", ["chain", "graph"])
def test_count_terms_and_expand_accept_the_same_models(layer, wrap):
    if wrap == "chain":
        model = nn.Sequential(nn.Linear(3, 3), layer, nn.Linear(3, 1)).eval()
    else:
        model = _Wrap(layer).eval()
    expanded = _accepts(polynet.expand, model)
    counted = _accepts(polynet.count_terms, model)
    assert expanded == counted
    rule = module_rule(layer)
    assert expanded == (
        rule is not None
        and rule.polynomial
        and getattr(layer, "running_mean", 0) is not None
        and getattr(getattr(layer, "basis", None), "is_polynomial", True)
    )
    if expanded:
        poly = polynet.expand(model)
        assert polynet.verify(model, poly, tol=1e-10).passed


def _line_of(cls, marker: str) -> int:
    lines, start = inspect.getsourcelines(cls.forward)
    return start + next(i for i, line in enumerate(lines) if marker in line)


class FunctionalRelu(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(3, 2)

    def forward(self, x):
        h = self.lin(x)
        return F.relu(h)  # MARK


class ModuleTanh(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(3, 2)
        self.act = nn.Tanh()

    def forward(self, x):
        return self.act(self.lin(x))  # MARK


class DivideByInput(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(3, 2)

    def forward(self, x):
        h = self.lin(x)
        return h / (h * h + 1)  # MARK


class MaxOfInput(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(3, 2)

    def forward(self, x):
        return self.lin(x).max(dim=1).values  # MARK


class LayerNormNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(3, 2)
        self.norm = nn.LayerNorm(2)

    def forward(self, x):
        return self.norm(self.lin(x))  # MARK


class Branches(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(3, 2)

    def forward(self, x):
        if x.sum() > 0:  # MARK
            return self.lin(x)
        return -self.lin(x)


class SquareRoot(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(3, 2)

    def forward(self, x):
        return self.lin(x) ** 0.5  # MARK


@pytest.mark.parametrize(
    "cls, words",
    [
        (FunctionalRelu, ["relu", "not a polynomial", "polynet.SLAF"]),
        (ModuleTanh, ["act", "Tanh", "not a polynomial", "SLAF"]),
        (DivideByInput, ["division by a value that depends on the input"]),
        (MaxOfInput, [".max()", "not polynomials"]),
        (LayerNormNet, ["norm", "LayerNorm", "standard deviation"]),
        (SquareRoot, ["0.5", "integer powers"]),
        (Branches, ["branches or loops", "remove the data-dependent"]),
    ],
    ids=lambda v: v.__name__ if isinstance(v, type) else None,
)
@pytest.mark.parametrize("fn", [polynet.expand, polynet.count_terms], ids=["expand", "count"])
def test_refusal_names_the_op_and_the_line_of_forward(cls, words, fn):
    with pytest.raises(NotExpandableError) as info:
        fn(cls().eval())
    message = str(info.value)
    for word in words:
        assert word in message, message
    assert f"test_rules.py:{_line_of(cls, '# MARK')}" in message, message


def test_chain_refusal_keeps_its_prefix_hint():
    model = nn.Sequential(nn.Linear(3, 3), nn.ReLU(), nn.Linear(3, 1)).eval()
    for fn in (polynet.expand, polynet.count_terms):
        with pytest.raises(NotExpandableError, match=r"model\[1\] \(ReLU\).*model\[:1\]"):
            fn(model)


def test_alpha_dropout_and_batchnorm_agree_between_count_and_expand():
    # Before the shared table, count_terms refused AlphaDropout and accepted a BatchNorm
    # without running statistics, which expand refuses.
    torch.manual_seed(0)
    ok = nn.Sequential(nn.Linear(3, 3), nn.AlphaDropout(), polynet.SLAF(3, 2), nn.Linear(3, 1))
    assert polynet.count_terms(ok.eval()).degree_bound == polynet.expand(ok).degree_bound == 2
    bad = nn.Sequential(nn.Linear(3, 3), nn.BatchNorm1d(3, track_running_stats=False)).eval()
    for fn in (polynet.expand, polynet.count_terms):
        with pytest.raises(NotExpandableError, match="running statistics"):
            fn(bad)
