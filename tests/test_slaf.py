import itertools

import pytest
import torch
from torch import nn

from polynet import SLAF
from polynet.errors import NotExpandableError

from .conftest import FLOAT64_RTOL

POLY_BASES = ["taylor", "chebyshev", "legendre"]
SHAPES = {2: (16, 5), 3: (8, 5, 6), 4: (4, 5, 3, 3)}


def _trained(slaf: SLAF, shape, steps: int = 5) -> SLAF:
    """Give the SLAF non-trivial running statistics and parameters."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        slaf.weight.normal_(0, 0.3, generator=g)
        slaf.bias.normal_(0, 0.5, generator=g)
        if slaf.gate is not None:
            slaf.gate.normal_(0, 1, generator=g)
    slaf.train()
    for _ in range(steps):
        slaf(torch.randn(*shape, generator=g, dtype=slaf.weight.dtype) * 1.3 + 0.4)
    return slaf.eval()


def _eval_polynomial(alpha: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """Evaluate per-channel monomial coefficients (C, k+1) at z of shape (B, C, *spatial)."""
    shape = (1, -1) + (1,) * (z.dim() - 2)
    out = torch.zeros_like(z)
    for j in reversed(range(alpha.shape[1])):  # Horner
        out = out * z + alpha[:, j].view(shape)
    return out


@pytest.mark.parametrize(
    "basis, rank, share, gate",
    list(itertools.product(POLY_BASES, [2, 3, 4], ["layer", "channel"], [False, True])),
)
def test_eval_mode_equals_its_polynomial(basis, rank, share, gate):
    slaf = _trained(SLAF(5, 4, basis, share=share, gate=gate, dtype=torch.float64), SHAPES[rank])
    z = torch.randn(*SHAPES[rank], dtype=torch.float64) * 2
    alpha = slaf.polynomial()
    assert alpha.shape == (5, 5) and alpha.dtype == torch.float64
    torch.testing.assert_close(_eval_polynomial(alpha, z), slaf(z), rtol=FLOAT64_RTOL, atol=1e-12)


def test_polynomial_is_float64_even_for_float32_module():
    slaf = _trained(SLAF(3, 3), (10, 3))
    alpha = slaf.polynomial()
    assert alpha.dtype == torch.float64
    z = torch.randn(7, 3, dtype=torch.float64)
    torch.testing.assert_close(
        _eval_polynomial(alpha, z).float(), slaf(z.float()), rtol=1e-4, atol=1e-5
    )


@pytest.mark.parametrize("momentum", [0.1, 0.5, None])
@pytest.mark.parametrize("rank", [2, 3, 4])
def test_normalisation_behaves_like_batchnorm(momentum, rank):
    """A degree-1 Taylor SLAF with c = 1, b = 0 is BatchNorm without affine parameters."""
    torch.manual_seed(0)
    slaf = SLAF(5, 1, "taylor", momentum=momentum, init_std=0.0, dtype=torch.float64)
    bn_cls = {2: nn.BatchNorm1d, 3: nn.BatchNorm1d, 4: nn.BatchNorm2d}[rank]
    bn = bn_cls(5, affine=False, momentum=momentum, dtype=torch.float64)
    for _ in range(4):
        z = torch.randn(*SHAPES[rank], dtype=torch.float64) * 3 + 1
        torch.testing.assert_close(slaf(z), bn(z))
    torch.testing.assert_close(slaf.running_mean[:, 0], bn.running_mean)
    torch.testing.assert_close(slaf.running_var[:, 0], bn.running_var)
    assert int(slaf.num_batches_tracked) == int(bn.num_batches_tracked) == 4
    slaf.eval(), bn.eval()
    z = torch.randn(*SHAPES[rank], dtype=torch.float64)
    torch.testing.assert_close(slaf(z), bn(z))


def test_each_basis_element_is_normalised_separately():
    slaf = SLAF(2, 3, "taylor", momentum=1.0)
    z = torch.randn(64, 2) * 2 + 1
    slaf(z)
    for i in range(3):
        torch.testing.assert_close(slaf.running_mean[:, i], (z ** (i + 1)).mean(0))
        torch.testing.assert_close(slaf.running_var[:, i], (z ** (i + 1)).var(0))


@pytest.mark.parametrize("basis", [*POLY_BASES, "emfn"])
@pytest.mark.parametrize("gate", [False, True])
def test_gradients_reach_every_parameter(basis, gate):
    slaf = SLAF(4, 3, basis, share="channel", gate=gate)
    slaf(torch.randn(8, 4, 3)).pow(2).sum().backward()
    for name, p in slaf.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_starts_close_to_identity():
    slaf = SLAF(3, 4, init_std=0.0)
    z = torch.randn(32, 3)
    expected = (z - z.mean(0)) / torch.sqrt(z.var(0, unbiased=False) + slaf.eps)
    torch.testing.assert_close(slaf(z), expected)


def test_state_dict_round_trip_carries_running_stats():
    a = _trained(SLAF(4, 3, "chebyshev", share="channel", gate=True), (16, 4))
    b = SLAF(4, 3, "chebyshev", share="channel", gate=True)
    b.load_state_dict(a.state_dict())
    b.eval()
    z = torch.randn(6, 4)
    torch.testing.assert_close(a(z), b(z), rtol=0, atol=0)
    assert {"running_mean", "running_var", "num_batches_tracked"} <= set(a.state_dict())


def test_emfn_tracks_scale_and_runs_in_eval():
    slaf = SLAF(3, 4, "emfn")
    slaf(torch.randn(16, 3) * 5)
    assert (slaf.running_absmax != 1).all()
    slaf.eval()
    assert slaf(torch.randn(1, 3)).shape == (1, 3)
    with pytest.raises(NotExpandableError, match="not a polynomial family"):
        slaf.polynomial()


def test_polynomial_refused_in_training_mode():
    with pytest.raises(NotExpandableError, match="needs evaluation mode"):
        SLAF(3).polynomial()


def test_extra_repr_shows_defining_options():
    assert repr(SLAF(8, 4, "legendre", share="channel", gate=True)) == (
        "SLAF(8, degree=4, basis='legendre', share='channel', gate=True)"
    )
    assert repr(SLAF(8)) == "SLAF(8, degree=3, basis='taylor', share='layer')"


def test_dtype_and_device_are_threaded():
    slaf = SLAF(3, 2, dtype=torch.float64)
    assert all(t.dtype == torch.float64 for t in [*slaf.parameters(), slaf.running_mean])
    assert slaf.num_batches_tracked.dtype == torch.long


@pytest.mark.parametrize("channels, degree", [(1, 3), (5, 1), (1, 1)])
def test_backward_with_one_channel_or_one_basis_element(channels, degree):
    """Regression: with C == 1 or k == 1 the transposed running statistics were a view, and
    writing them back broke the saved tensors of batch_norm's backward."""
    slaf = SLAF(channels, degree)
    for _ in range(2):
        slaf(torch.randn(8, channels)).pow(2).sum().backward()
    assert slaf.weight.grad is not None and int(slaf.num_batches_tracked) == 2
    if degree == 1:
        z = torch.randn(8, channels)
        fresh = SLAF(channels, 1, init_std=0.0)
        torch.testing.assert_close(fresh(z), nn.BatchNorm1d(channels, affine=False)(z))
