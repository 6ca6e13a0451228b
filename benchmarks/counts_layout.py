"""Raw counts' stored layouts against each other (issue 15, round 4): conversion CPU, bytes, remote bytes per cell.

Converts the same ``.h5ad`` files once per layout with ``annshard.write_collection`` and prints, per layout, the
conversion's process CPU and wall seconds, the collection's bytes (and ``X/data``'s), and the bytes annshard's
remote reader fetches per 1,000 cells: every inner chunk of ``X/data`` and ``X/indices`` a block's row runs touch,
once per block, at its stored size (read from the shard indexes; random chunks of ``chunk_size`` rows,
``preload_nchunks`` per block). Loader CPU is measured with ``annshard bench`` on the written collections.

    uv run python benchmarks/counts_layout.py bench_data/h5ad_c100000_g20000_nnz1500_f50000_s0/*.h5ad \\
        --out-dir /tmp/p16 --layouts lz4bs,none,lz4shuf1

Layouts: ``lz4bs`` (``counts_codec=None``: lz4 clevel 5, bitshuffled), ``none`` (``counts_codec="none"``, the
default), ``lz4shuf1`` (lz4 clevel 1, byte shuffle: a compressor the spec does not offer, patched in here).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

import annshard
from annshard._store._raw import parse_shard_index
from annshard._store._spec import StorageSpec
from annshard._write import write_collection  # resolved before any clock starts (the lazy write import)


def _convert(files: list[str], out: Path, layout: str) -> dict[str, float]:
    storage: dict[str, object] = {"counts_codec": "none" if layout == "none" else None}
    orig = StorageSpec.compressors
    if layout == "lz4shuf1":
        from zarr.codecs import BloscCodec

        def comp(self: StorageSpec, *, counts: bool = False, indices: bool = False) -> tuple[object, ...]:
            if counts and self.counts_dtype is not None:
                return (BloscCodec(cname="lz4", clevel=1, shuffle="shuffle", typesize=2),)
            return orig(self, counts=counts, indices=indices)

        StorageSpec.compressors = comp  # type: ignore[method-assign]
    try:
        t0, w0 = time.process_time(), time.perf_counter()
        write_collection(files, out, overwrite=True, storage=storage)
        cpu, wall = time.process_time() - t0, time.perf_counter() - w0
    finally:
        StorageSpec.compressors = orig  # type: ignore[method-assign]
    sizes = [(str(Path(r) / f), os.path.getsize(Path(r) / f)) for r, _, fs in os.walk(out) for f in fs]
    data = sum(n for p, n in sizes if f"{os.sep}X{os.sep}data{os.sep}" in p)
    return {
        "cpu_s": round(cpu, 1),
        "wall_s": round(wall, 1),
        "MB": sum(n for _, n in sizes) / 1e6,
        "data_MB": data / 1e6,
    }


def _remote_mb_per_1k(path: Path, chunk_size: int, preload: int) -> float:
    coll = annshard.open_collection(path)
    info = []
    for i in range(len(coll.shards)):
        g = coll.shard_group(i)
        inner, shard = int(g["X/data"].chunks[0]), int(g["X/data"].shards[0])
        n = shard // inner
        tabs = {}
        for a in ("data", "indices"):
            d = coll.shard_path(i) / "X" / a / "c"
            tabs[a] = {
                int(f): parse_shard_index((d / f).read_bytes()[-(16 * n + 4) :], n, crc=True, where=f)
                for f in os.listdir(d)
            }
        info.append((np.asarray(g["X/indptr"][...], dtype=np.int64), inner, n, tabs))
    chunks = [(s, a) for s, sh in enumerate(coll.shards) for a in range(0, sh.n_obs, chunk_size)]
    order = np.random.default_rng(0).permutation(len(chunks))
    total = cells = 0
    for b in range(0, len(order), preload):
        seen = set()
        for k in order[b : b + preload].tolist():
            s, a = chunks[k]
            ip, inner, _, _ = info[s]
            stop = min(a + chunk_size, coll.shards[s].n_obs)
            cells += stop - a
            seen.update((s, ci) for ci in range(int(ip[a]) // inner, (int(ip[stop]) - 1) // inner + 1))
        for s, ci in seen:
            n, tabs = info[s][2], info[s][3]
            total += sum(int(tabs[a][ci // n][ci % n, 1]) for a in ("data", "indices"))
    return round(total / cells * 1000 / 1e6, 2)


def main() -> None:
    """Convert once per layout and print one JSON line per layout."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("files", nargs="+")
    p.add_argument("--out-dir", type=Path, required=True)
    p.add_argument("--layouts", default="lz4bs,none,lz4shuf1")
    args = p.parse_args()
    for layout in args.layouts.split(","):
        out = args.out_dir / f"{layout}.zarr"
        row = {"layout": layout, **_convert(args.files, out, layout)}
        for cs, pn in ((32, 256), (256, 32)):
            row[f"remote_MB_per_1k_{cs}_{pn}"] = _remote_mb_per_1k(out, cs, pn)
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
