"""Every documented refusal, with its message: one section per module.

Messages are part of the API (STYLE rule 6): rewording one means changing its test here.
"""

import gzip
import importlib
import json
import math
import re
import sys
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import safetensors.torch
import torch
from torch import nn

import polynet
from polynet import SLNN, cli, data, training
from polynet.checkpoint import _header_digest, _tensor_digest, load_checkpoint, read_metadata, save
from polynet.errors import CheckpointError, DataError, NotExpandableError

no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")


# ============================================================================================
# polynet.data
# ============================================================================================


def test_data_unknown_name_lists_the_valid_ones():
    with pytest.raises(DataError, match=r"unknown data set 'bostn'; valid names are \['boston',"):
        data.load("bostn")


def test_data_unknown_loader_option_lists_the_options():
    with pytest.raises(
        DataError, match=r"data set 'xor' has no option\(s\) \['turns'\]; its options are"
    ):
        data.load("xor", turns=3)


def test_data_bad_counts_and_fractions():
    with pytest.raises(DataError, match="n_samples must be an integer >= 4, got 2"):
        data.two_spirals(2)
    with pytest.raises(DataError, match=r"test_size must be in \(0, 1\), got 1.5"):
        data.xor(test_size=1.5)


def test_data_standardize_twice_or_classification_targets():
    ds = data.xor(20).standardize()
    with pytest.raises(DataError, match="'xor' is already standardised"):
        ds.standardize()
    with pytest.raises(DataError, match="but 'xor' is a classification data set"):
        data.xor(20).standardize(targets=True)


def test_data_standardizer_dict_needs_mean_and_scale():
    with pytest.raises(DataError, match=r"exactly the keys \['mean', 'scale'\], got \['mu'\]"):
        data.Standardizer.from_dict({"mu": [0.0]})


def test_data_metadata_without_a_dataset_entry():
    with pytest.raises(DataError, match="has no 'dataset' entry.*arrays passed to fit"):
        data.from_metadata({"history": []})


