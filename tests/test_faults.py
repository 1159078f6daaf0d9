"""Fault injection: kill -9 inside every writer, damaged files, full disks, read-only folders,
two processes on one cache, a killed Dask worker.

Each test asserts that nothing is lost (the old value or the complete new one is there) and
that the outcome is a clear error or a correct result. Writers are killed in processes forked
from one helper process that imported polynet once (a "zygote": forking costs milliseconds,
a fresh interpreter seconds); the child patches a function (``os.fsync``, ``os.replace``, a
writer's step) to SIGKILL itself at its n-th call. Checks run here, in the test process.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import subprocess
import sys
import textwrap
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

import polynet
from polynet import PolynetError
from polynet.checkpoint import load_checkpoint, save
from polynet.errors import CheckpointError, StoreError
from polynet.expansion import fold
from polynet.polynomial import store
from polynet.polynomial.network_polynomial import NetworkPolynomial

pytestmark = pytest.mark.faults

ROOT = Path(__file__).resolve().parents[1]

# The helper process: reads one JSON request per line, forks, runs the request's code in the
# child (stdout to stderr, so the protocol stays clean), answers how the child ended.
ZYGOTE = r"""
import json, os, signal, sys, traceback
import torch
torch.set_num_threads(1)  # before any torch op: no thread pool to break in forked children
import numpy as np
import polynet, polynet.atomic, polynet.checkpoint, polynet.export, polynet.cli
from polynet.expansion import fold
from polynet.polynomial import network_polynomial as polynomial, store

def kill_at(owner, name, n, after=False):
    # Replace owner.name by a wrapper that SIGKILLs this process at its n-th call (before
    # the call runs, or after it returned).
    real = getattr(owner, name)
    calls = [0]
    def wrapper(*args, **kwargs):
        calls[0] += 1
        if calls[0] == n and not after:
            os.kill(os.getpid(), signal.SIGKILL)
        out = real(*args, **kwargs)
        if calls[0] == n and after:
            os.kill(os.getpid(), signal.SIGKILL)
        return out
    setattr(owner, name, wrapper)

out = sys.stdout
def child(req, copy):
    code = 3
    try:
        os.dup2(2, 1)
        os.environ.update(req.get("env") or {})
        os.environ["COPY"] = str(copy)
        if req.get("fsize"):
            import resource
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (req["fsize"], req["fsize"]))
        scope = {**globals(), "__name__": "child"}
        exec(req["code"], scope)
        code = scope.get("exit_code", 0)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        traceback.print_exc()
    finally:
        try:
            sys.stdout.flush(); sys.stderr.flush()
        except BaseException:
            pass
        os._exit(code)

for line in sys.stdin:
    req = json.loads(line)
    pids = []
    for copy in range(req.get("copies", 1)):  # copies run at the same time
        pid = os.fork()
        if pid == 0:
            child(req, copy)
        pids.append(pid)
    replies = []
    for pid in pids:
        _, status = os.waitpid(pid, 0)
        killed = os.WIFSIGNALED(status)
        replies.append({"killed": killed, "code": None if killed else os.WEXITSTATUS(status)})
    out.write(json.dumps(replies if len(replies) > 1 else replies[0]) + "\n")
    out.flush()
