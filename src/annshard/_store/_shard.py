"""One shard: a complete AnnData zarr store with ``X`` laid out for row-run reads.

``X`` is written by hand rather than through ``anndata.io.write_elem`` so the
chunking, zarr sharding, codec and index dtype follow the collection's
:class:`~annshard.StorageSpec`; it carries the same
``encoding-type`` / ``encoding-version`` attributes anndata writes, so
``anndata.read_zarr`` reads a shard as a normal AnnData.
"""

from __future__ import annotations

import shutil
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anndata as ad
import numpy as np
import scipy.sparse as sp
import zarr

from ._order import order_array_chunks, write_plain_1d

if TYPE_CHECKING:
    from collections.abc import Sequence

    import pandas as pd

    from ._manifest import MatrixSpec, StorageSpec

__all__ = ["ShardArrays", "open_shard_arrays", "write_shard"]

_INDPTR_CHUNK = 1 << 16


def _chunking(n: int, chunk: int, shard: int) -> tuple[tuple[int], tuple[int] | None]:
    """Inner chunk and shard lengths for a 1-D array of length ``n``."""
    chunk = max(1, min(chunk, n))
    if n <= chunk:
        return (chunk,), None
    shard = max(chunk, (min(shard, n) + chunk - 1) // chunk * chunk)
    return (chunk,), (shard,)


def _write_1d(
    group: zarr.Group,
    name: str,
    values: np.ndarray,
    spec: StorageSpec,
    *,
    chunk: int,
    shard: int,
    counts: bool = False,
    indices: bool = False,
    dtype: np.dtype | None = None,
) -> None:
    """Write a 1-D array; ``dtype``: the array's, when ``values`` are the counts filter's stored integers."""
    chunks, shards = _chunking(values.shape[0], chunk, shard)
    arr = group.create_array(
        name,
        shape=values.shape,
        dtype=values.dtype if dtype is None else dtype,
        chunks=chunks,
        shards=shards,
        filters=spec.counts_filters() if counts else (),
        compressors=spec.compressors(counts=counts, indices=indices),
        fill_value=0,
    )
    if values.shape[0]:
        local = _local_dir(group)
        if local is None or not write_plain_1d(arr, local / name, values):  # uncompressed: the files, directly
            arr[...] = values
            _order(group, name, arr)


def _local_dir(group: zarr.Group) -> Path | None:
    """Return the directory of ``group`` when it lives in a local store, else ``None``."""
    root = getattr(group.store, "root", None)
    return None if root is None else Path(root) / group.path


def _order(group: zarr.Group, name: str, arr: zarr.Array) -> None:
    """Put the inner chunks of ``arr``'s shard files in chunk order (byte-identical output, :mod:`._order`)."""
    local = _local_dir(group)
    if local is not None and arr.shards is not None:
        order_array_chunks(arr, local / name)


_DICT_ATTRS = {"encoding-type": "dict", "encoding-version": "0.1.0"}


def _write_frames(g: zarr.Group, obs: pd.DataFrame, var: pd.DataFrame, var_from: zarr.Group | None) -> None:
    """Write obs, var (copied from ``var_from``'s when given) and the empty AnnData elements."""
    ad.io.write_elem(g, "obs", obs)
    src, dst = (None, None) if var_from is None else (_local_dir(var_from), _local_dir(g))
    if src is not None and dst is not None and (src / "var").is_dir():
        shutil.copytree(src / "var", dst / "var")  # every shard's var is the same: written once, copied after
    else:
        ad.io.write_elem(g, "var", var)
    for key in ("varm", "obsp", "varp", "uns"):
        ad.io.write_elem(g, key, {})


def write_shard(
    root: zarr.Group,
    name: str,
    *,
    X: sp.csr_matrix | np.ndarray | Any,
    obs: pd.DataFrame,
    var: pd.DataFrame,
    spec: StorageSpec,
    var_from: zarr.Group | None = None,
    matrices: Sequence[tuple[MatrixSpec, Any]] = (),
    frames: Executor | None = None,
    pending: list[Future[None]] | None = None,
) -> int:
    """Write one shard as child group ``name`` of ``root``.

    Parameters
    ----------
    root
        The collection's (temporary) root group.
    name
        The shard's group name.
    X
        The shard's rows, already in the collection's gene order: CSR for
        ``spec.x_format == "csr"`` (a scipy matrix, or any object with ``format == "csr"``,
        ``data``, ``indices``, ``indptr`` and ``shape``), a 2-D array for ``"dense"``.
    obs
        The shard's obs, one row per row of ``X``; categorical columns carry the
        collection's full category lists.
    var
        The collection's var (identical for every shard).
    spec
        Storage layout.
    var_from
        A shard of the same collection already written: its ``var`` (which must equal ``var``)
        is copied file by file instead of being encoded again.
    matrices
        Layers and obsm arrays with the same rows as ``X`` (in the same order), each with its
        manifest entry; written as ``layers/<k>`` / ``obsm/<k>`` with their own storage.
    frames
        An executor with one thread that writes obs, var and the empty elements, left running when
        this returns (they hold no more than the shard's ``obs``): the caller goes on to its next
        shard meanwhile. Its future is appended to ``pending``; the shard is complete when it is
        done. Without it, a thread of this call writes them and the shard is complete on return.
    pending
        Where the future of ``frames`` goes (required with it).

    Returns
    -------
    The number of stored values.
    """
    g = root.create_group(name)
    g.attrs.update({"encoding-type": "anndata", "encoding-version": "0.1.0"})
    groups = {key: g.create_group(key) for key in ("layers", "obsm")}
    for group in groups.values():
        group.attrs.update(_DICT_ATTRS)
    for m, values in matrices:
        if values.shape[0] != X.shape[0] or values.shape[1] != m.n_cols:
            msg = f"{m.element}: has shape {tuple(values.shape)}, expected ({X.shape[0]}, {m.n_cols})"
            raise ValueError(msg)
    # obs and var are many small zarr nodes (Python-bound metadata writes): written in a thread while
    # X is written (and, with ``frames``, while the caller prepares its next shard)
    if frames is not None:
        assert pending is not None, "write_shard(frames=...) needs pending=[...] for its future"
        pending.append(frames.submit(_write_frames, g, obs, var, var_from))
        return _write_matrices(g, groups, X, spec, matrices)
    with ThreadPoolExecutor(1, thread_name_prefix="annshard-frames") as pool:
        done = pool.submit(_write_frames, g, obs, var, var_from)
        nnz = _write_matrices(g, groups, X, spec, matrices)
        done.result()
    return nnz


def _write_matrices(
    g: zarr.Group,
    groups: dict[str, zarr.Group],
    X: Any,
    spec: StorageSpec,
    matrices: Sequence[tuple[MatrixSpec, Any]],
) -> int:
    nnz = _write_x(g, X, spec)
    for m, values in matrices:
        _write_x(groups[m.group], values, m.storage, key=m.name)
    return nnz


def _write_x(g: zarr.Group, X: sp.csr_matrix | np.ndarray | Any, spec: StorageSpec, *, key: str = "X") -> int:
    n_obs, n_vars = X.shape
    if spec.x_format == "csr":
        # anything with CSR ``data``/``indices``/``indptr`` is written as is (scipy would upcast uint16 indices)
        if not (getattr(X, "format", None) == "csr" and hasattr(X, "indptr")):
            X = sp.csr_matrix(X) if not sp.issparse(X) else X.tocsr()
        xg = g.create_group(key)
        xg.attrs.update({"encoding-type": "csr_matrix", "encoding-version": "0.1.0", "shape": [n_obs, n_vars]})
        _write_1d(
            xg,
            "data",
            _stored_values(X.data, spec),
            spec,
            chunk=spec.chunk_elems,
            shard=spec.shard_elems,
            counts=True,
            dtype=np.dtype(spec.data_dtype),
        )
        _write_1d(
            xg,
            "indices",
            np.ascontiguousarray(X.indices, dtype=spec.indices_dtype),
            spec,
            chunk=spec.chunk_elems,
            shard=spec.shard_elems,
            indices=True,
        )
        _write_1d(
            xg,
            "indptr",
            np.ascontiguousarray(X.indptr, dtype=np.int64),
            spec,
            chunk=_INDPTR_CHUNK,
            shard=_INDPTR_CHUNK * 64,
        )
        nnz = int(X.data.shape[0])
    else:
        dense = X.toarray() if sp.issparse(X) else np.asarray(X)
        dense = np.ascontiguousarray(dense, dtype=spec.data_dtype)
        rows = max(1, min(spec.dense_chunk_rows, n_obs))
        shard_rows = max(rows, min(spec.dense_shard_rows, n_obs) // rows * rows)
        arr = g.create_array(
            key,
            shape=dense.shape,
            dtype=dense.dtype,
            chunks=(rows, max(1, n_vars)),
            shards=None if shard_rows <= rows else (shard_rows, max(1, n_vars)),
            compressors=spec.compressors(),
            fill_value=0,
        )
        arr.attrs.update({"encoding-type": "array", "encoding-version": "0.2.0"})
        if dense.size:
            arr[...] = dense
            _order(g, key, arr)
        nnz = int(dense.size)
    return nnz


def _stored_values(values: np.ndarray, spec: StorageSpec) -> np.ndarray:
    """Return CSR values ready for ``X/data``: the counts filter's stored integers, or ``data_dtype`` values.

    Counts given as unsigned integers of at most 2 bytes (such as the compact values of
    :mod:`annshard._write._compact`) are the stored integers already: narrowed to ``counts_dtype`` (the counts
    decision saw that they fit), not widened to ``data_dtype`` and narrowed again.
    """
    if spec.counts_dtype is not None and values.dtype.kind == "u" and values.dtype.itemsize <= 2:
        return np.ascontiguousarray(values, dtype=spec.counts_dtype)
    return np.ascontiguousarray(values, dtype=spec.data_dtype)


@dataclass(frozen=True)
class ShardArrays:
    """The zarr arrays behind one shard's ``X``.

    Attributes
    ----------
    kind
        ``"csr"`` or ``"dense"``.
    shape
        ``(n_obs, n_vars)``.
    data
        CSR values (``"csr"``) or the 2-D array (``"dense"``).
    indices
        CSR gene indices (``None`` for dense).
    indptr
        CSR row pointers (``None`` for dense).
    """

    kind: str
    shape: tuple[int, int]
    data: zarr.Array
    indices: zarr.Array | None = None
    indptr: zarr.Array | None = None


def open_shard_arrays(group: zarr.Group, *, element: str = "X") -> ShardArrays:
    """Open the arrays of a shard's ``X`` (or of a layer, ``element="layers/counts"``).

    Raises
    ------
    KeyError
        If the element is missing.
    ValueError
        If its encoding is not a CSR matrix or a dense array.
    """
    node: Any = group[element]
    enc = node.attrs.get("encoding-type")
    if isinstance(node, zarr.Array):
        return ShardArrays(kind="dense", shape=tuple(node.shape), data=node)  # type: ignore[arg-type]
    if enc != "csr_matrix":
        msg = f"{element} has encoding {enc!r}; annshard reads csr_matrix or dense arrays"
        raise ValueError(msg)
    shape = tuple(int(s) for s in node.attrs["shape"])
    return ShardArrays(
        kind="csr",
        shape=shape,  # type: ignore[arg-type]
        data=node["data"],
        indices=node["indices"],
        indptr=node["indptr"],
    )
