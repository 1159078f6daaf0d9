"""Benchmark: the evaluation targets of issue 20, old (the branch point) against new, one run.

Each row runs in fresh child processes (first calls are the point), the old evaluator from a
``git archive`` of ``--old-ref`` and the new one from this tree, on the same polynomial and
points (same seeds), and checks both against the network's float64 forward pass (or against
each other for the random-coefficient polynomial). Memory is the peak RSS of the call above
the RSS just before it (Linux: VmHWM reset through /proc/self/clear_refs).

- ``mlp784``: ``expand(SLNN(784, [128], [2]))`` (308,505 terms), first and second ``poly(x)``
  at 1,000 points;
- ``boston``: the Boston-size polynomial (13 inputs, D = 8, 203,490 terms), first ``poly(x)``
  at 1,000 points with an empty numba cache and again with the cache it left (old: numba
  compiles; new: the matrix-product path, no compilation), and the numba backend alone;
- ``store20``: the block evaluator of stored polynomials (``polynet.polynomial.store``, used by
  ``verify`` of a Zarr store) on a 20-input degree-8 polynomial (3,108,105 random
  coefficients, held in memory so that only evaluation is timed) at 200 points;
- ``big30``: a 30-input degree-8 polynomial (48,903,492 random coefficients, 373 MiB: the
  size of ``SLNN(30, [128, 64], [4, 2])``'s, whose expansion takes ~40 s) at 200 points; the
  old evaluator runs under an address-space cap of ``--old-cap`` GiB (it builds an 11.7 GB
  exponent table; uncapped it was OOM-killed at 24 GB).

Usage::

    python benchmarks/bench_evaluate_targets.py      # writes results/bench_evaluate_targets.json
    python benchmarks/bench_evaluate_targets.py --only store20   # ..._store20.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"

CHILD = r"""
import json, os, resource, sys, time
sys.path.insert(0, os.environ["BENCH_DIR"])
case, backend, cap = sys.argv[1], sys.argv[2], float(sys.argv[3])
if cap:
    resource.setrlimit(resource.RLIMIT_AS, (int(cap * 2**30), int(cap * 2**30)))
import numpy as np, torch
torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "1")))
import polynet
from polynet import MonomialIndex, NetworkPolynomial

def rss():
    with open("/proc/self/status") as fh:
        f = dict(l.split(":", 1) for l in fh)
    return int(f["VmRSS"].split()[0]) * 1024, int(f["VmHWM"].split()[0]) * 1024

rng = np.random.default_rng(0)
net = None
if case == "mlp784":
    torch.manual_seed(0)
    net = polynet.SLNN(784, [128], [2]).eval().double()
    poly, x = polynet.expand(net), torch.from_numpy(rng.uniform(0, 1, (1000, 784)))
elif case == "boston":
    from bench_expand import build_model
    net = build_model(13, [128, 64], [4, 2], 0).double()
    poly, x = polynet.expand(net), torch.from_numpy(rng.normal(size=(1000, 13)))
elif case == "store20":
    from math import comb
    from polynet.poly.store import evaluate_blocks
    size = comb(28, 8)
    coef = rng.standard_normal((1, size)) / size ** 0.5
    x = torch.from_numpy(rng.uniform(-1, 1, (200, 20)))
    poly = NetworkPolynomial(MonomialIndex(20, 8), torch.from_numpy(coef))
else:
    index = MonomialIndex(30, 8)
    coef = torch.from_numpy(rng.standard_normal((1, index.size)) / index.size ** 0.5)
    poly, x = NetworkPolynomial(index, coef), torch.from_numpy(rng.uniform(-1, 1, (200, 30)))
if case == "store20":  # the store's block evaluator on an in-memory array (Zarr reads aside)
    call = lambda: evaluate_blocks(coef, 20, 8, x)
elif backend == "auto":
    call = lambda: poly(x)
else:
    from polynet.poly.evaluate import Evaluator
    call = lambda: Evaluator(poly, backend=backend)(x)
with open("/proc/self/clear_refs", "w") as fh:
    fh.write("5")
before, _ = rss()
out = {"case": case, "backend": backend, "rss_before": before}
try:
    t = time.perf_counter(); c = time.process_time()
    y = call()
    out["first_s"], out["first_cpu_s"] = time.perf_counter() - t, time.process_time() - c
    out["first_peak_above"] = rss()[1] - before
    t = time.perf_counter(); c = time.process_time()
    y = call()
    out["second_s"], out["second_cpu_s"] = time.perf_counter() - t, time.process_time() - c
    if net is not None:
        with torch.no_grad():
            ref = net(x)
        out["rel_err"] = float((y - ref).abs().max() / ref.abs().max())
    np.save(os.environ["BENCH_OUT"], y.numpy())
    out["numba_imported"] = "numba" in sys.modules
except MemoryError as exc:
    out["error"] = f"MemoryError: {exc}"[:200]
