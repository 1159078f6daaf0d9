"""Coefficients on disk: an expansion written to a Zarr store block by block, and read back lazily.

A store is a Zarr v3 group holding one float64 array ``coefficients`` of shape
(n_outputs, C(n + D, D)) in the graded order of :class:`~polynet.polynomial.index.MonomialIndex`
(the same layout as ``NetworkPolynomial.coefficients``), chunked along the monomials. The
group's ``polynet`` attribute holds the metadata and the statistics gathered while writing
(terms per output, degree profile); it is written last, with ``complete: true``, after every
chunk, and the store is built under a temporary name and renamed into place, so a failed run
never leaves a store that claims to be complete.

Blocks (:mod:`polynet.expansion.fold`) are computed in this process, by Dask's local threaded
scheduler, or as tasks on a ``dask.distributed`` cluster; this process writes the chunks as
the blocks come back.
"""

from __future__ import annotations

import ctypes
import json
import logging
import math
import os
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import ArrayLike
from torch import Tensor

from polynet.atomic import atomic_dir, remove_stale
from polynet.errors import PolynetError, PolynetWarning, StoreError
from polynet.expansion import fold as _fold
from polynet.expansion.fold import Block, QuadraticFold, n_monomials, split_blocks
from polynet.polynomial.evaluate import evaluate
from polynet.polynomial.index import MonomialIndex, exponents_at, monomial_name

__all__ = [
    "StoredPolynomial",
    "open_store",
    "expand_to_store",
    "write_store",
    "exponents_at",
    "evaluate_blocks",
    "store_peak_bytes",
]

logger = logging.getLogger(__name__)

_FORMAT = "polynet.StoredPolynomial"
#: Version 2 stores carry a CRC-32C per chunk and write every chunk (zeros too); version 1
#: stores open with a warning that damage in them cannot be detected.
_FORMAT_VERSION = 2
#: Monomials per store chunk (float64: 8 MiB per output).
CHUNK_TERMS = 1 << 20
#: Monomials of one evaluation block (read, then evaluated by polynet.polynomial.evaluate, which
#: bounds its own memory): a store chunk's worth.
EVAL_BLOCK_TERMS = 1 << 20


def _zarr():
    from polynet.extras import require

    return require("zarr", "a .zarr store (store=, or --out DIR.zarr)")


def _size_blocks(n_vars: int, degree: int, limit: int) -> list[Block]:
    """Output blocks by leading exponents, depth first, each at most ``limit`` monomials."""
    return split_blocks(n_vars, degree, lambda block: block.size > limit)


# -- writing ----------------------------------------------------------------------------------
class _ChunkWriter:
    """Fills store chunks from block runs and writes each chunk once, when it is full."""

    def __init__(self, array, n_vars: int, degree: int) -> None:
        self.array = array
        self.n_outputs, self.size = array.shape
        self.buffers: dict[int, list] = {}
        ends = np.array([n_monomials(n_vars, d) for d in range(degree + 1)], dtype=np.int64)
        self.ends = ends
        self.nonzero = np.zeros(self.n_outputs, dtype=np.int64)
        self.any_nonzero = 0
        self.profile = np.zeros((self.n_outputs, degree + 1))
        self.max_degree = -1

    def put(self, start: int, values: np.ndarray) -> None:
        """Coefficients of positions start .. start + values.shape[1]."""
        pos, stop = start, start + values.shape[1]
        while pos < stop:
            chunk = pos // CHUNK_TERMS
            lo, hi = chunk * CHUNK_TERMS, min(self.size, (chunk + 1) * CHUNK_TERMS)
            take = min(stop, hi) - pos
            entry = self.buffers.get(chunk)
            if entry is None:
                entry = self.buffers[chunk] = [np.zeros((self.n_outputs, hi - lo)), 0]
            entry[0][:, pos - lo : pos - lo + take] = values[:, pos - start : pos - start + take]
            entry[1] += take
            if entry[1] == hi - lo:
                self._write(chunk, lo, entry[0])
                del self.buffers[chunk]
            pos += take

    def _write(self, chunk: int, lo: int, buf: np.ndarray) -> None:
        self.array[:, lo : lo + buf.shape[1]] = buf
        nz = buf != 0
        self.nonzero += nz.sum(1)
        used = nz.any(0)
        self.any_nonzero += int(used.sum())
        degrees = np.searchsorted(self.ends, np.arange(lo, lo + buf.shape[1]), side="right")
        for o in range(self.n_outputs):
            self.profile[o] += np.bincount(
                degrees, np.abs(buf[o]), minlength=self.profile.shape[1]
            )[: self.profile.shape[1]]
        if used.any():
            self.max_degree = max(self.max_degree, int(degrees[used].max()))

    def close(self) -> None:
        if self.buffers:  # pragma: no cover - the blocks partition the output
            raise RuntimeError(f"internal error: {len(self.buffers)} store chunks left unfilled.")


