"""Shared fixtures and the hypothesis profile for CI."""

from __future__ import annotations

import os

import pytest
import torch
from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci",
    max_examples=25,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile("dev", max_examples=100, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

#: Float64 agreement between two routes to the same function (polynomial vs forward pass).
FLOAT64_RTOL = 1e-10

# The tests' tensors are small: one thread avoids OpenMP start-up and, on a shared machine,
# the spin-waiting of a team whose other member is descheduled (20-40x slower seen here).
torch.set_num_threads(1)

# The fold-map disk cache (polynet.expansion.fold) stays off in tests: they never write to ~/.cache.
os.environ.setdefault("POLYNET_CACHE_DIR", "")


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def rng() -> torch.Generator:
    return torch.Generator().manual_seed(0)


def trained_like(model: torch.nn.Module, n_inputs: int, seed: int = 0) -> torch.nn.Module:
    """Give every SLAF non-trivial coefficients and running statistics, then eval()."""
    from polynet import SLAF

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, SLAF):
                m.weight.normal_(0, 0.3, generator=g)
                m.bias.normal_(0, 0.3, generator=g)
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(32, n_inputs, generator=g, dtype=torch.float64) * 1.5 + 0.3)
    return model.eval()
