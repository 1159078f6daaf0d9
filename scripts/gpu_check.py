"""CUDA check for polynet (``make gpu-check``): one prepared run, a few minutes on one GPU.

1. runs the ``gpu``-marked tests (``pytest -m gpu tests``);
2. trains the demo Boston SLNN (13 -> [16, 8] -> 1, degrees [4, 2]) on the device with
   :func:`polynet.training.fit`, writing a checkpoint;
3. expands it on the device and verifies the polynomial against the network there;
4. loads the device checkpoint on CPU, expands and verifies it there;
5. checks that the CPU and device polynomials agree coefficient by coefficient;
6. times expansion and evaluation (polynomial and network) on the device and on CPU.

It prints a markdown table and writes it, with the numbers as JSON, to ``--out``
(default ``runs/gpu_check.md`` and ``runs/gpu_check.json``). Without CUDA it says
"CUDA not available: nothing checked" and exits 0, so CI never depends on a GPU;
``--device cpu`` runs every step on CPU (both columns then time the CPU) to exercise the
script itself. Exit status 1 when any check fails.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the checkout's polynet, also when it is not installed

import polynet  # noqa: E402
from polynet import SLNN, data, expand, training, verify  # noqa: E402

#: CPU vs device coefficients: float64 on both sides, different reduction orders.
AGREE_RTOL = 1e-9


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda", help="cuda (default), cuda:N, or cpu")
    p.add_argument("--out", type=Path, default=ROOT / "runs" / "gpu_check.md")
    p.add_argument("--epochs", type=int, default=300)
    p.add_argument("--eval-points", type=int, default=5000, help="points for the eval timing")
    p.add_argument("--repeats", type=int, default=3, help="timed repeats (the median is kept)")
    p.add_argument("--no-pytest", action="store_true", help="skip the gpu-marked tests")
    return p.parse_args(argv)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Any, device: torch.device, repeats: int) -> tuple[Any, float]:
    """(result of the last call, median seconds over ``repeats`` calls after one warm-up)."""
    result = fn()
    _sync(device)
    seconds = []
    for _ in range(repeats):
        tic = time.perf_counter()
        result = fn()
        _sync(device)
        seconds.append(time.perf_counter() - tic)
    return result, sorted(seconds)[len(seconds) // 2]


def run_gpu_tests() -> dict[str, Any]:
    cmd = [sys.executable, "-m", "pytest", "-q", "-m", "gpu", "-p", "no:randomly", "tests"]
    tic = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    tail = (proc.stdout.strip().splitlines() or [""])[-1]
    # pytest exits 5 when every selected test was skipped or none was selected.
    return {
        "passed": proc.returncode in (0, 5),
        "summary": tail,
        "seconds": time.perf_counter() - tic,
        "output": proc.stdout[-4000:] + proc.stderr[-2000:],
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print(
            f"CUDA not available: nothing checked (torch {torch.__version__}, built with CUDA "
            f"{torch.version.cuda}). Run with --device cpu to exercise the script on CPU."
        )
        return 0
    device = training.resolve_device(args.device)
    cpu = torch.device("cpu")
    checks: list[tuple[str, bool, str]] = []
    numbers: dict[str, Any] = {
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "python": platform.python_version(),
        "cpu_threads": torch.get_num_threads(),
        "polynet": polynet.__version__ if hasattr(polynet, "__version__") else "checkout",
    }

    # 1. The gpu-marked tests.
    if not args.no_pytest:
        tests = run_gpu_tests()
        numbers["pytest"] = {k: v for k, v in tests.items() if k != "output"}
        checks.append(("pytest -m gpu", tests["passed"], tests["summary"]))
        if not tests["passed"]:
            print(tests["output"], file=sys.stderr)

    # 2. Train the demo SLNN on the device.
    ds = data.load("boston").standardize(targets=True)
    torch.manual_seed(0)
    net = SLNN(ds.n_features, [16, 8], [4, 2])
    workdir = Path(tempfile.mkdtemp(prefix="polynet-gpu-check-"))
    options = training.FitOptions(
        epochs=args.epochs, lr=3e-3, schedule="cosine", device=device, out=workdir, progress=False
    )
    result = training.fit(net, ds, options)
    numbers["train"] = {
        "epochs": len(result.history),
        "seconds": result.seconds,
        "test_rmse": result.metrics["test_rmse"],
        "train_rmse": result.metrics["train_rmse"],
        "device": result.device,
    }
    on_device = next(result.model.parameters()).device.type == device.type
    test_rmse = result.metrics["test_rmse"]
    checks.append(
        (
            f"train on {device}",
            result.stopped == "completed" and on_device and math.isfinite(test_rmse),
            f"{len(result.history)} epochs in {result.seconds:.1f} s, test RMSE "
            f"{result.metrics['test_rmse']:.3f}",
        )
    )
    X_test = torch.as_tensor(ds.X_test, dtype=torch.float64)

    # 3. Expand and verify on the device.
    model_dev = result.model.eval()
    poly_dev, t_expand_dev = timed(lambda: expand(model_dev), device, args.repeats)
    report_dev = verify(model_dev, poly_dev, X_test.to(device))
    checks.append(
        (
            f"expand + verify on {device}",
            report_dev.passed and poly_dev.coefficients.device.type == device.type,
            f"{poly_dev.n_terms} terms, degree {poly_dev.degree}, max rel error "
            f"{report_dev.max_rel_error:.2e}",
        )
    )

    # 4. The device checkpoint, loaded, expanded and verified on CPU.
    model_cpu = polynet.load(result.checkpoint, device="cpu")
    poly_cpu, t_expand_cpu = timed(lambda: expand(model_cpu), cpu, args.repeats)
    report_cpu = verify(model_cpu, poly_cpu, X_test)
    checks.append(
        (
            "checkpoint loaded, expanded, verified on cpu",
            report_cpu.passed,
            f"max rel error {report_cpu.max_rel_error:.2e}",
        )
    )

    # 5. CPU and device polynomials agree.
    a, b = poly_cpu.coefficients, poly_dev.coefficients.cpu()
    scale = float(a.abs().max())
    diff = float((a - b).abs().max()) / scale
    checks.append(("cpu and device coefficients agree", diff <= AGREE_RTOL, f"{diff:.1e} relative"))

    # 6. Evaluation timings: the polynomial and the float64 network at the same points.
    torch.manual_seed(1)
    lo, hi = X_test.min(0).values, X_test.max(0).values
    pts = lo + (hi - lo) * torch.rand(args.eval_points, X_test.shape[1], dtype=torch.float64)
    pts_dev = pts.to(device)
    net64_cpu = copy.deepcopy(model_cpu).double().eval()
    net64_dev = copy.deepcopy(model_cpu).double().to(device).eval()
    with torch.no_grad():
        values_cpu, t_eval_cpu = timed(lambda: poly_cpu(pts), cpu, args.repeats)
        values_dev, t_eval_dev = timed(lambda: poly_dev(pts_dev), device, args.repeats)
        _, t_net_cpu = timed(lambda: net64_cpu(pts), cpu, args.repeats)
        _, t_net_dev = timed(lambda: net64_dev(pts_dev), device, args.repeats)
    eval_diff = float((values_cpu - values_dev.cpu()).abs().max()) / float(values_cpu.abs().max())
    checks.append(
        ("cpu and device evaluation agree", eval_diff <= 1e-9, f"{eval_diff:.1e} relative")
    )
    numbers["polynomial"] = {"n_terms": poly_cpu.n_terms, "degree": poly_cpu.degree}
    numbers["seconds"] = {
        "expand": {"device": t_expand_dev, "cpu": t_expand_cpu},
        "evaluate_polynomial": {"device": t_eval_dev, "cpu": t_eval_cpu},
        "evaluate_network": {"device": t_net_dev, "cpu": t_net_cpu},
    }
    numbers["eval_points"] = args.eval_points
    numbers["repeats"] = args.repeats
    numbers["checks"] = [{"check": c, "passed": ok, "detail": d} for c, ok, d in checks]

    table = markdown(numbers, checks, device)
    print(table)
    out = args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(table + "\n")
    out.with_suffix(".json").write_text(json.dumps(numbers, indent=2) + "\n")
    print(f"\nwritten: {out} and {out.with_suffix('.json')}")
    return 0 if all(ok for _, ok, _ in checks) else 1


def markdown(numbers: dict[str, Any], checks: list[tuple[str, bool, str]], device: Any) -> str:
    lines = [
        f"### polynet GPU check: {numbers['device_name']} ({numbers['device']}), torch "
        f"{numbers['torch']}, CUDA {numbers['cuda']}, {numbers['cpu_threads']} CPU threads",
        "",
        "| check | result | detail |",
        "|---|---|---|",
    ]
    lines += [f"| {c} | {'pass' if ok else 'FAIL'} | {d} |" for c, ok, d in checks]
    poly = numbers["polynomial"]
    lines += [
        "",
        f"Timings (warm: median of {numbers['repeats']} calls after one warm-up; polynomial "
        f"with {poly['n_terms']} terms, degree {poly['degree']}; evaluation at "
        f"{numbers['eval_points']} points, float64):",
        "",
        f"| step | {device} (s) | cpu (s) | cpu / {device} |",
        "|---|---|---|---|",
    ]
    for step, t in numbers["seconds"].items():
        ratio = t["cpu"] / t["device"] if t["device"] > 0 else float("nan")
        lines.append(f"| {step} | {t['device']:.4f} | {t['cpu']:.4f} | {ratio:.1f}x |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
