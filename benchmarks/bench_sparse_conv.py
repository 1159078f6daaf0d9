"""Benchmark: conv nets expanded field by field (sparse) against the dense walk.

Networks are ``examples/mnist.py``'s ConvSLNN shape (3×3 convs, channels 8 and 16, SLAF
degrees (2, 2), average pooling 2, 10 outputs), seeded, with random SLAF coefficients:

- on 8×8 and 10×10 images both engines run, each in a fresh process (so peak RSS is its own),
  and must agree (same non-zero monomials, coefficients to 1e-12 relative) before times count;
- on 28×28 (the MNIST network itself, D = 4, C(788, 4) = 1.6e10 dense monomials) the dense
  walk is refused; the sparse result is checked against the float64 forward pass on 20 images
  (≤ 1e-13 relative) and compared with the image-size report's prototype (203 s wall, 4.8 GiB
  peak, 7,272,674 terms, error 1.8e-14; measured on this machine kind under load 3-4).

``count_terms(model).support`` (the support counted from the patterns alone) is timed too.
Prints a table; writes ``benchmarks/results/bench_sparse_conv.json``.

Usage::

    python benchmarks/bench_sparse_conv.py [--sizes 8 10 28] [--cap 900]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "bench_sparse_conv.json"

#: The image-size report's structured prototype on the 28×28 network (not in the repository).
PROTOTYPE = {
    "seconds": 203.0,
    "cpu_seconds": 97.0,
    "peak_gib": 4.8,
    "n_terms": 7_272_674,
    "max_rel_error": 1.8e-14,
}

_WORKER = r"""
import json, resource, sys, time, torch, numpy as np, polynet
torch.set_num_threads(1)
size, engine, out = int(sys.argv[1]), sys.argv[2], sys.argv[3]
torch.manual_seed(0)
net = polynet.ConvSLNN(1, size, [8, 16], [2, 2], 10)
with torch.no_grad():
    for m in net.modules():
        if isinstance(m, polynet.SLAF):
            for p in m.parameters():
                p.add_(torch.randn_like(p) * 0.3)
net.eval()
row = {"size": size, "engine": engine}
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t, c = time.perf_counter(), time.process_time()
if engine == "count":
    counted = polynet.count_terms(net)
    row["support"] = counted.support
    row["max_terms"] = counted.max_terms
else:
    poly = polynet.expand(net, form=engine, max_memory="12GiB")