def test_data_missing_sklearn_names_the_extra(monkeypatch):
    # None in sys.modules is how Python marks a module that cannot be imported; patching
    # builtins.__import__ instead would miss an sklearn that an earlier test imported.
    for name in [m for m in sys.modules if m == "sklearn" or m.startswith("sklearn.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "sklearn", None)
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with pytest.raises(ImportError, match=r'pip install "polynet-slaf\[sklearn\]"'):
        data.load_digits()


def test_data_mnist_missing_directory(tmp_path):
    with pytest.raises(DataError, match=r"mnist directory '.*nowhere' does not exist"):
        data.load_mnist(tmp_path / "nowhere")


def test_data_mnist_directory_without_files_names_them(tmp_path):
    with pytest.raises(
        DataError,
        match=r"no fashion-mnist IDX files in '.*': expected the pairs "
        r"train-images-idx3-ubyte\[\.gz\].*t10k-labels-idx1-ubyte\[\.gz\].*download=True",
    ):
        data.load_fashion_mnist(tmp_path)


def test_data_idx_truncated_and_foreign_files(tmp_path):
    header = bytes([0, 0, 0x08, 1]) + (100).to_bytes(4, "big")
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(header + bytes(60))
    with pytest.raises(DataError, match=r"holds 60 data bytes but its header announces shape"):
        data.read_idx(tmp_path / "t10k-labels-idx1-ubyte")
    (tmp_path / "x.gz").write_bytes(gzip.compress(b"hello, not idx"))
    with pytest.raises(DataError, match="is not an IDX file"):
        data.read_idx(tmp_path / "x.gz")


def test_data_failed_download_says_what_to_do(tmp_path, monkeypatch):
    def offline(url, timeout):
        raise urllib.error.URLError("network unreachable")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with pytest.raises(
        DataError, match=r"could not download train-images-idx3-ubyte.gz for mnist: .*by hand"
    ):
        data.load_mnist(tmp_path, download=True)
    assert list(tmp_path.iterdir()) == []  # no partial files


# ============================================================================================
# polynet.checkpoint
# ============================================================================================


@pytest.fixture
def saved(tmp_path) -> Path:
    return save(SLNN(3, [4], 2), tmp_path / "model.safetensors", metadata={"note": "x"})


def _rewrite(path: Path, header_changes=None, tensor_changes=None, fix_digest=True) -> None:
    """Re-save a checkpoint's tensors with an edited header, as a third-party writer might."""
    tensors = safetensors.torch.load_file(path)
    n = int.from_bytes(path.read_bytes()[:8], "little")
    header = json.loads(path.read_bytes()[8 : 8 + n])["__metadata__"]
    tensors.update(tensor_changes or {})
    tensors = {k: v for k, v in tensors.items() if v is not None}
    header.update(header_changes or {})
    if fix_digest:
        header["sha256"] = _tensor_digest(tensors)
        header["header_sha256"] = json.dumps(_header_digest(header))
    safetensors.torch.save_file(tensors, path, metadata=header)


def test_checkpoint_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match=r"no checkpoint at '.*nope.safetensors'; check"):
        polynet.load(tmp_path / "nope.safetensors")


def test_checkpoint_truncated(saved):
    saved.write_bytes(saved.read_bytes()[:-10])
    with pytest.raises(CheckpointError, match="is not a readable safetensors checkpoint"):
        load_checkpoint(saved)


def test_checkpoint_flipped_data_byte(saved):
    blob = bytearray(saved.read_bytes())
    blob[-5] ^= 0x40
    saved.write_bytes(bytes(blob))
    with pytest.raises(CheckpointError, match="damaged or was modified after it was written"):
        load_checkpoint(saved)


def test_checkpoint_flipped_header_byte(saved):
    blob = bytearray(saved.read_bytes())
    blob[12] ^= 0x55  # inside the JSON header
    saved.write_bytes(bytes(blob))
    with pytest.raises(CheckpointError, match="is not a readable safetensors checkpoint"):
        load_checkpoint(saved)


def test_checkpoint_newer_format_names_both_versions(saved):
    _rewrite(saved, {"polynet_format": "2"})
    with pytest.raises(
        CheckpointError,
        match=r"checkpoint format version 2, newer than this polynet reads \(version 1\)",
    ):
        load_checkpoint(saved)
    with pytest.raises(CheckpointError, match="format version 2"):
        read_metadata(saved)


def test_checkpoint_unknown_or_garbled_version(saved):
    _rewrite(saved, {"polynet_format": "0"})
    with pytest.raises(CheckpointError, match="unknown checkpoint format version 0; this"):
        load_checkpoint(saved)
    _rewrite(saved, {"polynet_format": "one"})
    with pytest.raises(CheckpointError, match="format version 'one', which is not an integer"):
        load_checkpoint(saved)


def test_checkpoint_plain_safetensors_file(tmp_path):
    path = tmp_path / "plain.safetensors"
    safetensors.torch.save_file(SLNN(2, [3], 2).state_dict(), path)
    with pytest.raises(CheckpointError, match="a safetensors file but not a polynet checkpoint"):
        load_checkpoint(path)


def test_checkpoint_config_and_weights_disagree(saved):
    config = json.loads(read_metadata_raw(saved)["config"])
    _rewrite(saved, {"config": json.dumps({**config, "hidden": [5]})})
    with pytest.raises(
        CheckpointError,
        match=r"weights do not match the SLNN config \(.*0.weight has shape \(4, 3\) but the "
        r"config gives \(5, 3\);",
    ):
        load_checkpoint(saved)


def test_checkpoint_missing_and_unexpected_tensors(saved):
    _rewrite(saved, tensor_changes={"2.bias": None, "9.weight": torch.zeros(2)})
    with pytest.raises(
        CheckpointError, match=r"missing tensors \['2.bias'\]; unexpected tensors \['9.weight'\]"
    ):
        load_checkpoint(saved)


def read_metadata_raw(path: Path) -> dict:
    n = int.from_bytes(path.read_bytes()[:8], "little")
    return json.loads(path.read_bytes()[8 : 8 + n])["__metadata__"]


def test_checkpoint_plain_sequential_cannot_be_saved(tmp_path):
    with pytest.raises(CheckpointError, match="cannot save a Sequential: .* polynet builder"):
        save(nn.Sequential(nn.Linear(2, 1)), tmp_path / "m.safetensors")


def test_checkpoint_model_edited_after_it_was_built(tmp_path):
    net = SLNN(3, [4], 2)
    net[2] = nn.Linear(4, 2)
    with pytest.raises(
        CheckpointError,
        match=r"no longer matches its config \(2.bias has shape \(2,\) but the config gives",
    ):
        save(net, tmp_path / "m.safetensors")


def test_checkpoint_metadata_must_be_json_and_unreserved(tmp_path):
    with pytest.raises(CheckpointError, match=r"cannot store metadata\['obj'\] in a checkpoint"):
        save(SLNN(2, [3], 2), tmp_path / "m", metadata={"obj": object()})
    with pytest.raises(CheckpointError, match=r"metadata keys \['config'\] are reserved"):
        save(SLNN(2, [3], 2), tmp_path / "m", metadata={"config": {}})


@no_cuda
def test_checkpoint_cuda_without_cuda(saved):
    with pytest.raises(ValueError, match="device='cuda' was asked for but CUDA is not available"):
        polynet.load(saved, device="cuda")


# ============================================================================================
# polynet.training
# ============================================================================================


@pytest.fixture(scope="module")
def tiny():
    return data.xor(40, random_state=0)


@no_cuda
def test_training_cuda_without_cuda():
    with pytest.raises(ValueError, match=r"device='cuda:1' was asked for but CUDA is not"):
        training.resolve_device("cuda:1")


def test_training_unknown_device():
    with pytest.raises(ValueError, match=r"device must be 'auto', 'cpu', 'cuda', 'cuda:N'"):
        training.resolve_device("gpu")


@pytest.mark.parametrize(
    "options, message",
    [
        ({"epochs": 0}, "epochs must be an integer >= 1, got 0"),
        ({"lr": -1.0}, "lr must be a finite number >= 0.0, got -1.0"),
        ({"optimizer": "rmsprop"}, "optimizer must be 'adam' or 'sgd', got 'rmsprop'"),
        ({"schedule": "linear"}, "schedule must be 'constant', 'step' or 'cosine'"),
        ({"clip_norm": 0}, "clip_norm must be a finite number > 0.0, got 0"),
        ({"threads": 0}, "threads must be an integer >= 1, got 0"),
        ({"val_fraction": 1.0}, r"val_fraction must be in \[0, 1\), got 1.0"),
        ({"patience": 3, "val_fraction": 0.0}, "patience needs a validation split to watch"),
        ({"metadata": {"history": 1}}, r"metadata keys \['history'\] are written by fit"),
    ],
)
def test_training_bad_options(tiny, options, message):
    with pytest.raises(ValueError, match=message):
        training.fit(SLNN(2, [3], 2, out_features=2), tiny, progress=False, **options)


def test_training_data_that_does_not_fit_the_model(tiny):
    with pytest.raises(DataError, match=r"the model has 1 outputs but the regression targets"):
        training.fit(SLNN(2, [3], 2), (tiny.X_train, np.zeros((32, 2))), progress=False)
    with pytest.raises(DataError, match="has 3 outputs but the data has 10 classes"):
        labels = np.arange(32) % 10
        training.fit(SLNN(2, [3], 2, out_features=3), (tiny.X_train, labels), progress=False)
    with pytest.raises(DataError, match=r"the model cannot take the inputs: samples of shape"):
        training.fit(SLNN(5, [3], 2, out_features=2), tiny, progress=False)
    with pytest.raises(DataError, match=r"data must be a polynet.data.Dataset or a pair \(X, y\)"):
        training.fit(SLNN(2, [3], 2), (tiny.X_train,), progress=False)


def test_training_non_finite_data(tiny):
    X = tiny.X_train.copy()
    X[3, 1] = math.nan
    with pytest.raises(DataError, match=r"X_train holds 1 non-finite value\(s\)"):
        training.fit(SLNN(2, [3], 2, out_features=2), (X, tiny.y_train), progress=False)


def test_training_out_with_an_unsaveable_model_fails_before_training(tiny, tmp_path):
    model = nn.Sequential(nn.Linear(2, 2))
    with pytest.raises(CheckpointError, match="cannot save a Sequential"):
        training.fit(model, tiny, epochs=1000, out=tmp_path, progress=False)
    assert list(tmp_path.iterdir()) == []


# ============================================================================================
# polynet.cli (train)
# ============================================================================================


def test_cli_usage_errors_exit_2(capsys):
    assert cli.main(["train", "--dataset", "nope"]) == 2
    assert "invalid choice: 'nope'" in capsys.readouterr().err
    assert cli.main(["train", "--dataset", "xor", "--dataset-arg", "n_samples"]) == 2
    assert "expected KEY=VALUE, got 'n_samples'" in capsys.readouterr().err


def test_cli_polynet_errors_exit_1_with_the_message(tmp_path, capsys):
    argv = ["train", "--dataset", "mnist", "--dataset-arg", f"path={tmp_path / 'none'}"]
    assert cli.main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("polynet train: error: mnist directory") and "Traceback" not in err
    assert cli.main([*argv, "--debug"]) == 1
    assert "Traceback" in capsys.readouterr().err


# ============================================================================================
# polynet.SLAF, nets and bases
# ============================================================================================


def test_slaf_degree_must_be_at_least_one():
    from polynet import SLAF

    with pytest.raises(ValueError, match=r"degree must be an integer >= 1, got 0; use degree=1"):
        SLAF(4, 0)


def test_slaf_wrong_input_shape_names_the_expected_ones():
    from polynet import SLAF

    with pytest.raises(ValueError, match=r"SLAF\(4\) expects input of shape \(B, 4\)"):
        SLAF(4)(torch.randn(3, 5))


def test_slaf_single_sample_in_training_mode():
    from polynet import SLAF

    with pytest.raises(ValueError, match="more than one value per channel"):
        SLAF(4)(torch.randn(1, 4))


def test_unknown_basis():
    from polynet import SLAF

    with pytest.raises(ValueError, match="basis must be one of"):
        SLAF(4, 2, "fourier")


# ============================================================================================
# polynet.expand, count_terms, verify, NetworkPolynomial
# ============================================================================================


def _eval_slnn(*args, **kwargs):
    from polynet import SLNN

    return SLNN(*args, **kwargs).eval()


def test_expand_refuses_relu_naming_position_and_remedy():
    from polynet import HybridNet, expand

    with pytest.raises(
        NotExpandableError,
        match=re.escape(
            "cannot expand model[2] (ReLU): ReLU is not a polynomial; replace it with an SLAF "
            "or expand model[:2]."
        ),
    ):
        expand(HybridNet(3, [4], "relu").eval())


def test_expand_refuses_maxpool_and_tanh():
    from polynet import expand

    net = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.Tanh()).eval()
    with pytest.raises(NotExpandableError, match=r"model\[1\] \(Tanh\): Tanh is not a polynomial"):
        expand(net)
    conv = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.MaxPool2d(2)).eval()
    with pytest.raises(NotExpandableError, match="max pooling is not a polynomial"):
        expand(conv, input_shape=(1, 6, 6))


