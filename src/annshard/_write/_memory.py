"""Memory: how the budget sizes shards and scatter blocks, and keeping resident memory close to what is live.

The budget is split as follows, from measurements of the peak working set of
each pass (see ``tests/write/test_memory.py``):

- scatter holds one row block of a source plus its reindexed and permuted
  copies, about ``SCATTER_FACTOR`` times the block's raw size;
- gather holds one bucket plus its permuted copy and scipy's ``int32`` index
  copy and the compressed output, about ``GATHER_FACTOR`` times the bucket's
  raw size.

So a shard holds ``budget / GATHER_FACTOR`` bytes of raw rows, and a scatter
block ``budget / SCATTER_FACTOR``. The number of shards (= buckets) follows.

glibc's allocator raises its mmap threshold after large blocks are freed
(up to 32 MiB), so the next blocks of a few MiB come from the heap and freed
heap pages are not returned to the system: without care the writer's RSS
creeps up shard after shard although the live data stays constant. The
writer therefore fixes the threshold at glibc's default (128 KiB), which turns
off that adaptation, so every large array is its own mapping and goes back
to the system when freed, and asks glibc to trim free memory after each
block and shard. Both are no-ops on other C libraries.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import math
import re
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from annshard._store._manifest import StorageSpec

    from ._matrices import MatrixPlan
    from ._plan import ColumnPlan, GenePlan
    from ._sources import Source

__all__ = [
    "GATHER_FACTOR",
    "SCATTER_FACTOR",
    "Buffers",
    "parse_bytes",
    "pin_mmap_threshold",
    "row_bytes",
    "shard_sizes",
    "size_passes",
    "trim",
]

GATHER_FACTOR = 4.0
SCATTER_FACTOR = 8.0
_STRING_ROW_BYTES = 80  # a short Python str plus its pointer, per row
_UNITS = {
    "": 1,
    "b": 1,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
    "tb": 10**12,
    "k": 2**10,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "tib": 2**40,
    "m": 2**20,
    "g": 2**30,
}


def parse_bytes(value: int | str) -> int:
    """Parse a memory size: an int (bytes) or a string such as ``"1GB"``, ``"512MiB"``, ``"16 MB"``.

    Examples
    --------
    >>> parse_bytes("1GB"), parse_bytes("16MiB"), parse_bytes(1000)
    (1000000000, 16777216, 1000)
    """
    if isinstance(value, int | np.integer):
        n = int(value)
    else:
        m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", str(value))
        if m is None or m.group(2).lower() not in _UNITS:
            msg = f"memory size {value!r} is not understood; use bytes (int) or e.g. '512MB', '1GB', '2GiB'"
            raise ValueError(msg)
        n = int(float(m.group(1)) * _UNITS[m.group(2).lower()])
    if n <= 0:
        msg = f"memory size must be positive, got {value!r}"
        raise ValueError(msg)
    return n


def row_bytes(
    *,
    nnz_per_row: float,
    value_itemsize: int,
    index_itemsize: int,
    dense_vars: int | None,
    n_strings: int,
    n_cols: int,
    extra: float = 0.0,
) -> float:
    """Estimated raw bytes of one row in a bucket (values, indices, row length, obs, and ``extra`` for layers/obsm)."""
    x = dense_vars * value_itemsize if dense_vars is not None else nnz_per_row * (value_itemsize + index_itemsize) + 8
    return x + extra + 8 * (n_cols + 2) + _STRING_ROW_BYTES * (n_strings + 1)


def shard_sizes(n_obs: int, rows_per_shard: int) -> list[int]:
    """Split ``n_obs`` rows into near-equal shards of at most ``rows_per_shard`` rows."""
    k = max(1, math.ceil(n_obs / max(1, rows_per_shard)))
    base, extra = divmod(n_obs, k)
    return [base + (1 if i < extra else 0) for i in range(k)]


_M_MMAP_THRESHOLD = -3
_THRESHOLD = 128 * 1024


@functools.cache
def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
    except OSError:
        return None
    if not hasattr(libc, "malloc_trim") or not hasattr(libc, "mallopt"):
        return None
    return libc


@functools.cache
def pin_mmap_threshold() -> bool:
    """Fix glibc's mmap threshold at 128 KiB (once per process); return whether it applied."""
    libc = _libc()
    return bool(libc is not None and libc.mallopt(_M_MMAP_THRESHOLD, _THRESHOLD))


def trim() -> None:
    """Return free heap memory to the system (glibc ``malloc_trim``)."""
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)


