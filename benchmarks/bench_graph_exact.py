"""Benchmark: exact= on traced (custom-forward) models: flint, SymPy, modular vs float64.

Each model is expanded by the float graph path and by the exact path with python-flint's
``fmpq_mpoly``, with SymPy's ring over QQ (the recorded program of
:mod:`polynet.expansion.ir` run by :mod:`polynet.expansion.ir_ring`) and with the dense walk
modulo primes (:mod:`polynet.expansion.ir_dense`). Before times count, the exact results must
be the same rationals and their floats must equal the float path's to 1e-10 of the largest
coefficient. Times are medians of warm runs; peak memory is
the growth of the resident set (VmHWM after the call minus VmRSS before, peak reset with
/proc/self/clear_refs), which counts flint's C allocations too.

Models: two corpus models (tests/poly/corpus_models.py: FusedHEBlock, a conv block with BN
folded, 16 inputs, degree 2; PolyAttention, softmax-free attention, 6 inputs, degree 3) and
custom-forward SLNNs with a residual (``h + SLAF(W h)``, two SLAF layers of degree 2, so
degree 4) on 4, 8 and 13 inputs, the last of Boston size.

Usage::

    python benchmarks/bench_graph_exact.py [--repeats 3] [--sympy-max-terms 3000]
        [--modular-max-terms 3000]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RTOL = 1e-10


def _status_kib(key: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def _reset_hwm() -> None:
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        pass


def _measure(fn, repeats: int):
    """(result, median seconds, peak RSS growth in MiB) of ``fn``."""
    _reset_hwm()
    base = _status_kib("VmRSS")
    result = fn()
    peak = max(0, _status_kib("VmHWM") - base) / 1024
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return result, statistics.median(times), peak


def _models():
    import torch
    from torch import nn

    import polynet
    from tests.poly.corpus_models import FusedHEBlock, PolyAttention

    class ResidualSLNN(nn.Module):
        """x -> h = W0 x; h = h + SLAF(W1 h); h = h + SLAF(W2 h); W3 h (degree 4)."""

        def __init__(self, n: int, width: int) -> None:
            super().__init__()
            self.inp = nn.Linear(n, width)
            self.lins = nn.ModuleList(nn.Linear(width, width) for _ in range(2))
            self.acts = nn.ModuleList(polynet.SLAF(width, 2) for _ in range(2))
            self.out = nn.Linear(width, 1)

        def forward(self, x):
            h = self.inp(x)
            for lin, act in zip(self.lins, self.acts):
                h = h + act(lin(h))
            return self.out(h)

    def warmed(model, shape):
        gen = torch.Generator().manual_seed(0)
        model.train()
        with torch.no_grad():
            for _ in range(3):
                model(torch.randn(64, *shape, generator=gen))
        return model.eval()

    torch.manual_seed(0)
    yield "FusedHEBlock (corpus)", FusedHEBlock().eval(), FusedHEBlock.SHAPE
    yield "PolyAttention (corpus)", PolyAttention().eval(), PolyAttention.SHAPE
    for n, width in ((4, 8), (8, 16), (13, 16)):
        yield f"ResidualSLNN({n}, {width})", warmed(ResidualSLNN(n, width), (n,)), (n,)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--sympy-max-terms", type=int, default=3000, help="skip SymPy above this many monomials"
    )
    parser.add_argument(
        "--modular-max-terms", type=int, default=3000, help="skip modular above this many"
    )
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))

    import numpy as np
    import sympy
    import torch

    import polynet

    try:
        import flint

        flint_version = flint.__version__
    except ImportError:
        flint_version = None
    rows = []
    for name, model, shape in _models():
        fl, t_float, m_float = _measure(
            lambda m=model, s=shape: polynet.expand(m, input_shape=s), args.repeats
        )
        row = {
            "model": name,
            "n_vars": fl.n_vars,
            "degree": fl.degree,
            "monomials": fl.max_terms,
            "outputs": fl.n_outputs,
            "float_seconds": t_float,
            "float_peak_mib": m_float,
        }
        scale = fl.coefficients.abs().max().item()
        results = {}
        for engine in ("flint", "sympy", "modular"):
            if engine == "flint" and flint_version is None:
                continue
            if engine == "sympy" and fl.max_terms > args.sympy_max_terms:
                continue
            if engine == "modular" and fl.max_terms > args.modular_max_terms:
                continue
            ex, t, m = _measure(
                lambda m=model, s=shape, e=engine: polynet.expand(m, input_shape=s, exact=e),
                args.repeats if engine == "flint" else 1,
            )
            floats = np.vectorize(float, otypes=[float])(ex.exact_coefficients)
            diff = np.abs(floats - fl.coefficients.numpy()).max()
            if diff > RTOL * scale:
                raise SystemExit(f"{name}: {engine} differs from float64 by {diff:.3g}")
            results[engine] = ex
            row[f"{engine}_seconds"] = t
            row[f"{engine}_peak_mib"] = m
            row[f"{engine}_vs_float"] = t / t_float
        if len(results) == 2:
            same = bool(
                (results["flint"].exact_coefficients == results["sympy"].exact_coefficients).all()
            )
            if not same:
                raise SystemExit(f"{name}: flint and SymPy give different rationals")
            row["sympy_vs_flint"] = row["sympy_seconds"] / row["flint_seconds"]
        rows.append(row)
        cells = [f"{name:24s} n={row['n_vars']:2d} D={row['degree']} T={row['monomials']:5d}"]
        cells.append(f"float {t_float * 1e3:8.1f} ms {m_float:6.1f} MiB")
        for engine in ("flint", "sympy", "modular"):
            if f"{engine}_seconds" in row:
                cells.append(
                    f"{engine} {row[engine + '_seconds'] * 1e3:8.1f} ms "
                    f"{row[engine + '_peak_mib']:6.1f} MiB (x{row[engine + '_vs_float']:.1f})"
                )
        print("  ".join(cells), flush=True)
    load = os.getloadavg()
    report = {
        "benchmark": "bench_graph_exact",
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "cpus": os.cpu_count(),
            "load_avg_1_5_15": load,
        },
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "numpy": np.__version__,
            "sympy": sympy.__version__,
            "python-flint": flint_version,
            "torch_threads": torch.get_num_threads(),
        },
        "rows": rows,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "bench_graph_exact.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"load average {load[0]:.1f}; wrote {path}")


if __name__ == "__main__":
    main()
