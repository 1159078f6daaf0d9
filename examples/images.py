"""The paper's image experiment, shared by ``mnist.py``, ``fashion_mnist.py`` and ``cifar10.py``.

Convolutional SLNNs (every activation an SLAF, average pooling, so the network is a polynomial
of its pixels) and hybrid SLAF + ReLU networks against a BatchNorm + ReLU baseline of the same
shape, all :class:`polynet.ConvSLNN`:

=============  ==========================================  ==========================
model          blocks (Conv2d 3x3, activation, AvgPool 2)  polynomial?
=============  ==========================================  ==========================
SLNN           SLAF k=2, SLAF k=2                          yes, degree <= 4
SLNN-1         SLAF k=2 (one block)                        yes, degree <= 2
hybrid         SLAF k=2, BatchNorm + ReLU                  no (ReLU)
ReLU           BatchNorm + ReLU, BatchNorm + ReLU          no (ReLU)
=============  ==========================================  ==========================

Accuracy is the test accuracy at the end of training (the last epoch's weights), never the
best test accuracy seen, which would select the model on the test set. For the SLNNs the
Theorem 2 table comes from ``polynet.count_terms`` without expanding; where the expansion is
small enough it is done, fully or on a patch of pixels with the others fixed at the mean
training image (an exact slice), and checked with ``polynet.verify``.

Data: full mode downloads the official sets; ``--data DIR`` points at local files instead
(e.g. ``--data ../shared/data/mnist-t10k``: only the 10,000 MNIST test images, split into
our own train/test sets, and labelled so). Quick mode is offline: MNIST uses that t10k
split (subsampled), Fashion-MNIST and CIFAR-10 fall back to scikit-learn's 8x8 digits, and
``results.md`` says so.

CIFAR-10 is read from the binary version (``cifar-10-binary.tar.gz``: fixed-size records of
one label byte and 3,072 pixel bytes), never from the pickled "python version".
"""

from __future__ import annotations

import argparse
import hashlib
import math
import os
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import torch
from harness import Run, markdown_table, mean_std, parse

import polynet
from polynet import data, training
from polynet.data import Dataset
from polynet.errors import DataError

# --------------------------------------------------------------------------------------------
# CIFAR-10, binary version
# --------------------------------------------------------------------------------------------

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"
#: MD5 of ``cifar-10-binary.tar.gz`` as published on the data set's page.
CIFAR10_MD5 = "c32a1d4ab5d03f1284b67883e8d87530"
CIFAR10_ARCHIVE = "cifar-10-binary.tar.gz"
CIFAR10_TRAIN = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
CIFAR10_TEST = ("test_batch.bin",)
#: One record: the label byte, then 1,024 red, 1,024 green and 1,024 blue bytes (row-major).
CIFAR10_RECORD = 1 + 3 * 32 * 32
CIFAR10_CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)


def read_cifar10_records(raw: bytes, source: str = "<bytes>") -> tuple[np.ndarray, np.ndarray]:
    """Images (n, 3, 32, 32) uint8 and labels (n,) int64 from one CIFAR-10 binary batch file."""
    if not raw or len(raw) % CIFAR10_RECORD:
        raise DataError(
            f"{source} holds {len(raw)} bytes, not a whole number of {CIFAR10_RECORD}-byte "
            "CIFAR-10 records; the file is truncated or not from the binary version "
            f"({CIFAR10_ARCHIVE})."
        )
    records = np.frombuffer(raw, dtype=np.uint8).reshape(-1, CIFAR10_RECORD)
    labels = records[:, 0].astype(np.int64)
    if labels.max() >= len(CIFAR10_CLASSES):
        raise DataError(
            f"{source} has label byte {labels.max()} (expected 0..9): it is not a CIFAR-10 "
            "binary batch (CIFAR-100's binary records have two label bytes)."
        )
    return records[:, 1:].reshape(-1, 3, 32, 32).copy(), labels


