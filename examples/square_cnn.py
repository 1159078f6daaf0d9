"""A square-activation CNN (CryptoNets-style ``x * x``) on offline MNIST, and its polynomial on
an image patch.

CryptoNets (Gilad-Bachrach et al. 2016) replace activations by ``x * x`` so that a network is
a polynomial of its pixels. Here: Conv2d(1, c, 5, stride 2) -> x*x -> AvgPool2d(2) ->
Linear(., h) -> x*x -> Linear(h, 10), a forward with products, not a chain of polynet layers.
By the circuit rules (``proofs/circuits.md``) the degree bound is 2·2 = 4; the circuit is
positive (convolution, average pooling, products), so the bound is attained for generic
weights and the support is exactly the structural set S of Theorem C3, which the receptive
fields keep below C(n+4, 4).

A polynomial in all 784 pixels would have C(788, 4) ≈ 1.6e10 coefficients, so the script
expands the trained network as a function of one ``p × p`` patch in the middle of the image,
the other pixels fixed at the training mean image (a wrapper module embeds the patch with a
constant matrix). It reports test accuracy over seeds, and for the patch polynomial: degree,
bound, terms, and the verification error.

Data: the 10,000 MNIST t10k images (``shared/data/mnist-t10k``), split 80/20 into our own
train/test sets; these are not official-split numbers.

Run: ``python examples/square_cnn.py [--quick] [--out DIR] [--device DEV] [--seeds N]``.
"""

from __future__ import annotations

import dataclasses
import math
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from harness import markdown_table, mean_std, parse
from torch import nn

import polynet
from polynet import data, training

#: Where the offline MNIST t10k files may be, first found wins.
T10K = [
    Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist-t10k",
    Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnist-t10k",
    Path("/work/shared/data/mnist-t10k"),
]


class SquareCNN(nn.Module):
    """Conv -> x*x -> AvgPool -> Linear -> x*x -> Linear (degree 4 in the pixels)."""

    def __init__(self, channels: int = 4, hidden: int = 32, n_classes: int = 10) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, channels, 5, stride=2)  # 28 -> 12
        self.pool = nn.AvgPool2d(2)  # 12 -> 6
        self.fc = nn.Linear(channels * 36, hidden)
        self.out = nn.Linear(hidden, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv(x)
        h = self.pool(h * h)
        h = self.fc(h.flatten(1))
        return self.out(h * h)


class Patch(nn.Module):
    """The network as a function of one ``size × size`` patch; other pixels at ``base``."""

    def __init__(self, net: nn.Module, base: np.ndarray, top: int, left: int, size: int) -> None:
        super().__init__()
        self.net = net
        embed = np.zeros((size * size, 28 * 28))
        for r in range(size):
            for c in range(size):
                embed[r * size + c, (top + r) * 28 + left + c] = 1.0
        outside = base.reshape(-1).copy()
        outside[embed.sum(0) > 0] = 0.0
        self.register_buffer("embed", torch.as_tensor(embed))
        self.register_buffer("outside", torch.as_tensor(outside))

    def forward(self, p: torch.Tensor) -> torch.Tensor:
        image = p @ self.embed + self.outside
        return self.net(image.reshape(-1, 1, 28, 28))


def load() -> data.Dataset:
    for path in T10K:
        if path.is_dir():
            return data.load_mnist(path=path, flatten=False)
    raise SystemExit("square_cnn.py needs the MNIST t10k IDX files in shared/data/mnist-t10k")


def main(argv: Sequence[str] | None = None) -> int:
    run = parse("square_cnn", __doc__.splitlines()[0], argv, full_seeds=3, quick_seeds=1)
    ds = load()
    n_train, epochs, size = (2000, 4, 4) if run.quick else (len(ds.X_train), 15, 6)
    ds = dataclasses.replace(ds, X_train=ds.X_train[:n_train], y_train=ds.y_train[:n_train])
    accuracy, models = [], []
    for seed in range(run.seeds):
        torch.manual_seed(seed)
        model = SquareCNN()
        result = training.fit(
            model, ds, epochs=epochs, batch_size=64, lr=2e-3, schedule="cosine",
            clip_norm=1.0, seed=seed, device=run.device, progress=False,
        )  # fmt: skip
        accuracy.append(result.metrics["test_accuracy"])
        models.append(result.model)
    net = models[0].double().cpu().eval()
    top = left = 14 - size // 2
    wrapper = Patch(net, ds.X_train.mean(0), top, left, size).double().eval()
    patches = ds.X_test[:, 0, top : top + size, left : left + size].reshape(len(ds.X_test), -1)
    poly = polynet.expand(wrapper, input_shape=(size * size,))
    report = polynet.verify(wrapper, poly, patches)
    n = size * size
    mean, std = mean_std(accuracy)
    results = {
        "data": ds.description,
        "n_train": int(len(ds.X_train)),
        "n_test": int(len(ds.X_test)),
        "test_accuracy": accuracy,
        "test_accuracy_mean": mean,
        "test_accuracy_std": std,
        "patch": {"top": top, "left": left, "size": size},
        "polynomial": {
            "degree": poly.degree,
            "degree_bound": poly.degree_bound,
            "theory_bound": 4,
            "n_terms": poly.n_terms,
            "max_terms": poly.max_terms,
            "binomial": math.comb(n + 4, 4),
            "n_outputs": poly.n_outputs,
            "verify_max_rel_error": report.max_rel_error,
            "verified": report.passed,
        },
        "figures": [],
    }
    verdict = "passed" if report.passed else "FAILED"
    rows = [
        ["test accuracy, mean ± std", f"{mean:.4f} ± {std:.4f} over {run.seeds} seeds"],
        ["patch", f"{size}×{size} at ({top}, {left}), other pixels at the mean image"],
        ["degree / polynet bound / 2·2", f"{poly.degree} / {poly.degree_bound} / 4"],
        ["non-zero terms (10 outputs) / C(n+4, 4)", f"{poly.n_terms:,} / {poly.max_terms:,}"],
        ["verify max relative error", f"{report.max_rel_error:.2e} ({verdict})"],
    ]
    table = markdown_table(["square CNN on MNIST (t10k, own split)", "value"], rows)
    run.write(results, table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
