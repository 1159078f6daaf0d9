"""A store-backed expansion equals the in-memory one, reopens, and is never half-complete."""

import json

import numpy as np
import pytest
import torch

import polynet
from polynet import PolynetError
from polynet.expansion import fold, store_walk
from polynet.polynomial import store
from polynet.polynomial.store import StoredPolynomial, exponents_at, open_store

pytest.importorskip("zarr")
pytest.importorskip("dask")


@pytest.fixture
def small_blocks(monkeypatch):
    """Budgets so small that a 4-input network splits into many blocks and chunks."""
    monkeypatch.setattr(fold, "PAIR_ELEMENTS", 64)
    monkeypatch.setattr(fold, "BLOCK_ELEMENTS", 32)
    monkeypatch.setattr(store, "CHUNK_TERMS", 50)
    monkeypatch.setattr(store, "EVAL_BLOCK_TERMS", 16)


@pytest.fixture
def net():
    torch.manual_seed(1)
    return polynet.SLNN(4, [6, 5], [3, 2], out_features=2).eval()


def test_store_equals_memory_and_reopens(tmp_path, net, small_blocks):
    memory = polynet.expand(net)
    stored = polynet.expand(net, store=tmp_path / "c.zarr")
    assert isinstance(stored, StoredPolynomial) and stored.info["blocks"] > 10
    np.testing.assert_array_equal(np.asarray(stored.coefficients[:]), memory.coefficients.numpy())
    again = open_store(tmp_path / "c.zarr")
    assert (again.degree, again.n_terms, again.max_terms) == (
        memory.degree,
        memory.n_terms,
        memory.max_terms,
    )
    assert again.n_terms_per_output() == memory.n_terms_per_output()
    np.testing.assert_allclose(again.degree_profile(), memory.degree_profile(), rtol=1e-12)
    assert again.terms(5, output=1) == memory.terms(5, output=1)
    assert again.to_latex(top=4) == memory.to_latex(top=4)
    x = torch.randn(40, 4, dtype=torch.float64)
    torch.testing.assert_close(again(x), memory(x), rtol=1e-12, atol=1e-12)
    assert polynet.verify(net, again).passed
    torch.testing.assert_close(again.to_memory().coefficients, memory.coefficients)


def test_store_of_a_slice_verifies(tmp_path, net):
    poly = polynet.expand(net, inputs=[0, 2], fixed=np.zeros(4), store=tmp_path / "s.zarr")
    assert poly.variables == ["x0", "x2"]
    assert polynet.verify(net, poly).passed


def test_exponents_at_inverts_the_index():
    for n, d in [(1, 3), (3, 4), (6, 3)]:
        index = polynet.MonomialIndex(n, d)
        np.testing.assert_array_equal(exponents_at(n, np.arange(index.size)), index.exponents)


def test_a_failed_run_leaves_no_store(tmp_path, net, monkeypatch, small_blocks):
    calls = {"n": 0}
    original = fold.QuadraticFold.block_values

    def failing(self, block):
        calls["n"] += 1
        if calls["n"] > 3:
            raise RuntimeError("worker lost")
        return original(self, block)

    monkeypatch.setattr(fold.QuadraticFold, "block_values", failing)
    with pytest.raises(RuntimeError, match="worker lost"):
        polynet.expand(net, store=tmp_path / "c.zarr")
    assert list(tmp_path.iterdir()) == []


def test_an_incomplete_store_is_refused(tmp_path, net):
    path = polynet.expand(net, store=tmp_path / "c.zarr").path
    meta_file = path / "zarr.json"
    meta = json.loads(meta_file.read_text())
    meta["attributes"]["polynet"]["complete"] = False
    meta_file.write_text(json.dumps(meta))
    with pytest.raises(PolynetError, match="incomplete"):
        open_store(path)
    with pytest.raises(PolynetError, match="no polynomial store"):
        open_store(tmp_path / "missing.zarr")


