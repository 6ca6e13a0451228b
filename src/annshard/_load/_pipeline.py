"""One epoch's pipeline: two background stages between the shards and the consumer.

Stage A (thread ``annshard-read``) reads and decodes the next preload block
in read order (:class:`~annshard._load._fetch.BlockReader`, zarrs outside the
GIL) and draws its row order (:func:`~annshard._load._assemble.block_order`).
Stage B (thread ``annshard-gather``) cuts batches from the stream of blocks,
gathering each batch's rows straight from the read-order blocks
(:func:`~annshard._load._assemble.cut_batches`, one copy per value), split
between itself and ``gather_threads - 1`` helper threads (``annshard-gather_<i>``)
that copy pieces of the same batch (scipy's row gather releases the GIL). Each
stage is a :class:`~annshard._load._prefetch.Prefetcher` with a bounded
number of results alive, so memory stays at about four blocks (being read,
waiting, being cut, batches gathered ahead) plus the batches the consumer
holds. Block and batch arrays come from two per-epoch
:class:`~annshard._load._pool.BufferPool` s.

Epochs that follow each other do not wait for a fill: once stage A has read an
epoch's last block it starts reading the *next* epoch's first block (thread
``annshard-read-next``; its plan is deterministic from seed and epoch), which
:class:`ProcessReader` keeps as its :class:`Head`. The next iteration takes it
only when it asks for that very block (same epoch, part, seed, shuffle, block
number and chunks), so its batches are exactly the ones it would have read;
anything else (another epoch, ``set_epoch``, a resume past it, another world)
throws it away. It costs at most one block more at an epoch's end.
"""

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING, Any

import numpy as np

from ._assemble import block_order, cut_batches
from ._assemble import gather_threads as threads_for
from ._fetch import BlockReader

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence

    from numpy.typing import NDArray

    from ._assemble import EpochStream
    from ._fetch import Block
    from ._pool import BufferPool
    from ._union import ShardRef

__all__ = ["Head", "ProcessReader", "gathered_batches", "new_pools"]


def new_pools(n_extras: int, per_block: int) -> tuple[BufferPool, BufferPool]:
    """Build the block and batch buffer pools of a pipeline reading ``1 + n_extras`` arrays, ``per_block`` batches a block."""
    from ._pool import BufferPool

    # recycled buffers (no fresh zeroed pages per block and batch): 3 arrays per block (values, gene indices,
    # stored counts while they are widened), at most 4 blocks alive; 3 per batch, the batches queued plus the
    # consumer's and the one or two the user holds
    arrays = 1 + n_extras  # X and each layer / obsm array
    return BufferPool(max_buffers=3 * 4 * arrays), BufferPool(max_buffers=3 * (per_block + 4) * arrays)


