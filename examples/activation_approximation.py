"""RQ1: how fast polynomials of degree k approximate ReLU, tanh, sigmoid, GELU and SiLU.

An SLAF of degree k can only be as close to a standard activation as the best polynomial of
degree k is, so this is the first question about SLNNs (Theorem A rests on it). For each
activation on the interval [-3, 3] and each degree k, ``polynet.approximate`` fits

- **chebyshev**: interpolation at the k+1 Chebyshev points (near-minimax);
- **legendre**: a least-squares fit in the Legendre basis;
- **taylor**: a least-squares fit in the monomial basis (the paper's "Taylor" SLAF basis),

and measures the sup-norm error on a 10,001-point grid. For contrast, the truncated Taylor
*series* at 0 (the coefficients of the power series, not a fit) is measured too.

Theory drawn beside the measurements:

- ReLU is Lipschitz (L = 1) but not smooth at 0: Jackson's theorem bounds the best error by
  π·L·r / (2(k+1)) on [-r, r], and Bernstein's constant β ≈ 0.2802 gives its true size,
  E_k(ReLU) ~ β·r / (2k): the error falls like C/k, no faster.
- tanh, sigmoid and SiLU are analytic on [-r, r] with poles off the real axis (tanh at
  ±iπ/2, sigmoid and SiLU at ±iπ). Scaled to [-1, 1] the nearest pole is at ±i·s, s = π/(2r)
  or π/r, and the largest Bernstein ellipse free of poles has ρ = s + sqrt(1 + s²): the error
  falls like ρ^(-k). The curve drawn is the rigorous bound for Chebyshev interpolation,
  min over ρ' < ρ of 4·M(ρ')·ρ'^(-k) / (ρ' − 1), with M(ρ') the largest |f| on the ellipse
  E_ρ' (computed on its boundary).
- GELU = z·Φ(z) is entire, so the same bound with every ρ' > 1 falls faster than any ρ^(-k).

Run: ``python examples/activation_approximation.py [--quick] [--out DIR]``.
"""

from __future__ import annotations

import math
import sys
import warnings
from typing import Any

import mpmath
import numpy as np
import torch
from harness import Run, markdown_table, parse

import polynet
from polynet.approximate import ACTIVATIONS as ACTIVATION_FUNCTIONS

ACTIVATIONS = ["relu", "tanh", "sigmoid", "gelu", "silu"]
BASES = ["chebyshev", "legendre", "taylor"]
INTERVAL = (-3.0, 3.0)
#: Degrees of the results table.
TABLE_DEGREES = (4, 8, 16)
#: Bernstein's constant: E_k(|x|, [-1, 1]) ~ BETA / k.
BETA = 0.2801694990
#: Nearest singularities of the analytic activations (distance from the real axis).
POLE = {"tanh": math.pi / 2, "sigmoid": math.pi, "silu": math.pi, "gelu": math.inf}
#: Errors below this are rounding, not approximation: left out of the rate estimates.
FLOOR = 1e-11
#: Degrees the rates are fitted over (the same in quick and full mode); GELU's rate is also
#: fitted on each half, split at RATE_SPLIT, to show it growing.
RATE_DEGREES = (4, 24)
RATE_SPLIT = 14
GRID = np.linspace(*INTERVAL, 10_001)


def _complex(name: str):
    """The activation on complex arguments (for the Bernstein-ellipse bound)."""
    if name == "tanh":
        return np.tanh
    if name == "sigmoid":
        return lambda z: 1 / (1 + np.exp(-z))
    if name == "silu":
        return lambda z: z / (1 + np.exp(-z))
    try:  # scipy's erf takes complex arguments; mpmath's is the (slow) fallback
        from scipy.special import erf
    except ImportError:
        erf_one = np.frompyfunc(lambda v: complex(mpmath.erf(v)), 1, 1)

        def erf(v):
            return erf_one(v).astype(complex)

    return lambda z: z / 2 * (1 + erf(z / math.sqrt(2)))


def real(name: str, z: np.ndarray) -> np.ndarray:
    """The activation in float64, as polynet.approximate uses it (torch's definitions)."""
    return ACTIVATION_FUNCTIONS[name](torch.from_numpy(z)).numpy()


def rho(name: str) -> float:
    """Parameter of the largest Bernstein ellipse of [-r, r] free of singularities."""
    r = (INTERVAL[1] - INTERVAL[0]) / 2
    s = POLE[name] / r
    return s + math.sqrt(1 + s * s) if math.isfinite(s) else math.inf


