"""The classification examples (XOR, two spirals, MNIST, Fashion-MNIST, CIFAR-10) in quick mode.

Each script runs once, all of them side by side in subprocesses (one thread each), into a
temporary directory; the tests then check that its ``results.json`` is complete: keys present,
numbers finite, accuracies above chance where they should be, polynomials verified. The
CIFAR-10 binary reader is tested on small archives written here.
"""

from __future__ import annotations

import io
import json
import math
import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
SCRIPTS = ("xor", "two_spirals", "mnist", "fashion_mnist", "cifar10")
#: Wall-clock cap per script (they run concurrently); quick mode takes well under a minute.
TIMEOUT_S = 600


@pytest.fixture(scope="module")
def quick_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    """Run every script with --quick at once; results.json (and timing) per script."""
    base = tmp_path_factory.mktemp("examples")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    procs = {}
    for name in SCRIPTS:
        out = base / name
        cmd = [sys.executable, str(EXAMPLES / f"{name}.py"), "--quick", "--out", str(out)]
        log = open(base / f"{name}.log", "w")  # noqa: SIM115 (closed below)
        procs[name] = (
            subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT),
            out,
            log,
            time.perf_counter(),
        )
    runs = {}
    for name, (proc, out, log, started) in procs.items():
        try:
            code = proc.wait(timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = "timeout"
        log.close()
        text = (base / f"{name}.log").read_text()
        results = out / "results.json"
        runs[name] = {
            "code": code,
            "log": text[-4000:],
            "seconds": time.perf_counter() - started,
            "results": json.loads(results.read_text()) if results.is_file() else None,
            "out": out,
        }
    return runs


def _finished(runs: dict, name: str) -> dict:
    run = runs[name]
    assert run["code"] == 0, f"{name}.py --quick failed ({run['code']}):\n{run['log']}"
    results = run["results"]
    assert results is not None, f"{name}.py wrote no results.json:\n{run['log']}"
    assert (run["out"] / "results.md").is_file()
    for key in ("example", "mode", "seconds", "device", "torch", "python", "paper"):
        assert key in results, f"{name}: results.json lacks {key!r}"
    assert results["mode"] == "quick"
    _assert_finite(results, name)
    return results


def _assert_finite(value, where: str) -> None:
    """Every number in the results is finite (the harness writes NaN and inf as null)."""
    if isinstance(value, dict):
        for k, v in value.items():
            _assert_finite(v, f"{where}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _assert_finite(v, f"{where}[{i}]")
    elif isinstance(value, float):
        assert math.isfinite(value), f"{where} = {value}"


def test_xor(quick_runs):
    results = _finished(quick_runs, "xor")
    assert (quick_runs["xor"]["out"] / "xor.png").is_file()
    for row in results["boolean"]:
        assert row["all_four_correct"]
        assert row["verify_passed"]
        # The 1-unit network reduces on {0,1}^2 to x0 + x1 - 2 x0 x1.
        assert row["max_abs_diff_from_ideal"] < 0.05
        assert set(row["multilinear_on_cube"]) == {"1", "x0", "x1", "x0 x1"}
        assert row["latex"] and row["polynomial"]
    two_units = results["square"]["2"]
    assert all(r["verify_passed"] for r in two_units)
    assert np.mean([r["test_accuracy"] for r in two_units]) > 0.9
    # The polynomial classifies exactly as the network does.
    for r in two_units:
        assert r["polynomial_test_accuracy"] == pytest.approx(r["test_accuracy"])
    assert np.mean([r["cosine_to_ideal"] for r in two_units]) > 0.9


def test_two_spirals(quick_runs):
    results = _finished(quick_runs, "two_spirals")
    assert set(results["summary"]) == {"SLNN", "SLNN (Taylor)", "ReLU+BN"}
    for rows in results["results"].values():
        for r in rows:
            assert 0 <= r["test_accuracy"] <= 1
    assert results["summary"]["SLNN"]["test_accuracy_mean"] > 0.6  # chance is 0.5
    assert results["theorem2"]["degree_bound"] == 49
    assert results["theorem2"]["max_terms"] == 1275
    std = results["polynomial"]["SLNN"]["standardised"]
    assert std["degree"] <= 49 and std["n_terms"] <= 1275
    # The exact polynomial is the network; the expansion error is at rounding level.
    assert std["exact_poly_vs_net_rel_error"] < 1e-9
    assert std["coefficient_rel_error_float_vs_exact"] < 1e-9
    assert std["double_double_eval_vs_exact_rel_error"] < 1e-12
    grid = results["grid"]
    assert grid["sign_disagreements_double_double"] <= grid["grid_points"] // 1000
    assert (quick_runs["two_spirals"]["out"] / grid["figure"]).is_file()


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist", "cifar10"])
def test_images(quick_runs, name):
    results = _finished(quick_runs, name)
    assert set(results["summary"]) == {"SLNN", "SLNN-1", "hybrid", "ReLU"}
    for model, s in results["summary"].items():
        assert s["test_accuracy_mean"] > 2 * results["chance_accuracy"], model
    if name != "mnist":  # quick mode falls back to the digits, and says so
        assert results["fallback"] is True
        assert "FALLBACK" in results["data_source"]
        assert "FALLBACK" in (quick_runs[name]["out"] / "results.md").read_text()
    polys = results["polynomials"]
    assert set(polys) == {"SLNN", "SLNN-1"}
    n = int(np.prod(results["input_shape"]))
    for model, degree in (("SLNN", 4), ("SLNN-1", 2)):
        t = polys[model]["theorem2"]
        assert t["n_vars"] == n and t["degree_bound"] == degree
        assert t["max_terms"] == math.comb(n + degree, degree)
        expanded = [polys[model][k] for k in ("full", "slice") if k in polys[model]]
        assert expanded, f"{model} was neither expanded nor sliced"
        last = expanded[-1]
        assert "error" not in last, last
        assert last["verify_passed"] and last["degree"] <= degree


# --------------------------------------------------------------------------------------------
# The CIFAR-10 binary reader, on archives made here
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def images_module():
    sys.path.insert(0, str(EXAMPLES))
    try:
        import images
    finally:
        sys.path.remove(str(EXAMPLES))
    return images


def _records(labels: list[int], seed: int) -> tuple[bytes, np.ndarray]:
    rng = np.random.RandomState(seed)
    pixels = rng.randint(0, 256, size=(len(labels), 3, 32, 32), dtype=np.uint8)
    raw = b"".join(bytes([label]) + img.tobytes() for label, img in zip(labels, pixels))
    return raw, pixels


def _write_archive(path: Path, files: dict[str, bytes]) -> None:
    with tarfile.open(path, "w:gz") as tar:
        for name, raw in files.items():
            info = tarfile.TarInfo(f"cifar-10-batches-bin/{name}")
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))