def gathered_batches(
    stream: EpochStream,
    reader: BlockReader,
    *,
    position: int,
    shuffle: bool,
    seed: int,
    epoch: int,
    part: int,
    batch_size: int,
    rows_per_block: int,
    n_vars: int,
    drop_last: bool,
    gather_threads: int | None = None,
    pools: tuple[BufferPool, BufferPool] | None = None,
    ahead: ProcessReader | None = None,
    following: Callable[[], tuple[EpochStream, int]] | None = None,
) -> Iterator[Block]:
    """Yield ``stream``'s batches, from row ``position`` on, as blocks in stream order (not yet converted).

    The stages start at the first ``next()``; closing the generator (or an
    error in either stage, re-raised here) stops both threads.

    Parameters
    ----------
    stream
        This process's part of the epoch.
    reader
        Reads the blocks (with the layers and obsm arrays to gather along with ``X``).
    position
        Rows of the part already consumed (a resume): the stream starts after them.
    shuffle
        Whether each block's rows are permuted (the sampler's ``shuffle_blocks``).
    seed, epoch, part
        Seed the block permutations (with each block's number).
    batch_size
        Rows per batch.
    rows_per_block
        ``chunk_size * preload_nchunks``: sizes the batch stage's queue.
    n_vars
        Genes (the width of ``X`` and of the layers).
    drop_last
        Drop a final short batch.
    gather_threads
        Threads copying each batch's rows (default: :func:`~annshard._load._assemble.gather_threads`
        of the reader's decode threads; stage B and ``gather_threads - 1`` helpers,
        threads ``annshard-gather_<i>``, started here and joined when the stages stop).
    pools
        The block and batch buffer pools (:meth:`ProcessReader.pools`: kept from one
        epoch to the next, so later epochs fault in no fresh pages); new ones by default.
    ahead
        Keeps the read-ahead :class:`Head`: the first block is taken from it when it is
        this very block, and the next epoch's first block is handed to it.
    following
        ``() -> (stream, epoch)`` of the iteration expected next (built in the read-ahead
        thread); with ``ahead``, its first block is read once this epoch's last one is.
    """
    # imported at the first epoch, as before the split (the prefetcher's atexit hook registers then)
    from ._prefetch import Prefetcher

    first, skip = stream.locate(position)

    def read(b: int) -> tuple[Block, NDArray[np.int64]]:
        # stage A (thread): decode the block in read order, draw its row order
        chunks = stream.block(b)
        key = (epoch, part, seed, shuffle, b)
        got = ahead.take(key, chunks) if ahead is not None and b == first else None
        if got is None:
            block = reader.read(chunks, block_pool, narrow=True)  # cut_batches widens
            order = block_order(chunks, shuffle=shuffle, seed=seed, epoch=epoch, part=part, block=b)
        else:
            block, order = got
        if b == stream.n_blocks - 1 and ahead is not None and following is not None:
            ahead.read_ahead(Head(following, reader, block_pool, shuffle=shuffle, seed=seed, part=part))
        return block, order[skip:] if b == first else order

    per_block = max(1, rows_per_block // batch_size)
    block_pool, batch_pool = pools or new_pools(len(reader.extras), per_block)
    blocks = Prefetcher(range(first, stream.n_blocks), read, slots=2, name="annshard-read")
    # stage B (thread): gather each batch's rows straight from the read-order blocks (one copy per value),
    # widening each piece's gene indices after its copy, on gather_threads threads; A and B run on different cores
    helpers = None
    if gather_threads is None:
        gather_threads = threads_for(reader.threads or 1)
    if gather_threads > 1:
        from concurrent.futures import ThreadPoolExecutor

        helpers = ThreadPoolExecutor(gather_threads - 1, thread_name_prefix="annshard-gather")
    workers = None if helpers is None else (helpers, gather_threads)
    cut = cut_batches(blocks, batch_size, n_vars=n_vars, drop_last=drop_last, pool=batch_pool, workers=workers)
    batches = Prefetcher(cut, slots=per_block + 1, name="annshard-gather")
    finished = False
    try:
        for batch in batches:  # noqa: UP028 - `yield from` would close stage B before stage A
            yield batch
        finished = True
    finally:
        blocks.close()  # first: stage B may be waiting on stage A
        batches.close()
        if not finished and ahead is not None:
            ahead.drop()  # an iteration left early or failed stops every thread it started
        if helpers is not None:
            helpers.shutdown(wait=True)  # after stage B: it may still be handing them a batch's pieces


class Head:
    """The first block of the iteration expected next, read in a thread of its own (``annshard-read-next``).

    Parameters
    ----------
    following
        ``() -> (stream, epoch)`` of that iteration (called in the thread).
    reader, pool
        Read the block, into a buffer of ``pool``.
    shuffle, seed, part
        The block's row order (:func:`~annshard._load._assemble.block_order`).
    """

    def __init__(
        self,
        following: Callable[[], tuple[EpochStream, int]],
        reader: BlockReader,
        pool: BufferPool,
        *,
        shuffle: bool,
        seed: int,
        part: int,
    ) -> None:
        from ._prefetch import Prefetcher

        def read(_: int) -> tuple[tuple[Any, ...], NDArray[np.int64], Block, NDArray[np.int64]] | None:
            stream, epoch = following()
            if stream.n_blocks == 0:
                return None
            chunks = stream.block(0)
            block = reader.read(chunks, pool, narrow=True)
            order = block_order(chunks, shuffle=shuffle, seed=seed, epoch=epoch, part=part, block=0)
            return (epoch, part, seed, shuffle, 0), chunks, block, order

        # a Prefetcher: errors handed over, stopped before the interpreter exits, inert in a forked child
        self._thread = Prefetcher([0], read, slots=1, name="annshard-read-next")

    def result(self, key: tuple[Any, ...], chunks: NDArray[np.int64]) -> tuple[Block, NDArray[np.int64]] | None:
        """Wait for the block; return ``(block, order)`` if it is block ``key`` with these ``chunks``, else ``None``.

        An error of the read-ahead returns ``None`` too: the iteration reads the
        block itself (and meets the error there, if it is still there).
        """
        try:
            got = next(self._thread)
        except Exception:  # noqa: BLE001 - the caller's own read reports it
            return None
        finally:
            self.close()
        if got is None or got[0] != key or not np.array_equal(got[1], chunks):
            return None
        return got[2], got[3]

    def close(self) -> None:
        """Stop the thread (a read in progress finishes) and drop the block."""
        self._thread.close()


class ProcessReader:
    """The :class:`~annshard._load._fetch.BlockReader` of the calling process, rebuilt after a fork or unpickling.

    A forked copy of a reader has its cached arrays but not the zarrs threads
    behind them, so each process builds its own (building one reads nothing;
    arrays open at the first read). A pickled copy carries no reader.
    """

    def __init__(self, shards: Sequence[ShardRef], *, element: str, threads: int, extras: Sequence[str]) -> None:
        self._shards = list(shards)
        self._element = element
        self._threads = threads
        self._extras = tuple(extras)
        self._reader: BlockReader | None = None
        self._pools: tuple[BufferPool, BufferPool] | None = None
        self._head: Head | None = None
        self._head_lock = threading.Lock()
        self._pid = -1

    def get(self) -> BlockReader:
        """Return this process's reader."""
        if self._reader is None or self._pid != os.getpid():
            self._pid = os.getpid()
            self._reader = BlockReader(self._shards, element=self._element, threads=self._threads, extras=self._extras)
            self._pools = self._head = None  # a forked copy's head has no thread
        return self._reader

    def read_ahead(self, head: Head) -> None:
        """Keep ``head``, the read-ahead of the iteration expected next (:class:`Head`), replacing any other."""
        with self._head_lock:
            old, self._head = self._head, head
        if old is not None:
            old.close()

    def drop(self) -> None:
        """Stop and forget the read-ahead block, if any."""
        with self._head_lock:
            head, self._head = self._head, None
        if head is not None and self._pid == os.getpid():
            head.close()

    def take(self, key: tuple[Any, ...], chunks: NDArray[np.int64]) -> tuple[Block, NDArray[np.int64]] | None:
        """Return the read-ahead ``(block, order)`` if it is block ``key`` with ``chunks`` (:meth:`Head.result`); drop it either way."""
        with self._head_lock:
            head, self._head = self._head, None
        return None if head is None or self._pid != os.getpid() else head.result(key, chunks)

    def pools(self, per_block: int) -> tuple[BufferPool, BufferPool]:
        """Return this process's block and batch buffer pools, kept from one epoch to the next.

        Their buffers (about the memory one epoch holds at its peak) stay mapped
        between iterations, so a later epoch touches no fresh pages: measured
        on the 100k-cell collections, fresh pages cost ~0.5 s of kernel time an
        epoch. Rebuilt after a fork (:meth:`get`) and never pickled.
        """
        self.get()
        if self._pools is None:
            self._pools = new_pools(len(self._extras), per_block)
        return self._pools

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_reader"] = state["_pools"] = state["_head"] = None
        del state["_head_lock"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._head_lock = threading.Lock()
