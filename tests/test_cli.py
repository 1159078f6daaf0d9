import runpy
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import polynet
from polynet import cli, data
from polynet.checkpoint import load_checkpoint


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_help_lists_the_commands(capsys):
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    for add_parser, _ in cli.COMMANDS:
        name = add_parser.__name__.removeprefix("_add_").removesuffix("_parser")
        assert name in out
    assert cli.main([]) == 2  # no command: usage on stderr


def test_python_dash_m_polynet(monkeypatch, capsys):
    # What `python -m polynet train --help` runs, in this process (a new interpreter would
    # spend seconds importing torch).
    monkeypatch.setattr(sys, "argv", ["polynet", "train", "--help"])
    with pytest.raises(SystemExit) as done:
        runpy.run_path(str(Path(polynet.__file__).with_name("__main__.py")), run_name="__main__")
    assert done.value.code == 0 and "--activation-lr" in capsys.readouterr().out


def test_train_end_to_end_writes_a_loadable_checkpoint(tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["train", "--dataset", "boston", "--hidden", "6", "4", "--degrees", "2", "2"]
    argv += ["--epochs", "3", "--batch-size", "64", "--out", str(out), "--no-progress"]
    assert cli.main(argv) == 0
    captured = capsys.readouterr()
    lines = dict(line.split(maxsplit=1) for line in captured.out.splitlines())
    assert lines["checkpoint"] == str(out / "model.safetensors")
    assert {"train_rmse", "test_rmse", "dataset", "model", "stopped"} <= set(lines)
    ckpt = load_checkpoint(lines["checkpoint"])
    meta = ckpt.metadata
    assert meta["dataset"]["name"] == "boston" and meta["dataset"]["target_scaler"] is not None
    assert len(meta["history"]) == 3 and meta["command"].startswith("polynet train --dataset")
    assert meta["metrics"]["test_rmse"] == pytest.approx(float(lines["test_rmse"]), abs=1e-4)
    # What `polynet expand/verify CHECKPOINT` will do: reload the points the model saw.
    ds = data.from_metadata(meta)
    assert np.array_equal(ds.X_train, data.load("boston").standardize(targets=True).X_train)
    X = torch.as_tensor(ds.X_test, dtype=torch.float32)
    assert polynet.load(out)(X).shape == (102, 1)
    assert ckpt.config["hidden"] == [6, 4] and ckpt.config["degrees"] == [2, 2]


def test_train_options_reach_the_data_and_the_model(tmp_path, capsys):
    argv = ["train", "--dataset", "boston", "--dataset-arg", "drop_b=true", "--hidden", "3"]
    argv += ["--degrees", "3", "--basis", "chebyshev", "--share", "channel", "--gate"]
    argv += ["--epochs", "1", "--no-standardize", "--no-progress", "--out", str(tmp_path)]
    assert cli.main(argv) == 0
    ckpt = load_checkpoint(tmp_path)
    assert ckpt.metadata["dataset"]["name"] == "boston-no-b"
    assert ckpt.metadata["dataset"]["scaler"] is None
    assert ckpt.config["in_features"] == 12 and ckpt.config["basis"] == "chebyshev"
    assert ckpt.config["share"] == "channel" and ckpt.config["gate"] is True
    assert "test_rmse" in capsys.readouterr().out


def test_classification_prints_accuracy(capsys):
    argv = ["train", "--dataset", "xor", "--dataset-arg", "n_samples=60", "--hidden", "4"]
    argv += ["--degrees", "2", "--epochs", "1", "--no-progress"]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "test_accuracy" in out and "checkpoint" not in out


@pytest.mark.parametrize(
    ("argv", "hint"),
    [
        (["expand", "ckpt", "--exakt"], "did you mean --exact?"),
        (["train", "--dataset", "xor", "--epohcs", "3"], "did you mean --epochs?"),
        (["verify", "ckpt", "--thraeds", "1"], "did you mean --threads?"),
    ],
)
def test_mistyped_flag_suggests_the_closest(capsys, argv, hint):
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert f"usage: polynet {argv[0]}" in err  # the subcommand's usage, not the top level's
    typo = next(a for a in argv if a.startswith("--") and a not in ("--dataset",))
    assert f"polynet {argv[0]}: error: unrecognized arguments: {typo}" in err
    assert hint in err


def test_unrelated_argument_gets_no_suggestion(capsys):
    assert cli.main(["expand", "ckpt", "--zzzzzz"]) == 2
    err = capsys.readouterr().err
    assert "unrecognized arguments: --zzzzzz" in err and "did you mean" not in err


def test_threads_flag_on_every_command(capsys):
    for add_parser, _ in cli.COMMANDS:
        name = add_parser.__name__.removeprefix("_add_").removesuffix("_parser")
        assert cli.main([name, "--help"]) == 0
        assert "--threads THREADS" in capsys.readouterr().out, name
