"""Benchmark: one training step of an SLNN against the same-width ReLU + BatchNorm MLP.

A step is ``zero_grad``, forward, MSE loss, backward and an Adam step (the optimizer
``polynet.training.fit`` builds: fused kernels where torch has them). Both networks have two
hidden layers of the same width W, W inputs and 10 outputs:

- SLNN: Linear, SLAF(degree k), Linear, SLAF(degree k), Linear  (``polynet.SLNN``)
- MLP:  Linear, BatchNorm1d, ReLU, Linear, BatchNorm1d, ReLU, Linear
  (``polynet.HybridNet(..., activations="relu")``, the paper's baseline)

Agreement before time counts: the SLNN's training-mode forward pass must match an
independent, naive implementation of the SLAF (explicit powers, batch mean and biased
variance per basis element, weighted sum) to ``REL_TOL``; a mismatch is a FAIL and the case
is not timed. Timings are the median over repeated steps after warm-up (CUDA synchronised per
step); a case stops early at ``CAP_S`` seconds. The table gives time per step and the ratio
SLNN / MLP; the JSON (machine, versions, threads, every timing) goes to
``benchmarks/results/bench_slaf.json``.

Usage::

    python benchmarks/bench_slaf.py                  # CPU (and CUDA when present)
    python benchmarks/bench_slaf.py --threads 1      # pin torch's intra-op threads
    python benchmarks/bench_slaf.py --quick          # widths 64/256, degrees 2/4
    python benchmarks/bench_slaf.py --profile        # where slaf() spends its time (W=256, k=4)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from polynet import SLNN, HybridNet
from polynet.training import make_optimizer

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"

WIDTHS = [64, 256, 1024]
DEGREES = [2, 4, 8]
BATCH = 512
OUT_FEATURES = 10
WARMUP = 10
REPEATS = 50
#: Seconds of timed steps per case at most (the median is taken over what ran).
CAP_S = 20.0
#: SLNN forward vs the naive reference, float32 (relative to the output's max magnitude).
REL_TOL = 1e-4
#: The goal from the issue: SLNN step time / MLP step time at W=256, k=4, batch 512, CPU.
GOAL = {"width": 256, "degree": 4, "ratio": 1.5}


def naive_slnn_forward(model: SLNN, x: torch.Tensor) -> torch.Tensor:
    """The SLNN's training-mode forward pass written out by hand, without polynet.slaf."""
    h = x
    for layer in model:
        if isinstance(layer, torch.nn.Linear):
            h = h @ layer.weight.T + layer.bias
            continue
        k, eps = layer.degree, layer.eps
        c = layer.coefficient().expand(layer.num_features, k)
        out = torch.zeros_like(h) + layer.bias
        for i in range(1, k + 1):
            p = h**i
            mean = p.mean(dim=0)
            var = p.var(dim=0, unbiased=False)
            out = out + c[:, i - 1] * (p - mean) / torch.sqrt(var + eps)
        h = out
    return h


def check_agreement(width: int, degree: int, device: torch.device) -> float:
    torch.manual_seed(1)
    model = SLNN(width, [width, width], degree, OUT_FEATURES, device=device)
    with torch.no_grad():
        for m in model:
            if hasattr(m, "coefficient"):
                m.weight.normal_(0, 0.3)  # every basis element contributes
        x = torch.randn(BATCH, width, device=device)
        got = model.train()(x)
        want = naive_slnn_forward(model, x)
    return float((got - want).abs().max() / want.abs().max().clamp_min(1e-30))


def build(kind: str, width: int, degree: int, device: torch.device) -> torch.nn.Module:
    torch.manual_seed(0)
    if kind == "slnn":
        return SLNN(width, [width, width], degree, OUT_FEATURES, device=device)
    return HybridNet(width, [width, width], "relu", out_features=OUT_FEATURES, device=device)


def time_steps(model: torch.nn.Module, device: torch.device, cap_s: float) -> dict:
    g = torch.Generator(device=device).manual_seed(0)
    width = model[0].in_features
    x = torch.randn(BATCH, width, device=device, generator=g)
    y = torch.randn(BATCH, OUT_FEATURES, device=device, generator=g)
    opt = make_optimizer(model, "adam", 1e-4)
    model.train()

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        loss = F.mse_loss(model(x), y)
        loss.backward()
        opt.step()

    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for _ in range(WARMUP):
        step()
    sync()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    started = time.perf_counter()
    while len(times) < REPEATS and (time.perf_counter() - started < cap_s or len(times) < 3):
        tic = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - tic)
    result = {
        "median_s": statistics.median(times),
        "min_s": min(times),
        "steps": len(times),
        "capped": len(times) < REPEATS,
    }
    if device.type == "cuda":
        result["peak_mib"] = torch.cuda.max_memory_allocated(device) / 2**20
    return result