@pytest.fixture(scope="module")
def tiny_cifar(tmp_path_factory, images_module):
    base = tmp_path_factory.mktemp("cifar")
    files, train_pixels, train_labels = {}, [], []
    for i, name in enumerate(images_module.CIFAR10_TRAIN):
        labels = [(i + j) % 10 for j in range(3)]
        files[name], pixels = _records(labels, i)
        train_pixels.append(pixels)
        train_labels += labels
    files["test_batch.bin"], test_pixels = _records([9, 0], 99)
    _write_archive(base / images_module.CIFAR10_ARCHIVE, files)
    return base, files, np.concatenate(train_pixels), np.array(train_labels), test_pixels


def test_cifar10_reader_archive(tiny_cifar, images_module):
    base, _, train_pixels, train_labels, test_pixels = tiny_cifar
    for where in (base, base / images_module.CIFAR10_ARCHIVE):
        ds = images_module.load_cifar10(where)
        assert ds.X_train.shape == (15, 3, 32, 32) and ds.X_test.shape == (2, 3, 32, 32)
        np.testing.assert_array_equal(ds.y_train, train_labels)
        np.testing.assert_array_equal(ds.y_test, [9, 0])
        np.testing.assert_array_equal(ds.X_train, train_pixels / 255.0)
        np.testing.assert_array_equal(ds.X_test, test_pixels / 255.0)
        assert ds.n_classes == 10 and ds.task == "classification"


def test_cifar10_reader_extracted_directory(tiny_cifar, images_module, tmp_path):
    _, files, train_pixels, _, _ = tiny_cifar
    folder = tmp_path / "cifar-10-batches-bin"
    folder.mkdir()
    for name, raw in files.items():
        (folder / name).write_bytes(raw)
    ds = images_module.load_cifar10(tmp_path)
    np.testing.assert_array_equal(ds.X_train, train_pixels / 255.0)
    # Red channel first: the record's bytes 1..1024 are the red plane, row-major.
    raw = files["data_batch_1.bin"]
    assert ds.X_train[0, 0, 0, 1] == raw[2] / 255.0
    assert ds.X_train[0, 1, 0, 0] == raw[1 + 1024] / 255.0


def test_cifar10_reader_refuses_bad_files(images_module, tmp_path):
    from polynet.errors import DataError

    raw, _ = _records([1, 2], 0)
    with pytest.raises(DataError, match="not a whole number of 3073-byte"):
        images_module.read_cifar10_records(raw[:-1], "short.bin")
    with pytest.raises(DataError, match="label byte 200"):
        images_module.read_cifar10_records(bytes([200]) + raw[1:], "bad.bin")
    with pytest.raises(DataError, match="does not exist"):
        images_module.load_cifar10(tmp_path / "nowhere")
    with pytest.raises(DataError, match="no CIFAR-10 binary batch file"):
        images_module.load_cifar10(tmp_path)
