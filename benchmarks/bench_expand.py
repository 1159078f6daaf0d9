"""Benchmark: expanding random SLNNs into one polynomial, polynet against other engines.

Every engine expands the same seeded networks (random weights, SLAF coefficients and running
statistics from a few training-mode passes, then ``.eval()``). Each engine runs in its own
fresh worker process (this script with ``--worker``), so that a time cap can kill it and its
peak memory is its own: the worker resets VmHWM (``/proc/self/clear_refs``) right before the
timed call and reads it after; an idle worker that only imported the libraries and loaded the
model gives the baseline, and the table shows the peak above that baseline.

Engines:

- polynet float: ``polynet.expand(model)``: the first call in a fresh process (it builds the
  cached product maps), warm calls (median), and the product-map setup alone (cold caches).
- polynet exact: ``polynet.expand(model, exact=True)`` (the default exact engine).
- polynet flint / polynet sympy ring: ``exact="flint"`` / ``exact="sympy"``: polynet's sparse
  exact walk, unit by unit, in python-flint's ``fmpq_mpoly`` or SymPy's ``PolyRing`` over QQ.
- SymPy expand / SymEngine expand: the network as one symbolic expression built from the
  lowered float64 stages, every float entered as the exact dyadic rational it is
  (``Rational(p, q)`` from ``Fraction(x)``; no Floats, no nsimplify), then ``expand``.
- python-flint direct: an independent, straightforward ``fmpq_mpoly`` walk written here.

Agreement before time counts: every result becomes a dense coefficient vector over
``poly.exponents``; each must match polynet float to ``REL_TOL`` (max abs difference over max
abs coefficient), and the exact engines must match each other exactly (as rationals). polynet
float is also checked against the network's own float64 forward pass. A mismatch is a FAIL.

Usage::

    python benchmarks/bench_expand.py             # full run, 300 s caps, writes results/
    python benchmarks/bench_expand.py --quick     # small cases, 20 s caps (smoke run)
    python benchmarks/bench_expand.py --cases n2 boston --engines polynet-float flint-direct
    python benchmarks/bench_expand.py --profile boston   # where polynet float spends its time
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import platform
import select
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from math import comb, prod
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"

#: Relative tolerance of every engine against polynet float (max |diff| / max |coef|).
REL_TOL = 1e-12
#: Relative tolerance of polynet float against the network's float64 forward pass.
FORWARD_TOL = 1e-9
FULL_CAP_S = 300.0
QUICK_CAP_S = 20.0
#: Seconds a worker may take to import the libraries and load the model.
STARTUP_S = 120.0
SEED = 0

# name: (n inputs, hidden widths, SLAF degrees)
CASES: dict[str, tuple[int, list[int], list[int]]] = {
    "n2": (2, [8], [2]),
    "n3": (3, [16, 8], [2, 2]),
    "n5": (5, [32, 16], [3, 2]),
    "n8": (8, [64, 32], [2, 2]),
    "n8-deg8": (8, [64, 32], [4, 2]),
    "deep": (4, [16, 16, 16], [2, 2, 2]),
    "boston": (13, [128, 64], [4, 2]),
}
FULL_CASES = ["n2", "n3", "n5", "n8", "deep", "n8-deg8", "boston"]
QUICK_CASES = ["n2", "n3", "quick-deep"]
CASES["quick-deep"] = (3, [8, 8, 8], [2, 2, 2])
HEADLINE = "boston"

ENGINES = [
    "polynet-float",
    "polynet-exact",
    "polynet-modular",
    "polynet-flint",
    "polynet-sympy",
    "sympy-expand",
    "symengine-expand",
    "flint-direct",
]
EXTRA_ENGINES: list[str] = []
LABELS = {
    "polynet-float": "polynet float",
    "polynet-exact": "polynet exact (exact=True)",
    "polynet-modular": "polynet exact='modular'",
    "polynet-flint": "polynet exact='flint' (sparse walk)",
    "polynet-sympy": "polynet exact='sympy' (SymPy ring QQ)",
    "sympy-expand": "SymPy expand (Rational)",
    "symengine-expand": "SymEngine expand (Rational)",
    "flint-direct": "python-flint fmpq_mpoly (direct walk)",
}
EXACT_ENGINES = {
    "polynet-exact",
    "polynet-modular",
    "polynet-flint",
    "polynet-sympy",
    "sympy-expand",
    "symengine-expand",
    "flint-direct",
}
#: Engines that are not polynet's code: the baselines polynet is compared with.
EXTERNAL_ENGINES = {"sympy-expand", "symengine-expand", "flint-direct"}


# -- memory -------------------------------------------------------------------------------
def _status_kib(field: str, pid: int | str = "self") -> int | None:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of process ``pid`` (all its threads)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def _reset_hwm() -> bool:
    """Reset this process's VmHWM to its current RSS (Linux >= 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


