"""Row runs of a zarr array described to zarrs directly (:class:`DirectRuns`), or to zarr (:class:`RunsIndexer`).

The block reader (:mod:`annshard._load._fetch`) hands every array it cannot read by ``os.preadv``
(:class:`~annshard._store._raw.RawRuns`) or from an object store to one of these: both cut the runs at the
array's chunk borders with :func:`~annshard._store._raw.split_runs`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from annshard._compat import (
    zarr_chunk_key_encoder,
    zarr_chunk_projection,
    zarr_stored_counts,
    zarrs_chunk_item,
    zarrs_pipeline_impl,
)
from annshard._store._raw import RawRuns, split_runs

if TYPE_CHECKING:
    from collections.abc import Iterator

    import zarr
    from numpy.typing import NDArray

    from ._pool import BufferPool

__all__ = ["DirectRuns", "RunsIndexer"]


class RunsIndexer:
    """A zarr indexer selecting several ``[start, stop)`` runs of a 1-D (or row runs of a 2-D) array.

    The selected runs are laid out one after the other in the output.
    """

    def __init__(self, runs: NDArray[np.int64], array: zarr.Array) -> None:
        self.runs = runs
        self._chunk = int((array.shards or array.chunks)[0])
        self._len = int(array.shape[0])
        self._extra = tuple(array.shape[1:])
        self.shape = (int((runs[:, 1] - runs[:, 0]).sum()), *self._extra)
        self.drop_axes: tuple[int, ...] = ()

    def __iter__(self) -> Iterator[Any]:
        c, n = self._chunk, self._len
        full = tuple(slice(0, e) for e in self._extra)
        for ci, a, b, out in split_runs(self.runs, c):
            yield zarr_chunk_projection(
                (ci, *(0 for _ in self._extra)),
                (slice(a, b), *full),
                (slice(out, out + b - a), *full),
                a == 0 and b == min(c, n - ci * c),
            )


class DirectRuns:
    """Reads row runs of one array straight through zarrs' Rust pipeline, skipping zarr's async layer.

    zarr-python turns every selected run into Python objects on its event loop
    thread before zarrs sees it (about 20 µs per run, measured: a tenth of the
    loader's CPU time at ``chunk_size=32``). The runs are described to zarrs
    directly instead, one item per (run, zarr chunk). :meth:`create` returns
    ``None`` when the array is not read by zarrs (zarrs not installed, or a
    codec it does not support); the caller then goes through zarr.

    Raw counts (stored as unsigned integers through ``fixedscaleoffset``,
    :func:`~annshard._compat.zarr_stored_counts`) are decoded as the stored
    integers and widened to the array's dtype by numpy afterwards: zarrs'
    per-element ``fixedscaleoffset`` decode cost more than the whole lz4 and
    bitshuffle decode of the same values (measured in ``docs/performance.md``).
    :attr:`dtype` is what zarrs decodes into.
    """

    def __init__(self, array: zarr.Array, impl: Any, chunk_item: Any) -> None:
        self._impl = impl
        self._item = chunk_item
        self.dtype = np.dtype(array.dtype)
        self._chunk = int((array.shards or array.chunks)[0])
        self._extra = [int(e) for e in array.shape[1:]]
        self._keys: dict[int, str] = {}
        self._prefix = f"{array.path}/" if array.path else ""
        self._encode = zarr_chunk_key_encoder(array)

    @classmethod
    def create(cls, array: zarr.Array) -> DirectRuns | RawRuns | None:
        """Return a direct reader for ``array``, or ``None`` when zarrs does not read it.

        An uncompressed sharded 1-D array on a local disk gets a :class:`~annshard._store._raw.RawRuns` (nothing to decode).
        """
        try:
            raw = RawRuns.create(array)
            if raw is not None:
                return raw
            chunk_item = zarrs_chunk_item()  # the private interface this relies on (a zarrs release may change it)
            if chunk_item is None:
                return None
            stored = zarr_stored_counts(array)
            for arr in (stored, array):
                impl = None if arr is None else zarrs_pipeline_impl(arr)
                if impl is not None:
                    return cls(arr, impl, chunk_item)
        except Exception:  # noqa: BLE001 - anything unexpected: read through zarr instead
            return None
        return None

    def _key(self, ci: int) -> str:
        key = self._keys.get(ci)
        if key is None:
            key = self._keys[ci] = self._prefix + self._encode((ci, *(0 for _ in self._extra)))
        return key

    def read(self, runs: NDArray[np.int64], out: np.ndarray, pool: BufferPool | None = None) -> None:
        """Decode ``runs`` (``(n, 2)`` start, stop) one after the other into ``out`` (C-contiguous).

        When ``out``'s dtype is wider than :attr:`dtype` (stored counts), the runs are decoded
        into a buffer from ``pool`` first and widened into ``out``.
        """
        if out.dtype != self.dtype:
            stored = (np.empty if pool is None else pool.empty)(out.size, self.dtype).reshape(out.shape)
            self.read(runs, stored)
            np.copyto(out, stored, casting="unsafe")
            return
        extra = self._extra
        full = [slice(0, e) for e in extra]
        shape = [int(out.shape[0]), *extra]
        chunk_shape = [self._chunk, *extra]
        items = [
            self._item(
                key=self._key(ci),
                chunk_subset=[slice(a, b), *full],
                chunk_shape=chunk_shape,
                subset=[slice(o, o + b - a), *full],
                shape=shape,
            )
            for ci, a, b, o in split_runs(runs, self._chunk)
        ]
        if items:
            self._impl.retrieve_chunks_and_apply_index(items, out)
