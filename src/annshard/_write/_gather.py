"""Pass 2 of the external shuffle: turn each bucket into a shard.

A bucket's files are loaded whole (the layout sized buckets to fit the memory
budget), its rows are permuted by a generator seeded from
``(seed, generation, bucket)`` — so buckets are independent of each other and
of the order they are processed in — and written as one shard with
:func:`annshard._store._shard.write_shard`. The bucket's files are deleted as soon as
its shard is written, so temporary disk use shrinks as the pass goes.

The bucket files are read as the (frozen) :class:`~._layout.Layout` planned
them; the shards are written as the settled storage says (:class:`~._manifest.Stored`,
whose counts decisions the scatter pass's value statistics made). The pass returns
the :class:`~annshard.ShardInfo` of each shard it wrote.
"""

from __future__ import annotations

import os
from concurrent.futures import Executor, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import scipy.sparse as sp

from annshard._csr import row_gather
from annshard._store._manifest import ShardInfo, shard_name
from annshard._store._shard import write_shard

from ._compact import load_values
from ._memory import Buffers, trim

if TYPE_CHECKING:
    from collections.abc import Callable

    import zarr

    from annshard._store._manifest import StorageSpec

    from ._layout import Layout
    from ._manifest import Stored

__all__ = ["CSRParts", "decode_strings", "gather", "gather_bucket", "load_bucket", "take_rows"]


@dataclass
class CSRParts:
    """A CSR matrix as bare arrays, so index dtypes such as ``uint16`` are kept (scipy would upcast them)."""

    data: np.ndarray
    indices: np.ndarray
    indptr: np.ndarray
    shape: tuple[int, int]
    format: str = "csr"

    def toarray(self) -> np.ndarray:
        """Densify (for small checks)."""
        return sp.csr_matrix((self.data, self.indices, self.indptr), shape=self.shape).toarray()


def take_rows(
    data: np.ndarray,
    indices: np.ndarray,
    indptr: np.ndarray,
    rows: np.ndarray,
    n_vars: int,
    *,
    buffers: Buffers | None = None,
    key: str = "take",
) -> CSRParts:
    """Rows ``rows`` of a CSR matrix, in that order, keeping dtypes (``uint16`` indices stay ``uint16``).

    With ``buffers``, the values and indices are written into its arrays ``<key>.data`` / ``<key>.indices``
    (valid until their next use).
    """
    indptr = np.asarray(indptr)
    rows = np.asarray(rows)
    lengths = np.diff(indptr)[rows]
    new_indptr = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum(lengths, out=new_indptr[1:])
    nnz = int(new_indptr[-1])
    if buffers is None:
        out_data = np.empty(nnz, dtype=data.dtype)
        out_indices = np.empty(nnz, dtype=indices.dtype)
    else:
        out_data = buffers.array(f"{key}.data", nnz, data.dtype)
        out_indices = buffers.array(f"{key}.indices", nnz, indices.dtype)
    row_gather(rows, indptr, indices, data, out_indices, out_data)
    return CSRParts(out_data, out_indices, new_indptr, (len(rows), n_vars))


def decode_strings(blob: bytes, lengths: np.ndarray) -> np.ndarray:
    """Inverse of :func:`annshard._write._buckets.encode_strings`."""
    ends = np.cumsum(np.maximum(lengths, 0))
    starts = ends - np.maximum(lengths, 0)
    out = np.empty(len(lengths), dtype=object)
    out[:] = [
        None if n < 0 else blob[a:b].decode()
        for a, b, n in zip(starts.tolist(), ends.tolist(), lengths.tolist(), strict=True)
    ]
    return out


