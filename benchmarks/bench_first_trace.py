"""Benchmark: the first trace and first expansion of a custom-forward model in a fresh process.

A Boston-size model (13 inputs: Linear 13-16, SLAF degree 2, a residual, Linear 16-1) whose
``forward()`` is not a plain chain is traced and expanded in a fresh Python process, timed
after ``import torch``:

- new: this checkout (trace on real shapes, :mod:`polynet.expansion.trace`);
- old: the polynet in ``--before DIR``, a checkout from before tracing on real shapes, whose
  graph path traced with torch.fx and recorded stack traces (``git worktree add --detach
  /tmp/old 626377f``).

"trace" is the tracing step alone (new: the symbolic pass ``expand_graph(symbolic=True)``, which
runs the model once on the example batch; old: ``polynet.poly.graph.trace``, torch.fx);
"first expand" is ``polynet.expand`` end to end (import of polynet included in neither: it is
timed apart). Each engine's coefficients are written and compared before times count. Runs
alternate old/new; medians of ``--repeats`` fresh processes.

Usage::

    python benchmarks/bench_first_trace.py --before /tmp/old [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

_WORKER = r"""
import sys, time
t0 = time.perf_counter()
import torch
t_torch = time.perf_counter() - t0
from torch import nn
t1 = time.perf_counter()
import polynet
t_polynet = time.perf_counter() - t1


class Boston(nn.Module):
    def __init__(self):
        super().__init__()
        self.inp = nn.Linear(13, 16)
        self.act = polynet.SLAF(16, 2)
        self.out = nn.Linear(16, 1)

    def forward(self, x):
        h = self.inp(x)
        h = h + self.act(h)
        return self.out(h)


torch.manual_seed(0)
model = Boston().eval()
mode, path = sys.argv[1], sys.argv[2]
t2 = time.perf_counter()
if mode == "trace":
    try:
        from polynet.expansion.trace import run_traced  # noqa: F401 - the new checkout
        from polynet.expansion.graph import expand_graph
        expand_graph(model, (13,), symbolic=True)
    except ImportError:
        from polynet.poly.graph import trace  # the old checkout's path
        trace(model)
    seconds = time.perf_counter() - t2
else:
    poly = polynet.expand(model)
    seconds = time.perf_counter() - t2
    poly.save(path)
print(f"{t_torch} {t_polynet} {seconds}")
"""


#: Bytecode cache for the workers (as an installed package has): this environment may set
#: PYTHONDONTWRITEBYTECODE, which would make every fresh process compile polynet's sources.
_PYCACHE = tempfile.mkdtemp(prefix="polynet-pycache-")


def _run(checkout: Path, mode: str, path: str) -> tuple[float, float, float]:
    env = {**os.environ, "PYTHONPATH": str(checkout), "OMP_NUM_THREADS": "1"}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = _PYCACHE
    out = subprocess.run(
        [sys.executable, "-c", _WORKER, mode, path],
        env=env,
        cwd=checkout,
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    )
    a, b, c = out.stdout.strip().splitlines()[-1].split()
    return float(a), float(b), float(c)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--before", type=Path, required=True, help="a pre-trace checkout")
    args = parser.parse_args()

    import numpy as np

    tmp = Path(tempfile.mkdtemp())
    engines = {"new": ROOT, "old": args.before}
    # Agreement first: both expansions of the same seeded model (this also fills the
    # bytecode cache, so the timed runs below start like an installed package).
    for name, checkout in engines.items():
        _run(checkout, "expand", str(tmp / f"{name}.npz"))
    from polynet.polynomial.network_polynomial import NetworkPolynomial

    new, old = NetworkPolynomial.load(tmp / "new.npz"), NetworkPolynomial.load(tmp / "old.npz")
    diff = float(
        np.abs(np.asarray(new.coefficients) - np.asarray(old.coefficients)).max()
        / np.abs(np.asarray(old.coefficients)).max()
    )
    if diff > 1e-12:
        raise SystemExit(f"old and new expansions disagree: {diff:.2e}")

    rows: dict[str, dict[str, list[float]]] = {
        name: {"import_torch": [], "import_polynet": [], "trace": [], "first_expand": []}
        for name in engines
    }
    for _ in range(args.repeats):
        for name, checkout in engines.items():
            t_torch, t_polynet, t_trace = _run(checkout, "trace", "")
            rows[name]["import_torch"].append(t_torch)
            rows[name]["import_polynet"].append(t_polynet)
            rows[name]["trace"].append(t_trace)
            rows[name]["first_expand"].append(_run(checkout, "expand", str(tmp / "x.npz"))[2])
    medians = {n: {k: statistics.median(v) for k, v in r.items()} for n, r in rows.items()}
    for name, m in medians.items():
        print(
            f"{name}: import torch {m['import_torch']:.2f} s, import polynet "
            f"{m['import_polynet']:.2f} s, first trace {m['trace']:.3f} s, first expand "
            f"{m['first_expand']:.3f} s"
        )
    ratio = medians["old"]["trace"] / medians["new"]["trace"]
    print(f"first trace old/new: {ratio:.1f}x; agreement {diff:.1e}")
    result = {
        "benchmark": "first_trace",
        "model": "Linear 13-16, SLAF(16, 2), residual, Linear 16-1 (custom forward)",
        "repeats": args.repeats,
        "medians_s": medians,
        "runs_s": rows,
        "trace_ratio_old_over_new": ratio,
        "agreement": diff,
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "load_1min": os.getloadavg()[0],
            "python": platform.python_version(),
        },
    }
    import torch

    result["machine"]["torch"] = torch.__version__
    out = ROOT / "benchmarks" / "results" / "bench_first_trace.json"
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
