"""Pass 1 of the external shuffle: scatter every row into one of K buckets.

Each source is read sequentially in row blocks. A block is reindexed into the
joint gene space (one ``take`` through a lookup array), its rows are sorted by
their bucket, and each bucket's slice is appended to that bucket's raw,
uncompressed files (one file per array: values, gene indices, row lengths,
each obs column). Nothing is held beyond one block.

Bucket assignment is exactly balanced, and exactly as random as a uniform
permutation of all rows cut into K shards: bucket ``k`` has a fixed capacity
(its shard's size); each source draws how many of its rows go to each bucket
from a multivariate hypergeometric over the remaining capacities, and each
block draws its share of the source's counts the same way, then shuffles the
labels. The gather pass then permutes each bucket uniformly, so the final
order is a uniform random permutation of all rows, decided by the seed.

The pass reads the (frozen) :class:`~._layout.Layout` and returns what it
learned: per source, whether the values of ``X`` and of each layer are whole
numbers and their range (:class:`Scattered`), from which the storage is settled.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ._buckets import append, append_rows, append_strings, encode_strings
from ._compact import compact_block, eligible
from ._counts import ValueStats, check_exact
from ._gather import CSRParts, take_rows
from ._memory import Buffers, trim

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from annshard._store._manifest import StorageSpec

    from ._layout import Layout
    from ._matrices import MatrixPlan
    from ._plan import ColumnPlan
    from ._sources import Source

__all__ = [
    "SCATTER_THREADS",
    "ScatterTask",
    "Scattered",
    "TaskStats",
    "encode_strings",
    "merge_stats",
    "part_dir",
    "plan_scatter",
    "reindex_block",
    "scatter",
    "scatter_task",
    "scatter_threads",
]


@dataclass(frozen=True)
class Scattered:
    """What the scatter pass saw of the values: the inputs of the counts decisions.

    Attributes
    ----------
    x
        Per source, the statistics of ``X``'s values (gathered only when ``X``'s planned storage has a
        ``counts_dtype`` and ``X`` is CSR; otherwise empty statistics).
    matrices
        Per layer or obsm array (in the layout's order), per source, the statistics of its values.
    """

    x: tuple[ValueStats, ...]
    matrices: tuple[tuple[ValueStats, ...], ...]


def reindex_block(
    block: sp.spmatrix | np.ndarray, layout: Layout, i: int, *, spec: StorageSpec | None = None
) -> sp.csr_matrix | np.ndarray:
    """Move a block of source ``i`` into the joint gene space and the stored value dtype (of ``X``, or of ``spec``)."""
    spec = layout.spec if spec is None else spec
    genes = layout.genes
    lut, n_vars = genes.luts[i], genes.n_vars
    vdt = np.dtype(spec.data_dtype)
    identity = not genes.dropping[i] and genes.monotone[i] and lut.shape[0] == n_vars
    if spec.x_format == "dense":
        dense = block.toarray() if sp.issparse(block) else np.asarray(block)
        if identity:
            return dense.astype(vdt, copy=False)
        out = np.zeros((dense.shape[0], n_vars), dtype=vdt)
        keep = lut >= 0
        out[:, lut[keep]] = dense[:, keep]
        return out
    csr = block.tocsr() if sp.issparse(block) else sp.csr_matrix(block)
    if identity:
        return sp.csr_matrix((csr.data.astype(vdt, copy=False), csr.indices, csr.indptr), shape=csr.shape)
    idx = lut[csr.indices]
    data, indptr = csr.data, csr.indptr.astype(np.int64, copy=False)
    if genes.dropping[i]:
        keep = idx >= 0
        idx, data = idx[keep], data[keep]
        kept = np.concatenate([[0], np.cumsum(keep, dtype=np.int64)])
        indptr = kept[indptr - indptr[0]]
    out = sp.csr_matrix((data.astype(vdt, copy=False), idx.astype(np.int32), indptr), shape=(csr.shape[0], n_vars))
    if not genes.monotone[i]:
        out.has_sorted_indices = False
        out.sort_indices()
    return out


class _ColumnReader:
    """Reads one planned obs column of one source as stored values (codes, numbers or strings)."""

    def __init__(self, col: ColumnPlan, src: Source, i: int) -> None:
        self.col, self.src, self.i = col, src, i
        self.schema = src.obs_schema.get(col.name) if col.present[i] else None
        self.index = pd.Index(col.categories, dtype=object) if col.kind == "categorical" else None
        if self.schema is not None and self.schema.kind == "categorical":
            self.src_cats = np.array([*self.schema.categories, None], dtype=object)

    def read(self, start: int, stop: int) -> np.ndarray:
        col, n = self.col, stop - start
        if self.schema is None:
            if col.kind == "categorical":
                return np.full(n, -1, dtype=np.int32)
            if col.kind == "string":
                return np.full(n, None, dtype=object)
            return np.full(n, np.nan, dtype=col.dtype)
        raw = self.src.read_obs(col.name, start, stop)
        if self.schema.kind == "categorical":
            if col.kind == "categorical":
                return self.col.code_luts[self.i][raw]  # type: ignore[index]
            raw = self.src_cats[raw]  # codes -> labels (-1 -> None)
        if col.coerce[self.i]:
            raw = np.array([None if _isna(v) else str(v) for v in raw], dtype=object)
        if col.kind == "categorical":
            return self.index.get_indexer(pd.Index(raw, dtype=object)).astype(np.int32)  # type: ignore[union-attr]
        if col.kind == "string":
            return np.asarray(raw, dtype=object)
        return np.asarray(raw).astype(col.dtype, copy=False)


def _isna(v: Any) -> bool:
    return v is None or (isinstance(v, float) and np.isnan(v))


def _draw(rng: np.random.Generator, colors: np.ndarray, n: int) -> np.ndarray:
    if n == int(colors.sum()):
        return colors.copy()
    return rng.multivariate_hypergeometric(colors, n, method="marginals").astype(np.int64)


@dataclass(frozen=True)
class ScatterTask:
    """One scatter task: rows ``start:stop`` (whole planned blocks) of source ``i``, into its own part directory.

    Attributes
    ----------
    i
        The source.
    start, stop
        Its row range (block-aligned).
    first_block
        The planned block ``start`` begins.
    counts
        Rows of each planned block that go to each bucket (``(n_blocks, K)``).
    piece_rows
        Rows read at once (at most a planned block: the task's memory budget).
    """

    i: int
    start: int
    stop: int
    first_block: int
    counts: np.ndarray
    piece_rows: int


def plan_scatter(layout: Layout, *, blocks_per_task: int | None = None, piece_rows: Any = None) -> list[ScatterTask]:
    """Draw, centrally, how many rows of each planned block go to each bucket, and cut the sources into tasks.

    The draws depend only on the layout (seed, generation, shard and block sizes), never on how the
    rows are cut into tasks or read: ``blocks_per_task`` (default: a whole source per task) and
    ``piece_rows`` (per source; default: the planned block) change the engine's work, not the output.
    """
    rng = layout.rng(0)
    capacity = np.asarray(layout.shard_rows, dtype=np.int64)
    tasks = []
    for i, src in enumerate(layout.sources):
        src_counts = _draw(rng, capacity, src.n_obs)
        capacity -= src_counts
        step = layout.block_rows[i]
        starts = list(range(0, src.n_obs, step))
        counts = np.empty((len(starts), len(capacity)), dtype=np.int64)
        for b, start in enumerate(starts):
            counts[b] = _draw(rng, src_counts, min(src.n_obs, start + step) - start)
            src_counts -= counts[b]
        assert not src_counts.any(), "every row of a source is assigned"
        per = len(starts) if blocks_per_task is None else max(1, blocks_per_task)
        piece = step if piece_rows is None else max(1, min(step, int(piece_rows[i])))
        for b0 in range(0, len(starts), per):
            b1 = min(len(starts), b0 + per)
            stop = min(src.n_obs, b1 * step)
            tasks.append(ScatterTask(i, starts[b0], stop, b0, counts[b0:b1], piece))
    return tasks


def part_dir(layout: Layout, task: ScatterTask) -> Path:
    """Return one task's directory of bucket files (parts sort by source, then row: the gather's order)."""
    return layout.workdir / f"s{task.i:05d}-r{task.start:012d}"


def scatter_task(layout: Layout, task: ScatterTask, progress: Callable[[int], None] | None = None) -> TaskStats:
    """Scatter one task's rows into its part directory; return the source's value statistics it saw.

    A planned block's bucket labels are a shuffle of its counts by a generator seeded from
    ``(seed, generation, 2, source, block)``; its rows are read ``piece_rows`` at a time and each
    bucket's rows are appended in source-row order, so a bucket's rows, concatenated over the parts
    in order, are the same however the rows were cut into tasks and pieces.
    """
    src = layout.sources[task.i]
    src.close()
    part = dataclasses.replace(layout, workdir=part_dir(layout, task))
    if part.workdir.exists():  # a retried task (its worker died): start its part over
        shutil.rmtree(part.workdir)
    part.workdir.mkdir()  # not its parents: a task outliving a failed write must not recreate its staging
    stats = [ValueStats() for _ in range(1 + len(layout.matrices))]
    readers = [_ColumnReader(c, src, task.i) for c in layout.columns]
    step = layout.block_rows[task.i]
    k_all = np.arange(layout.n_buckets, dtype=np.int32)
    buffers = Buffers()  # one piece after another in the same pages
    compact = [eligible(layout.spec), *(eligible(m.spec.storage) for m in layout.matrices)]  # :mod:`._compact`
    for b, counts in enumerate(task.counts):
        b_start = task.start + b * step
        b_stop = min(task.stop, b_start + step)
        labels = np.repeat(k_all, counts)
        layout.rng(2, task.i, task.first_block + b).shuffle(labels)
        for p0 in range(b_start, b_stop, task.piece_rows):
            p1 = min(b_stop, p0 + task.piece_rows)
            lab = labels[p0 - b_start : p1 - b_start]
            piece_counts = np.bincount(lab, minlength=layout.n_buckets).astype(np.int64)
            _scatter_block(part, task.i, src, readers, p0, p1, lab, piece_counts, stats, buffers, compact)
            trim()
            if progress is not None:
                progress(p1 - p0)
    src.close()  # drop the file's handle and its caches before the next source
    trim()
    return TaskStats(task.i, stats[0], tuple(stats[1:]))


@dataclass(frozen=True)
class TaskStats:
    """What one scatter task saw of source ``i``'s values: ``X``'s statistics, then each matrix's."""

    i: int
    x: ValueStats
    matrices: tuple[ValueStats, ...]


def merge_stats(layout: Layout, results: list[TaskStats]) -> Scattered:
    """Combine the tasks' statistics per source (in any order: the merge is commutative)."""
    x = [ValueStats() for _ in layout.sources]
    m = [[ValueStats() for _ in layout.sources] for _ in layout.matrices]
    for r in results:
        x[r.i].merge(r.x)
        for j, st in enumerate(r.matrices):
            m[j][r.i].merge(st)
    return Scattered(tuple(x), tuple(tuple(row) for row in m))


SCATTER_THREADS = 4
"""At most this many sources are scattered at once (threads of this process), each in pieces of 1/n of a block."""


def scatter_threads(layout: Layout) -> int:
    """How many sources :func:`scatter` reads at once: one per core (at most :data:`SCATTER_THREADS`).

    One when a source's ``X``, layer or obsm array is CSC (read whole, in memory: one at a time).
    """
    n = min(SCATTER_THREADS, len(layout.sources), os.cpu_count() or 1)
    elements = [plan.element for plan in layout.matrices]
    for src in layout.sources if n > 1 else ():
        if src.x_format == "csc" or any(src.matrix_info(e).format == "csc" for e in elements):
            return 1
    return max(1, n)


def scatter(layout: Layout, *, progress: Callable[[int], None] | None = None, threads: int | None = None) -> Scattered:
    """Scatter all sources' rows into the layout's bucket files, one task per source, in this process.

    With ``n`` cores, ``n`` sources are scattered at once in threads (a source's tasks one after the other) (most of the work releases the GIL:
    HDF5 reads, numpy casts, the row gather, file writes), each reading ``1/n`` of a planned block at a
    time, so the pass holds no more than one block as before. The pieces do not change the output
    (:func:`plan_scatter`).
    """
    for src in layout.sources:
        src.close()
    n = scatter_threads(layout) if threads is None else max(1, threads)
    if n == 1:
        return merge_stats(layout, [scatter_task(layout, t, progress) for t in plan_scatter(layout)])
    tasks = plan_scatter(layout, piece_rows=[max(1, b // n) for b in layout.block_rows])
    lock = threading.Lock()

    def locked(rows: int) -> None:
        with lock:
            progress(rows)  # type: ignore[misc]

    report = None if progress is None else locked

    def run_source(i: int) -> list[TaskStats]:  # a source's tasks in order, on one thread (it has one file handle)
        return [scatter_task(layout, t, report) for t in tasks if t.i == i]

    with ThreadPoolExecutor(n, thread_name_prefix="annshard-scatter") as pool:
        per_source = list(pool.map(run_source, sorted({t.i for t in tasks})))
    return merge_stats(layout, [r for results in per_source for r in results])


def _scatter_block(
    layout: Layout,
    i: int,
    src: Source,
    readers: list[_ColumnReader],
    start: int,
    stop: int,
    labels: np.ndarray,
    counts: np.ndarray,
    stats: list[ValueStats],
    buffers: Buffers | None = None,
    compact: list[bool] | None = None,
) -> None:
    """Scatter rows ``start:stop`` of source ``i``; ``stats``, ``compact`` (:mod:`._compact`): ``X``, then matrices."""
    compact = [False] * len(stats) if compact is None else compact
    order = np.argsort(labels, kind="stable")
    bounds = np.concatenate([[0], np.cumsum(counts)])
    block = src.read_x(start, stop)
    if block.dtype == np.float16:  # stored as float32 (exact): scipy.sparse has no float16
        block = block.astype(np.float32)
    if not np.can_cast(block.dtype, layout.value_dtype, "safe"):  # before the cast: refuse values it would change
        check_exact(block.data if sp.issparse(block) else block.ravel(), layout.value_dtype, src.label, src.element)
    X = reindex_block(block, layout, i)
    del block
    counted = sp.issparse(X) and layout.spec.counts_dtype is not None
    X = _permute(X, order, layout.index_dtype, buffers)  # values in their dtype: scipy's fast row copy
    if counted:
        X = compact_block(X, stats[0], compact, 0, buffers, "x")
    # layers and obsm arrays: the same rows, in the same order, into their own bucket files
    extras = [
        _read_matrix(layout, plan, src, i, start, stop, order, st, buffers, f"m{j}", compact, j + 1)
        for j, (plan, st) in enumerate(zip(layout.matrices, stats[1:], strict=True))
    ]
    rows = (np.arange(start, stop, dtype=np.int64))[order]
    names = src.read_obs_names(start, stop)[order]
    obs = [r.read(start, stop)[order] for r in readers]
    code = np.int32(layout.source_codes[i])
    for k in np.flatnonzero(counts):
        r0, r1 = int(bounds[k]), int(bounds[k + 1])
        append_rows(layout, k, "", X, r0, r1, compact=compact[0])
        for j, M in enumerate(extras):
            append_rows(layout, k, f"m{j}.", M, r0, r1, compact=compact[j + 1])
        append(layout.file(k, "src"), np.full(r1 - r0, code, dtype=np.int32))
        append(layout.file(k, "row"), rows[r0:r1])
        append_strings(layout, k, "names", names[r0:r1])
        for j, (col, vals) in enumerate(zip(layout.columns, obs, strict=True)):
            if col.kind == "string":
                append_strings(layout, k, f"obs{j}", vals[r0:r1])
            else:
                append(layout.file(k, f"obs{j}"), vals[r0:r1])


def _permute(
    X: sp.csr_matrix | np.ndarray,
    order: np.ndarray,
    index_dtype: np.dtype,
    buffers: Buffers | None = None,
    key: str = "x",
) -> CSRParts | np.ndarray:
    """Rows of ``X`` in ``order``: CSR as bare arrays with ``index_dtype`` gene indices (in ``buffers``), or dense."""
    if not sp.issparse(X):
        return X[order]
    if buffers is None or X.indices.dtype == index_dtype:
        indices = X.indices.astype(index_dtype, copy=False)
    else:
        indices = buffers.array(f"{key}.cast", X.indices.shape[0], index_dtype)
        np.copyto(indices, X.indices, casting="unsafe")  # the layout's index dtype holds every gene index
    return take_rows(X.data, indices, X.indptr, order, X.shape[1], buffers=buffers, key=key)


def _read_matrix(
    layout: Layout,
    plan: MatrixPlan,
    src: Source,
    i: int,
    start: int,
    stop: int,
    order: np.ndarray,
    stats: ValueStats,
    buffers: Buffers | None = None,
    key: str = "m",
    compact: list[bool] | None = None,
    j: int = 0,
) -> CSRParts | np.ndarray:
    """Rows ``start:stop`` of one layer or obsm array of source ``i``, stored as planned, in ``order``."""
    storage = plan.spec.storage
    block = src.read_matrix(plan.element, start, stop)
    if block.dtype == np.float16:  # stored as float32 (exact), like X
        block = block.astype(np.float32)
    stored = np.dtype(storage.data_dtype)
    if not np.can_cast(block.dtype, stored, "safe"):  # before the cast: refuse values it would change
        check_exact(block.data if sp.issparse(block) else np.asarray(block).ravel(), stored, src.label, plan.element)
    if plan.is_layer:
        M = reindex_block(block, layout, i, spec=storage)
    else:
        M = block.toarray() if sp.issparse(block) else np.asarray(block)
        M = M.reshape(stop - start, -1).astype(storage.data_dtype, copy=False)
    if storage.counts_dtype is not None and not (sp.issparse(M) and compact is not None):
        stats.update(M.data if sp.issparse(M) else M.ravel())
    P = _permute(M, order, np.dtype(storage.indices_dtype), buffers, key)
    if storage.counts_dtype is not None and isinstance(P, CSRParts) and compact is not None:
        P = compact_block(P, stats, compact, j, buffers, key)
    return P
