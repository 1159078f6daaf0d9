"""A Pi-net (CCP, Chrysos et al. 2020) on the diabetes regression data, expanded and verified.

The CCP model is a polynomial by construction: with ``z`` the input,

    x_1 = U_1 z,   x_{m+1} = (U_{m+1} z) * x_m + x_m  (m < N),   y = C x_N + beta,

a Hadamard product of branches, not a chain of layers. ``polynet.expand`` traces it with
torch.fx. By the circuit rules (``proofs/circuits.md``) each step maps the bound d to
max(1 + d, d) = d + 1, so the degree is N; the skip has coefficient +1, so the circuit is
positive and the bound is attained, with every one of the C(n+N, N) coefficients (Theorem C4,
Corollary C5: each U_m has a bias). The script trains over several seeds (test RMSE in the
target's units), expands seed 0's network, verifies it, and compares degree and terms with
the bound.

Run: ``python examples/pi_net.py [--quick] [--out DIR] [--device DEV] [--seeds N]``.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence

import numpy as np
import torch
from harness import markdown_table, mean_std, parse
from torch import nn

import polynet
from polynet import data, training


class CCP(nn.Module):
    """The CCP Pi-net of order ``order``: ``x <- (U z) * x + x``, then a linear read-out."""

    def __init__(self, n_inputs: int, rank: int, order: int) -> None:
        super().__init__()
        self.U = nn.ModuleList(nn.Linear(n_inputs, rank) for _ in range(order))
        self.C = nn.Linear(rank, 1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.U[0](z)
        for U in self.U[1:]:
            x = U(z) * x + x
        return self.C(x)


def main(argv: Sequence[str] | None = None) -> int:
    run = parse("pi_net", __doc__.splitlines()[0], argv, full_seeds=5, quick_seeds=2)
    # Order 4 with rank 16 and 200 epochs overfits (test RMSE 66 against 50 here).
    rank, order, epochs = (8, 3, 20) if run.quick else (8, 3, 40)
    ds = data.load_diabetes().standardize(targets=True)
    n = ds.X_train.shape[1]
    rmse, models = [], []
    for seed in range(run.seeds):
        torch.manual_seed(seed)
        model = CCP(n, rank, order)
        with torch.no_grad():  # start near the linear model: products scaled down
            for U in model.U[1:]:
                U.weight.mul_(0.1)
                U.bias.zero_()
        result = training.fit(
            model, ds, epochs=epochs, batch_size=32, lr=3e-3, schedule="cosine",
            clip_norm=1.0, weight_decay=1e-4, seed=seed, device=run.device, progress=False,
            threads=1,
        )  # fmt: skip
        rmse.append(result.metrics["test_rmse"])
        models.append(result.model)
    model = models[0].double().cpu().eval()
    poly = polynet.expand(model, input_shape=(n,))
    report = polynet.verify(model, poly, ds.X_test)
    scale = float(ds.target_scaler.scale_)
    pred = np.asarray(poly(ds.X_test))[:, 0]
    poly_rmse = float(np.sqrt(np.mean((pred - ds.y_test) ** 2)) * scale)
    mean, std = mean_std(rmse)
    results = {
        "data": "diabetes (scikit-learn, 442 patients, 80/20 seeded split, standardised)",
        "rank": rank,
        "order": order,
        "test_rmse": rmse,
        "test_rmse_mean": mean,
        "test_rmse_std": std,
        "polynomial": {
            "degree": poly.degree,
            "degree_bound": poly.degree_bound,
            "theory_bound": order,
            "n_terms": poly.n_terms,
            "max_terms": poly.max_terms,
            "binomial": math.comb(n + order, order),
            "verify_max_rel_error": report.max_rel_error,
            "verified": report.passed,
            "test_rmse_of_polynomial": poly_rmse,
        },
        "figures": [],
    }
    verdict = "passed" if report.passed else "FAILED"
    rows = [
        ["test RMSE, mean ± std", f"{mean:.2f} ± {std:.2f} over {run.seeds} seeds"],
        ["polynomial test RMSE (seed 0)", f"{poly_rmse:.2f}"],
        ["degree / polynet bound / N", f"{poly.degree} / {poly.degree_bound} / {order}"],
        ["non-zero terms / C(n+N, N)", f"{poly.n_terms:,} / {poly.max_terms:,}"],
        ["verify max relative error", f"{report.max_rel_error:.2e} ({verdict})"],
    ]
    table = markdown_table([f"Pi-net (CCP, order {order}) on diabetes", "value"], rows)
    run.write(results, table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