def _load(layout: Layout, k: int, key: str, dtype: np.dtype | type, count: int | None = None) -> np.ndarray:
    """Bucket ``k``'s items of ``key``: its file in every scatter part, concatenated in part order."""
    dtype = np.dtype(dtype)
    paths = layout.bucket_files(k, key)
    sizes = [p.stat().st_size for p in paths]
    if any(size % dtype.itemsize for size in sizes):
        bad = next(p for p, size in zip(paths, sizes, strict=True) if size % dtype.itemsize)
        msg = f"bucket file {bad} is cut mid-item; the temporary files were damaged"
        raise OSError(msg)
    arr = np.empty(sum(sizes) // dtype.itemsize, dtype=dtype)
    view, at = memoryview(arr.view(np.uint8)), 0
    for path, size in zip(paths, sizes, strict=True):
        with path.open("rb") as f:
            f.readinto(view[at : at + size])
        at += size
    if count is not None and arr.shape[0] != count:
        msg = f"bucket {k}'s files {key} hold {arr.shape[0]} items, expected {count}; the temporary files were damaged"
        raise OSError(msg)
    return arr


def _load_strings(layout: Layout, k: int, key: str, n: int) -> np.ndarray:
    lengths = _load(layout, k, f"{key}.len", np.int64, n)
    blob = b"".join(p.read_bytes() for p in layout.bucket_files(k, f"{key}.bytes"))
    return decode_strings(blob, lengths)


def _load_matrix(
    layout: Layout,
    k: int,
    prefix: str,
    storage: StorageSpec,
    n_cols: int,
    perm: np.ndarray,
    buffers: Buffers | None = None,
) -> CSRParts | np.ndarray:
    """Load one matrix of bucket ``k`` (files ``<prefix>data``, ...) with its rows in ``perm`` order.

    With ``buffers``, a CSR matrix's rows are permuted into its arrays (valid until the next bucket's). The
    files are read into fresh memory, freed before the shard is written: reused, they would be held idle
    through the encode (the budget's peak).
    """
    n = perm.shape[0]
    vdt = np.dtype(storage.data_dtype)
    if storage.x_format == "csr":
        rowlen = _load(layout, k, f"{prefix}rowlen", np.int64, n)
        indptr = np.concatenate([[0], np.cumsum(rowlen)])
        nnz = int(indptr[-1])
        data = load_values(layout, k, prefix, vdt, nnz)  # uint16 where every part's values are compact
        indices = _load(layout, k, f"{prefix}indices", np.dtype(storage.indices_dtype), nnz)
        return take_rows(data, indices, indptr, perm, n_cols, buffers=buffers, key=f"out.{prefix}")
    flat = _load(layout, k, f"{prefix}data", vdt, n * n_cols)
    return flat.reshape(n, n_cols)[perm]


def load_bucket(layout: Layout, k: int, buffers: Buffers | None = None) -> tuple[CSRParts | np.ndarray, pd.DataFrame]:
    """Load bucket ``k`` (its files as the layout planned them) and permute its rows; returns ``X`` and ``obs``.

    With ``buffers``, a CSR ``X`` lives in its arrays (valid until the next bucket's). ``obs`` (Python-bound:
    strings decoded, pandas columns) is built in a thread while this one reads and permutes ``X`` (file reads and
    scipy's row copy release the GIL).
    """
    n = layout.shard_rows[k]
    perm = layout.rng(1, k).permutation(n)
    with ThreadPoolExecutor(1, thread_name_prefix="annshard-obs") as pool:
        obs = pool.submit(_load_obs, layout, k, perm)
        X = _load_matrix(layout, k, "", layout.spec, layout.genes.n_vars, perm, buffers)
        return X, obs.result()


def _load_obs(layout: Layout, k: int, perm: np.ndarray) -> pd.DataFrame:
    """Bucket ``k``'s obs, its rows in ``perm`` order."""
    n = perm.shape[0]
    names = _load_strings(layout, k, "names", n)[perm]
    columns: dict[str, object] = {}
    for j, col in enumerate(layout.columns):
        if col.kind == "string":
            vals = _load_strings(layout, k, f"obs{j}", n)[perm]
            columns[col.name] = pd.array(vals, dtype="str") if len(vals) else pd.array([], dtype="str")
        else:
            vals = _load(layout, k, f"obs{j}", col.dtype, n)[perm]
            if col.kind == "categorical":
                columns[col.name] = pd.Categorical.from_codes(
                    vals, categories=pd.Index(col.categories), ordered=col.ordered
                )
            else:
                columns[col.name] = vals
    src = _load(layout, k, "src", np.int32, n)[perm]
    columns["source"] = pd.Categorical.from_codes(src, categories=pd.Index(layout.source_names))
    columns["source_row"] = _load(layout, k, "row", np.int64, n)[perm]
    return pd.DataFrame(columns, index=pd.Index(names))


def gather(
    layout: Layout,
    stored: Stored,
    root: zarr.Group,
    *,
    first_shard: int,
    progress: Callable[[int], None] | None = None,
) -> list[ShardInfo]:
    """Write every bucket of ``layout`` as a shard of ``root``, numbered from ``first_shard``; return their infos."""
    shards: list[ShardInfo] = []
    buffers = Buffers()  # one bucket after another in the same pages
    pending: list[Future[None]] = []
    # a shard's obs/var are written in this thread while the next bucket is loaded (they hold only its obs);
    # one thread, so shards' frames are written in order and the first shard's var exists before it is copied
    with ThreadPoolExecutor(1, thread_name_prefix="annshard-frames") as frames:
        try:
            for k, rows in enumerate(layout.shard_rows):
                name = shard_name(first_shard + k)
                var_from = shards[0].name if shards else None
                nnz = gather_bucket(
                    layout, stored, k, root, name, var_from=var_from, buffers=buffers, frames=frames, pending=pending
                )
                shards.append(ShardInfo(name=name, n_obs=rows, nnz=nnz, generation=layout.generation))
                _done(pending, wait=False)
                if progress is not None:
                    progress(rows)
        except BaseException:
            wait(pending)  # the error raised is this one; the shards are not published
            raise
        _done(pending, wait=True)
    return shards


def _done(pending: list[Future[None]], *, wait: bool) -> None:
    """Raise the first error of the shards' obs/var writes that are done (all of them, with ``wait``)."""
    while pending and (wait or pending[0].done()):
        pending.pop(0).result()


def gather_bucket(
    layout: Layout,
    stored: Stored,
    k: int,
    root: zarr.Group,
    name: str,
    var_from: str | None = None,
    *,
    keep_files: bool = False,
    buffers: Buffers | None = None,
    frames: Executor | None = None,
    pending: list[Future[None]] | None = None,
) -> int:
    """Write bucket ``k`` as shard ``name`` of ``root``, delete its files, and return its number of stored values.

    ``var_from`` names a shard of ``root`` written before, whose ``var`` is copied. ``keep_files``
    keeps the bucket's files (a distributed gather task may be retried; the driver removes them).
    ``buffers``: reused for the bucket's CSR arrays (see :class:`~._memory.Buffers`). ``frames`` and
    ``pending``: the shard's obs/var are left to that executor (:func:`~annshard._store._shard.write_shard`).
    """
    X, obs = load_bucket(layout, k, buffers)
    # the layers and obsm arrays, permuted like X (the same generator, the same rows)
    perm = layout.rng(1, k).permutation(layout.shard_rows[k])
    matrices = [
        (spec, _load_matrix(layout, k, f"m{j}.", p.spec.storage, p.spec.n_cols, perm, buffers))
        for j, (p, spec) in enumerate(zip(layout.matrices, stored.matrices, strict=True))
    ]
    src = None if var_from is None else root[var_from]
    nnz = write_shard(
        root,
        name,
        X=X,
        obs=obs,
        var=layout.genes.var,
        spec=stored.storage,
        var_from=src,
        matrices=matrices,
        frames=frames,
        pending=pending,
    )
    del X, obs, matrices
    for path in [] if keep_files else layout.workdir.glob(f"*/{k:05d}.*"):
        os.unlink(path)
    trim()
    return nnz
