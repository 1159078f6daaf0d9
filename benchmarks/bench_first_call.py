"""Benchmark: what a new user waits for on the first calls, in fresh processes, empty caches.

Three first calls, each in its own fresh Python process whose numba cache (NUMBA_CACHE_DIR)
and polynet cache (POLYNET_CACHE_DIR) point at new empty temporary folders, so nothing
compiled or cached by an earlier run helps:

- ``import polynet`` beyond ``import torch`` (target <= 0.5 s);
- the first ``poly(x)`` of the Boston polynomial (13 inputs, degree 8, 203,490 terms, from the
  demo's SLNN(13, [16, 8], [4, 2])) on 1,000 points (target <= 0.5 s), checked against the
  network's float64 forward pass;
- the first expansion of a Boston-size model with its own ``forward()`` (traced into a graph),
  over the warm expansion of the same model: the first-trace overhead (target <= 0.3 s),
  checked against the ``nn.Sequential`` expansion.

Each is measured ``--repeats`` times (a new process and new empty caches each time; median
reported), then once more with the caches the previous run left (what a second session sees).
JSON goes to ``benchmarks/results/bench_first_call.json``.

Usage::

    python benchmarks/bench_first_call.py [--repeats 3]
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
TARGETS = {"import_s": 0.5, "first_eval_s": 0.5, "first_trace_overhead_s": 0.3}

_IMPORT = """
import json, time
t0 = time.perf_counter(); import torch; t1 = time.perf_counter()
import polynet; t2 = time.perf_counter()
print(json.dumps({"torch_import_s": t1 - t0, "import_s": t2 - t1}))
"""

_EVAL = """
import json, time, torch, polynet
torch.manual_seed(0)
net = polynet.SLNN(13, [16, 8], [4, 2]).train()
for _ in range(3):
    net(torch.randn(64, 13))
net.eval()
poly = polynet.expand(net)
x = torch.randn(1000, 13, dtype=torch.float64)
t = time.perf_counter(); got = poly(x); first = time.perf_counter() - t
t = time.perf_counter(); poly(x); warm = time.perf_counter() - t
with torch.no_grad():
    ref = net.double()(x)
err = float((got.reshape(ref.shape) - ref).abs().max() / ref.abs().max())
print(json.dumps({"first_eval_s": first, "warm_eval_s": warm, "n_terms": poly.n_terms,
                  "backend": getattr(poly, "backend", None), "rel_err": err}))
"""

_TRACE = """
import json, time, torch, polynet
from torch import nn
torch.manual_seed(0)
seq = polynet.SLNN(13, [128, 64], [4, 2]).train()
for _ in range(3):
    seq(torch.randn(64, 13))
seq.eval()

class CustomSLNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.l1, self.a1, self.l2, self.a2, self.l3 = seq

    def forward(self, x):
        return self.l3(self.a2(self.l2(self.a1(self.l1(x)) * 1.0)))

model = CustomSLNN().eval()
t = time.perf_counter(); p = polynet.expand(model); first = time.perf_counter() - t
t = time.perf_counter(); polynet.expand(model); warm = time.perf_counter() - t
ref = polynet.expand(seq).coefficients
err = float((p.coefficients - ref).abs().max() / ref.abs().max())
print(json.dumps({"first_expand_s": first, "warm_expand_s": warm,
                  "first_trace_overhead_s": first - warm, "rel_err": err}))
"""


def _run(code: str, caches: dict[str, str]) -> dict:
    env = {**os.environ, **caches, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
        timeout=600,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def _fresh_caches(tmp: Path, name: str) -> dict[str, str]:
    numba_dir, polynet_dir = tmp / f"{name}-numba", tmp / f"{name}-polynet"
    numba_dir.mkdir()
    polynet_dir.mkdir()
    return {"NUMBA_CACHE_DIR": str(numba_dir), "POLYNET_CACHE_DIR": str(polynet_dir)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        for label, code, key in (
            ("import", _IMPORT, "import_s"),
            ("first poly(x), 1,000 points", _EVAL, "first_eval_s"),
            ("first trace, custom forward", _TRACE, "first_trace_overhead_s"),
        ):
            runs = []
            for r in range(args.repeats):
                caches = _fresh_caches(tmp, f"{key}-{r}")
                runs.append(_run(code, caches))
                if "rel_err" in runs[-1]:
                    assert runs[-1]["rel_err"] < 1e-8, (label, runs[-1])
            again = _run(code, caches)  # the caches the last fresh run left behind
            value = statistics.median(run[key] for run in runs)
            results[key] = {
                "label": label,
                "median_s": value,
                "runs": runs,
                "with_caches_s": again[key],
                "target_s": TARGETS[key],
                "meets_target": value <= TARGETS[key],
            }
            print(
                f"{label:<32} {value:7.3f} s (median of {args.repeats} fresh processes, empty "
                f"caches; target {TARGETS[key]} s: {'met' if value <= TARGETS[key] else 'MISSED'})"
                f"; with the caches left behind {again[key]:.3f} s",
                flush=True,
            )
            extra = {k: v for k, v in runs[-1].items() if k != key}
            print(f"{'':<32} last run: {extra}", flush=True)
    import torch

    out = {
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "load_avg": os.getloadavg(),
            "torch": torch.__version__,
        },
        "repeats": args.repeats,
        "results": results,
    }
    path = ROOT / "benchmarks" / "results" / "bench_first_call.json"
    path.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