"""


class Zygote:
    """Runs code in forked children of one pre-imported interpreter."""

    def __init__(self) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
        self.proc = subprocess.Popen(
            [sys.executable, "-c", ZYGOTE],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
            cwd=ROOT,
        )

    def run(self, code: str, env: dict | None = None, fsize: int | None = None, copies: int = 1):
        """Run ``code`` in a fresh fork (``copies`` forks at once, $COPY telling them apart);
        returns {"killed": bool, "code": exit code} (a list of them for copies > 1)."""
        request = {"code": textwrap.dedent(code), "env": env or {}, "fsize": fsize}
        request["copies"] = copies
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        assert line, "the fault-injection helper process died"
        return json.loads(line)

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


@pytest.fixture(scope="module")
def zygote():
    z = Zygote()
    yield z
    z.close()


@pytest.fixture(scope="module")
def polys(tmp_path_factory):
    """Two different polynomials of the same shape, saved: the old and the new value."""
    folder = tmp_path_factory.mktemp("polys")
    out = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        net = polynet.SLNN(3, [4], [2], out_features=2).eval()
        out.append(polynet.expand(net).save(folder / f"p{seed}.npz"))
    return out


def _same_poly(a: NetworkPolynomial, b: NetworkPolynomial) -> bool:
    return torch.equal(a.coefficients, b.coefficients) and a.variables == b.variables


def _leftovers(folder: Path, name: str) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(f".{name}."))


# -- kill -9 inside each writer ---------------------------------------------------------------
# (function patched, call number, after the call?): data written but not synced, at the
# rename, after the rename.
FILE_POINTS = [("os", "fsync", 1, False), ("os", "replace", 1, False), ("os", "replace", 1, True)]


@pytest.mark.parametrize("point", FILE_POINTS, ids=lambda p: f"{p[1]}{p[2]}{'+' if p[3] else ''}")
@pytest.mark.parametrize("fmt", ["npz", "json", "checkpoint"])
def test_kill_in_single_file_writers_keeps_old_or_new(zygote, polys, tmp_path, fmt, point):
    owner, name, n, after = point
    if fmt == "checkpoint":
        target = tmp_path / "model.safetensors"
        torch.manual_seed(1)
        old = polynet.SLNN(3, [4], 2).eval()
        save(old, target)
        write = f"""
            torch.manual_seed(2)
            new = polynet.SLNN(3, [4], 2).eval()
            kill_at({owner}, "{name}", {n}, {after})
            polynet.checkpoint.save(new, "{target}")
        """
    else:
        target = tmp_path / f"poly.{fmt}"
        NetworkPolynomial.load(polys[0]).save(target)
        write = f"""
            new = polynomial.NetworkPolynomial.load("{polys[1]}")
            kill_at({owner}, "{name}", {n}, {after})
            new.save("{target}")
        """
    result = zygote.run("import os, torch, polynet\n" + textwrap.dedent(write))
    assert result["killed"]
    if fmt == "checkpoint":
        torch.manual_seed(2)
        new = polynet.SLNN(3, [4], 2).eval()
        got = load_checkpoint(target).model.state_dict()
        olds, news = old.state_dict(), new.state_dict()
        assert all(torch.equal(got[k], olds[k]) for k in got) or all(
            torch.equal(got[k], news[k]) for k in got
        )
        expected_new = after and name == "replace"
        assert all(torch.equal(got[k], (news if expected_new else olds)[k]) for k in got)
    else:
        got = NetworkPolynomial.load(target)
        want = NetworkPolynomial.load(polys[1] if (after and name == "replace") else polys[0])
        assert _same_poly(got, want)
    # A killed writer's temporary is removed by the next write to that name (only that name).
    stale = _leftovers(tmp_path, target.name)
    assert bool(stale) == (not after)
    NetworkPolynomial.load(polys[1]).save(tmp_path / "other.npz")
    assert _leftovers(tmp_path, target.name) == stale
    if fmt == "checkpoint":
        save(old, target)
    else:
        NetworkPolynomial.load(polys[0]).save(target)
    assert _leftovers(tmp_path, target.name) == []


def _bundle_bytes(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


@pytest.fixture
def bundles(polys, tmp_path):
    """Reference bundles of the old and the new polynomial, and a live one holding the old."""
    from polynet.export import write_bundle

    refs = []
    for i, p in enumerate(polys):
        write_bundle(NetworkPolynomial.load(p), tmp_path / f"ref{i}")
        refs.append(_bundle_bytes(tmp_path / f"ref{i}"))
    live = tmp_path / "live"
    write_bundle(NetworkPolynomial.load(polys[0]), live)
    (live / "model.safetensors").write_bytes(b"a checkpoint beside the bundle")
    return live, refs


# Each file of the bundle is renamed inside the temporary folder (os.replace 1, 2, ...), then the
# folder is swapped in (_exchange), then the old one is removed (rmtree).
BUNDLE_POINTS = [
    ("os", "replace", 1, False),
    ("os", "replace", 3, True),
    ("os", "replace", 4, True),
    ("polynet.atomic", "_exchange", 1, False),
    ("polynet.atomic", "_exchange", 1, True),
    ("shutil", "rmtree", 1, False),
]


@pytest.mark.parametrize("point", BUNDLE_POINTS, ids=lambda p: f"{p[1]}{p[2]}{'+' if p[3] else ''}")
def test_kill_in_bundle_writer_keeps_old_or_new_bundle(zygote, polys, bundles, point):
    live, (old, new) = bundles
    owner, name, n, after = point
    result = zygote.run(
        f"""
        import os, shutil, polynet.atomic
        new = polynomial.NetworkPolynomial.load("{polys[1]}")
        kill_at({owner}, "{name}", {n}, {after})
        polynet.export.write_bundle(new, "{live}")
        """
    )
    assert result["killed"]
    got = _bundle_bytes(live)
    assert got.pop("model.safetensors") == b"a checkpoint beside the bundle"
    assert got in (old, new)
    swapped = name == "rmtree" or (name == "_exchange" and after)
    assert got == (new if swapped else old)
    # The next write cleans up what the killed one left and completes.
    polynet.export.write_bundle(NetworkPolynomial.load(polys[1]), live)
    got = _bundle_bytes(live)
    assert got.pop("model.safetensors") == b"a checkpoint beside the bundle"
    assert got == new and _leftovers(live.parent, "live") == []


# Where names cannot be swapped at once: after the bundle's files (one os.replace each), the
# old bundle is renamed to .old (the next os.replace), then the new one into place (the one
# after that).
RENAMES = [(1, False, "old"), (1, True, "hidden"), (2, True, "new")]


@pytest.mark.parametrize("rename", RENAMES, ids=["before-first", "between", "after-second"])
def test_crash_at_each_rename_of_a_two_rename_replacement(zygote, polys, bundles, rename):
    live, (old, new) = bundles
    offset, after, state = rename
    n = len(new) + offset
    result = zygote.run(
        f"""
        import os, polynet.atomic
        polynet.atomic._exchange = lambda a, b: False
        new = polynomial.NetworkPolynomial.load("{polys[1]}")
        kill_at(os, "replace", {n}, {after})
        polynet.export.write_bundle(new, "{live}")
        """
    )
    assert result["killed"]
    assert live.exists() == (state != "hidden")  # hidden: only as .live.<pid>-<random>.old
    assert polynet.atomic.remove_stale(live.parent, "live") >= 1  # what the next run does
    got = _bundle_bytes(live)
    assert got.pop("model.safetensors") == b"a checkpoint beside the bundle"
    assert got == (new if state == "new" else old)
    assert _leftovers(live.parent, "live") == []


@pytest.fixture
def store_net(monkeypatch):
    """Small chunks: a 3-input network's store has several."""
    monkeypatch.setattr(store, "CHUNK_TERMS", 8)
    nets = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        nets.append(polynet.SLNN(3, [5, 4], [2, 2], out_features=2).eval())
    return nets


