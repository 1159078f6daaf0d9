"""The expansion into a Zarr store: the last layer's fold computed block by block (in this
process, by Dask's local threaded scheduler, or as tasks on a ``dask.distributed`` cluster),
each block written as it comes back, so memory follows the blocks and not the result.

The store format, its chunk writer and reader are :mod:`polynet.polynomial.store`.
"""

from __future__ import annotations

import ctypes
import logging
import math
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from polynet.atomic import atomic_dir
from polynet.errors import PolynetError, StoreError
from polynet.expansion import fold as _fold
from polynet.expansion.dense import FloatOps, walk
from polynet.expansion.fold import QuadraticFold
from polynet.polynomial import store as _store
from polynet.polynomial.blocks import Block
from polynet.polynomial.index import MonomialIndex
from polynet.polynomial.store import StoredPolynomial, open_store

__all__ = ["expand_to_store", "store_peak_bytes", "HeapGuard", "write_store"]

logger = logging.getLogger(__name__)


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
    chunks = min(fused.degree_out + 1, -(-size // _store.CHUNK_TERMS)) * min(
        size, _store.CHUNK_TERMS
    )
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
    zarr = _store._zarr()
    start = time.perf_counter() if start is None else start
    path = Path(path)
    _store.check_target(path)
    index = the_plan.index
    rss = _rss_bytes()  # the local threads trim the heap past this plus the live count
    guard = None if rss is None or client is not None else HeapGuard(rss + _live_bytes(the_plan))
    with atomic_dir(path) as tmp:
        result = walk(lowered, FloatOps(device), the_plan, device, assemble=False)
        n_out = result.n_outputs if isinstance(result, QuadraticFold) else result.shape[0]
        group = zarr.open_group(str(tmp), mode="w", zarr_format=3)
        array = _store._create_array(group, (n_out, index.size))
        writer = _store._ChunkWriter(array, index.n_vars, index.degree)
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
            _store.write_in_chunks(writer, result)
        writer.close()
        seconds = time.perf_counter() - start
        _store.mark_complete(
            group,
            writer,
            index,
            degree_bound=lowered.degree_bound,
            variables=variables,
            n_network_parameters=n_network_parameters,
            info={**(info or {}), "seconds": seconds, "blocks": n_blocks},
        )
    logger.info("expanded %d monomials into %s in %.3f s", index.size, path, seconds)
    if guard is not None:
        logger.debug("%d heap trims past %.2f GiB resident", guard.trims, guard.limit / 2**30)
    return open_store(path)


def write_store(
    path: str | os.PathLike,
    index: MonomialIndex,
    coefficients: torch.Tensor,
    *,
    degree_bound: int,
    variables: list[str] | None = None,
    n_network_parameters: int | None = None,
    info: dict | None = None,
    start: float | None = None,
) -> StoredPolynomial:
    """Write coefficients held in memory, (n_outputs, index.size), into a store at ``path``.

    The format of :func:`expand_to_store` (atomic, a CRC-32C per chunk); what the traced graph
    engine uses for ``store=``, whose result is in memory before it is written.
    """
    zarr = _store._zarr()
    start = time.perf_counter() if start is None else start
    path = Path(path)
    _store.check_target(path)
    with atomic_dir(path) as tmp:
        group = zarr.open_group(str(tmp), mode="w", zarr_format=3)
        array = _store._create_array(group, (coefficients.shape[0], index.size))
        writer = _store._ChunkWriter(array, index.n_vars, index.degree)
        _store.write_in_chunks(writer, coefficients)
        writer.close()
        _store.mark_complete(
            group,
            writer,
            index,
            degree_bound=degree_bound,
            variables=variables,
            n_network_parameters=n_network_parameters,
            info={**(info or {}), "seconds": time.perf_counter() - start, "blocks": 1},
        )
    return open_store(path)
