"""Benchmark: each main command on an idle machine and with one core kept busy, as ratios.

A busy loop in another process (``while True: pass``) takes one core, as a user's other work
does. Each command runs through the CLI's own entry point (``polynet.cli.main``, so its thread
policy applies) or, for the estimator, ``SLNNRegressor().fit``, in a worker process that first
runs it once (imports, compilation), then alternates idle and loaded runs ``--repeats`` times;
the medians and the ratio loaded / idle are reported. Two configurations run side by side:

- ``policy``: the defaults (:mod:`polynet.threads` picks the count: one per free core, one for
  small networks);
- ``all cores``: ``--threads N`` / ``threads=N`` with N the number of cores, what torch does by
  default (the behaviour before the policy).

Each command's result is checked against the idle run of the same configuration (same
metrics and polynomial) before its times count. The machine may carry other load too (shared
machines): the load average is recorded, and idle and loaded runs alternate so both see it.
JSON goes to ``benchmarks/results/bench_under_load.json``.

Usage::

    python benchmarks/bench_under_load.py [--repeats 3] [--epochs 100]
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

ROOT = Path(__file__).resolve().parents[1]
LIMIT = 2.0  # the goal: no command more than 2x slower with one core busy

_WORKER = r"""
import contextlib, io, json, os, statistics, subprocess, sys, time
import numpy as np
import torch
from polynet import cli

config, tmp, repeats, epochs = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
threads = [] if config == "policy" else ["--threads", str(len(os.sched_getaffinity(0)))]
ckpt = os.path.join(tmp, "demo", "model.safetensors")


def run_cli(argv):
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        code = cli.main(argv)
    assert code == 0, (argv, code, out.getvalue())
    # What must agree between runs: the lines without times.
    return [l for l in out.getvalue().splitlines() if not l.startswith(("time", "stopped"))]


def train():
    return run_cli(["train", "--dataset", "boston", "--hidden", "16", "8", "--degrees", "4",
                    "2", "--epochs", epochs, "--lr", "3e-3", "--schedule", "cosine",
                    "--no-progress", "--out", os.path.join(tmp, "t-" + config), *threads])


def estimator():
    from sklearn.datasets import load_diabetes
    import polynet
    X, y = load_diabetes(return_X_y=True)
    n = None if config == "policy" else len(os.sched_getaffinity(0))
    reg = polynet.SLNNRegressor(hidden=(32,), max_epochs=int(epochs) // 2, device="cpu",
                                random_state=0, threads=n).fit(X, y)
    return [round(float(reg.score(X, y)), 9)]


COMMANDS = {
    "train (demo net)": train,
    "expand": lambda: run_cli(["expand", ckpt, "--no-progress", "--top", "3", *threads]),
    "expand --exact": lambda: run_cli(["expand", ckpt, "--exact", "--no-progress", "--top", "3",
                                       *threads]),
    "verify": lambda: run_cli(["verify", ckpt, *threads]),
    "SLNNRegressor.fit": estimator,
}


def timed(fn):
    t = time.perf_counter()
    value = fn()
    return time.perf_counter() - t, value


results = {}
for name, fn in COMMANDS.items():
    _, reference = timed(fn)  # warm: imports, compilation, caches
    idle, loaded = [], []
    for _ in range(repeats):
        t, value = timed(fn)
        assert value == reference, (name, value, reference)
        idle.append(t)
        busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        try:
            time.sleep(0.5)
            t, value = timed(fn)
        finally:
            busy.kill()
            busy.wait()
        assert value == reference, (name, value, reference)
        loaded.append(t)
    i, l = statistics.median(idle), statistics.median(loaded)
    results[name] = {"idle_s": i, "loaded_s": l, "ratio": l / i, "idle_runs": idle,
                     "loaded_runs": loaded, "load_avg": os.getloadavg()}
    print(json.dumps({"name": name, **results[name]}), file=sys.stderr, flush=True)
print(json.dumps(results))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=100)
    args = parser.parse_args()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        demo = Path(tmp) / "demo"
        subprocess.run(
            [sys.executable, "-m", "polynet", "train", "--dataset", "boston", "--hidden", "16",
             "8", "--degrees", "4", "2", "--epochs", "300", "--lr", "3e-3", "--schedule",
             "cosine", "--threads", "1", "--no-progress", "--out", str(demo)],
            env=env, check=True, capture_output=True, timeout=600,
        )  # fmt: skip
        for config in ("policy", "all cores"):
            print(f"{config}: running (one JSON line per command on stderr)", flush=True)
            proc = subprocess.run(
                [sys.executable, "-c", _WORKER, config, tmp, str(args.repeats), str(args.epochs)],
                env=env,
                cwd=ROOT,
                check=True,
                stdout=subprocess.PIPE,
                text=True,
                timeout=3000,
            )
            out[config] = json.loads(proc.stdout.strip().splitlines()[-1])
    print(f"{'command':<20} {'config':<10} {'idle s':>8} {'loaded s':>9} {'ratio':>6}")
    for config, rows in out.items():
        for name, row in rows.items():
            flag = "" if row["ratio"] <= LIMIT else f"  over {LIMIT}x"
            print(
                f"{name:<20} {config:<10} {row['idle_s']:8.3f} {row['loaded_s']:9.3f} "
                f"{row['ratio']:6.2f}{flag}"
            )
    import torch

    result = {
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "cores_available": len(os.sched_getaffinity(0)),
            "load_avg_end": os.getloadavg(),
            "torch": torch.__version__,
            "torch_threads_default": torch.get_num_threads(),
        },
        "repeats": args.repeats,
        "epochs": args.epochs,
        "limit": LIMIT,
        "results": out,
    }
    path = ROOT / "benchmarks" / "results" / "bench_under_load.json"
    path.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