row["seconds"] = time.perf_counter() - t
row["cpu_seconds"] = time.process_time() - c
row["peak_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
row["rss_before_mib"] = before / 1024
if engine != "count":
    row["n_terms"] = poly.n_terms
    row["max_terms"] = poly.max_terms
    g = torch.Generator().manual_seed(1)
    x = torch.rand(20, 1, size, size, generator=g, dtype=torch.float64)
    with torch.no_grad():
        expected = net.double()(x)
    t = time.perf_counter()
    got = poly(x.reshape(20, -1))
    row["eval_20_seconds"] = time.perf_counter() - t
    row["max_rel_error"] = float((got - expected).abs().max() / expected.abs().max())
    if size <= 10:
        from polynet.polynomial.sparse_polynomial import SparsePolynomial
        sparse = poly if isinstance(poly, SparsePolynomial) else SparsePolynomial.from_dense(poly)
        np.savez(out, codes=sparse.codes, coefficients=sparse.coefficients.numpy())
row["load_average"] = list(__import__("os").getloadavg())
print(json.dumps(row))
"""


def _run(size: int, engine: str, out: str, cap: float) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    try:
        done = subprocess.run(
            [sys.executable, "-c", _WORKER, str(size), engine, out],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=cap,
        )
    except subprocess.TimeoutExpired:
        return {"size": size, "engine": engine, "error": f"over the {cap:.0f} s cap"}
    if done.returncode != 0:
        tail = done.stderr.strip().splitlines()[-1:] or ["?"]
        return {"size": size, "engine": engine, "error": tail[0]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def _agree(a: str, b: str) -> float:
    """Max |difference| / max |coefficient| of two saved results (inf if supports differ)."""
    with np.load(a) as x, np.load(b) as y:
        if not np.array_equal(x["codes"], y["codes"]):
            return float("inf")
        diff = np.abs(x["coefficients"] - y["coefficients"]).max()
        return float(diff / np.abs(y["coefficients"]).max())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[8, 10, 28])
    parser.add_argument("--cap", type=float, default=900.0, help="seconds per run")
    args = parser.parse_args()
    rows, checks = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            files = {e: os.path.join(tmp, f"{e}{size}.npz") for e in ("sparse", "dense")}
            engines = ["count", "sparse"] + (["dense"] if size <= 10 else [])
            found = {e: _run(size, e, files.get(e, ""), args.cap) for e in engines}
            rows += found.values()
            if "dense" in found and "error" not in found["dense"]:
                agree = _agree(files["sparse"], files["dense"])
                checks.append({"size": size, "sparse_vs_dense_rel": agree})
                if not agree <= 1e-12:
                    raise SystemExit(f"sparse and dense disagree at {size}x{size}: {agree}")
                sparse, dense = found["sparse"], found["dense"]
                sparse["dense_over_sparse_seconds"] = dense["seconds"] / sparse["seconds"]
                sparse["dense_over_sparse_peak"] = dense["peak_mib"] / sparse["peak_mib"]
            if size == 28 and "error" not in found["sparse"]:
                s = found["sparse"]
                if not s["max_rel_error"] <= 1e-13:
                    raise SystemExit(f"sparse polynomial off the network: {s['max_rel_error']}")
                s["prototype_over_sparse_seconds"] = PROTOTYPE["seconds"] / s["seconds"]
                s["prototype_over_sparse_cpu_seconds"] = PROTOTYPE["cpu_seconds"] / s["cpu_seconds"]
                s["prototype_over_sparse_peak"] = PROTOTYPE["peak_gib"] * 1024 / s["peak_mib"]
    print(
        f"{'image':>6} {'engine':>7} {'terms':>11} {'of C(n+D,D)':>15} {'wall s':>8} "
        f"{'cpu s':>7} {'peak MiB':>9} {'eval 20':>8} {'rel err':>8}"
    )
    for r in rows:
        if "error" in r:
            print(f"{r['size']:>6} {r['engine']:>7}  {r['error']}")
            continue
        terms = r.get("n_terms", r.get("support"))
        print(
            f"{r['size']:>6} {r['engine']:>7} {terms if terms is not None else '-':>11,} "
            f"{r['max_terms']:>15,} {r['seconds']:>8.1f} {r['cpu_seconds']:>7.1f} "
            f"{r['peak_mib']:>9.0f} {r.get('eval_20_seconds', float('nan')):>8.2f} "
            f"{r.get('max_rel_error', float('nan')):>8.1e}"
        )
    for r in rows:
        for key in (
            "dense_over_sparse_seconds",
            "dense_over_sparse_peak",
            "prototype_over_sparse_seconds",
            "prototype_over_sparse_peak",
        ):
            if key in r:
                print(f"{r['size']}x{r['size']} {key}: {r[key]:.2f}")
    result = {
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "load_average": os.getloadavg(),
            "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        },
        "prototype": PROTOTYPE,
        "rows": rows,
        "agreement": checks,
    }
    if OUT.exists():  # keep the other sizes' rows of an earlier run
        earlier = json.loads(OUT.read_text())
        sizes = set(args.sizes)
        result["rows"] = [r for r in earlier["rows"] if r["size"] not in sizes] + rows
        result["agreement"] = [r for r in earlier["agreement"] if r["size"] not in sizes] + checks
        result["earlier_machine"] = earlier.get("machine")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2))
    print(f"wrote {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