def test_expand_refuses_emfn():
    from polynet import expand

    with pytest.raises(NotExpandableError, match=r"model\[1\] \(SLAF\): its 'emfn' basis"):
        expand(_eval_slnn(2, [3], 2, basis="emfn"))


def test_expand_refuses_training_mode():
    from polynet import SLNN, expand

    with pytest.raises(NotExpandableError, match=r"training mode.*call model.eval\(\) first"):
        expand(SLNN(2, [3], 2))


def test_expand_refuses_over_budget_before_allocating():
    from polynet import ExpansionTooLargeError, expand

    with pytest.raises(
        ExpansionTooLargeError,
        match=re.escape("C(784+4, 4) = 15,943,435,565 monomials of degree <= 4 in 784 inputs"),
    ) as info:
        expand(_eval_slnn(784, [8], 4))
    assert "inputs=[...]" in str(info.value) and "polynet.count_terms(model)" in str(info.value)
    with pytest.raises(ExpansionTooLargeError, match="over the budget of 100.0 B"):
        expand(_eval_slnn(3, [4], 2), max_memory=100)


def test_expand_refusal_from_counts_lowers_nothing(monkeypatch):
    # The paper's MNIST trunk (D = 16): refused from the layers' degrees and sizes alone,
    # without lowering the convolutions to matrices (13 s and 2.7 GiB before).
    from polynet import ExpansionTooLargeError, expand

    expand_module = importlib.import_module("polynet.expansion.dispatch")

    def never(*args, **kwargs):
        raise AssertionError("the layers were lowered before the refusal")

    monkeypatch.setattr(expand_module, "lower", never)
    net = polynet.ConvSLNN(1, 28, [16, 32], [4, 4], kernel_size=5).eval()
    with pytest.raises(ExpansionTooLargeError) as info:
        expand(net)
    text = str(info.value)
    assert re.search(
        r"needs at least 8\.6e\+25 GiB \(C\(784\+16, 16\) = 1\.16e\+33 monomials", text
    )
    assert "degree=2 (308,505 monomials" in text and "degree=3 (80,931,145 monomials" in text
    assert "degree=q, at=x0" in text and "inputs=[...] and fixed=..." in text
    assert "polynet.count_terms(model)" in text and "store=" not in text
    cli_text = info.value.refusal.cli_text()
    assert "--degree 2 (308,505 monomials" in cli_text and "--degree Q --at ROW" in cli_text
    assert "--inputs I ... [--fixed V ...]" in cli_text
    assert "inputs=[" not in cli_text and "degree=" not in cli_text


