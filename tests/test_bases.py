import numpy as np
import pytest
import torch
from numpy.polynomial import chebyshev, legendre, polynomial

from polynet.bases import BASES, EMFN, get_basis
from polynet.errors import NotExpandableError

POLY_BASES = [name for name, cls in BASES.items() if cls.is_polynomial]
NUMPY_VAL = {
    "taylor": polynomial.polyval,
    "chebyshev": chebyshev.chebval,
    "legendre": legendre.legval,
}


@pytest.mark.parametrize("name", POLY_BASES)
@pytest.mark.parametrize("degree", [1, 2, 5, 8])
def test_features_match_numpy_definition(name, degree):
    z = np.linspace(-1.5, 1.5, 41)
    feats = get_basis(name).features(torch.tensor(z).view(1, -1), degree)  # (1, 41, k)
    for i in range(1, degree + 1):
        e = np.zeros(i + 1)
        e[i] = 1.0
        np.testing.assert_allclose(feats[0, :, i - 1].numpy(), NUMPY_VAL[name](z, e), atol=1e-12)


@pytest.mark.parametrize("name", POLY_BASES)
@pytest.mark.parametrize("degree", [1, 3, 6])
def test_change_of_basis_evaluates_to_features(name, degree):
    basis = get_basis(name)
    z = np.linspace(-2, 2, 17)
    m = basis.to_monomial(degree)
    assert m.shape == (degree + 1, degree)
    feats = basis.features(torch.tensor(z).view(1, -1), degree)[0].numpy()
    for i in range(degree):
        np.testing.assert_allclose(polynomial.polyval(z, m[:, i]), feats[:, i], atol=1e-10)


def test_features_shape_for_spatial_inputs():
    z = torch.randn(2, 3, 4, 5)
    assert get_basis("legendre").features(z, 4).shape == (2, 3, 4, 4, 5)


def test_emfn_is_not_polynomial():
    with pytest.raises(NotExpandableError, match="not a polynomial family"):
        EMFN().to_monomial(3)


def test_emfn_alternates_sine_cosine_on_scaled_input():
    z = torch.tensor([[0.5, -1.0]])
    feats = EMFN().features(z, 3, scale=torch.tensor([1.0, 2.0]))
    zs = torch.tensor([[0.5, -0.5]])
    torch.testing.assert_close(feats[..., 0], torch.sin(torch.pi * zs))
    torch.testing.assert_close(feats[..., 1], torch.cos(torch.pi * zs))
    torch.testing.assert_close(feats[..., 2], torch.sin(2 * torch.pi * zs))


def test_unknown_basis_names_valid_ones():
    with pytest.raises(ValueError, match="basis must be one of"):
        get_basis("fourier")
