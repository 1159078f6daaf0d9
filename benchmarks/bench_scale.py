"""bench_scale: expansions past the old memory ceiling, in memory and into a Zarr store.

SLNNs with hidden (128, 64) and SLAF degrees (4, 2) (D = 8, the paper's Boston shape) on
n = 13, 20, 24, 30, 40 inputs, each case in a fresh worker process (its peak RSS is
``resource.getrusage`` maxrss, which sees torch's allocations; the idle worker's RSS after
imports is given apart). Per case: polynet's estimate before the work (memory, time), the
measured time and peak, the result size, and a check against the network's float64 forward
pass at a few points (it must agree before the time counts). python-flint's direct
``fmpq_mpoly`` walk (bench_expand's) runs where it finishes within its cap (n = 13).

    python benchmarks/bench_scale.py                      # all cases, writes results/
    python benchmarks/bench_scale.py --cases 13 20 --no-flint
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from math import comb
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

HIDDEN, DEGREES, SEED = [128, 64], [4, 2], 0
#: Cases run into a store rather than memory.
STORE_CASES = {40}
CHECK_POINTS = {13: 50, 20: 20, 24: 10, 30: 4, 40: 2}
REL_TOL = 1e-9


def _rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def worker(n: int, mode: str, out: str) -> None:
    import torch
    from bench_expand import build_model

    import polynet
    from polynet.expansion.dispatch import estimate

    net = build_model(n, HIDDEN, DEGREES, SEED)
    est = estimate(net)
    idle = _rss_gib()
    record = {
        "n": n,
        "mode": mode,
        "monomials": comb(n + 8, 8),
        "result_gib": comb(n + 8, 8) * 8 / 2**30,
        "estimate_gib": (est.store_peak_bytes if mode == "store" else est.peak_bytes) / 2**30,
        "estimate_s": est.seconds,
        "idle_rss_gib": idle,
    }
    if mode == "flint":
        from bench_expand import _flint_direct

        from polynet.expansion.network import lower

        lowered = lower(net)
        start = time.perf_counter()
        _flint_direct(lowered)
        record["seconds"] = time.perf_counter() - start
        record["peak_rss_gib"] = _rss_gib()
        Path(out).write_text(json.dumps(record))
        return
    store = None
    if mode == "store":
        store = Path(tempfile.mkdtemp(dir=os.environ.get("BENCH_STORE_DIR"))) / "coeffs.zarr"
    start = time.perf_counter()
    poly = polynet.expand(net, store=store)
    record["seconds"] = time.perf_counter() - start
    record["peak_rss_gib"] = _rss_gib()
    if mode == "memory" and n <= 24:  # a second call: the maps are cached
        start = time.perf_counter()
        polynet.expand(net)
        record["warm_seconds"] = time.perf_counter() - start
    g = torch.Generator().manual_seed(1)
    x = torch.randn(CHECK_POINTS.get(n, 2), n, generator=g, dtype=torch.float64) * 0.5
    start = time.perf_counter()
    with torch.no_grad():
        expected = net.double()(x)
    if mode == "memory" and n >= 30:
        # NetworkPolynomial(x) builds the exponent table (11.7 GB at n = 30): blocks instead.
        from polynet.polynomial.store import evaluate_blocks

        coef = poly.coefficients.numpy()
        got = evaluate_blocks(coef, n, poly.index.degree, x)
    else:
        got = poly(x)
    record["check_s"] = time.perf_counter() - start
    record["rel_error"] = float((got - expected).abs().max() / expected.abs().max())
    record["ok"] = record["rel_error"] < REL_TOL
    if store is not None:
        record["blocks"] = poly.info.get("blocks")
        record["store_gib"] = sum(f.stat().st_size for f in store.rglob("*") if f.is_file()) / 2**30
    Path(out).write_text(json.dumps(record))


def run_case(n: int, mode: str, cap: float) -> dict:
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as fh:
        out = fh.name
    cmd = [sys.executable, __file__, "--worker", str(n), mode, out]
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    try:
        proc = subprocess.run(cmd, timeout=cap, env=env, capture_output=True, text=True)
    except subprocess.TimeoutExpired:
        return {"n": n, "mode": mode, "status": f"timeout > {cap:.0f} s"}
    if proc.returncode != 0:
        return {"n": n, "mode": mode, "status": "error", "stderr": proc.stderr[-2000:]}
    record = json.loads(Path(out).read_text())
    record["status"] = "ok" if record.get("ok", True) else "FAIL"
    return record


def _table(records: list[dict]) -> str:
    lines = [
        "| n | C(n+8, 8) | result | mode | estimate | time (warm) | peak RSS (idle) | check |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in records:
        if r.get("status") not in ("ok", "FAIL"):
            lines.append(f"| {r['n']} | | | {r['mode']} | | {r['status']} | | |")
            continue
        size = r["result_gib"]
        size_s = f"{size * 1024:.0f} MiB" if size < 1 else f"{size:.2f} GiB"
        est = f"{r['estimate_gib']:.1f} GiB, {r['estimate_s']:.0f} s"
        check = f"{r['rel_error']:.1e}" if "rel_error" in r else ""
        warm = f" ({r['warm_seconds']:.2f} s)" if "warm_seconds" in r else ""
        lines.append(
            f"| {r['n']} | {r['monomials']:,} | {size_s} | {r['mode']} | {est} | "
            f"{r['seconds']:.2f} s{warm} | {r['peak_rss_gib']:.2f} GiB ({r['idle_rss_gib']:.2f}) | "
            f"{check} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", nargs=3, metavar=("N", "MODE", "OUT"))
    parser.add_argument("--cases", type=int, nargs="+", default=[13, 20, 24, 30, 40])
    parser.add_argument("--cap", type=float, default=1800.0, help="seconds per case")
    parser.add_argument("--flint-cap", type=float, default=120.0)
    parser.add_argument("--no-flint", action="store_true")
    parser.add_argument("--out", default=str(HERE / "results"))
    args = parser.parse_args()
    if args.worker:
        worker(int(args.worker[0]), args.worker[1], args.worker[2])
        return
    records = []
    for n in args.cases:
        mode = "store" if n in STORE_CASES else "memory"
        records.append(run_case(n, mode, args.cap))
        print(json.dumps(records[-1]), flush=True)
        if n == 13 and not args.no_flint:
            records.append(run_case(n, "flint", args.flint_cap))
            print(json.dumps(records[-1]), flush=True)
    import torch

    machine = {
        "platform": platform.platform(),
        "processor": platform.processor(),
        "cpus": os.cpu_count(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS", "1"),
        "load_average": os.getloadavg(),
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    payload = {"benchmark": "bench_scale", "machine": machine, "cases": records}
    (out / "bench_scale.json").write_text(json.dumps(payload, indent=1))
    (out / "bench_scale.md").write_text(
        "# bench_scale\n\nhidden (128, 64), degrees (4, 2), D = 8; one torch thread; load "
        f"average {machine['load_average'][0]:.1f} at the end.\n\n" + _table(records) + "\n"
    )
    print(_table(records))


if __name__ == "__main__":
    main()
