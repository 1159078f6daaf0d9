"""The experiment harness every example script shares: flags, device, results files.

Each example is ``python examples/NAME.py [--quick] [--out DIR] [--device DEV] [--seeds N]``.
``--quick`` runs in minutes on 2 CPU cores, offline (the tests use it); the default is the
paper's full budget. Results go to ``DIR/results.json`` and ``DIR/results.md``, figures
beside them.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch


@dataclass
class Run:
    """One run of an example: its options and where its results go."""

    name: str
    quick: bool
    out: Path
    device: str
    seeds: int
    started: float = field(default_factory=time.perf_counter)

    def figure_path(self, name: str) -> Path:
        """Path of a figure file in the output directory."""
        return self.out / name

    def write(self, results: dict[str, Any], markdown: str) -> None:
        """Write ``results.json`` (with run metadata) and ``results.md``."""
        results = {
            "example": self.name,
            "mode": "quick" if self.quick else "full",
            "seconds": round(time.perf_counter() - self.started, 2),
            "device": self.device,
            "torch": torch.__version__,
            "python": platform.python_version(),
            **results,
        }
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / "results.json").write_text(json.dumps(_jsonable(results), indent=2) + "\n")
        header = (
            f"# {self.name} ({results['mode']} mode, {results['seconds']} s on {self.device})\n\n"
        )
        (self.out / "results.md").write_text(header + markdown.rstrip() + "\n")


def parse(
    name: str,
    description: str,
    argv: Sequence[str] | None = None,
    *,
    full_seeds: int = 5,
    quick_seeds: int = 2,
) -> Run:
    """Parse the shared flags of an example."""
    parser = argparse.ArgumentParser(prog=f"examples/{name}.py", description=description)
    parser.add_argument(
        "--quick", action="store_true", help="minutes on 2 CPU cores, offline (the tests use it)"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("runs") / name,
        help="directory for results.json, results.md and figures",
    )
    parser.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda")
    parser.add_argument(
        "--seeds",
        type=int,
        default=None,
        help=f"number of seeds (default {full_seeds}, quick {quick_seeds})",
    )
    args = parser.parse_args(argv)
    seeds = args.seeds if args.seeds is not None else (quick_seeds if args.quick else full_seeds)
    from polynet.training import resolve_device

    device = str(resolve_device(args.device))
    args.out.mkdir(parents=True, exist_ok=True)
    return Run(name, args.quick, args.out, device, seeds)


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for one value)."""
    values = [float(v) for v in values]
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, 0.0
    var = sum((v - mean) ** 2 for v in values) / (len(values) - 1)
    return mean, math.sqrt(var)


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub-flavoured Markdown table."""

    def cell(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.4g}"
        return "" if v is None else str(v)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if hasattr(value, "item") and callable(value.item):
        return value.item()
    return value


if __name__ == "__main__":  # pragma: no cover
    sys.exit("harness.py is imported by the example scripts; run one of them instead.")