out["coef_bytes"] = poly.index.size * 8 * poly.n_outputs
print("RESULT " + json.dumps(out))
"""


def run_child(tree: Path, case: str, backend: str, cache: str, cap: float, threads: int):
    with tempfile.NamedTemporaryFile(suffix=".npy", delete=False) as fh:
        values = fh.name
    env = dict(
        os.environ,
        BENCH_DIR=str(tree),
        BENCH_OUT=values,
        NUMBA_CACHE_DIR=cache,
        BENCH_THREADS=str(threads),
        NUMBA_NUM_THREADS=str(threads),
        PYTHONPATH=f"{tree}:{HERE}",
    )
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, case, backend, str(cap)],
        env=env,
        capture_output=True,
        text=True,
        cwd=HERE,
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if not lines:
        return {"case": case, "backend": backend, "error": proc.stderr[-400:]}, None
    import numpy as np

    row = json.loads(lines[-1][7:])
    return row, (np.load(values) if "error" not in row else None)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--old-ref", default="626377f", help="the commit of the old evaluator")
    ap.add_argument("--old-cap", type=float, default=6.0, help="GiB of address space, old big30")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--skip-big", action="store_true")
    ap.add_argument("--only", choices=["mlp784", "boston", "store20", "big30"], default=None)
    args = ap.parse_args()
    import numpy as np

    old = Path(tempfile.mkdtemp(prefix="polynet-old-"))
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", args.old_ref, "polynet"],
        capture_output=True,
        check=True,
    )
    subprocess.run(["tar", "-x", "-C", str(old)], input=archive.stdout, check=True)
    rows = []

    def row(tree, label, case, backend="auto", cache=None, cap=0.0):
        cache = cache or tempfile.mkdtemp(prefix="numba-cache-")
        r, values = run_child(tree, case, backend, cache, cap, args.threads)
        r["engine"] = label
        rows.append(r)
        shown = {k: v for k, v in r.items() if k not in ("case",)}
        print(case, json.dumps(shown), flush=True)
        return r, values, cache

    for case in ["mlp784", "boston", "store20"]:
        if args.only not in (None, case):
            continue
        o, vo, ocache = row(old, "old", case)
        n, vn, _ = row(ROOT, "new", case)
        if case == "boston":
            row(old, "old, warm numba cache", case, cache=ocache)
            _, _, ncache = row(ROOT, "new numba backend", case, backend="numba")
            row(ROOT, "new numba backend, warm numba cache", case, backend="numba", cache=ncache)
            row(ROOT, "new torch backend", case, backend="torch")
        if vo is not None and vn is not None:
            n["max_rel_diff_old_new"] = float(np.abs(vo - vn).max() / np.abs(vo).max())
    if not args.skip_big and args.only in (None, "big30"):
        _, vn, _ = row(ROOT, "new", "big30")
        _, vt, _ = row(ROOT, "new torch backend", "big30", backend="torch")
        row(old, f"old (address space capped at {args.old_cap:g} GiB)", "big30", cap=args.old_cap)
        if vn is not None and vt is not None:
            rows[-3]["max_rel_diff_numba_torch"] = float(np.abs(vn - vt).max() / np.abs(vn).max())
    for case in ["mlp784", "boston", "store20"]:
        pair = {r["engine"]: r for r in rows if r["case"] == case}
        o, n = pair.get("old", {}), pair.get("new", {})
        if "first_s" in o and "first_s" in n:
            n["first_call_speedup"] = o["first_s"] / n["first_s"]
            n["first_cpu_speedup"] = o["first_cpu_s"] / n["first_cpu_s"]
            n["second_call_ratio_old_over_new"] = o["second_s"] / n["second_s"]
            n["second_cpu_ratio_old_over_new"] = o["second_cpu_s"] / n["second_cpu_s"]
            n["peak_ratio_old_over_new"] = o["first_peak_above"] / max(n["first_peak_above"], 1)
    result = {
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "load_avg_end": os.getloadavg(),
            "threads": args.threads,
            "python": sys.version.split()[0],
        },
        "old_ref": args.old_ref,
        "rows": rows,
    }
    RESULTS.mkdir(exist_ok=True)
    name = "bench_evaluate_targets" + (f"_{args.only}" if args.only else "")
    (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=1))
    print(_markdown(result))


def _markdown(result: dict) -> str:
    lines = [
        f"machine {result['machine']}; old = {result['old_ref']}",
        "",
        "| case | engine | first call | first call CPU | peak above RSS | second call (CPU) "
        "| notes |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        if "error" in r:
            lines.append(f"| {r['case']} | {r['engine']} | — | — | — | — | {r['error'][:80]} |")
            continue
        notes = ", ".join(
            f"{k} {v:.3g}"
            for k, v in r.items()
            if any(word in k for word in ("ratio", "speedup", "err", "diff"))
        )
        lines.append(
            f"| {r['case']} | {r['engine']} | {r['first_s']:.3f} s | {r['first_cpu_s']:.3f} s | "
            f"{r['first_peak_above'] / 2**20:.0f} MiB | {r['second_s']:.3f} s "
            f"({r['second_cpu_s']:.3f} s) | {notes} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