def test_expand_refusal_offers_a_store_only_when_it_fits(monkeypatch):
    from types import SimpleNamespace

    from polynet import ExpansionTooLargeError

    expand_module = importlib.import_module("polynet.expansion.dispatch")
    from polynet.expansion.network import lower
    from polynet.polynomial.index import MonomialIndex

    lowered = lower(_eval_slnn(6, [4], 2))
    the_plan = SimpleNamespace(
        index=MonomialIndex(6, 2),
        n_outputs=1,
        peak_bytes=5e9,
        store_peak_bytes=1e9,
        result_bytes=4e9,
        exact_peak_bytes=5e9,
        seconds=30.0,
    )
    for free, offered in [(1e15, True), (1e9, False)]:
        monkeypatch.setattr(expand_module, "disk_free", lambda path, free=free: free)
        with pytest.raises(ExpansionTooLargeError) as info:
            expand_module._check_budget(lowered, the_plan, int(2e9), False)
        assert ('store="coeffs.zarr" (about 0.9 GiB of memory' in str(info.value)) is offered
        assert ("--out coeffs.zarr" in info.value.refusal.cli_text()) is offered
    # A store that needs more than the budget of memory is not offered either.
    monkeypatch.setattr(expand_module, "disk_free", lambda path: 1e15)
    with pytest.raises(ExpansionTooLargeError) as info:
        expand_module._check_budget(lowered, the_plan, int(0.5e9), False)
    assert "store=" not in str(info.value) and "up to 6 inputs" not in str(info.value)


