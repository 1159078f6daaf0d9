import math
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import polynet
from polynet import SLNN, data, training
from polynet.errors import PolynetWarning, TrainingDivergedError

#: float32 training vs a float64 recomputation of the same quantity.
FLOAT32_RTOL = 1e-5


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # These models are tiny: torch's intra-op threads only add hand-off cost, which turns
    # into busy-waiting when the machine is shared (20x slower under load).
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def boston():
    return data.load("boston").standardize(targets=True)


@pytest.fixture(scope="module")
def small():
    """A small, quick regression problem (120 training samples, 3 inputs)."""
    return data.sparse_polynomial(150, n_features=3, degree=2, n_terms=3, noise=0.1, test_size=0.2)


def _net(seed: int = 0, **kwargs) -> SLNN:
    torch.manual_seed(seed)
    options = {"in_features": 3, "hidden": [8], "degrees": 2, **kwargs}
    return SLNN(**options)


def _states_equal(a: dict, b: dict) -> bool:
    return list(a) == list(b) and all(torch.equal(a[k].cpu(), b[k].cpu()) for k in a)


def test_resolve_device_auto():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert training.resolve_device("auto").type == expected
    assert training.resolve_device(None).type == expected
    assert training.resolve_device(torch.device("cpu")) == torch.device("cpu")


def test_same_seed_same_weights_other_seed_other_weights(small):
    runs = [
        training.fit(_net(), small, epochs=3, batch_size=16, seed=s, progress=False)
        for s in (0, 0, 1)
    ]
    states = [r.model.state_dict() for r in runs]
    assert _states_equal(states[0], states[1])
    assert not _states_equal(states[0], states[2])
    assert runs[0].history[-1]["train_loss"] == runs[1].history[-1]["train_loss"]


def test_regression_rmse_is_in_original_units(boston):
    result = training.fit(
        SLNN(13, [8], 2), boston, epochs=3, batch_size=64, lr=0.01, progress=False
    )
    raw = data.load("boston")
    with torch.no_grad():
        pred = result.model(torch.as_tensor(boston.X_test, dtype=torch.float32))
    pred = boston.target_scaler.inverse_transform(pred.double().numpy()[:, 0])
    rmse = math.sqrt(np.mean((pred - raw.y_test) ** 2))
    assert result.metrics["test_rmse"] == pytest.approx(rmse, rel=FLOAT32_RTOL)
    assert result.metric == "rmse" and not result.model.training
    assert set(result.history[0]) == {
        "epoch",
        "train_loss",
        "val_loss",
        "val_rmse",
        "test_loss",
        "test_rmse",
        "lr",
        "seconds",
    }


def test_binary_logit_and_multiclass_accuracy():
    ds = data.xor(200, random_state=1)
    X = torch.as_tensor(ds.X_test, dtype=torch.float32)
    for out_features in (1, 2):
        torch.manual_seed(0)
        net = SLNN(2, [6], 2, out_features=out_features)
        result = training.fit(net, ds, epochs=15, batch_size=32, lr=0.03, progress=False)
        with torch.no_grad():
            out = result.model(X)
        pred = (out[:, 0] > 0).long() if out_features == 1 else out.argmax(1)
        accuracy = (pred.numpy() == ds.y_test).mean()
        assert result.metrics["test_accuracy"] == pytest.approx(accuracy)
        assert accuracy > 0.8  # x0·x1 is a degree-2 polynomial: an easy fit


def test_arrays_input_infers_the_task():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 3))
    labels = (X[:, 0] > 0).astype(np.int64)
    result = training.fit(_net(out_features=2), (X, labels), epochs=2, progress=False)
    assert result.task == "classification" and "test_accuracy" not in result.metrics
    result = training.fit(_net(), (torch.as_tensor(X), X[:, 1]), epochs=2, progress=False)
    assert result.task == "regression" and result.metric == "rmse"


class _PlantInf:
    """Forward hook that turns one training-mode output into inf (epoch, batch from 1)."""

    def __init__(self, call: int) -> None:
        self.call, self.seen = call, 0

    def __call__(self, module, inputs, output):
        if module.training:
            self.seen += 1
            if self.seen == self.call:
                return output * math.inf
        return output


