"""Reading preload blocks: many row runs of many shards in one concurrent request.

For a block, the loader knows every chunk ``(shard, start, stop)`` it needs. Each shard's ``indptr`` is held in
memory (read once, ``int64``), so a chunk's rows map to one element range of ``X/data`` and ``X/indices``. All
ranges of all shards of a block are read at once, into one preallocated buffer per array: by zarrs' Rust pipeline
(:class:`~annshard._load._direct.DirectRuns`, or zarr's with a :class:`~annshard._load._direct.RunsIndexer`),
outside the GIL, which lets a background thread overlap reading with the consumer's work; uncompressed local
arrays by ``os.preadv`` (:class:`~annshard._store._raw.RawRuns`, planned for the whole block by numpy and read
on ``read_threads`` threads, which also check the gene indices they read); arrays in an object store by annshard's own remote reader
(:class:`~annshard._store._remote_read.RemoteRuns`). Adjacent chunks are merged into one range first.

The block comes back in *read order* with every row's global index; :mod:`annshard._load._assemble` permutes it.
This module alone decides that order (:func:`read_order`: chunks sorted by shard, then start, so each shard's runs
are contiguous and ascending, and touching runs merge); the assembler asks it rather than assuming it.
"""

from __future__ import annotations

import asyncio
import threading
from typing import TYPE_CHECKING, Any

import numpy as np
import zarr

from annshard._compat import zarr_read_selection, zarr_sync
from annshard._config import zarr_config
from annshard._errors import CorruptShardError
from annshard._kernel import narrow_values
from annshard._store._raw import RawRuns, read_raw_runs
from annshard._store._remote_read import RemoteRuns, read_remote_runs
from annshard._store._shard import open_shard_arrays
from annshard._store._validate import check_indices, check_indptr

from ._block import Block
from ._direct import DirectRuns, RunsIndexer
from ._pool import populate

if TYPE_CHECKING:
    from collections.abc import Sequence

    from numpy.typing import NDArray

    from ._pool import BufferPool
    from ._union import ShardRef

__all__ = ["Block", "BlockReader", "DirectRuns", "RunsIndexer", "read_order"]


def read_order(chunks: NDArray[np.int64]) -> NDArray[np.int64]:
    """Return the order in which a block's ``chunks`` (``(n, 3)`` of shard, start, stop) are read.

    By shard, then by start: each shard's runs come out contiguous and
    ascending, so touching runs merge into one read. :meth:`BlockReader.read`
    lays a block's rows out in this order, and
    :func:`annshard._load._assemble.block_order` maps the block's output order
    onto it.
    """
    return np.lexsort((chunks[:, 1], chunks[:, 0]))


_Runs = DirectRuns | RawRuns | RemoteRuns


def _take(pool: BufferPool | None, n: int, dtype: np.dtype, *, lazy: bool) -> tuple[np.ndarray, bool]:
    """Return an array for a block's element from ``pool``, and whether it is fresh and left for its readers to fault in (``lazy``)."""
    if pool is None:
        return np.empty(n, dtype=dtype), False
    arr, fresh = pool.take(n, dtype, populate=not lazy)
    return arr, fresh and lazy


def _runs_reader(array: zarr.Array) -> _Runs | None:
    """Our own remote reader for an array in an object store (:mod:`annshard._store._remote_read`), else a local one (:meth:`DirectRuns.create`)."""
    return RemoteRuns.create(array) or DirectRuns.create(array)


async def _read_runs(array: zarr.Array, runs: NDArray[np.int64], out: np.ndarray) -> None:
    if runs.shape[0] == 0 or out.shape[0] == 0:
        return
    await zarr_read_selection(array, RunsIndexer(runs, array), out)


async def _gather(jobs: list[Any]) -> None:
    await asyncio.gather(*jobs)