def _cifar10_files(path: Path) -> dict[str, bytes]:
    """The six batch files' bytes from an archive or a directory (nothing is extracted)."""
    wanted = set(CIFAR10_TRAIN + CIFAR10_TEST)
    if path.is_dir():
        found = {}
        for name in wanted:
            for d in (path, path / "cifar-10-batches-bin"):
                if (d / name).is_file():
                    found[name] = (d / name).read_bytes()
                    break
        if not found and (path / CIFAR10_ARCHIVE).is_file():
            return _cifar10_files(path / CIFAR10_ARCHIVE)
    elif path.is_file():
        found = {}
        try:
            with tarfile.open(path, "r:*") as tar:
                for member in tar:
                    # Read regular members by base name only: no path from the archive is
                    # ever used on disk.
                    name = PurePosixPath(member.name).name
                    if member.isfile() and name in wanted and name not in found:
                        handle = tar.extractfile(member)
                        if handle is not None:
                            found[name] = handle.read()
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise DataError(
                f"cannot read {str(path)!r} as a tar archive ({exc}); expected "
                f"{CIFAR10_ARCHIVE}: delete it and download it again."
            ) from exc
    else:
        raise DataError(
            f"CIFAR-10 path {str(path)!r} does not exist; pass the directory holding "
            f"{CIFAR10_ARCHIVE} (or its extracted cifar-10-batches-bin/*.bin), or download=True."
        )
    missing = sorted(wanted - set(found))
    if missing:
        raise DataError(
            f"no CIFAR-10 binary batch file(s) {missing} in {str(path)!r}; expected the binary "
            f"version ({CIFAR10_ARCHIVE} or its cifar-10-batches-bin/ folder)."
        )
    return found