def test_divergence_restores_the_last_finite_epoch(small, tmp_path):
    batches = math.ceil(120 / 16)
    reference = training.fit(_net(), small, epochs=2, batch_size=16, lr=0.01, progress=False)
    model = _net()
    model[0].register_forward_hook(_PlantInf(2 * batches + 2))  # epoch 3, batch 2
    with pytest.raises(TrainingDivergedError, match=r"at epoch 3, batch 2 of 8") as info:
        training.fit(model, small, epochs=5, batch_size=16, lr=0.01, progress=False, out=tmp_path)
    assert "end of epoch 2" in str(info.value) and "clip_norm=1.0" in str(info.value)
    result = info.value.result
    assert result.stopped == "diverged" and result.best_epoch == 2 and len(result.history) == 2
    assert _states_equal(model.state_dict(), reference.model.state_dict())
    saved = polynet.load(result.checkpoint)
    assert _states_equal(saved.state_dict(), reference.model.state_dict())


def test_non_finite_gradient_is_caught_by_its_norm(small):
    model = _net()
    calls = []

    def poison(grad):
        calls.append(1)
        return grad * math.inf if len(calls) == 3 else grad

    model[0].weight.register_hook(poison)
    with pytest.raises(TrainingDivergedError, match=r"gradient norm became (inf|nan) at epoch 1"):
        training.fit(model, small, epochs=2, batch_size=16, clip_norm=1.0, progress=False)
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_early_stopping_restores_the_best_weights(small):
    result = training.fit(
        _net(hidden=[32]), small, epochs=200, batch_size=8, lr=0.05, patience=3, progress=False
    )
    assert result.stopped == "early_stopping"
    losses = [h["val_loss"] for h in result.history]
    assert result.best_epoch == 1 + int(np.argmin(losses))
    assert len(result.history) == result.best_epoch + 3
    # Recompute the validation loss of the returned weights on the split fit carved out.
    order = np.random.RandomState(0).permutation(120)[:12]
    X = torch.as_tensor(small.X_train[order], dtype=torch.float32)
    y = torch.as_tensor(small.y_train[order], dtype=torch.float32)[:, None]
    with torch.no_grad():
        loss = F.mse_loss(result.model(X), y).item()
    assert loss == pytest.approx(min(losses), rel=FLOAT32_RTOL)
    assert loss < losses[-1]


def test_l1_penalty_shrinks_slaf_coefficients(small):
    def size(l1: float) -> float:
        net = training.fit(
            _net(), small, epochs=10, batch_size=16, lr=0.01, l1=l1, progress=False
        ).model
        return float(net[1].coefficient().detach().abs().sum())

    assert size(1.0) < 0.8 * size(0.0)


def test_activation_lr_makes_a_second_parameter_group(small):
    model = _net()
    opt = training.make_optimizer(model, "sgd", 0.1, activation_lr=0.5)
    assert [(g["name"], g["lr"]) for g in opt.param_groups] == [
        ("weights", 0.1),
        ("activation", 0.5),
    ]
    assert {id(p) for p in opt.param_groups[1]["params"]} == {id(p) for p in model[1].parameters()}
    # With lr=0 only the SLAF parameters move.
    before = {k: v.clone() for k, v in model.named_parameters()}
    training.fit(model, small, epochs=1, lr=0.0, activation_lr=0.01, progress=False)
    moved = {k for k, v in model.named_parameters() if not torch.equal(v, before[k])}
    assert moved == {"1.weight", "1.bias"}


def test_step_schedule_in_history(small):
    result = training.fit(
        _net(), small, epochs=4, schedule="step", step_size=2, gamma=0.5, lr=0.01, progress=False
    )
    assert [h["lr"]["weights"] for h in result.history] == [0.01, 0.01, 0.005, 0.005]


def test_monitoring_the_test_split_warns(small):
    with pytest.warns(PolynetWarning, match="selects the model on the test set"):
        training.fit(_net(), small, epochs=2, patience=1, monitor="test", progress=False)


def test_checkpoint_carries_what_later_commands_need(boston, tmp_path):
    result = training.fit(
        SLNN(13, [4], 2), boston, epochs=2, progress=False, out=tmp_path, metadata={"run": 7}
    )
    assert result.checkpoint == tmp_path / "model.safetensors"
    ckpt = polynet.checkpoint.load_checkpoint(result.checkpoint)
    meta = ckpt.metadata
    assert meta["run"] == 7 and meta["metrics"] == pytest.approx(result.metrics)
    assert len(meta["history"]) == 2 and meta["training"]["stopped"] == "completed"
    again = data.from_metadata(meta)
    assert np.array_equal(again.X_test, boston.X_test)
    X = torch.as_tensor(again.X_test, dtype=torch.float32)
    with torch.no_grad():
        assert torch.equal(ckpt.model(X), result.model(X))


