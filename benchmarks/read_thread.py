"""Where stage A's read thread spends its CPU: per epoch, per function, inside the real pipeline.

    uv run python benchmarks/read_thread.py bench_data/collections/<data>/annshard.zarr \
        --chunk-size 32 --preload-nchunks 256 --read-threads 2 --epochs 2

Iterates an ``annshard.Loader`` (batch 4096, scipy CSR + ``cell_type``) for ``--epochs`` epochs and prints one
JSON line per epoch: cells/s, process CPU per 1,000 cells, each stage thread's CPU per 1,000 cells (a thread's
``time.thread_time()`` recorded as it ends; the stage threads are new each epoch) and, for the read threads
(``annshard-read``, ``annshard-read-next``) only, the CPU spent inside each of a few functions of the read
path (each wrapped with ``time.thread_time()``; nested ones overlap: ``read`` holds the others).
"""

from __future__ import annotations

import argparse
import collections
import functools
import json
import threading
import time
from pathlib import Path
from typing import Any

_SPENT: collections.defaultdict[str, float] = collections.defaultdict(float)
_ENDED: list[tuple[str, float]] = []


def _count_thread_ends() -> None:
    run = threading.Thread.run

    def counted(thread: threading.Thread) -> None:
        try:
            run(thread)
        finally:
            _ENDED.append((thread.name, time.thread_time()))

    threading.Thread.run = counted  # type: ignore[method-assign]


def _wrap(owner: Any, name: str, label: str) -> None:
    if not hasattr(owner, name):
        return
    f = getattr(owner, name)

    @functools.wraps(f)
    def timed(*args: Any, **kwargs: Any) -> Any:
        if not threading.current_thread().name.startswith("annshard-read"):
            return f(*args, **kwargs)
        t = time.thread_time()
        try:
            return f(*args, **kwargs)
        finally:
            _SPENT[label] += time.thread_time() - t

    setattr(owner, name, timed)


def main() -> None:
    """Run the loader and print one JSON line per epoch."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("collection", type=Path)
    p.add_argument("--chunk-size", type=int, default=32)
    p.add_argument("--preload-nchunks", type=int, default=256)
    p.add_argument("--read-threads", type=int, default=2)
    p.add_argument("--epochs", type=int, default=2)
    a = p.parse_args()
    _count_thread_ends()
    import annshard
    from annshard._load import _fetch, _pipeline, _pool
    from annshard._store import _raw

    _wrap(_fetch.BlockReader, "read", "read (all of it)")
    _wrap(_fetch.BlockReader, "arrays", "opening shards")
    _wrap(_fetch.BlockReader, "_plan_csr", "planning (_plan_csr, pool included)")
    _wrap(_pool.BufferPool, "take" if hasattr(_pool.BufferPool, "take") else "empty", "pool (allocation, first touch)")
    _wrap(_fetch, "read_raw_runs", "raw reads (dispatch, and the reads with read_threads=1)")
    _wrap(_raw, "plan_parts", "raw reads' numpy plan")
    _wrap(_fetch, "check_indices", "gene index check")
    _wrap(_pipeline, "block_order", "row order")
    loader = annshard.Loader(
        a.collection,
        batch_size=4096,
        chunk_size=a.chunk_size,
        preload_nchunks=a.preload_nchunks,
        read_threads=a.read_threads,
        obs_columns=["cell_type"],
        output="scipy",
    )
    for epoch in range(a.epochs):
        _ENDED.clear()
        _SPENT.clear()
        cells, cpu0, wall0 = 0, time.process_time(), time.perf_counter()
        for batch in loader:
            cells += batch.X.shape[0]
        time.sleep(0.05)  # the stage threads record their CPU as they end
        threads: collections.defaultdict[str, float] = collections.defaultdict(float)
        for name, spent in _ENDED:
            threads[name.rsplit("_", 1)[0] if name.startswith(("annshard-raw", "annshard-gather_")) else name] += spent
        per_1k = 1e6 / cells
        row = {
            "epoch": epoch,
            "cells_per_s": round(cells / (time.perf_counter() - wall0)),
            "cpu_ms_per_1k_cells": round((time.process_time() - cpu0) * per_1k, 3),
            "threads_ms_per_1k_cells": {k: round(v * per_1k, 3) for k, v in sorted(threads.items())},
            "read_thread_functions_ms_per_1k_cells": {k: round(v * per_1k, 3) for k, v in sorted(_SPENT.items())},
        }
        print(json.dumps(row))


if __name__ == "__main__":
    main()
