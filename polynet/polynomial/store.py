"""Coefficients on disk: the Zarr store format, its chunk writer, and the lazy reader.

A store is a Zarr v3 group holding one float64 array ``coefficients`` of shape
(n_outputs, C(n + D, D)) in the graded order of :class:`~polynet.polynomial.index.MonomialIndex`
(the same layout as ``NetworkPolynomial.coefficients``), chunked along the monomials. The
group's ``polynet`` attribute holds the metadata and the statistics gathered while writing
(terms per output, degree profile); it is written last, with ``complete: true``, after every
chunk, and the store is built under a temporary name and renamed into place, so a failed run
never leaves a store that claims to be complete.

The expansion that fills a store block by block (in this process, by Dask's local threaded
scheduler, or on a ``dask.distributed`` cluster) is :mod:`polynet.expansion.store_walk`; this
module knows the format only.
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import ArrayLike
from torch import Tensor

from polynet.atomic import remove_stale
from polynet.errors import PolynetError, PolynetWarning, StoreError
from polynet.polynomial.blocks import Block, n_monomials, split_blocks
from polynet.polynomial.evaluate import evaluate
from polynet.polynomial.index import MonomialIndex, exponents_at, monomial_name

__all__ = [
    "StoredPolynomial",
    "open_store",
    "exponents_at",
    "evaluate_blocks",
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


def check_target(path: Path) -> None:
    """Refuse to replace something at ``path`` that is not a polynet store."""
    if path.exists() and not _is_store(path):
        raise PolynetError(
            f"{path} exists and is not a polynet store; choose another path or remove it."
        )


def write_in_chunks(writer: _ChunkWriter, coefficients: Tensor) -> None:
    """Coefficients held in memory, (n_outputs, size), through ``writer`` chunk by chunk."""
    for lo in range(0, coefficients.shape[1], CHUNK_TERMS):
        writer.put(lo, coefficients[:, lo : lo + CHUNK_TERMS].detach().cpu().numpy())


def mark_complete(
    group: Any,
    writer: _ChunkWriter,
    index: MonomialIndex,
    *,
    degree_bound: int,
    variables: list[str] | None,
    n_network_parameters: int | None,
    info: dict,
) -> None:
    """Write the store's metadata with the statistics the writer gathered and the completion
    marker: the last write, after every chunk."""
    meta = {
        "format": _FORMAT,
        "version": _FORMAT_VERSION,
        "n_vars": index.n_vars,
        "index_degree": index.degree,
        "degree_bound": degree_bound,
        "variables": variables or [f"x{i}" for i in range(index.n_vars)],
        "n_network_parameters": n_network_parameters,
        "info": info,
        "n_terms": writer.any_nonzero,
        "n_terms_per_output": writer.nonzero.tolist(),
        "degree": writer.max_degree,
        "degree_profile": writer.profile.tolist(),
        "complete": True,
    }
    group.attrs["polynet"] = json.loads(json.dumps(meta))


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