def machine_info() -> dict:
    info = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    try:
        with open("/proc/cpuinfo") as f:
            models = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        info["cpu"] = models[0] if models else platform.processor()
    except OSError:
        info["cpu"] = platform.processor()
    try:
        info["load_average"] = os.getloadavg()
    except OSError:
        pass
    return info


def run(devices: list[torch.device], widths: list[int], degrees: list[int], cap_s: float) -> list:
    rows = []
    for device in devices:
        for width in widths:
            mlp = time_steps(build("mlp", width, 0, device), device, cap_s)
            for degree in degrees:
                error = check_agreement(width, degree, device)
                row = {"device": device.type, "width": width, "degree": degree, "batch": BATCH}
                row["agreement_rel_error"] = error
                if not error <= REL_TOL:
                    row["status"] = "FAIL"
                    rows.append(row)
                    print(f"FAIL {device.type} W={width} k={degree}: rel error {error:.2e}")
                    continue
                slnn = time_steps(build("slnn", width, degree, device), device, cap_s)
                row.update(status="ok", slnn=slnn, mlp=mlp)
                row["ratio"] = slnn["median_s"] / mlp["median_s"]
                rows.append(row)
                print(format_row(row), flush=True)
    return rows


HEADER = f"{'device':<6} {'W':>5} {'k':>2} {'SLNN ms':>9} {'MLP ms':>8} {'SLNN/MLP':>9}"


def format_row(row: dict) -> str:
    if row["status"] != "ok":
        return f"{row['device']:<6} {row['width']:>5} {row['degree']:>2}  FAIL"
    return (
        f"{row['device']:<6} {row['width']:>5} {row['degree']:>2} "
        f"{row['slnn']['median_s'] * 1e3:>9.3f} {row['mlp']['median_s'] * 1e3:>8.3f} "
        f"{row['ratio']:>8.2f}x"
    )


def profile_slaf(device: torch.device) -> None:
    """Print torch.profiler's table for the SLNN step at the goal's size."""
    from torch.profiler import ProfilerActivity, profile

    model = build("slnn", GOAL["width"], GOAL["degree"], device)
    x = torch.randn(BATCH, GOAL["width"], device=device)
    y = torch.randn(BATCH, OUT_FEATURES, device=device)
    opt = make_optimizer(model, "adam", 1e-4)
    for _ in range(WARMUP):
        opt.zero_grad(set_to_none=True)
        F.mse_loss(model(x), y).backward()
        opt.step()
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        for _ in range(20):
            opt.zero_grad(set_to_none=True)
            F.mse_loss(model(x), y).backward()
            opt.step()
    key = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    print(prof.key_averages().table(sort_by=key, row_limit=25))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument("--quick", action="store_true", help="widths 64/256, degrees 2/4")
    parser.add_argument("--cpu-only", action="store_true", help="skip CUDA even if present")
    parser.add_argument("--profile", action="store_true", help="profile the SLNN step and exit")
    parser.add_argument("--out", type=Path, default=RESULTS / "bench_slaf.json")
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    devices = [torch.device("cpu")]
    if torch.cuda.is_available() and not args.cpu_only:
        devices.append(torch.device("cuda"))
    if args.profile:
        for device in devices:
            profile_slaf(device)
        return 0
    widths, degrees = ([64, 256], [2, 4]) if args.quick else (WIDTHS, DEGREES)
    info = machine_info()
    print(f"torch {info['torch']}, {info['torch_threads']} thread(s), {info['cpu']}")
    print(HEADER)
    rows = run(devices, widths, degrees, CAP_S)
    goal = next(
        (
            r
            for r in rows
            if r["device"] == "cpu"
            and r["width"] == GOAL["width"]
            and r["degree"] == GOAL["degree"]
            and r["status"] == "ok"
        ),
        None,
    )
    if goal is not None:
        verdict = "met" if goal["ratio"] <= GOAL["ratio"] else "MISSED"
        print(
            f"goal: SLNN/MLP <= {GOAL['ratio']}x at W={GOAL['width']}, k={GOAL['degree']}, "
            f"batch {BATCH}, CPU: {goal['ratio']:.2f}x ({verdict})"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "benchmark": "bench_slaf",
        "machine": info,
        "settings": {
            "batch": BATCH,
            "out_features": OUT_FEATURES,
            "warmup": WARMUP,
            "repeats": REPEATS,
            "cap_s": CAP_S,
            "rel_tol": REL_TOL,
            "optimizer": "adam (polynet.training.make_optimizer)",
        },
        "goal": {**GOAL, "result": None if goal is None else goal["ratio"]},
        "results": rows,
    }
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 1 if any(r["status"] != "ok" for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