def ellipse_bound(name: str, degrees: list[int]) -> list[float]:
    """min over ρ' < ρ of 4 M(ρ') ρ'^-k / (ρ' - 1): the Chebyshev interpolation bound."""
    f = _complex(name)
    r, c = (INTERVAL[1] - INTERVAL[0]) / 2, (INTERVAL[1] + INTERVAL[0]) / 2
    top = rho(name)
    rhos = np.geomspace(1.001, min(top * 0.9995, 60.0), 160)
    theta = np.linspace(0, 2 * np.pi, 512, endpoint=False)
    with np.errstate(over="ignore", invalid="ignore"):
        m = []
        for p in rhos:
            t = (p * np.exp(1j * theta) + np.exp(-1j * theta) / p) / 2
            m.append(np.nanmax(np.abs(f(c + r * t))))
        m = np.array(m, dtype=float)
        k = np.asarray(degrees, dtype=float)[:, None]
        bounds = 4 * m[None, :] * rhos[None, :] ** (-k) / (rhos[None, :] - 1)
    return [float(v) for v in np.nanmin(np.where(np.isfinite(bounds), bounds, np.inf), axis=1)]


def jackson(degrees: list[int]) -> list[float]:
    r = (INTERVAL[1] - INTERVAL[0]) / 2
    return [math.pi * r / (2 * (k + 1)) for k in degrees]


def bernstein(degrees: list[int]) -> list[float]:
    r = (INTERVAL[1] - INTERVAL[0]) / 2
    return [BETA * r / (2 * k) for k in degrees]


def taylor_series_errors(name: str, degrees: list[int]) -> list[float] | None:
    """Sup error on the interval of the truncated Taylor series at 0 (None for ReLU)."""
    if name == "relu":
        return None
    # Coefficients by the Cauchy integral on the circle |z| = R inside the disc of convergence.
    f = _complex(name)
    # Coefficient j is off by about eps·max|f|/R^j, and the series is summed out to |z| = 3: a
    # circle near the singularity (or of radius 3) keeps that below the truncation error.
    radius = min(3.0, POLE[name] * 0.9)
    n = 2048
    z = radius * np.exp(2j * np.pi * np.arange(n) / n)
    coef = (np.fft.fft(f(z)) / n).real[: max(degrees) + 1] / radius ** np.arange(max(degrees) + 1)
    exact = real(name, GRID)
    errors = []
    for k in degrees:
        values = np.polynomial.polynomial.polyval(GRID, coef[: k + 1])
        errors.append(float(np.max(np.abs(values - exact))))
    return errors


def rate(
    degrees: list[int],
    errors: list[float],
    kind: str,
    low: int = RATE_DEGREES[0],
    high: int = RATE_DEGREES[1],
) -> float | None:
    """Measured rate over low <= k <= high: ρ̂ with error ~ C ρ̂^-k, or p with error ~ C k^-p."""
    k = np.asarray(degrees, dtype=float)
    e = np.asarray(errors, dtype=float)
    keep = (k >= low) & (k <= high) & (e > FLOOR)
    if keep.sum() < 3:
        return None
    if kind == "geometric":
        slope = np.polyfit(k[keep], np.log(e[keep]), 1)[0]
        return float(math.exp(-slope))
    slope = np.polyfit(np.log(k[keep]), np.log(e[keep]), 1)[0]
    return float(-slope)


def measure(degrees: list[int]) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for name in ACTIVATIONS:
        entry: dict[str, Any] = {"errors": {}, "slaf_errors": {}}
        exact = real(name, GRID)
        entry["representation_gap"] = {}
        entry["ill_conditioned_from"] = {}
        for basis in BASES:
            fits = []
            for k in degrees:
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always", np.exceptions.RankWarning)
                    fits.append(polynet.approximate(name, k, basis, interval=INTERVAL))
                if caught and basis not in entry["ill_conditioned_from"]:
                    entry["ill_conditioned_from"][basis] = k  # numpy's RankWarning
            entry["errors"][basis] = [fit.max_error for fit in fits]
            # What an SLAF computes: the monomial coefficients in z, evaluated by Horner.
            monomial = [np.polynomial.polynomial.polyval(GRID, f.coefficients) for f in fits]
            entry["slaf_errors"][basis] = [float(np.max(np.abs(v - exact))) for v in monomial]
            entry["representation_gap"][basis] = max(
                float(np.max(np.abs(v - f(GRID)))) for v, f in zip(monomial, fits)
            )
        entry["errors"]["taylor series"] = taylor_series_errors(name, degrees)
        if name == "relu":
            entry["theory"] = {"jackson": jackson(degrees), "bernstein": bernstein(degrees)}
            entry["rate"] = {
                "kind": "algebraic",
                "theory": 1.0,
                "measured": {b: rate(degrees, entry["errors"][b], "algebraic") for b in BASES},
            }
        else:
            entry["theory"] = {"ellipse_bound": ellipse_bound(name, degrees)}
            middle = RATE_SPLIT
            entry["rate"] = {
                "kind": "geometric",
                "theory": rho(name),
                "measured": {b: rate(degrees, entry["errors"][b], "geometric") for b in BASES},
                # An entire function's rate keeps growing: the rate below and above the split.
                "measured_low_high": {
                    b: [
                        rate(degrees, entry["errors"][b], "geometric", high=middle),
                        rate(degrees, entry["errors"][b], "geometric", low=middle),
                    ]
                    for b in BASES
                },
                "split_degree": middle,
            }
        results[name] = entry
    return results


