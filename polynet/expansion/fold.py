"""The fused last layer folded block by block, so memory follows the result, not the Gram matrix.

The last polynomial stage with the affine map after it is out[o] = base[o] + Σ_terms Σ_j
W[o, j] a_j b_j, where a_j, b_j are the units' powers (polynomials of degree ≤ da, ≤ db in n
variables). Folding the whole Gram matrix A diag(w) Bᵀ at once needs its T(da) × T(db) product
map (17 GiB at n = 30, degree 8). Here the *output* monomials are split by the exponents of the
leading variables: a block is a prefix c = (e_0, ..., e_{L-1}), and only the pairs of rows s and
columns t whose prefixes add up to c (s + t = c) reach it. Each such pair of prefixes is the
same problem again in the n - L remaining variables, so every block is independent, its product
maps are those of a smaller index (shared by all blocks at that depth), and blocks split
recursively until each map fits :data:`PAIR_ELEMENTS`. Peak memory is the result (or, for a
store, one block) plus one chunk of Gram matrix and the cached maps.

Blocks come in depth-first order with the exponents descending, so within each total degree
their output runs come in increasing position: a writer can fill a store chunk by chunk.
"""

from __future__ import annotations

import itertools
import logging
import os
import threading
import zlib
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from polynet.atomic import atomic_write, remove_stale
from polynet.polynomial import index as _index
from polynet.polynomial.blocks import Block, n_monomials, split_blocks
from polynet.polynomial.blocks import runs_of as _runs

__all__ = ["Block", "FoldTerm", "QuadraticFold", "PAIR_ELEMENTS", "BLOCK_ELEMENTS"]

logger = logging.getLogger(__name__)

#: Largest Gram sub-matrix (rows × columns) one pair of prefixes may have in a block.
PAIR_ELEMENTS = 1 << 24
#: Largest block of output coefficients (outputs × monomials) computed at once.
BLOCK_ELEMENTS = 1 << 22
#: Elements of Gram scratch per chunk (float64: 128 MiB).
CHUNK_ELEMENTS = 1 << 24
#: Row chunks of a symmetric pair: more chunks skip more of the lower triangle.
SYMMETRIC_CHUNKS = 8
#: Bytes of int32 fold maps kept for the next block (least recently used dropped first).
MAP_CACHE_BYTES = 512 << 20


def _gather(n: int, prefix: tuple[int, ...], rest: int, device) -> Tensor | slice:
    """Columns of a graded matrix for the monomials (prefix, any of degree ≤ rest)."""
    starts, _, lengths = _runs(n, prefix, rest)
    if len(starts) == 0:
        return slice(0, 0)
    contiguous = np.all(starts[1:] == starts[:-1] + lengths[:-1])
    if contiguous:
        return slice(int(starts[0]), int(starts[-1] + lengths[-1]))
    cols = np.concatenate([np.arange(s, s + ln) for s, ln in zip(starts, lengths)])
    return torch.from_numpy(cols).to(device)


@dataclass(frozen=True)
class FoldTerm:
    """Σ_j W[o, j] a_j b_j: rows of ``a`` over degree ≤ a_degree, of ``b`` over ≤ b_degree."""

    a: Tensor  # (m, T(a_degree))
    b: Tensor  # (m, T(b_degree))
    a_degree: int
    b_degree: int
    weights: Tensor  # (n_outputs, m)

    @property
    def symmetric(self) -> bool:
        """a is b: fold each unordered pair once, counted twice."""
        return self.a_degree == self.b_degree and self.a is self.b

    def pairs(self, prefix: tuple[int, ...]) -> Iterator[tuple[tuple[int, ...], tuple[int, ...]]]:
        """Prefix pairs (s, t) with s + t = prefix that fit the degrees (unordered if symmetric)."""
        total = sum(prefix)
        for s in itertools.product(*(range(c + 1) for c in prefix)):
            ds = sum(s)
            if ds > self.a_degree or total - ds > self.b_degree:
                continue
            t = tuple(c - e for c, e in zip(prefix, s))
            if self.symmetric and s > t:
                continue
            yield s, t

    def largest_pair(self, n_rest: int, prefix: tuple[int, ...]) -> int:
        """Rows × columns of the largest Gram sub-matrix a block of this prefix folds."""
        total = sum(prefix)
        low, high = max(0, total - self.b_degree), min(self.a_degree, total)
        return max(
            (
                n_monomials(n_rest, self.a_degree - j)
                * n_monomials(n_rest, self.b_degree - total + j)
                for j in range(low, high + 1)
            ),
            default=0,
        )