# -- the networks -------------------------------------------------------------------------
def build_model(n: int, hidden: list[int], degrees: list[int], seed: int):
    """A random SLNN with non-trivial SLAF coefficients and running statistics, in eval mode."""
    import torch

    import polynet

    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    net = polynet.SLNN(n, hidden, degrees)
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, polynet.SLAF):
                module.weight.normal_(0.0, 0.3, generator=gen)
                module.bias.normal_(0.0, 0.1, generator=gen)
    net.train()
    shift = torch.randn(n, generator=gen)
    scale = 0.5 + torch.rand(n, generator=gen)
    with torch.no_grad():
        for _ in range(8):
            net(torch.randn(512, n, generator=gen) * scale + shift)
    return net.eval()


def _load_case(case_file: str):
    import torch

    import polynet

    spec = json.loads(Path(case_file).read_text())
    net = polynet.SLNN(spec["n"], spec["hidden"], spec["degrees"])
    net.load_state_dict(torch.load(spec["state"], weights_only=True))
    return spec, net.eval()


# -- exact walks outside polynet ------------------------------------------------------------
def _ratio(x: float) -> tuple[int, int]:
    f = Fraction(float(x))
    return f.numerator, f.denominator


def _lowered_arrays(lowered):
    """The lowered stages as numpy: ("affine", W, b) and ("poly", alpha) tuples."""
    from polynet.expansion.network import Affine

    out = []
    for stage in lowered.stages:
        if isinstance(stage, Affine):
            out.append(("affine", stage.weight.cpu().numpy(), stage.bias.cpu().numpy()))
        else:
            out.append(("poly", stage.coefficients.cpu().numpy()))
    return out


def _symbolic(lowered, lib) -> list:
    """The network as expressions in ``lib`` (sympy or symengine), not expanded."""
    xs = [lib.Symbol(f"x{i}") for i in range(lowered.n_inputs)]

    def q(x):
        return lib.Rational(*_ratio(x))

    units = list(xs)
    for stage in _lowered_arrays(lowered):
        if stage[0] == "affine":
            _, w, b = stage
            if w.ndim == 1:
                units = [q(w[i]) * units[i] + q(b[i]) for i in range(len(b))]
            else:
                units = [
                    lib.Add(
                        *[q(w[i, j]) * units[j] for j in range(w.shape[1]) if w[i, j]],
                        q(b[i]),
                    )
                    for i in range(len(b))
                ]
        else:
            alpha = stage[1]
            units = [
                lib.Add(*[q(a) * z**i for i, a in enumerate(alpha[j]) if a])
                for j, z in enumerate(units)
            ]
    return units


def _sympy_terms(expr, n: int) -> dict[tuple[int, ...], Fraction]:
    import sympy

    xs = sympy.symbols(f"x0:{n}")
    poly = sympy.Poly(sympy.sympify(expr), *xs, domain=sympy.QQ)
    return {
        tuple(int(e) for e in m): Fraction(int(c.numerator), int(c.denominator))
        for m, c in poly.terms()
    }


def _flint_direct(lowered) -> list[dict[tuple[int, ...], Fraction]]:
    """Straightforward fmpq_mpoly walk: units as sparse polynomials, Σ α_i z^i by powers."""
    import flint

    n = lowered.n_inputs
    ctx = flint.fmpq_mpoly_ctx.get(tuple(f"x{i}" for i in range(n)), "lex")

    def q(x):
        return flint.fmpq(*_ratio(x))

    units = list(ctx.gens())
    for stage in _lowered_arrays(lowered):
        if stage[0] == "affine":
            _, w, b = stage
            new = []
            for i in range(len(b)):
                if w.ndim == 1:
                    acc = units[i] * q(w[i])
                else:
                    acc = ctx.constant(0)
                    for j in range(w.shape[1]):
                        if w[i, j]:
                            acc = acc + units[j] * q(w[i, j])
                new.append(acc + q(b[i]))
            units = new
        else:
            alpha = stage[1]
            new = []
            for j, z in enumerate(units):
                acc = ctx.constant(0) + q(alpha[j, 0])
                power = z
                for i in range(1, alpha.shape[1]):
                    if i > 1:
                        power = power * z
                    acc = acc + power * q(alpha[j, i])
                new.append(acc)
            units = new
    return units


def _flint_terms(p) -> dict[tuple[int, ...], Fraction]:
    return {tuple(int(v) for v in e): Fraction(int(c.p), int(c.q)) for e, c in p.to_dict().items()}


def _dense(terms: list[dict], n: int, degree: int):
    """Object array (n_outputs, C(n+D, D)) of Fraction over polynet's graded index."""
    import numpy as np

    from polynet.polynomial.index import MonomialIndex

    index = MonomialIndex(n, degree)
    out = np.full((len(terms), index.size), Fraction(0), dtype=object)
    for o, t in enumerate(terms):
        if t:
            exps = np.array(list(t.keys()), dtype=np.int64).reshape(len(t), n)
            out[o, index.position(exps)] = list(t.values())
    return out


