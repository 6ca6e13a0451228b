"""Per-epoch throughput and CPU cost of annshard's loader: for A/B tests of a change to the hot path.

    uv run python benchmarks/epochs.py bench_data/collections/<...>/annshard.zarr --chunk-size 32 --preload-nchunks 256

Prints, per epoch, cells/s and CPU milliseconds per 1,000 cells (all threads of the process). The first epoch
includes filling the pipeline; compare later epochs, and interleave the variants you compare (noise here is
about 10-15 %).
"""

from __future__ import annotations

import argparse
import time

import annshard


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("path")
    p.add_argument("--batch-size", type=int, default=4096)
    p.add_argument("--chunk-size", type=int, default=32)
    p.add_argument("--preload-nchunks", type=int, default=256)
    p.add_argument("--read-threads", type=int, default=None)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--obs-column", action="append", default=["cell_type"])
    args = p.parse_args()
    loader = annshard.Loader(
        args.path,
        batch_size=args.batch_size,
        chunk_size=args.chunk_size,
        preload_nchunks=args.preload_nchunks,
        obs_columns=args.obs_column,
        read_threads=args.read_threads,
    )
    print(f"{loader!r}, read_threads={loader.read_threads}")
    print("| epoch | cells/s | CPU ms per 1k cells |")
    print("|-------|---------|---------------------|")
    for epoch in range(args.epochs):
        t, c, n = time.perf_counter(), time.process_time(), 0
        for batch in loader:
            n += batch.X.shape[0]
        wall, cpu = time.perf_counter() - t, time.process_time() - c
        print(f"| {epoch} | {n / wall:,.0f} | {cpu / n * 1e6:.1f} |")


if __name__ == "__main__":
    main()
