"""Draw proofs/figures/theorem_a.png: measured SLNN error against the Theorem A bounds.

Run from the repository root::

    .venv/bin/python -m proofs.theorem_a_figure

It trains the two small networks of the check (tanh and ReLU, 2-16-16-1 on a 2-D toy task),
converts each with ``polynet.from_network`` at increasing degree, prints the table quoted in
``proofs/theorem_a.md`` and writes the figure.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from torch import nn

from proofs.theorem_a import (
    TANH_POLES,
    algebraic_order,
    bernstein_rho,
    geometric_rate,
    single_thread,
    theorem_a_bound,
    toy_data,
    train_network,
)

MARGIN = 0.25
TANH_DEGREES = list(range(2, 41, 2))
RELU_DEGREES = [4, 8, 16, 32, 64, 128, 256]


def sweep(activation: type[nn.Module], degrees: list[int]) -> list:
    net = train_network(activation)
    x, _ = toy_data()
    return [theorem_a_bound(net, x, k, MARGIN) for k in degrees]


def main(out: Path = Path(__file__).parent / "figures" / "theorem_a.png") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with single_thread():
        tanh = sweep(nn.Tanh, TANH_DEGREES)
        relu = sweep(nn.ReLU, RELU_DEGREES)
    rho = min(bernstein_rho(c, r, TANH_POLES).min() for c, r in tanh[-1].intervals)
    print(f"{'act':5} {'k':>4} {'measured':>10} {'bound':>10} {'norm bound':>10} certified")
    for name, reports in (("tanh", tanh), ("relu", relu)):
        for r in reports:
            print(
                f"{name:5} {r.degree:4d} {r.measured:10.3e} {r.bound:10.3e} "
                f"{r.norm_bound:10.3e} {r.certified}"
            )
    t_meas = [r.measured for r in tanh]
    r_meas = [r.measured for r in relu]
    for layer in range(2):
        c, r = tanh[-1].intervals[layer]
        rho_l = bernstein_rho(c, r, TANH_POLES).min()
        rate = geometric_rate(TANH_DEGREES, [rep.delta[layer].max() for rep in tanh])
        order = algebraic_order(RELU_DEGREES, [rep.delta[layer].max() for rep in relu])
        print(
            f"layer {layer + 1}: tanh max-delta rate {rate:.3f} vs log rho* {np.log(rho_l):.3f} "
            f"(rho* {rho_l:.3f}); relu max-delta order {order:.3f}"
        )
    tail = [(r.degree, r.measured) for r in tanh if r.degree >= 20]
    print(
        f"tanh network: rate {geometric_rate(TANH_DEGREES, t_meas):.3f} (k >= 2), "
        f"{geometric_rate(*zip(*tail)):.3f} (k >= 20); log rho* = {np.log(rho):.3f}"
    )
    print(f"relu network: algebraic order {algebraic_order(RELU_DEGREES, r_meas):.3f}")

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    for ax, reports, degrees in ((ax1, tanh, TANH_DEGREES), (ax2, relu, RELU_DEGREES)):
        cert = np.array([r.certified for r in reports])
        for key, label, style in (
            ("measured", "measured sup error", "o-"),
            ("bound", "bound (per unit)", "s--"),
            ("norm_bound", "bound (operator norms)", "^:"),
        ):
            vals = np.array([getattr(r, key) for r in reports])
            (line,) = ax.plot(degrees, vals, style, label=label, markersize=4)
            if key != "measured":
                ax.plot(
                    np.array(degrees)[~cert],
                    vals[~cert],
                    "x",
                    color="red",
                    label="slack condition fails" if key == "bound" else None,
                )
        ax.set_yscale("log")
        ax.set_xlabel("Chebyshev degree k per activation")
    k = np.array(TANH_DEGREES, float)
    ax1.plot(k, t_meas[0] * rho ** (-(k - k[0])), "k-", lw=0.8, label=r"$\rho_*^{-k}$")
    ax1.set_title("tanh 2-16-16-1: geometric convergence")
    ax1.set_ylabel("max |SLNN(x) − net(x)| on the calibration set")
    k = np.array(RELU_DEGREES, float)
    ax2.plot(k, r_meas[0] * k[0] / k, "k-", lw=0.8, label=r"$1/k$")
    ax2.set_xscale("log", base=2)
    ax2.set_title("ReLU 2-16-16-1: ~1/k convergence")
    for ax in (ax1, ax2):
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    print(f"wrote {out} ({out.stat().st_size / 1024:.0f} KiB)")


if __name__ == "__main__":
    main()
