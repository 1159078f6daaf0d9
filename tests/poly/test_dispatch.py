"""route(): the one decision of which engine expands a model, and the options checked once."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import polynet
from polynet.errors import NotExpandableError
from polynet.expansion.dispatch import Request, route


class _ChainForward(nn.Module):
    """A custom forward() that only chains table layers: expanded as that chain."""

    def __init__(self):
        super().__init__()
        self.a, self.act, self.b = nn.Linear(3, 4), polynet.SLAF(4, degree=2), nn.Linear(4, 1)

    def forward(self, x):
        return self.b(self.act(self.a(x)))


class _Product(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(3, 2), nn.Linear(3, 2)

    def forward(self, x):
        if x.dim() != 2:
            raise ValueError("expected (N, 3)")
        return self.a(x) * self.b(x)


@pytest.mark.parametrize(
    "model, options, engine",
    [
        (polynet.SLNN(3, [4], 1), {}, "chain"),
        (polynet.SLNN(3, [4], 1), {"degree": 1}, "taylor"),
        (polynet.SLNN(3, [4], 1), {"at": [0.0, 0.0, 0.0]}, "taylor"),
        (polynet.SLNN(3, [4], 1), {"form": "factored"}, "factored"),
        (polynet.SLNN(3, [4], 1), {"form": "sparse"}, "chain"),
        (_ChainForward(), {"exact": True}, "chain"),
        (_Product(), {}, "traced"),
        (_Product(), {"degree": 1, "exact": True}, "traced"),
    ],
)
def test_route_picks_one_engine(model, options, engine):
    got, runs_on = route(model.eval(), Request(**options))
    assert got == engine
    if isinstance(model, _ChainForward):
        assert isinstance(runs_on, nn.Sequential)  # the custom forward() read as its chain


@pytest.mark.parametrize("model, engine", [(_ChainForward(), "chain"), (_Product(), "traced")])
def test_every_route_equals_the_forward_pass(model, engine):
    torch.manual_seed(0)
    model = model.eval().double()
    x = torch.randn(9, 3, dtype=torch.float64)
    for exact in (False, True):
        poly = polynet.expand(model, exact=exact)
        assert torch.allclose(poly(x), model(x), rtol=1e-10, atol=1e-12), (engine, exact)


def test_options_are_checked_before_any_route():
    with pytest.raises(ValueError, match="form must be 'dense', 'sparse' or 'factored'"):
        Request(form="diagonal")
    with pytest.raises(ValueError, match="store= and client= apply to the whole expansion"):
        Request(degree=2, store="p.zarr")


def test_a_graph_asked_for_a_chain_only_form_is_refused_by_the_router():
    with pytest.raises(NotExpandableError, match=r"form='sparse' needs a chain model"):
        route(_Product().eval(), Request(form="sparse"))
