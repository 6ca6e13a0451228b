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


def permute_block(block: Block, order: NDArray[np.int64], n_vars: int) -> Block:
    """``block``'s rows in ``order``; CSR gene indices become ``int32`` (what every consumer takes)."""
    from ._fetch import Block

    if block.indptr is None:
        return Block(index=block.index[order], indptr=None, data=block.data[order], indices=None)
    indptr = block.indptr.astype(np.int32) if block.indptr[-1] < 2**31 else block.indptr
    m = sp.csr_matrix((block.data, block.indices.astype(np.int32), indptr), shape=(block.n_rows, n_vars), copy=False)
    out = m[order]
    return Block(
        index=block.index[order], indptr=out.indptr.astype(np.int64, copy=False), data=out.data, indices=out.indices
    )


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
