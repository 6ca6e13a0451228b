"""Decode cost of stored counts: zarrs' ``fixedscaleoffset`` filter vs the stored integers widened by numpy.

    uv run python benchmarks/counts_decode.py bench_data/collections/<counts ...>/annshard.zarr [--threads 1]

Reads random row runs (as a preload block at ``(chunk_size, preload_nchunks)``) of one shard's ``X/data``
through zarrs directly (``annshard._load._fetch.DirectRuns``), interleaved, three ways: ``float32`` through the
filter (what the loader did before issue 15 round 3), the stored ``uint16`` alone, and the stored ``uint16`` plus
the cast to ``float32`` (what the loader does now), and the ``X/indices`` of the same runs for scale. Prints CPU
ms per 1,000 cells (``time.process_time``, all threads; data in page cache after the first repeat).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import zarr

from annshard._compat import zarr_stored_counts
from annshard._config import zarr_config
from annshard._load._fetch import DirectRuns


def main() -> None:
    """Run the measurement and print one line per way and setting."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("collection", type=Path)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=8)
    a = p.parse_args()
    shard = sorted(a.collection.glob("shard-*.zarr"))[0] / "X"
    with zarr_config(threads=a.threads):
        data = zarr.open_array(shard / "data", mode="r")
        stored = zarr_stored_counts(data)
        if stored is None:
            raise SystemExit(f"{shard}/data is not stored as counts (no fixedscaleoffset filter)")
        ip = np.asarray(zarr.open_array(shard / "indptr", mode="r")[...], dtype=np.int64)
        readers = {"filter": DirectRuns.create(data), "stored": DirectRuns.create(stored)}
        indices = DirectRuns.create(zarr.open_array(shard / "indices", mode="r"))
        n = ip.shape[0] - 1
        size = int(ip[-1])
        wide, narrow, idx = np.zeros(size, np.float32), np.zeros(size, np.uint16), np.zeros(size, np.uint16)
        for chunk, nchunks in ((32, 256), (256, 32)):
            rng = np.random.default_rng(0)
            res: dict[str, list[float]] = {"float32 via filter": [], "uint16": [], "uint16 + cast": [], "indices": []}
            for _ in range(a.repeats):
                starts = np.sort(rng.choice(n // chunk, nchunks, replace=False)) * chunk
                runs = np.stack([ip[starts], ip[np.minimum(starts + chunk, n)]], axis=1)
                k = int((runs[:, 1] - runs[:, 0]).sum())
                for name in res:
                    t0 = time.process_time()
                    if name == "float32 via filter":
                        readers["filter"].read(runs, wide[:k])
                    elif name == "indices":
                        indices.read(runs, idx[:k])
                    else:
                        readers["stored"].read(runs, narrow[:k])
                        if name == "uint16 + cast":
                            np.copyto(wide[:k], narrow[:k], casting="unsafe")
                    res[name].append(1e6 * (time.process_time() - t0) / (chunk * nchunks))
            for name, v in res.items():
                print(f"({chunk}, {nchunks}) {name:20s} min {min(v):5.2f}  median {np.median(v):5.2f} ms per 1k cells")


if __name__ == "__main__":
    main()
