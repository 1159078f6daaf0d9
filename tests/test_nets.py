import pytest
import torch
from torch import nn

from polynet import SLAF, SLNN, ConvSLNN, HybridNet
from polynet.nets import build


def test_slnn_layout_and_config_round_trip():
    net = SLNN(13, [128, 64], [4, 2], basis="chebyshev", share="channel")
    assert [type(m).__name__ for m in net] == ["Linear", "SLAF", "Linear", "SLAF", "Linear"]
    assert net[1].degree == 4 and net[3].degree == 2 and net[3].share == "channel"
    again = build("SLNN", net.config)
    assert again.config == net.config
    assert [p.shape for p in again.parameters()] == [p.shape for p in net.parameters()]


def test_slices_are_plain_sequentials():
    net = SLNN(3, [4, 4], 2)
    head = net[:3]
    assert type(head) is nn.Sequential and len(head) == 3
    assert isinstance(net[1], SLAF)


def test_degree_broadcast_and_mismatch():
    assert SLNN(2, [3, 3, 3], 2).config["degrees"] == [2, 2, 2]
    with pytest.raises(ValueError, match=r"degrees must have one entry per hidden layer \(2\)"):
        SLNN(2, [3, 3], [2, 2, 2])
    with pytest.raises(ValueError, match="degrees\\[1\\] must be an integer >= 1, got 0"):
        SLNN(2, [3, 3], [2, 0])


def test_unknown_slaf_option_is_named():
    with pytest.raises(TypeError, match=r"unknown SLAF option\(s\) \['shared'\]"):
        SLNN(2, [3], 2, shared="layer")


def test_hybrid_mixes_slaf_and_batchnorm_relu():
    net = HybridNet(4, [8, 8], ["slaf", "relu"], degrees=[3, 1])
    kinds = [type(m).__name__ for m in net]
    assert kinds == ["Linear", "SLAF", "Linear", "BatchNorm1d", "ReLU", "Linear"]
    assert net(torch.randn(5, 4)).shape == (5, 1)


def test_conv_slnn_shapes_and_pooling():
    net = ConvSLNN(1, 28, [4, 8], degrees=2, out_features=10)
    assert net(torch.randn(3, 1, 28, 28)).shape == (3, 10)
    assert sum(isinstance(m, nn.AvgPool2d) for m in net) == 2
    relu = ConvSLNN(3, 32, [4], activations="relu")
    assert any(isinstance(m, nn.ReLU) for m in relu)
    with pytest.raises(ValueError, match="too small"):
        ConvSLNN(1, 2, [4, 4, 4], pool=2)
