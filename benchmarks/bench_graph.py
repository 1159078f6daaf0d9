"""Benchmark: a Boston-size SLNN expanded as nn.Sequential, as a custom forward(), as a graph.

The same seeded SLNN(13, [128, 64], [4, 2]) (C(21, 8) = 203,490 monomials) is expanded

- as the ``nn.Sequential`` it is (the chain fast path),
- as a class with its own ``forward()`` that calls the layers in order (recognised as a chain
  after tracing, so the same fast path plus the trace),
- as a class whose ``forward()`` is not a plain chain (``h * 1.0`` between layers), which
  runs on tensors of polynomials (:mod:`polynet.expansion.graph`).

All three are checked against each other (max |diff| / max |coef|) before times count; times
are warm medians. With ``--before DIR`` the Sequential is also expanded by the polynet found in
``DIR`` (another checkout) in a subprocess, alternating with this one, for a before/after ratio.

Usage::

    python benchmarks/bench_graph.py [--repeats 5] [--before /path/to/other/checkout]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

_SEQUENTIAL_WORKER = """
import json, statistics, sys, time, torch, polynet
torch.manual_seed(0)
seq = polynet.SLNN(13, [128, 64], [4, 2]).train()
for _ in range(3):
    seq(torch.randn(64, 13))
seq.eval()
polynet.expand(seq)
times = []
for _ in range(int(sys.argv[1])):
    t = time.perf_counter(); polynet.expand(seq); times.append(time.perf_counter() - t)
print(json.dumps(statistics.median(times)))
"""


def _sequential_in(checkout: Path, repeats: int) -> float:
    env = {**os.environ, "PYTHONPATH": str(checkout), "OMP_NUM_THREADS": "1"}
    out = subprocess.run(
        [sys.executable, "-c", _SEQUENTIAL_WORKER, str(repeats)],
        env=env,
        cwd=checkout,
        check=True,
        capture_output=True,
        text=True,
    )
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--before", type=Path, help="another checkout to compare the chain with")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))  # this checkout's polynet, not an installed one

    import torch
    from torch import nn

    import polynet

    torch.manual_seed(0)
    seq = polynet.SLNN(13, [128, 64], [4, 2]).train()
    for _ in range(3):
        seq(torch.randn(64, 13))
    seq.eval()

    class CustomSLNN(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.l1, self.a1, self.l2, self.a2, self.l3 = seq

        def forward(self, x):
            return self.l3(self.a2(self.l2(self.a1(self.l1(x)))))

    class GraphSLNN(CustomSLNN):
        def forward(self, x):
            return self.l3(self.a2(self.l2(self.a1(self.l1(x)) * 1.0)))

    models = {"sequential": seq, "custom forward": CustomSLNN().eval(), "graph": GraphSLNN().eval()}
    first, polys = {}, {}
    for name, model in models.items():
        t = time.perf_counter()
        polys[name] = polynet.expand(model)
        first[name] = time.perf_counter() - t
    ref = polys["sequential"].coefficients
    for name, poly in polys.items():
        err = float((poly.coefficients - ref).abs().max() / ref.abs().max())
        assert err < 1e-12, (name, err)
    warm = {}
    for name, model in models.items():
        times = []
        for _ in range(args.repeats if name != "graph" else max(1, args.repeats // 2)):
            t = time.perf_counter()
            polynet.expand(model)
            times.append(time.perf_counter() - t)
        warm[name] = statistics.median(times)
    result = {
        "first_call_s": first,
        "warm_median_s": warm,
        "ratio_custom_forward_over_sequential": warm["custom forward"] / warm["sequential"],
        "ratio_graph_over_sequential": warm["graph"] / warm["sequential"],
    }
    if args.before is not None:
        before, after = [], []
        for _ in range(3):  # alternate, so both see the same machine load
            before.append(_sequential_in(args.before, args.repeats))
            after.append(_sequential_in(ROOT, args.repeats))
        result["sequential_before_s"] = statistics.median(before)
        result["sequential_after_s"] = statistics.median(after)
        result["ratio_after_over_before"] = result["sequential_after_s"] / statistics.median(before)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
