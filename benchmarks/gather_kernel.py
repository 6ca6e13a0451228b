"""Stage B alone, in one process: scipy's row gather + numpy's widening vs the fused kernel (jit and ahead of time).

Batches of 4,096 rows cut from shuffled blocks of 8,192 rows (~1,500 values per row, ``uint16`` gene
indices: a ``(32, 256)`` block of the benchmark collections), gathered by ``gather_rows`` through a
``BufferPool`` as the loader does; CPU per 1k cells, interleaved repeats. Raw counts two ways: widened to
``float32`` in the block (what the read threads do without the kernel; that widening pass counted here, once
per block) and kept as stored ``uint16`` in the block (the fused kernel widens them as it gathers).

``uv run python benchmarks/gather_kernel.py`` (the ahead-of-time module is built first when missing: ~10 s)
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
    stored = rng.integers(1, 50, nnz).astype(np.uint16)
    wide = stored.astype(np.float32)
    index, genes = np.arange(n_rows, dtype=np.int64), rng.integers(0, 20000, nnz).astype(np.uint16)
    widened = Block(index, indptr, wide, genes)
    narrow = Block(index, indptr, stored, genes, dtype=np.dtype(np.float32))
    orders = [rng.permutation(n_rows) for _ in range(4)]
    pool = BufferPool(16)
    for mode in ("numba", "aot"):
        os.environ[_kernel.GATHER_ENV] = mode
        t = time.process_time()
        gather_rows([(narrow, orders[0][:4096])], 20000, pool)
        print(f"{mode} kernel ready (import, cache or compile, one batch): {time.process_time() - t:.2f} s CPU")
    cases = {
        "scipy, block widened on read": ("scipy", widened, True),
        "jit, block widened on read": ("numba", widened, True),
        "aot, block widened on read": ("aot", widened, True),
        "jit, block as stored": ("numba", narrow, False),
        "aot, block as stored": ("aot", narrow, False),
    }
    res: dict[str, list[float]] = {name: [] for name in cases}
    cells = 4096 * 2 * len(orders)
    for _ in range(repeats):
        for name, (mode, block, widen) in cases.items():
            os.environ[_kernel.GATHER_ENV] = mode
            t = time.process_time()
            for order in orders:
                if widen:  # the read thread's pass, once per block
                    np.copyto(wide, stored, casting="unsafe")
                for i in (0, 4096):
                    gather_rows([(block, order[i : i + 4096])], 20000, pool)
            res[name].append((time.process_time() - t) / cells * 1e6)
    for name, times in res.items():
        med = statistics.median(times)
        print(f"{name}: {med:.2f} ms CPU per 1k cells (median of {repeats}), {med / 1.5:.2f} ns per value")


if __name__ == "__main__":
    main()
