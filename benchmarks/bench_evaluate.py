"""Benchmark: evaluating the Boston polynomial (13 inputs, D = 8, 203,490 terms) at many points.

Engines, timed side by side in one process on the same points (so their ratios hold even on a
loaded machine):

- polynet numba / polynet torch: ``polynet.polynomial.evaluate.Evaluator`` (plan built before the
  timed call; numba compiled by a warm-up call);
- ``NetworkPolynomial.__call__`` as of the branch point (per chunk, a points × terms feature
  matrix times the coefficients), called here through ``monomials`` + matmul so the row keeps
  measuring that method once ``__call__`` delegates to the evaluator;
- scikit-learn ``PolynomialFeatures(8).fit_transform`` + matmul (chunks of 1,000 points);
- multivar_horner ``HornerMultivarPolynomial`` (exponents uint32): construction and
  evaluation timed apart, in a child process under a time cap;
- the network's own float64 forward pass, for scale.

Every engine's values must agree with ``math.fsum`` of the float terms to 1e-12 relative
(max |diff| / max |value|) before its time counts; a mismatch is a FAIL. Engines whose time
at 1,000 points predicts more than ``--cap`` seconds at a larger size are skipped there.

Usage::

    python benchmarks/bench_evaluate.py             # writes results/bench_evaluate.{json,md}
    python benchmarks/bench_evaluate.py --quick     # points 1, 100 only
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))
RESULTS = HERE / "results"
REL_TOL = 1e-12
POINTS = [1, 100, 1000, 10000]
ENGINES = ["numba", "torch", "call", "sklearn", "multivar_horner", "forward"]
LABELS = {
    "numba": "polynet evaluate, numba",
    "torch": "polynet evaluate, torch",
    "call": "NetworkPolynomial.__call__ (branch point)",
    "sklearn": "PolynomialFeatures + matmul",
    "multivar_horner": "multivar_horner (evaluation)",
    "forward": "network forward pass (float64)",
}


def _median_time(fn, repeat: int, cap: float) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
        if sum(times) > cap:
            break
    return statistics.median(times), out


def _call_branch_point(poly, x: torch.Tensor) -> torch.Tensor:
    # NetworkPolynomial.__call__ as it was: chunks of 2^24 feature elements, then matmul.
    step = max(1, (1 << 24) // poly.index.size)
    coef = poly.coefficients.T
    return torch.cat([poly.monomials(x[s : s + step]) @ coef for s in range(0, len(x), step)])


def _sklearn(poly, x: np.ndarray) -> np.ndarray:
    from sklearn.preprocessing import PolynomialFeatures

    pf = PolynomialFeatures(poly.index.degree)
    coef = poly.coefficients.numpy().T
    return np.concatenate(
        [pf.fit_transform(x[s : s + 1000]) @ coef for s in range(0, len(x), 1000)]
    )


def _horner_child(coef, exps, xs, queue) -> None:
    from multivar_horner import HornerMultivarPolynomial

    t = time.perf_counter()
    hp = HornerMultivarPolynomial(coef[:, None], exps.astype(np.uint32), rectify_input=True)
    queue.put(("build", time.perf_counter() - t))
    for x in xs:
        t = time.perf_counter()
        vals = np.array([hp(row) for row in x])
        queue.put(("eval", len(x), time.perf_counter() - t, vals))


def _multivar_horner(poly, xs: list[np.ndarray], cap: float) -> dict:
    try:
        import multivar_horner  # noqa: F401
    except ImportError:
        return {"status": "not installed"}
    queue: mp.Queue = mp.get_context("fork").Queue()
    coef = poly.coefficients.numpy()[0]
    proc = mp.get_context("fork").Process(
        target=_horner_child, args=(coef, np.asarray(poly.exponents), xs, queue)
    )
    proc.start()
    out: dict = {"status": "ok", "eval": {}}
    deadline = time.monotonic() + cap
    expected = 1 + len(xs)
    while expected and time.monotonic() < deadline:
        try:
            msg = queue.get(timeout=max(0.1, deadline - time.monotonic()))
        except Exception:
            break
        expected -= 1
        if msg[0] == "build":
            out["build_s"] = msg[1]
        else:
            out["eval"][msg[1]] = (msg[2], msg[3])
    if proc.is_alive():
        proc.kill()
        out["status"] = f"capped at {cap:.0f} s"
    proc.join()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--cap", type=float, default=60.0, help="seconds per engine and size")
    ap.add_argument("--horner-cap", type=float, default=300.0)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from bench_expand import build_model

    import polynet
    from polynet.polynomial.evaluate import Evaluator, numba_available

    points = [1, 100] if args.quick else POINTS
    net = build_model(13, [128, 64], [4, 2], 0).double()
    poly = polynet.expand(net)
    rng = np.random.default_rng(0)
    xs = {b: rng.normal(size=(b, 13)) for b in points}
    t = time.perf_counter()
    ev_numba = Evaluator(poly, backend="numba") if numba_available() else None
    if ev_numba is not None:
        ev_numba(xs[points[0]])
    numba_setup = time.perf_counter() - t
    ev_torch = Evaluator(poly, backend="torch")

    fns = {
        "numba": (lambda x: ev_numba(x).numpy()) if ev_numba else None,
        "torch": lambda x: ev_torch(x).numpy(),
        "call": lambda x: _call_branch_point(poly, torch.from_numpy(x)).numpy(),
        "sklearn": lambda x: _sklearn(poly, x),
        "forward": lambda x: net(torch.from_numpy(x)).detach().numpy(),
    }
    coef = poly.coefficients.numpy()
    exps = np.asarray(poly.exponents)
    rows: dict = {e: {} for e in ENGINES}
    for b in points:
        x = xs[b]
        # Reference: the float terms summed exactly (math.fsum), on at most 100 points.
        check = min(b, 100)
        mono = np.prod(x[:check, None, :] ** exps[None], axis=2)
        ref = np.array([[math.fsum(c * m) for c in coef] for m in mono])
        scale = np.abs(ref).max()
        for e, fn in fns.items():
            if fn is None:
                rows[e][b] = {"status": "not installed"}
                continue
            prev = [p for p in points if p < b and rows[e].get(p, {}).get("time_s")]
            if prev and rows[e][prev[-1]]["time_s"] * b / prev[-1] > args.cap:
                rows[e][b] = {"status": "skipped (predicted > cap)"}
                continue
            repeat = 5 if b <= 100 else 3
            t, out = _median_time(lambda fn=fn, x=x: fn(x), repeat, args.cap)
            err = float(np.abs(out[:check] - ref).max() / scale)
            ok = err <= (1e-9 if e == "forward" else REL_TOL)
            rows[e][b] = {"status": "ok" if ok else "FAIL", "time_s": t, "rel_err": err}
            print(f"{b:>6} {LABELS[e]:<44} {t:10.4f} s  err {err:.1e}", flush=True)
    hz = _multivar_horner(poly, [xs[b] for b in points if b <= 1000], args.horner_cap)
    rows["multivar_horner"]["build_s"] = hz.get("build_s")
    rows["multivar_horner"]["status"] = hz["status"]
    for b in points:
        if b in hz.get("eval", {}):
            t, vals = hz["eval"][b]
            check = min(b, 100)
            ref = _call_branch_point(poly, torch.from_numpy(xs[b][:check])).numpy()
            err = float(np.abs(vals[:check] - ref[:, 0]).max() / np.abs(ref).max())
            rows["multivar_horner"][b] = {
                "status": "ok" if err <= 1e-9 else "FAIL",
                "time_s": t,
                "rel_err": err,
            }
        else:
            rows["multivar_horner"][b] = {"status": hz["status"]}
    print("multivar_horner", hz.get("build_s"), hz["status"], flush=True)
    result = {
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "load_avg": os.getloadavg(),
            "torch": torch.__version__,
            "numpy": np.__version__,
            "torch_threads": torch.get_num_threads(),
        },
        "n_terms": poly.index.size,
        "numba_setup_s": numba_setup,
        "points": points,
        "rows": {e: {str(k): v for k, v in r.items()} for e, r in rows.items()},
    }
    RESULTS.mkdir(exist_ok=True)
    if not args.quick:
        (RESULTS / "bench_evaluate.json").write_text(json.dumps(result, indent=1))
        (RESULTS / "bench_evaluate.md").write_text(_markdown(result))
    print(_markdown(result))


def _fmt(t: float) -> str:
    return f"{t * 1e3:.3g} ms" if t < 1 else f"{t:.3g} s"


def _markdown(result: dict) -> str:
    pts = result["points"]
    rows = result["rows"]
    head = "| engine | " + " | ".join(f"{b:,} pts" for b in pts) + " |"
    lines = [
        f"Boston polynomial, {result['n_terms']:,} terms; machine {result['machine']}; "
        f"numba plan + compile (first call) {_fmt(result['numba_setup_s'])}.",
        "",
        head,
        "|---" * (len(pts) + 1) + "|",
    ]
    for e in ENGINES:
        cells = []
        for b in pts:
            r = rows[e].get(str(b), {})
            cells.append(
                _fmt(r["time_s"]) + ("" if r["status"] == "ok" else " FAIL")
                if "time_s" in r
                else r.get("status", "—")
            )
        label = LABELS[e]
        if e == "multivar_horner" and rows[e].get("build_s") is not None:
            label += f" (construction {_fmt(rows[e]['build_s'])})"
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines += ["", "Speed-up of polynet numba (time of the other engine / numba time):", ""]
    lines += [head, "|---" * (len(pts) + 1) + "|"]
    base = rows["numba"]
    for e in ENGINES[1:]:
        cells = []
        for b in pts:
            r, n = rows[e].get(str(b), {}), base.get(str(b), {})
            ok = "time_s" in r and "time_s" in n
            cells.append(f"{r['time_s'] / n['time_s']:.3g}×" if ok else "—")
        lines.append(f"| {LABELS[e]} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