class BlockReader:
    """Reads blocks of chunks from the shards of one or more collections.

    Parameters
    ----------
    shards
        Every shard, in global order.
    element
        ``"X"`` or ``"layers/<name>"``.
    threads
        zarrs decode threads (``None``: zarrs' default, all cores).
    extras
        Further elements (``"layers/<name>"``, ``"obsm/<name>"``) read for the same rows in the
        same request (:attr:`Block.extras`).
    """

    def __init__(
        self,
        shards: Sequence[ShardRef],
        *,
        element: str = "X",
        threads: int | None = None,
        extras: Sequence[str] = (),
    ) -> None:
        self.shards = list(shards)
        self._offsets = np.array([ref.offset for ref in self.shards], dtype=np.int64)
        self.element = element
        self.extras = tuple(extras)
        self.threads = threads
        self._arrays: dict[tuple[int, str], Any] = {}
        self._indptr: dict[tuple[int, str], NDArray[np.int64]] = {}
        self._direct: dict[tuple[int, str], tuple[_Runs | None, _Runs | None]] = {}
        self._lock = threading.Lock()

    def arrays(self, i: int, element: str | None = None) -> Any:
        """Return the (cached) zarr arrays of ``element`` (default: the main one) of shard ``i``, loading its indptr."""
        element = self.element if element is None else element
        key = (i, element)
        with self._lock:
            if key not in self._arrays:
                ref = self.shards[i]
                try:
                    with zarr_config(threads=self.threads):  # zarrs fixes its thread count when an array opens
                        arrs = open_shard_arrays(ref.collection.element_group(ref.shard, element), element=element)
                        indptr = None if arrs.indptr is None else np.asarray(arrs.indptr[...], dtype=np.int64)
                        direct = (
                            _runs_reader(arrs.data),
                            None if arrs.indices is None else _runs_reader(arrs.indices),
                        )
                except Exception as e:
                    msg = f"{ref.where}: cannot open {element!r} ({type(e).__name__}: {e}); the shard is missing or damaged, rewrite the collection"
                    raise CorruptShardError(msg) from e
                if arrs.shape[0] != ref.collection.shards[ref.shard].n_obs:
                    msg = f"{ref.where}: {element!r} has {arrs.shape[0]} rows but the manifest lists {ref.collection.shards[ref.shard].n_obs}; the shard is damaged, rewrite the collection"
                    raise CorruptShardError(msg)
                if indptr is not None:
                    n_values = int(arrs.data.shape[0])
                    if int(arrs.indices.shape[0]) != n_values:
                        msg = f"{ref.where}: {element}/indices holds {arrs.indices.shape[0]} values but {element}/data {n_values}; the shard is damaged, rewrite the collection"
                        raise CorruptShardError(msg)
                    check_indptr(indptr, n_values, ref.where)
                self._arrays[key] = arrs
                self._direct[key] = direct
                if indptr is not None:
                    self._indptr[key] = indptr
            return self._arrays[key]

    def read(self, chunks: NDArray[np.int64], pool: BufferPool | None = None, *, narrow: bool = False) -> Block:
        """Read ``chunks`` (``(n, 3)`` of shard, start, stop), in :func:`read_order`.

        The block's values and gene indices are decoded into arrays from ``pool``
        (recycled buffers) when one is given. ``narrow`` (the host gather): raw counts stay as
        stored when the fused kernel widening them is ready (:func:`~annshard._kernel.narrow_values`).

        Raises
        ------
        CorruptShardError
            If a shard cannot be read or decoded; the message names the collection, shard and rows.
        """
        chunks = chunks[read_order(chunks)]
        shard_ids = np.unique(chunks[:, 0])
        lens = chunks[:, 2] - chunks[:, 1]
        n_rows = int(lens.sum())
        within = np.arange(n_rows, dtype=np.int64) - np.repeat(np.cumsum(lens) - lens, lens)
        local = np.repeat(chunks[:, 1], lens) + within
        row_shard = np.repeat(chunks[:, 0], lens)
        index = self._offsets[row_shard] + local
        bounds = np.searchsorted(row_shard, np.append(shard_ids, shard_ids[-1] + 1))
        # X and every extra element: one list of reads, decoded in one request
        jobs: list[Any] = []
        direct: list[tuple[_Runs, NDArray[np.int64], np.ndarray]] = []
        widen: list[tuple[np.ndarray, np.ndarray]] = []  # (stored counts, values) pairs to widen after the reads
        blocks = []
        for element in (self.element, *self.extras):
            arrs = [self.arrays(int(s), element) for s in shard_ids]
            if arrs[0].kind == "dense":
                blocks.append(self._plan_dense(chunks, shard_ids, arrs, index, element, jobs, direct))
            else:
                blocks.append(
                    self._plan_csr(
                        chunks, shard_ids, arrs, index, local, bounds, pool, element, jobs, direct, widen, narrow
                    )
                )
        extremes = self._run(jobs, chunks, shard_ids, direct, pool)
        for stored, wide in widen:
            np.copyto(wide, stored, casting="unsafe")
        del widen
        # before any CSR matrix or tensor is built from them: an index past n_vars would make those read out of
        # bounds. Gene indices read by os.preadv were measured by the raw threads as they read them (`extremes`);
        # a block's other gene indices are scanned here.
        n_vars = self.shards[0].collection.n_vars
        where = lambda: "; ".join(self.shards[s].where for s in shard_ids.tolist())  # noqa: E731 - built on failure only
        if extremes is not None:
            check_indices(np.array(extremes, dtype=np.int64), n_vars, where)
        for b in blocks:
            if b.indices is not None and not b.indices_checked:
                check_indices(b.indices, n_vars, where)
        block = blocks[0]
        block.extras = dict(zip(self.extras, blocks[1:], strict=True))
        return block

    def _row_runs(self, chunks: NDArray[np.int64], s: int) -> NDArray[np.int64]:
        sub = chunks[chunks[:, 0] == s][:, 1:]
        # merge touching runs: fewer, longer reads
        brk = np.flatnonzero(sub[1:, 0] != sub[:-1, 1]) + 1
        starts = sub[np.concatenate([[0], brk]), 0]
        stops = sub[np.concatenate([brk - 1, [sub.shape[0] - 1]]), 1]
        return np.stack([starts, stops], axis=1)

    def _plan_csr(
        self,
        chunks: NDArray[np.int64],
        shard_ids: np.ndarray,
        arrs: list[Any],
        index: np.ndarray,
        local: np.ndarray,
        bounds: np.ndarray,
        pool: BufferPool | None,
        element: str,
        jobs: list[Any],
        direct: list[tuple[_Runs, NDArray[np.int64], np.ndarray]],
        widen: list[tuple[np.ndarray, np.ndarray]],
        narrow: bool,
    ) -> Block:
        """Allocate a CSR element's block and add its reads to ``jobs`` / ``direct`` (stored counts: and ``widen``)."""
        lens_parts, elem_runs = [], []
        for j, s in enumerate(shard_ids.tolist()):
            ip = self._indptr[(s, element)]
            runs = self._row_runs(chunks, s)
            elem_runs.append(np.stack([ip[runs[:, 0]], ip[runs[:, 1]]], axis=1))
            rows = local[bounds[j] : bounds[j + 1]]
            lens_parts.append(ip[rows + 1] - ip[rows])
        row_nnz = np.concatenate(lens_parts)
        indptr = np.zeros(row_nnz.shape[0] + 1, dtype=np.int64)
        np.cumsum(row_nnz, out=indptr[1:])
        nnz = int(indptr[-1])
        empty = np.empty if pool is None else pool.empty
        readers = [self._direct[(int(s), element)] for s in shard_ids]
        value_dtype = np.dtype(arrs[0].data.dtype)
        local_ok = narrow and all(isinstance(dd, DirectRuns | RawRuns) for dd, _ in readers)
        keep = narrow_values({dd.dtype for dd, _ in readers}, arrs[0].indices.dtype, value_dtype) if local_ok else None
        # buffers that os.preadv fills (RawRuns) are not faulted in here but by the raw threads, part by part;
        # raw counts kept as stored (`keep`) are widened by the batch gather
        raw_data = all(isinstance(dd, RawRuns) for dd, _ in readers)
        raw_indices = all(isinstance(di, RawRuns) for _, di in readers)
        data, fresh_data = _take(pool, nnz, value_dtype if keep is None else keep, lazy=raw_data)
        indices, fresh_indices = _take(pool, nnz, arrs[0].indices.dtype, lazy=raw_indices)
        counts: dict[
            np.dtype, np.ndarray
        ] = {}  # the block's stored counts, by stored dtype, widened into `data` once read
        pos = 0
        for a, er, (dd, di) in zip(arrs, elem_runs, readers, strict=True):
            k = int((er[:, 1] - er[:, 0]).sum())
            out_data = data[pos : pos + k]
            if isinstance(dd, DirectRuns) and dd.dtype != data.dtype:  # RawRuns widens as it reads
                if dd.dtype not in counts:
                    counts[dd.dtype] = empty(nnz, dtype=dd.dtype)
                out_data = counts[dd.dtype][pos : pos + k]
                widen.append((out_data, data[pos : pos + k]))
            if dd is not None:
                direct.append((dd, er, out_data, False, fresh_data))
            else:
                jobs.append(_read_runs(a.data, er, out_data))
            if di is not None:
                # raw gene indices: their smallest and largest value found as they are read (the index check)
                direct.append((di, er, indices[pos : pos + k], raw_indices, fresh_indices))
            else:
                jobs.append(_read_runs(a.indices, er, indices[pos : pos + k]))
            pos += k
        return Block(
            index=index,
            indptr=indptr,
            data=data,
            indices=indices,
            indices_checked=raw_indices,
            dtype=None if keep is None else value_dtype,
        )

    def _plan_dense(
        self,
        chunks: NDArray[np.int64],
        shard_ids: np.ndarray,
        arrs: list[Any],
        index: np.ndarray,
        element: str,
        jobs: list[Any],
        direct: list[tuple[_Runs, NDArray[np.int64], np.ndarray]],
    ) -> Block:
        """Allocate a dense element's block and add its reads to ``jobs`` / ``direct``."""
        n_vars = int(arrs[0].shape[1])
        data = np.empty((index.shape[0], n_vars), dtype=arrs[0].data.dtype)
        pos = 0
        for s, a in zip(shard_ids.tolist(), arrs, strict=True):
            runs = self._row_runs(chunks, s)
            k = int((runs[:, 1] - runs[:, 0]).sum())
            reader = self._direct[(s, element)][0]
            if reader is not None:
                direct.append((reader, runs, data[pos : pos + k], False, False))
            else:
                jobs.append(_read_runs(a.data, runs, data[pos : pos + k]))
            pos += k
        return Block(index=index, indptr=None, data=data, indices=None)

    def _run(
        self,
        jobs: list[Any],
        chunks: NDArray[np.int64],
        shard_ids: np.ndarray,
        direct: list[tuple[_Runs, NDArray[np.int64], np.ndarray]],
        pool: BufferPool | None = None,
    ) -> tuple[int, int] | None:
        """Do the block's reads; return the smallest and largest gene index the raw reads found (or ``None``)."""
        try:
            read_remote_runs([d[:3] for d in direct if isinstance(d[0], RemoteRuns)])  # all concurrently
            extremes = read_raw_runs([d for d in direct if isinstance(d[0], RawRuns)], self.threads, populate=populate)
            for reader, runs, out, *_ in direct:
                if isinstance(reader, DirectRuns):
                    reader.read(runs, out, pool)
            if jobs:
                with zarr_config():
                    zarr_sync(_gather(jobs))
            return extremes
        except Exception as e:
            where = "; ".join(
                f"{self.shards[s].where} rows {self._describe_rows(chunks, s)}" for s in shard_ids.tolist()
            )
            elements = ", ".join(repr(el) for el in (self.element, *self.extras))
            msg = f"cannot read {elements} ({type(e).__name__}: {e}) from {where}; the shard is damaged (a truncated or missing chunk file?), rewrite the collection"
            raise CorruptShardError(msg) from e

    @staticmethod
    def _describe_rows(chunks: NDArray[np.int64], s: int) -> str:
        sub = chunks[chunks[:, 0] == s]
        text = ", ".join(f"{a}-{b - 1}" for a, b in sub[:4, 1:].tolist())
        return text + (f", ... ({sub.shape[0]} runs)" if sub.shape[0] > 4 else "")