STORE_SETUP = """
import torch, polynet.atomic
from polynet.expansion import fold
from polynet.polynomial import store
store.CHUNK_TERMS = 8
torch.manual_seed(2)
net = polynet.SLNN(3, [5, 4], [2, 2], out_features=2).eval()
"""
STORE_POINTS = [
    ("store._ChunkWriter", "_write", 1, False),
    ("store._ChunkWriter", "_write", 3, True),
    ("polynet.atomic", "_exchange", 1, False),
    ("polynet.atomic", "_exchange", 1, True),
]


@pytest.mark.parametrize("point", STORE_POINTS, ids=lambda p: f"{p[1]}{p[2]}{'+' if p[3] else ''}")
def test_kill_in_store_writer_keeps_old_or_new_store(zygote, store_net, tmp_path, point):
    path = tmp_path / "c.zarr"
    old = polynet.expand(store_net[0], store=path).to_memory().coefficients
    new = polynet.expand(store_net[1]).coefficients
    owner, name, n, after = point
    result = zygote.run(
        STORE_SETUP
        + f"kill_at({owner}, '{name}', {n}, {after})\n"
        + f"polynet.expand(net, store='{path}')\n"
    )
    assert result["killed"]
    got = store.open_store(path).to_memory().coefficients
    assert torch.equal(got, new if (name == "_exchange" and after) else old)
    polynet.expand(store_net[1], store=path)  # the retry succeeds and cleans up
    assert torch.equal(store.open_store(path).to_memory().coefficients, new)
    assert _leftovers(tmp_path, "c.zarr") == []


