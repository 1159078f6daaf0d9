"""Regenerate the README's figures from the demo, and print their true captions.

- ``docs/figures/boston_activations.png``: the learned activations of the network ``make demo``
  trains (the same command and flags, seed 0), over its training data;
- ``docs/figures/boston_slice.png``: that network and its polynomial along the input with the
  largest linear coefficient, the others at the data mean;
- ``docs/figures/spirals_decision_boundary.png``: a small two-spirals SLNN (2-16-16-1, SLAF
  degrees 3 and 3, Chebyshev basis) and its degree-9 polynomial.

The numbers the captions need (degrees, terms, max |p - f|, metrics) are measured here and
written with the captions to ``docs/figures/figures.json``; the README quotes them.

Usage::

    python scripts/readme_figures.py [--out docs/figures]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
DEMO = [
    "train",
    "--dataset",
    "boston",
    "--hidden",
    "16",
    "8",
    "--degrees",
    "4",
    "2",
    "--epochs",
    "300",
    "--lr",
    "3e-3",
    "--schedule",
    "cosine",
    "--threads",
    "1",
    "--no-progress",
]  # fmt: skip  (the Makefile's demo target, word for word)


def _demo_checkpoint(tmp: Path) -> Path:
    out = tmp / "demo"
    subprocess.run(
        [sys.executable, "-m", "polynet", *DEMO, "--out", str(out)],
        check=True,
        cwd=ROOT,
        capture_output=True,
    )
    return out / "model.safetensors"


def boston(out: Path, tmp: Path) -> dict:
    import polynet
    from polynet import data, plots
    from polynet.checkpoint import load_checkpoint
    from polynet.export import name_variables

    ckpt = load_checkpoint(_demo_checkpoint(tmp))
    ds = data.from_metadata(ckpt.metadata)
    plots.plot_activations(ckpt.model, ds.X_train, out / "boston_activations.png")
    poly = name_variables(polynet.expand(ckpt.model), ds.feature_names)
    X = np.concatenate([ds.X_train, ds.X_test])
    linear = poly.coefficients[0, 1 : poly.n_vars + 1].abs().cpu().numpy()
    dim = int(np.argmax(linear))
    _, diff = plots.plot_slice(ckpt.model, poly, X, dims=(dim,), path=out / "boston_slice.png")
    metrics = ckpt.metadata["metrics"]
    return {
        "boston_activations.png": (
            "The learned activations of the `make demo` network (SLNN 13-16-8-1, SLAF degrees "
            "4 and 2), each layer's curves over the range its inputs take on the 404 training "
            "rows (histogram behind, count on the right axis). A dashed line is drawn only "
            "where a standard activation a·f(b·z + c) + d fits the layer with R² ≥ 0.95."
        ),
        "boston_slice.png": (
            f"The same network (float64, thick grey) and its degree-{poly.degree} polynomial "
            f"({poly.n_terms:,} terms, dashed) along {poly.variables[dim]} (standardised; the "
            f"input with the largest linear coefficient), the other inputs at the data mean; "
            f"max |p − f| = {diff:.1e}."
        ),
        "boston": {
            "degree": poly.degree,
            "n_terms": poly.n_terms,
            "slice_variable": poly.variables[dim],
            "slice_max_diff": diff,
            "train_rmse": metrics.get("train_rmse"),
            "test_rmse": metrics.get("test_rmse"),
        },
    }


def spirals(out: Path) -> dict:
    import polynet
    from polynet import data, plots, training

    ds = data.load("spirals")
    torch.manual_seed(0)
    net = polynet.SLNN(2, [16, 16], [3, 3], basis="chebyshev")
    result = training.fit(
        net, ds, epochs=400, lr=1e-2, schedule="cosine", clip_norm=1.0, threads=1, progress=False
    )
    net.eval()
    poly = polynet.expand(net)
    _, diff = plots.plot_decision_boundary(
        net, poly, ds.X_test, ds.y_test, out / "spirals_decision_boundary.png"
    )
    acc = result.metrics["test_accuracy"]
    return {
        "spirals_decision_boundary.png": (
            f"Two spirals: a small SLNN (2-16-16-1, SLAF degrees 3 and 3, Chebyshev basis, "
            f"test accuracy {acc:.3f}) and its degree-{poly.degree} polynomial "
            f"({poly.n_terms} terms) decide alike: the boundaries lie on top of each other "
            f"(max |p − f| = {diff:.1e}). The Classification section's larger network "
            "(k = 7, degree 49) is the accurate one."
        ),
        "spirals": {"degree": poly.degree, "n_terms": poly.n_terms, "max_diff": diff,
                    "test_accuracy": acc},
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "figures")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        facts = {**boston(args.out, Path(tmp)), **spirals(args.out)}
    (args.out / "figures.json").write_text(json.dumps(facts, indent=1) + "\n")
    for name, caption in facts.items():
        if name.endswith(".png"):
            print(f"{name}\n  {caption}\n")
    print(f"wrote {args.out / 'figures.json'}")


if __name__ == "__main__":
    main()
