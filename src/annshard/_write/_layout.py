"""The shared state of one write: what the scatter pass produces and the gather pass consumes.

Also the memory arithmetic. The budget is split as follows, from measurements
of the peak working set of each pass (see ``tests/write/test_memory.py``):

- scatter holds one row block of a source plus its reindexed and permuted
  copies, about ``SCATTER_FACTOR`` times the block's raw size;
- gather holds one bucket plus its permuted copy and scipy's ``int32`` index
  copy and the compressed output, about ``GATHER_FACTOR`` times the bucket's
  raw size.

So a shard holds ``budget / GATHER_FACTOR`` bytes of raw rows, and a scatter
block ``budget / SCATTER_FACTOR``. The number of shards (= buckets) follows.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from pathlib import Path

    from annshard._store._manifest import StorageSpec

    from ._counts import ValueStats
    from ._matrices import MatrixPlan
    from ._plan import ColumnPlan, GenePlan
    from ._sources import Source

__all__ = ["GATHER_FACTOR", "SCATTER_FACTOR", "Layout", "parse_bytes", "row_bytes", "shard_sizes"]

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


@dataclass
class Layout:
    """Everything the scatter and gather passes share.

    Attributes
    ----------
    sources
        The (new) sources, in order.
    genes
        Their joint gene space.
    columns
        The kept obs columns.
    spec
        How ``X`` is stored.
    shard_rows
        Rows of each bucket / new shard.
    block_rows
        Rows per scatter block, per source.
    seed
        Shuffle seed.
    generation
        0 for a first write, ``k`` for the ``k``-th append.
    source_codes
        Per source, its code in the ``source`` categorical.
    source_names
        All categories of ``source`` (earlier generations' too).
    workdir
        Where the bucket files live.
    value_stats
        Per source, whether its values are whole numbers and their range (filled by the scatter
        pass when ``spec.counts_dtype`` is set).
    matrices
        The layers and obsm arrays moved with the rows (same permutation as ``X``).
    """

    sources: list[Source]
    genes: GenePlan
    columns: list[ColumnPlan]
    spec: StorageSpec
    shard_rows: list[int]
    block_rows: list[int]
    seed: int
    generation: int
    source_codes: list[int]
    source_names: list[str]
    workdir: Path
    value_stats: list[ValueStats] = field(default_factory=list)
    matrices: list[MatrixPlan] = field(default_factory=list)

    def __post_init__(self) -> None:
        from ._counts import ValueStats

        if not self.value_stats:
            self.value_stats = [ValueStats() for _ in self.sources]

    @property
    def n_buckets(self) -> int:
        """Buckets (= new shards)."""
        return len(self.shard_rows)

    @property
    def value_dtype(self) -> np.dtype:
        """Dtype of stored values."""
        return np.dtype(self.spec.data_dtype)

    @property
    def index_dtype(self) -> np.dtype:
        """Dtype of stored gene indices."""
        return np.dtype(self.spec.indices_dtype)

    def file(self, k: int, key: str) -> Path:
        """Bucket ``k``'s file for ``key``."""
        return self.workdir / f"{k:05d}.{key}"

    def rng(self, *stream: int) -> np.random.Generator:
        """Return an independent generator for ``stream`` under this write's seed and generation."""
        return np.random.default_rng([self.seed, self.generation, *stream])

    def describe(self) -> dict[str, Any]:
        """Summarise the layout for logs."""
        return {"shards": self.n_buckets, "rows": sum(self.shard_rows), "block_rows": self.block_rows}