def test_kill_in_cache_writer_then_rebuilt(zygote, tmp_path):
    cache = tmp_path / "cache"
    env = {"POLYNET_CACHE_DIR": str(cache)}
    code = """
        import torch
        from polynet.expansion import fold
        fold.DISK_CACHE_MIN_ENTRIES = 1
        torch.manual_seed(5)
        net = polynet.SLNN(3, [5, 4], [2, 2]).eval()
        {kill}
        torch.save(polynet.expand(net).coefficients, "{out}")
    """
    result = zygote.run(code.format(kill='kill_at(os, "fsync", 1)', out="-"), env=env)
    assert result["killed"]
    stale = [p for p in (cache / "maps").iterdir() if p.name.startswith(".")]
    assert stale and not list((cache / "maps").glob("fold2-*.bin"))  # only the temporary
    out = tmp_path / "c.pt"
    result = zygote.run(code.format(kill="", out=out), env=env)
    assert result == {"killed": False, "code": 0}
    torch.manual_seed(5)
    fold.clear_cache()
    reference = polynet.expand(polynet.SLNN(3, [5, 4], [2, 2]).eval()).coefficients
    assert torch.equal(torch.load(out), reference)
    names = [p.name for p in (cache / "maps").iterdir()]
    assert names and all(n.startswith("fold2-") for n in names)  # the temporary was removed


# -- bit flips and truncation in every on-disk format -----------------------------------------
def _flips(raw: bytes, count: int, seed: int = 0):
    rng = random.Random(seed)
    for _ in range(count):
        damaged = bytearray(raw)
        damaged[rng.randrange(len(raw))] ^= 1 << rng.randrange(8)
        yield bytes(damaged)


def _truncations(raw: bytes, count: int = 12):
    return [raw[:n] for n in np.linspace(0, len(raw) - 1, count).astype(int)]


@pytest.mark.parametrize("fmt", ["npz", "json"])
def test_damaged_polynomial_files_error_or_load_unchanged(polys, tmp_path, fmt):
    poly = NetworkPolynomial.load(polys[0])
    path = poly.save(tmp_path / f"p.{fmt}")
    raw = path.read_bytes()
    errors = 0
    for damaged in [*_flips(raw, 150), *_truncations(raw)]:
        path.write_bytes(damaged)
        try:
            got = NetworkPolynomial.load(path)
        except PolynetError as exc:
            assert str(path) in str(exc)
            errors += 1
            continue
        assert _same_poly(got, poly) and got.degree_bound == poly.degree_bound
    assert errors > 100


def test_damaged_checkpoints_error_or_load_unchanged(tmp_path):
    torch.manual_seed(0)
    metadata = {"dataset": {"name": "x", "scaler": {"mean": [1.5, 2.5, 0.5], "scale": [3.0] * 3}}}
    path = save(polynet.SLNN(3, [4], 2).eval(), tmp_path / "m.safetensors", metadata=metadata)
    ref = load_checkpoint(path)
    raw = path.read_bytes()
    errors = 0
    for damaged in [*_flips(raw, 200), *_truncations(raw)]:
        path.write_bytes(damaged)
        try:
            got = load_checkpoint(path)
        except CheckpointError as exc:
            assert str(path) in str(exc)
            errors += 1
            continue
        state, ref_state = got.model.state_dict(), ref.model.state_dict()
        assert all(torch.equal(state[k], ref_state[k]) for k in ref_state)
        assert got.config == ref.config
        # A flip inside the name "header_sha256" turns the digest into one more metadata
        # entry: everything that was saved is still there, unchanged.
        assert ref.metadata.items() <= got.metadata.items()
    assert errors > 150


