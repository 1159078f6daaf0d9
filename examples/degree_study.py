"""Degree and basis study (the paper's RQ3/RQ4): accuracy, stability and polynomial size.

How do the SLAF degree and its basis change what an SLNN learns? On two tasks,

- **Boston housing without column B** (12 inputs; column B is derived from the share of Black
  residents, so new experiments leave it out), test RMSE in $1000s, and
- **a cubic sparse polynomial** (``polynet.data.sparse_polynomial``, 10 inputs), test RMSE over
  the standard deviation of the targets,

we train SLNNs with one hidden layer of 128 units and SLAF degree k = 1..6, and with two hidden
layers (128, 64) and degrees (2, 2), (3, 2), (4, 2), each in the Taylor (monomial), Chebyshev
and Legendre bases, over several seeds. For each we record

- the test error (mean ± std over seeds);
- training stability: runs that diverged (non-finite loss), and how much the training-loss
  curves differ between seeds (the std over seeds of log10 of the epoch's training loss,
  averaged over epochs) and how much each curve jitters (mean |Δ log10 loss| over the second
  half of training);
- the size of the network's polynomial by Theorem 2 (``polynet.count_terms``): the degree
  bound D = ∏k and the number of coefficients C(n+D, D).

Training uses no gradient clipping here, so that instabilities show (the Boston example clips).

Run: ``python examples/degree_study.py [--quick] [--out DIR] [--device DEV] [--seeds N]``.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from harness import Run, markdown_table, mean_std, parse

import polynet
from polynet import data, training

BASES = ("taylor", "chebyshev", "legendre")
#: (label, hidden widths, degrees per layer).
CONFIGS = [(f"k={k}", [128], [k]) for k in range(1, 7)] + [
    ("(2,2)", [128, 64], [2, 2]),
    ("(3,2)", [128, 64], [3, 2]),
    ("(4,2)", [128, 64], [4, 2]),
]
QUICK_CONFIGS = [(f"k={k}", [32], [k]) for k in range(1, 4)] + [("(2,2)", [32, 16], [2, 2])]
QUICK_BASES = ("taylor", "chebyshev")

#: Per task: the data, the fit options (Adam, cosine, no clipping), and the error's unit.
TASKS: dict[str, dict[str, Any]] = {
    "boston-no-b": {
        "fit": dict(batch_size=32, lr=1e-3, schedule="cosine"),
        "unit": "$1000s",
    },
    "cubic-10": {
        # Large batches: the SLAF's batch statistics of z^k are noisy on small ones (see
        # polynomial_regression.py); the batch size comes from the budget.
        "fit": dict(lr=1e-2, schedule="cosine"),
        "unit": "RMSE / std(y)",
    },
}
FULL = dict(epochs=100, poly_samples=10000, poly_batch=1000)
QUICK = dict(epochs=8, poly_samples=1000, poly_batch=125)


def load_task(name: str, budget: dict) -> tuple[data.Dataset, data.Dataset, float]:
    """Raw data, its standardised copy, and the divisor of the reported RMSE."""
    if name == "boston-no-b":
        raw = data.load_boston(drop_b=True)
        return raw, raw.standardize(targets=True), 1.0
    raw = data.sparse_polynomial(
        budget["poly_samples"], n_features=10, degree=3, n_terms=10, random_state=0
    )
    return raw, raw.standardize(targets=True), float(raw.y_test.std())


def train_one(
    ds: data.Dataset,
    hidden: list[int],
    degrees: list[int],
    basis: str,
    seed: int,
    fit_options: dict,
    epochs: int,
    device: str,
) -> dict:
    torch.manual_seed(seed)
    model = polynet.SLNN(ds.n_features, hidden, degrees, basis=basis)
    try:
        result = training.fit(
            model, ds, epochs=epochs, seed=seed, device=device, progress=False, **fit_options
        )
        diverged = False
    except polynet.TrainingDivergedError as exc:
        result, diverged = exc.result, True
    losses = [h["train_loss"] for h in result.history]
    test = result.metrics.get("test_rmse")
    if test is None or not math.isfinite(test):
        diverged = True
    return {
        "seed": seed,
        "diverged": diverged,
        "test_rmse": test if not diverged else None,
        "train_rmse": result.metrics.get("train_rmse") if not diverged else None,
        "train_loss": losses,
    }


def curve_stats(curves: list[list[float]], epochs: int) -> tuple[float, float]:
    """Std over seeds of log10 training loss (mean over epochs), and mean jitter per curve."""
    full = [c for c in curves if len(c) == epochs and all(v > 0 and math.isfinite(v) for v in c)]
    if not full:
        return math.nan, math.nan
    logs = np.log10(np.array(full))
    spread = float(logs.std(axis=0).mean()) if len(full) > 1 else 0.0
    half = logs[:, epochs // 2 :]
    jitter = float(np.abs(np.diff(half, axis=1)).mean()) if half.shape[1] > 1 else 0.0
    return spread, jitter


def study(run: Run, budget: dict) -> list[dict]:
    configs = QUICK_CONFIGS if run.quick else CONFIGS
    bases = QUICK_BASES if run.quick else BASES
    rows = []
    for task, spec in TASKS.items():
        raw, ds, divisor = load_task(task, budget)
        fit_options = dict(spec["fit"])
        if task == "cubic-10":
            fit_options["batch_size"] = budget["poly_batch"]
        for label, hidden, degrees in configs:
            counts = polynet.count_terms(polynet.SLNN(ds.n_features, hidden, degrees))
            for basis in bases:
                runs = [
                    train_one(
                        ds, hidden, degrees, basis, seed, fit_options, budget["epochs"], run.device
                    )
                    for seed in range(run.seeds)
                ]
                ok = [r for r in runs if not r["diverged"]]
                errs = [r["test_rmse"] / divisor for r in ok]
                mean, std = mean_std(errs) if errs else (math.nan, math.nan)
                spread, jitter = curve_stats([r["train_loss"] for r in runs], budget["epochs"])
                rows.append(
                    {
                        "task": task,
                        "config": label,
                        "hidden": hidden,
                        "degrees": degrees,
                        "basis": basis,
                        "test_error": mean,
                        "test_error_std": std,
                        "unit": spec["unit"],
                        "diverged": len(runs) - len(ok),
                        "n_seeds": len(runs),
                        "loss_curve_spread": spread,
                        "loss_curve_jitter": jitter,
                        "degree_bound": counts.degree_bound,
                        "max_terms": counts.max_terms,
                        "n_parameters": counts.n_parameters,
                        "per_seed": [
                            {k: r[k] for k in ("seed", "diverged", "test_rmse", "train_rmse")}
                            for r in runs
                        ],
                    }
                )
                print(
                    f"[{task}] {label} {basis}: {mean:.4g} ± {std:.2g}, "
                    f"{len(runs) - len(ok)} diverged",
                    file=sys.stderr,
                )
    return rows


def markdown(run: Run, rows: list[dict], budget: dict) -> str:
    lines = [
        f"SLNNs trained {budget['epochs']} epochs (Adam, cosine schedule, no gradient "
        f"clipping), {run.seeds} seed(s) per cell. Boston without column B (Keras split; column "
        "B is derived from the share of Black residents) and a cubic sparse polynomial of 10 "
        f"standard normal inputs ({budget['poly_samples']} samples, half for training; batch "
        f"{budget['poly_batch']}, lr 0.01). Boston: batch 32, lr 0.001.",
        "",
    ]
    if run.quick:
        lines += ["**Quick mode**: small networks, few epochs and configurations.", ""]
    bases = list(dict.fromkeys(r["basis"] for r in rows))
    for task in dict.fromkeys(r["task"] for r in rows):
        sub = [r for r in rows if r["task"] == task]
        unit = sub[0]["unit"]
        lines += [f"## {task}: test error ({unit}), mean ± std", ""]
        table = []
        for config in dict.fromkeys(r["config"] for r in sub):
            cells = [r for r in sub if r["config"] == config]
            first = cells[0]
            row = [config, first["degree_bound"], f"{first['max_terms']:,}"]
            for basis in bases:
                r = next(c for c in cells if c["basis"] == basis)
                err = (
                    "diverged"
                    if math.isnan(r["test_error"])
                    else (f"{r['test_error']:.3f} ± {r['test_error_std']:.3f}")
                )
                if r["diverged"]:
                    err += f" ({r['diverged']}/{r['n_seeds']} diverged)"
                row.append(err)
            row.append(
                " / ".join(
                    f"{next(c for c in cells if c['basis'] == b)['loss_curve_spread']:.3f}"
                    for b in bases
                )
            )
            table.append(row)
        lines += [
            markdown_table(
                ["SLAF degrees", "D = ∏k", "C(n+D, D)", *bases, "seed spread of log loss"],
                table,
            ),
            "",
        ]
    n_div = sum(r["diverged"] for r in rows)
    lines += [
        f"Diverged runs: {n_div} of {sum(r['n_seeds'] for r in rows)}.",
        "",
        "The seed spread is the std over seeds of log10(training loss), averaged over epochs "
        f"(listed per basis: {' / '.join(bases)}); results.json also has each curve's jitter.",
    ]
    return "\n".join(lines)


def figure(run: Run, rows: list[dict]) -> str:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    tasks = list(dict.fromkeys(r["task"] for r in rows))
    bases = list(dict.fromkeys(r["basis"] for r in rows))
    fig = Figure(figsize=(13, 7), layout="constrained")
    axes = fig.subplots(2, len(tasks) + 1, squeeze=False)
    for j, task in enumerate(tasks):
        sub = [r for r in rows if r["task"] == task]
        configs = list(dict.fromkeys(r["config"] for r in sub))
        x = np.arange(len(configs))
        for i, basis in enumerate(bases):
            cells = [
                next(r for r in sub if r["config"] == c and r["basis"] == basis) for c in configs
            ]
            err = np.array([c["test_error"] for c in cells], dtype=float)
            std = np.array([c["test_error_std"] for c in cells], dtype=float)
            axes[0, j].errorbar(
                x + 0.08 * (i - 1), err, yerr=std, marker="o", ms=4, capsize=2, label=basis
            )
            axes[1, j].plot(x, [c["loss_curve_spread"] for c in cells], "o-", ms=4, label=basis)
            # Crosses mark cells where some seed diverged (at the top when all did).
            top = axes[0, j].get_xaxis_transform()
            for k, c in enumerate(cells):
                if c["diverged"] and np.isfinite(err[k]):
                    axes[0, j].plot(x[k], err[k], "x", c="k", ms=8)
                elif c["diverged"]:
                    axes[0, j].plot(x[k], 0.95, "x", c="k", ms=8, transform=top)
        axes[0, j].set_yscale("log")
        axes[0, j].set_title(f"{task}: test error ({sub[0]['unit']})", fontsize=10)
        axes[1, j].set_title(f"{task}: seed spread of log10 train loss", fontsize=10)
        for ax in axes[:, j]:
            ax.set_xticks(x, configs, fontsize=8)
            ax.legend(fontsize=7)
        axes[1, j].set_xlabel("SLAF degrees")
    for task in tasks:
        sub = [r for r in rows if r["task"] == task and r["basis"] == bases[0]]
        axes[0, -1].semilogy(
            [r["config"] for r in sub], [r["max_terms"] for r in sub], "o-", label=task
        )
        axes[1, -1].semilogy(
            [r["config"] for r in sub], [r["n_parameters"] for r in sub], "s--", label=task
        )
    axes[0, -1].set_title("polynomial size C(n+D, D)", fontsize=10)
    axes[1, -1].set_title("network parameters", fontsize=10)
    for ax in axes[:, -1]:
        ax.legend(fontsize=7)
        ax.tick_params(axis="x", labelsize=8)
    path = run.figure_path("degree_study.png")
    fig.savefig(path, dpi=110)
    return path.name


def main(argv: Sequence[str] | None = None) -> int:
    run = parse("degree_study", __doc__.splitlines()[0], argv, full_seeds=3, quick_seeds=2)
    budget = QUICK if run.quick else FULL
    threads = torch.get_num_threads()
    if run.device == "cpu":
        torch.set_num_threads(1)  # small networks: extra threads cost more than they save
    try:
        rows = study(run, budget)
    finally:
        torch.set_num_threads(threads)
    fig = figure(run, rows)
    run.write(
        {"rows": rows, "budget": budget, "tasks": TASKS, "figures": [fig]},
        markdown(run, rows, budget),
    )
    print((run.out / "results.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
