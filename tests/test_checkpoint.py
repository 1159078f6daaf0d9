import json
import os

import numpy as np
import pytest
import safetensors.torch
import torch

import polynet
from polynet import SLNN, ConvSLNN, HybridNet
from polynet.checkpoint import FORMAT_VERSION, load_checkpoint, read_metadata, save
from polynet.errors import CheckpointError


def _exercise(model: torch.nn.Module, shape: tuple[int, ...], steps: int = 4) -> torch.nn.Module:
    """Give the model non-trivial parameters and running statistics, then switch to eval."""
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.2 * torch.randn(p.shape, generator=g, dtype=p.dtype))
    model.train()
    for _ in range(steps):
        model(torch.randn(*shape, generator=g, dtype=next(model.parameters()).dtype) + 0.3)
    return model.eval()


def _assert_same_model(a: torch.nn.Module, b: torch.nn.Module, x: torch.Tensor) -> None:
    assert type(a) is type(b) and not b.training
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for key in sa:
        assert sa[key].dtype == sb[key].dtype and torch.equal(sa[key], sb[key]), key
    with torch.no_grad():
        assert torch.equal(a(x), b(x))  # bitwise


@pytest.mark.parametrize("basis", ["taylor", "chebyshev", "legendre", "emfn"])
@pytest.mark.parametrize("options", [{}, {"share": "channel", "gate": True}])
def test_slnn_round_trip_is_bitwise(tmp_path, basis, options):
    net = _exercise(SLNN(5, [6, 4], [3, 2], 2, basis, **options), (16, 5))
    assert net[1].num_batches_tracked.item() == 4
    path = save(net, tmp_path / "m.safetensors", metadata={"dataset": {"name": "x"}})
    ckpt = load_checkpoint(path)
    _assert_same_model(net, ckpt.model, torch.randn(9, 5))
    assert ckpt.architecture == "SLNN" and ckpt.config == net.config
    assert ckpt.metadata == {"dataset": {"name": "x"}} and ckpt.format_version == FORMAT_VERSION


def test_hybrid_and_conv_round_trips_keep_running_stats(tmp_path):
    hybrid = _exercise(HybridNet(4, [6, 5], ["slaf", "relu"], degrees=[3, 1]), (12, 4))
    assert hybrid[3].running_mean.abs().sum() > 0  # BatchNorm1d has seen data
    _assert_same_model(hybrid, polynet.load(save(hybrid, tmp_path / "h")), torch.randn(7, 4))
    conv = _exercise(ConvSLNN(1, 8, [3, 4], degrees=2, out_features=3), (4, 1, 8, 8))
    _assert_same_model(conv, polynet.load(save(conv, tmp_path / "c")), torch.randn(2, 1, 8, 8))


def test_float64_model_stays_float64(tmp_path):
    net = _exercise(SLNN(3, [4], 3, dtype=torch.float64), (10, 3))
    loaded = polynet.load(save(net, tmp_path / "m.safetensors"))
    assert next(loaded.parameters()).dtype == torch.float64
    _assert_same_model(net, loaded, torch.randn(5, 3, dtype=torch.float64))


def test_metadata_round_trip_and_header_only_read(tmp_path):
    meta = {
        "history": [{"epoch": 1, "train_loss": np.float32(0.5)}],
        "standardizer": {"mean": np.array([1.0, 2.0]), "scale": [3.0, 4.0]},
        "metrics": {"test_rmse": 3.25},
        "note": "ok",
    }
    path = save(SLNN(2, [3], 2), tmp_path / "run" / "model.safetensors", metadata=meta)
    expected = {
        "history": [{"epoch": 1, "train_loss": 0.5}],
        "standardizer": {"mean": [1.0, 2.0], "scale": [3.0, 4.0]},
        "metrics": {"test_rmse": 3.25},
        "note": "ok",
    }
    assert load_checkpoint(path).metadata == expected
    assert read_metadata(tmp_path / "run") == expected  # a directory means its model.safetensors


def test_file_is_plain_safetensors_without_pickle(tmp_path):
    net = SLNN(2, [3], 2)
    path = save(net, tmp_path / "m.safetensors")
    tensors = safetensors.torch.load_file(path)  # any safetensors reader can open it
    assert set(tensors) == set(net.state_dict())
    header_len = int.from_bytes(path.read_bytes()[:8], "little")
    header = json.loads(path.read_bytes()[8 : 8 + header_len])
    assert header["__metadata__"]["polynet_format"] == "1"
    assert json.loads(header["__metadata__"]["config"]) == net.config


def test_atomic_write_leaves_no_partial_file(tmp_path, monkeypatch):
    path = tmp_path / "model.safetensors"
    first = SLNN(2, [3], 2)
    save(first, path)
    before = path.read_bytes()

    def broken_replace(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(CheckpointError, match="No space left on device; nothing was written"):
        save(SLNN(2, [5], 2), path)
    assert path.read_bytes() == before  # the old checkpoint is intact
    assert [p.name for p in tmp_path.iterdir()] == ["model.safetensors"]  # no temp file left

    monkeypatch.undo()

    def broken_fsync(fd):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(CheckpointError, match="Input/output error"):
        save(SLNN(2, [5], 2), tmp_path / "other.safetensors")
    assert [p.name for p in tmp_path.iterdir()] == ["model.safetensors"]


@pytest.mark.gpu
def test_cuda_checkpoint_loads_on_cpu(tmp_path):
    net = _exercise(SLNN(3, [4], 2), (8, 3)).cuda()
    path = save(net, tmp_path / "m.safetensors")
    loaded = polynet.load(path)
    assert next(loaded.parameters()).device.type == "cpu"
    _assert_same_model(net.cpu(), loaded, torch.randn(4, 3))
    assert next(polynet.load(path, device="cuda").parameters()).is_cuda


def test_load_is_the_public_polynet_load():
    # polynet.load reads checkpoints and .pt2 programs (polynet.model_source.load)
    assert polynet.load is polynet.model_source.load and "load" in polynet.__all__
