"""The :class:`Loader`: chunked random minibatches from one or more collections.

The loader is an iterable; each ``iter()`` is one epoch (see
:mod:`annshard._load._assemble` for how an epoch is defined as a row stream).
The class checks its arguments and ties the pieces together, each a module of
this package: the collections read as one (:mod:`._union`), where the loader
stands in its epochs (:mod:`._cursor`), samplers (:mod:`annshard.samplers`),
rank/worker arithmetic (:mod:`._world`), the epoch's two background stages
(:mod:`._pipeline`, over :mod:`._fetch`, :mod:`._assemble`, :mod:`._prefetch`
and :mod:`._pool`) and what the user receives (:mod:`._output`).
"""

from __future__ import annotations

import copy
import os
from typing import TYPE_CHECKING, Any

import numpy as np

from annshard.samplers import Sampler, SamplerContext, get_sampler

from ._assemble import EpochStream
from ._cursor import EpochCursor
from ._device import DeviceBatchMaker, ProcessOps, device_batches, uses_device_gather
from ._output import OUTPUTS, BatchMaker, ObsTable, Output
from ._pipeline import ProcessReader, gathered_batches
from ._union import CollectionUnion
from ._world import World

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping, Sequence

    from annshard._store._cache import ShardCache
    from annshard._store._collection import Collection

    from ._batch import Batch

__all__ = ["Loader"]

# what Loader.settings() records, besides the sampler (its name and settings); obs_columns, layers, obsm as lists
_SETTINGS = ("batch_size", "chunk_size", "preload_nchunks", "seed", "layer", "output", "dense", "device", "gather")
_SETTINGS += ("drop_last", "read_threads")


