"""The decode limit: how fast can this machine decode a collection's ``X`` at all?

    uv run python benchmarks/decode.py bench_data/collections/<...>/annshard.zarr [--threads 1 2]

Two measurements over the same bytes, data in page cache:

- ``raw blosc``: the compressed inner chunks of ``X/data`` and ``X/indices`` are
  cut out of the zarr shard files in memory (parsing the shard index) and
  decoded with ``numcodecs.Blosc`` in a thread pool: pure decompression, no
  I/O, no zarr, no assembly. This is the ceiling for any reader of these bytes.
- ``zarrs whole read``: every shard's ``X/data`` and ``X/indices`` read whole
  with the zarrs codec pipeline (what ``jobs.decode`` does in compare.py):
  decoding plus a copy into the output, as a reader doing no per-row work would.

Both are expressed in cells/s (rows of the collection decoded per second).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import zarr

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import run_job, warm_page_cache


def _inner_chunks(array_dir: Path) -> list[bytes]:
    """The compressed inner chunks of a (sharded or not) zarr v3 1-D array directory."""
    meta = json.loads((array_dir / "zarr.json").read_text())
    codecs = meta["codecs"]
    files = sorted(p for p in (array_dir / "c").rglob("*") if p.is_file()) if (array_dir / "c").exists() else []
    sharding = next((c for c in codecs if c["name"] == "sharding_indexed"), None)
    if sharding is None:
        return [f.read_bytes() for f in files]
    cfg = sharding["configuration"]
    n_inner = None
    shard_len = meta["chunk_grid"]["configuration"]["chunk_shape"][0]
    inner_len = cfg["chunk_shape"][0]
    n_inner = -(-shard_len // inner_len)
    has_crc = any(c["name"] == "crc32c" for c in cfg.get("index_codecs", []))
    at_end = cfg.get("index_location", "end") == "end"
    out = []
    for f in files:
        buf = f.read_bytes()
        index_bytes = n_inner * 16 + (4 if has_crc else 0)
        raw = buf[-index_bytes:] if at_end else buf[:index_bytes]
        index = np.frombuffer(raw[: n_inner * 16], dtype="<u8").reshape(-1, 2)
        for off, nb in index:
            if off != 2**64 - 1:  # an empty (missing) inner chunk
                out.append(buf[int(off) : int(off + nb)])
    return out


def raw_blosc(collection: Path, threads: int) -> dict:
    """Decode every compressed X chunk of every shard with numcodecs.Blosc in ``threads`` threads."""
    from numcodecs import blosc

    blosc.set_nthreads(1)  # one blosc thread per task; parallelism comes from the pool
    codec = blosc.Blosc()
    root = zarr.open_group(collection, mode="r")
    chunks, n_obs = [], 0
    for k in sorted(root.group_keys()):
        x = collection / k / "X"
        n_obs += int(root[k]["X"].attrs["shape"][0])
        chunks += _inner_chunks(x / "data") + _inner_chunks(x / "indices")
    compressed = sum(len(c) for c in chunks)
    with ThreadPoolExecutor(threads) as pool:
        decoded = sum(len(d) for d in pool.map(codec.decode, chunks[: max(1, len(chunks) // 20)]))  # warm-up
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            decoded = sum(len(d) for d in pool.map(codec.decode, chunks, chunksize=16))
            times.append(time.perf_counter() - t0)
    best = min(times)
    return {
        "method": "raw blosc",
        "threads": threads,
        "chunks": len(chunks),
        "compressed_bytes": compressed,
        "decoded_bytes": decoded,
        "seconds": best,
        "decoded_gb_per_s": decoded / best / 1e9,
        "cells_per_s": n_obs / best,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("collection", type=Path)
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    a = p.parse_args(argv)
    warm_page_cache(a.collection)
    rows = []
    for t in a.threads:
        rows.append(raw_blosc(a.collection, t))
        z = run_job("decode", {"collection": str(a.collection), "threads": t})
        rows.append({"method": "zarrs whole read", "threads": t} | z)
    for r in rows:
        print(
            f"{r['method']:>17}, {r['threads']} thread(s): {r['decoded_gb_per_s']:.2f} GB/s decoded, "
            f"{r['cells_per_s']:,.0f} cells/s"
        )
    print(json.dumps(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
