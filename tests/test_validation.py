"""The one integer/number rule (polynet/validation.py) as every public constructor applies it.

numpy integers count as integers everywhere, bools never do, and the message is the same
sentence wherever the check happens.
"""

import re

import numpy as np
import pytest
import torch

from polynet import SLAF, SLNN, training
from polynet.approximate import approximate
from polynet.nets import ConvSLNN, HybridNet
from polynet.polynomial.index import MonomialIndex
from polynet.validation import check_int, check_number, is_int, is_number

NUMPY_INTS = [np.int8(3), np.int32(3), np.int64(3), np.uint16(3)]


@pytest.mark.parametrize("value", [3, *NUMPY_INTS])
def test_integers_python_and_numpy(value):
    assert is_int(value, 1) and check_int(value, "n") == 3 and type(check_int(value, "n")) is int


@pytest.mark.parametrize("value", [True, np.bool_(True), 3.0, "3", None])
def test_not_integers(value):
    assert not is_int(value)
    with pytest.raises(ValueError, match=r"^n must be an integer >= 1, got "):
        check_int(value, "n")


def test_numbers():
    assert is_number(np.float32(0.5), 0, strict=True) and check_number(np.int64(2), "x") == 2.0
    for bad in (True, float("nan"), float("inf"), "1", None):
        assert not is_number(bad)
    with pytest.raises(ValueError, match=r"x must be a finite number > 0.0, got 0"):
        check_number(0, "x", low=0.0, strict=True)


#: (build with an integer argument set to `value`, the argument's name)
BUILDERS = [
    (lambda v: SLAF(v, 2), "num_features"),
    (lambda v: SLAF(4, v), "degree"),
    (lambda v: SLNN(v, [4], 2), "in_features"),
    (lambda v: SLNN(3, [v], 2), "hidden[0]"),
    (lambda v: SLNN(3, [4], [v]), "degrees[0]"),
    (lambda v: SLNN(3, [4], 2, out_features=v), "out_features"),
    (lambda v: HybridNet(3, [4, 4], ["slaf", "relu"], [v, 2]), "degrees[0]"),
    (lambda v: ConvSLNN(1, [2], 2, 3, kernel_size=v), "kernel_size"),
    (lambda v: MonomialIndex(v, 2), "n_vars"),
    (lambda v: approximate("tanh", v), "degree"),
    (lambda v: training.FitOptions(epochs=v), "epochs"),
    (lambda v: training.FitOptions(patience=v), "patience"),
]


@pytest.mark.parametrize(("build", "name"), BUILDERS)
def test_numpy_integers_accepted_bools_refused_same_message(build, name):
    for value in NUMPY_INTS:
        build(value)
    rule = re.escape(f"{name} must be an integer >= 1, got")
    with pytest.raises(ValueError, match=rf"^{rule} True"):
        build(True)
    with pytest.raises(ValueError, match=rf"^{rule} 0"):
        build(np.int64(0))


def test_numpy_integer_config_stays_json():
    net = SLNN(np.int64(3), [np.int32(4)], np.int64(2), out_features=np.int16(1))
    assert all(type(v) is int for v in (net.config["in_features"], net.config["out_features"]))
    assert all(type(v) is int for v in net.config["hidden"])
    assert net(torch.zeros(2, 3)).shape == (2, 1)
