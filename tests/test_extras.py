"""A missing optional package gives one line naming the extra, from Python and from the CLI.

Each test hides the package (``sys.modules[name] = None`` makes its import fail) and checks the
error is a MissingExtraError (also an ImportError) chained to the ImportError, and that the
CLI prints exactly one line and exits 1.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

import polynet
from polynet import cli, data
from polynet.errors import MissingExtraError, PolynetError
from polynet.extras import EXTRAS, install_hint, require


def _hide(monkeypatch: pytest.MonkeyPatch, *names: str) -> None:
    for name in names:
        monkeypatch.setitem(sys.modules, name, None)


@pytest.fixture
def small_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return polynet.SLNN(2, [3], [2]).eval()


@pytest.fixture
def checkpoint(tmp_path, small_model) -> str:
    from polynet.checkpoint import save

    return str(save(small_model, tmp_path / "model.safetensors"))


def _check(exc: pytest.ExceptionInfo, extra: str) -> None:
    assert isinstance(exc.value, PolynetError) and isinstance(exc.value, ImportError)
    assert f'pip install "polynet-slaf[{extra}]"' in str(exc.value)
    assert "\n" not in str(exc.value)
    assert isinstance(exc.value.__cause__, ImportError)
    assert exc.value.extra == extra


def test_require_imports_present_module():
    assert require("math", "anything").sqrt(4.0) == 2.0


def test_every_extra_is_declared_in_pyproject():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    from pathlib import Path

    pyproject = Path(__file__).resolve().parents[1] / "pyproject.toml"
    declared = tomllib.loads(pyproject.read_text())["project"]["optional-dependencies"]
    assert set(EXTRAS.values()) <= set(declared)


def test_zarr_store(monkeypatch, small_model, tmp_path):
    _hide(monkeypatch, "zarr")
    with pytest.raises(MissingExtraError) as exc:
        polynet.expand(small_model, store=tmp_path / "c.zarr")
    _check(exc, "scale")
    assert "zarr" in str(exc.value)


def test_dask_store(monkeypatch, small_model, tmp_path):
    _hide(monkeypatch, "dask")
    with pytest.raises(MissingExtraError) as exc:
        polynet.expand(small_model, store=tmp_path / "c.zarr")
    _check(exc, "scale")
    assert "dask" in str(exc.value)


def test_flint_exact(monkeypatch, small_model):
    _hide(monkeypatch, "flint")
    with pytest.raises(MissingExtraError) as exc:
        polynet.expand(small_model, exact="flint")
    _check(exc, "flint")
    assert "exact='sympy'" in str(exc.value)


def test_sklearn_dataset(monkeypatch):
    _hide(monkeypatch, "sklearn", "sklearn.datasets")
    with pytest.raises(MissingExtraError) as exc:
        data.load("diabetes")
    _check(exc, "sklearn")
    assert "diabetes" in str(exc.value)


def test_onnx(monkeypatch, tmp_path):
    _hide(monkeypatch, "onnx")
    with pytest.raises(MissingExtraError) as exc:
        polynet.from_onnx(tmp_path / "m.onnx")
    _check(exc, "onnx")


def test_estimators_without_sklearn():
    # The estimators module imports scikit-learn at import time: a fresh interpreter.
    code = (
        "import sys; sys.modules['sklearn'] = None\n"
        "import polynet\n"
        "try:\n"
        "    polynet.SLNNRegressor\n"
        "except polynet.PolynetError as exc:\n"
        "    assert isinstance(exc, ImportError) and exc.__cause__ is not None\n"
        "    print(exc)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert 'pip install "polynet-slaf[sklearn]"' in out.stdout
    assert "SLNNRegressor" in out.stdout


@pytest.mark.parametrize(
    ("hidden", "argv", "extra"),
    [
        (("zarr",), ["expand", "{ckpt}", "--out", "{tmp}/c.zarr", "--no-progress"], "scale"),
        (("flint",), ["expand", "{ckpt}", "--exact", "flint", "--no-progress"], "flint"),
        (
            ("sklearn", "sklearn.datasets"),
            ["train", "--dataset", "diabetes", "--epochs", "1", "--no-progress"],
            "sklearn",
        ),
        (("onnx",), ["expand", "{tmp}/m.onnx"], "onnx"),
    ],
)
def test_cli_one_line_exit_1(monkeypatch, capsys, checkpoint, tmp_path, hidden, argv, extra):
    _hide(monkeypatch, *hidden)
    argv = [a.format(ckpt=checkpoint, tmp=tmp_path) for a in argv]
    assert cli.main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith(f"polynet {argv[0]}: error: ")
    assert f'pip install "polynet-slaf[{extra}]"' in err[0]


def test_train_help_names_the_extras(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "400")  # no line breaks inside the hint
    assert cli.main(["train", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert 'diabetes needs pip install "polynet-slaf[sklearn]"' in text


def test_install_hint_names_pip_package_without_an_extra():
    assert install_hint("numba") == 'pip install "polynet-slaf[fast]"'
    assert install_hint("somepkg") == "pip install somepkg"
    assert set(EXTRAS.values()) <= {"scale", "flint", "sklearn", "onnx", "fast"}
