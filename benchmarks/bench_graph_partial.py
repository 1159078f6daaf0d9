"""Benchmark: ``expand(model, degree=q)`` on a model with a custom forward() against the full
expansion of the same model.

The model (written here, the way such models are written: two branches multiplied, an
in-place scale by a buffer, an SLAF folded into a narrower head, a residual square, a width
check) has degree D = 4 for any number n of inputs. Each case runs in its own Python process
(``--case NAME``), so its peak memory (``ru_maxrss``) is its own; the RSS before the timed call
(torch, the model) is reported beside it. Every case checks its result before its time counts:

- ``full n``: ``expand(model)``; against the float64 forward pass on 64 random points;
- ``degree q, n``: ``expand(model, degree=q)``; against the full expansion's monomials of
  degree <= q in the same process when n is small (the full one is timed there too, so both
  engines run on the same inputs in one process), else per degree block against float64
  autograd jets along 3 random lines (``taylor_errors``).

The last case is the CryptoNets-style square CNN of ``examples/square_cnn.py`` on all 784
pixels (untrained, seeded; D = 4), whose whole polynomial has 1.6e10 terms.

For the largest n the full expansion is not run: its size and peak come from
``polynet.expand.estimate`` (what ``expand`` would refuse).

Writes ``results/bench_graph_partial.json``.

Usage::

    python benchmarks/bench_graph_partial.py            # all cases (~2 min on 2 cores, 2.5 GB peak)
    python benchmarks/bench_graph_partial.py --case "degree 2, n=200"
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

import torch
from torch import nn

RESULTS = Path(__file__).resolve().parent / "results"
#: Largest relative error accepted (against the full expansion, or per autograd block).
TOL = 1e-10
#: A case's wall-clock cap (seconds).
CAP = 600
WIDTH = 8


class WideInteractions(nn.Module):
    def __init__(self, n: int, width: int = WIDTH) -> None:
        super().__init__()
        import polynet

        self.in_features = n
        self.a = nn.Linear(n, width)
        self.b = nn.Linear(n, width)
        self.act = polynet.SLAF(width, 2)
        self.head = nn.Linear(width, 2)
        self.register_buffer("scale", torch.linspace(0.5, 1.5, width))

    def forward(self, x):
        if x.size(-1) != self.in_features:
            raise ValueError(f"expected {self.in_features} features, got {x.size(-1)}")
        h = self.a(x) * self.b(x)
        h.mul_(self.scale)
        return self.head(self.act(h)) + h.sum(1, keepdim=True) ** 2 / 4


def model(n: int) -> nn.Module:
    import polynet

    torch.manual_seed(0)
    m = WideInteractions(n).double().eval()
    with torch.no_grad():
        for layer in m.modules():
            if isinstance(layer, polynet.SLAF):
                layer.weight.add_(0.3 * torch.randn_like(layer.weight))
    return m


def rss_mib() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


CASES = {
    "full n=24": (24, None),
    "degree 2, n=24": (24, 2),
    "degree 3, n=24": (24, 3),
    "full n=80": (80, None),
    "degree 2, n=80": (80, 2),
    "degree 3, n=80": (80, 3),
    "degree 2, n=200": (200, 2),
    "degree 3, n=200": (200, 3),
    "degree 2, n=784": (784, 2),
    # examples/square_cnn.py: Conv2d -> x*x -> AvgPool2d -> Linear -> x*x -> Linear on 28x28
    # pixels (untrained, seeded), a CryptoNets-style forward with products: D = 4.
    "square CNN degree 2, n=784": (784, 2),
}
SQUARE_CNN = "square CNN degree 2, n=784"


def square_cnn() -> nn.Module:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
    from square_cnn import SquareCNN

    torch.manual_seed(0)
    return SquareCNN().double().eval()


#: Up to this many inputs the full expansion is the reference of a degree case.
FULL_REFERENCE_N = 80


def run_case(name: str) -> dict:
    import polynet
    from polynet.expansion.truncated import taylor_errors

    n, q = CASES[name]
    net = square_cnn() if name == SQUARE_CNN else model(n)
    shape = (1, 28, 28) if name == SQUARE_CNN else (n,)
    polynet.expand(model(3), degree=q)  # imports and first-call costs out of the timing
    before = rss_mib()
    start = time.perf_counter()
    poly = polynet.expand(net, degree=q, max_memory="8GiB", input_shape=shape)
    seconds = time.perf_counter() - start
    peak = peak_mib()
    row = {
        "case": name,
        "n": n,
        "degree": q,
        "monomials": poly.index.size,
        "seconds": seconds,
        "peak_mib": peak,
        "rss_before_mib": before,
        # What the timed call added to the process's peak (ru_maxrss is process-wide).
        "peak_added_mib": max(peak - before, 0.0),
        "estimated_peak_bytes": polynet.expand.estimate(
            net, degree=q, input_shape=shape
        ).peak_bytes,
    }
    if q is None:
        x = torch.randn(64, n, dtype=torch.float64)
        with torch.no_grad():
            expected = net(x)
        err = float((poly(x) - expected).abs().max() / expected.abs().max())
        row["check"] = f"forward pass, max rel error {err:.1e}"
    elif n <= FULL_REFERENCE_N:
        start = time.perf_counter()
        full = polynet.expand(net, max_memory="8GiB")
        row["full_seconds_same_process"] = time.perf_counter() - start
        size = poly.index.size
        scale = float(full.coefficients.abs().max())
        err = float((poly.coefficients - full.coefficients[:, :size]).abs().max()) / scale
        row["check"] = f"full expansion's degree <= {q} part, max rel error {err:.1e}"
    else:
        err = max(taylor_errors(net, poly))
        row["check"] = f"autograd jets per degree block, max rel error {err:.1e}"
        full = polynet.expand.estimate(net, input_shape=shape)
        row["full_estimate"] = {
            "monomials": full.n_monomials,
            "peak_bytes": full.peak_bytes,
        }
    if not err <= TOL:
        raise SystemExit(f"{name}: error {err:.2e} over {TOL:.0e}")
    row["max_rel_error"] = err
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", choices=sorted(CASES))
    args = parser.parse_args()
    if args.case:
        print(json.dumps(run_case(args.case)))
        return
    rows = []
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    for name in CASES:
        out = subprocess.run(
            [sys.executable, __file__, "--case", name],
            capture_output=True,
            text=True,
            timeout=CAP,
            env=env,
        )
        if out.returncode:
            raise SystemExit(f"case {name!r} failed:\n{out.stderr[-3000:]}")
        row = json.loads(out.stdout.strip().splitlines()[-1])
        rows.append(row)
        print(
            f"{name:18s} {row['monomials']:>12,} monomials  {row['seconds']:8.3f} s  "
            f"peak +{row['peak_added_mib']:6.0f} MiB "
            f"(est. {row['estimated_peak_bytes'] / 2**20:.0f}, process {row['peak_mib']:.0f})  "
            f"{row['check']}",
            flush=True,
        )
    by_name = {r["case"]: r for r in rows}
    ratios = {}
    for name, row in by_name.items():
        full = by_name.get(f"full n={row['n']}")
        if row["degree"] is not None and full is not None:
            ratios[name] = {
                "time_full_over_degree": full["seconds"] / row["seconds"],
                "peak_added_full_over_degree": full["peak_added_mib"]
                / max(row["peak_added_mib"], 1.0),
                "monomials_full_over_degree": full["monomials"] / row["monomials"],
                "estimated_peak_full_over_degree": full["estimated_peak_bytes"]
                / row["estimated_peak_bytes"],
            }
        elif "full_estimate" in row:
            ratios[name] = {
                "monomials_full_over_degree": row["full_estimate"]["monomials"] / row["monomials"],
                "estimated_peak_full_over_degree": row["full_estimate"]["peak_bytes"]
                / row["estimated_peak_bytes"],
            }
    for name, r in ratios.items():
        print(name, {k: f"{v:.3g}" for k, v in r.items()})
    payload = {
        "benchmark": "bench_graph_partial",
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "cpus": os.cpu_count(),
            "load_average": os.getloadavg(),
        },
        "versions": {"python": platform.python_version(), "torch": torch.__version__},
        "width": WIDTH,
        "rows": rows,
        "ratios": ratios,
        "max_terms_formula": "C(n + q, q)",
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "bench_graph_partial.json").write_text(json.dumps(payload, indent=2))
    print(f"wrote {RESULTS / 'bench_graph_partial.json'}")


if __name__ == "__main__":
    main()