def test_damaged_store_chunks_are_named(tmp_path, store_net):
    path = tmp_path / "c.zarr"
    polynet.expand(store_net[0], store=path)
    chunk_dir = path / "coefficients" / "c" / "0"
    chunk = chunk_dir / "2"
    raw = chunk.read_bytes()
    for damaged in [*_flips(raw, 20), *_truncations(raw, 5)]:
        chunk.write_bytes(damaged)
        poly = store.open_store(path)
        with pytest.raises(StoreError, match=r"is damaged: chunk .*c/0/2 cannot be read"):
            poly.to_memory()
        with pytest.raises(StoreError, match="run the expansion again"):
            poly.terms(top=3)
    chunk.unlink()  # a missing chunk is not zeros
    with pytest.raises(StoreError, match=r"1 of \d+ chunk files are missing \(first: .*c/0/2\)"):
        store.open_store(path)
    (path / "coefficients" / "zarr.json").write_text("{not json")
    with pytest.raises(StoreError, match="is not a readable polynet store"):
        store.open_store(path)


def test_store_without_checksums_opens_with_a_warning(tmp_path, store_net):
    path = tmp_path / "old.zarr"
    memory = polynet.expand(store_net[0])
    import zarr

    group = zarr.open_group(str(path), mode="w", zarr_format=3)
    array = group.create_array("coefficients", shape=memory.coefficients.shape, dtype="float64")
    array[:] = memory.coefficients.numpy()
    meta = {"format": "polynet.StoredPolynomial", "version": 1, "complete": True}
    meta.update(n_vars=3, index_degree=memory.index.degree, degree_bound=memory.degree_bound)
    meta.update(variables=memory.variables, n_terms=memory.n_terms, degree=memory.degree)
    group.attrs["polynet"] = meta
    with pytest.warns(polynet.PolynetWarning, match="without checksums"):
        old = store.open_store(path)
    assert torch.equal(old.to_memory().coefficients, memory.coefficients)