def draw(run: Run, degrees: list[int], results: dict[str, Any]) -> str:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(15, 8.2), layout="constrained")
    axes = fig.subplots(2, 3).flat
    styles = {
        "chebyshev": {"color": "C0", "marker": "o", "ms": 3},
        "legendre": {"color": "C1", "marker": "s", "ms": 3},
        "taylor": {"color": "C2", "marker": "^", "ms": 3},
        "taylor series": {"color": "C7", "ls": ":"},
    }
    smallest = min(
        min(e) for entry in results.values() for e in entry["errors"].values() if e is not None
    )
    bottom = 10 ** math.floor(math.log10(max(smallest, 1e-17)) - 0.5)
    for ax, name in zip(axes, ACTIVATIONS):
        entry = results[name]
        for method, errors in entry["errors"].items():
            if errors is None:
                continue
            label = method if method != "taylor" else "taylor (monomial least squares)"
            ax.semilogy(degrees, np.maximum(errors, 1e-17), label=label, lw=1.3, **styles[method])
        if name == "relu":
            ax.semilogy(
                degrees, entry["theory"]["jackson"], "k--", lw=1.2, label="Jackson π r/(2(k+1))"
            )
            ax.semilogy(
                degrees, entry["theory"]["bernstein"], "k-.", lw=1, label="Bernstein β r/(2k)"
            )
            measured = entry["rate"]["measured"]["chebyshev"]
            ax.set_title(f"ReLU: Lipschitz, error ~ C/k (measured k^-{measured:.2f})", fontsize=10)
        else:
            bound = entry["theory"]["ellipse_bound"]
            label = "Chebyshev bound min 4M ρ'^-k/(ρ'−1)"
            ax.semilogy(degrees, bound, "k--", lw=1.2, label=label)
            measured = entry["rate"]["measured"]["chebyshev"]
            r = entry["rate"]["theory"]
            if math.isfinite(r):
                title = f"{name}: analytic, ρ = {r:.3f} (measured {measured:.3f})"
            else:
                title = f"{name}: entire, faster than any ρ^-k"
            ax.set_title(title, fontsize=10)
        ax.set_ylim(bottom, 1e2)
        ax.set_xlabel("degree k")
        ax.set_ylabel(f"max error on [{INTERVAL[0]:g}, {INTERVAL[1]:g}]")
        ax.grid(True, which="major", alpha=0.3)
    last = list(fig.axes)[-1]
    last.axis("off")
    lines, names = [], []
    for ax in fig.axes[:-1]:
        for line, label in zip(*ax.get_legend_handles_labels()):
            if label not in names:
                lines.append(line)
                names.append(label)
    last.legend(lines, names, loc="center", fontsize=10, frameon=False)
    fig.suptitle(
        "Polynomial approximation of activations: sup-norm error against degree "
        f"(interval [{INTERVAL[0]:g}, {INTERVAL[1]:g}])",
        fontsize=12,
    )
    path = run.figure_path("activation_approximation.png")
    fig.savefig(path, dpi=110)
    return path.name


