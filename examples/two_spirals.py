"""Two spirals: an SLNN (2 -> 20 -> 20 -> 1, degree-7 SLAFs) against ReLU + BatchNorm (2 -> 40 -> 40
-> 1), and the SLNN collapsed into one polynomial of degree 7 x 7 = 49 in (x0, x1).

The SLNN is trained with gradient clipping. Its SLAFs use the Chebyshev basis: with the Taylor
basis (z, z^2, ..., z^7, each normalised) the same network trains far worse in the same budget,
which the "SLNN (Taylor)" row shows. Either way each SLAF folds into a degree-7 polynomial, so
the network is a degree-49 polynomial in its two inputs: C(2 + 49, 49) = 1,275 monomials.

The inputs are standardised (training mean and standard deviation): the network, and so the
polynomial, sees u = (x - mean) / std. The polynomial is checked four ways:

1. ``polynet.verify``: float64 polynomial vs float64 forward pass on the test points and on
   points drawn from their bounding box;
2. the exact expansion (``polynet.expand(..., exact=True)``, rational coefficients): how far the
   float64 coefficients are from the exact ones (the expansion error);
3. the exact polynomial evaluated exactly (rationals) vs the network, at a subset of points;
4. the conditioning of evaluating a degree-49 polynomial in float64,
   eps * sum_r |c_r m_r(u)| / max |p|: the error float64 evaluation can make whatever the
   coefficients' accuracy.

The same is done for the polynomial in the raw coordinates x (the standardisation folded in as a
first linear layer), where the box is about [-14, 14]^2 and float64 evaluation of degree 49 is
far worse conditioned.

Run: ``python examples/two_spirals.py [--quick] [--out DIR] [--device DEV] [--seeds N]``.
"""

from __future__ import annotations

import sys
import time
from fractions import Fraction

import numpy as np
import torch
from harness import Run, markdown_table, mean_std, parse
from torch import nn

import polynet
from polynet import data, training

PAPER = (
    "not given (the paper shows two-spiral decision boundaries; we could not check a number of "
    "it here, so none is quoted)"
)
EPS64 = float(np.finfo(np.float64).eps)


def build(kind: str) -> nn.Module:
    if kind == "SLNN":
        return polynet.SLNN(2, [20, 20], 7, basis="chebyshev")
    if kind == "SLNN (Taylor)":
        return polynet.SLNN(2, [20, 20], 7, basis="taylor")
    return polynet.HybridNet(2, [40, 40], "relu")


MODELS = ("SLNN", "SLNN (Taylor)", "ReLU+BN")
#: Batch size per model: the best of 64 and 128 in a small sweep (lr 0.001 to 0.03) for each.
BATCH = {"SLNN": 64, "SLNN (Taylor)": 64, "ReLU+BN": 128}


def train(kind: str, ds: data.Dataset, seed: int, epochs: int, run: Run) -> tuple[nn.Module, dict]:
    torch.manual_seed(seed)
    net = build(kind)
    slnn = kind.startswith("SLNN")
    result = training.fit(
        net,
        ds,
        epochs=epochs,
        batch_size=BATCH[kind],
        lr=0.01,
        schedule="cosine",
        clip_norm=1.0 if slnn else None,
        device=run.device,
        seed=seed,
        progress=False,
    )
    return net, {
        "seed": seed,
        "test_accuracy": result.metrics["test_accuracy"],
        "train_accuracy": result.metrics["train_accuracy"],
        "epochs": len(result.history),
        "seconds": round(result.seconds, 1),
        "parameters": sum(p.numel() for p in net.parameters()),
    }


def exact_values(poly: polynet.NetworkPolynomial, points: np.ndarray) -> np.ndarray:
    """Evaluate an exact 2-variable polynomial exactly (rationals) at float points."""
    import flint

    coef = poly.exact_coefficients[0]
    exps = poly.exponents
    terms = [
        (int(a), int(b), flint.fmpq(c.numerator, c.denominator))
        for (a, b), c in zip(exps, coef)
        if c != 0
    ]
    out = []
    for x0, x1 in points:
        q0 = flint.fmpq(*Fraction(float(x0)).as_integer_ratio())
        q1 = flint.fmpq(*Fraction(float(x1)).as_integer_ratio())
        p0 = [flint.fmpq(1)]
        p1 = [flint.fmpq(1)]
        for _ in range(poly.degree):
            p0.append(p0[-1] * q0)
            p1.append(p1[-1] * q1)
        s = flint.fmpq(0)
        for a, b, c in terms:
            s += c * p0[a] * p1[b]
        out.append(float(Fraction(int(s.p), int(s.q))))
    return np.array(out)