def test_damaged_cache_entries_are_rebuilt_never_used(tmp_path, monkeypatch):
    monkeypatch.setenv("POLYNET_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(fold, "DISK_CACHE_MIN_ENTRIES", 1)
    torch.manual_seed(5)
    net = polynet.SLNN(3, [5, 4], [2, 2]).eval()
    fold.clear_cache()
    reference = polynet.expand(net).coefficients
    (entry,) = (tmp_path / "maps").glob("fold2-*.bin")
    raw = entry.read_bytes()
    for damaged in [*_flips(raw, 30), *_truncations(raw, 6)]:
        entry.write_bytes(damaged)
        fold.clear_cache()
        assert torch.equal(polynet.expand(net).coefficients, reference)
        assert entry.read_bytes() == raw  # rewritten whole
    # A version-1 entry (first row checked only) is never read, and removed on the next write.
    (tmp_path / "maps" / "fold1-n3-a2-b2-s7-c16777216.npy").write_bytes(b"old")
    entry.unlink()
    fold.clear_cache()
    assert torch.equal(polynet.expand(net).coefficients, reference)
    assert [p.name for p in (tmp_path / "maps").iterdir()] == [entry.name]


# -- full disk, read-only folders ------------------------------------------------------------
@contextlib.contextmanager
def _small_disk(tmp_path: Path, kib: int):
    """A tmpfs of ``kib`` KiB where this process may mount one; else None (use RLIMIT_FSIZE)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = None
    if os.geteuid() == 0:
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={kib}k", "tmpfs", str(mount)],
            capture_output=True,
        )
    if done is None or done.returncode != 0:
        yield None
        return
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def _cli(zygote, argv, tmp_path, **kw) -> tuple[dict, str]:
    err = tmp_path / f"stderr{random.randrange(10**9)}.txt"
    result = zygote.run(
        f"""
        import sys, os
        fd = os.open("{err}", os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        os.dup2(fd, 2)
        exit_code = polynet.cli.main({argv!r})
        """,
        **kw,
    )
    return result, err.read_text()


@pytest.fixture
def checkpoint(tmp_path):
    torch.manual_seed(3)
    return save(polynet.SLNN(4, [6, 5], [3, 2]).eval(), tmp_path / "model.safetensors")


def test_full_disk_keeps_the_old_outputs_and_says_so(zygote, polys, checkpoint, tmp_path):
    from polynet.export import write_bundle

    with _small_disk(tmp_path, 96) as disk:
        folder = disk if disk is not None else tmp_path / "limited"
        folder.mkdir(exist_ok=True)
        bundle = folder / "bundle"
        write_bundle(NetworkPolynomial.load(polys[0]), bundle)
        before = _bundle_bytes(bundle)
        fsize = None
        if disk is not None:  # fill it up
            with contextlib.suppress(OSError), open(disk / "ballast", "wb") as fh:
                while True:
                    fh.write(b"\0" * 4096)
                    fh.flush()
        else:
            fsize = 1024  # no tmpfs: every file the writer writes stops at 1 KiB
        result, err = _cli(
            zygote,
            ["expand", str(checkpoint), "--out", str(bundle), "--no-progress"],
            tmp_path,
            fsize=fsize,
        )
        assert result == {"killed": False, "code": 1}, err
        lines = [x for x in err.splitlines() if x.startswith("polynet")]
        assert len(lines) == 1 and "Traceback" not in err
        assert ("disk is full" in err) or ("larger than this system allows" in err)
        assert _bundle_bytes(bundle) == before
        assert _leftovers(folder, "bundle") == []
        # A store and a checkpoint on the full disk: an error, the old ones untouched.
        result, err = _cli(
            zygote,
            ["expand", str(checkpoint), "--out", str(folder / "c.zarr")],
            tmp_path,
            fsize=fsize,
        )
        assert result == {"killed": False, "code": 1} and "Traceback" not in err, err
        assert not (folder / "c.zarr").exists() and _leftovers(folder, "c.zarr") == []


def test_read_only_folders(zygote, polys, checkpoint, tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    NetworkPolynomial.load(polys[0]).save(ro / "p.npz")
    mounted = False
    if os.geteuid() == 0:  # root writes through permissions: a read-only bind mount instead
        done = subprocess.run(["mount", "--bind", str(ro), str(ro)], capture_output=True)
        mounted = done.returncode == 0
        if mounted:
            remount = ["mount", "-o", "remount,ro,bind", str(ro)]
            done = subprocess.run(remount, capture_output=True)
        if not mounted or done.returncode != 0:
            pytest.skip("running as root without a way to make a folder read-only")
    else:
        ro.chmod(0o555)
    try:
        result, err = _cli(zygote, ["expand", str(checkpoint), "--out", str(ro / "b")], tmp_path)
        assert result == {"killed": False, "code": 1}
        assert "read-only or permission denied" in err and "Traceback" not in err
        assert _same_poly(NetworkPolynomial.load(ro / "p.npz"), NetworkPolynomial.load(polys[0]))
        # The cache in a read-only folder: the expansion is still right, nothing is written.
        result = zygote.run(
            f"""
            from polynet.expansion import fold
            fold.DISK_CACHE_MIN_ENTRIES = 1
            torch.manual_seed(5)
            net = polynet.SLNN(3, [5, 4], [2, 2]).eval()
            torch.save(polynet.expand(net).coefficients, "{tmp_path / "ro.pt"}")
            """,
            env={"POLYNET_CACHE_DIR": str(ro / "cache")},
        )
        assert result == {"killed": False, "code": 0}
        torch.manual_seed(5)
        fold.clear_cache()
        ref = polynet.expand(polynet.SLNN(3, [5, 4], [2, 2]).eval()).coefficients
        assert torch.equal(torch.load(tmp_path / "ro.pt"), ref)
    finally:
        if mounted:
            subprocess.run(["umount", str(ro)], capture_output=True)
        else:
            ro.chmod(0o755)


def test_two_processes_on_one_cache(zygote, tmp_path):
    result = zygote.run(
        f"""
        from polynet.expansion import fold
        fold.DISK_CACHE_MIN_ENTRIES = 1
        torch.manual_seed(5)
        net = polynet.SLNN(4, [6, 5], [3, 2]).eval()
        torch.save(polynet.expand(net).coefficients, "{tmp_path}/" + os.environ["COPY"] + ".pt")
        """,
        env={"POLYNET_CACHE_DIR": str(tmp_path / "cache")},
        copies=2,
    )
    assert result == [{"killed": False, "code": 0}] * 2
    torch.manual_seed(5)
    fold.clear_cache()
    ref = polynet.expand(polynet.SLNN(4, [6, 5], [3, 2]).eval()).coefficients
    for i in range(2):
        assert torch.equal(torch.load(tmp_path / f"{i}.pt"), ref)
    entries = list((tmp_path / "cache" / "maps").iterdir())
    assert entries and all(p.name.startswith("fold2-") for p in entries)


# -- a killed Dask worker ---------------------------------------------------------------------
# Run on the worker: its next fold task SIGKILLs the worker process.
KILL_IN_FOLD_GROUP = """
import os, signal
import polynet.expansion.store_walk as s
def killer(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGKILL)
s._fold_group = killer
"""
# Run on the worker: its next fold task waits 3 s (once), time to cancel it.
SLOW_ONCE_IN_FOLD_GROUP = """
import time
import polynet.expansion.store_walk as s
real = s._fold_group
def slow_once(*args, **kwargs):
    s._fold_group = real
    time.sleep(3)
    return real(*args, **kwargs)
s._fold_group = slow_once
"""


def test_killed_dask_worker_or_cancelled_task_is_an_error_to_retry(tmp_path, store_net):
    distributed = pytest.importorskip("distributed")
    import dask

    path = tmp_path / "c.zarr"
    reference = polynet.expand(store_net[0]).coefficients
    with (
        dask.config.set({"distributed.scheduler.allowed-failures": 0}),
        distributed.LocalCluster(
            n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        client.run(exec, KILL_IN_FOLD_GROUP, {})
        with pytest.raises(StoreError, match="worker died or the task was cancelled.*again"):
            polynet.expand(store_net[0], store=path, client=client)
        assert not path.exists() and _leftovers(tmp_path, "c.zarr") == []
        client.wait_for_workers(1, timeout=60)  # the nanny restarted it, unpatched
        # A task cancelled while it runs (here: every future the client holds).
        client.run(exec, SLOW_ONCE_IN_FOLD_GROUP, {})
        failed: list = []

        def expand_in_thread():
            try:
                polynet.expand(store_net[0], store=path, client=client)
            except BaseException as exc:  # noqa: BLE001 - checked below
                failed.append(exc)

        thread = threading.Thread(target=expand_in_thread)
        thread.start()
        while not any(client.processing().values()):
            time.sleep(0.05)
        client.cancel([distributed.Future(key, client) for key in list(client.futures)])
        thread.join(60)
        assert len(failed) == 1 and isinstance(failed[0], StoreError), failed
        assert "cancelled" in str(failed[0]) and "run the expansion again" in str(failed[0])
        assert not path.exists() and _leftovers(tmp_path, "c.zarr") == []
        got = polynet.expand(store_net[0], store=path, client=client)
        assert torch.equal(got.to_memory().coefficients, reference)


def test_nan_rows_in_verify_data_are_left_out_and_counted():
    torch.manual_seed(0)
    net = polynet.SLNN(3, [4], 2).eval()
    poly = polynet.expand(net)
    x = torch.randn(20, 3, dtype=torch.float64)
    x[3, 1] = float("nan")
    x[7, 0] = float("inf")
    report = polynet.verify(net, poly, x)
    assert report.passed and report.n_dropped_points == 2 and report.n_data_points == 18
    assert "2 data rows with NaN/Inf left out" in str(report)
    with pytest.raises(ValueError, match="NaN or Inf in every one of its 2 rows"):
        polynet.verify(net, poly, x[[3, 7]])


def test_cli_errors_are_one_line(zygote, checkpoint, tmp_path, polys):
    cases = [
        (["expand", str(checkpoint), "--device", "bogus"], 2, "device must be"),
        (["expand", str(checkpoint), "--out", str(checkpoint / "x")], 1, "is a file, not a"),
        (["verify", str(checkpoint), "--tol", "-1"], 2, "tol must be a positive number"),
    ]
    truncated = tmp_path / "t.npz"
    truncated.write_bytes(Path(polys[0]).read_bytes()[:300])
    cases.append((["verify", str(checkpoint), "--poly", str(truncated)], 1, str(truncated)))
    for argv, code, text in cases:
        result, err = _cli(zygote, argv, tmp_path)
        assert result == {"killed": False, "code": code}, err
        assert text in err and "Traceback" not in err
        assert len([x for x in err.splitlines() if x.startswith("polynet ")]) == 1
    result, err = _cli(zygote, [*cases[-1][0], "--debug"], tmp_path)
    assert "Traceback" in err and result["code"] == 1


def test_closed_stdout_exits_quietly(zygote, checkpoint, tmp_path):
    err = tmp_path / "stderr.txt"
    result = zygote.run(
        f"""
        read, write = os.pipe()
        os.close(read)  # like `| head -0`: nobody reads stdout
        os.dup2(write, 1)
        os.dup2(os.open("{err}", os.O_WRONLY | os.O_CREAT | os.O_TRUNC), 2)
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)  # as Python sets it up
        exit_code = polynet.cli.main(["expand", "{checkpoint}", "--top", "50", "--no-progress"])
        """
    )
    assert result == {"killed": False, "code": 141} and err.read_text() == ""


def test_zip_damage_names_the_file(tmp_path, polys):
    path = tmp_path / "p.npz"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("meta.npy", b"not an array")
    with pytest.raises(PolynetError, match=str(path)):
        NetworkPolynomial.load(path)


def test_damaged_onnx_files_error_or_load(tmp_path):
    """ONNX files carry no checksum: a flipped weight byte cannot be seen (docs/files.md);
    every other damage is a PolynetError, never a raw exception."""
    pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    w = helper.make_tensor("w", TensorProto.FLOAT, [2, 1], [1.0, 2.0])
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["h"]), helper.make_node("Mul", ["h", "h"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 1])],
        [w],
    )
    raw = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()
    path = tmp_path / "m.onnx"
    errors = 0
    for damaged in [*_flips(raw, 120), *_truncations(raw, 10)]:
        path.write_bytes(damaged)
        try:
            polynet.expand(polynet.from_onnx(path))
        except PolynetError:
            errors += 1
    assert errors > 20


def test_written_files_honour_the_umask(tmp_path, polys):
    from polynet.export import write_bundle

    old = os.umask(0o027)
    try:
        path = NetworkPolynomial.load(polys[0]).save(tmp_path / "p.npz")
        write_bundle(NetworkPolynomial.load(polys[0]), tmp_path / "b")
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o640
    assert (tmp_path / "b").stat().st_mode & 0o777 == 0o750
    assert all(p.stat().st_mode & 0o777 == 0o640 for p in (tmp_path / "b").iterdir())
    path.chmod(0o600)  # a replaced file keeps its mode
    NetworkPolynomial.load(polys[1]).save(path)
    assert path.stat().st_mode & 0o777 == 0o600


def test_damaged_gzip_idx_files_are_data_errors(tmp_path):
    import gzip

    from polynet.data.images import read_idx
    from polynet.errors import DataError

    images = np.random.default_rng(0).integers(0, 255, (20, 28, 28), dtype=np.uint8)
    header = b"\x00\x00\x08\x03" + b"".join(int(s).to_bytes(4, "big") for s in images.shape)
    raw = gzip.compress(header + images.tobytes())
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    for damaged in [*_flips(raw, 60), *_truncations(raw, 6)]:
        path.write_bytes(damaged)
        try:
            got = read_idx(path)
        except DataError as exc:
            assert str(path) in str(exc)
            continue
        assert np.array_equal(got, images)  # gzip's CRC-32: damage never reads as data
