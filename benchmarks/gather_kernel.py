"""Stage B alone, in one process: scipy's row gather + numpy's widening vs the fused numba kernel.

Batches of 4,096 rows cut from shuffled blocks of 8,192 rows (~1,500 values per row, ``uint16`` gene
indices, ``float32`` values: a ``(32, 256)`` block of the benchmark collections), gathered by
``gather_rows`` through a ``BufferPool`` as the loader does; CPU per 1k cells, interleaved repeats.

``uv run python benchmarks/gather_kernel.py``
"""

from __future__ import annotations

import os
import statistics
import time

import numpy as np

from annshard import _kernel
from annshard._load._assemble import gather_rows
from annshard._load._fetch import Block
from annshard._load._pool import BufferPool


def main(repeats: int = 7) -> None:
    """Print the median CPU per 1k cells of each path."""
    rng = np.random.default_rng(0)
    n_rows = 8192
    lens = rng.poisson(1500, n_rows)
    indptr = np.zeros(n_rows + 1, np.int64)
    np.cumsum(lens, out=indptr[1:])
    nnz = int(indptr[-1])
    data = rng.integers(1, 50, nnz).astype(np.float32)
    block = Block(np.arange(n_rows, dtype=np.int64), indptr, data, rng.integers(0, 20000, nnz).astype(np.uint16))
    batches = [[(block, o[i : i + 4096])] for o in (rng.permutation(n_rows) for _ in range(4)) for i in (0, 4096)]
    cells = 4096 * len(batches)
    pool = BufferPool(16)
    os.environ[_kernel.GATHER_ENV] = "numba"
    t = time.process_time()
    gather_rows(batches[0], 20000, pool)
    print(f"kernel ready (import, cache or compile, and one batch): {time.process_time() - t:.2f} s CPU")
    res: dict[str, list[float]] = {"scipy": [], "numba": []}
    for _ in range(repeats):
        for mode, times in res.items():
            os.environ[_kernel.GATHER_ENV] = mode
            t = time.process_time()
            for b in batches:
                gather_rows(b, 20000, pool)
            times.append((time.process_time() - t) / cells * 1e6)
    for mode, times in res.items():
        med = statistics.median(times)
        print(f"{mode}: {med:.2f} ms CPU per 1k cells (median of {repeats}), {med / 1.5:.2f} ns per value")


if __name__ == "__main__":
    main()