# -- the worker ------------------------------------------------------------------------------
def _import_all() -> dict[str, str]:
    """Import every engine's library, so that every worker (and the idle one) has the same base."""
    versions = {}
    import numpy
    import sympy
    import torch

    import polynet  # noqa: F401
    import polynet.expansion.dense  # noqa: F401
    import polynet.expansion.ring_walk  # noqa: F401

    versions.update(torch=torch.__version__, numpy=numpy.__version__, sympy=sympy.__version__)
    try:
        import flint

        versions["python-flint"] = flint.__version__
    except ImportError:
        versions["python-flint"] = None
    try:
        import symengine

        versions["symengine"] = symengine.__version__
    except ImportError:
        versions["symengine"] = None
    versions["torch_threads"] = torch.get_num_threads()
    return versions


def _timed(fn):
    """(value, wall seconds, CPU seconds of all threads, VmHWM in KiB) of one call."""
    _reset_hwm()
    cpu = time.process_time()
    start = time.perf_counter()
    value = fn()
    seconds = time.perf_counter() - start
    return value, seconds, time.process_time() - cpu, _status_kib("VmHWM")


class _SetupTimer:
    """Time spent building product maps (and their device copies) during one call.

    Wraps ``MonomialIndex.product_map`` and the walk's map builders in
    :mod:`polynet.expansion.dense` (those that exist), counting only the outermost call, so the
    first call in a fresh process reports its own setup share without being rerun.
    """

    BUILDERS = ("_device_map", "fold_blocks")

    def __init__(self) -> None:
        self.seconds = 0.0
        self.numpy_seconds = 0.0
        self.maps: list[tuple[int, int, int]] = []
        self._depth = 0
        self._patched: list[tuple[object, str, object]] = []

    def _wrap(self, fn, is_product_map: bool):
        def timed(*args, **kwargs):
            self._depth += 1
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                elapsed = time.perf_counter() - start
                self._depth -= 1
                if self._depth == 0:
                    self.seconds += elapsed
                if is_product_map:
                    self.numpy_seconds += elapsed
                    self.maps.append((args[0].n_vars, int(args[1]), int(args[2])))

        return timed

    def __enter__(self) -> _SetupTimer:
        from polynet.expansion import dense
        from polynet.polynomial.index import MonomialIndex

        targets = [(MonomialIndex, "product_map", True)]
        targets += [(dense, name, False) for name in self.BUILDERS if hasattr(dense, name)]
        for owner, name, is_map in targets:
            original = getattr(owner, name)
            self._patched.append((owner, name, original))
            setattr(owner, name, self._wrap(original, is_map))
        return self

    def __exit__(self, *exc) -> None:
        for owner, name, original in reversed(self._patched):
            setattr(owner, name, original)

    def record(self) -> dict:
        return {
            "seconds": self.seconds,
            "numpy_product_map_s": self.numpy_seconds,
            "maps": [[a, b] for _, a, b in self.maps],
            "map_entries": sum(comb(n + a, a) * comb(n + b, b) for n, a, b in self.maps),
        }