class Buffers:
    """Arrays whose memory is reused from one call to the next, by key (one bucket or source block after another).

    Writing into fresh pages costs far more CPU than the copy itself on some machines (page faults: a
    ~400 MB gather costs 0.27 s into fresh memory, 0.04 s into touched pages), and the writer's arrays
    go back to the system when freed (:func:`pin_mmap_threshold`). An array handed out under a key is
    valid until the next :meth:`array` call with that key. A key's buffer has the dtype asked for (scipy
    copies a view of a buffer over twice its size when it wraps it, ``_prune_array``) and is ``_HEADROOM``
    larger than asked, so a slightly larger next block still fits (untouched pages are not resident). Not
    thread-safe: one per thread.
    """

    _HEADROOM = 1.0625

    def __init__(self) -> None:
        self._bufs: dict[str, np.ndarray] = {}

    def array(self, key: str, n: int, dtype: np.dtype | type) -> np.ndarray:
        """Return an uninitialised 1-D array of ``n`` items of ``dtype`` in ``key``'s buffer (grown when too small)."""
        dtype, n = np.dtype(dtype), int(n)
        buf = self._bufs.get(key)
        if buf is None or buf.dtype != dtype or buf.shape[0] < n:
            self._bufs.pop(key, None)
            del buf  # the old buffer is returned before the new one is mapped
            buf = self._bufs[key] = np.empty(int(n * self._HEADROOM) + 1, dtype=dtype)
        return buf[:n]

    def clear(self) -> None:
        """Drop every buffer."""
        self._bufs.clear()


def size_passes(
    sources: list[Source],
    genes: GenePlan,
    columns: list[ColumnPlan],
    spec: StorageSpec,
    matrices: list[MatrixPlan],
    *,
    budget: int,
    n_obs_per_shard: int | None,
    max_shard_rows: int | None,
) -> tuple[list[int], list[int]]:
    """Return the rows of each shard (= bucket) and the rows per scatter block of each source.

    Raises
    ------
    ValueError
        If ``n_obs_per_shard`` is below 1.
    """
    n_total = sum(s.n_obs for s in sources)
    nnz_row = sum(s.nnz for s in sources) / n_total
    n_str = sum(c.kind == "string" for c in columns)
    dense_vars = genes.n_vars if spec.x_format == "dense" else None
    rb = row_bytes(
        nnz_per_row=nnz_row,
        value_itemsize=np.dtype(spec.data_dtype).itemsize,
        index_itemsize=np.dtype(spec.indices_dtype).itemsize,
        dense_vars=dense_vars,
        n_strings=n_str,
        n_cols=len(columns),
        extra=sum(_matrix_row_bytes(m, sources) for m in matrices),
    )
    if n_obs_per_shard is not None:
        if n_obs_per_shard < 1:
            msg = f"n_obs_per_shard must be >= 1, not {n_obs_per_shard}"
            raise ValueError(msg)
        rows = int(n_obs_per_shard)
    else:
        rows = max(1, int(budget / GATHER_FACTOR / rb))
        if max_shard_rows is not None:
            rows = min(rows, max_shard_rows)
    block_rows = []
    for s in sources:
        # a source block is read in the source's dtypes, then reindexed (int32 indices) and permuted
        src_rb = row_bytes(
            nnz_per_row=max(s.nnz / s.n_obs, nnz_row),
            value_itemsize=max(s.x_dtype.itemsize, np.dtype(spec.data_dtype).itemsize),
            index_itemsize=8,
            dense_vars=max(s.n_vars, genes.n_vars) if (s.x_format == "dense" or dense_vars) else None,
            n_strings=n_str,
            n_cols=len(columns),
            extra=sum(_matrix_row_bytes(m, [s], source=True) for m in matrices),
        )
        block_rows.append(max(1, int(budget / SCATTER_FACTOR / src_rb)))
    return shard_sizes(n_total, rows), block_rows


def _matrix_row_bytes(m: MatrixPlan, sources: list[Source], *, source: bool = False) -> float:
    """Raw bytes per row of one layer or obsm array (in a scatter block with ``source``: as read, int64 indices)."""
    storage = m.spec.storage
    infos = [s.matrix_info(m.element) for s in sources]
    itemsize = max(np.dtype(storage.data_dtype).itemsize, *(np.dtype(i.dtype).itemsize for i in infos))
    if storage.x_format == "dense":
        cols = max(m.spec.n_cols, *(i.shape[1] for i in infos)) if source else m.spec.n_cols
        return float(cols * itemsize)
    nnz_row = sum(i.nnz for i in infos) / sum(s.n_obs for s in sources)
    index = 8 if source else np.dtype(storage.indices_dtype).itemsize
    return nnz_row * (itemsize + index) + 8