class Loader:
    """Minibatches from one or more collections: chunked random reads, prefetch, in-memory shuffle.

    Each ``iter(loader)`` is one epoch and the epoch advances by itself. The
    epoch is read in *blocks* of ``preload_nchunks`` chunks of up to
    ``chunk_size`` contiguous rows. Two background threads form a pipeline
    while the consumer works: one reads and decodes the next block (zarrs,
    outside the GIL), the other gathers each batch's rows, in the block's
    shuffled order, straight into the batch's arrays (each value is copied
    once). Memory stays bounded by about **four preload blocks**
    (``4 * chunk_size * preload_nchunks`` rows: the block being read, the one
    waiting, the one batches are cut from, and the batches gathered ahead)
    plus the batches you still hold. Batches are cut from the stream of
    blocks, so any batch, chunk and preload sizes work.

    Parameters
    ----------
    collection
        An :class:`~annshard.Collection`, a path, or a list of them (read as one
        collection with their shards one after the other; their genes must agree).
    batch_size
        Rows per batch.
    chunk_size
        Longest run of contiguous rows read at once. Larger is faster and less random.
    preload_nchunks
        Chunks per preload block (the unit of reading and of the in-memory shuffle).
    sampler
        ``"random"`` (default), ``"sequential"``, or a :class:`~annshard.samplers.Sampler`
        such as ``WeightedSampler("cell_type")``.
    obs_columns
        obs columns to yield with every batch (categorical ones as integer codes,
        see :attr:`categories`).
    layer
        Read this layer instead of ``X``.
    layers
        Layers stored in the collection (``write_collection(..., layers=[...])``) to yield with
        every batch as ``batch.layers[name]``, row for row with ``X`` and in its output type
        (read with ``X`` in the same request, for the same rows).
    obsm
        obsm arrays stored in the collection to yield as ``batch.obsm[name]``, row for row
        with ``X``, always dense (numpy for ``"scipy"`` / ``"numpy"`` outputs).
    output
        ``"scipy"`` (CSR), ``"numpy"`` (dense), ``"torch"`` (sparse CSR tensor, or dense with
        ``dense=True``) or ``"cupy"``.
    dense
        For ``"torch"`` / ``"cupy"``: densify (on the device when ``device`` is a GPU).
    device, gather
        ``device="cuda"`` (``"torch"`` / ``"cupy"``) is a GPU *preload*: each decoded block goes to the GPU in one
        transfer per array (pinned buffers, a CUDA stream overlapping the next decode), is shuffled and cut into
        batches there (``gather="device"``, the default unless ``device`` is the CPU); X, layers, obsm, obs codes and
        index are device arrays. ``gather="host"`` gathers on the CPU and copies each batch to ``device``.
    drop_last
        Drop the final batch of an epoch when it is short.
    seed
        Seed of all random choices; the same seed and epoch give the same batches.
    rank, world_size
        This process's place in distributed training; by default from
        ``torch.distributed`` when it is initialised. Each rank gets a disjoint
        part of every epoch, of ``floor(n_rows / world_size)`` rows (the fewer
        than ``world_size`` rows left over are skipped that epoch, a different
        set each epoch), and the parts are re-drawn every epoch.
    read_threads
        Threads decoding chunks (zarrs). By default all cores but one: the
        remaining core assembles batches and runs your training step. Measured
        on 2 cores, a second decode thread mostly spin-waits and slows the
        pipeline (``docs/performance.md``). Use 1 inside DataLoader workers. Workers
        started by ``fork`` from a process that had used zarrs decode through
        zarr-python's own pipeline instead (zarrs' threads do not survive a fork);
        ``spawn``/``forkserver`` workers keep zarrs; it also sets the gather threads (2 per 5 decode threads).
    storage_options
        For collections at URLs (``s3://bucket/prefix/cells.zarr``): fsspec/s3fs-style options
        (``endpoint_url``, ``key``, ``secret``, ``anon``, ``region``; also read from the URL's query string and
        the ``AWS_*`` environment variables). Shards are read through zarr's ``ObjectStore`` with zarrs.
    cache, cache_size
        A local directory keeping the remote shards' data (whole elements, LRU within ``cache_size``, shared
        safely by processes), so epochs after the first read from local disk. Local collections ignore it.

    Examples
    --------
    >>> import annshard
    >>> loader = annshard.Loader("cells.zarr", batch_size=4096, obs_columns=["cell_type"])  # doctest: +SKIP
    >>> for batch in loader:  # doctest: +SKIP
    ...     x, y = batch.X, batch.obs["cell_type"]
    >>> state = loader.state_dict()  # doctest: +SKIP
    """

    def __init__(
        self,
        collection: Collection | str | os.PathLike[str] | Sequence[Collection | str | os.PathLike[str]],
        *,
        batch_size: int = 4096,
        chunk_size: int = 32,
        preload_nchunks: int = 256,
        sampler: str | Sampler = "random",
        obs_columns: Sequence[str] | None = None,
        layer: str | None = None,
        layers: Sequence[str] | None = None,
        obsm: Sequence[str] | None = None,
        output: Output = "scipy",
        dense: bool = False,
        device: str | None = None,
        gather: str | None = None,
        drop_last: bool = False,
        seed: int = 0,
        rank: int | None = None,
        world_size: int | None = None,
        read_threads: int | None = None,
        storage_options: Mapping[str, Any] | None = None,
        cache: str | os.PathLike[str] | None = None,
        cache_size: int | str = "50GB",
    ) -> None:
        self.batch_size = _positive("batch_size", batch_size)
        self.chunk_size = _positive("chunk_size", chunk_size)
        self.preload_nchunks = _positive("preload_nchunks", preload_nchunks)
        self.output: Output = _output(output, device)
        # opens the collections, checks genes and shards
        self._union = union = CollectionUnion(collection, storage_options, _cache(cache, cache_size))
        self.collections = union.collections
        self.layer = layer
        self.dense = bool(dense)
        self.device, self.gather = device, gather
        self._ops = ProcessOps(output, device) if uses_device_gather(gather, output, device) else None
        self.drop_last = bool(drop_last)
        self.seed = int(seed)
        self._rank, self._world_size = rank, world_size
        World.detect(rank=rank, world_size=world_size)  # validate early
        self.n_vars, self._n_obs = union.n_vars, union.n_obs  # genes; rows of each shard
        self.obs_columns = tuple(obs_columns or ())
        self._obs = ObsTable(self.collections, self.obs_columns)
        self.layers = _names("layers", layers)
        self.obsm = _names("obsm", obsm)
        self._extras = tuple(f"layers/{k}" for k in self.layers) + tuple(f"obsm/{k}" for k in self.obsm)
        self._extra_cols = union.check_matrices(self._extras)
        self.read_threads = _read_threads(read_threads)
        element = "X" if layer is None else f"layers/{layer}"
        self._reader = ProcessReader(union.shards, element=element, threads=self.read_threads, extras=self._extras)
        union.check_layer(layer)
        self.sampler = get_sampler(sampler).bind(SamplerContext(n_obs=self._n_obs, obs=self._obs.column))
        self._make = BatchMaker(self._obs, self.obs_columns, self.layers, self.obsm, self._extra_cols, self.n_vars)
        self._cursor = EpochCursor(self.seed)  # the next iteration starts at (epoch, position)
        _register_with_torch()

    # -- public properties ----------------------------------------------------------------------
    @property
    def n_obs(self) -> int:
        """Rows over all collections."""
        return int(sum(self._n_obs))

    @property
    def epoch(self) -> int:
        """The epoch the next (or current) iteration reads."""
        return self._cursor.epoch

    @property
    def categories(self) -> dict[str, tuple[Any, ...]]:
        """For each requested categorical obs column, the labels its codes index."""
        return self._obs.categories(self.obs_columns)

    def settings(self) -> dict[str, Any]:
        """Return the loader's settings as plain values (recorded by ``annshard.lamin`` on runs)."""
        out = {k: getattr(self, k) for k in _SETTINGS}
        out |= {"sampler": self.sampler.name, "sampler_settings": self.sampler.settings()}
        return out | {k: list(getattr(self, k)) for k in ("obs_columns", "layers", "obsm")}  # no storage_options

    def __repr__(self) -> str:
        paths = ", ".join(str(c.path) for c in self.collections)
        return f"Loader([{paths}], n_obs={self.n_obs}, batch_size={self.batch_size}, chunk_size={self.chunk_size}, preload_nchunks={self.preload_nchunks}, sampler={self.sampler!r})"

    # -- epochs and state ------------------------------------------------------------------------
    def set_epoch(self, epoch: int) -> None:
        """Make the next iteration read ``epoch`` from its start (in the main process and every DataLoader worker)."""
        self._cursor.set_epoch(epoch)

    def state_dict(self) -> dict[str, int]:
        """Where the loader stands: ``{"seed", "epoch", "rows_consumed"}`` of this process.

        Take it inside the training loop (after a batch) to resume mid-epoch,
        or after the loop to resume at the next epoch.
        """
        return self._cursor.state_dict()

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Resume from :meth:`state_dict`: the next iteration yields exactly the rest of that epoch.

        Raises
        ------
        ValueError
            If the state was taken with a different seed.
        """
        self._cursor.load_state_dict(state)

    # -- iteration ---------------------------------------------------------------------------
    def world(self) -> World:
        """Return the :class:`~annshard.World` of the calling process."""
        return World.detect(rank=self._rank, world_size=self._world_size)

    def stream(self, epoch: int, world: World | None = None) -> EpochStream:
        """Return the chunks and blocks of ``epoch`` for ``world`` (this process by default); reads no data."""
        plan = self.sampler.plan(self._n_obs, chunk_size=self.chunk_size, seed=self.seed, epoch=epoch)
        return EpochStream.build(plan, world or self.world(), self.preload_nchunks)

    def __len__(self) -> int:
        """Batches the next epoch yields in this process."""
        n = self.stream(self._cursor.start(_worker(self.world()), peek=True)[0]).n_rows
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[Batch]:
        world = self.world()
        return self._epoch_batches(world, *self._cursor.start(_worker(world)))

    def _epoch_batches(self, world: World, epoch: int, position: int) -> Iterator[Batch]:
        kw: dict[str, Any] = {"position": position, "epoch": epoch, "n_vars": self.n_vars, "drop_last": self.drop_last}
        kw.update(shuffle=self.sampler.shuffle_blocks, seed=self.seed, part=world.part, batch_size=self.batch_size)
        stream, reader, make = self.stream(epoch, world), self._reader.get(), self._make
        rows = self.chunk_size * self.preload_nchunks
        if self._ops is None:
            pools = self._reader.pools(max(1, rows // self.batch_size))
            kw.update(ahead=self._reader, following=lambda: (self.stream(epoch + 1, world), epoch + 1))
            parts = gathered_batches(stream, reader, rows_per_block=rows, pools=pools, **kw)
        else:  # device preload (annshard._load._device)
            parts, make = device_batches(stream, reader, self._ops.get(), **kw), DeviceBatchMaker(make, self._ops)
        try:
            for part in parts:
                batch = make(part, output=self.output, dense=self.dense, device=self.device)
                self._cursor.advance(batch.n_obs)
                yield batch
        finally:
            parts.close()
        self._cursor.finish(epoch)

    # -- pickling (DataLoader workers) ------------------------------------------------------------
    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        # without the reader (each process builds its own); the worker counters travel only to a spawning child
        state["_reader"], state["_cursor"] = copy.copy(self._reader), copy.copy(self._cursor)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        _register_with_torch()

    def __getitem__(self, key: Any) -> Any:
        msg = (
            "a Loader is iterable, not indexable; if torch's DataLoader called this, torch was imported after the "
            "Loader was created: import torch first so the Loader registers as an IterableDataset"
        )
        raise TypeError(msg)


def _positive(name: str, value: Any) -> int:
    if not isinstance(value, int | np.integer) or isinstance(value, bool) or value <= 0:
        msg = f"{name} must be a positive integer, got {value!r}"
        raise ValueError(msg)
    return int(value)


def _output(output: Any, device: str | None) -> Output:
    if output not in OUTPUTS:
        msg = f"output must be one of {OUTPUTS}, got {output!r}"
        raise ValueError(msg)
    if device is not None and output not in ("torch", "cupy"):
        msg = f"device={device!r} needs output='torch' or 'cupy' (got output={output!r})"
        raise ValueError(msg)
    return output


def _read_threads(read_threads: Any) -> int:
    if read_threads is not None and (not isinstance(read_threads, int) or read_threads <= 0):
        msg = f"read_threads must be a positive integer or None, got {read_threads!r}"
        raise ValueError(msg)
    return read_threads or max(1, (os.cpu_count() or 2) - 1)


def _names(kind: str, names: Sequence[str] | None) -> tuple[str, ...]:
    if names is None:
        return ()
    if isinstance(names, str):
        msg = f"{kind} must be a list of names, not the string {names!r} (did you mean {kind}=[{names!r}]?)"
        raise TypeError(msg)
    out = tuple(dict.fromkeys(names))
    for n in out:
        if not isinstance(n, str) or not n or "/" in n:
            msg = f"{kind} names must be non-empty strings without '/', not {n!r}"
            raise ValueError(msg)
    return out


def _cache(path: str | os.PathLike[str] | None, size: int | str) -> ShardCache | None:
    if path is None:
        return None
    from annshard._store._cache import ShardCache

    return ShardCache(path, size)


def _register_with_torch() -> None:
    """Make the Loader a virtual ``torch.utils.data.IterableDataset`` when torch is already imported."""
    import sys

    torch = sys.modules.get("torch")
    data = getattr(getattr(torch, "utils", None), "data", None)
    if data is not None and not issubclass(Loader, data.IterableDataset):
        data.IterableDataset.register(Loader)


def _worker(world: World) -> int | None:
    """Return the DataLoader worker of the calling process (``None`` outside DataLoader workers)."""
    import sys

    torch = sys.modules.get("torch")
    in_worker = torch is not None and torch.utils.data.get_worker_info() is not None
    return world.worker if world.num_workers > 1 or in_worker else None