# Double-double arithmetic (about 32 significant digits from pairs of float64, vectorised with
# numpy): the evaluation a degree-49 polynomial in the monomial basis needs where its terms
# cancel by 15 or more digits.
def _fast_two_sum(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    s = a + b
    return s, b - (s - a)


def _two_sum(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    s = a + b
    bb = s - a
    return s, (a - (s - bb)) + (b - bb)


def _split(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    c = 134217729.0 * a  # 2^27 + 1 (Dekker)
    hi = c - (c - a)
    return hi, a - hi


def _dd_mul(ah, al, bh, bl) -> tuple[np.ndarray, np.ndarray]:
    p = ah * bh
    (a1, a2), (b1, b2) = _split(ah), _split(bh)
    e = ((a1 * b1 - p) + a1 * b2 + a2 * b1) + a2 * b2
    return _fast_two_sum(p, e + (ah * bl + al * bh))


def _dd_add(ah, al, bh, bl) -> tuple[np.ndarray, np.ndarray]:
    s, e = _two_sum(ah, bh)
    return _fast_two_sum(s, e + (al + bl))


def evaluate_dd(
    poly: polynet.NetworkPolynomial, points: np.ndarray, chunk: int = 2048
) -> np.ndarray:
    """Evaluate an exact 2-variable polynomial at float points in double-double arithmetic."""
    coef = poly.exact_coefficients[0]
    c_hi = np.array([float(c) for c in coef])
    c_lo = np.array([float(c - Fraction(h)) for c, h in zip(coef, c_hi)])
    a, b = poly.exponents[:, 0], poly.exponents[:, 1]
    out = []
    for start in range(0, len(points), chunk):
        x = points[start : start + chunk]
        pows = []
        for v in range(2):
            hi = [np.ones(len(x))]
            lo = [np.zeros(len(x))]
            for _ in range(poly.degree):
                h, l_ = _dd_mul(hi[-1], lo[-1], x[:, v], np.zeros(len(x)))
                hi.append(h)
                lo.append(l_)
            pows.append((np.stack(hi, 1), np.stack(lo, 1)))
        mh, ml = _dd_mul(pows[0][0][:, a], pows[0][1][:, a], pows[1][0][:, b], pows[1][1][:, b])
        th, tl = _dd_mul(mh, ml, c_hi[None, :], c_lo[None, :])
        while th.shape[1] > 1:  # pairwise sum over the terms
            if th.shape[1] % 2:
                th = np.concatenate([th, np.zeros((len(x), 1))], 1)
                tl = np.concatenate([tl, np.zeros((len(x), 1))], 1)
            th, tl = _dd_add(th[:, 0::2], tl[:, 0::2], th[:, 1::2], tl[:, 1::2])
        out.append(th[:, 0] + tl[:, 0])
    return np.concatenate(out)


def analyse(model: nn.Module, X_check: np.ndarray, n_exact: int, label: str) -> tuple[dict, object]:
    """Expand ``model`` (float64 and exact) and measure the four errors described above."""
    model = model.cpu().double().eval()
    tic = time.perf_counter()
    poly = polynet.expand(model)
    float_seconds = time.perf_counter() - tic
    report = polynet.verify(model, poly, X_check)
    # verify's error is relative to max |net| over data and box; the box corners of a
    # degree-49 polynomial dwarf the values on the data, so also check the data alone.
    on_data = polynet.verify(model, poly, X_check, n_box=0)
    tic = time.perf_counter()
    exact = polynet.expand(model, exact=True)
    exact_seconds = time.perf_counter() - tic
    c_float = poly.coefficients.cpu().numpy()[0]
    c_exact = exact.coefficients.cpu().numpy()[0]  # the exact rationals rounded once
    coef_err = float(np.abs(c_float - c_exact).max() / np.abs(c_exact).max())

    lo, hi = X_check.min(0), X_check.max(0)
    # The exact checks below are made on the test points and relative to max |net| there:
    # the box corners, far from the spirals, reach ~1e17 and would hide errors on the data.
    pts = X_check
    with torch.no_grad():
        net_vals = model(torch.as_tensor(pts)).numpy().ravel()
    mono = poly.monomials(torch.as_tensor(pts)).cpu().numpy()
    abs_sum = np.abs(mono * c_exact).sum(1)  # sum_r |c_r m_r(x)|
    scale = float(np.abs(net_vals).max())
    cond_bound = float(EPS64 * abs_sum.max() / scale)

    sub = np.linspace(0, len(pts) - 1, n_exact).astype(int)
    tic = time.perf_counter()
    truth = exact_values(exact, pts[sub])
    exact_eval_seconds = time.perf_counter() - tic
    float_of_exact = exact(torch.as_tensor(pts[sub])).cpu().numpy().ravel()
    float_poly = poly(torch.as_tensor(pts[sub])).cpu().numpy().ravel()
    dd_poly = evaluate_dd(exact, pts[sub])
    return {
        "coordinates": label,
        "box_low": lo.tolist(),
        "box_high": hi.tolist(),
        "degree": poly.degree,
        "degree_bound": poly.degree_bound,
        "n_terms": poly.n_terms,
        "max_terms": poly.max_terms,
        "max_abs_coefficient": float(np.abs(c_exact).max()),
        "float_expand_seconds": round(float_seconds, 3),
        "exact_expand_seconds": round(exact_seconds, 2),
        "verify_max_rel_error": report.max_rel_error,
        "verify_passed": report.passed,
        "verify_points": report.n_data_points + report.n_box_points,
        "verify_test_points_only_max_rel_error": on_data.max_rel_error,
        "verify_test_points_only_passed": on_data.passed,
        "coefficient_rel_error_float_vs_exact": coef_err,
        "exact_points": int(n_exact),
        "exact_eval_seconds": round(exact_eval_seconds, 2),
        "exact_poly_vs_net_rel_error": float(np.abs(truth - net_vals[sub]).max() / scale),
        "float_eval_of_exact_coefficients_rel_error": float(
            np.abs(float_of_exact - truth).max() / scale
        ),
        "float_poly_vs_exact_poly_rel_error": float(np.abs(float_poly - truth).max() / scale),
        "float64_evaluation_bound_rel": cond_bound,
        "double_double_eval_vs_exact_rel_error": float(np.abs(dd_poly - truth).max() / scale),
    }, exact


def draw(
    run: Run, ds: data.Dataset, nets: dict[str, nn.Module], poly, poly_name: str, n: int
) -> dict:
    """Decision regions of each network and of the SLNN's polynomial, in raw coordinates.

    The polynomial is drawn twice: evaluated in double-double arithmetic (it must coincide with
    its network) and in plain float64 (where cancellation between its terms shows).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scaler = ds.scaler
    raw_train = scaler.inverse_transform(ds.X_train)
    lo, hi = raw_train.min(0), raw_train.max(0)
    gx, gy = np.meshgrid(np.linspace(lo[0], hi[0], n), np.linspace(lo[1], hi[1], n))
    u = scaler.transform(np.stack([gx.ravel(), gy.ravel()], 1))
    panels = []
    for name, net in nets.items():
        net = net.cpu().double().eval()
        with torch.no_grad():
            panels.append((f"{name} network", net(torch.as_tensor(u)).numpy().ravel()))
    net_vals = dict(panels)[f"{poly_name} network"]
    tic = time.perf_counter()
    dd_vals = evaluate_dd(poly, u)
    dd_seconds = time.perf_counter() - tic
    float_vals = poly(torch.as_tensor(u)).cpu().numpy().ravel()
    dd_disagree = int(((dd_vals > 0) != (net_vals > 0)).sum())
    float_disagree = int(((float_vals > 0) != (net_vals > 0)).sum())
    panels.append(
        (
            f"{poly_name} polynomial, degree {poly.degree}, double-double eval.\n"
            f"sign differs from the network at {dd_disagree} of {n * n} points",
            dd_vals,
        )
    )
    panels.append(
        (
            f"the same polynomial, plain float64 eval.\n"
            f"sign differs from the network at {float_disagree} of {n * n} points",
            float_vals,
        )
    )

    fig, axes = plt.subplots(1, len(panels), figsize=(4.4 * len(panels), 4.8))
    X_test = scaler.inverse_transform(ds.X_test)
    for ax, (title, vals) in zip(axes, panels):
        z = vals.reshape(gx.shape)
        ax.contourf(gx, gy, z > 0, levels=[-0.5, 0.5, 1.5], colors=["#cfe0f3", "#f6d0c8"])
        ax.contour(gx, gy, z, levels=[0], colors="k", linewidths=0.6)
        for label, colour in ((0, "tab:blue"), (1, "tab:red")):
            pts = X_test[ds.y_test == label]
            ax.scatter(pts[:, 0], pts[:, 1], s=3, c=colour)
        ax.set_title(title, fontsize=8.5)
        ax.set_aspect("equal")
    fig.suptitle("Two spirals: decision regions over the training data's box (test points shown)")
    fig.tight_layout(rect=(0, 0, 1, 0.92))
    path = run.figure_path("two_spirals.png")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return {
        "figure": path.name,
        "grid_points": n * n,
        "sign_disagreements_double_double": dd_disagree,
        "sign_disagreements_float64": float_disagree,
        "double_double_seconds": round(dd_seconds, 1),
        "max_abs_dd_minus_net_on_grid": float(np.abs(dd_vals - net_vals).max()),
        "max_abs_net_on_grid": float(np.abs(net_vals).max()),
    }


def main(argv: list[str] | None = None) -> int:
    run = parse("two_spirals", __doc__.splitlines()[0], argv, full_seeds=3, quick_seeds=1)
    torch.set_num_threads(1)  # tiny networks: one thread avoids oversubscription
    epochs = 30 if run.quick else 300
    n_exact = 30 if run.quick else 200
    ds = data.two_spirals(2000, random_state=0).standardize()
    print(f"two spirals: {len(ds.X_train)} train / {len(ds.X_test)} test, {run.seeds} seed(s)")

    results: dict[str, list[dict]] = {m: [] for m in MODELS}
    first: dict[str, nn.Module] = {}
    for seed in range(run.seeds):
        for kind in MODELS:
            net, res = train(kind, ds, seed, epochs, run)
            results[kind].append(res)
            first.setdefault(kind, net)
            print(
                f"  seed {seed} {kind:14s} test accuracy {res['test_accuracy']:.4f} "
                f"({res['seconds']} s)",
                flush=True,
            )

    count = polynet.count_terms(first["SLNN"])
    analyses = {}
    polys = {}
    for kind in ("SLNN", "SLNN (Taylor)"):
        std, polys[kind] = analyse(first[kind], ds.X_test, n_exact, "standardised u")
        raw_model = nn.Sequential(ds.scaler.as_linear(), *first[kind].cpu().double())
        raw, _ = analyse(raw_model, ds.scaler.inverse_transform(ds.X_test), n_exact, "raw x")
        analyses[kind] = {"standardised": std, "raw": raw}
    grid = draw(
        run,
        ds,
        {"ReLU+BN": first["ReLU+BN"], "SLNN": first["SLNN"]},
        polys["SLNN"],
        "SLNN",
        120 if run.quick else 300,
    )

    summary = {}
    rows = []
    for kind in MODELS:
        acc = mean_std([r["test_accuracy"] for r in results[kind]])
        summary[kind] = {"test_accuracy_mean": acc[0], "test_accuracy_std": acc[1]}
        rows.append(
            [
                kind,
                "2-20-20-1, k=7, clip 1" if kind.startswith("SLNN") else "2-40-40-1, BN",
                results[kind][0]["parameters"],
                f"{acc[0]:.4f} ± {acc[1]:.4f}" if run.seeds > 1 else f"{acc[0]:.4f} (1 seed)",
                f"{mean_std([r['train_accuracy'] for r in results[kind]])[0]:.4f}",
                "not given",
            ]
        )
    table = markdown_table(
        ["model", "architecture", "parameters", "test accuracy (final epoch)", "train", "paper"],
        rows,
    )
    vrows = []
    for kind, pair in analyses.items():
        for a in pair.values():
            vrows.append(
                [
                    kind,
                    a["coordinates"],
                    f"[{a['box_low'][0]:.1f}, {a['box_high'][0]:.1f}] x "
                    f"[{a['box_low'][1]:.1f}, {a['box_high'][1]:.1f}]",
                    f"{a['degree']} / {a['n_terms']:,}",
                    f"{a['max_abs_coefficient']:.2e}",
                    f"{a['verify_max_rel_error']:.1e}",
                    f"{a['verify_test_points_only_max_rel_error']:.1e}",
                    f"{a['coefficient_rel_error_float_vs_exact']:.1e}",
                    f"{a['exact_poly_vs_net_rel_error']:.1e}",
                    f"{a['float_eval_of_exact_coefficients_rel_error']:.1e}",
                    f"{a['float64_evaluation_bound_rel']:.1e}",
                    f"{a['double_double_eval_vs_exact_rel_error']:.1e}",
                ]
            )
    vtable = markdown_table(
        [
            "model",
            "variables",
            "box",
            "degree / terms",
            "max abs coef.",
            "verify (float poly vs net)",
            "verify, test points only",
            "coef. error float vs exact",
            "exact poly, exact eval, vs net",
            "float eval of exact coef.",
            "float64 eval. bound",
            "double-double eval. vs exact",
        ],
        vrows,
    )
    s = analyses["SLNN"]["standardised"]
    md = f"""
{len(ds.X_train)} training / {len(ds.X_test)} test points (the two-spirals generator of
`polynet.data.two_spirals`, inputs standardised), {run.seeds} seed(s), {epochs} epochs of Adam
(lr 0.01, cosine schedule; batch 64 for the SLNNs, 128 for ReLU+BN, each the better of the two
in a small sweep; the SLNNs with gradient clipping at norm 1). Test accuracy is that of the
final epoch's weights; mean ± sample standard deviation over seeds.

{table}

**The SLNN as a polynomial (seed 0).** Theorem 2: degree ≤ {count.degree_bound} = 7 × 7, so at
most C(2 + 49, 49) = {count.max_terms:,} coefficients, against the network's
{count.n_parameters:,} parameters. `polynet.expand` gives degree {s["degree"]} with
{s["n_terms"]:,} non-zero terms in {s["float_expand_seconds"]} s (exact rationals:
{s["exact_expand_seconds"]} s). The first "verify" column is `polynet.verify` as it is: the
{s["verify_points"]:,} test and bounding-box points, error relative to max |net| over all of
them. Every other column is on the {len(ds.X_test)} test points, relative to max |net| there
(the exact columns use {s["exact_points"]} of them).

{vtable}

Reading the table: "coef. error float vs exact" is the expansion error alone; "exact poly, exact
eval, vs net" says whether the polynomial is the network (it is, up to the network's own float64
rounding); "float eval of exact coef." and the "float64 eval. bound" (eps · max Σ|c_r m_r(x)|)
are the conditioning of evaluating a degree-49 polynomial in float64: that, not the expansion,
is what `verify` measures. With its bounding box, whose corners (far from the spirals) reach
~10^17, the relative error looks tiny; on the test points alone ("verify, test points only")
float64 evaluation of the Chebyshev-trained SLNN's polynomial is wrong by O(1), while the exact
and double-double evaluations of the same coefficients match the network.

**Figure.** Over a {grid["grid_points"]:,}-point grid of the training data's box, the SLNN's
polynomial evaluated in double-double arithmetic differs in sign from the network at
{grid["sign_disagreements_double_double"]} points (max |p − net| / max |net| on the grid:
{grid["max_abs_dd_minus_net_on_grid"] / grid["max_abs_net_on_grid"]:.1e});
evaluated in plain float64 it disagrees at {grid["sign_disagreements_float64"]} points: near the
edges of the box its terms reach ~10^17 and cancel to values of order 1, beyond float64.

Paper: {PAPER}.

![decision boundaries]({grid["figure"]})
"""
    run.write(
        {
            "paper": PAPER,
            "n_train": len(ds.X_train),
            "n_test": len(ds.X_test),
            "epochs": epochs,
            "results": results,
            "summary": summary,
            "theorem2": {k: v for k, v in count.as_dict().items() if k != "layers"},
            "polynomial": analyses,
            "grid": grid,
            "figures": [grid["figure"]],
        },
        md,
    )
    print(
        f"SLNN polynomial: degree {s['degree']}, {s['n_terms']} terms; verify max rel error "
        f"{s['verify_max_rel_error']:.1e} (standardised), "
        f"{analyses['SLNN']['raw']['verify_max_rel_error']:.1e} (raw coordinates)"
    )
    print(f"results in {run.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
