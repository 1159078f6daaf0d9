"""Benchmark: truncated, local and factored expansions of image-size MLPs against autograd and
the full expansion.

Networks: ``polynet.SLNN(784, hidden, degrees)`` with seeded random weights and SLAF
coefficients drawn N(0, 0.5²) (so every degree block is non-trivial), in float64 evaluation
mode. The expansion point x0 is an MNIST test image (``/work/shared/data/mnist-t10k`` or
``$POLYNET_MNIST``; uniform [0, 1] pixels when absent).

Cases, each in its own fresh Python process (``--case NAME``) so that its peak memory is its
own: ``ru_maxrss`` of that process, with the RSS before the timed call (torch and the network)
reported beside it. Every case checks its result before its time counts:

- ``truncated q``: ``expand(net, degree=q)``; per degree block against float64 autograd
  jets of t ↦ f(t v) along 3 random directions (``taylor_errors``);
- ``local q``: ``expand(net, degree=q, at=x0)``; q = 2 against the gradient and half the
  Hessian from ``torch.autograd.functional.hessian``, q = 3 by jets;
- ``hessian``: ``torch.autograd.functional.hessian(f, x0, vectorize=True)`` plus the
  gradient: the reference engine for ``local 2``;
- ``factored``: ``expand(net, form="factored")``; its values against the forward pass on 20
  images, and its ``truncate(degree=2)`` against ``expand(net, degree=2)``;
- ``full vs truncated``: a network small enough for the full expansion (n = 16, [64, 32],
  (4, 2), D = 8, 735,471 terms): ``expand(net).truncate(degree=3)`` against
  ``expand(net, degree=3)``, both timed in one process.

Writes ``results/bench_truncated.json`` and ``results/bench_truncated.md``.

Usage::

    python benchmarks/bench_truncated.py            # all cases (~2-4 min on 2 cores)
    python benchmarks/bench_truncated.py --case "truncated 2"
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

RESULTS = Path(__file__).resolve().parent / "results"
BIG = ([256, 128], [4, 2])
#: Largest relative error per degree block accepted against autograd.
TOL = 1e-12
#: A case's wall-clock cap (seconds).
CAP = 600


def rss_mib() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def network(n: int, hidden: list[int], degrees: list[int], seed: int = 0) -> torch.nn.Module:
    import polynet

    torch.manual_seed(seed)
    net = polynet.SLNN(n, hidden, degrees)
    with torch.no_grad():
        for layer in net.modules():
            if isinstance(layer, polynet.SLAF):
                for p in layer.parameters():
                    p.normal_(0.0, 0.5)
    return net.eval().double()


def image() -> torch.Tensor:
    path = os.environ.get("POLYNET_MNIST", "/work/shared/data/mnist-t10k")
    try:
        from polynet import data

        return torch.as_tensor(data.load("mnist", path=path).X_test[0], dtype=torch.float64)
    except Exception:  # noqa: BLE001 - the benchmark runs without the data too
        return torch.rand(784, generator=torch.Generator().manual_seed(0), dtype=torch.float64)


def timed(fn):
    before = rss_mib()
    cpu0, t0 = cpu_s(), time.perf_counter()
    out = fn()
    seconds, cpu = time.perf_counter() - t0, cpu_s() - cpu0
    return out, {
        "seconds": seconds,
        "cpu_seconds": cpu,
        "rss_before_mib": before,
        "peak_mib": peak_mib(),
    }


def hessian_half(h: torch.Tensor) -> np.ndarray:
    """The degree-2 block in graded order from a Hessian: H_ii / 2, H_ij for i < j."""
    n = h.shape[0]
    iu = np.triu_indices(n)
    hh = h.numpy()
    return np.where(iu[0] == iu[1], hh[iu] / 2, hh[iu])


def run_case(name: str) -> dict:
    import polynet
    from polynet.expansion.truncated import taylor_errors

    torch.set_num_threads(1)
    net = network(784, *BIG)
    # The image only where a case needs it: loading MNIST would count in every peak.
    x0 = image() if name.startswith(("local", "hessian")) else None
    f = lambda x: net(x[None])[0, 0]  # noqa: E731
    kind, _, arg = name.partition(" ")
    if kind == "truncated":
        q = int(arg)
        poly, row = timed(lambda: polynet.expand(net, degree=q))
        row["errors_vs_autograd"] = taylor_errors(net, poly)
        row["n_terms"] = poly.index.size
    elif kind == "local":
        q = int(arg)
        poly, row = timed(lambda: polynet.expand(net, degree=q, at=x0))
        if q == 2:
            grad = torch.autograd.functional.jacobian(f, x0)
            hess = torch.autograd.functional.hessian(f, x0, vectorize=True)
            c = poly.coefficients[0].numpy()
            g_err = np.abs(c[1:785] - grad.numpy()).max() / np.abs(grad.numpy()).max()
            h2 = hessian_half(hess)
            h_err = np.abs(c[785:] - h2).max() / np.abs(h2).max()
            row["errors_vs_autograd"] = [0.0, float(g_err), float(h_err)]
        else:
            row["errors_vs_autograd"] = taylor_errors(net, poly)
        row["n_terms"] = poly.index.size
    elif kind == "hessian":

        def both():
            grad = torch.autograd.functional.jacobian(f, x0)
            return grad, torch.autograd.functional.hessian(f, x0, vectorize=True)

        _, row = timed(both)
    elif kind == "factored":
        hidden, degrees = ([128, 64], [2, 2]) if arg == "small" else BIG
        net = network(784, hidden, degrees)
        g, row = timed(lambda: polynet.expand(net, form="factored"))
        x = torch.rand(20, 784, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
        with torch.no_grad():
            want = net(x)
        row["error_vs_forward"] = float((g(x) - want).abs().max() / want.abs().max())
        dense2 = polynet.expand(net, degree=2).coefficients
        row["truncate2_vs_truncated"] = float(
            (g.truncate(2).coefficients - dense2).abs().max() / dense2.abs().max()
        )
        row["n_terms"] = g.n_terms
        row["dense_terms_in_x"] = g.max_terms
        row["network"] = f"SLNN(784, {hidden}, {degrees})"
    elif kind == "full":
        small = network(16, [64, 32], [4, 2])
        full, row_full = timed(lambda: polynet.expand(small).truncate(degree=3))
        part, row = timed(lambda: polynet.expand(small, degree=3))
        ref = full.coefficients
        row["error_vs_full"] = float((part.coefficients - ref).abs().max() / ref.abs().max())
        row["full_seconds"] = row_full["seconds"]
        row["full_cpu_seconds"] = row_full["cpu_seconds"]
        row["full_peak_mib"] = row_full["peak_mib"]
        row["network"] = "SLNN(16, [64, 32], [4, 2]), D = 8, 735,471 terms"
    else:
        raise SystemExit(f"unknown case {name!r}")
    row["case"] = name
    return row


CASES = [
    "truncated 1",
    "truncated 2",
    "truncated 3",
    "local 2",
    "hessian",
    "local 3",
    "factored small",
    "factored big",
    "full vs truncated",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--case", default=None)
    args = parser.parse_args()
    if args.case is not None:
        print(json.dumps(run_case(args.case)))
        return
    rows = []
    load = os.getloadavg()
    for case in CASES:
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
        proc = subprocess.run(
            [sys.executable, __file__, "--case", case],
            capture_output=True,
            text=True,
            timeout=CAP,
            env=env,
        )
        if proc.returncode != 0:
            print(proc.stderr[-2000:], file=sys.stderr)
            raise SystemExit(f"case {case!r} failed")
        row = json.loads(proc.stdout.strip().splitlines()[-1])
        errs = row.get("errors_vs_autograd", [])
        for key in ("error_vs_forward", "truncate2_vs_truncated", "error_vs_full"):
            if key in row:
                errs = [*errs, row[key]]
        if errs and max(errs) > TOL:
            raise SystemExit(f"case {case!r} disagrees with its reference: {errs}")
        rows.append(row)
        print(
            f"{case:18s} {row['seconds']:8.3f} s wall {row['cpu_seconds']:8.3f} s CPU "
            f"peak {row['peak_mib']:7.0f} MiB (before {row['rss_before_mib']:.0f})  "
            f"max err {max(errs) if errs else float('nan'):.1e}",
            flush=True,
        )
    by = {r["case"]: r for r in rows}
    ratios = {
        "hessian / local 2 (wall)": by["hessian"]["seconds"] / by["local 2"]["seconds"],
        "hessian / local 2 (CPU)": by["hessian"]["cpu_seconds"] / by["local 2"]["cpu_seconds"],
        "full+truncate / truncated q=3 (wall)": by["full vs truncated"]["full_seconds"]
        / by["full vs truncated"]["seconds"],
    }
    for k, v in ratios.items():
        print(f"{k}: {v:.1f}x")
    meta = {
        "machine": platform.platform(),
        "processor": platform.processor(),
        "cpus": os.cpu_count(),
        "load_average_at_start": load,
        "load_average_at_end": os.getloadavg(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "torch_threads": 1,
        "peak": "ru_maxrss of a fresh process per case (torch + network included)",
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "bench_truncated.json").write_text(
        json.dumps({"meta": meta, "rows": rows, "ratios": ratios}, indent=1)
    )
    lines = [
        "| case | wall s | CPU s | peak MiB (before) | max rel. error vs reference |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        errs = r.get("errors_vs_autograd", []) + [
            r[k] for k in ("error_vs_forward", "truncate2_vs_truncated", "error_vs_full") if k in r
        ]
        lines.append(
            f"| {r['case']} | {r['seconds']:.3f} | {r['cpu_seconds']:.3f} | "
            f"{r['peak_mib']:.0f} ({r['rss_before_mib']:.0f}) | "
            f"{f'{max(errs):.1e}' if errs else 'reference engine'} |"
        )
    full = by["full vs truncated"]
    lines += [
        "",
        f"- full expansion then truncate(degree=3) of {full['network']}: "
        f"{full['full_seconds']:.3f} s wall, {full['full_cpu_seconds']:.3f} s CPU, peak "
        f"{full['full_peak_mib']:.0f} MiB; expand(degree=3) alone: {full['seconds']:.3f} s",
        f"- factored: {by['factored small']['network']} {by['factored small']['n_terms']:,} "
        f"terms, {by['factored big']['network']} {by['factored big']['n_terms']:,} terms "
        f"(in x: {by['factored big']['dense_terms_in_x']:.3g})",
    ]
    lines += [
        "",
        *(f"- {k}: {v:.1f}x" for k, v in ratios.items()),
        "",
        f"load average {load[0]:.1f} at start, {os.getloadavg()[0]:.1f} at end; "
        f"{os.cpu_count()} CPUs, one torch thread.",
    ]
    (RESULTS / "bench_truncated.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