def test_library_code_prints_nothing(small, capsys):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        training.fit(_net(), small, epochs=2, progress=True)
    captured = capsys.readouterr()
    assert captured.out == "" and "fit" in captured.err  # the bar goes to stderr


@pytest.mark.gpu
def test_cuda_training_checkpoint_loads_on_cpu(small, tmp_path):
    result = training.fit(_net(), small, epochs=2, device="cuda", progress=False, out=tmp_path)
    assert result.device.startswith("cuda")
    loaded = polynet.load(result.checkpoint)
    X = torch.as_tensor(small.X_test, dtype=torch.float32)
    with torch.no_grad():
        expected = result.model(X.cuda()).cpu()
        assert torch.allclose(loaded(X), expected, rtol=1e-5, atol=1e-6)


def test_best_epochs_are_checkpointed_during_the_run(small, tmp_path, monkeypatch):
    written = []
    real_save = polynet.checkpoint.save

    def spy(model, path, *, metadata=None):
        written.append((metadata["training"]["stopped"], metadata["training"]["best_epoch"]))
        return real_save(model, path, metadata=metadata)

    monkeypatch.setattr(training, "CHECKPOINT_INTERVAL_S", -1.0)
    monkeypatch.setattr(polynet.checkpoint, "save", spy)
    result = training.fit(
        _net(), small, epochs=6, batch_size=16, lr=0.01, patience=10, out=tmp_path, progress=False
    )
    interim = [epoch for stopped, epoch in written if stopped == "in_progress"]
    assert interim and interim == sorted(interim)  # each new best epoch, in order
    assert written[-1] == ("completed", result.best_epoch)
    assert polynet.checkpoint.read_metadata(tmp_path)["training"]["stopped"] == "completed"


def test_threads_apply_during_the_call_only(small):
    seen = []
    model = _net()
    model[0].register_forward_hook(lambda *args: seen.append(torch.get_num_threads()))
    before = torch.get_num_threads()
    training.fit(model, small, epochs=1, threads=before + 1, progress=False)
    assert set(seen) == {before + 1} and torch.get_num_threads() == before


# --------------------------------------------------------------------------------------------
# FitOptions
# --------------------------------------------------------------------------------------------


def test_options_object_and_keywords_train_the_same(small):
    opts = training.FitOptions(epochs=3, batch_size=16, lr=0.01, progress=False)
    by_object = training.fit(_net(), small, opts)
    by_keywords = training.fit(_net(), small, epochs=3, batch_size=16, lr=0.01, progress=False)
    by_override = training.fit(_net(), small, opts.replace(epochs=1), epochs=3)
    for other in (by_keywords, by_override):
        assert _states_equal(by_object.model.state_dict(), other.model.state_dict())
    assert by_object.options["step_size"] == 1 and by_object.options["val_fraction"] == 0.0


def test_unknown_option_names_it_and_suggests(small):
    with pytest.raises(TypeError, match=r"unknown fit option 'epoch'; did you mean 'epochs'"):
        training.fit(_net(), small, epoch=3)
    with pytest.raises(TypeError, match=r"'zzz'; the options are task, epochs"):
        training.fit(_net(), small, zzz=1)
    with pytest.raises(TypeError, match="options must be a polynet.training.FitOptions"):
        training.fit(_net(), small, {"epochs": 3})


def test_options_are_frozen_and_normalise_numpy_values():
    opts = training.FitOptions(epochs=np.int64(5), lr=np.float32(0.5), dtype="float64")
    assert type(opts.epochs) is int and opts.epochs == 5 and type(opts.lr) is float
    assert opts.dtype is torch.float64
    with pytest.raises(AttributeError):
        opts.epochs = 3  # type: ignore[misc]
    assert training.FitOptions(patience=2).resolved_val_fraction() == 0.1
    assert training.FitOptions(epochs=10).resolved_step_size() == 3


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"epochs": True}, "epochs must be an integer >= 1, got True"),
        ({"batch_size": 0}, "batch_size must be an integer >= 1, got 0"),
        ({"lr": float("nan")}, "lr must be a finite number >= 0.0, got nan"),
        ({"clip_norm": 0}, "clip_norm must be a finite number > 0.0"),
        ({"optimizer": "lbfgs"}, "optimizer must be 'adam' or 'sgd'"),
        ({"schedule": "linear"}, "schedule must be 'constant', 'step' or 'cosine'"),
        ({"val_fraction": 1.0}, r"val_fraction must be in \[0, 1\)"),
        ({"patience": 3, "val_fraction": 0}, "patience needs a validation split"),
        ({"monitor": "train"}, "monitor must be 'val' or 'test'"),
        ({"dtype": torch.int64}, "dtype must be None or a floating torch dtype"),
        ({"metadata": {"history": 1}}, r"metadata keys \['history'\] are written by fit"),
        ({"progress": "yes"}, "progress must be True or False"),
        ({"task": "ranking"}, "task must be 'regression' or 'classification'"),
    ],
)
def test_bad_options_fail_on_construction_and_in_fit(small, options, message):
    with pytest.raises(ValueError, match=message):
        training.FitOptions(**options)
    with pytest.raises(ValueError, match=message):
        training.fit(_net(), small, **options)