def test_expand_refusal_of_a_graph_model_offers_slices_and_degrees():
    from polynet import ExpansionTooLargeError, expand

    class Cube(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = nn.Linear(200, 3)

        def forward(self, x):
            y = self.lin(x)
            return y * y * y

    with pytest.raises(ExpansionTooLargeError) as info:
        expand(Cube().eval(), max_memory="10MiB")
    text = str(info.value)
    assert "C(200+3, 3) = 1,373,701 monomials of degree <= 3 in 200 inputs x 3 outputs" in text
    assert "degree=2 (20,301 monomials" in text and re.search(r"slice of up to \d+ inputs", text)
    assert "polynet.count_terms(model, input_shape=...)" in text


def test_expand_refusal_at_the_cli_names_flags(tmp_path, capsys):
    path = tmp_path / "wide.safetensors"
    save(SLNN(784, [8, 4], [2, 2], out_features=10), path)
    assert cli.main(["expand", str(path), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "polynet expand: error: expanding this network needs at least" in err
    assert "--degree 2" in err and "--inputs I ..." in err and "inputs=[" not in err


def test_sizes_past_a_million_gib_are_in_scientific_notation():
    from polynet.expansion.refusal import fmt_bytes, fmt_count, fmt_seconds

    assert fmt_bytes(1.156781e33 * 80) == "8.6e+25 GiB" and fmt_bytes(2.7 * 2**30) == "2.7 GiB"
    assert fmt_count(math.comb(800, 16)) == "1.16e+33" and fmt_count(203490) == "203,490"
    assert fmt_seconds(3e40) == "9.5e+32 years" and fmt_seconds(300) == "5 min"


def test_evaluation_refuses_over_budget_before_allocating(monkeypatch):
    from polynet import ExpansionTooLargeError

    memory = importlib.import_module("polynet.memory")

    net = _eval_slnn(5, [4], 2)
    poly = polynet.expand(net)
    monkeypatch.setattr(memory, "memory_budget", lambda device: 64 << 10)
    x = np.zeros((5000, 5))
    with pytest.raises(
        ExpansionTooLargeError,
        match=r"evaluating this polynomial \(21 monomials of degree <= 2 in 5 variables, 1 "
        r"output\(s\), 168\.0 B of coefficients\) at 5,000 points needs about .* over the "
        r"budget of 64\.0 KiB; evaluate it in batches of at most [0-9,]+ points",
    ):
        poly(x)
    with pytest.raises(ExpansionTooLargeError, match="at 6,000 points needs about"):  # + box
        polynet.verify(net, poly, x)
    assert poly(x[:100]).shape == (100, 1)  # a batch that fits


def test_expand_bad_slices():
    from polynet import expand

    net = _eval_slnn(4, [3], 2)
    with pytest.raises(ValueError, match=r"fixed= must give values for the 2 inputs"):
        expand(net, inputs=[0, 1])
    with pytest.raises(ValueError, match=r"inputs must be distinct input numbers in 0..3"):
        expand(net, inputs=[0, 4], fixed=[0, 0, 0, 0])
    with pytest.raises(ValueError, match=r"fixed= must have length 4"):
        expand(net, inputs=[0], fixed=[0, 0])
    with pytest.raises(ValueError, match="fixed= only applies together with inputs="):
        expand(net, fixed=[0, 0, 0, 0])


def test_expand_bad_max_memory_and_exact_engine():
    from polynet import expand

    net = _eval_slnn(2, [3], 2)
    with pytest.raises(ValueError, match="max_memory must be a number of bytes or a size"):
        expand(net, max_memory="lots")
    with pytest.raises(ValueError, match="exact must be True, False, 'modular', 'flint'"):
        expand(net, exact="fast")


class _TinyWeight(nn.Module):
    """A weight 1e-120 next to a bias 1: float64 cannot hold w + b, so no probe separates them."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(2, 1, dtype=torch.float64)
        with torch.no_grad():
            self.fc.weight.copy_(torch.tensor([[1e-120, 0.5]], dtype=torch.float64))
            self.fc.bias.fill_(1.0)

    def forward(self, x):
        return self.fc(x) * x


def test_exact_graph_refuses_a_linear_part_it_cannot_tell_from_the_bias():
    from polynet import expand

    model = _TinyWeight().eval()
    with pytest.raises(NotExpandableError, match=r"cannot record addmm exactly: .* 2\^-345"):
        expand(model, exact=True)
    assert expand(model).degree == 2  # the float path expands it


def test_expand_conv_without_a_known_input_shape():
    from polynet import expand

    net = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3)).eval()
    with pytest.raises(NotExpandableError, match=r"pass input_shape=\(C, H, W\)"):
        expand(net)


def test_count_terms_refuses_what_has_no_bound():
    from polynet import HybridNet, count_terms

    with pytest.raises(NotExpandableError, match=r"model\[2\] \(ReLU\): ReLU is not a polynomial"):
        count_terms(HybridNet(3, [4], "relu"))


def test_verify_points_of_the_wrong_width():
    from polynet import expand, verify

    net = _eval_slnn(3, [2], 2)
    with pytest.raises(ValueError, match=r"x must have shape \(B, 3\)"):
        verify(net, expand(net), torch.randn(4, 2))


def test_polynomial_points_of_the_wrong_width():
    from polynet import expand

    with pytest.raises(ValueError, match=r"points must have shape \(B, 3\)"):
        expand(_eval_slnn(3, [2], 2))(torch.randn(4, 5))


# -- expand(model, degree=, at=, form=) (expansion.truncated, expansion.factored) -------------


def test_expand_degree_refuses_store():
    with pytest.raises(ValueError, match=r"degree= returns its polynomial in memory; store="):
        polynet.expand(_eval_slnn(3, [2], 2), degree=1, store="coeffs.zarr")


def test_expand_sparse_or_factored_form_refuses_a_traced_model():
    class Square(nn.Module):
        def forward(self, x):
            return x * x

    for form in ("sparse", "factored"):
        with pytest.raises(NotExpandableError, match=rf"form='{form}' needs a chain model"):
            polynet.expand(Square().eval(), form=form, input_shape=(3,))


def test_expand_degree_on_a_traced_model_refuses_store():
    class Square(nn.Module):
        def forward(self, x):
            return x * x

    with pytest.raises(ValueError, match=r"degree= returns its polynomial in memory; store="):
        polynet.expand(Square().eval(), degree=1, input_shape=(3,), store="coeffs.zarr")
    # exact= with degree= works on traced models too (tests/poly/test_graph_exact.py)


def test_expand_degree_over_the_budget_names_lower_degrees():
    from polynet.errors import ExpansionTooLargeError

    net = SLNN(784, [16, 8], [2, 2]).eval()
    with pytest.raises(
        ExpansionTooLargeError, match=r"degree <= 3 part in 784 inputs has 8.09e\+07 monomials"
    ):
        polynet.expand(net, degree=3, max_memory="10MB")


def test_expand_at_of_the_wrong_size():
    with pytest.raises(
        ValueError, match=r"at= must have 3 values \(one per network input\), got 6"
    ):
        polynet.expand(_eval_slnn(3, [2], 2), degree=2, at=np.zeros((2, 3)))


def test_expand_factored_takes_no_degree():
    with pytest.raises(ValueError, match=r"form='factored' gives the whole polynomial"):
        polynet.expand(_eval_slnn(3, [2], 2), form="factored", degree=2)


def test_verify_refuses_a_taylor_part():
    from polynet.errors import PartialPolynomialError

    net = _eval_slnn(3, [2], 2)
    with pytest.raises(PartialPolynomialError, match=r"cannot verify this polynomial against"):
        polynet.verify(net, polynet.expand(net, degree=1))


# ============================================================================================
# polynet.data.files and polynet.model_source (your own data, your own model)
# ============================================================================================


@pytest.mark.parametrize(
    ("text", "target", "message"),
    [
        (
            "a,y\n1,2\n",
            "price",
            r"has no column 'price' \(--target\); its columns are \['a', 'y'\]",
        ),
        ("a,y\n1,2\nx,3\n", "y", r"row 3, column 'a' holds 'x', which is not a number"),
    ],
)
def test_data_file_refusals(tmp_path, text, target, message):
    path = tmp_path / "d.csv"
    path.write_text(text)
    with pytest.raises(DataError, match=message):
        data.read_table(path, target)


def test_train_data_file_needs_a_target(tmp_path, capsys):
    path = tmp_path / "d.csv"
    path.write_text("a,y\n1,2\n")
    assert cli.main(["train", "--data", str(path), "--no-progress"]) == 2
    assert "needs --target COLUMN (the column to predict)" in capsys.readouterr().err


def test_a_torch_save_file_is_not_called_damaged(tmp_path):
    path = tmp_path / "m.pt"
    torch.save(SLNN(2, [3], 2).state_dict(), path)
    with pytest.raises(CheckpointError, match=r"is a torch.save file \(a pickled state_dict"):
        load_checkpoint(path)


def test_state_dict_without_a_class(tmp_path):
    path = tmp_path / "model.safetensors"
    save(SLNN(2, [3], 2).eval(), path)
    with pytest.raises(CheckpointError, match="--state-dict and --init-args go with a class"):
        polynet.model_source.resolve(path, state_dict="w.pt")


# ============================================================================================
# Inputs that would give silent garbage (trust: see docs/files.md and tests/test_faults.py)
# ============================================================================================


@pytest.mark.parametrize("where", ["weight", "running_var"])
def test_non_finite_weights_are_refused_naming_the_layer(where):
    torch.manual_seed(0)
    net = polynet.SLNN(3, [4], 2).eval()
    target = dict(net.named_parameters()) | dict(net.named_buffers())
    name = next(k for k in target if k.endswith(where) and target[k].numel())
    with torch.no_grad():
        target[name].view(-1)[0] = float("inf")
    with pytest.raises(NotExpandableError, match=rf"{name} \(\w+\) holds 1 NaN/Inf value"):
        polynet.expand(net)


def test_bad_numbers_are_refused():
    net = polynet.SLNN(2, [3], 1).eval()
    with pytest.raises(ValueError, match=r"got '2\.\.5GiB'.*--max-memory 4GiB"):
        polynet.expand(net, max_memory="2..5GiB")
    with pytest.raises(ValueError, match="tol must be a positive number, got -1"):
        polynet.verify(net, polynet.expand(net), tol=-1)
    assert polynet.expand(net, max_memory="0.5").n_terms > 0  # a share of free memory


def test_unknown_onnx_opset_is_refused(tmp_path):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    w = helper.make_tensor("w", TensorProto.FLOAT, [2, 1], [1.0, 2.0])
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 1])],
        [w],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 99)])
    path = tmp_path / "m.onnx"
    onnx.save(model, path)
    with pytest.raises(CheckpointError, match="declares ONNX opset 99, outside the opsets 1 to"):
        polynet.from_onnx(path)
    nan_model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    nan_model.graph.initializer[0].float_data[1] = float("nan")
    with pytest.raises(NotExpandableError, match="holds 1 NaN/Inf value"):
        polynet.expand(polynet.from_onnx(nan_model))


def test_graph_model_with_client_is_refused(tmp_path):
    class Square(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(2, 1)

        def forward(self, x):
            y = self.fc(x)
            return y * y + x.sum(1, keepdim=True)

    with pytest.raises(NotExpandableError, match="client= distributes the blocks of a chain"):
        polynet.expand(Square().eval(), store=tmp_path / "g.zarr", client=object())
    assert not (tmp_path / "g.zarr").exists()


def test_at_a_data_row_of_a_model_without_data_says_to_give_the_values():
    from types import SimpleNamespace

    from polynet.expansion.truncated import point_from_checkpoint

    onnx_like = SimpleNamespace(metadata={})
    with pytest.raises(ValueError, match=r"--at 3 names a row of the model's data.*--at 0\.5,1,0"):
        point_from_checkpoint(onnx_like, "3")
    assert point_from_checkpoint(onnx_like, "0.5,").tolist() == [0.5]
    assert point_from_checkpoint(onnx_like, "1,-2.5").tolist() == [1.0, -2.5]