def _float_engine(net, spec: dict, cap: float) -> tuple[dict, object, object]:
    import numpy as np
    import torch

    import polynet

    # First call in a fresh process: it builds the product maps; their share is the setup.
    with _SetupTimer() as setup:
        poly, first_s, first_cpu, first_hwm = _timed(lambda: polynet.expand(net))
    warm_times, warm_cpu, warm_hwm = [], [], 0
    # At least 3 warm calls; more (up to 25) while they take under a second in all.
    n_warm = max(3, min(25, int(1.0 / max(first_s, 1e-9))))
    if first_s * (n_warm + 2) > cap / 2:
        n_warm = 3
    for _ in range(n_warm):
        again, seconds, cpu, hwm = _timed(lambda: polynet.expand(net))
        warm_times.append(seconds)
        warm_cpu.append(cpu)
        warm_hwm = max(warm_hwm, hwm or 0)
    same = bool(torch.equal(again.coefficients, poly.coefficients))
    # The same warm calls on one thread: on a busy machine a team of OpenMP threads waits for
    # its slowest, descheduled member, so one thread tells the arithmetic cost apart.
    threads = torch.get_num_threads()
    one_thread, one_thread_cpu = [], []
    if threads > 1:
        torch.set_num_threads(1)
        try:
            for _ in range(max(3, n_warm // 2)):
                _, seconds, cpu, _ = _timed(lambda: polynet.expand(net))
                one_thread.append(seconds)
                one_thread_cpu.append(cpu)
        finally:
            torch.set_num_threads(threads)

    # Independent check of the float path: the network's own float64 forward pass.
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(256, spec["n"], generator=gen, dtype=torch.float64)
    with torch.no_grad():
        ref = net.double()(x)
    got = poly(x)
    forward_rel = float((got - ref).abs().max() / ref.abs().max().clamp_min(1e-300))
    result = {
        "seconds": statistics.median(warm_times),
        "first_s": first_s,
        "cpu_s": statistics.median(warm_cpu),
        "first_cpu_s": first_cpu,
        "warm_s": warm_times,
        "warm_min_s": min(warm_times),
        "one_thread_s": statistics.median(one_thread) if one_thread else None,
        "one_thread_cpu_s": statistics.median(one_thread_cpu) if one_thread_cpu else None,
        "first_hwm_kib": first_hwm,
        "hwm_kib": warm_hwm,
        "setup": setup.record(),
        "repeat_identical": same,
        "forward_rel_err": forward_rel,
        "n_terms": poly.n_terms,
        "degree": poly.degree,
    }
    return result, poly.coefficients.cpu().numpy().astype(np.float64), None


def _exact_engine(engine: str, net, lowered, spec: dict):
    import numpy as np

    import polynet

    n, degree = spec["n"], spec["D"]
    info: dict = {}
    if engine.startswith("polynet-"):
        exact = {
            "polynet-exact": True,
            "polynet-modular": "modular",
            "polynet-flint": "flint",
            "polynet-sympy": "sympy",
        }[engine]
        poly, seconds, cpu, hwm = _timed(lambda: polynet.expand(net, exact=exact))
        coefs = poly.exact_coefficients
        info["polynet_engine"] = poly.provenance.engine
    elif engine == "flint-direct":
        units, seconds, cpu, hwm = _timed(lambda: _flint_direct(lowered))
        coefs = _dense([_flint_terms(u) for u in units], n, degree)
    else:
        if engine == "sympy-expand":
            import sympy as lib
        else:
            import symengine as lib

        def build_and_expand():
            start = time.perf_counter()
            exprs = _symbolic(lowered, lib)
            info["build_s"] = time.perf_counter() - start
            return [lib.expand(e) for e in exprs]

        expanded, seconds, cpu, hwm = _timed(build_and_expand)
        info["expand_s"] = seconds - info["build_s"]
        coefs = _dense([_sympy_terms(e, n) for e in expanded], n, degree)
    floats = np.vectorize(float, otypes=[np.float64])(coefs).reshape(coefs.shape)
    return {"seconds": seconds, "cpu_s": cpu, "hwm_kib": hwm, **info}, floats, coefs


def worker(engine: str, case_file: str, out_dir: str, cap: float) -> None:
    import numpy as np

    versions = _import_all()
    spec, net = _load_case(case_file)
    from polynet.expansion.network import lower

    lowered = lower(net)
    print("READY", flush=True)
    out = Path(out_dir)
    result: dict = {
        "engine": engine,
        "baseline_hwm_kib": _status_kib("VmHWM"),
        **versions,
    }
    if engine == "idle":
        result["seconds"] = 0.0
    elif engine == "polynet-float":
        info, floats, _ = _float_engine(net, spec, cap)
        result.update(info)
        np.save(out / "float.npy", floats)
    elif engine in EXACT_ENGINES:
        info, floats, exact = _exact_engine(engine, net, lowered, spec)
        result.update(info)
        np.save(out / "float.npy", floats)
        with open(out / "exact.pkl", "wb") as fh:
            pickle.dump(exact, fh, protocol=pickle.HIGHEST_PROTOCOL)
    else:
        raise SystemExit(f"unknown engine {engine!r}")
    (out / "result.json").write_text(json.dumps(result))
    print("DONE", flush=True)


# -- the driver -----------------------------------------------------------------------------
def run_worker(engine: str, case_file: Path, work: Path, cap: float, mem_cap_kib: int) -> dict:
    """Run one engine in a fresh process under a time cap; returns its result record."""
    out = work / engine
    out.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", engine]
    cmd += ["--case-file", str(case_file), "--worker-out", str(out), "--cap", str(cap)]
    err_path = out / "stderr.txt"
    with open(err_path, "w") as err:
        proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=err, text=True, start_new_session=True
        )
        deadline = time.monotonic() + STARTUP_S
        ready_at = None
        status, seen_hwm = None, 0
        cpu_ready = cpu_now = None
        buffer = ""
        while True:
            now = time.monotonic()
            if now > deadline:
                status = "timeout" if ready_at is not None else "error"
                break
            readable, _, _ = select.select([proc.stdout], [], [], 0.25)
            if readable:
                chunk = os.read(proc.stdout.fileno(), 4096).decode()
                if not chunk:  # the worker exited
                    break
                buffer += chunk
                if ready_at is None and "READY" in buffer:
                    ready_at = time.monotonic()
                    deadline = ready_at + cap
                    cpu_ready = _cpu_seconds(proc.pid)
            if ready_at is not None:
                hwm = _status_kib("VmHWM", proc.pid) or 0
                seen_hwm = max(seen_hwm, hwm)
                cpu_now = _cpu_seconds(proc.pid) or cpu_now
                if (_status_kib("VmRSS", proc.pid) or 0) > mem_cap_kib:
                    status = "memout"
                    break
            if proc.poll() is not None and not readable:
                break
        elapsed = time.monotonic() - ready_at if ready_at is not None else None
        if status is not None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    record: dict = {"engine": engine}
    if status is None:
        result_file = out / "result.json"
        if proc.returncode == 0 and result_file.exists():
            record.update(json.loads(result_file.read_text()))
            record["status"] = "ok"
        else:
            tail = err_path.read_text().strip().splitlines()
            record["status"] = "error"
            record["message"] = tail[-1] if tail else f"exit code {proc.returncode}"
    else:
        record["status"] = status
        record["seconds_at_kill"] = elapsed
        record["hwm_kib"] = seen_hwm
        if cpu_ready is not None and cpu_now is not None:
            record["cpu_s_at_kill"] = cpu_now - cpu_ready
        if status == "error":
            record["message"] = f"the worker did not start within {STARTUP_S:.0f} s"
    return record


def judge(records: dict[str, dict], work: Path) -> None:
    """Compare results with polynet float (REL_TOL) and the exact engines with each other."""
    import numpy as np

    ref = records.get("polynet-float", {})
    ref_coefs = None
    if ref.get("status") == "ok":
        ref_coefs = np.load(work / "polynet-float" / "float.npy")
        if ref.get("forward_rel_err", 1.0) > FORWARD_TOL or not ref.get("repeat_identical"):
            ref["status"] = "FAIL"
            ref["message"] = (
                f"polynet float differs from the forward pass by {ref['forward_rel_err']:.2e} "
                f"relative (tolerance {FORWARD_TOL:g}) or repeated calls differ"
            )
    exact = {}
    for name, rec in records.items():
        if name == "polynet-float" or rec.get("status") != "ok":
            continue
        floats = np.load(work / name / "float.npy")
        if ref_coefs is not None:
            if floats.shape != ref_coefs.shape:
                rec["status"] = "FAIL"
                rec["message"] = f"shape {floats.shape} against {ref_coefs.shape}"
                continue
            rel = float(np.abs(floats - ref_coefs).max() / max(np.abs(ref_coefs).max(), 1e-300))
            rec["rel_diff_vs_float"] = rel
            if not rel <= REL_TOL:
                rec["status"] = "FAIL"
                rec["message"] = f"differs from polynet float by {rel:.2e} relative"
                continue
        if name in EXACT_ENGINES:
            with open(work / name / "exact.pkl", "rb") as fh:
                exact[name] = pickle.load(fh)
    # Exact engines must be identical; the largest group of identical results wins.
    groups: list[list[str]] = []
    for name, coefs in exact.items():
        for group in groups:
            other = exact[group[0]]
            if other.shape == coefs.shape and bool((other == coefs).all()):
                group.append(name)
                break
        else:
            groups.append([name])
    groups.sort(key=len, reverse=True)
    for name in exact:
        records[name]["exact_agrees_with"] = [g for g in groups[0] if g != name]
    if len(groups) > 1:
        majority = len(groups[0]) > len(groups[1])
        for group in groups[1:] if majority else groups:
            for name in group:
                records[name]["status"] = "FAIL"
                records[name]["message"] = (
                    f"exact coefficients differ from {', '.join(groups[0])}"
                    if majority
                    else "exact engines disagree: " + " / ".join(", ".join(g) for g in groups)
                )


def _ratios(records: dict[str, dict], cap: float) -> None:
    float_rec = records.get("polynet-float", {})
    t_float = float_rec.get("seconds") if float_rec.get("status") == "ok" else None
    ext = [
        r["seconds"] for n, r in records.items() if n in EXTERNAL_ENGINES and r["status"] == "ok"
    ]
    best_ext = min(ext) if ext else None
    best_name = None
    if best_ext is not None:
        best_name = next(
            n
            for n, r in records.items()
            if n in EXTERNAL_ENGINES and r["status"] == "ok" and r["seconds"] == best_ext
        )
    for rec in records.values():
        t = rec.get("seconds") if rec["status"] == "ok" else None
        lower_bound = rec["status"] == "timeout"
        t_eff = t if t is not None else (cap if lower_bound else None)
        rec["vs_float"] = t_eff / t_float if t_eff is not None and t_float else None
        rec["vs_best_external"] = t_eff / best_ext if t_eff is not None and best_ext else None
        rec["ratio_is_lower_bound"] = lower_bound
    records["_summary"] = {
        "t_float_warm": t_float,
        "best_external": best_name,
        "t_ext": best_ext,
    }


def _mib(kib: float | None) -> float | None:
    return None if kib is None else kib / 1024.0


def _fmt_s(rec: dict, cap: float) -> str:
    if rec["status"] == "timeout":
        return f"> {cap:.0f}"
    t = rec.get("seconds")
    if t is None or rec["status"] not in ("ok", "FAIL"):
        return "—"
    return f"{t * 1e3:.1f} ms" if t < 1 else f"{t:.2f} s"


def _fmt_cpu(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    return f"{seconds * 1e3:.0f} ms" if seconds < 1 else f"{seconds:.1f} s"


def _fmt_ratio(r: float | None, lower: bool) -> str:
    if r is None:
        return "—"
    text = f"{r:.3g}×" if r >= 0.01 else f"1/{1 / r:.3g}"
    return ("> " if lower else "") + text


def table_rows(records: dict[str, dict], baseline_kib: int, cap: float) -> list[list[str]]:
    """Rows: engine, status, time, peak above idle, absolute peak, ratios, agreement."""
    rows = []
    for name, rec in records.items():
        if name.startswith("_"):
            continue
        peak = rec.get("hwm_kib")
        above = None if peak is None else max(0, peak - baseline_kib)
        agree = "—"
        if "rel_diff_vs_float" in rec:
            agree = f"{rec['rel_diff_vs_float']:.1e}"
            if name in EXACT_ENGINES and rec.get("exact_agrees_with"):
                agree += f", exact = {len(rec['exact_agrees_with'])} others"
        elif name == "polynet-float" and "forward_rel_err" in rec:
            agree = f"fwd {rec['forward_rel_err']:.1e}"
        status = rec["status"]
        if status == "FAIL":
            status = "**FAIL**"
        label = LABELS[name]
        if name == "polynet-float":
            label += f", warm (median of {len(rec.get('warm_s', []))})"
        if name == "polynet-exact" and rec.get("polynet_engine"):
            label = f"polynet exact (exact=True → {rec['polynet_engine']})"
        rows.append(
            [
                label,
                status,
                _fmt_s(rec, cap),
                _fmt_cpu(rec.get("cpu_s", rec.get("cpu_s_at_kill"))),
                "—" if above is None else f"{above / 1024:.1f}",
                "—" if peak is None else f"{peak / 1024:.0f}",
                _fmt_ratio(rec.get("vs_float"), rec.get("ratio_is_lower_bound", False)),
                _fmt_ratio(rec.get("vs_best_external"), rec.get("ratio_is_lower_bound", False)),
                agree,
            ]
        )
        if name == "polynet-float" and rec["status"] in ("ok", "FAIL"):
            t_float = rec["seconds"]
            first_peak = rec.get("first_hwm_kib")
            t_ext = records["_summary"]["t_ext"]
            rows.append(
                [
                    "polynet float, first call (fresh process)",
                    rec["status"],
                    _fmt_s({"status": "ok", "seconds": rec["first_s"]}, cap),
                    _fmt_cpu(rec.get("first_cpu_s")),
                    "—"
                    if first_peak is None
                    else f"{max(0, first_peak - baseline_kib) / 1024:.1f}",
                    "—" if first_peak is None else f"{first_peak / 1024:.0f}",
                    _fmt_ratio(rec["first_s"] / t_float, False),
                    _fmt_ratio(rec["first_s"] / t_ext if t_ext else None, False),
                    "",
                ]
            )
            if rec.get("one_thread_s") is not None:
                rows.append(
                    [
                        "polynet float, warm, 1 thread",
                        rec["status"],
                        _fmt_s({"status": "ok", "seconds": rec["one_thread_s"]}, cap),
                        _fmt_cpu(rec.get("one_thread_cpu_s")),
                        "—",
                        "—",
                        _fmt_ratio(rec["one_thread_s"] / t_float, False),
                        _fmt_ratio(rec["one_thread_s"] / t_ext if t_ext else None, False),
                        "",
                    ]
                )
            setup = rec.get("setup", {})
            if "seconds" in setup:
                rows.append(
                    [
                        f"polynet setup in first call: {len(setup['maps'])} product maps",
                        "ok",
                        _fmt_s({"status": "ok", "seconds": setup["seconds"]}, cap),
                        "—",
                        "—",
                        "—",
                        _fmt_ratio(setup["seconds"] / t_float, False),
                        "—",
                        "",
                    ]
                )
        if rec.get("message"):
            rows[-1][-1] = (rows[-1][-1] + " " + rec["message"]).strip()
    return rows


HEADER = [
    "engine",
    "status",
    "time",
    "CPU time",
    "peak MiB above idle",
    "peak RSS MiB",
    "× polynet float",
    "× best external exact",
    "agreement",
]


def _print_table(title: str, rows: list[list[str]]) -> None:
    widths = [max(len(HEADER[i]), *(len(r[i]) for r in rows)) for i in range(len(HEADER))]
    widths[-1] = min(widths[-1], 60)
    print(f"\n{title}")
    print("  ".join(h.ljust(w) for h, w in zip(HEADER, widths)))
    for r in rows:
        print(
            "  ".join(
                c.ljust(w) if i < len(r) - 1 else c for i, (c, w) in enumerate(zip(r, widths))
            )
        )


def _markdown_table(rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    for r in rows:
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in r) + " |")
    return "\n".join(lines)


def machine_info() -> dict:
    info: dict = {"platform": platform.platform(), "python": platform.python_version()}
    try:
        with open("/proc/cpuinfo") as fh:
            models = [ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")]
        info["cpu"] = models[0] if models else platform.processor()
    except OSError:
        info["cpu"] = platform.processor()
    info["cores"] = os.cpu_count()
    info["cores_usable"] = len(os.sched_getaffinity(0))
    total = _meminfo_kib("MemTotal")
    info["ram_gib"] = None if total is None else round(total / 2**20, 1)
    info["omp_num_threads"] = os.environ.get("OMP_NUM_THREADS")
    try:
        commit = subprocess.run(
            ["git", "-C", str(HERE), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        info["git_commit"] = commit
    except (OSError, subprocess.CalledProcessError):
        info["git_commit"] = None
    try:
        changed = subprocess.run(
            ["git", "-C", str(HERE), "status", "--porcelain", "--", "../polynet"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split("\n")
        info["polynet_uncommitted"] = [line[3:] for line in changed if line.strip()]
    except (OSError, subprocess.CalledProcessError):
        info["polynet_uncommitted"] = None
    return info


def _meminfo_kib(field: str) -> int | None:
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def goals(case_records: dict[str, dict]) -> list[dict]:
    """The headline goals, by wall clock and by CPU time: goal, measured, met."""
    rec = case_records
    f = rec.get("polynet-float", {})
    ok_f = f.get("status") == "ok"
    base = rec.get("_baseline_kib", 0)
    flint = rec.get("flint-direct", {})
    ok_flint = flint.get("status") == "ok"
    out = []

    def speed_goal(goal, target, t_wall, t_cpu):
        row = {"goal": goal}
        for key, mine, theirs in (
            ("wall", t_wall, flint.get("seconds")),
            ("cpu", t_cpu, flint.get("cpu_s")),
        ):
            if mine and theirs and ok_flint:
                row[key] = f"{theirs / mine:.3g}×"
                row[f"{key}_met"] = theirs / mine >= target
        out.append(row)

    if ok_f:
        speed_goal(
            "float ≥ 500× faster than python-flint (warm)",
            500,
            f["seconds"],
            f["cpu_s"],
        )
        speed_goal(
            "float ≥ 500× faster than python-flint (first call)",
            500,
            f["first_s"],
            f.get("first_cpu_s"),
        )
        if f.get("one_thread_s"):
            speed_goal(
                "float ≥ 500× faster than python-flint (warm, 1 thread)",
                500,
                f["one_thread_s"],
                f["one_thread_cpu_s"],
            )
    setup = f.get("setup", {}).get("seconds")
    if setup is not None:
        out.append({"goal": "setup ≤ 1 s", "wall": f"{setup:.3f} s", "wall_met": setup <= 1.0})
    if ok_f:
        peak = max(f.get("first_hwm_kib") or 0, f.get("hwm_kib") or 0) - base
        out.append(
            {
                "goal": "float peak ≤ 1 GiB (above idle)",
                "wall": f"{peak / 1024:.0f} MiB",
                "wall_met": peak <= 2**20,
            }
        )
    for name in ("polynet-exact", "polynet-modular"):
        e = rec.get(name, {})
        label = LABELS[name]
        if e.get("status") == "ok":
            speed_goal(
                f"{label} ≥ 2× faster than python-flint",
                2,
                e["seconds"],
                e.get("cpu_s"),
            )
            peak = (e.get("hwm_kib") or 0) - base
            out.append(
                {
                    "goal": f"{label} peak ≤ 1 GiB (above idle)",
                    "wall": f"{peak / 1024:.0f} MiB",
                    "wall_met": peak <= 2**20,
                }
            )
        elif e:
            out.append({"goal": f"{label} ≥ 2× faster than python-flint", "wall": e["status"]})
            out[-1]["wall_met"] = False
    return out


def _goal_lines(checks: list[dict]) -> list[str]:
    def cell(row, key):
        if key not in row:
            return "—"
        met = row.get(f"{key}_met")
        return f"{row[key]} ({'met' if met else '**missed**'})"

    lines = ["| goal | wall clock | CPU time |", "|---|---|---|"]
    for row in checks:
        lines.append(f"| {row['goal']} | {cell(row, 'wall')} | {cell(row, 'cpu')} |")
    return lines


def profile(case: str) -> None:
    """cProfile and torch.profiler of warm polynet float calls on ``case``."""
    import cProfile
    import pstats

    import torch

    import polynet

    n, hidden, degrees = CASES[case]
    net = build_model(n, hidden, degrees, SEED)
    polynet.expand(net)  # warm the caches
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(3):
        polynet.expand(net)
    prof.disable()
    print(f"cProfile, 3 warm calls of polynet.expand on {case} (tottime):")
    pstats.Stats(prof).sort_stats("tottime").print_stats(15)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as tp:
        for _ in range(3):
            polynet.expand(net)
    print(tp.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small cases, 20 s caps")
    parser.add_argument("--cases", nargs="+", choices=sorted(CASES), help="cases to run")
    parser.add_argument("--engines", nargs="+", choices=ENGINES + EXTRA_ENGINES)
    parser.add_argument("--cap", type=float, help="seconds per engine (default 300; quick 20)")
    parser.add_argument("--out", type=Path, help="results JSON (the .md goes beside it)")
    parser.add_argument("--profile", choices=sorted(CASES), help="profile polynet float only")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--case-file", help=argparse.SUPPRESS)
    parser.add_argument("--worker-out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args.worker, args.case_file, args.worker_out, args.cap)
        return
    if args.profile:
        profile(args.profile)
        return

    cap = args.cap or (QUICK_CAP_S if args.quick else FULL_CAP_S)
    cases = args.cases or (QUICK_CASES if args.quick else FULL_CASES)
    engines = args.engines or ENGINES
    if "polynet-float" not in engines:
        engines = [
            "polynet-float",
            *engines,
        ]  # the reference every engine is checked against
    if args.out is None:
        default = "bench_expand_quick.json" if args.quick else "bench_expand.json"
        base = Path(tempfile.gettempdir()) if args.quick else RESULTS
        args.out = base / default
    mem_cap_kib = int((_meminfo_kib("MemTotal") or 2**24) * 0.8)

    import torch

    machine = machine_info()
    report: dict = {
        "benchmark": "bench_expand",
        "machine": machine,
        "cap_s": cap,
        "rel_tol": REL_TOL,
        "seed": SEED,
        "cases": {},
    }
    md: list[str] = []
    with tempfile.TemporaryDirectory(prefix="bench_expand_") as tmp:
        for case in cases:
            n, hidden, degrees = CASES[case]
            D = prod(degrees)
            work = Path(tmp) / case
            work.mkdir()
            net = build_model(n, hidden, degrees, SEED)
            torch.save(net.state_dict(), work / "state.pt")
            spec = {"n": n, "hidden": hidden, "degrees": degrees, "D": D}
            (work / "case.json").write_text(json.dumps({**spec, "state": str(work / "state.pt")}))
            title = (
                f"{case}: n={n}, hidden {hidden}, degrees {degrees}: D={D}, "
                f"{comb(n + D, D):,} monomials"
            )
            print(f"\n== {title}", flush=True)
            load_before = os.getloadavg()
            idle = run_worker("idle", work / "case.json", work, cap, mem_cap_kib)
            baseline = idle.get("baseline_hwm_kib") or 0
            versions = {k: idle.get(k) for k in ("torch", "numpy", "sympy", "symengine")}
            versions.update({"python-flint": idle.get("python-flint")})
            machine.setdefault("versions", versions)
            machine.setdefault("torch_threads", idle.get("torch_threads"))
            records: dict[str, dict] = {}
            for engine in engines:
                print(f"  {engine} ...", end=" ", flush=True)
                rec = run_worker(engine, work / "case.json", work, cap, mem_cap_kib)
                records[engine] = rec
                shown = rec.get("seconds", rec.get("seconds_at_kill"))
                print(rec["status"], "" if shown is None else f"{shown:.3f} s", flush=True)
            judge(records, work)
            _ratios(records, cap)
            rows = table_rows(records, baseline, cap)
            _print_table(title, rows)
            records["_baseline_kib"] = baseline
            report["cases"][case] = {
                **spec,
                "monomials": comb(n + D, D),
                "idle_baseline_mib": _mib(baseline),
                "engines": {k: v for k, v in records.items() if not k.startswith("_")},
                "summary": records["_summary"],
                "loadavg_before": load_before,
                "loadavg_after": os.getloadavg(),
            }
            load = f"{load_before[0]:.1f} before, {os.getloadavg()[0]:.1f} after"
            md.append(f"### {title}\n\nLoad average (1 min): {load}.\n\n{_markdown_table(rows)}\n")
            if case == HEADLINE:
                checks = goals(records)
                report["goals"] = checks
                lines = _goal_lines(checks)
                md.append(f"### Goals at the headline size ({case})\n\n" + "\n".join(lines) + "\n")
                print("\nGoals:")
                for line in lines[2:]:
                    print("  " + line.replace("**", ""))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, default=str) + "\n")
    versions = machine.get("versions", {})
    head = (
        f"Machine: {machine['cpu']}, {machine['cores_usable']} cores, {machine['ram_gib']} GiB "
        f"RAM; torch {versions.get('torch')} ({machine.get('torch_threads')} threads), numpy "
        f"{versions.get('numpy')}, sympy {versions.get('sympy')}, symengine "
        f"{versions.get('symengine')}, python-flint {versions.get('python-flint')}; polynet "
        f"{machine.get('git_commit')}. Cap {cap:.0f} s per engine; times are wall clock; peak "
        "memory is VmHWM of the engine's own worker process, above an idle worker that "
        "imported the same libraries and loaded the model. Ratios are time over the reference "
        "time; '> ' marks a lower bound from a time-out. Agreement: max |diff| / max |coef| "
        f"against polynet float (tolerance {REL_TOL:g}) and the number of other exact engines "
        "with identical rationals.\n"
    )
    args.out.with_suffix(".md").write_text(head + "\n" + "\n".join(md))
    print(f"\nwrote {args.out} and {args.out.with_suffix('.md')}")


if __name__ == "__main__":
    main()
