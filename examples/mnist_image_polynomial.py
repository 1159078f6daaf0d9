"""MNIST at image size: what polynet can say exactly about an SLNN on 784 pixels.

The whole polynomial of an image-size SLNN is far too large to write down
(SLNN(784, [256, 128], [4, 2]) has up to C(792, 8) = 3.7e18 coefficients per output), but these
exact objects built from it are small, and this example computes and checks each one:

- ``polynet.count_terms(net).table()``: Theorem 2's size, with the exact support for conv nets;
- ``polynet.expand(net, degree=2)`` (and ``degree=3`` for one class in full mode): the exact
  part of degree <= q, checked against float64 autograd derivatives (``taylor_errors``);
- ``polynet.expand(net, degree=2, at=x0)``: the Taylor polynomial at a test image, checked
  against autograd and against the network at small perturbations of the image;
- ``polynet.expand(net, form="factored")``: the whole polynomial as G(W1 x + b1), checked
  against the forward pass;
- ``polynet.expand(conv, form="sparse")``: the receptive-field-sparse whole polynomial of a
  small ConvSLNN, checked against the forward pass.

Models (all trained briefly on the offline MNIST t10k files, split into our own train/test
sets: NOT the official split, so accuracies are not comparable with published ones):

- the MLP SLNN(784, [256, 128], [4, 2], 10) (quick: [64, 32], [2, 2]);
- the paper's conv trunk shape, 5x5 convolutions with 16 and 32 channels and SLAF degree 4,
  **with 2x2 average pooling in place of the paper's max pooling** (max pooling is not a
  polynomial; average pooling keeps the network one), then a linear layer to 10 classes.
  Trained for 2 epochs in full mode (not in quick mode) and only counted (Theorem 2): with
  D = 16 no exact form of it fits in memory;
- a small ConvSLNN (3x3, [8, 16], [2, 2]; quick: [4, 8] on 14x14 images, each the 2x2
  average of an MNIST image), expanded whole in its sparse form.

Figures (in ``--out``): the degree-2 part's linear-coefficient map and one pixel's interaction
map for a digit class, the same maps for the Taylor polynomial at a test image, and the
learned activations. ``results.md`` / ``results.json`` hold the measured numbers.

    python examples/mnist_image_polynomial.py [--quick] [--out DIR] [--data DIR]
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from harness import Run, markdown_table, parse

import polynet
from polynet import data, training
from polynet.data import Dataset
from polynet.expansion.truncated import taylor_errors

#: The offline MNIST test files (10,000 images): shared/data/mnist-t10k beside the repository
#: (or beside the folder of its git worktrees).
T10K_CANDIDATES = [
    base / "shared" / "data" / "mnist-t10k" for base in Path(__file__).resolve().parents[1:4]
]
T10K = next((p for p in T10K_CANDIDATES if p.is_dir()), T10K_CANDIDATES[1])
POOLING_NOTE = (
    "average pooling in place of the paper's max pooling (max pooling is not a polynomial; "
    "with average pooling the network stays one)"
)


def _config(quick: bool) -> dict[str, Any]:
    if quick:
        return {
            "n_train": 2000,
            "n_test": 500,
            "mlp": ([64, 32], [2, 2]),
            "mlp_epochs": 3,
            "conv_size": 14,
            "conv_channels": [4, 8],
            "conv_epochs": 5,
            "paper_channels": [16, 32],
            "paper_epochs": 0,
            "degree3": False,
        }
    return {
        "n_train": None,
        "n_test": None,
        "mlp": ([256, 128], [4, 2]),
        "mlp_epochs": 8,
        "conv_size": 28,
        "conv_channels": [8, 16],
        "conv_epochs": 3,
        "paper_channels": [16, 32],
        "paper_epochs": 2,
        "degree3": True,
    }


def _subsample(ds: Dataset, n_train: int | None, n_test: int | None) -> Dataset:
    rng = np.random.RandomState(0)
    changes: dict[str, Any] = {}
    if n_train is not None:
        keep = np.sort(rng.permutation(len(ds.X_train))[:n_train])
        changes.update(X_train=ds.X_train[keep], y_train=ds.y_train[keep])
    if n_test is not None:
        keep = np.sort(rng.permutation(len(ds.X_test))[:n_test])
        changes.update(X_test=ds.X_test[keep], y_test=ds.y_test[keep])
    return replace(ds, **changes)


def _as_images(ds: Dataset, size: int) -> Dataset:
    """Inputs of shape (n, 1, size, size): the 28x28 images, average-pooled if size < 28."""

    def shape(x: np.ndarray) -> np.ndarray:
        img = x.reshape(len(x), 1, 28, 28)
        f = 28 // size
        return img.reshape(len(x), 1, size, f, size, f).mean(axis=(3, 5))

    return replace(ds, X_train=shape(ds.X_train), X_test=shape(ds.X_test))


def _fit(net: torch.nn.Module, ds: Dataset, epochs: int, run: Run) -> dict[str, Any]:
    result = training.fit(
        net,
        ds,
        epochs=epochs,
        batch_size=64,
        lr=2e-3,
        schedule="cosine",
        clip_norm=1.0,
        device=run.device,
        seed=0,
        progress=False,
    )
    net.cpu().eval()
    return {
        "test_accuracy": result.metrics["test_accuracy"],
        "train_accuracy": result.metrics["train_accuracy"],
        "epochs": epochs,
        "seconds": round(result.seconds, 1),
        "parameters": sum(p.numel() for p in net.parameters()),
    }


def _forward64(net: torch.nn.Module, x: np.ndarray | torch.Tensor) -> torch.Tensor:
    net64 = copy.deepcopy(net).to(torch.float64).eval()
    with torch.no_grad():
        return net64(torch.as_tensor(x, dtype=torch.float64))


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


def _one_output(net: torch.nn.Sequential, output: int) -> torch.nn.Sequential:
    """A copy of an MLP SLNN that keeps only one output (one class logit)."""
    single = copy.deepcopy(net)
    last = single[-1]
    head = torch.nn.Linear(last.in_features, 1, dtype=last.weight.dtype)
    with torch.no_grad():
        head.weight.copy_(last.weight[output : output + 1])
        head.bias.copy_(last.bias[output : output + 1])
    single[-1] = head
    return single.eval()


def _timed(fn):
    tic = time.perf_counter()
    value = fn()
    return value, round(time.perf_counter() - tic, 2)


def analyse_mlp(net: torch.nn.Module, ds: Dataset, cfg: dict, run: Run) -> dict[str, Any]:
    """Counts, the degree-2 (and 3) part, the Taylor polynomial at an image, the factored form."""
    out: dict[str, Any] = {}
    count = polynet.count_terms(net)
    out["count"] = {k: count.as_dict()[k] for k in ("n_vars", "degree_bound", "max_terms")}
    out["support"] = count.support
    out["count_table"] = count.table()
    print(count.table())

    # The exact part of degree <= 2, against float64 autograd.
    p2, seconds = _timed(lambda: polynet.expand(net, degree=2))
    errors = taylor_errors(net, p2)
    out["degree2"] = {
        "n_terms_per_output": int(p2.coefficients.shape[1]),
        "seconds": seconds,
        "autograd_rel_error_per_degree": errors,
        "max_autograd_rel_error": max(errors),
    }
    print(f"  degree <= 2 part: {p2.coefficients.shape[1]:,} coefficients per output, {seconds} s,")
    print(f"    max relative error against autograd {max(errors):.1e}")

    # The degree-3 part for one class (full mode): 80.9 M coefficients at [256, 128].
    digit = 3
    if cfg["degree3"]:
        single = _one_output(net, digit)
        p3, seconds = _timed(lambda: polynet.expand(single, degree=3))
        errors3 = taylor_errors(single, p3)
        out["degree3"] = {
            "output": digit,
            "n_terms": int(p3.coefficients.shape[1]),
            "seconds": seconds,
            "autograd_rel_error_per_degree": errors3,
            "max_autograd_rel_error": max(errors3),
        }
        print(
            f"  degree <= 3 part of class {digit}: {p3.coefficients.shape[1]:,} coefficients, "
            f"{seconds} s, max relative error against autograd {max(errors3):.1e}"
        )
        del p3

    # The Taylor polynomial at a test image, and how well it follows the network nearby.
    x0 = ds.X_test[0]
    local, seconds = _timed(lambda: polynet.expand(net, degree=2, at=x0))
    errors_at = taylor_errors(net, local)
    gen = torch.Generator().manual_seed(1)
    direction = torch.randn(8, x0.size, generator=gen, dtype=torch.float64)
    direction /= direction.norm(dim=1, keepdim=True)  # unit perturbations of the image
    f0 = _forward64(net, x0[None])
    nearby = []
    for radius in (1e-3, 1e-2, 1e-1, 1.0):
        u = radius * direction
        f = _forward64(net, torch.as_tensor(x0) + u)
        err2 = float((local(u) - f).abs().max())
        grad = local.coefficients[:, 1 : x0.size + 1]
        err1 = float((f0 + u @ grad.T - f).abs().max())
        nearby.append({"radius": radius, "error_degree2": err2, "error_linear": err1})
    out["local"] = {
        "image": 0,
        "label": int(ds.y_test[0]),
        "predicted": int(f0.argmax()),
        "seconds": seconds,
        "autograd_rel_error_per_degree": errors_at,
        "max_autograd_rel_error": max(errors_at),
        "nearby": nearby,
    }
    print(
        f"  Taylor polynomial at test image 0 (label {int(ds.y_test[0])}): {seconds} s, max "
        f"relative error against autograd {max(errors_at):.1e}"
    )
    for row in nearby:
        print(
            f"    |u| = {row['radius']:g}: |network - degree-2 polynomial| "
            f"{row['error_degree2']:.1e} (linear only: {row['error_linear']:.1e})"
        )

    # The whole polynomial as G(W1 x + b1).
    g, seconds = _timed(lambda: polynet.expand(net, form="factored"))
    x = torch.as_tensor(ds.X_test[:200], dtype=torch.float64)
    forward_error = _rel(g(x), _forward64(net, x))
    trunc_diff = float((g.truncate(degree=2).coefficients - p2.coefficients).abs().max())
    out["factored"] = {
        "n_terms": int(g.n_terms),
        "max_terms": g.max_terms,
        "n_units": g.n_units,
        "seconds": seconds,
        "forward_rel_error": forward_error,
        "truncate2_vs_degree2_max_abs_diff": trunc_diff,
    }
    print(
        f"  factored form G(W1 x + b1): {g.n_terms:,} terms in {g.n_units} pre-activations "
        f"(of {float(g.max_terms):.2e} in x), {seconds} s; relative error against the forward "
        f"pass {forward_error:.1e}; truncate(2) vs degree=2: {trunc_diff:.1e}"
    )

    # Figures: the degree-2 part for one digit class, the local polynomial at the image.
    # Pixels that are dark in (almost) every image keep coefficients that never meet the data,
    # so the interaction map is drawn for the inked pixel with the largest linear coefficient.
    inked = torch.as_tensor(ds.X_train.mean(axis=0) > 0.2)
    pixel = int(torch.where(inked, p2.coefficients[digit, 1:785].abs(), -1.0).argmax())
    path = run.figure_path("mlp_degree2_coefficients.png")
    polynet.plots.plot_image_coefficients(p2, pixel, output=digit, shape=(28, 28), path=path)
    predicted = out["local"]["predicted"]
    pixel_at = int(torch.where(inked, local.coefficients[predicted, 1:785].abs(), -1.0).argmax())
    path_at = run.figure_path("mlp_local_coefficients.png")
    polynet.plots.plot_image_coefficients(
        local, pixel_at, output=predicted, shape=(28, 28), path=path_at
    )
    path_act = run.figure_path("mlp_activations.png")
    polynet.plots.plot_activations(net, ds.X_train[:500], path=path_act)
    out["figures"] = [path.name, path_at.name, path_act.name]
    out["figure_class"] = digit
    out["figure_pixels"] = {"degree2": pixel, "local": pixel_at}
    return out


def analyse_conv(net: torch.nn.Module, ds: Dataset) -> dict[str, Any]:
    """The sparse whole polynomial of a small ConvSLNN, against the forward pass."""
    count = polynet.count_terms(net)
    print(count.table())
    poly, seconds = _timed(lambda: polynet.expand(net, form="sparse"))
    x = ds.X_test[:200]
    got = poly(torch.as_tensor(x.reshape(len(x), -1), dtype=torch.float64))
    error = _rel(got, _forward64(net, x))
    report = polynet.verify(net, poly, x.reshape(len(x), -1), n_box=50)
    print(
        f"  sparse polynomial: {poly.n_terms:,} terms per output, {seconds} s; relative error "
        f"against the forward pass {error:.1e} (verify: {report.max_rel_error:.1e})"
    )
    return {
        "count": {k: count.as_dict()[k] for k in ("n_vars", "degree_bound", "max_terms")},
        "support": count.support,
        "count_table": count.table(),
        "n_terms": int(poly.n_terms),
        "seconds": seconds,
        "forward_rel_error": error,
        "verify_max_rel_error": report.max_rel_error,
        "verify_passed": report.passed,
    }


def paper_trunk(channels: list[int]) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The paper's conv trunk shape (5x5, SLAF degree 4), average pooling: its counts."""
    torch.manual_seed(0)
    net = polynet.ConvSLNN(1, 28, channels, [4, 4], 10, kernel_size=5).eval()
    count = polynet.count_terms(net)
    table, seconds = _timed(count.table)
    print("  paper conv trunk (" + POOLING_NOTE + "):")
    print(table)
    return net, {
        "channels": channels,
        "kernel_size": 5,
        "degrees": [4, 4],
        "count": {k: count.as_dict()[k] for k in ("n_vars", "degree_bound", "max_terms")},
        "support": count.support,
        "count_table": table,
        "count_seconds": seconds,
        "parameters": sum(p.numel() for p in net.parameters()),
    }