@dataclass(frozen=True)
class QuadraticFold:
    """out[o] = base[o] + Σ_terms Σ_j W[o, j] a_j b_j over MonomialIndex(n_vars, degree).

    ``base`` holds the monomials of low degree (constant and linear terms of the layer); the
    terms are folded block by block. The object is plain data (tensors and ints), so it pickles
    to Dask workers.
    """

    n_vars: int
    degree: int
    base: Tensor  # (n_outputs, T(base degree))
    terms: tuple[FoldTerm, ...]

    @property
    def n_outputs(self) -> int:
        return self.base.shape[0]

    @property
    def size(self) -> int:
        return n_monomials(self.n_vars, self.degree)

    def blocks(
        self, pair_elements: int | None = None, block_elements: int | None = None
    ) -> list[Block]:
        """Leaf blocks, depth first with descending exponents: they partition the output.

        A block splits while its largest Gram sub-matrix exceeds ``pair_elements`` (default
        :data:`PAIR_ELEMENTS`) or its outputs × monomials exceed ``block_elements`` (default
        :data:`BLOCK_ELEMENTS`).
        """
        pair_elements = PAIR_ELEMENTS if pair_elements is None else pair_elements
        block_elements = BLOCK_ELEMENTS if block_elements is None else block_elements
        return split_blocks(
            self.n_vars,
            self.degree,
            lambda block: self._too_big(block, pair_elements, block_elements),
        )

    def _too_big(self, block: Block, pair_elements: int, block_elements: int) -> bool:
        return block.size * self.n_outputs > block_elements or self._largest(block) > pair_elements

    def _largest(self, block: Block) -> int:
        return max((t.largest_pair(block.n_rest, block.prefix) for t in self.terms), default=0)

    def block_values(self, block: Block) -> Tensor:
        """The block's coefficients, shape (n_outputs, block.size), base included."""
        device = self.base.device
        buf = torch.zeros(self.n_outputs, block.size, dtype=torch.float64, device=device)
        for term in self.terms:
            self._fold_term(term, block, buf)
        base_cols = self.base.shape[1]
        for g, lo, ln in block.runs():
            if g < base_cols:
                k = min(ln, base_cols - g)
                buf[:, lo : lo + k] += self.base[:, g : g + k]
        return buf

    def _fold_term(self, term: FoldTerm, block: Block, buf: Tensor) -> None:
        n, n_rest, device = self.n_vars, block.n_rest, buf.device
        for s, t in term.pairs(block.prefix):
            da, db = term.a_degree - sum(s), term.b_degree - sum(t)
            diagonal = term.symmetric and s == t
            a = term.a[:, _gather(n, s, da, device)]
            b = a if diagonal else term.b[:, _gather(n, t, db, device)]
            factor = 2.0 if term.symmetric else 1.0
            chunks = fold_chunks(n_rest, da, db, diagonal, device)
            for o in range(self.n_outputs):
                aw = (a * (term.weights[o] * factor)[:, None]).T.contiguous()
                target = buf[o]
                for start, stop, col, flat in chunks:
                    gram = aw[start:stop] @ b[:, col:]
                    if diagonal:
                        square = gram[:, : stop - start]
                        square.triu_()
                        square.diagonal().mul_(0.5)
                    target.index_add_(0, flat, gram.reshape(-1))

    def dense(self) -> Tensor:
        """All coefficients in memory, shape (n_outputs, size)."""
        blocks = self.blocks()
        if len(blocks) == 1:
            return self.block_values(blocks[0])  # the root: local order is the graded order
        out = torch.empty(self.n_outputs, self.size, dtype=torch.float64, device=self.base.device)
        for block in blocks:
            values = self.block_values(block)
            for g, lo, ln in block.runs():
                out[:, g : g + ln] = values[:, lo : lo + ln]
        return out

    def cost(self) -> tuple[float, float]:
        """(multiply-adds, scatter-adds) of the whole fold."""
        macs, scatters = 0.0, 0.0
        for term in self.terms:
            t = n_monomials
            pairs = t(self.n_vars, term.a_degree) * t(self.n_vars, term.b_degree)
            if term.symmetric:
                pairs /= 2
            macs += self.n_outputs * term.weights.shape[1] * pairs
            scatters += self.n_outputs * pairs
        return macs, scatters