#: Most coefficients (outputs × monomials) one task returns: 128 MiB of float64.
GROUP_ELEMENTS = 1 << 24


def _groups(fold: QuadraticFold, blocks: list[Block], n_groups: int) -> list[list[Block]]:
    """Consecutive runs of blocks (the writer wants them in order), at least ``n_groups`` of
    them, each returning at most GROUP_ELEMENTS coefficients (or one block)."""
    limit = min(GROUP_ELEMENTS, max(1, fold.size * fold.n_outputs // max(1, n_groups)))
    groups: list[list[Block]] = [[]]
    size = 0
    for block in blocks:
        elements = block.size * fold.n_outputs
        if groups[-1] and size + elements > limit:
            groups.append([])
            size = 0
        groups[-1].append(block)
        size += elements
    return groups


def _fold_group(
    fold: QuadraticFold, blocks: list[Block], after_block: Any | None = None
) -> list[np.ndarray]:
    """One task: the coefficients of a run of blocks (runs on a Dask worker)."""
    out = []
    for b in blocks:
        out.append(fold.block_values(b).cpu().numpy())
        if after_block is not None:
            after_block()
    return out


def _malloc_trim():
    try:
        trim = ctypes.CDLL(None).malloc_trim  # glibc; not on macOS, Windows or musl
    except (OSError, AttributeError, TypeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


_MALLOC_TRIM = _malloc_trim()


def _rss_bytes() -> int | None:
    """Resident memory of this process (Linux), or None."""
    try:
        with open("/proc/self/statm", "rb") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError, AttributeError):
        return None


#: Time between two heap trims: at least this, and at least TRIM_COST_RATIO times the last.
TRIM_MIN_SECONDS = 0.1
TRIM_COST_RATIO = 20.0


class HeapGuard:
    """Between blocks: hands the heap's free pages back to the OS (glibc's ``malloc_trim``)
    once this process's resident memory passes ``limit`` bytes.

    glibc serves every allocation below its mmap threshold (which rises to 32 MiB once such
    a block is freed) from its arenas and keeps what is freed there. The fold frees Gram
    chunks, gathered rows and map builds of every size while its map cache keeps others
    alive, and the holes are not handed back: at n = 40, degree 8 a store run reached 2.9
    GiB around 1.7 GiB of live memory. A trim costs milliseconds and the pages it frees are
    faulted in again when reused, so it runs only above the limit (the live count of
    store_peak_bytes, without its slack), at most every TRIM_MIN_SECONDS and at most
    1 / TRIM_COST_RATIO of the time. A no-op where the C library has no ``malloc_trim`` or
    the resident size cannot be read.
    """

    def __init__(self, limit: float) -> None:
        self.limit = limit
        self.trims = 0
        self._next = 0.0

    def __call__(self) -> None:
        now = time.perf_counter()
        if _MALLOC_TRIM is None or now < self._next:
            return
        rss = _rss_bytes()
        if rss is None or rss <= self.limit:
            return
        self._next = math.inf  # one thread trims at a time; the others go on
        try:
            _MALLOC_TRIM(0)
        finally:
            self.trims += 1
            spent = time.perf_counter() - now
            self._next = now + max(TRIM_MIN_SECONDS, TRIM_COST_RATIO * spent)


def _local_workers() -> int:
    """Tasks per wave of the local threaded scheduler (and so blocks computed at once)."""
    return max(1, os.cpu_count() or 1)


#: What glibc's arenas keep of the fold's freed memory at its peak, as a share of the live
#: memory, with the HeapGuard trimming past the live count: measured 9-25 % on the D = 8
#: networks of bench_scale at n = 30, 34, 40 (and 30-50 % at n = 30 without it).
ALLOCATOR_SLACK = 0.25


def store_peak_bytes(the_plan, workers: int | None = None) -> float:
    """Estimated peak memory of ``expand(model, store=...)`` on the local threaded scheduler.

    The walk before the last layer as the plan counts it, then the fold, whose memory
    follows its blocks, not the index: the unit powers it reads; on each of ``workers``
    threads (default: as many as the store runs) one pair's Gram chunk or gathered rows,
    one block and the finished blocks of its group; the fold's map cache; one map being
    built (the map, its row and take buffers and copies, the successor table: about five
    times the int32 map); the store chunks the writer holds open (one per degree); and
    ALLOCATOR_SLACK on top. No table over the whole index is built on this path.
    """
    return _live_bytes(the_plan, workers) * (1.0 + ALLOCATOR_SLACK)


def _live_bytes(the_plan, workers: int | None = None) -> float:
    """store_peak_bytes without the allocator's slack: what the run's arrays add up to."""
    if not the_plan.fuse_last:  # the walk holds the whole result, then writes it
        return the_plan.peak_bytes
    steps, index = the_plan.steps, the_plan.index
    fused = steps[-1]
    d, k = fused.degree_in, fused.degree_out // fused.degree_in
    m = steps[-2].rows  # units of the last polynomial stage
    n_out, size = the_plan.n_outputs, index.size
    t = index.n_monomials
    workers = _local_workers() if workers is None else max(1, int(workers))
    a_cols, b_cols = t((k + 1) // 2 * d), t(k // 2 * d)
    if a_cols * b_cols <= _fold.PAIR_ELEMENTS and n_out * size <= _fold.BLOCK_ELEMENTS:
        workers = 1  # one block: the root
    before = max((s.bytes for s in steps[:-1]), default=0.0)
    powers = sum(m * t(j * d) for j in range(1, (k + 1) // 2 + 1)) * 8.0
    pair = min(a_cols * b_cols, _fold.PAIR_ELEMENTS)
    # One pair of a block: its Gram chunk, or the rows of the powers it gathers and weights
    # (three copies, at most the whole matrix each) when those are the larger.
    scratch = max(min(pair, _fold.CHUNK_ELEMENTS) * 8.0, 3.0 * m * a_cols * 8.0)
    block = min(n_out * size, _fold.BLOCK_ELEMENTS) * 8.0
    group = min(GROUP_ELEMENTS, max(1, size * n_out // (4 * workers))) * 8.0
    maps = min(a_cols * b_cols * 4.0, float(_fold.MAP_CACHE_BYTES))
    building = 5.0 * pair * 4
    chunks = min(fused.degree_out + 1, -(-size // CHUNK_TERMS)) * min(size, CHUNK_TERMS)
    writer = chunks * n_out * 8.0
    fold = powers + workers * (scratch + block + group) + maps + building + writer
    return max(before, fold)


def _block_results(
    fold: QuadraticFold, client: Any | None, after_block: Any | None = None
) -> Iterator[tuple[list[Block], list[np.ndarray]]]:
    blocks = fold.blocks()
    if client is None:
        from polynet.extras import require

        dask = require("dask", "writing a .zarr store block by block (store=)")

        workers = _local_workers()
        groups = _groups(fold, blocks, 4 * workers)
        # Waves of tasks on the local threaded scheduler: memory holds one wave of blocks.
        for w in range(0, len(groups), workers):
            wave = groups[w : w + workers]
            tasks = [dask.delayed(_fold_group)(fold, g, after_block) for g in wave]
            yield from zip(wave, dask.compute(*tasks, scheduler="threads"))
        return
    from distributed import as_completed

    n_workers = max(1, len(client.scheduler_info().get("workers", {})))
    groups = _groups(fold, blocks, 8 * n_workers)
    futures: dict = {}
    try:
        shared = client.scatter(fold, broadcast=True)
        futures = {
            client.submit(_fold_group, shared, g, pure=False): i for i, g in enumerate(groups)
        }
        for future, values in as_completed(futures, with_results=True, raise_errors=True):
            if not isinstance(values, list):  # a cancelled future comes back as its error
                raise values if isinstance(values, BaseException) else _lost(values)
            yield groups[futures[future]], values
            future.release()
    except Exception as exc:  # noqa: BLE001 - KilledWorker, CancelledError, comm errors, ...
        try:
            client.cancel([f for f in futures if not f.done()])
        except Exception:  # noqa: BLE001 - the cluster may be gone already
            pass
        if isinstance(exc, PolynetError) or not _is_cluster_error(exc):
            raise
        raise _lost(exc) from exc


def _is_cluster_error(exc: BaseException) -> bool:
    """A task lost with its worker or cancelled, or the cluster unreachable (not a bug in
    the fold, which comes back as its own exception type)."""
    import asyncio
    import concurrent.futures

    names = {type(e).__name__ for e in (exc, exc.__cause__, exc.__context__) if e is not None}
    lost = {"KilledWorker", "FutureCancelledError", "CommClosedError", "CancelledError"}
    return bool(names & lost) or isinstance(
        exc, (asyncio.CancelledError, concurrent.futures.CancelledError, OSError, TimeoutError)
    )


def _lost(exc: object) -> StoreError:
    return StoreError(
        f"a Dask task of the store expansion was lost ({type(exc).__name__}: {exc}): a worker "
        "died or the task was cancelled. Nothing was written under the store's name; run the "
        "expansion again (retry), with more memory per worker if workers ran out of it."
    )


def expand_to_store(
    lowered,
    the_plan,
    device: torch.device,
    path: str | os.PathLike,
    *,
    client: Any | None = None,
    variables: list[str] | None = None,
    n_network_parameters: int | None = None,
    info: dict | None = None,
    start: float | None = None,
) -> StoredPolynomial:
    """Expand ``lowered`` into a Zarr store at ``path`` (see :func:`polynet.expand`)."""
    from polynet.expansion.dense import FloatOps, walk

    zarr = _zarr()
    start = time.perf_counter() if start is None else start
    path = Path(path)
    if path.exists() and not _is_store(path):
        raise PolynetError(
            f"{path} exists and is not a polynet store; choose another path or remove it."
        )
    index = the_plan.index
    rss = _rss_bytes()  # the local threads trim the heap past this plus the live count
    guard = None if rss is None or client is not None else HeapGuard(rss + _live_bytes(the_plan))
    with atomic_dir(path) as tmp:
        result = walk(lowered, FloatOps(device), the_plan, device, assemble=False)
        n_out = result.n_outputs if isinstance(result, QuadraticFold) else result.shape[0]
        group = zarr.open_group(str(tmp), mode="w", zarr_format=3)
        array = _create_array(group, (n_out, index.size))
        writer = _ChunkWriter(array, index.n_vars, index.degree)
        n_blocks = 0
        if isinstance(result, QuadraticFold):
            for blocks, values in _block_results(result, client, guard):
                values.reverse()  # popped as written: each block's array goes once copied
                vals = None
                for block in blocks:
                    vals = values.pop()
                    for g, lo, ln in block.runs():
                        writer.put(g, vals[:, lo : lo + ln])
                    n_blocks += 1
                del values, vals  # not held while the next wave computes
        else:  # the last layer was not fused: the walk held the result already
            for lo in range(0, index.size, CHUNK_TERMS):
                writer.put(lo, result[:, lo : lo + CHUNK_TERMS].cpu().numpy())
        writer.close()
        seconds = time.perf_counter() - start
        meta = {
            "format": _FORMAT,
            "version": _FORMAT_VERSION,
            "n_vars": index.n_vars,
            "index_degree": index.degree,
            "degree_bound": lowered.degree_bound,
            "variables": variables or [f"x{i}" for i in range(index.n_vars)],
            "n_network_parameters": n_network_parameters,
            "info": {**(info or {}), "seconds": seconds, "blocks": n_blocks},
            "n_terms": writer.any_nonzero,
            "n_terms_per_output": writer.nonzero.tolist(),
            "degree": writer.max_degree,
            "degree_profile": writer.profile.tolist(),
            # The completion marker, written after every chunk.
            "complete": True,
        }
        group.attrs["polynet"] = json.loads(json.dumps(meta))
    logger.info("expanded %d monomials into %s in %.3f s", index.size, path, seconds)
    if guard is not None:
        logger.debug("%d heap trims past %.2f GiB resident", guard.trims, guard.limit / 2**30)
    return open_store(path)


def write_store(
    path: str | os.PathLike,
    index: MonomialIndex,
    coefficients: Tensor,
    *,
    degree_bound: int,
    variables: list[str] | None = None,
    n_network_parameters: int | None = None,
    info: dict | None = None,
    start: float | None = None,
) -> StoredPolynomial:
    """Write coefficients held in memory, (n_outputs, index.size), into a store at ``path``.

    The same format as :func:`expand_to_store` (atomic, a CRC-32C per chunk); what the traced
    graph engine uses for ``store=``, whose result is in memory before it is written.
    """
    zarr = _zarr()
    start = time.perf_counter() if start is None else start
    path = Path(path)
    if path.exists() and not _is_store(path):
        raise PolynetError(
            f"{path} exists and is not a polynet store; choose another path or remove it."
        )
    with atomic_dir(path) as tmp:
        group = zarr.open_group(str(tmp), mode="w", zarr_format=3)
        array = _create_array(group, (coefficients.shape[0], index.size))
        writer = _ChunkWriter(array, index.n_vars, index.degree)
        for lo in range(0, index.size, CHUNK_TERMS):
            writer.put(lo, coefficients[:, lo : lo + CHUNK_TERMS].detach().cpu().numpy())
        writer.close()
        seconds = time.perf_counter() - start
        meta = {
            "format": _FORMAT,
            "version": _FORMAT_VERSION,
            "n_vars": index.n_vars,
            "index_degree": index.degree,
            "degree_bound": degree_bound,
            "variables": variables or [f"x{i}" for i in range(index.n_vars)],
            "n_network_parameters": n_network_parameters,
            "info": {**(info or {}), "seconds": seconds, "blocks": 1},
            "n_terms": writer.any_nonzero,
            "n_terms_per_output": writer.nonzero.tolist(),
            "degree": writer.max_degree,
            "degree_profile": writer.profile.tolist(),
            "complete": True,
        }
        group.attrs["polynet"] = json.loads(json.dumps(meta))
    return open_store(path)


def _is_store(path: Path) -> bool:
    return (path / "zarr.json").exists() and "polynet" in (path / "zarr.json").read_text()


def _create_array(group, shape: tuple[int, int]):
    """The coefficient array: zstd, then a CRC-32C of every chunk (checked on every read);
    chunks of zeros are written too, so a missing chunk file is damage, not zeros."""
    from zarr.codecs import Crc32cCodec, ZstdCodec

    return group.create_array(
        "coefficients",
        shape=shape,
        chunks=(shape[0], min(CHUNK_TERMS, shape[1])),
        dtype="float64",
        fill_value=0.0,
        compressors=[ZstdCodec(level=0), Crc32cCodec()],
        config={"write_empty_chunks": True},
    )


# -- reading ----------------------------------------------------------------------------------
def open_store(path: str | os.PathLike) -> StoredPolynomial:
    """Reopen a store written by ``expand(model, store=path)``.

    Raises
    ------
    PolynetError
        No store at ``path``, or one whose writing did not finish.
    """
    zarr = _zarr()
    path = Path(path)
    remove_stale(path.parent, path.name)  # puts back a store hidden by a killed replacement
    if not path.exists():
        raise PolynetError(
            f'no polynomial store at {path}; write one with polynet.expand(model, store="{path}").'
        )
    try:
        group = zarr.open_group(str(path), mode="r")
        meta = dict(group.attrs.get("polynet") or {})
        array = group["coefficients"]
    except Exception as exc:  # noqa: BLE001 - zarr raises anything on damaged metadata
        raise StoreError(
            f"{path} is not a readable polynet store ({type(exc).__name__}: {exc}); the store "
            "is damaged: run the expansion again to rewrite it."
        ) from exc
    if meta.get("format") != _FORMAT:
        raise PolynetError(f"{path} is not a polynet polynomial store.")
    if not meta.get("complete"):
        raise PolynetError(
            f"{path} is incomplete (its expansion did not finish); expand the model again."
        )
    if meta.get("version", 0) > _FORMAT_VERSION:
        raise PolynetError(
            f"{path} has store version {meta['version']}, newer than this polynet's "
            f"{_FORMAT_VERSION}; upgrade polynet to read it."
        )
    checksums = any(type(c).__name__ == "Crc32cCodec" for c in array.compressors)
    if checksums:
        missing = _missing_chunks(path, array)
        if missing:
            raise StoreError(
                f"{path} is damaged: {len(missing)} of {array.nchunks} chunk files are missing "
                f"(first: {missing[0]}); run the expansion again to rewrite the store."
            )
    else:
        warnings.warn(
            f"{path} was written by an older polynet without checksums: a damaged or missing "
            "chunk in it cannot be detected (a missing one reads as zeros). Run the expansion "
            "again to rewrite it with checksums.",
            PolynetWarning,
            stacklevel=2,
        )
    return StoredPolynomial(path, _CheckedArray(array, path), meta)


def _missing_chunks(path: Path, array: Any) -> list[str]:
    """Chunk files of the coefficient array that are not on disk."""
    folder = path / "coefficients"
    keys = (array.metadata.encode_chunk_key(coords) for coords in np.ndindex(*array.cdata_shape))
    return [str(folder / key) for key in keys if not (folder / key).is_file()]


class _CheckedArray:
    """A store's coefficient array whose reads turn a bad chunk (checksum, truncation,
    decompression) into a :class:`StoreError` naming the chunk."""

    def __init__(self, array: Any, path: Path) -> None:
        self._array = array
        self._path = path
        self.shape = tuple(array.shape)
        self.dtype = array.dtype
        self.chunks = tuple(array.chunks)

    def __getitem__(self, key: Any) -> np.ndarray:
        try:
            return self._array[key]
        except Exception as exc:  # noqa: BLE001 - codecs raise ValueError, RuntimeError, ...
            raise StoreError(
                f"{self._path} is damaged: chunk {self._bad_chunk()} cannot be read "
                f"({type(exc).__name__}: {exc}); run the expansion again to rewrite the store."
            ) from exc

    def __array__(self, dtype=None, copy=None):
        out = self[:]
        return out if dtype is None else out.astype(dtype)

    def _bad_chunk(self) -> str:
        """The file of the first chunk that cannot be read (found by reading each)."""
        step = self.chunks[1]
        for c in range(-(-self.shape[1] // step)):
            try:
                self._array[:, c * step : (c + 1) * step]
            except Exception:  # noqa: BLE001
                key = self._array.metadata.encode_chunk_key((0, c))
                return str(self._path / "coefficients" / key)
        return "the coefficients"


class StoredPolynomial:
    """A network polynomial whose coefficients stay in a Zarr store, read chunk by chunk.

    It has the views of :class:`~polynet.polynomial.network_polynomial.NetworkPolynomial` that
    do not need the coefficients in memory: ``terms``, ``degree_profile``, ``to_latex`` of the top
    terms, evaluation ``poly(x)`` block by block, and :func:`polynet.verify` accepts it;
    :meth:`to_memory` loads everything into a NetworkPolynomial.
    """

    exact = False
    exact_coefficients = None

    def __init__(self, path: Path, array: Any, meta: dict[str, Any]) -> None:
        self.path = Path(path)
        self._array = array
        self._meta = meta
        self.index = MonomialIndex(meta["n_vars"], meta["index_degree"])
        self.degree_bound = int(meta["degree_bound"])
        self.variables = list(meta["variables"])
        self.n_network_parameters = meta.get("n_network_parameters")
        self.info = dict(meta.get("info") or {})
        self._device = torch.device("cpu")

    @property
    def slice(self):
        return self._typed[0]

    @property
    def input_shape(self):
        return self._typed[1]

    @property
    def provenance(self):
        from polynet.polynomial.network_polynomial import Provenance

        return self._typed[2] or Provenance()

    @property
    def raw_units(self) -> bool:
        return self._typed[3]

    @property
    def notes(self) -> dict:
        # A store holds a whole expansion (store= is refused with degree= and at=); what its
        # info records beyond the typed fields (a traced graph's input_shapes, output names)
        # reads as notes, as it does on a NetworkPolynomial.
        from polynet.polynomial.network_polynomial import _INFO_KEYS

        return {k: v for k, v in self.info.items() if k not in _INFO_KEYS and k != "blocks"}

    @property
    def _typed(self) -> tuple:
        # The typed fields NetworkPolynomial keeps, read from the store's info dict.
        from polynet.polynomial.network_polynomial import _INFO_KEYS, _from_info

        known = {k: v for k, v in self.info.items() if k in _INFO_KEYS}
        return _from_info(known, None, None, None, False)[:4]

    @property
    def coefficients(self) -> Any:
        """The store's array (n_outputs, max_terms): lazy, read by slicing."""
        return self._array

    @property
    def n_vars(self) -> int:
        return self.index.n_vars

    @property
    def n_outputs(self) -> int:
        return int(self._array.shape[0])

    @property
    def device(self) -> torch.device:
        """Where evaluation computes."""
        return self._device

    @property
    def degree(self) -> int:
        return int(self._meta["degree"])

    @property
    def n_terms(self) -> int:
        return int(self._meta["n_terms"])

    def n_terms_per_output(self) -> list[int]:
        return [int(c) for c in self._meta["n_terms_per_output"]]

    @property
    def max_terms(self) -> int:
        return MonomialIndex(self.n_vars, self.degree_bound).size

    def __repr__(self) -> str:
        return (
            f"StoredPolynomial(path={str(self.path)!r}, n_vars={self.n_vars}, "
            f"n_outputs={self.n_outputs}, degree={self.degree}, n_terms={self.n_terms})"
        )

    def to(self, device: torch.device | str) -> StoredPolynomial:
        """The same store, evaluated on ``device``."""
        new = object.__new__(StoredPolynomial)
        new.__dict__.update(self.__dict__)
        new._device = torch.device(device)
        return new

    def to_memory(self):
        """All coefficients loaded into a :class:`NetworkPolynomial`."""
        from polynet.polynomial.network_polynomial import NetworkPolynomial

        return NetworkPolynomial(
            self.index,
            torch.from_numpy(np.asarray(self._array[:])),
            degree_bound=self.degree_bound,
            variables=self.variables,
            n_network_parameters=self.n_network_parameters,
            slice=self.slice,
            input_shape=self.input_shape,
            provenance=self.provenance,
            raw_units=self.raw_units,
            notes=self.notes,
        )

    def _chunks(self) -> Iterator[tuple[int, np.ndarray]]:
        for lo in range(0, self.index.size, CHUNK_TERMS):
            yield lo, np.asarray(self._array[:, lo : lo + CHUNK_TERMS])

    def degree_profile(self) -> np.ndarray:
        """Coefficient mass Σ|c| per total degree: shape (n_outputs, index degree + 1)."""
        return np.asarray(self._meta["degree_profile"], dtype=np.float64)

    def terms(self, top: int | None = 10, output: int = 0) -> list:
        """The largest terms of one output by |coefficient|, largest first."""
        from polynet.polynomial.network_polynomial import Term

        rows, values = self._top(output, top)
        exps = exponents_at(self.n_vars, rows)
        return [
            Term(float(c), tuple(int(e) for e in row), monomial_name(row, self.variables))
            for c, row in zip(values, exps)
        ]

    def _top(self, output: int, top: int | None) -> tuple[np.ndarray, np.ndarray]:
        best_rows, best_vals = np.zeros(0, dtype=np.int64), np.zeros(0)
        for lo, chunk in self._chunks():
            c = chunk[output]
            nz = np.nonzero(c)[0]
            if top is not None and len(nz) > top:
                nz = nz[np.argpartition(-np.abs(c[nz]), top - 1)[:top]]
            rows = np.concatenate([best_rows, nz + lo])
            vals = np.concatenate([best_vals, c[nz]])
            order = np.lexsort((rows, -np.abs(vals)))
            if top is not None:
                order = order[:top]
            best_rows, best_vals = rows[order], vals[order]
        return best_rows, best_vals

    def to_latex(self, output: int = 0, top: int | None = 20, digits: int = 6) -> str:
        """LaTeX of the ``top`` largest terms of one output, in graded order."""
        from polynet.polynomial.network_polynomial import _latex_sum, _latex_vars

        rows, values = self._top(output, top)
        order = np.argsort(rows)
        rows, values = rows[order], values[order]
        exps = exponents_at(self.n_vars, rows)
        left_out = self.n_terms_per_output()[output] - len(rows)
        return _latex_sum(values, exps, _latex_vars(self.variables), digits, left_out)

    def __call__(self, x: ArrayLike | Tensor, *, progress: Any = None) -> Tensor | np.ndarray:
        """Evaluate every output at points x of shape (B, n_vars): returns (B, n_outputs).

        Block by block over the leading exponents: a block's monomials are x_lead^prefix times
        the monomials of the remaining variables, so no (points × all terms) matrix is built.
        A tensor in gives a tensor, anything else a NumPy array; ``progress`` (a tqdm bar) is
        told of every block read.
        """
        out = evaluate_blocks(
            self._array, self.n_vars, self.index.degree, x, self._device, progress=progress
        )
        return out if torch.is_tensor(x) else out.cpu().numpy()


def evaluate_blocks(
    coefficients: Any,
    n_vars: int,
    degree: int,
    x: ArrayLike | Tensor,
    device=None,
    progress: Any = None,
) -> Tensor:
    """Σ_r coefficients[:, r] · monomial_r(x) block by block over the leading exponents.

    ``coefficients`` is any array sliceable as ``[:, lo:hi]`` (a Zarr array, numpy) of shape
    (n_outputs, C(n_vars + degree, degree)) in graded order. Neither the exponent table nor a
    (points × all monomials) matrix is built: a block's monomials are x_lead^prefix times the
    monomials of the remaining variables.
    """
    device = torch.device("cpu") if device is None else torch.device(device)
    x = torch.as_tensor(x, dtype=torch.float64, device=device)
    if x.dim() == 1 and n_vars == 1:
        x = x[:, None]
    if x.dim() != 2 or x.shape[1] != n_vars:
        raise ValueError(f"points must have shape (B, {n_vars}), got {tuple(x.shape)}.")
    out = x.new_zeros(x.shape[0], coefficients.shape[0])
    reader = _ChunkReader(coefficients)
    blocks = _size_blocks(n_vars, degree, EVAL_BLOCK_TERMS)
    if progress is not None:
        progress.reset(total=len(blocks))
    for block in blocks:
        if progress is not None:
            progress.update(1)
        coef = np.concatenate([reader.read(g, ln) for g, _, ln in block.runs()], axis=1)
        if not coef.any():
            continue
        coef_t = torch.from_numpy(np.ascontiguousarray(coef)).to(device)
        lead = len(block.prefix)
        prefix = torch.tensor(block.prefix, dtype=torch.float64, device=device)
        scale = (x[:, :lead] ** prefix).prod(1) if lead else x.new_ones(len(x))
        if block.n_rest == 0:  # the one monomial x_lead^prefix
            values = coef_t[:, 0].expand(len(x), -1)
        else:  # a dense polynomial in the remaining variables, in their graded order
            rest = MonomialIndex(block.n_rest, block.degree_rest)
            values = evaluate(coef_t, x[:, lead:], index=rest)
        out += scale[:, None] * values
    return out


class _ChunkReader:
    """Reads runs of a store array, keeping the few chunks the runs of a pass revisit."""

    def __init__(self, array: Any, keep: int = 24) -> None:
        self.array = array
        self.keep = keep
        self.cache: dict[int, np.ndarray] = {}

    def read(self, start: int, length: int) -> np.ndarray:
        parts, pos, stop = [], start, start + length
        while pos < stop:
            chunk = pos // CHUNK_TERMS
            data = self.cache.get(chunk)
            if data is None:
                lo = chunk * CHUNK_TERMS
                data = np.asarray(self.array[:, lo : lo + CHUNK_TERMS])
                if len(self.cache) >= self.keep:
                    self.cache.pop(next(iter(self.cache)))
                self.cache[chunk] = data
            lo = chunk * CHUNK_TERMS
            take = min(stop, lo + data.shape[1]) - pos
            parts.append(data[:, pos - lo : pos - lo + take])
            pos += take
        return np.concatenate(parts, axis=1) if len(parts) != 1 else parts[0]