def _markdown(res: dict[str, Any], source: str, cfg: dict) -> str:
    mlp, conv, paper = res["mlp"], res["conv"], res["paper_trunk"]
    hidden, degrees = cfg["mlp"]
    paper_acc = (
        "not trained"
        if res["paper_training"] is None
        else f"{res['paper_training']['test_accuracy']:.4f}"
    )
    rows = [
        [
            f"SLNN(784, {hidden}, {degrees}, 10)",
            f"{res['mlp_training']['test_accuracy']:.4f}",
            f"{res['mlp_training']['parameters']:,}",
            f"{float(mlp['count']['max_terms']):.3g}",
            "not computed" if mlp["support"] is None else f"{float(mlp['support']):.3g} (all)",
        ],
        [
            f"ConvSLNN(1, {cfg['conv_size']}, {cfg['conv_channels']}, [2, 2], 10), 3x3",
            f"{res['conv_training']['test_accuracy']:.4f}",
            f"{res['conv_training']['parameters']:,}",
            f"{float(conv['count']['max_terms']):.3g}",
            f"{conv['support']:,}",
        ],
        [
            f"paper trunk ConvSLNN(1, 28, {paper['channels']}, [4, 4], 10), 5x5, avg pool",
            paper_acc,
            f"{paper['parameters']:,}",
            f"{float(paper['count']['max_terms']):.3g}",
            "not computed" if paper["support"] is None else f"{paper['support']:.3g}",
        ],
    ]
    table = markdown_table(
        ["model", "test accuracy", "parameters", "C(n+D, D)", "exact support"], rows
    )
    d2 = mlp["degree2"]
    checks = [
        [
            "degree <= 2 part, `expand(net, degree=2)`",
            f"{d2['n_terms_per_output']:,} per output",
            d2["seconds"],
            f"{d2['max_autograd_rel_error']:.1e} vs autograd",
        ]
    ]
    if "degree3" in mlp:
        d3 = mlp["degree3"]
        checks.append(
            [
                f"degree <= 3 part, class {d3['output']}",
                f"{d3['n_terms']:,}",
                d3["seconds"],
                f"{d3['max_autograd_rel_error']:.1e} vs autograd",
            ]
        )
    loc = mlp["local"]
    checks.append(
        [
            "Taylor polynomial at test image 0, `degree=2, at=x0`",
            f"{d2['n_terms_per_output']:,} per output",
            loc["seconds"],
            f"{loc['max_autograd_rel_error']:.1e} vs autograd",
        ]
    )
    fac = mlp["factored"]
    checks.append(
        [
            '`form="factored"` G(W1 x + b1)',
            f"{fac['n_terms']:,} (of {float(fac['max_terms']):.2e} in x)",
            fac["seconds"],
            f"{fac['forward_rel_error']:.1e} vs forward pass",
        ]
    )
    checks.append(
        [
            '`form="sparse"` of the ConvSLNN',
            f"{conv['n_terms']:,} per output",
            conv["seconds"],
            f"{conv['forward_rel_error']:.1e} vs forward pass",
        ]
    )
    check_table = markdown_table(["object", "terms", "seconds", "relative error"], checks)
    near = markdown_table(
        ["perturbation norm ‖u‖", "max abs(f(x0+u) - T2(u))", "max abs(f(x0+u) - T1(u)), linear"],
        [
            [r["radius"], f"{r['error_degree2']:.2e}", f"{r['error_linear']:.2e}"]
            for r in loc["nearby"]
        ],
    )
    figs = ", ".join(f"`{f}`" for f in mlp["figures"])
    return f"""
**Data.** {source}

**Models.** The paper's conv trunk shape uses {POOLING_NOTE}. Trained with Adam (lr 0.002,
cosine schedule, clipping at norm 1, batch 64); test accuracy of the final epoch.

{table}

**Exact objects built from the trained networks** (relative error = max |error| / max |reference|,
references in float64):

{check_table}

**The Taylor polynomial at test image 0** (label {loc["label"]}, predicted {loc["predicted"]})
against the network at 8 random perturbations u of each norm (pixels in [0, 1]; the degree-2
error shrinks as ‖u‖^3, the linear one as ‖u‖^2; T2 is the degree-2 Taylor polynomial, T1 its
linear part):

{near}

**Factored form**: truncating it to degree 2 gives `expand(net, degree=2)` to
{fac["truncate2_vs_degree2_max_abs_diff"]:.1e} (max abs difference of coefficients).

Figures: {figs} (degree-2 maps for class {mlp["figure_class"]}; maps of the Taylor polynomial
at test image 0 for its predicted class; the learned activations). The interaction maps are
drawn for pixels {mlp["figure_pixels"]["degree2"]} and {mlp["figure_pixels"]["local"]} (row-major
index), the inked pixels (mean training intensity > 0.2) with the largest linear coefficient.
Pixels that are 0 in every image (the border) keep their initial weights: their coefficients
are real coefficients of the polynomial but never meet the data.

The paper's conv trunk has D = {paper["count"]["degree_bound"]} and C(784 + D, D) =
{float(paper["count"]["max_terms"]):.2e} coefficients per output; its receptive-field support is
too large to enumerate (at least C(29, 4)^4 = 3.2e17 monomials: four disjoint 5x5 windows under
one unit), so only its counts are given: no exact form of it fits in memory.

Theorem 2 table of the MLP:

```
{mlp["count_table"]}
```
"""