def _download(url: str, target: Path, md5: str) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    try:
        digest = hashlib.md5()
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=60) as response:
            while chunk := response.read(1 << 20):
                digest.update(chunk)
                out.write(chunk)
        if digest.hexdigest() != md5:
            raise DataError(
                f"{url} downloaded with MD5 {digest.hexdigest()}, not the published {md5}; "
                "try again later."
            )
        os.replace(tmp, target)
    except (OSError, urllib.error.URLError) as exc:
        raise DataError(
            f"could not download {url} ({exc}); fetch {CIFAR10_ARCHIVE} by hand into "
            f"{str(target.parent)!r} and pass --data {target.parent}."
        ) from exc
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def load_cifar10(path: str | os.PathLike[str] | None = None, download: bool = False) -> Dataset:
    """CIFAR-10 (official 50,000/10,000 split) from its binary version, pixels scaled to [0, 1].

    ``path`` is ``cifar-10-binary.tar.gz`` itself or a directory holding it or its extracted
    ``cifar-10-batches-bin/*.bin``; None means ``$POLYNET_DATA/cifar10`` or
    ``~/.cache/polynet/cifar10``. ``download=True`` fetches the archive there (MD5-checked).
    Inputs have shape (n, 3, 32, 32).
    """
    if path is None:
        root = os.environ.get("POLYNET_DATA") or os.path.join("~", ".cache", "polynet")
        path = Path(root).expanduser() / "cifar10"
    path = Path(path).expanduser()
    if download:
        archive = path if path.suffix == ".gz" else path / CIFAR10_ARCHIVE
        if not archive.is_file():
            _download(CIFAR10_URL, archive, CIFAR10_MD5)
    files = _cifar10_files(path)

    def split(names: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        parts = [read_cifar10_records(files[n], n) for n in names]
        images = np.concatenate([p[0] for p in parts]).astype(np.float64) / 255.0
        return images, np.concatenate([p[1] for p in parts])

    X_train, y_train = split(CIFAR10_TRAIN)
    X_test, y_test = split(CIFAR10_TEST)
    return Dataset(
        "cifar10",
        X_train,
        y_train,
        X_test,
        y_test,
        task="classification",
        feature_names=[f"{c}_{r}_{k}" for c in "rgb" for r in range(32) for k in range(32)],
        n_classes=10,
        description=f"CIFAR-10 (Krizhevsky 2009), binary version, from {path}; official split.",
        params={"path": str(path.resolve())},
    )


# --------------------------------------------------------------------------------------------
# The experiment
# --------------------------------------------------------------------------------------------

#: Paper numbers we could verify: none (the paper's tables were not available to check).
PAPER_NOTE = (
    "not given: we could not check the paper's image numbers here, so none is quoted "
    "rather than one invented"
)
#: Expand fully when the dense polynomial has at most this many coefficients (all outputs).
FULL_EXPAND_LIMIT = {True: 200_000, False: 10_000_000}
#: A patch slice is sized to have at most this many monomials per output.
SLICE_LIMIT = {True: 5_000, False: 100_000}


@dataclass(frozen=True)
class ModelSpec:
    name: str
    activations: tuple[str, ...]

    @property
    def is_polynomial(self) -> bool:
        return all(a == "slaf" for a in self.activations)


MODELS = (
    ModelSpec("SLNN", ("slaf", "slaf")),
    ModelSpec("SLNN-1", ("slaf",)),
    ModelSpec("hybrid", ("slaf", "relu")),
    ModelSpec("ReLU", ("relu", "relu")),
)


@dataclass(frozen=True)
class Budget:
    channels: tuple[int, int]
    epochs: int
    batch_size: int
    lr: float
    n_train: int | None  # subsample the training set (quick mode)
    n_test: int | None


def _images(ds: Dataset, channels: int, size: int) -> Dataset:
    """The data set with inputs of shape (n, C, H, W)."""
    shape = (channels, size, size)
    return replace(
        ds,
        X_train=ds.X_train.reshape(len(ds.X_train), *shape),
        X_test=ds.X_test.reshape(len(ds.X_test), *shape),
    )


def _digits() -> Dataset:
    ds = data.load_digits()
    ds = replace(ds, X_train=ds.X_train / 16.0, X_test=ds.X_test / 16.0)  # pixels 0..16
    return _images(ds, 1, 8)


def _subsample(ds: Dataset, n_train: int | None, n_test: int | None, seed: int = 0) -> Dataset:
    rng = np.random.RandomState(seed)
    changes: dict[str, Any] = {}
    if n_train is not None and n_train < len(ds.X_train):
        keep = np.sort(rng.permutation(len(ds.X_train))[:n_train])
        changes.update(X_train=ds.X_train[keep], y_train=ds.y_train[keep])
    if n_test is not None and n_test < len(ds.X_test):
        keep = np.sort(rng.permutation(len(ds.X_test))[:n_test])
        changes.update(X_test=ds.X_test[keep], y_test=ds.y_test[keep])
    return replace(ds, **changes) if changes else ds


def load_images(dataset: str, quick: bool, path: str | None) -> tuple[Dataset, str, bool]:
    """(data set as images, a sentence on where it came from, whether it is a fallback)."""
    t10k = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnist-t10k"
    if path is not None:
        if dataset == "cifar10":
            ds = load_cifar10(path)
        elif dataset == "mnist":
            ds = data.load_mnist(path=path, flatten=False)
        else:
            ds = data.load_fashion_mnist(path=path, flatten=False)
        if "split into train/test" in ds.description:  # e.g. only the t10k files
            return ds, f"NOT THE OFFICIAL SPLIT: {ds.description}", False
        return ds, ds.description, False
    if quick:
        if dataset == "mnist" and t10k.is_dir():
            ds = data.load_mnist(path=t10k, flatten=False)
            return ds, f"NOT THE OFFICIAL SPLIT (quick mode is offline): {ds.description}", False
        ds = _digits()
        return (
            ds,
            f"QUICK-MODE FALLBACK: scikit-learn's 8x8 digits stand in for {dataset} (quick mode "
            "is offline); these are not " + dataset + " numbers.",
            True,
        )
    if dataset == "cifar10":
        ds = load_cifar10(download=True)
    elif dataset == "mnist":
        ds = data.load_mnist(download=True, flatten=False)
    else:
        ds = data.load_fashion_mnist(download=True, flatten=False)
    return ds, ds.description, False


def _train(
    spec: ModelSpec, ds: Dataset, budget: Budget, seed: int, run: Run
) -> tuple[torch.nn.Module, dict]:
    c, h, _ = ds.X_train.shape[1:]
    torch.manual_seed(seed)
    net = polynet.ConvSLNN(
        c,
        h,
        list(budget.channels[: len(spec.activations)]),
        degrees=2,
        out_features=10,
        activations=list(spec.activations),
    )
    result = training.fit(
        net,
        ds,
        epochs=budget.epochs,
        batch_size=budget.batch_size,
        lr=budget.lr,
        schedule="cosine",
        clip_norm=1.0,
        device=run.device,
        seed=seed,
        progress=False,
    )
    return net, {
        "seed": seed,
        "test_accuracy": result.metrics["test_accuracy"],
        "train_accuracy": result.metrics["train_accuracy"],
        "epochs": len(result.history),
        "stopped": result.stopped,
        "seconds": round(result.seconds, 1),
        "parameters": sum(p.numel() for p in net.parameters()),
        "accuracy_per_epoch": [round(h["test_accuracy"], 4) for h in result.history],
    }


def _center_patch(shape: tuple[int, ...], degree: int, limit: int) -> tuple[list[int], int]:
    """Input numbers of the largest centred square patch (all channels) within ``limit``."""
    c, h, w = shape
    side = 1
    for s in range(1, min(h, w) + 1):
        n = c * s * s
        if math.comb(n + degree, degree) <= limit:
            side = s
    top, left = (h - side) // 2, (w - side) // 2
    idx = [
        ch * h * w + r * w + k
        for ch in range(c)
        for r in range(top, top + side)
        for k in range(left, left + side)
    ]
    return idx, side


def _facts(poly, report, tic: float) -> dict:
    """The expanded polynomial's size, time and verification, as results.json records them."""
    return {
        "n_vars": poly.n_vars,
        "degree": poly.degree,
        "n_terms": poly.n_terms,
        "max_terms": poly.max_terms,
        "seconds": round(time.perf_counter() - tic, 2),
        "verify_max_rel_error": report.max_rel_error,
        "verify_passed": report.passed,
    }


def _expansions(net: torch.nn.Module, ds: Dataset, quick: bool) -> dict:
    """Theorem 2 count, and the full or sliced expansion with its verification."""
    count = polynet.count_terms(net)
    out: dict[str, Any] = {"theorem2": count.as_dict()}
    out["theorem2"].pop("layers")
    net = net.cpu().eval()
    X_test = ds.X_test.reshape(len(ds.X_test), -1)
    x_check = X_test[: 200 if quick else 1000]
    n_out = 10
    if count.max_terms * n_out <= FULL_EXPAND_LIMIT[quick]:
        tic = time.perf_counter()
        try:
            poly = polynet.expand(net, device="cpu")
            out["full"] = _facts(poly, polynet.verify(net, poly, x_check), tic)
        except polynet.PolynetError as exc:
            out["full"] = {"error": f"{type(exc).__name__}: {exc}"}
    if "full" in out and "error" not in out["full"]:
        return out
    shape = tuple(ds.X_train.shape[1:])
    inputs, side = _center_patch(shape, count.degree_bound, SLICE_LIMIT[quick])
    fixed = ds.X_train.reshape(len(ds.X_train), -1).mean(0)
    tic = time.perf_counter()
    try:
        poly = polynet.expand(net, inputs=inputs, fixed=fixed, device="cpu")
        report = polynet.verify(net, poly, x_check[:, inputs])
        patch = f"{side}x{side} centre pixels x {shape[0]} channel(s)"
        out["slice"] = {"patch": patch, **_facts(poly, report, tic)}
    except polynet.PolynetError as exc:
        out["slice"] = {"error": f"{type(exc).__name__}: {exc}"}
    return out


def _polynomial_rows(expansions: dict[str, dict]) -> list[list[Any]]:
    rows = []
    for name, e in expansions.items():
        t = e["theorem2"]
        rows.append(
            [
                name,
                "Theorem 2 count (not expanded)",
                t["n_vars"],
                t["degree_bound"],
                f"{t['max_terms']:,}",
                f"{t['n_parameters']:,}",
                "",
            ]
        )
        for kind in ("full", "slice"):
            if kind not in e:
                continue
            x = e[kind]
            if "error" in x:
                rows.append([name, f"{kind} expansion", "", "", "", "", f"failed: {x['error']}"])
                continue
            label = "full expansion" if kind == "full" else f"slice: {x['patch']}"
            rows.append(
                [
                    name,
                    label,
                    x["n_vars"],
                    x["degree"],
                    f"{x['n_terms']:,} non-zero of {x['max_terms']:,}",
                    "",
                    f"max rel. error {x['verify_max_rel_error']:.1e} "
                    f"({'passed' if x['verify_passed'] else 'FAILED'}), {x['seconds']} s",
                ]
            )
    return rows


def experiment(dataset: str, title: str, argv: Sequence[str] | None = None) -> int:
    """Run the image experiment on ``dataset`` ("mnist", "fashion-mnist" or "cifar10")."""
    extra = argparse.ArgumentParser(add_help=False)
    extra.add_argument("--data", default=None, help="directory (or archive) of local data files")
    extra.add_argument("--epochs", type=int, default=None, help="override the epoch budget")
    extra.add_argument("--channels", type=int, nargs=2, default=None, help="conv channels")
    own, rest = extra.parse_known_args(argv)
    run = parse(
        dataset.replace("-", "_"),
        f"{title}: convolutional SLNN and hybrid SLAF+ReLU networks against ReLU "
        "(extra flags: --data DIR, --epochs N, --channels C1 C2).",
        rest,
        full_seeds=3,
        quick_seeds=1,
    )
    ds, source, fallback = load_images(dataset, run.quick, own.data)
    size = ds.X_train.shape[2]
    if run.quick:
        small = size <= 8
        budget = Budget((4, 8), 12 if small else 3, 64, 1e-2, None if small else 1500, 500)
    else:
        wide = (32, 64) if dataset == "cifar10" else (16, 32)
        budget = Budget(wide, 30 if dataset == "cifar10" else 15, 128, 2e-3, None, None)
    if own.epochs is not None:
        budget = replace(budget, epochs=own.epochs)
    if own.channels is not None:
        budget = replace(budget, channels=tuple(own.channels))
    ds = _subsample(ds, budget.n_train, budget.n_test)
    if run.quick and run.device == "cpu":
        torch.set_num_threads(1)  # small networks: one thread avoids oversubscription
    print(f"{title}: {source}")
    print(
        f"  {len(ds.X_train)} train / {len(ds.X_test)} test images of shape {ds.X_train.shape[1:]}"
    )

    per_model: dict[str, list[dict]] = {m.name: [] for m in MODELS}
    expansions: dict[str, dict] = {}
    for seed in range(run.seeds):
        for spec in MODELS:
            net, res = _train(spec, ds, budget, seed, run)
            per_model[spec.name].append(res)
            print(
                f"  seed {seed} {spec.name:7s} test accuracy {res['test_accuracy']:.4f} "
                f"({res['seconds']} s)",
                flush=True,
            )
            if seed == 0:
                if spec.is_polynomial:
                    expansions[spec.name] = _expansions(net, ds, run.quick)
                else:
                    try:
                        polynet.count_terms(net)
                    except polynet.NotExpandableError as exc:
                        res["not_polynomial"] = str(exc)

    summary = {}
    rows = []
    for spec in MODELS:
        results = per_model[spec.name]
        acc = mean_std([r["test_accuracy"] for r in results])
        summary[spec.name] = {"test_accuracy_mean": acc[0], "test_accuracy_std": acc[1]}
        rows.append(
            [
                spec.name,
                " → ".join(spec.activations),
                f"{results[0]['parameters']:,}",
                f"{acc[0]:.4f} ± {acc[1]:.4f}" if len(results) > 1 else f"{acc[0]:.4f} (1 seed)",
                f"{mean_std([r['train_accuracy'] for r in results])[0]:.4f}",
                "not given" if not fallback else "n/a (fallback data)",
            ]
        )
    table = markdown_table(
        ["model", "activations", "parameters", "test accuracy (final epoch)", "train", "paper"],
        rows,
    )
    poly_table = markdown_table(
        ["model", "what", "n", "degree", "monomials", "net params", "verification"],
        _polynomial_rows(expansions),
    )
    for name, e in expansions.items():
        t = e["theorem2"]
        print(
            f"  {name}: Theorem 2 bound D = {t['degree_bound']}, C({t['n_vars']}+D, D) = "
            f"{t['max_terms']:,} monomials vs {t['n_parameters']:,} parameters"
        )
    setup = (
        f"{len(ds.X_train)} training / {len(ds.X_test)} test images of shape "
        f"{tuple(ds.X_train.shape[1:])}; channels {budget.channels}, 3x3 convolutions, 2x2 "
        f"average pooling, SLAF degree 2 (Taylor basis); Adam lr {budget.lr:g}, cosine "
        f"schedule, gradient clipping at norm 1, batch {budget.batch_size}, {budget.epochs} "
        f"epochs, {run.seeds} seed(s)."
    )
    md = f"""
**Data.** {source}

**Setup.** {setup} Test accuracy is that of the final epoch's weights (no selection on the
test set); mean ± sample standard deviation over seeds.

{table}

**Polynomial view (seed 0).** Theorem 2: an SLNN with SLAF degrees k_1, ..., k_L is a polynomial
of degree at most D = k_1···k_L in its n inputs, with at most C(n + D, D) coefficients per
output. Where small enough the polynomial is built (fully, or on a centred patch of pixels with
the others held at the mean training image: an exact slice of the network) and checked
against the network's float64 forward pass on test images and their bounding box.

{poly_table}

Paper: {PAPER_NOTE}.
"""
    run.write(
        {
            "dataset": dataset,
            "data_source": source,
            "fallback": fallback,
            "n_train": len(ds.X_train),
            "n_test": len(ds.X_test),
            "input_shape": list(ds.X_train.shape[1:]),
            "budget": vars(budget) | {"channels": list(budget.channels)},
            "paper": PAPER_NOTE,
            "models": {m.name: list(m.activations) for m in MODELS},
            "results": per_model,
            "summary": summary,
            "polynomials": expansions,
            "chance_accuracy": 0.1,
        },
        md,
    )
    print(f"results in {run.out}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit("images.py is imported by mnist.py, fashion_mnist.py and cifar10.py.")
