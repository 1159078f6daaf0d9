"""Benchmark: the exact path's I/O and expansion, before and after, measured in one run.

On the paper's Boston network (bench_expand's ``boston`` case: 13 inputs, hidden [128, 64],
SLAF degrees [4, 2], D = 8, 203,490 monomials, seeded random weights):

- save + load of the exact polynomial: format version 1 (numerators as decimal strings in a
  compressed ``.npz``, what polynet wrote before) against version 2 (one block of
  fixed-width two's-complement bytes, stored uncompressed);
- ``to_sympy()``: before (``sympy.Rational`` per coefficient, converted by ``Poly.from_dict``)
  against after (QQ elements, the dense recursive representation built level by level);
- exact expansion: ``expand(exact="modular")`` now (the row python-flint's ``fmpq_mpoly``
  direct walk, bench_expand's ``flint-direct``, is compared with), and ``expand_modular``
  alone, now against the engine as it was at ``--before`` (loaded from git), on the same
  lowered network, interleaved ``--repeat`` times (medians).

Every result is checked before its time counts: loaded polynomials equal the saved one,
the SymPy polynomials are equal, and the expansions are identical rationals (flint's densified
over polynet's index). Everything runs in this one process, one after the other, so the
ratios compare runs under the same load.

Usage::

    python benchmarks/bench_exact_io.py            # writes results/bench_exact_io.{json,md}
    PYTHONPATH=. python benchmarks/bench_exact_io.py  # from a worktree: its polynet, not main's
    python benchmarks/bench_exact_io.py --no-flint # skip the slow python-flint walk
    python benchmarks/bench_exact_io.py --threads 2
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
sys.path.insert(0, str(HERE))

from bench_expand import (  # noqa: E402
    CASES,
    SEED,
    _dense,
    _flint_direct,
    _flint_terms,
    build_model,
    machine_info,
)

#: The commit whose modular engine is the "before" row (the last before the rewrite).
BEFORE = "c03d1d1"


def _median(fn, repeat: int) -> tuple[object, float]:
    times, value = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        value = fn()
        times.append(time.perf_counter() - start)
    return value, statistics.median(times)


def _save_v1(poly, path: Path) -> None:
    """The version-1 writer, as polynet had it: decimal strings, compressed npz."""
    import numpy as np

    meta = {
        "format": "polynet.NetworkPolynomial",
        "version": 1,
        "n_vars": poly.n_vars,
        "index_degree": poly.index.degree,
        "degree_bound": poly.degree_bound,
        "variables": list(poly.variables),
        "n_network_parameters": poly.n_network_parameters,
        "info": dict(poly.info),
        "exact_denominator": str(poly._exact.denominator),
    }
    strings = [[str(v) for v in row] for row in poly._exact.numerators]
    np.savez_compressed(
        path,
        meta=np.array(json.dumps(meta)),
        coefficients=poly.coefficients.cpu().numpy(),
        exact_numerators=np.array(strings, dtype=np.str_),
    )


def _to_sympy_before(poly) -> list:
    """The earlier to_sympy: a sympy.Rational per coefficient, converted by from_dict."""
    import sympy

    gens = sympy.symbols(list(poly.variables))
    exps = [tuple(int(e) for e in row) for row in poly.exponents]
    den = poly._exact.denominator
    out = []
    for o in range(poly.n_outputs):
        data = {
            e: sympy.Rational(int(n), den)
            for e, n in zip(exps, poly._exact.numerators[o])
            if n != 0
        }
        out.append(sympy.Poly.from_dict(data, *gens, domain=sympy.QQ))
    return out


def _modular_before(commit: str):
    """The modular engine as it was at ``commit``, as a module (None without git).

    It lived at polynet/poly/modular.py before the re-layout, polynet/expansion/modular.py after.
    """
    source = None
    for path in ("polynet/expansion/modular.py", "polynet/poly/modular.py"):
        try:
            source = subprocess.run(
                ["git", "-C", str(HERE), "show", f"{commit}:{path}"],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            break
        except (OSError, subprocess.CalledProcessError):
            continue
    if source is None:
        return None
    spec = importlib.util.spec_from_loader("polynet.poly._modular_before", loader=None)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    exec(compile(source, f"modular.py@{commit}", "exec"), module.__dict__)
    return module


def run(flint: bool, before: str, repeat: int, flint_runs: int = 1) -> dict:
    import numpy as np
    import sympy  # noqa: F401  (imported before timing: both to_sympy rows use it)
    import torch

    import polynet
    from polynet import NetworkPolynomial
    from polynet.expansion.dense import plan
    from polynet.expansion.network import lower

    n, hidden, degrees = CASES["boston"]
    net = build_model(n, hidden, degrees, SEED)
    polynet.expand(net)  # warm the product maps for every engine alike
    rows: list[dict] = []

    def row(task, label, seconds, check, **extra):
        rows.append({"task": task, "variant": label, "seconds": seconds, "check": check, **extra})
        print(f"  {task:<22} {label:<44} {seconds:9.3f} s  {check}", flush=True)

    # -- exact expansion -------------------------------------------------------------------
    poly, t_now = _median(lambda: polynet.expand(net, exact="modular"), repeat)
    row("exact expand", "polynet exact='modular' (now)", t_now, f"{poly.n_terms:,} terms")
    # The numerators stay one byte block until read; this row also decodes every one of them
    # into a Python int, what a caller reading all exact values pays once.
    _, t_decoded = _median(lambda: polynet.expand(net, exact="modular")._exact.numerators, repeat)
    row("exact expand", "same, then every numerator as a Python int", t_decoded, "")
    lowered = lower(net, None, None)
    the_plan = plan(lowered)
    old = _modular_before(before)
    t_old = t_engine = None
    if old is not None:
        # The engines alone on the same lowered network, interleaved so that both see the
        # same load (the row above also counts lowering, planning and the wrapper).
        import polynet.expansion.modular as current

        cpu = torch.device("cpu")
        times: dict[str, list[float]] = {"now": [], "before": []}
        ok = {"now": True, "before": True}
        for _ in range(repeat):
            for key, module in (("before", old), ("now", current)):
                start = time.perf_counter()
                coefs = module.expand_modular(lowered, the_plan, cpu)
                times[key].append(time.perf_counter() - start)
                same = bool(
                    (np.asarray(coefs.numerators, dtype=object) == poly._exact.numerators).all()
                )
                ok[key] &= same and coefs.denominator == poly._exact.denominator
        t_engine, t_old = (statistics.median(times[key]) for key in ("now", "before"))
        row("exact expand", "expand_modular alone (now)", t_engine, _ok(ok["now"]))
        row("exact expand", f"expand_modular alone at {before}", t_old, _ok(ok["before"]))
    t_flint = t_paired = None
    if flint:
        # python-flint and polynet alternately, so both see the same load; medians. Each
        # runs with the other's result freed: flint's output (millions of objects, 1.7 GB)
        # left alive slowed polynet's run after it by 40 %.
        flint_times, polynet_times, same = [], [], True
        for i in range(flint_runs):
            start = time.perf_counter()
            units = _flint_direct(lowered)
            flint_times.append(time.perf_counter() - start)
            if i == 0:
                dense = _dense([_flint_terms(u) for u in units], n, lowered.degree_bound)
                same = bool((dense == poly.exact_coefficients).all())
                del dense
            del units
            gc.collect()
            start = time.perf_counter()
            result = polynet.expand(net, exact="modular")
            polynet_times.append(time.perf_counter() - start)
            del result
            gc.collect()
        t_flint, t_paired = statistics.median(flint_times), statistics.median(polynet_times)
        row(
            "exact expand",
            f"python-flint fmpq_mpoly (direct walk), median of {flint_runs}",
            t_flint,
            _ok(same),
        )
        row("exact expand", "polynet exact='modular', run alternately with it", t_paired, "")

    # -- save + load -----------------------------------------------------------------------
    with tempfile.TemporaryDirectory(prefix="bench_exact_io_") as tmp:
        v1 = Path(tmp) / "v1.npz"
        _, t_save1 = _median(lambda: _save_v1(poly, v1), 1)
        back1, t_load1 = _median(lambda: NetworkPolynomial.load(v1), 1)
        row("save", "format 1 (decimal strings, compressed)", t_save1, _size(v1))
        row("load", "format 1", t_load1, _ok(back1 == poly))
        for suffix in (".npz", ".json"):
            v2 = Path(tmp) / f"v2{suffix}"
            _, t_save2 = _median(lambda v2=v2: poly.save(v2), repeat)
            back2, t_load2 = _median(lambda v2=v2: NetworkPolynomial.load(v2), repeat)
            row("save", f"format 2 {suffix} (byte block)", t_save2, _size(v2))
            row("load", f"format 2 {suffix}", t_load2, _ok(back2 == poly))

    # -- to_sympy --------------------------------------------------------------------------
    new, t_sym = _median(poly.to_sympy, repeat)
    old_sym, t_sym_old = _median(lambda: _to_sympy_before(poly), 1)
    row("to_sympy", "before (sympy.Rational per term)", t_sym_old, f"{len(old_sym[0].terms()):,}")
    row("to_sympy", "now (dense recursive rep built directly)", t_sym, _ok(new == old_sym))

    by = {(r["task"], r["variant"]): r["seconds"] for r in rows}
    save_load_v1 = t_save1 + t_load1
    save_load_v2 = by[("save", "format 2 .npz (byte block)")] + by[("load", "format 2 .npz")]
    summary = {
        "exact_save_plus_load_s": save_load_v2,
        "exact_save_plus_load_before_s": save_load_v1,
        "to_sympy_s": t_sym,
        "to_sympy_before_s": t_sym_old,
        "exact_expand_s": t_now,
        "exact_engine_s": t_engine,
        "exact_engine_before_s": t_old,
        "flint_direct_s": t_flint,
        "exact_expand_paired_s": t_paired,
        "speedup_vs_flint": None if t_flint is None else t_flint / t_paired,
        "exact_expand_decoded_s": t_decoded,
        "speedup_vs_flint_decoded": None if t_flint is None else t_flint / t_decoded,
        "speedup_vs_before": None if t_old is None else t_old / t_engine,
    }
    return {"rows": rows, "summary": summary}


def _ok(same: bool) -> str:
    return "identical" if same else "**FAIL: differs**"


def _size(path: Path) -> str:
    return f"{os.path.getsize(path) / 2**20:.1f} MiB"


def _markdown(report: dict) -> str:
    m, s = report["machine"], report["summary"]
    lines = [
        f"Machine: {m['cpu']}, {m['cores_usable']} cores, {m['ram_gib']} GiB RAM; polynet "
        f"{m.get('git_commit')}; torch threads {report['torch_threads']}; load average "
        f"{report['loadavg_before'][0]:.1f} before, {report['loadavg_after'][0]:.1f} after. "
        f"All rows in one process, one after the other; median of {report['repeat']} for the "
        "fast rows, one run for the slow ones. Times are wall clock.",
        "",
        "Boston network: 13 inputs, hidden [128, 64], degrees [4, 2]: D = 8, 203,490 "
        "monomials, exact coefficients over 2^k with ~550-bit numerators.",
        "",
        "| task | variant | time | check |",
        "|---|---|---|---|",
    ]
    for r in report["rows"]:
        lines.append(f"| {r['task']} | {r['variant']} | {r['seconds']:.3f} s | {r['check']} |")
    lines += ["", "| goal | measured |", "|---|---|"]

    def goal(text, value, met):
        lines.append(f"| {text} | {value} ({'met' if met else '**missed**'}) |")

    goal(
        "exact save + load ≤ 2 s",
        f"{s['exact_save_plus_load_s']:.2f} s (before {s['exact_save_plus_load_before_s']:.2f} s)",
        s["exact_save_plus_load_s"] <= 2,
    )
    goal(
        "to_sympy() ≤ 2 s",
        f"{s['to_sympy_s']:.2f} s (before {s['to_sympy_before_s']:.2f} s)",
        s["to_sympy_s"] <= 2,
    )
    if s["speedup_vs_flint"] is not None:
        goal(
            "exact expansion ≥ 20× python-flint",
            f"{s['speedup_vs_flint']:.1f}×",
            s["speedup_vs_flint"] >= 20,
        )
        goal(
            "the same, every numerator decoded to a Python int",
            f"{s['speedup_vs_flint_decoded']:.1f}×",
            s["speedup_vs_flint_decoded"] >= 20,
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--no-flint", action="store_true", help="skip python-flint's walk")
    parser.add_argument("--before", default=BEFORE, help="commit of the 'before' modular engine")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each fast row (median)")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (default 1: python-flint's walk is single-threaded, and on a "
        "shared machine a team of threads waits for its descheduled member)",
    )
    parser.add_argument(
        "--flint-runs", type=int, default=1, help="python-flint walks (median), each paired"
    )
    parser.add_argument("--out", type=Path, default=RESULTS / "bench_exact_io.json")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)

    load_before = os.getloadavg()
    print("bench_exact_io: Boston network, exact path", flush=True)
    result = run(not args.no_flint, args.before, args.repeat, args.flint_runs)
    report = {
        "benchmark": "bench_exact_io",
        "machine": machine_info(),
        "torch_threads": torch.get_num_threads(),
        "repeat": args.repeat,
        "loadavg_before": load_before,
        "loadavg_after": os.getloadavg(),
        **result,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, default=str) + "\n")
    args.out.with_suffix(".md").write_text(_markdown(report))
    print(f"\nwrote {args.out} and {args.out.with_suffix('.md')}")


if __name__ == "__main__":
    main()
