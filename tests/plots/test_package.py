"""polynet.plots: every name it gave as one module still works, and matplotlib loads late."""

import subprocess
import sys

from polynet import plots
from polynet.approximate import STANDARD_ACTIVATIONS, NearestActivation, nearest_activation

#: What polynet.plots offered as one module: __all__ and its public settings.
NAMES = [
    "calibrate", "NearestActivation", "nearest_activation", "STANDARD_ACTIVATIONS",
    "plot_activations", "coefficient_snapshot", "plot_coefficients", "plot_history",
    "plot_degree_profile", "terms_table", "PolynomialFigure", "plot_slice", "plot_surface",
    "plot_decision_boundary", "DPI", "FORMATS", "CALIBRATION_SAMPLES", "MAX_CURVES",
    "CHANNEL_FITS", "CURVE_POINTS", "plot_image_coefficients",
]  # fmt: skip


def test_every_former_name_is_still_there():
    assert all(hasattr(plots, name) for name in NAMES)
    assert set(plots.__all__) <= set(NAMES)
    # The nearest activation lives beside approximate; plots re-exports the same objects.
    assert plots.nearest_activation is nearest_activation
    assert plots.NearestActivation is NearestActivation
    assert plots.STANDARD_ACTIVATIONS is STANDARD_ACTIVATIONS
    assert (plots.DPI, plots.FORMATS, plots.CALIBRATION_SAMPLES) == (
        120,
        (".png", ".svg", ".pdf"),
        2048,
    )


def test_importing_plots_and_report_loads_no_matplotlib():
    code = "import sys, polynet.plots, polynet.report; print('matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_importing_polynet_loads_no_matplotlib():
    code = "import sys, polynet; print('matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
