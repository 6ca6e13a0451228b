"""The first epoch's pipeline fill, started while the loader is still being built.

A later epoch finds its first block already read (:class:`~annshard._load._pipeline.Head`: read once the
previous epoch's last block is). The first epoch has no previous epoch, so before this module its first batch
waited for everything in a row: the loader's construction (manifest, shard metadata, the obs columns' reads),
then, at the first ``next()``, the opening of every shard's arrays and the first block's read into fresh pages.
Most of that is waiting, not computing (zarr's I/O loop, small file reads), and it left a core idle.

:func:`start_first_block` hands the same :class:`~annshard._load._pipeline.Head` the first epoch's first block
as soon as the loader knows its sampler, so the block is read (and the shards it touches opened, and the
block pool's first buffers faulted in) in thread ``annshard-read-next`` while the constructor reads the obs
columns. The first iteration takes it only if it asks for that very block (same epoch, part, seed, shuffle and
chunks; :meth:`ProcessReader.take <annshard._load._pipeline.ProcessReader.take>`), so its batches are exactly
those it would have read itself; anything else (``set_epoch``, ``load_state_dict`` to a later position, another
world, a DataLoader worker) reads its own block and the head is dropped.

The trade-off, decided: a loader built but never iterated in this process (one handed to DataLoader workers)
reads one block it does not use (~50 ms of CPU at 8,192 rows of ~1,500 values, most of it faulting in the
block's pages) and holds it (one preload block of memory) until it is iterated or collected; its pickled copies
carry none of it. Not done for remote collections (a block there is network reads, maybe a cache fill, that a
loader built only to be sent to workers should not start) nor for the device preload (``gather="device"``,
which has no read-ahead).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._pipeline import Head

if TYPE_CHECKING:
    from collections.abc import Callable

    from ._assemble import EpochStream
    from ._pipeline import ProcessReader
    from ._world import World

__all__ = ["fills_at_start", "start_first_block"]


def start_first_block(
    reader: ProcessReader,
    stream: Callable[[int, World], EpochStream],
    *,
    world: World,
    epoch: int,
    rows_per_block: int,
    batch_size: int,
    shuffle: bool,
    seed: int,
) -> None:
    """Start reading block 0 of ``epoch`` for ``world`` as ``reader``'s read-ahead (:class:`Head`).

    Parameters
    ----------
    reader
        The loader's reader; its block pool is created here (the one the iterations use).
    stream
        ``(epoch, world) -> EpochStream`` (the loader's :meth:`~annshard.Loader.stream`; called in the thread).
    world
        The world the first iteration is expected in.
    epoch
        The epoch it is expected to read, from its start.
    rows_per_block, batch_size
        Size the pools as the iteration does.
    shuffle, seed
        The block's row order (:func:`~annshard._load._assemble.block_order`).
    """

    def following() -> tuple[EpochStream, int]:
        return stream(epoch, world), epoch

    block_pool, _ = reader.pools(max(1, rows_per_block // batch_size))
    reader.read_ahead(Head(following, reader.get(), block_pool, shuffle=shuffle, seed=seed, part=world.part))


def fills_at_start(collections: Any, uses_device: bool) -> bool:
    """Whether a loader over ``collections`` starts its first block while it is built (local, CPU gather)."""
    return not uses_device and not any(c.remote for c in collections)