# -- Ctrl-C ------------------------------------------------------------------------------------


def test_interrupt_keeps_last_completed_epoch_and_writes_it(monkeypatch, tmp_path):
    from polynet.checkpoint import load_checkpoint

    ds = data.xor(200, random_state=0)
    opts = dict(epochs=50, batch_size=40, lr=0.05, threads=1, progress=False, seed=3)
    torch.manual_seed(0)
    reference = SLNN(2, [4], 2)
    training.fit(reference, ds, epochs=2, **{k: v for k, v in opts.items() if k != "epochs"})

    calls = {"n": 0}
    real = training._state_copy

    def interrupt_in_epoch_3(model):  # called once before epoch 1, then after each epoch
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return real(model)

    monkeypatch.setattr(training, "_state_copy", interrupt_in_epoch_3)
    torch.manual_seed(0)
    model = SLNN(2, [4], 2)
    with pytest.raises(training.TrainingInterrupted) as exc:
        training.fit(model, ds, out=tmp_path, **opts)
    assert isinstance(exc.value, KeyboardInterrupt)
    result = exc.value.result
    assert result.stopped == "interrupted" and len(result.history) == 2
    assert str(result.checkpoint) in str(exc.value)
    assert "last completed epoch (2)" in str(exc.value)
    for name, value in reference.state_dict().items():
        torch.testing.assert_close(model.state_dict()[name], value, rtol=0, atol=0)
    saved = load_checkpoint(result.checkpoint)
    assert saved.metadata["training"]["stopped"] == "interrupted"
    for name, value in reference.state_dict().items():
        torch.testing.assert_close(saved.model.state_dict()[name], value, rtol=0, atol=0)


def test_sigint_to_polynet_train_leaves_a_loadable_checkpoint(tmp_path):
    import os
    import re
    import signal
    import subprocess
    import sys

    from polynet.checkpoint import load_checkpoint

    out = tmp_path / "run"
    argv = [
        sys.executable,
        "-m",
        "polynet",
        "train",
        "--dataset",
        "xor",
        "--hidden",
        "8",
        "--degrees",
        "2",
    ]
    argv += ["--epochs", "100000", "--threads", "1", "--out", str(out)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    # A shell that starts the suite in the background (`cmd &`) ignores SIGINT, and the child
    # would inherit that: give it the default disposition, as a terminal would.
    proc = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        # Wait until the progress bar (stderr) shows a few epochs done.
        seen = b""
        while not re.search(rb" (\d\d+)/100000 ", seen):
            chunk = os.read(proc.stderr.fileno(), 4096)
            assert chunk, seen.decode(errors="replace")
            seen += chunk
        proc.send_signal(signal.SIGINT)
        _, rest = proc.communicate(timeout=60)
        err = rest.decode()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    last = err.strip().splitlines()[-1]
    path = out / "model.safetensors"
    assert last.startswith("polynet train: interrupted: training interrupted after "), last
    assert str(path) in last
    ckpt = load_checkpoint(path)
    meta = ckpt.metadata
    assert meta["training"]["stopped"] == "interrupted"
    epochs = len(meta["history"])
    assert epochs >= 1 and meta["training"]["best_epoch"] == epochs
    # The saved metrics are those of the saved weights: recompute the train accuracy.
    ds = polynet.data.from_metadata(meta)
    with torch.no_grad():
        x = torch.as_tensor(ds.X_train, dtype=next(ckpt.model.parameters()).dtype)
        acc = (ckpt.model(x).argmax(1).numpy() == ds.y_train).mean()
    assert acc == pytest.approx(meta["metrics"]["train_accuracy"], abs=1e-12)
