"""An epoch as a row stream: blocks of chunks, permuted in memory, cut into batches.

The sampler's plan (chunks in order) defines the epoch's *virtual row stream*:
the rows of the chunks one after the other. This stream is split between ranks
and workers (:class:`annshard._world.World`); a part's chunks (the ones at the
edges trimmed) are grouped into preload blocks of ``preload_nchunks`` chunks.
Each block's rows are permuted with a generator seeded by
``(seed, epoch, part, block)``; the part's output stream is the concatenation
of the permuted blocks, and batches are cut from it, so a batch may span
blocks and no divisibility between batch, chunk and preload sizes is needed.

Everything here depends on chunk lengths only, never on the data, which makes
resuming cheap: the block holding the resume position is found with one
``searchsorted``.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp

from .samplers import epoch_rng

if TYPE_CHECKING:
    from numpy.typing import NDArray

    from ._fetch import Block
    from ._world import World

__all__ = ["EpochStream", "Piece", "block_order", "concat_pieces", "permute_block"]


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
    """Row order of a block: positions in *read order* (chunks sorted by shard, start) of its output rows.

    The output is defined on the plan order (the chunks' rows one after the
    other, as the sampler listed them), permuted when ``shuffle``; this does
    not depend on how the reader orders its reads.
    """
    lens = chunks[:, 2] - chunks[:, 1]
    n = int(lens.sum())
    read = np.lexsort((chunks[:, 1], chunks[:, 0]))
    read_lens = lens[read]
    read_start = np.empty_like(lens)
    read_start[read] = np.cumsum(read_lens) - read_lens
    # plan-order row j of chunk i sits at read position read_start[i] + j
    plan_pos = np.repeat(read_start - (np.cumsum(lens) - lens), lens) + np.arange(n, dtype=np.int64)
    if not shuffle:
        return plan_pos
    return plan_pos[epoch_rng(seed, epoch, 2, part, block).permutation(n)]


def _pool() -> ThreadPoolExecutor:
    global _POOL, _POOL_PID
    if _POOL is None or _POOL_PID != os.getpid():  # a forked child must not reuse its parent's (dead) threads
        _POOL = ThreadPoolExecutor(max_workers=_N_THREADS, thread_name_prefix="annshard-permute")
        _POOL_PID = os.getpid()
    return _POOL


_N_THREADS = max(1, min(4, os.cpu_count() or 1))
_POOL: ThreadPoolExecutor | None = None
_POOL_PID = 0


def _spans(n: int, k: int) -> list[tuple[int, int]]:
    cuts = np.linspace(0, n, k + 1).astype(np.int64)
    return [(int(a), int(b)) for a, b in zip(cuts[:-1], cuts[1:], strict=True) if b > a]


def permute_block(block: Block, order: NDArray[np.int64], n_vars: int) -> Block:
    """``block``'s rows in ``order``; CSR gene indices become ``int32`` (what every consumer takes).

    The work (widening the stored gene indices, then one row gather) is split
    between a few threads; numpy's casts and scipy's row gather release the GIL.
    """
    from ._fetch import Block

    if block.indptr is None:
        return Block(index=block.index[order], indptr=None, data=block.data[order], indices=None)
    nnz = int(block.indptr[-1])
    itype = np.int32 if nnz < 2**31 and n_vars < 2**31 else np.int64
    indptr = block.indptr.astype(itype)
    lens = np.diff(block.indptr)[order]
    out_ptr = np.zeros(order.shape[0] + 1, dtype=np.int64)
    np.cumsum(lens, out=out_ptr[1:])
    wide = np.empty(nnz, dtype=itype)
    out_idx = np.empty(nnz, dtype=itype)
    out_data = np.empty(nnz, dtype=block.data.dtype)
    rows = order.astype(itype)
    k = _N_THREADS if nnz > 1 << 18 else 1

    def widen(span: tuple[int, int]) -> None:
        a, b = span
        np.copyto(wide[a:b], block.indices[a:b], casting="unsafe")

    def gather(span: tuple[int, int]) -> None:
        a, b = span
        e0, e1 = int(out_ptr[a]), int(out_ptr[b])
        _row_gather(rows[a:b], indptr, wide, block.data, out_idx[e0:e1], out_data[e0:e1])

    if k == 1:
        widen((0, nnz))
        gather((0, order.shape[0]))
    else:
        list(_pool().map(widen, _spans(nnz, k)))
        list(_pool().map(gather, _spans(order.shape[0], k)))
    return Block(index=block.index[order], indptr=out_ptr, data=out_data, indices=out_idx)


def _row_gather(
    rows: np.ndarray,
    indptr: np.ndarray,
    indices: np.ndarray,
    data: np.ndarray,
    out_idx: np.ndarray,
    out_data: np.ndarray,
) -> None:
    """Copy CSR rows ``rows`` one after the other into ``out_idx`` / ``out_data``."""
    if _csr_row_index is not None:
        _csr_row_index(rows.shape[0], rows, indptr, indices, data, out_idx, out_data)
        return
    m = sp.csr_matrix((data, indices, indptr), shape=(indptr.shape[0] - 1, int(indices.max(initial=0)) + 1), copy=False)
    sub = m[rows]
    out_idx[:] = sub.indices
    out_data[:] = sub.data


try:  # scipy's C++ row gather (releases the GIL); a private function, so fall back to public indexing
    from scipy.sparse._sparsetools import csr_row_index as _csr_row_index
except ImportError:  # pragma: no cover
    _csr_row_index = None


@dataclass(frozen=True)
class Piece:
    """Consecutive rows ``[start, stop)`` of a permuted block (views, no copies)."""

    block: Block
    start: int
    stop: int

    @property
    def n_rows(self) -> int:
        """Number of rows."""
        return self.stop - self.start


def concat_pieces(pieces: list[Piece]) -> Block:
    """One block made of ``pieces`` (views when there is one piece)."""
    from ._fetch import Block

    parts = []
    for p in pieces:
        b, a, z = p.block, p.start, p.stop
        if b.indptr is None:
            parts.append(Block(index=b.index[a:z], indptr=None, data=b.data[a:z], indices=None))
        else:
            e0, e1 = int(b.indptr[a]), int(b.indptr[z])
            parts.append(
                Block(index=b.index[a:z], indptr=b.indptr[a : z + 1] - e0, data=b.data[e0:e1], indices=b.indices[e0:e1])
            )
    if len(parts) == 1:
        return parts[0]
    index = np.concatenate([p.index for p in parts])
    if parts[0].indptr is None:
        return Block(index=index, indptr=None, data=np.concatenate([p.data for p in parts]), indices=None)
    shifts = np.cumsum([0] + [int(p.indptr[-1]) for p in parts[:-1]])
    indptr = np.concatenate([parts[0].indptr[:1]] + [p.indptr[1:] + s for p, s in zip(parts, shifts, strict=True)])
    return Block(
        index=index,
        indptr=indptr,
        data=np.concatenate([p.data for p in parts]),
        indices=np.concatenate([p.indices for p in parts]),
    )