def main(argv: list[str] | None = None) -> int:
    """Train the models, build every exact object, check each one, write results and figures."""
    extra = argparse.ArgumentParser(add_help=False)
    extra.add_argument("--data", default=str(T10K), help="directory of the MNIST IDX files")
    own, rest = extra.parse_known_args(argv)
    run = parse(
        "mnist_image_polynomial",
        "MNIST SLNNs at image size: low-degree part, Taylor polynomial at an image, factored "
        "and sparse forms, each checked (extra flag: --data DIR).",
        rest,
        full_seeds=1,
        quick_seeds=1,
    )
    cfg = _config(run.quick)
    if run.device == "cpu":
        torch.set_num_threads(1 if run.quick else 2)
    ds = data.load_mnist(path=own.data, flatten=True)
    source = ds.description
    if "split into train/test" in source:
        source = f"NOT THE OFFICIAL SPLIT: {source}"
    ds = _subsample(ds, cfg["n_train"], cfg["n_test"])
    print(f"MNIST: {source}")
    print(f"  {len(ds.X_train)} train / {len(ds.X_test)} test images; {POOLING_NOTE}")

    hidden, degrees = cfg["mlp"]
    torch.manual_seed(0)
    mlp = polynet.SLNN(784, hidden, degrees, 10)
    res: dict[str, Any] = {"mlp_training": _fit(mlp, ds, cfg["mlp_epochs"], run)}
    print(
        f"  SLNN(784, {hidden}, {degrees}, 10): test accuracy "
        f"{res['mlp_training']['test_accuracy']:.4f} ({res['mlp_training']['seconds']} s)"
    )
    res["mlp"] = analyse_mlp(mlp, ds, cfg, run)

    images = _as_images(ds, cfg["conv_size"])
    torch.manual_seed(0)
    conv = polynet.ConvSLNN(1, cfg["conv_size"], cfg["conv_channels"], [2, 2], 10)
    res["conv_training"] = _fit(conv, images, cfg["conv_epochs"], run)
    print(
        f"  ConvSLNN(1, {cfg['conv_size']}, {cfg['conv_channels']}, [2, 2], 10): test accuracy "
        f"{res['conv_training']['test_accuracy']:.4f} ({res['conv_training']['seconds']} s)"
    )
    res["conv"] = analyse_conv(conv, images)
    paper, res["paper_trunk"] = paper_trunk(cfg["paper_channels"])
    res["paper_training"] = None
    if cfg["paper_epochs"]:
        res["paper_training"] = _fit(paper, _as_images(ds, 28), cfg["paper_epochs"], run)
        print(
            f"  paper conv trunk: test accuracy {res['paper_training']['test_accuracy']:.4f} "
            f"({res['paper_training']['seconds']} s)"
        )

    res["pooling"] = POOLING_NOTE
    res["paper"] = "the paper's MNIST numbers are not quoted (not available to check here)"
    res["data_source"] = source
    res["n_train"], res["n_test"] = len(ds.X_train), len(ds.X_test)
    run.write(res, _markdown(res, source, cfg))
    print(f"results in {run.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
