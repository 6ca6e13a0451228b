"""The :class:`Loader`: chunked random minibatches from one or more collections.

The loader is an iterable; each ``iter()`` is one epoch (see
:mod:`annshard._load._assemble` for how an epoch is defined as a row stream). The
pieces are separate modules: samplers (:mod:`annshard.samplers`), rank/worker
arithmetic (:mod:`annshard._load._world`), reading (:mod:`annshard._load._fetch`),
prefetching (:mod:`annshard._load._prefetch`), assembly (:mod:`annshard._load._assemble`)
and output conversion (:mod:`annshard._load._output`).
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.context
import os
from typing import TYPE_CHECKING, Any

import numpy as np

from annshard._collection import Collection, open_collection
from annshard._errors import CorruptShardError
from annshard._validate import check_shard_metadata
from annshard.samplers import Sampler, SamplerContext, get_sampler

from ._assemble import EpochStream, block_order, cut_batches
from ._batch import Batch
from ._fetch import Block, BlockReader, ShardRef
from ._obs import ObsTable
from ._output import OUTPUTS, Output, convert, convert_dense
from ._world import World

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

    from numpy.typing import NDArray

__all__ = ["Loader"]

_MAX_WORKERS = 1024


def _as_collections(collection: Any) -> list[Collection]:
    items = list(collection) if isinstance(collection, list | tuple) else [collection]
    if not items:
        msg = "Loader needs at least one collection"
        raise ValueError(msg)
    return [open_collection(c) for c in items]


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
    device
        For ``"torch"``: where tensors go, e.g. ``"cuda"`` (pinned memory, non-blocking copies).
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
        ``spawn``/``forkserver`` workers keep zarrs.

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
        drop_last: bool = False,
        seed: int = 0,
        rank: int | None = None,
        world_size: int | None = None,
        read_threads: int | None = None,
    ) -> None:
        for name, value in (
            ("batch_size", batch_size),
            ("chunk_size", chunk_size),
            ("preload_nchunks", preload_nchunks),
        ):
            if not isinstance(value, int | np.integer) or isinstance(value, bool) or value <= 0:
                msg = f"{name} must be a positive integer, got {value!r}"
                raise ValueError(msg)
        if output not in OUTPUTS:
            msg = f"output must be one of {OUTPUTS}, got {output!r}"
            raise ValueError(msg)
        if device is not None and output not in ("torch", "cupy"):
            msg = f"device={device!r} needs output='torch' or 'cupy' (got output={output!r})"
            raise ValueError(msg)
        self.collections = _as_collections(collection)
        self.batch_size = int(batch_size)
        self.chunk_size = int(chunk_size)
        self.preload_nchunks = int(preload_nchunks)
        self.layer = layer
        self.output: Output = output
        self.dense = bool(dense)
        self.device = device
        self.drop_last = bool(drop_last)
        self.seed = int(seed)
        self._rank, self._world_size = rank, world_size
        World.detect(rank=rank, world_size=world_size)  # validate early
        self._check_vars()
        self._shards = self._shard_refs()
        self.n_vars = self.collections[0].n_vars
        self._n_obs = tuple(ref.collection.shards[ref.shard].n_obs for ref in self._shards)
        self.obs_columns = tuple(obs_columns or ())
        self._obs = ObsTable(self.collections)
        self._obs.load(self.obs_columns)
        self._element = "X" if layer is None else f"layers/{layer}"
        self.layers = _names("layers", layers)
        self.obsm = _names("obsm", obsm)
        self._extras = tuple(f"layers/{k}" for k in self.layers) + tuple(f"obsm/{k}" for k in self.obsm)
        self._extra_cols = self._check_matrices()
        if read_threads is not None and (not isinstance(read_threads, int) or read_threads <= 0):
            msg = f"read_threads must be a positive integer or None, got {read_threads!r}"
            raise ValueError(msg)
        self.read_threads = read_threads or max(1, (os.cpu_count() or 2) - 1)
        self._reader = self._new_reader()
        self._check_layer()
        self.sampler = get_sampler(sampler).bind(SamplerContext(n_obs=self._n_obs, obs=self._obs.column))
        # epoch bookkeeping: the next iteration starts at (epoch, position)
        self._epoch = 0
        self._position = 0
        self._active = False
        self._pending: tuple[int, int] | None = None
        # per-DataLoader-worker epoch counters, shared with worker processes (see __getstate__)
        self._worker_epochs: Any = multiprocessing.RawArray("q", _MAX_WORKERS)
        _register_with_torch()

    # -- construction checks --------------------------------------------------------------
    def _check_vars(self) -> None:
        first = self.collections[0]
        for other in self.collections[1:]:
            if other.n_vars != first.n_vars or not other.var_names.equals(first.var_names):
                msg = (
                    f"collections {first.path} and {other.path} have different genes ({first.n_vars} vs "
                    f"{other.n_vars} vars or a different order); a Loader over several collections needs the same var"
                )
                raise ValueError(msg)

    def _shard_refs(self) -> list[ShardRef]:
        refs, offset = [], 0
        for coll in self.collections:
            for i, info in enumerate(coll.shards):
                if not coll.shard_path(i).is_dir():
                    msg = f"collection {coll.path}: shard {info.name} (rows {offset}-{offset + info.n_obs - 1}) is missing on disk; restore or rewrite the collection"
                    raise CorruptShardError(msg)
                check_shard_metadata(coll, i)  # the shard's own X agrees with the manifest (metadata reads)
                refs.append(ShardRef(collection=coll, shard=i, offset=offset))
                offset += info.n_obs
        return refs

    def _check_layer(self) -> None:
        if self.layer is None or not self._shards:
            return
        ref = self._shards[0]
        group = ref.collection.shard_group(ref.shard)
        layers = sorted(group["layers"].keys()) if "layers" in group else []
        if self.layer not in layers:
            msg = f"layer {self.layer!r} is not in collection {ref.collection.path} (shard {ref.collection.shards[ref.shard].name}); available layers: {layers or 'none'}"
            raise KeyError(msg)

    def _check_matrices(self) -> dict[str, int]:
        """Check that every collection stores the requested layers and obsm arrays; return their widths."""
        widths: dict[str, int] = {}
        first: dict[str, Collection] = {}
        for coll in self.collections:
            if not coll.shards:
                continue
            group = coll.shard_group(0)
            for element in self._extras:
                kind, _, name = element.partition("/")
                have = sorted(group[kind].keys()) if kind in group else []
                if name not in have:
                    msg = f"{kind} {name!r} is not in collection {coll.path} (shard {coll.shards[0].name}); available {kind}: {have or 'none'} (write it with write_collection(..., {kind}=[{name!r}]))"
                    raise KeyError(msg)
                node = group[element]
                shape = node.attrs["shape"] if "shape" in node.attrs else node.shape
                width = int(shape[1]) if len(shape) > 1 else 1
                if kind == "layers" and width != self.n_vars:
                    msg = f"collection {coll.path}: layer {name!r} has {width} columns, X has {self.n_vars}; the collection is damaged, rewrite it"
                    raise CorruptShardError(msg)
                if widths.setdefault(element, width) != width:
                    msg = f"obsm {name!r} has {widths[element]} columns in collection {first[element].path} but {width} in {coll.path}; a Loader over several collections needs the same width"
                    raise ValueError(msg)
                first.setdefault(element, coll)
        return widths

    def _new_reader(self) -> BlockReader:
        self._reader_pid = os.getpid()
        return BlockReader(self._shards, element=self._element, threads=self.read_threads, extras=self._extras)

    def _block_reader(self) -> BlockReader:
        """Return this process's reader, rebuilt after a fork (a forked copy has its arrays but no zarrs threads)."""
        if self._reader is None or self._reader_pid != os.getpid():
            self._reader = self._new_reader()
        return self._reader

    # -- public properties ----------------------------------------------------------------------
    @property
    def n_obs(self) -> int:
        """Rows over all collections."""
        return int(sum(self._n_obs))

    @property
    def epoch(self) -> int:
        """The epoch the next (or current) iteration reads."""
        return self._epoch

    @property
    def categories(self) -> dict[str, tuple[Any, ...]]:
        """For each requested categorical obs column, the labels its codes index."""
        return self._obs.categories(self.obs_columns)

    def settings(self) -> dict[str, Any]:
        """Return the loader's settings as plain values (recorded by ``annshard.lamin`` on runs)."""
        return {
            "batch_size": self.batch_size,
            "chunk_size": self.chunk_size,
            "preload_nchunks": self.preload_nchunks,
            "sampler": self.sampler.name,
            "sampler_settings": self.sampler.settings(),
            "seed": self.seed,
            "obs_columns": list(self.obs_columns),
            "layer": self.layer,
            "layers": list(self.layers),
            "obsm": list(self.obsm),
            "output": self.output,
            "dense": self.dense,
            "device": self.device,
            "drop_last": self.drop_last,
            "read_threads": self.read_threads,
        }

    def __repr__(self) -> str:
        paths = ", ".join(str(c.path) for c in self.collections)
        return f"Loader([{paths}], n_obs={self.n_obs}, batch_size={self.batch_size}, chunk_size={self.chunk_size}, preload_nchunks={self.preload_nchunks}, sampler={self.sampler!r})"

    # -- epochs and state ------------------------------------------------------------------------
    def set_epoch(self, epoch: int) -> None:
        """Make the next iteration read ``epoch`` from its start (in the main process and every DataLoader worker)."""
        self._epoch, self._position, self._active, self._pending = int(epoch), 0, False, None
        if self._worker_epochs is not None:
            self._worker_epochs[:] = [int(epoch)] * _MAX_WORKERS

    def state_dict(self) -> dict[str, int]:
        """Where the loader stands: ``{"seed", "epoch", "rows_consumed"}`` of this process.

        Take it inside the training loop (after a batch) to resume mid-epoch,
        or after the loop to resume at the next epoch.
        """
        if self._pending is not None:
            epoch, rows = self._pending
        else:
            epoch, rows = self._epoch, self._position
        return {"seed": self.seed, "epoch": int(epoch), "rows_consumed": int(rows)}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Resume from :meth:`state_dict`: the next iteration yields exactly the rest of that epoch.

        Raises
        ------
        ValueError
            If the state was taken with a different seed.
        """
        if int(state["seed"]) != self.seed:
            msg = f"the state was saved with seed={state['seed']} but this loader has seed={self.seed}; create the Loader with seed={state['seed']}"
            raise ValueError(msg)
        self._pending = (int(state["epoch"]), int(state["rows_consumed"]))
        self._active = False
        if self._worker_epochs is not None:
            self._worker_epochs[:] = [int(state["epoch"])] * _MAX_WORKERS

    # -- iteration ---------------------------------------------------------------------------
    def world(self) -> World:
        """Return the :class:`~annshard._load._world.World` of the calling process."""
        return World.detect(rank=self._rank, world_size=self._world_size)

    def stream(self, epoch: int, world: World | None = None) -> EpochStream:
        """Return the chunks and blocks of ``epoch`` for ``world`` (this process by default); reads no data."""
        plan = self.sampler.plan(self._n_obs, chunk_size=self.chunk_size, seed=self.seed, epoch=epoch)
        return EpochStream.build(plan, world or self.world(), self.preload_nchunks)

    def __len__(self) -> int:
        """Batches the next epoch yields in this process."""
        n = self.stream(self._next_start(self.world(), peek=True)[0]).n_rows
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def _next_start(self, world: World, *, peek: bool = False) -> tuple[int, int]:
        if world.num_workers > 1 or _in_worker():
            if self._pending is not None and self._pending[1] > 0:
                msg = "resuming mid-epoch is exact when iterating the Loader directly; with DataLoader workers resume at an epoch boundary"
                raise ValueError(msg)
            w = world.worker
            if self._worker_epochs is not None and w < _MAX_WORKERS:
                epoch = int(self._worker_epochs[w])
                if not peek:
                    self._worker_epochs[w] = epoch + 1
                return epoch, 0
        if self._pending is not None:
            start = self._pending
        elif self._active:
            start = (self._epoch + 1, 0)
        else:
            start = (self._epoch, 0)
        if not peek:
            self._pending = None
            self._epoch, self._position = start
            self._active = True
        return start

    def __iter__(self) -> Iterator[Batch]:
        world = self.world()
        epoch, position = self._next_start(world)
        return self._epoch_batches(world, epoch, position)

    def _epoch_batches(self, world: World, epoch: int, position: int) -> Iterator[Batch]:
        stream = self.stream(epoch, world)
        first, skip = stream.locate(position)
        shuffle = self.sampler.shuffle_blocks
        reader = self._block_reader()

        def read(b: int) -> tuple[Block, NDArray[np.int64]]:
            # stage A (thread): decode the block in read order, draw its row order
            chunks = stream.block(b)
            block = reader.read(chunks, block_pool)
            order = block_order(chunks, shuffle=shuffle, seed=self.seed, epoch=epoch, part=world.part, block=b)
            return block, order[skip:] if b == first else order

        from ._pool import BufferPool
        from ._prefetch import Prefetcher

        per_block = max(1, self.chunk_size * self.preload_nchunks // self.batch_size)
        # recycled buffers (no fresh zeroed pages per block and batch): 2 arrays per block, at most 4 blocks
        # alive; 3 per batch, the batches queued plus the consumer's and the one or two the user holds
        arrays = 1 + len(self._extras)  # X and each layer / obsm array
        block_pool = BufferPool(max_buffers=2 * 4 * arrays)
        batch_pool = BufferPool(max_buffers=3 * (per_block + 4) * arrays)
        blocks = Prefetcher(range(first, stream.n_blocks), read, slots=2, name="annshard-read")
        # stage B (thread): gather each batch's rows straight from the read-order blocks (one copy per value),
        # then widen its gene indices; A and B run on different cores
        cut = cut_batches(blocks, self.batch_size, n_vars=self.n_vars, drop_last=self.drop_last, pool=batch_pool)
        batches = Prefetcher(cut, slots=per_block + 1, name="annshard-gather")
        try:
            for part in batches:
                batch = self._make_batch(part)
                self._position += batch.n_obs
                yield batch
        finally:
            blocks.close()  # first: stage B may be waiting on stage A
            batches.close()
        if self._epoch == epoch:
            self._epoch, self._position, self._active = epoch + 1, 0, False

    def _make_batch(self, block: Block) -> Batch:
        x, index = convert(block, n_vars=self.n_vars, output=self.output, dense=self.dense, device=self.device)
        layers = {
            k: convert(
                block.extras[f"layers/{k}"],
                n_vars=self.n_vars,
                output=self.output,
                dense=self.dense,
                device=self.device,
            )[0]
            for k in self.layers
        }
        obsm = {
            k: convert_dense(
                block.extras[f"obsm/{k}"], n_vars=self._extra_cols[f"obsm/{k}"], output=self.output, device=self.device
            )
            for k in self.obsm
        }
        obs = self._obs.take(self.obs_columns, block.index)
        if self.output == "torch":
            import torch

            obs = {k: torch.from_numpy(np.ascontiguousarray(v)) if v.dtype != object else v for k, v in obs.items()}
            if self.device is not None:
                obs = {k: v.to(self.device, non_blocking=True) if hasattr(v, "to") else v for k, v in obs.items()}
                index = index.to(self.device, non_blocking=True)
        return Batch(X=x, obs=obs, index=index, layers=layers, obsm=obsm)

    # -- pickling (DataLoader workers) ------------------------------------------------------------
    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_reader"] = None
        # a RawArray may only travel while a child process is being spawned; it is then shared with it
        if multiprocessing.context.get_spawning_popen() is None:
            state["_worker_epochs"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._reader = self._new_reader()
        _register_with_torch()

    def __getitem__(self, key: Any) -> Any:
        msg = (
            "a Loader is iterable, not indexable; if torch's DataLoader called this, torch was imported after the "
            "Loader was created: import torch first so the Loader registers as an IterableDataset"
        )
        raise TypeError(msg)


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


def _register_with_torch() -> None:
    """Make the Loader a virtual ``torch.utils.data.IterableDataset`` when torch is already imported."""
    import sys

    torch = sys.modules.get("torch")
    data = getattr(getattr(torch, "utils", None), "data", None)
    if data is not None and not issubclass(Loader, data.IterableDataset):
        data.IterableDataset.register(Loader)


def _in_worker() -> bool:
    import sys

    torch = sys.modules.get("torch")
    return torch is not None and torch.utils.data.get_worker_info() is not None
