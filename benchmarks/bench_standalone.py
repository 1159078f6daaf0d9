"""Benchmark: the exported Boston polynomial evaluated without polynet.

The `make demo` architecture (13 -> 16 -> 8 -> 1, degrees 4 and 2; D = 8, 203,490 terms) with
seeded untrained weights and running statistics, expanded once, then evaluated on the same
points by:

- ``poly(x)`` (polynet's evaluator, the reference);
- ``polynomial_numpy.py`` written by the bundle (numpy only, graded recursion);
- ``polynomial.onnx`` in onnxruntime (float64, Gather/Mul per degree, one MatMul);
- the naive CSV route a user without polynet would write (x ** exponents, product over
  variables, times the coefficients), in chunks.

Each engine must agree with ``poly(x)`` to 1e-10 relative before its time counts. Peak memory
is the process's max RSS growth around each call (``resource``), a rough figure. Writes
results/bench_standalone.json.

Usage::

    python benchmarks/bench_standalone.py [--points 506]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import polynet
from polynet import export

TOL = 1e-10


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _time(fn):
    before = _rss_mib()
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t, _rss_mib() - before


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--points", type=int, default=506)
    args = parser.parse_args()
    torch.manual_seed(0)
    net = polynet.SLNN(13, [16, 8], [4, 2], 1)
    net.train()
    with torch.no_grad():
        net(torch.randn(256, 13))
    net.eval()
    poly = polynet.expand(net, progress=False)
    x = np.random.RandomState(0).randn(args.points, 13)
    ref, t_ref, m_ref = _time(lambda: poly(x).numpy())
    rows = [{"engine": "poly(x) (polynet)", "seconds": t_ref, "peak_mib": m_ref, "rel_err": 0.0}]
    with tempfile.TemporaryDirectory() as tmp:
        export.write_bundle(poly, tmp)
        sys.path.insert(0, tmp)
        import polynomial_numpy as pn

        engines = {"polynomial_numpy.py": lambda: pn.polynomial(x)}
        try:
            import onnxruntime as ort

            session = ort.InferenceSession(
                str(Path(tmp) / "polynomial.onnx"), providers=["CPUExecutionProvider"]
            )
            engines["polynomial.onnx (onnxruntime)"] = lambda: session.run(None, {"x": x})[0]
        except ImportError:
            pass

        def naive():
            terms, coef = pn.TERMS, pn.COEFFICIENTS
            out = np.zeros((len(x), 1))
            for s in range(0, len(terms), 4096):
                e = terms[s : s + 4096]
                out += np.prod(x[:, None, :] ** e[None], axis=2) @ coef[s : s + 4096]
            return out

        engines["naive numpy over the CSV terms"] = naive
        for name, fn in engines.items():
            y, t, m = _time(fn)
            err = float(np.abs(y - ref).max() / np.abs(ref).max())
            status = "ok" if err < TOL else "FAIL"
            rows.append({"engine": name, "seconds": t, "peak_mib": m, "rel_err": err})
            print(f"{name:34s} {t:8.3f} s  {m:7.1f} MiB  rel err {err:.1e}  {status}")
    print(f"{'poly(x) (polynet)':34s} {t_ref:8.3f} s")
    result = {
        "points": args.points,
        "terms": poly.n_terms,
        "rows": rows,
        "machine": platform.platform(),
        "cpus": os.cpu_count(),
        "load": os.getloadavg(),
        "numpy": np.__version__,
        "torch": torch.__version__,
    }
    out = Path(__file__).parent / "results" / "bench_standalone.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