# Fold maps on their devices, shared by every block (and thread) that folds the same sizes.
_MAPS: OrderedDict[tuple, tuple] = OrderedDict()
_MAPS_BYTES = 0
_MAPS_LOCK = threading.Lock()


def fold_chunks(n_vars: int, a: int, b: int, symmetric: bool, device) -> tuple:
    """Row chunks (start, stop, col_start, int32 targets) of the (a, b) product map, cached."""
    global _MAPS_BYTES
    key = (n_vars, a, b, symmetric, str(device))
    with _MAPS_LOCK:
        hit = _MAPS.get(key)
        if hit is not None:
            _MAPS.move_to_end(key)
            return hit
        chunks = _build_chunks(n_vars, a, b, symmetric, device)
        size = sum(c[3].numel() * 4 for c in chunks)
        while _MAPS and _MAPS_BYTES + size > MAP_CACHE_BYTES:
            _, old = _MAPS.popitem(last=False)
            _MAPS_BYTES -= sum(c[3].numel() * 4 for c in old)
        _MAPS[key] = chunks
        _MAPS_BYTES += size
        return chunks


def _build_chunks(n_vars: int, a: int, b: int, symmetric: bool, device) -> tuple:
    ta, tb = n_monomials(n_vars, a), n_monomials(n_vars, b)
    rows = max(1, CHUNK_ELEMENTS // tb)
    if symmetric:
        rows = min(rows, max(64, -(-ta // SYMMETRIC_CHUNKS)))
    bounds = [(s, min(ta, s + rows), s if symmetric else 0) for s in range(0, ta, rows)]
    flat = torch.from_numpy(_targets(n_vars, a, b, symmetric, bounds)).to(device)
    chunks, offset = [], 0
    for start, stop, col in bounds:
        length = (stop - start) * (tb - col)
        chunks.append((start, stop, col, flat[offset : offset + length]))
        offset += length
    return tuple(chunks)


def _flat_targets(n: int, a: int, b: int, bounds) -> np.ndarray:
    pmap = product_map32(n, a, b)
    return np.concatenate([pmap[s:e, c:].reshape(-1) for s, e, c in bounds])


def product_map32(n: int, a: int, b: int) -> np.ndarray:
    """MonomialIndex(n, a + b).product_map(a, b) as int32, built column-major (faster).

    Not cached: :func:`fold_chunks` keeps the chunks it needs, and the index's own cache
    would keep an int64 copy of every map alive next to them.
    """
    ta, tb = n_monomials(n, a), n_monomials(n, b)
    if n == 0:
        return np.zeros((1, 1), dtype=np.int32)
    # Row t of the transposed map from row parent(t): s + t = (s + parent(t)) + x_var(t), one
    # contiguous gather per row through the successor table.
    out = np.empty((tb, ta), dtype=np.int32)
    out[0] = np.arange(ta, dtype=np.int32)
    if b > 0:
        succ = _index._successors(n, a + b).astype(np.int32).reshape(-1)
        parent, var = _index._parents(n, b)
        for d in range(1, b + 1):
            lo, hi = n_monomials(n, d - 1), n_monomials(n, d)
            rows = out[parent[lo:hi]] * np.int32(n) + var[lo:hi, None].astype(np.int32)
            np.take(succ, rows, out=out[lo:hi])
    return out.T


#: Maps of at least this many entries are kept on disk for the next process: building the
#: Boston map (5.7M entries) is most of a first call, reading it back takes milliseconds.
DISK_CACHE_MIN_ENTRIES = 1 << 20
#: The disk cache stops growing past this size (temporaries of running writers included).
DISK_CACHE_MAX_BYTES = 256 << 20
#: Version 2 entries carry a CRC-32 of the whole map in their header; version 1 entries
#: (``fold1-*.npy``, first row checked only) are never read and are deleted on the next write.
_DISK_FORMAT = 2
_MAGIC = b"polynet-fold-map"
# magic, format, entries, CRC-32 of the int32 little-endian entries, bound on every entry
_HEADER = np.dtype(
    [("magic", "S16"), ("format", "<u4"), ("n", "<u8"), ("crc", "<u4"), ("bound", "<u4")]
)


def cache_dir() -> Path | None:
    """Where fold maps are kept between processes: ``$POLYNET_CACHE_DIR`` (empty: off), else
    ``$XDG_CACHE_HOME/polynet`` or ``~/.cache/polynet``."""
    value = os.environ.get("POLYNET_CACHE_DIR")
    if value == "":
        return None
    if value:
        return Path(value) / "maps"
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "polynet" / "maps"


def _targets(n: int, a: int, b: int, symmetric: bool, bounds) -> np.ndarray:
    """The chunks' fold targets end to end, int32; from the disk cache when large.

    A cache entry is used only when its length, its CRC-32 and its bound on the entries
    match: a damaged or truncated entry is rebuilt and written again, never used.
    """
    ta, tb = n_monomials(n, a), n_monomials(n, b)
    folder = cache_dir() if ta * tb >= DISK_CACHE_MIN_ENTRIES else None
    if folder is None:
        return _flat_targets(n, a, b, bounds)
    length = sum((e - s) * (tb - c) for s, e, c in bounds)
    bound = n_monomials(n, a + b)
    tag = f"s{bounds[1][0] if len(bounds) > 1 else ta}" if symmetric else "f"
    path = folder / f"fold{_DISK_FORMAT}-n{n}-a{a}-b{b}-{tag}-c{CHUNK_ELEMENTS}.bin"
    flat = read_map(path, length, bound)
    if flat is not None:
        return flat
    flat = _flat_targets(n, a, b, bounds)
    try:
        _make_room(folder, flat.nbytes + _HEADER.itemsize)
        if _cache_bytes(folder) + flat.nbytes <= DISK_CACHE_MAX_BYTES:
            write_map(path, flat, bound)
    except OSError:  # a read-only or full home: build again next time
        pass
    return flat


def read_map(path: Path, length: int, bound: int) -> np.ndarray | None:
    """The int32 map cached at ``path``, or None when missing, of another length or damaged."""
    try:
        with open(path, "rb") as fh:
            header = np.frombuffer(fh.read(_HEADER.itemsize), dtype=_HEADER)
            if (
                len(header) != 1
                or header["magic"][0] != _MAGIC
                or int(header["format"][0]) != _DISK_FORMAT
                or int(header["n"][0]) != length
                or int(header["bound"][0]) != bound
            ):
                return None
            flat = np.fromfile(fh, dtype="<i4", count=length)
    except (OSError, ValueError):
        return None
    if len(flat) != length or zlib.crc32(flat) != int(header["crc"][0]):
        logger.warning("fold map cache entry %s is damaged; building it again", path)
        return None
    return flat.astype(np.int32, copy=False)


def write_map(path: Path, flat: np.ndarray, bound: int) -> None:
    """Cache the int32 map ``flat`` at ``path`` atomically, with its CRC-32 and bound."""
    flat = np.ascontiguousarray(flat, dtype="<i4")
    header = np.array([(_MAGIC, _DISK_FORMAT, len(flat), zlib.crc32(flat), bound)], dtype=_HEADER)
    with atomic_write(path, suffix=".bin.tmp") as fh:
        fh.write(header.tobytes())
        fh.write(memoryview(flat).cast("B"))


def _cache_bytes(folder: Path) -> int:
    """Bytes in the cache folder, temporaries of running writers included."""
    total = 0
    for entry in folder.iterdir() if folder.exists() else ():
        try:
            total += entry.stat().st_size
        except OSError:
            pass
    return total


def _make_room(folder: Path, size: int) -> None:
    """Clean the folder before a write: temporaries of killed writers, version-1 entries."""
    if not folder.exists():
        return
    remove_stale(folder)
    for old in [*folder.glob("fold1-*.npy"), *folder.glob(".fold1-*.npy.tmp")]:
        old.unlink(missing_ok=True)  # version 1, and its temporaries (they had no pid)


def clear_cache() -> None:
    """Drop the cached fold maps."""
    global _MAPS_BYTES
    with _MAPS_LOCK:
        _MAPS.clear()
        _MAPS_BYTES = 0
