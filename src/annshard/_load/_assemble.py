"""An epoch as a row stream: blocks of chunks, shuffled in memory, cut into batches.

The sampler's plan (chunks in order) defines the epoch's *virtual row stream*:
the rows of the chunks one after the other. This stream is split between ranks
and workers (:class:`annshard.World`); a part's chunks (the ones at the
edges trimmed) are grouped into preload blocks of ``preload_nchunks`` chunks.
Each block's rows are permuted with a generator seeded by
``(seed, epoch, part, block)``; the part's output stream is the concatenation
of the permuted blocks, and batches are cut from it, so a batch may span
blocks and no divisibility between batch, chunk and preload sizes is needed.

Blocks are never permuted as a whole: :func:`cut_batches` gathers each
batch's rows, in the shuffled order, straight from the read-order blocks into
the batch's own arrays, so every value is copied once after decoding.

Everything here depends on chunk lengths only, never on the data, which makes
resuming cheap: the block holding the resume position is found with one
``searchsorted``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from annshard._csr import row_gather
from annshard._kernel import fused_kernel, note_gathered
from annshard.samplers import epoch_rng

from ._fetch import Block, read_order

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator
    from concurrent.futures import Executor

    from numpy.typing import NDArray

    from ._pool import BufferPool
    from ._world import World

__all__ = ["EpochStream", "batch_segments", "block_order", "cut_batches", "gather_rows", "gather_threads"]

_MIN_PIECE_ROWS = 64  # below this a piece's copy is too short to be worth handing to another thread


def gather_threads(read_threads: int) -> int:
    """Threads gathering batches for ``read_threads`` decode threads: 2 for every 5 (at least 1).

    Measured per 1,000 cells at ``(32, 256)``: decoding ~15 ms of CPU, gathering
    ~5.7 ms (``docs/performance.md``), so ~0.4 gather threads keep up with each
    decode thread.
    """
    return max(1, -(-2 * read_threads // 5))


@dataclass(frozen=True)
class EpochStream:
    """One process's part of an epoch, as chunks grouped into blocks.

    Attributes
    ----------
    chunks
        The part's chunks in plan order (``(n, 3)``: shard, start, stop).
    block_chunks
        Chunk index where each block starts, plus ``len(chunks)`` at the end.
    block_rows
        Row position (in this part) where each block starts, plus the part's row count at the end.
    """

    chunks: NDArray[np.int64]
    block_chunks: NDArray[np.int64]
    block_rows: NDArray[np.int64]

    @classmethod
    def build(cls, plan: NDArray[np.int64], world: World, preload_nchunks: int) -> EpochStream:
        """Split ``plan``'s row stream for ``world`` and group the part's chunks into blocks."""
        plan = np.asarray(plan, dtype=np.int64).reshape(-1, 3)
        lens = plan[:, 2] - plan[:, 1]
        ends = np.cumsum(lens)
        lo, hi = world.span(int(ends[-1]) if ends.shape[0] else 0)
        if hi <= lo:
            chunks = np.zeros((0, 3), dtype=np.int64)
        else:
            first = int(np.searchsorted(ends, lo, side="right"))
            last = int(np.searchsorted(ends, hi, side="left"))
            chunks = plan[first : last + 1].copy()
            begins = ends - lens
            chunks[0, 1] += lo - begins[first]
            chunks[-1, 2] -= ends[last] - hi
        n = chunks.shape[0]
        block_chunks = np.append(np.arange(0, n, preload_nchunks, dtype=np.int64), n)
        cum = np.concatenate([[0], np.cumsum(chunks[:, 2] - chunks[:, 1])]).astype(np.int64)
        return cls(chunks=chunks, block_chunks=block_chunks, block_rows=cum[block_chunks])

    @property
    def n_blocks(self) -> int:
        """Number of blocks."""
        return int(self.block_chunks.shape[0] - 1)

    @property
    def n_rows(self) -> int:
        """Rows in this part."""
        return int(self.block_rows[-1])

    def block(self, b: int) -> NDArray[np.int64]:
        """Return the chunks of block ``b``, in plan order."""
        return self.chunks[self.block_chunks[b] : self.block_chunks[b + 1]]

    def locate(self, position: int) -> tuple[int, int]:
        """Find the block holding row ``position`` of this part, and the rows of it that come before."""
        if position >= self.n_rows:
            return self.n_blocks, 0
        b = int(np.searchsorted(self.block_rows, position, side="right")) - 1
        return b, int(position - self.block_rows[b])


def block_order(
    chunks: NDArray[np.int64], *, shuffle: bool, seed: int, epoch: int, part: int, block: int
) -> NDArray[np.int64]:
    """Row order of a block: positions in *read order* (:func:`~annshard._load._fetch.read_order`) of its output rows.

    The output is defined on the plan order (the chunks' rows one after the
    other, as the sampler listed them), permuted when ``shuffle``; this does
    not depend on how the reader orders its reads.
    """
    lens = chunks[:, 2] - chunks[:, 1]
    n = int(lens.sum())
    read = read_order(chunks)
    read_lens = lens[read]
    read_start = np.empty_like(lens)
    read_start[read] = np.cumsum(read_lens) - read_lens
    # plan-order row j of chunk i sits at read position read_start[i] + j
    plan_pos = np.repeat(read_start - (np.cumsum(lens) - lens), lens) + np.arange(n, dtype=np.int64)
    if not shuffle:
        return plan_pos
    return plan_pos[epoch_rng(seed, epoch, 2, part, block).permutation(n)]


def gather_rows(
    segments: list[tuple[Block, NDArray[np.int64]]],
    n_vars: int,
    pool: BufferPool | None = None,
    workers: tuple[Executor, int] | None = None,
) -> Block:
    """One batch: rows ``rows`` of each ``(block, rows)`` segment, one after the other, in new arrays.

    Each stored value is copied once, outside the GIL, and the gene indices
    are widened to what every consumer takes (``int32``, or ``int64`` past
    2**31): in one pass by the fused numba kernel once it is compiled
    (:mod:`annshard._kernel`), else by scipy's C++ row gather in the stored
    dtypes and a numpy pass while the batch is still warm in cache. A batch
    spans at most a few blocks.
    The value and index arrays come from ``pool`` (recycled buffers) when given.
    The blocks' layers and obsm arrays (:attr:`Block.extras`) are gathered with the
    same rows in the same order. With ``workers`` (an executor and its thread
    count) the CSR copies are split into that many pieces of about equal rows,
    the calling thread copying one; every value lands where it would without.
    """
    out = _gather_one(segments, n_vars, pool, workers=workers)
    for element in segments[0][0].extras:
        part = _gather_one(
            [(b.extras[element], r) for b, r in segments], n_vars, pool, index=out.index, workers=workers
        )
        out.extras[element] = part
    return out


def _gather_one(
    segments: list[tuple[Block, NDArray[np.int64]]],
    n_vars: int,
    pool: BufferPool | None,
    *,
    index: NDArray[np.int64] | None = None,
    workers: tuple[Executor, int] | None = None,
) -> Block:
    if index is None:
        index = np.concatenate([b.index[r] for b, r in segments])
    first = segments[0][0]
    if first.indptr is None:
        data = np.concatenate([np.take(b.data, r, axis=0) for b, r in segments])
        return Block(index=index, indptr=None, data=data, indices=None)
    lens = np.concatenate([np.diff(b.indptr)[r] for b, r in segments])
    nnz = int(lens.sum())
    itype = np.dtype(np.int32 if nnz < 2**31 and n_vars < 2**31 else np.int64)
    out_ptr = np.zeros(lens.shape[0] + 1, dtype=itype)
    np.cumsum(lens, out=out_ptr[1:])
    empty = np.empty if pool is None else pool.empty
    vtype = first.data.dtype if first.dtype is None else first.dtype  # Block.dtype: raw counts as stored
    out_data = empty(nnz, dtype=vtype)
    out_idx = empty(nnz, dtype=itype)
    # each segment: the fused kernel when it is compiled for the block's dtypes; else scipy's copy in the stored
    # dtypes, then the gene indices (and narrow stored counts) widened
    kernels: dict[int, Callable[..., int] | None] = {}
    for b, _ in segments:
        if id(b) not in kernels:
            kernels[id(b)] = fused_kernel(b.indices.dtype, b.data.dtype, itype, vtype)
    slow = sum(int(r.shape[0]) for b, r in segments if kernels[id(b)] is None)
    if slow:
        note_gathered(nnz * slow // max(1, lens.shape[0]))
    stored = out_idx
    if any(kernels[id(b)] is None and b.indices.dtype != itype for b, _ in segments):
        stored = empty(nnz, dtype=first.indices.dtype)
    n_rows = int(lens.shape[0])
    pieces = 1 if workers is None else max(1, min(workers[1], n_rows // _MIN_PIECE_ROWS))
    step = -(-n_rows // pieces)
    jobs: list[tuple[Block, NDArray[np.int64], int, int]] = []
    row = 0
    for b, r in segments:
        # a segment's rows in pieces ending on multiples of `step` batch rows (one piece per segment without workers)
        pos, n = 0, int(r.shape[0])
        while pos < n:
            end = n if pieces == 1 else min(n, (row + pos) // step * step + step - row)
            jobs.append((b, r[pos:end], int(out_ptr[row + pos]), int(out_ptr[row + end])))
            pos = end
        row += n

    if pieces == 1:
        for job in jobs:
            _copy_piece(job, stored, out_idx, out_data, kernels[id(job[0])])
    else:
        done = [workers[0].submit(_copy_piece, job, stored, out_idx, out_data, kernels[id(job[0])]) for job in jobs[1:]]
        _copy_piece(jobs[0], stored, out_idx, out_data, kernels[id(jobs[0][0])])
        for f in done:
            f.result()
    del stored  # back to the pool for the next batch (when widened)
    return Block(index=index, indptr=out_ptr, data=out_data, indices=out_idx)


def _copy_piece(
    job: tuple[Block, NDArray[np.int64], int, int],
    stored: np.ndarray,
    out_idx: np.ndarray,
    out_data: np.ndarray,
    fused: Callable[..., int] | None,
) -> None:
    """Copy one piece of a batch: rows ``r`` of block ``b`` into values ``e0:e1`` (widening what is narrower).

    With ``fused`` (:func:`~annshard._kernel.fused_kernel`) in one pass, reading
    the stored dtypes and writing the batch's; else scipy's copy into ``stored``
    (the gene indices) and ``out_data`` (the values; a temporary when the block holds
    them narrower), then widened into ``out_idx`` / ``out_data`` while the piece is still warm in cache.
    """
    b, r, e0, e1 = job
    if fused is not None:
        rows = np.ascontiguousarray(r, dtype=np.int64)
        ptr = np.ascontiguousarray(b.indptr, dtype=np.int64)
        if fused(rows, ptr, b.indices, b.data, out_idx[e0:e1], out_data[e0:e1]) != e1 - e0:
            msg = f"batch gather: rows of a block do not fill values {e0}:{e1} of the batch (an annshard bug; set ANNSHARD_GATHER=scipy and report it)"
            raise RuntimeError(msg)
        return
    # copy in the stored dtypes (into the batch's arrays where they match), then widen what does not
    idx, vals = out_idx[e0:e1], out_data[e0:e1]
    if b.indices.dtype != idx.dtype:
        idx = stored[e0:e1] if b.indices.dtype == stored.dtype else np.empty(e1 - e0, dtype=b.indices.dtype)
    if b.data.dtype != vals.dtype:
        vals = np.empty(e1 - e0, dtype=b.data.dtype)
    row_gather(r, b.indptr, b.indices, b.data, idx, vals)
    if idx.dtype != out_idx.dtype:
        np.copyto(out_idx[e0:e1], idx, casting="unsafe")
    if vals.dtype != out_data.dtype:
        np.copyto(out_data[e0:e1], vals, casting="unsafe")


def cut_batches(
    blocks: Iterable[tuple[Block, NDArray[np.int64]]],
    batch_size: int,
    *,
    n_vars: int,
    drop_last: bool,
    pool: BufferPool | None = None,
    workers: tuple[Executor, int] | None = None,
) -> Iterator[Block]:
    """Cut the stream of ``(block, order)`` into batches of ``batch_size`` rows.

    ``order`` lists the block's rows (positions in read order) in stream order.
    A batch takes rows from consecutive blocks when it spans them, so no
    divisibility rule between batch, chunk and preload sizes is needed; the
    final partial batch is dropped when ``drop_last``. ``workers`` splits each
    batch's copies between threads (:func:`gather_rows`).
    """
    for segments in batch_segments(blocks, batch_size, drop_last=drop_last):
        yield gather_rows(segments, n_vars, pool, workers)


def batch_segments[B](
    blocks: Iterable[tuple[B, Any]], batch_size: int, *, drop_last: bool
) -> Iterator[list[tuple[B, Any]]]:
    """Group the stream of ``(block, order)`` into batches: each a list of ``(block, rows)`` segments.

    Knows nothing of the arrays (the host's :func:`cut_batches` and the device
    gather of :mod:`annshard._load._device` share it): ``order`` only needs
    ``shape[0]`` and slicing.
    """
    segments: list[tuple[B, Any]] = []
    need = batch_size
    for block, order in blocks:
        pos, n = 0, int(order.shape[0])
        while pos < n:
            take = min(need, n - pos)
            segments.append((block, order[pos : pos + take]))
            pos += take
            need -= take
            if need == 0:
                yield segments
                segments, need = [], batch_size
    if segments and not drop_last:
        yield segments
