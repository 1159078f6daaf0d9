"""The ``polynet`` command: a thin shell over the library's public functions.

Each subcommand is a pair of functions, ``_add_<name>_parser(subparsers)`` (its flags, named
after the parameters of the function it calls, with that function's defaults) and
``_cmd_<name>(args) -> int`` (calls the function, prints results to stdout), registered in
:data:`COMMANDS`. Messages and progress go to stderr. A :class:`~polynet.errors.PolynetError`
prints its message and exits 1; bad usage exits 2; ``--debug`` shows tracebacks.

Examples
--------
>>> main(["train", "--dataset", "xor", "--hidden", "4", "--degrees", "2", "--epochs", "2",
...       "--no-progress"])  # doctest: +ELLIPSIS
dataset      xor: classification, 320 train / 80 test, 2 features
...
0
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from typing import Any

from polynet.errors import PolynetError
from polynet.threads import limit_threads

__all__ = ["main", "COMMANDS"]


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text}")
    return value


def _key_value(text: str) -> tuple[str, Any]:
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw  # a bare string such as a path
    return key.replace("-", "_"), value


_MODEL_HELP = (
    "the model: a polynet checkpoint (model.safetensors or its directory), a torch.export "
    "archive (.pt2, from torch.export.save or polynet.save), an ONNX file (.onnx), or "
    "module:Class / file.py:Class with --state-dict and --init-args"
)


def _add_model_arguments(p: argparse.ArgumentParser, input_shape: bool = True) -> None:
    """The model argument every command takes (polynet.model_source.resolve)."""
    p.add_argument("checkpoint", metavar="MODEL", help=_MODEL_HELP)
    g = p.add_argument_group("a model given as module:Class")
    g.add_argument("--state-dict", default=None, help="its weights (.pt or .safetensors)")
    g.add_argument(
        "--init-args", default=None, help="its constructor arguments as JSON, e.g. '{\"n\": 4}'"
    )
    if input_shape:
        from polynet.input_shape_flag import InputShapeAction

        p.add_argument(
            "--input-shape",
            action=InputShapeAction,
            nargs="+",
            default=None,
            metavar="SHAPE",
            help="shape of one input sample without the batch axis, when the model does not "
            "record it (1 28 28); for a forward() taking several tensors, one shape per "
            "argument, by name (x=3 y=2,2) or in order (3 2,2)",
        )


def _add_data_arguments(p: argparse.ArgumentParser, what: str) -> None:
    g = p.add_argument_group("data of your own")
    g.add_argument(
        "--data",
        default=None,
        metavar="FILE",
        help=f"{what} from this file (CSV with a header, NPZ with X/y, or Parquet) instead of "
        "the data set the model records",
    )
    g.add_argument("--target", default=None, help="the target column of --data (left out)")


def _source(args: argparse.Namespace) -> Any:
    from polynet.model_source import resolve

    return resolve(
        args.checkpoint,
        state_dict=args.state_dict,
        init_args=args.init_args,
        input_shape=getattr(args, "input_shape", None),
        device=getattr(args, "device", None),
    )


def _points(source: Any, args: argparse.Namespace, instead: str) -> Any:
    from polynet.model_source import points

    found = points(source, getattr(args, "data", None), getattr(args, "target", None))
    if found.X is None:
        print(f"note: {found.note} {instead}", file=sys.stderr)
    return found


# --------------------------------------------------------------------------------------------
# polynet train
# --------------------------------------------------------------------------------------------


def _add_train_parser(subparsers: Any) -> argparse.ArgumentParser:
    from polynet.bases import BASES
    from polynet.data import LOADERS
    from polynet.data.registry import NEEDS_EXTRA
    from polynet.extras import install_hint

    extras = "; ".join(f"{n} needs {install_hint(m)}" for n, m in sorted(NEEDS_EXTRA.items()))

    p = subparsers.add_parser(
        "train",
        help="train an SLNN on a data set and write a checkpoint",
        description="Train an SLNN (Linear, SLAF, ..., Linear) with polynet.training.fit and "
        "write OUT/model.safetensors with the data set, standardizers, history and metrics "
        "in its metadata. Inputs (and regression targets) are standardised with training-set "
        "statistics unless --no-standardize.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    d = p.add_argument_group("data")
    d.add_argument(
        "--dataset",
        default=None,
        choices=sorted(LOADERS),
        help=f"data set name ({extras}; mnist and fashion-mnist read the files named by "
        "--dataset-arg path=...)",
    )
    d.add_argument(
        "--data",
        default=None,
        metavar="FILE",
        help="your own data instead of --dataset: a CSV with a header, an NPZ with X/y, or "
        "Parquet (80/20 seeded split; --dataset-arg test_size=..., random_state=...)",
    )
    d.add_argument("--target", default=None, help="the target column of --data")
    d.add_argument(
        "--task", choices=["regression", "classification"], default=None, help="of --data"
    )
    d.add_argument(
        "--dataset-arg",
        metavar="KEY=VALUE",
        type=_key_value,
        action="append",
        default=[],
        help="a loader option, e.g. path=../shared/data/mnist-t10k or n_samples=500 "
        "(repeatable; VALUE is read as JSON when it parses)",
    )
    d.add_argument(
        "--standardize",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="standardise inputs, and regression targets, with training-set statistics",
    )
    m = p.add_argument_group("model")
    m.add_argument("--hidden", type=_positive_int, nargs="+", default=[128, 64], help="widths")
    m.add_argument(
        "--degrees", type=_positive_int, nargs="+", default=[4, 2], help="SLAF degree per layer"
    )
    m.add_argument("--basis", choices=sorted(BASES), default="taylor", help="SLAF basis")
    m.add_argument("--share", choices=["layer", "channel"], default="layer", help="coefficients")
    m.add_argument("--gate", action="store_true", help="sigmoid-gated SLAF coefficients")
    t = p.add_argument_group("training (polynet.training.fit)")
    t.add_argument("--epochs", type=_positive_int, default=100)
    t.add_argument("--batch-size", type=_positive_int, default=64)
    t.add_argument("--optimizer", choices=["adam", "sgd"], default="adam")
    t.add_argument("--lr", type=float, default=1e-3)
    t.add_argument("--activation-lr", type=float, default=None, help="learning rate of SLAFs")
    t.add_argument("--momentum", type=float, default=0.9, help="SGD momentum")
    t.add_argument("--weight-decay", type=float, default=0.0)
    t.add_argument("--l1", type=float, default=0.0, help="L1 penalty on SLAF coefficients")
    t.add_argument("--l2", type=float, default=0.0, help="L2 penalty on SLAF coefficients")
    t.add_argument("--clip-norm", type=float, default=None, help="clip the gradient norm")
    t.add_argument("--schedule", choices=["constant", "step", "cosine"], default="constant")
    t.add_argument("--step-size", type=_positive_int, default=None, help="epochs per step")
    t.add_argument("--gamma", type=float, default=0.1, help="step schedule factor")
    t.add_argument("--patience", type=_positive_int, default=None, help="early stopping")
    t.add_argument("--val-fraction", type=float, default=None, help="validation split")
    t.add_argument("--monitor", choices=["val", "test"], default="val", help="early stopping")
    t.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    t.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    t.add_argument("--seed", type=int, default=0, help="seeds the model and the training")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--out", default=None, help="directory for model.safetensors")
    return p


def _train_data(args: argparse.Namespace) -> tuple[str]:
    """The loader name for --dataset or --data (whose path and target go in --dataset-arg)."""
    if (args.dataset is None) == (args.data is None):
        raise ValueError("give either --dataset NAME or --data FILE --target COLUMN.")
    if args.data is None:
        return (args.dataset,)
    if args.target is None:
        raise ValueError(f"--data {args.data} needs --target COLUMN (the column to predict).")
    args.dataset_arg += [("path", args.data), ("target", args.target)]
    if args.task:
        args.dataset_arg.append(("task", args.task))
    return ("file",)


def _cmd_train(args: argparse.Namespace) -> int:
    import torch

    from polynet import data, training
    from polynet.nets import SLNN

    name = _train_data(args)  # adds --data's path and target to --dataset-arg
    ds = data.load(*name, **dict(args.dataset_arg))
    if args.standardize:
        ds = ds.standardize(targets=ds.task == "regression")
    if ds.X_train.ndim != 2:
        raise ValueError(
            f"--dataset {ds.name} has image-shaped inputs {ds.X_train.shape[1:]}; an SLNN "
            "needs flat inputs: drop --dataset-arg flatten=false."
        )
    out_features = 1 if ds.task == "regression" else ds.n_classes
    dtype = getattr(torch, args.dtype)
    torch.manual_seed(args.seed)
    model = SLNN(
        ds.n_features,
        args.hidden,
        args.degrees,
        out_features,
        args.basis,
        share=args.share,
        gate=args.gate,
        dtype=dtype,
    )
    n_params = sum(p.numel() for p in model.parameters())
    split = f"{len(ds.X_train)} train / {len(ds.X_test)} test"
    print(f"dataset      {ds.name}: {ds.task}, {split}, {ds.n_features} features")
    print(
        f"model        SLNN {ds.n_features} -> {args.hidden} -> {out_features}, "
        f"degrees {model.config['degrees']}, {args.basis} basis, {n_params} parameters"
    )
    sys.stdout.flush()
    options = training.FitOptions(
        epochs=args.epochs,
        batch_size=args.batch_size,
        optimizer=args.optimizer,
        lr=args.lr,
        activation_lr=args.activation_lr,
        momentum=args.momentum,
        weight_decay=args.weight_decay,
        l1=args.l1,
        l2=args.l2,
        clip_norm=args.clip_norm,
        schedule=args.schedule,
        step_size=args.step_size,
        gamma=args.gamma,
        patience=args.patience,
        val_fraction=args.val_fraction,
        monitor=args.monitor,
        device=args.device,
        dtype=dtype,
        seed=args.seed,
        threads=args.threads,
        progress=not args.no_progress,
        out=args.out,
        metadata={"command": "polynet " + shlex.join(args.argv)},
    )
    result = training.fit(model, ds, options)
    print(
        f"stopped      {result.stopped} after {len(result.history)} epochs "
        f"(weights of epoch {result.best_epoch}), {result.seconds:.1f} s on {result.device}"
    )
    for key, value in result.metrics.items():
        if value is not None and key.endswith(result.metric):
            print(f"{key:<12} {value:.4f}")
    if result.checkpoint is not None:
        print(f"checkpoint   {result.checkpoint}")
    return 0


# --------------------------------------------------------------------------------------------
# polynet expand / polynet verify
# --------------------------------------------------------------------------------------------


def _add_expand_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "expand",
        help="expand a trained network into one explicit polynomial",
        description="Expand the checkpoint's network with polynet.expand and print its degree "
        "against its propagated bound D (prod k for a chain), its number of terms against "
        "C(n+D, D), the time taken, the "
        "largest terms and the Theorem 2 table. The polynomial is in the model's own inputs "
        "(standardised when the model was trained on standardised data).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    _add_model_arguments(p)
    p.add_argument(
        "--exact",
        nargs="?",
        const=True,
        default=False,
        choices=[True, "modular", "flint", "sympy"],
        type=lambda v: v,
        metavar="ENGINE",
        help="exact rational arithmetic (optionally the engine: modular, flint, sympy)",
    )
    p.add_argument(
        "--out",
        default=None,
        help="a directory for the export bundle (polynomial.npz, coefficients.csv, "
        "polynomial.tex, summary.json with the input and output scaling, polynomial.onnx, "
        "polynomial_numpy.py), or a .npz/.json file for the polynomial alone, or a "
        ".zarr store written block by block (for expansions larger than memory)",
    )
    p.add_argument(
        "--latex", default=None, help="write the LaTeX of the --top largest terms to this file"
    )
    p.add_argument(
        "--top", type=_positive_int, default=10, help="largest terms to print (and in --latex)"
    )
    _add_data_arguments(p, "the box of --raw-units' condition number")
    p.add_argument("--inputs", type=int, nargs="+", default=None, help="expand in these only")
    p.add_argument(
        "--fixed",
        type=float,
        nargs="+",
        default=None,
        help="values of all inputs (those in --inputs are ignored); default: 0, the training "
        "mean of standardised inputs",
    )
    p.add_argument(
        "--raw-units",
        action="store_true",
        help="fold the data set's standardisation into the network: the polynomial is in the "
        "original features (named after them) and the target's original units",
    )
    p.add_argument(
        "--degree",
        type=_positive_int,
        default=None,
        help="only the exact part of degree <= DEGREE (the Taylor polynomial of that degree), "
        "for any number of inputs",
    )
    p.add_argument(
        "--at",
        default=None,
        metavar="ROW",
        help="expand around a point, in u = x - x0: 'test:I' or 'train:I' (row I of the "
        "checkpoint's data split, in the model's inputs), a bare I (= test:I), or the n input "
        "values separated by commas",
    )
    p.add_argument("--max-memory", default=None, help="memory budget, e.g. 4GiB")
    p.add_argument("--device", default=None, help="where to compute (default: cpu)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def _cmd_expand(args: argparse.Namespace) -> int:
    import polynet
    from polynet import export

    source = _source(args)
    fixed = None
    if args.inputs is not None:
        fixed = args.fixed if args.fixed is not None else [0.0] * _n_inputs(source)
    elif args.fixed is not None:
        raise ValueError("--fixed only applies together with --inputs.")
    to_store = _is_store(args.out)
    if to_store and args.raw_units:
        raise ValueError("--raw-units cannot write a .zarr store yet; drop one of the two.")
    options = dict(
        exact=args.exact,
        inputs=args.inputs,
        fixed=fixed,
        max_memory=args.max_memory,
        progress=not args.no_progress,
        store=args.out if to_store else None,
    )
    if args.degree is not None or args.at is not None:
        if args.raw_units:
            raise ValueError("--raw-units does not combine with --degree or --at yet.")
        from polynet.expansion.truncated import point_from_checkpoint

        at = None if args.at is None else point_from_checkpoint(source, args.at)
        options.update(degree=args.degree, at=at, progress=False)
    if args.raw_units:
        poly = export.expand_raw_units(source, **options)
    else:
        poly = polynet.expand(source.model, input_shape=source.input_shape, **options)
        info = dict(source.metadata or {}).get("dataset") or {}
        if not to_store:  # one naming scheme: feature names when known (a store keeps its own)
            poly = export.name_variables(poly, info.get("feature_names") or [])
    print(export.scaling_note(source.metadata, raw_units=args.raw_units))
    _print_polynomial(poly, args.top)
    if args.raw_units:
        x = _points(source, args, "The raw-unit condition needs the data's box: --data.").X
        if x is not None:
            condition = export.raw_units_condition(poly, source, x)
            print(condition.describe())
            condition.warn()
    print()
    print(polynet.count_terms(source.model, source.input_shape).table())
    _write_outputs(poly, args, source.metadata)
    return 0


def _write_outputs(poly: Any, args: argparse.Namespace, metadata: Any = None) -> None:
    """The --latex file and the --out bundle (a .zarr store was written by expand itself)."""
    from polynet import export

    if args.latex:
        export.write_latex(poly, args.latex, top=args.top)
        print(f"latex        {args.latex} (the {args.top} largest terms)")
    if _is_store(args.out):
        print(f"wrote        {poly.path}")
    elif args.out:
        for path in export.write_bundle(poly, args.out, metadata=metadata):
            print(f"wrote        {path}")


def _is_store(out: str | None) -> bool:
    return bool(out) and str(out).rstrip("/").endswith(".zarr")


def _n_inputs(source: Any) -> int:
    from polynet.expansion.count import count_terms

    return count_terms(source.model, source.input_shape).n_vars


def _print_polynomial(poly: Any, top: int) -> None:
    from polynet.expansion.truncated import describe

    made = poly.provenance
    print(f"polynomial   {poly.n_outputs} output(s) in {poly.n_vars} variables")
    several = poly.notes.get("input_shapes")  # a forward() taking several tensors
    if several and getattr(poly, "slice", None) is None:  # a slice names its own variables
        from polynet.expansion.inputs import Inputs

        for i, line in enumerate(Inputs.from_notes(several).blocks()):
            print(f"{'inputs' if i == 0 else '':<12} {line}")
    part = describe(poly)
    if part is not None:
        print(f"this is      {part}")
    print(f"degree       {poly.degree} (bound D = {poly.degree_bound})")
    if part is not None and poly.index.degree < poly.degree_bound:
        n, q = poly.n_vars, poly.index.degree
        print(
            f"terms        {poly.n_terms:,} non-zero of C(n+q, q) = C({n}+{q}, {q}) = "
            f"{poly.index.size:,} (C(n+D, D) = {poly.max_terms:.3g})"
        )
    else:
        print(f"terms        {poly.n_terms:,} non-zero of C(n+D, D) = {poly.max_terms:,}")
    print(f"network      {poly.n_network_parameters:,} parameters")
    seconds = float("nan") if made.seconds is None else made.seconds
    print(f"time         {seconds:.3f} s ({made.engine or ''}, {made.device})")
    for o in range(poly.n_outputs):
        label = f" of output {o}" if poly.n_outputs > 1 else ""
        print(f"largest {min(top, poly.n_terms)} terms{label}:")
        for term in poly.terms(top=top, output=o):
            print(f"  {term.coefficient:+.6e}  {term.monomial}")


def _add_verify_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "verify",
        help="check a network polynomial against the network's forward pass",
        description="Run the checkpoint's network in float64 evaluation mode and its "
        "polynomial on the training and test points of its data set and on points sampled "
        "from their bounding box (polynet.verify); print the report and exit 1 if it fails.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    _add_model_arguments(p)
    _add_data_arguments(p, "the points to check")
    p.add_argument(
        "--poly",
        default=None,
        help="the polynomial: a .npz/.json file, an export directory or a .zarr store "
        "(default: expand now)",
    )
    p.add_argument("--tol", type=float, default=None, help="relative tolerance (default 1e-8)")
    p.add_argument("--n-box", type=_positive_int, default=1000, help="points from the box")
    p.add_argument("--device", default=None, help="where to evaluate (default: cpu)")
    p.add_argument("--max-memory", default=None, help="memory budget, e.g. 4GiB")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def _cmd_verify(args: argparse.Namespace) -> int:
    from pathlib import Path

    import polynet
    from polynet.data import Standardizer
    from polynet.export import raw_units_model
    from polynet.verify import DEFAULT_TOL

    source = _source(args)
    if args.poly is None:
        poly = polynet.expand(source.model, input_shape=source.input_shape)
    else:
        path = Path(args.poly)
        if path.suffix == ".zarr":
            from polynet.polynomial.store import open_store

            poly = open_store(path)
        else:
            poly = polynet.NetworkPolynomial.load(
                path / "polynomial.npz" if path.is_dir() else path
            )
    raw = bool(getattr(poly, "raw_units", False))
    model = raw_units_model(source)[0] if raw else source.model
    x = _points(source, args, "Verifying on the box [-1, 1]^n only.").X
    if x is not None:
        scaler = source.dataset.get("scaler")
        if raw and scaler:
            x = Standardizer.from_dict(scaler).inverse_transform(x)
        if poly.slice is not None:
            x = x[:, list(poly.slice.inputs)]
    tol = DEFAULT_TOL if args.tol is None else args.tol
    report = polynet.verify(
        model,
        poly,
        x,
        tol=tol,
        n_box=args.n_box,
        device=args.device,
        progress=not args.no_progress,
        max_memory=args.max_memory,
    )
    print(report)
    return 0 if report.passed else 1


# --------------------------------------------------------------------------------------------
# polynet plot / polynet report
# --------------------------------------------------------------------------------------------


def _add_plot_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "plot",
        help="draw the learned activations of a trained network",
        description="Draw every SLAF of the checkpoint's network with "
        "polynet.plots.plot_activations: each over the range its inputs take on the training "
        "split of the checkpoint's data set (running mean +- 3 sigma when the data cannot be "
        "reloaded, or with --no-data), the histogram of those inputs, and the nearest standard "
        "activation. The suffix of --out picks the format (.png, .svg, .pdf).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    _add_model_arguments(p)
    _add_data_arguments(p, "the SLAF input ranges and histograms")
    p.add_argument("--out", default="activations.png", help="the figure file to write")
    p.add_argument("--layers", nargs="+", default=None, help="SLAF layers by name (default all)")
    p.add_argument("--units", type=int, nargs="+", default=None, help="channels to draw")
    p.add_argument("--max-panels", type=_positive_int, default=16, help="most panels")
    p.add_argument(
        "--no-fit-nearest", action="store_true", help="do not fit the nearest standard activation"
    )
    p.add_argument("--no-data", action="store_true", help="use the running statistics only")
    return p


def _cmd_plot(args: argparse.Namespace) -> int:
    from polynet import plots

    source = _source(args)
    source.check_drawable()
    model = source.model
    if isinstance(source.input_shape, dict):  # several inputs: data rows are concatenated
        from polynet.expansion.inputs import SplitInputs

        model = SplitInputs(model, source.input_shape)
    x = None
    if not args.no_data:
        x = _points(source, args, "Drawing over the running statistics instead.").X_train
    plots.plot_activations(
        model,
        x,
        args.out,
        layers=args.layers,
        units=args.units,
        max_panels=args.max_panels,
        fit_nearest=not args.no_fit_nearest,
    )
    print(f"wrote        {args.out}")
    return 0


def _add_report_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "report",
        help="write an HTML and Markdown report on a trained network",
        description="Write OUT/report.html (self-contained) and OUT/report.md (figures beside "
        "it) with polynet.report.report: architecture and parameter counts, training curves, "
        "the Theorem 2 table, the expansion and its verification on the checkpoint's data set, "
        "the largest terms, the degree profile, a slice, and the learned activations. A part "
        "that cannot be made (a ReLU or EMFN layer, an expansion over --max-memory) is "
        "reported with its reason.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    _add_model_arguments(p)
    _add_data_arguments(p, "the points to verify on and draw from")
    p.add_argument("--out", required=True, help="directory for the report")
    p.add_argument("--max-memory", default="2GiB", help="memory budget of the expansion")
    p.add_argument("--top", type=_positive_int, default=20, help="largest terms to list")
    p.add_argument("--max-panels", type=_positive_int, default=16, help="activation panels")
    p.add_argument("--title", default=None, help="report title")
    return p


def _cmd_report(args: argparse.Namespace) -> int:
    from polynet.report import report

    source = _source(args)
    given, data = source.model, None
    if source.kind == "checkpoint" and args.data is None:
        given = source.path  # the report reads the history and the data set from the file
    else:
        found = _points(source, args, "The report verifies on the box [-1, 1]^n only.")
        if found.X is not None:
            data = found.X if found.y is None else (found.X, found.y)
    path = report(
        given,
        args.out,
        data=data,
        max_memory=args.max_memory,
        top=args.top,
        max_panels=args.max_panels,
        title=args.title,
        input_shape=source.input_shape if source.kind in ("class", "module", "onnx") else None,
    )
    print(f"wrote        {path}")
    print(f"wrote        {path.with_name('report.md')}")
    return 0


# --------------------------------------------------------------------------------------------
# polynet analyze
# --------------------------------------------------------------------------------------------


def _add_analyze_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "analyze",
        help="Sobol indices, interactions and sparsification of a network's polynomial",
        description="Expand the checkpoint's network and analyse its polynomial with "
        "polynet.analysis.analyze: exact Sobol indices (first order, total, pairwise) for "
        "independent inputs, uniform on the data's box or normal with the data's mean and std "
        "(standardised units when the network was trained on standardised inputs; [-1, 1] or "
        "standard normal when the data cannot be reloaded), the largest pairwise "
        "interactions, and the fewest terms whose dropped part is certified within tol on the "
        "box, with the error-vs-terms curve. --out writes analysis.md, analysis.json and the "
        "figures.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    _add_model_arguments(p)
    _add_data_arguments(p, "the inputs' box (uniform) or moments (normal)")
    p.add_argument("--distribution", choices=["uniform", "normal"], default="uniform")
    p.add_argument("--out", default=None, help="directory for analysis.md/.json and figures")
    p.add_argument("--tol", type=float, default=None, help="absolute sparsification tolerance")
    p.add_argument("--rtol", type=float, default=1e-2, help="tolerance relative to the output std")
    p.add_argument("--top", type=_positive_int, default=10, help="pairwise interactions to list")
    p.add_argument("--output", type=int, default=0, help="which output to describe")
    p.add_argument("--max-memory", default="2GiB", help="memory budget of the expansion")
    return p


def _cmd_analyze(args: argparse.Namespace) -> int:
    import polynet
    from polynet.analysis import analyze

    source = _source(args)
    poly = polynet.expand(source.model, max_memory=args.max_memory, input_shape=source.input_shape)
    found = _points(source, args, "Using the default distribution.")
    X, names = found.X, None
    if found.feature_names is not None and len(found.feature_names) == poly.n_vars:
        names = list(found.feature_names)
    result = analyze(
        poly,
        args.out,
        X=X,
        distribution=args.distribution,
        tol=args.tol,
        rtol=args.rtol,
        top=args.top,
        output=args.output,
        variables=names,
    )
    print(result.summary())
    for path in result.figures:
        print(f"wrote        {path}")
    if args.out:
        from pathlib import Path

        print(f"wrote        {Path(args.out) / 'analysis.md'}")
        print(f"wrote        {Path(args.out) / 'analysis.json'}")
    return 0


# --------------------------------------------------------------------------------------------
# polynet count
# --------------------------------------------------------------------------------------------


def _add_count_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "count",
        help="the Theorem 2 table: degree and term bounds without expanding",
        description="Print polynet.count_terms(model): per layer, the parameters and the "
        "degree bound, then the number of variables n, the degree bound D and the most terms "
        "C(n+D, D), computed from the architecture alone (any size, nothing is expanded).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    _add_model_arguments(p)
    return p


def _cmd_count(args: argparse.Namespace) -> int:
    import polynet

    source = _source(args)
    print(polynet.count_terms(source.model, source.input_shape).table())
    return 0


# --------------------------------------------------------------------------------------------
# Subcommand registry. One (add_parser, handler) pair per subcommand, in help order.
# To add a command: write _add_<name>_parser(subparsers) and _cmd_<name>(args), then add
# one line below.
# --------------------------------------------------------------------------------------------

COMMANDS: list[tuple[Callable[[Any], argparse.ArgumentParser], Callable[..., int]]] = [
    (_add_train_parser, _cmd_train),
    (_add_expand_parser, _cmd_expand),
    (_add_verify_parser, _cmd_verify),
    (_add_plot_parser, _cmd_plot),
    (_add_report_parser, _cmd_report),
    (_add_analyze_parser, _cmd_analyze),
    (_add_count_parser, _cmd_count),
]


def _add_common_options(parser: argparse.ArgumentParser, default: Any) -> None:
    # On subcommands the default is SUPPRESS, so `polynet --debug train` and
    # `polynet train --debug` both work without one overwriting the other.
    group = parser.add_argument_group("general")
    group.add_argument(
        "--debug", action="store_true", default=default, help="show tracebacks on errors"
    )
    group.add_argument(
        "-v", "--verbose", action="store_true", default=default, help="log progress to stderr"
    )
    group.add_argument(
        "--threads",
        type=_positive_int,
        default=None if default is False else default,
        help="CPU threads (default: one per core no other process is using; one for small "
        "networks)",
    )


def _build_parser() -> argparse.ArgumentParser:
    from polynet import __version__

    parser = argparse.ArgumentParser(
        prog="polynet",
        description="Train networks with learned polynomial activations (SLAF), expand them "
        "into one explicit polynomial, and check it.",
    )
    parser.add_argument("--version", action="version", version=f"polynet {__version__}")
    _add_common_options(parser, False)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    for add_parser, handler in COMMANDS:
        sub = add_parser(subparsers)
        _add_common_options(sub, argparse.SUPPRESS)
        sub.set_defaults(handler=handler)
    parser.set_defaults(subparsers=subparsers.choices)
    return parser


def _check_output_paths(args: argparse.Namespace) -> None:
    """Refuse an --out or --latex that cannot be written before any work starts: a path
    below a regular file, or in a folder that is read-only or not ours to write."""
    import os
    from pathlib import Path

    for flag in ("out", "latex"):
        value = getattr(args, flag, None)
        if not value:
            continue
        path = Path(value).absolute()
        probe = path if path.is_dir() else path.parent
        while not probe.exists() and probe != probe.parent:
            probe = probe.parent
        if not probe.is_dir():
            raise PolynetError(
                f"--{flag} {value}: {probe} is a file, not a folder, so nothing can be written "
                "below it; choose another path."
            )
        if not os.access(probe, os.W_OK | os.X_OK):
            raise PolynetError(
                f"--{flag} {value}: cannot write in {probe} (read-only or permission denied); "
                "choose a folder you can write to."
            )


def _os_error_message(exc: OSError, args: argparse.Namespace) -> str:
    """One line for an OSError: what happened to which file, and what to do."""
    import errno

    where = exc.filename
    if where is None:  # a failed write() names no file: name the outputs being written
        outs = [f"--{f} {getattr(args, f)}" for f in ("out", "latex") if getattr(args, f, None)]
        where = "writing " + " and ".join(outs) if outs else "a file"
    advice = {
        errno.ENOSPC: "the disk is full: free some space or write elsewhere",
        errno.EDQUOT: "the disk quota is used up: free some space or write elsewhere",
        errno.EFBIG: "the file is larger than this system allows: write elsewhere",
        errno.EACCES: "permission denied: choose a folder you can write to, or fix permissions",
        errno.EPERM: "not permitted: choose a folder you can write to, or fix permissions",
        errno.EROFS: "the file system is read-only: write elsewhere",
        errno.ENOTDIR: "a part of the path is a file, not a folder: choose another path",
        errno.EISDIR: "it is a folder, not a file: give a file path",
        errno.ENOENT: "no such file or folder: check the path",
    }.get(exc.errno, "check the path and the disk")
    detail = exc.strerror or str(exc)
    return f"{where}: {detail}; {advice}. Earlier files there are unchanged."


def _reject_unknown(parser: argparse.ArgumentParser, args: Any, unknown: list[str]) -> None:
    """Usage error for unrecognised arguments, from the subcommand's parser (its usage), with
    the closest flag for each mistyped one (argparse's suggest_on_error is Python 3.14+)."""
    import difflib

    target = args.subparsers.get(args.command, parser) if args.command else parser
    flags = [f for f in target._option_string_actions if f.startswith("--")]
    hints = []
    for arg in unknown:
        if arg.startswith("--"):
            close = difflib.get_close_matches(arg.split("=")[0], flags, n=1, cutoff=0.6)
            if close:
                hints.append(f"did you mean {close[0]}?")
    message = f"unrecognized arguments: {' '.join(unknown)}"
    target.error(message + (f" ({'; '.join(hints)})" if hints else ""))


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``polynet`` command with ``argv`` (default: ``sys.argv[1:]``); return the exit code.

    Exit codes: 0 success, 1 an error (one line on stderr), 2 bad usage, 130 interrupted, 141
    stdout closed early (a pipe).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = _build_parser()
    try:
        args, unknown = parser.parse_known_args(argv)
        if unknown:
            _reject_unknown(parser, args, unknown)
    except SystemExit as exc:  # --help, --version, or a usage error
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    args.argv = argv
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(name)s: %(message)s",
    )
    started = time.perf_counter()
    # The one error boundary: every failure is one line on stderr (the traceback with
    # --debug); 1 for errors, 2 for argument values the library refused.
    code, message, error = 1, None, None
    try:
        _check_output_paths(args)
        with limit_threads(args.threads):
            code = args.handler(args)
        sys.stdout.flush()  # a closed pipe shows here, not at interpreter exit
    except BrokenPipeError:  # stdout closed early (| head): stop quietly, as unix tools do
        import os

        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError):  # a stdout without a descriptor (captured)
            pass
        return 141  # 128 + SIGPIPE, what a shell reports for a tool killed by the pipe
    except PolynetError as exc:
        refusal = getattr(exc, "refusal", None)  # alternatives rendered as this CLI's flags
        message, error = (str(exc) if refusal is None else refusal.cli_text()), exc
    except ValueError as exc:  # an argument value the library refused
        code, message, error = 2, str(exc), exc
    except OSError as exc:  # no space, not a directory, permissions, a vanished file
        message, error = _os_error_message(exc, args), exc
    except KeyboardInterrupt as exc:  # training says which weights it kept and where
        detail = f": {exc}" if str(exc) else ""
        print(f"polynet {args.command}: interrupted{detail}", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - a bug: still one line, the traceback on request
        error = exc
        message = (
            f"internal error ({type(exc).__name__}: {exc}); this is a bug in polynet: rerun "
            "with --debug and report the traceback."
        )
    if message is not None:
        if args.debug:
            traceback.print_exception(error)
        print(f"polynet {args.command}: error: {message}", file=sys.stderr)
        return code
    logging.getLogger(__name__).info(
        "%s finished in %.1f s", args.command, time.perf_counter() - started
    )
    return code