def main(argv: list[str] | None = None) -> int:
    run = parse(
        "activation_approximation", __doc__.splitlines()[0], argv, full_seeds=1, quick_seeds=1
    )
    degrees = list(range(1, 25 if run.quick else 41))
    results = measure(degrees)
    figure = draw(run, degrees, results)

    at = [degrees.index(k) for k in TABLE_DEGREES]
    rows = []
    for name in ACTIVATIONS:
        entry = results[name]
        theory = entry["theory"]
        ref = theory.get("ellipse_bound") or theory["jackson"]
        ref_name = "Chebyshev bound" if "ellipse_bound" in theory else "Jackson bound"
        for method in [*BASES, "taylor series"]:
            errors = entry["errors"][method]
            if errors is None:
                continue
            rows.append([name, method, *(f"{errors[i]:.2e}" for i in at)])
        rows.append([name, f"*{ref_name}*", *(f"*{ref[i]:.2e}*" for i in at)])
        if name == "relu":
            rows.append(
                [name, "*Bernstein β r/(2k)*", *(f"*{theory['bernstein'][i]:.2e}*" for i in at)]
            )
    table = markdown_table(["activation", "method", *(f"k = {k}" for k in TABLE_DEGREES)], rows)

    rate_rows = []
    for name in ACTIVATIONS:
        r = results[name]["rate"]
        measured = r["measured"]
        if r["kind"] == "algebraic":
            theory = "error ~ C/k (exponent 1)"
            cells = [f"k^-{measured[b]:.2f}" if measured[b] else "" for b in BASES]
        elif math.isfinite(r["theory"]):
            theory = f"ρ = {r['theory']:.3f}"
            cells = [f"ρ̂ = {measured[b]:.3f}" if measured[b] else "" for b in BASES]
        else:
            theory = "ρ = ∞ (entire)"
            split = r["split_degree"]
            cells = [
                "ρ̂ = {:.2f} (k ≤ {s}), {:.2f} (k ≥ {s})".format(*r["measured_low_high"][b], s=split)
                for b in BASES
            ]
        rate_rows.append([name, theory, *cells])
    rate_table = markdown_table(["activation", "theory", *BASES], rate_rows)

    high = [k for k in (24, 32, 40) if k in degrees]
    high_rows = [
        [name, basis, *(f"{results[name]['errors'][basis][degrees.index(k)]:.2e}" for k in high)]
        for name in ACTIVATIONS
        for basis in BASES
    ]
    high_table = markdown_table(["activation", "fit", *(f"k = {k}" for k in high)], high_rows)
    # How much evaluating the monomial coefficients in z (what an SLAF computes) adds.
    gap_rows = [
        [
            name,
            *(f"{results[name]['representation_gap'][b]:.1e}" for b in BASES),
            f"{results[name]['errors']['chebyshev'][-1]:.1e}",
        ]
        for name in ACTIVATIONS
    ]
    margin = {
        name: results[name]["errors"]["chebyshev"][-1]
        / max(results[name]["representation_gap"].values())
        for name in ACTIVATIONS
    }
    gap_table = markdown_table(
        ["activation", *(f"{b}: max gap" for b in BASES), f"error at k = {degrees[-1]}"], gap_rows
    )
    warned = sorted(
        {k for entry in results.values() for k in entry["ill_conditioned_from"].values()}
    )
    warned_text = (
        "The monomial *fit* is the weak point: it stalls (numpy warns that it is poorly "
        f"conditioned from degree {warned[0]} on)."
        if warned
        else f"Up to k = {degrees[-1]} the monomial fit keeps up with the others; it stalls "
        "past k = 30 (see the full run)."
    )
    md = f"""
Sup-norm error of degree-k polynomial approximations on [{INTERVAL[0]:g}, {INTERVAL[1]:g}]
(10,001-point grid), by `polynet.approximate`, for degrees {degrees[0]}..{degrees[-1]}.
Theory rows (italic) are upper bounds; for ReLU, Bernstein's asymptote is the true size of
the best error.

{table}

Rates, fitted over degrees {RATE_DEGREES[0]}..{RATE_DEGREES[1]} with error > {FLOOR:g}
(geometric: error ~ C ρ̂^-k; algebraic: error ~ C k^-p):

{rate_table}

The three fits span the same polynomials, so their errors agree until rounding: least
squares (legendre, taylor) minimises the mean-square error and is within a small factor of
the interpolant's sup error. The truncated Taylor *series* is another matter: tanh's series
diverges on [-3, 3] (its radius of convergence is π/2), sigmoid's and SiLU's converge slowly
(radius π), and GELU's needs high degree before the terms shrink. The paper's "Taylor" SLAF
basis is the monomial basis with learned coefficients, a fit, not the series.

At high degree the fits part ways: the monomial least-squares fit ("taylor") is
ill-conditioned (the Vandermonde matrix of 1, t, ..., t^k on [-1, 1] has a condition number
growing like (1 + √2)^k) and stalls, while Chebyshev interpolation and the Legendre fit go on
to rounding level:

{high_table}

An SLAF computes the polynomial in monomials of z (`ApproximationResult.coefficients`, what
`to_slaf` and the expander use), not the well-conditioned series the fit is stored as. The
largest difference between the two on [-3, 3] over degrees 1..{degrees[-1]}, against the
approximation error at the top degree:

{gap_table}

Converting a series to monomials cancels up to (1 + √2)^k-fold, so the gap grows where the
series' coefficients decay slowly (ReLU algebraically, tanh with the smallest ρ); it stays
below the approximation error at the top degree here, by a factor of {margin["relu"]:.2g} for
ReLU and {margin["tanh"]:.2g} for tanh at k = {degrees[-1]}, and is rounding for sigmoid,
GELU and SiLU. {warned_text}

![errors against degree]({figure})
"""
    run.write(
        {"interval": INTERVAL, "degrees": degrees, "results": results, "figures": [figure]}, md
    )
    for name in ACTIVATIONS:
        errs = results[name]["errors"]["chebyshev"]
        print(f"{name:8s} chebyshev error at k=4/8/16: " + ", ".join(f"{errs[i]:.2e}" for i in at))
    print(f"results in {run.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