def test_store_overwrites_a_store_but_not_other_data(tmp_path, net):
    polynet.expand(net, store=tmp_path / "c.zarr")
    polynet.expand(net, store=tmp_path / "c.zarr")
    (tmp_path / "data").mkdir()
    with pytest.raises(PolynetError, match="not a polynet store"):
        polynet.expand(net, store=tmp_path / "data")


def test_the_store_path_builds_no_exponent_table(tmp_path, net, small_blocks):
    # Exponents over the whole index (11.7 GB at n = 30, degree 8) or a block's would be
    # memory the estimate does not count: the fold and the writer work from counts.
    from polynet.polynomial import index

    index._exponents.cache_clear()
    polynet.expand(net, store=tmp_path / "c.zarr")
    assert index._exponents.cache_info().misses == 0


def test_store_estimate_follows_the_blocks_not_the_index(monkeypatch):
    from polynet.expansion.dense import plan
    from polynet.expansion.dispatch import estimate
    from polynet.expansion.network import lower

    plans = {n: plan(lower(polynet.SLNN(n, [128, 64], [4, 2]).eval())) for n in (30, 40, 60)}
    peaks = {n: store_walk.store_peak_bytes(p, workers=2) for n, p in plans.items()}
    # 60 inputs, degree 8: 55 GB of coefficients; the store needs a few GiB (blocks, the map
    # cache, the unit powers of degree <= 4), growing with T(n, 4), not with the index.
    assert plans[60].result_bytes > 50e9
    assert peaks[30] < peaks[40] < peaks[60] < 5 * 2**30
    # Each thread of the local scheduler holds its own block, Gram chunk and group.
    assert store_walk.store_peak_bytes(plans[40], workers=4) > peaks[40]
    monkeypatch.setattr(store_walk, "_local_workers", lambda: 3)
    assert estimate(polynet.SLNN(40, [128, 64], [4, 2]).eval()).store_peak_bytes == (
        store_walk.store_peak_bytes(plans[40], workers=3)
    )


def test_heap_guard_trims_only_past_its_limit(monkeypatch):
    calls = []
    monkeypatch.setattr(store_walk, "_MALLOC_TRIM", lambda pad: calls.append(pad) or 1)
    store_walk.HeapGuard(float("inf"))()
    assert calls == []
    guard = store_walk.HeapGuard(0)
    guard()
    guard()  # within TRIM_MIN_SECONDS of the first
    if store_walk._rss_bytes() is not None:
        assert calls == [0] and guard.trims == 1
    monkeypatch.setattr(store_walk, "_MALLOC_TRIM", None)  # no glibc: nothing to call
    store_walk.HeapGuard(0)()


@pytest.mark.slow
def test_local_cluster_equals_memory(tmp_path, net, small_blocks):
    distributed = pytest.importorskip("distributed")
    memory = polynet.expand(net)
    with (
        distributed.LocalCluster(
            n_workers=2, processes=True, threads_per_worker=1, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        # The blocks are chosen here (small budgets); the workers only fold them.
        stored = polynet.expand(net, store=tmp_path / "c.zarr", client=client)
    np.testing.assert_allclose(
        np.asarray(stored.coefficients[:]), memory.coefficients.numpy(), rtol=1e-12, atol=1e-15
    )


def test_cli_expands_into_a_store_and_verifies_it(tmp_path, capsys):
    from polynet import data
    from polynet.checkpoint import save
    from polynet.cli import main

    from .test_expand import with_running_stats

    ds = data.load("boston").standardize(targets=True)
    model = with_running_stats(polynet.SLNN(13, [6, 4], [2, 2]), 13, 0)
    ckpt = tmp_path / "model.safetensors"
    save(model, ckpt, metadata={"dataset": ds.to_metadata()})
    out = tmp_path / "coeffs.zarr"
    assert main(["expand", str(ckpt), "--out", str(out), "--top", "3", "--no-progress"]) == 0
    assert f"wrote        {out}" in capsys.readouterr().out
    assert main(["verify", str(ckpt), "--poly", str(out)]) == 0
    assert "verification PASSED" in capsys.readouterr().out
