"""Fixtures of the plots tests: a trained-looking SLNN, its inputs, and a PNG reader."""

import matplotlib.image
import numpy as np
import pytest
import torch

from polynet import SLNN, plots

from ..conftest import trained_like

#: Largest |polynomial − network| accepted on a drawn grid (float64 throughout).
SLICE_TOL = 1e-9


def read_png(path, figure) -> np.ndarray:
    """The image, checked non-empty and of the figure's size in pixels."""
    assert path.stat().st_size > 1000
    image = matplotlib.image.imread(path)
    width, height = figure.get_size_inches() * plots.DPI
    assert image.shape[:2] == (round(height), round(width))
    assert image[..., :3].std() > 0.01  # not a blank canvas
    return image


@pytest.fixture
def net():
    return trained_like(SLNN(3, [5, 4], [3, 2], dtype=torch.float64), 3)


@pytest.fixture
def x():
    return torch.randn(64, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
