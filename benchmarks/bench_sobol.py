"""Benchmark: exact Sobol indices of the Boston SLNN's polynomial against SALib's Saltelli.

The network is the paper's Boston SLNN (13 inputs, hidden [128, 64], SLAF degrees [4, 2], so a
polynomial of degree 8 with C(21, 8) = 203,490 coefficients), trained on the standardised
Keras split as ``examples/boston_housing.py`` does (seed 0; ``--quick`` trains 20 epochs),
then expanded with ``polynet.expand``. Inputs: independent, uniform on the training box
(standardised units); the normal case (training mean and std) is timed as well.

- polynet: ``polynet.sobol(poly, low=..., high=...)`` in float64: the first call in this
  process (it builds the cached index maps of MonomialIndex(13, 8)) and warm calls (median).
- polynet exact: ``expand(net, exact=True)`` and ``sobol(..., exact=True)``: the indices as
  rationals (the float path must agree with them to rounding).
- SALib: Saltelli sampling (``SALib.sample.sobol``, Sobol' sequence) of the same box, the
  network's own float64 forward pass, ``SALib.analyze.sobol`` with its bootstrap confidence
  intervals; N doubles from 2^9 until every first-order and total index has a 95 % confidence
  half-width ≤ 1e-2 (N·(n+2) network evaluations). The time counts sampling, the forward pass
  and the analysis; the error column is the largest |SALib - polynet| over S_i and T_i.

Writes ``results/bench_sobol.json`` and ``results/bench_sobol.md``.

Usage::

    python benchmarks/bench_sobol.py            # trains 100 epochs (~1 min), N up to 2^18
    python benchmarks/bench_sobol.py --quick    # 20 epochs, N up to 2^14
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

import polynet
from polynet import data, training
from polynet.analysis import sobol_bounds

RESULTS = Path(__file__).resolve().parent / "results"
#: The SLNN recipe of examples/boston_housing.py.
RECIPE = dict(epochs=100, batch_size=32, lr=3e-3, schedule="cosine", clip_norm=1.0)
#: SALib's target: every index's 95 % confidence half-width at most this.
CI_TARGET = 1e-2


def train(epochs: int) -> tuple[torch.nn.Module, data.Dataset]:
    raw = data.load_boston()
    ds = raw.standardize(targets=True)
    torch.manual_seed(0)
    net = polynet.SLNN(ds.n_features, [128, 64], [4, 2])
    training.fit(net, ds, seed=0, progress=False, **{**RECIPE, "epochs": epochs})
    return net.double().eval(), ds


def salib_until(net, low, high, max_log2: int, exact) -> list[dict]:
    from SALib.analyze import sobol as analyze
    from SALib.sample import sobol as sample

    n = len(low)
    problem = {"num_vars": n, "names": [f"x{i}" for i in range(n)], "bounds": list(zip(low, high))}
    rows = []
    for log2 in range(9, max_log2 + 1):
        tic = time.perf_counter()
        X = sample.sample(problem, 2**log2, calc_second_order=False, seed=0)
        with torch.no_grad():
            y = torch.cat([net(torch.from_numpy(c)) for c in np.array_split(X, 64)]).numpy()[:, 0]
        res = analyze.analyze(problem, y, calc_second_order=False, seed=0)
        seconds = time.perf_counter() - tic
        conf = float(max(np.max(res["S1_conf"]), np.max(res["ST_conf"])))
        err = float(
            max(np.abs(res["S1"] - exact.first[0]).max(), np.abs(res["ST"] - exact.total[0]).max())
        )
        rows.append(
            {
                "N": 2**log2,
                "evaluations": len(X),
                "seconds": seconds,
                "max_ci": conf,
                "max_error": err,
            }
        )
        print(
            f"SALib N=2^{log2}: {seconds:.2f} s, max CI {conf:.3g}, max error {err:.3g}",
            file=sys.stderr,
        )
        if conf <= CI_TARGET:
            break
    return rows


def machine() -> dict:
    info = {"platform": platform.platform(), "python": platform.python_version()}
    info["cores"] = os.cpu_count()
    info["torch"] = torch.__version__
    info["numpy"] = np.__version__
    try:
        info["SALib"] = importlib.metadata.version("SALib")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover
        pass
    try:
        info["commit"] = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    info["loadavg"] = os.getloadavg()
    return info


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args(argv)
    epochs, max_log2 = (20, 14) if args.quick else (RECIPE["epochs"], 18)

    tic = time.perf_counter()
    net, ds = train(epochs)
    train_seconds = time.perf_counter() - tic
    poly = polynet.expand(net)
    assert poly.index.size == 203_490
    box = sobol_bounds(ds.X_train)
    low, high = box["low"], box["high"]

    tic = time.perf_counter()
    first = polynet.sobol(poly, low=low, high=high)
    first_call = time.perf_counter() - tic
    warm = []
    for _ in range(7):
        tic = time.perf_counter()
        polynet.sobol(poly, low=low, high=high)
        warm.append(time.perf_counter() - tic)
    normal_box = sobol_bounds(ds.X_train, "normal")
    polynet.sobol(poly, "normal", **normal_box)
    warm_normal = []
    for _ in range(7):
        tic = time.perf_counter()
        normal = polynet.sobol(poly, "normal", **normal_box)
        warm_normal.append(time.perf_counter() - tic)

    # The exact path: the same network expanded in rationals, Sobol indices in integers.
    tic = time.perf_counter()
    exact_poly = polynet.expand(net, exact=True)
    exact_expand = time.perf_counter() - tic
    tic = time.perf_counter()
    exact = polynet.sobol(exact_poly, low=low, high=high, exact=True)
    exact_seconds = time.perf_counter() - tic
    exact_gap = float(
        max(
            np.abs(exact.first.astype(float) - first.first).max(),
            np.abs(exact.total.astype(float) - first.total).max(),
        )
    )
    del exact_poly

    salib = salib_until(net, low, high, max_log2, first)
    reached = [r for r in salib if r["max_ci"] <= CI_TARGET]
    ref = reached[0] if reached else salib[-1]
    t_warm = statistics.median(warm)
    names = list(ds.feature_names)
    uniform_table = first.table()
    for i, name in enumerate(names):
        uniform_table = uniform_table.replace(f"| x{i} |", f"| {name} |")
    normal_table = normal.table()
    for i, name in enumerate(names):
        normal_table = normal_table.replace(f"| x{i} |", f"| {name} |")
    result = {
        "machine": machine(),
        "quick": args.quick,
        "train_epochs": epochs,
        "train_seconds": train_seconds,
        "n_terms": poly.n_terms,
        "index_size": poly.index.size,
        "polynet_first_call_s": first_call,
        "polynet_warm_s": t_warm,
        "polynet_warm_all_s": warm,
        "polynet_warm_normal_s": statistics.median(warm_normal),
        "exact_expand_s": exact_expand,
        "exact_sobol_s": exact_seconds,
        "exact_vs_float_max_diff": exact_gap,
        "salib": salib,
        "salib_reached_ci": bool(reached),
        "speedup_warm": ref["seconds"] / t_warm,
        "speedup_first": ref["seconds"] / first_call,
        "variables": names,
        "uniform": {
            "low": low.tolist(),
            "high": high.tolist(),
            "first": first.first[0].tolist(),
            "total": first.total[0].tolist(),
            "by_order": first.by_order()[0].tolist(),
            "interactions": first.interactions(5),
        },
        "normal": {"first": normal.first[0].tolist(), "total": normal.total[0].tolist()},
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench_sobol.json").write_text(json.dumps(result, indent=1))
    goal = "met" if t_warm < 0.1 else "**missed**"
    lines = [
        f"Machine: {result['machine']['platform']}, {result['machine']['cores']} cores "
        f"(shared; load average {result['machine']['loadavg'][0]:.1f}); torch "
        f"{torch.__version__}, numpy {np.__version__}, SALib {result['machine'].get('SALib')}. "
        f"SLNN 13-128-64-1, SLAF degrees (4, 2), trained {epochs} epochs on standardised Boston "
        f"(with B); its polynomial has {poly.n_terms:,} non-zero terms of {poly.index.size:,}.",
        "",
        "| method | time | evaluations of the network | max CI half-width | max error vs exact |",
        "|---|---:|---:|---:|---:|",
        f"| polynet.sobol, first call (builds the index maps) | {first_call * 1000:.0f} ms | 0 | "
        "exact | — |",
        f"| polynet.sobol, warm (median of 7) | {t_warm * 1000:.1f} ms | 0 | exact | — |",
        f"| polynet.sobol, normal inputs, warm | {statistics.median(warm_normal) * 1000:.1f} ms "
        "| 0 | exact | — |",
        f"| polynet.sobol, exact=True (rationals; expand exact {exact_expand:.1f} s) | "
        f"{exact_seconds:.2f} s | 0 | exact | float path within {exact_gap:.1e} |",
    ]
    for r in salib:
        lines.append(
            f"| SALib Saltelli, N = {r['N']:,} | {r['seconds']:.2f} s | {r['evaluations']:,} | "
            f"{r['max_ci']:.3g} | {r['max_error']:.3g} |"
        )
    lines += [
        "",
        f"Goal: Sobol indices of the 203,490-term polynomial in under 0.1 s float (warm): "
        f"{t_warm * 1000:.1f} ms ({goal}). "
        + (
            f"SALib needs N = {ref['N']:,} ({ref['evaluations']:,} forward passes, "
            f"{ref['seconds']:.2f} s) for a 95 % CI half-width ≤ {CI_TARGET:g}: polynet is "
            f"{result['speedup_warm']:.0f}× faster warm, {result['speedup_first']:.0f}× on its "
            "first call, and exact."
            if reached
            else f"SALib does not reach a 95 % CI half-width ≤ {CI_TARGET:g} by N = "
            f"{ref['N']:,} ({ref['evaluations']:,} forward passes, {ref['seconds']:.2f} s, CI "
            f"{ref['max_ci']:.3g}): polynet is more than {result['speedup_warm']:.0f}× faster "
            f"warm, more than {result['speedup_first']:.0f}× on its first call, and exact."
        ),
        "",
        "Inputs uniform on the training box (standardised units):",
        "",
        uniform_table,
        "",
        "Inputs normal with the training mean and std:",
        "",
        normal_table,
        "",
    ]
    (out / "bench_sobol.md").write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
