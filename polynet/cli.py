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


# --------------------------------------------------------------------------------------------
# polynet train
# --------------------------------------------------------------------------------------------


def _add_train_parser(subparsers: Any) -> argparse.ArgumentParser:
    from polynet.bases import BASES
    from polynet.data import LOADERS

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
    d.add_argument("--dataset", required=True, choices=sorted(LOADERS), help="data set name")
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
    t.add_argument("--threads", type=_positive_int, default=None, help="torch CPU threads")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--out", default=None, help="directory for model.safetensors")
    return p


def _cmd_train(args: argparse.Namespace) -> int:
    import torch

    from polynet import data, training
    from polynet.nets import SLNN

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    dataset_kwargs = dict(args.dataset_arg)
    ds = data.load(args.dataset, **dataset_kwargs)
    if args.standardize:
        ds = ds.standardize(targets=ds.task == "regression")
    if ds.X_train.ndim != 2:
        raise ValueError(
            f"--dataset {args.dataset} has image-shaped inputs {ds.X_train.shape[1:]}; an SLNN "
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
    result = training.fit(
        model,
        ds,
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
        progress=not args.no_progress,
        out=args.out,
        metadata={"command": "polynet " + shlex.join(args.argv)},
    )
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
# Subcommand registry. One (add_parser, handler) pair per subcommand, in help order.
# To add a command: write _add_<name>_parser(subparsers) and _cmd_<name>(args), then add
# one line below.
# --------------------------------------------------------------------------------------------

COMMANDS: list[tuple[Callable[[Any], argparse.ArgumentParser], Callable[..., int]]] = [
    (_add_train_parser, _cmd_train),
]


def _add_common_options(parser: argparse.ArgumentParser, default: Any) -> None:
    # On subcommands the default is SUPPRESS, so `polynet --debug train` and
    # `polynet train --debug` both work without one overwriting the other.
    group = parser.add_argument_group("output")
    group.add_argument(
        "--debug", action="store_true", default=default, help="show tracebacks on errors"
    )
    group.add_argument(
        "-v", "--verbose", action="store_true", default=default, help="log progress to stderr"
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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``polynet`` command with ``argv`` (default: ``sys.argv[1:]``); return the exit code.

    Exit codes: 0 success, 1 a polynet error (message on stderr), 2 bad usage, 130 interrupted.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = _build_parser()
    try:
        args = parser.parse_args(argv)
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
    try:
        code = args.handler(args)
    except PolynetError as exc:
        if args.debug:
            traceback.print_exc()
        print(f"polynet {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except ValueError as exc:  # an argument value the library refused
        if args.debug:
            traceback.print_exc()
        print(f"polynet {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"polynet {args.command}: interrupted", file=sys.stderr)
        return 130
    logging.getLogger(__name__).info(
        "%s finished in %.1f s", args.command, time.perf_counter() - started
    )
    return code
