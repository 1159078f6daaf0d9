"""Benchmark: what the file guarantees cost (checksums, atomic directories), measured in one run.

- Fold-map disk cache: reading the Boston network's largest product map (13 inputs, degrees
  4 x 4: 5.7M int32 entries) as a version-2 entry (header + CRC-32 of the whole map, checked)
  against the version-1 ``.npy`` entry it replaces (``np.load``, first row checked only).
- Zarr store: writing and reading 64 MiB of float64 coefficients in the store's chunks with
  zstd + CRC-32C (what stores are written with now) against zstd alone (before).
- Export bundle: ``write_bundle`` (temporary sibling, swap) against writing the same files in
  place, for the Boston float polynomial (203,490 terms).

Each pair runs on the same data in this one process, interleaved ``--repeat`` times
(medians), and must agree (same arrays, same files) before its time counts.

Usage::

    PYTHONPATH=. python benchmarks/bench_trust.py   # writes results/bench_trust.{json,md}
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
sys.path.insert(0, str(HERE))

from bench_expand import CASES, SEED, build_model, machine_info  # noqa: E402

import polynet  # noqa: E402
from polynet import export  # noqa: E402
from polynet.expansion import fold  # noqa: E402
from polynet.expansion.fold import n_monomials, product_map32  # noqa: E402


def _median(fn, repeat: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def bench_cache(folder: Path, repeat: int) -> dict:
    n, a, b = 13, 4, 4
    flat = np.ascontiguousarray(product_map32(n, a, b).reshape(-1))
    bound = n_monomials(n, a + b)
    new, old = folder / "map.bin", folder / "map.npy"
    fold.write_map(new, flat, bound)
    np.save(old, flat)
    rows = []
    for _ in range(repeat):  # interleaved: both see the same page cache and load
        t_new, got_new = _median(lambda: fold.read_map(new, len(flat), bound), 1)
        t_old, got_old = _median(lambda: np.load(old), 1)
        assert np.array_equal(got_new, flat) and np.array_equal(got_old, flat)
        rows.append((t_new, t_old))
    t_new = statistics.median(r[0] for r in rows)
    t_old = statistics.median(r[1] for r in rows)
    return {
        "entries": int(flat.size),
        "mib": flat.nbytes / 2**20,
        "read_crc_checked_s": t_new,
        "read_npy_unchecked_s": t_old,
        "ratio": t_new / t_old,
    }


def bench_store(folder: Path, repeat: int) -> dict:
    import zarr
    from zarr.codecs import Crc32cCodec, ZstdCodec

    from polynet.polynomial.store import CHUNK_TERMS

    rng = np.random.default_rng(0)
    data = rng.standard_normal((1, 8 * CHUNK_TERMS))
    variants = {
        "zstd+crc32c": [ZstdCodec(level=0), Crc32cCodec()],
        "zstd": [ZstdCodec(level=0)],
    }
    out: dict = {"mib": data.nbytes / 2**20}
    times: dict = {k: {"write": [], "read": []} for k in variants}
    for _ in range(repeat):
        for name, codecs in variants.items():
            path = folder / f"{name}.zarr"
            shutil.rmtree(path, ignore_errors=True)
            start = time.perf_counter()
            group = zarr.open_group(str(path), mode="w", zarr_format=3)
            array = group.create_array(
                "coefficients",
                shape=data.shape,
                chunks=(1, CHUNK_TERMS),
                dtype="float64",
                compressors=codecs,
                config={"write_empty_chunks": True},
            )
            for lo in range(0, data.shape[1], CHUNK_TERMS):
                array[:, lo : lo + CHUNK_TERMS] = data[:, lo : lo + CHUNK_TERMS]
            times[name]["write"].append(time.perf_counter() - start)
            start = time.perf_counter()
            back = zarr.open_group(str(path), mode="r")["coefficients"][:]
            times[name]["read"].append(time.perf_counter() - start)
            assert np.array_equal(back, data)
    for name in variants:
        out[name] = {k: statistics.median(v) for k, v in times[name].items()}
    out["write_ratio"] = out["zstd+crc32c"]["write"] / out["zstd"]["write"]
    out["read_ratio"] = out["zstd+crc32c"]["read"] / out["zstd"]["read"]
    return out


def bench_bundle(folder: Path, repeat: int) -> dict:
    torch.manual_seed(0)
    poly = polynet.expand(build_model(*CASES["boston"], SEED))
    t_atomic, t_place = [], []
    for i in range(repeat):
        target = folder / "bundle"
        start = time.perf_counter()
        export.write_bundle(poly, target)
        t_atomic.append(time.perf_counter() - start)
        place = folder / f"inplace{i}"
        place.mkdir()
        start = time.perf_counter()
        export._write_bundle_files(poly, place)
        t_place.append(time.perf_counter() - start)
        for f in export.BUNDLE_FILES:
            assert (target / f).read_bytes() == (place / f).read_bytes()
        shutil.rmtree(place)
    t_a, t_p = statistics.median(t_atomic), statistics.median(t_place)
    return {"n_terms": poly.n_terms, "atomic_s": t_a, "in_place_s": t_p, "ratio": t_a / t_p}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--no-bundle", action="store_true", help="skip the Boston bundle")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        result = {"machine": machine_info(), "repeat": args.repeat}
        result["cache"] = bench_cache(folder, args.repeat)
        result["store"] = bench_store(folder, args.repeat)
        if not args.no_bundle:
            result["bundle"] = bench_bundle(folder, max(1, args.repeat // 2))
    c, s = result["cache"], result["store"]
    lines = [
        "| what | with the guarantee | before | ratio |",
        "|---|---|---|---|",
        f"| fold-map cache read ({c['entries']:,} entries, {c['mib']:.1f} MiB) | "
        f"{c['read_crc_checked_s'] * 1e3:.1f} ms (CRC-32 checked) | "
        f"{c['read_npy_unchecked_s'] * 1e3:.1f} ms (np.load) | {c['ratio']:.2f} |",
        f"| store write, {s['mib']:.0f} MiB | {s['zstd+crc32c']['write']:.3f} s (zstd+CRC-32C) | "
        f"{s['zstd']['write']:.3f} s (zstd) | {s['write_ratio']:.2f} |",
        f"| store read, {s['mib']:.0f} MiB | {s['zstd+crc32c']['read']:.3f} s | "
        f"{s['zstd']['read']:.3f} s | {s['read_ratio']:.2f} |",
    ]
    if "bundle" in result:
        b = result["bundle"]
        lines.append(
            f"| export bundle, {b['n_terms']:,} terms | {b['atomic_s']:.3f} s (atomic) | "
            f"{b['in_place_s']:.3f} s (in place) | {b['ratio']:.2f} |"
        )
    table = "\n".join(lines)
    print(table)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "bench_trust.json").write_text(json.dumps(result, indent=1) + "\n")
    (RESULTS / "bench_trust.md").write_text(table + "\n")


if __name__ == "__main__":
    main()
