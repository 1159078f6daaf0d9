"""Pictures of what a network learned: its activations, and views of its polynomial.

Learned activations
    :func:`calibrate` records what each SLAF sees on some data; :func:`plot_activations`
    draws every SLAF over the range of its inputs, with their histogram and the nearest
    standard activation (:func:`nearest_activation`); :func:`plot_coefficients` shows the
    SLAF coefficients per basis element and how they moved in training
    (:func:`coefficient_snapshot` records them); :func:`plot_history` draws training curves.
The network polynomial
    :func:`plot_degree_profile` and :func:`terms_table` describe a
    :class:`~polynet.NetworkPolynomial`; :func:`plot_slice`, :func:`plot_surface` and
    :func:`plot_decision_boundary` draw it beside the network it came from and return the
    largest difference between the two; :func:`plot_image_coefficients` draws an image
    model's linear coefficients and one pixel's interactions as images.

Every ``plot_*`` function returns a :class:`matplotlib.figure.Figure` built without pyplot (no
global state, no display needed, safe on a headless machine) and, given ``path``, writes it;
the suffix picks the format (``.png``, ``.svg`` or ``.pdf``). matplotlib is imported at first
use: install the ``plots`` extra.

The modules, one job each: :mod:`~polynet.plots.figure` (making and writing figures),
:mod:`~polynet.plots.calibration`, :mod:`~polynet.plots.activations`,
:mod:`~polynet.plots.coefficients`, :mod:`~polynet.plots.history`,
:mod:`~polynet.plots.terms` (degree profile and terms table) and
:mod:`~polynet.plots.comparison` (slices, surfaces, decision boundaries). The nearest standard
activation lives beside :func:`polynet.approximate` and is re-exported here.
"""

from __future__ import annotations

# Names outside __all__ are re-exported as `X as X`: the settings polynet.plots always had.
from polynet.approximate import STANDARD_ACTIVATIONS, NearestActivation, nearest_activation
from polynet.plots.activations import CHANNEL_FITS as CHANNEL_FITS
from polynet.plots.activations import CURVE_POINTS as CURVE_POINTS
from polynet.plots.activations import MAX_CURVES as MAX_CURVES
from polynet.plots.activations import plot_activations
from polynet.plots.calibration import CALIBRATION_SAMPLES as CALIBRATION_SAMPLES
from polynet.plots.calibration import calibrate
from polynet.plots.coefficients import coefficient_snapshot, plot_coefficients
from polynet.plots.comparison import (
    PolynomialFigure,
    plot_decision_boundary,
    plot_slice,
    plot_surface,
)
from polynet.plots.figure import DPI as DPI
from polynet.plots.figure import FORMATS as FORMATS
from polynet.plots.history import plot_history
from polynet.plots.images import plot_image_coefficients
from polynet.plots.terms import plot_degree_profile, terms_table

__all__ = [
    "calibrate",
    "NearestActivation",
    "nearest_activation",
    "STANDARD_ACTIVATIONS",
    "plot_activations",
    "coefficient_snapshot",
    "plot_coefficients",
    "plot_history",
    "plot_degree_profile",
    "terms_table",
    "PolynomialFigure",
    "plot_slice",
    "plot_surface",
    "plot_decision_boundary",
    "plot_image_coefficients",
]
