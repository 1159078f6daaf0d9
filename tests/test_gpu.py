"""CUDA checks (``pytest -m gpu``; skipped without CUDA): the same numbers on the GPU as on CPU.

Also: ``scripts/gpu_check.py`` (``make gpu-check``) exits cleanly where there is no CUDA.
"""

import copy

import pytest
import torch

from polynet import SLAF, SLNN, data, expand, load, training, verify


def _net(seed: int = 0) -> SLNN:
    torch.manual_seed(seed)
    net = SLNN(4, [8, 4], [3, 2])
    net.train()
    with torch.no_grad():
        for _ in range(3):  # running statistics that are not the initial 0/1
            net(torch.randn(64, 4) * 2 + 0.5)
    return net.eval()


@pytest.mark.gpu
def test_expand_on_cuda_equals_cpu():
    net = _net().double()
    cpu = expand(net)
    gpu = expand(copy.deepcopy(net).cuda())
    assert gpu.coefficients.is_cuda
    torch.testing.assert_close(gpu.coefficients.cpu(), cpu.coefficients, rtol=1e-12, atol=1e-14)
    x = torch.randn(50, 4, dtype=torch.float64)
    torch.testing.assert_close(gpu(x.cuda()).cpu(), cpu(x), rtol=1e-10, atol=1e-12)


@pytest.mark.gpu
def test_slaf_forward_and_backward_on_cuda_match_cpu():
    torch.manual_seed(0)
    cpu = SLAF(6, 4, dtype=torch.float64)
    gpu = copy.deepcopy(cpu).cuda()
    z = torch.randn(32, 6, dtype=torch.float64, requires_grad=True)
    zg = z.detach().cuda().requires_grad_()
    out_cpu, out_gpu = cpu(z), gpu(zg)
    torch.testing.assert_close(out_gpu.cpu(), out_cpu, rtol=1e-12, atol=1e-12)
    out_cpu.square().sum().backward()
    out_gpu.square().sum().backward()
    torch.testing.assert_close(zg.grad.cpu(), z.grad, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(gpu.running_mean.cpu(), cpu.running_mean)


@pytest.mark.gpu
def test_training_on_cuda_then_expand_on_cpu_verifies(tmp_path):
    ds = data.load("boston").standardize(targets=True)
    torch.manual_seed(0)
    net = SLNN(13, [8], 2)
    result = training.fit(net, ds, epochs=5, device="cuda", progress=False, out=tmp_path)
    assert result.device.startswith("cuda") and result.stopped == "completed"
    assert next(result.model.parameters()).is_cuda
    model = load(result.checkpoint, device="cpu")
    poly = expand(model)
    assert verify(model, poly, ds.X_test).passed


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA path")
def test_gpu_check_script_skips_cleanly_without_cuda(capsys):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "scripts" / "gpu_check.py"
    spec = importlib.util.spec_from_file_location("gpu_check", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main([]) == 0
    assert capsys.readouterr().out.startswith("CUDA not available: nothing checked")
