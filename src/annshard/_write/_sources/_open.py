"""Opening inputs: which source kind reads a given path or object, unique source names, several sources at once."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pandas as pd

from annshard._errors import SourceError

from ._anndata import AnnDataSource, BackedSource
from ._base import Source
from ._store import StoreSource

__all__ = ["open_source", "open_sources", "source_names"]


_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def _open_h5ad(path: Path, name: str, layer: str | None) -> Source:
    import h5py

    with path.open("rb") as f:
        head = f.read(8)
    if head != _HDF5_SIGNATURE:
        msg = f"{path}: is not an AnnData .h5ad file (not HDF5); pass .h5ad files or AnnData zarr directories"
        raise SourceError(msg)
    try:
        with h5py.File(path, "r") as f:
            legacy = "encoding-type" not in f.attrs and "obs" in f and "var" in f
    except Exception as e:
        msg = f"{path}: the HDF5 file cannot be opened ({e}); it is truncated or corrupt, re-download or re-write it"
        raise SourceError(msg) from e
    if legacy:
        return BackedSource(path, name, layer=layer)
    return StoreSource(lambda: h5py.File(path, "r"), path, "h5ad", name, layer=layer)


def _open_zarr(path: Path, name: str, layer: str | None) -> Source:
    import zarr

    try:
        zarr.open_group(path, mode="r")
    except Exception as e:
        msg = f"{path}: is not a zarr store ({e}); pass .h5ad files or AnnData zarr directories"
        raise SourceError(msg) from e
    return StoreSource(lambda: zarr.open_group(path, mode="r"), path, "zarr", name, layer=layer)


def open_source(obj: Any, name: str, *, layer: str | None = None) -> Source:
    """Open one source lazily.

    Parameters
    ----------
    obj
        A path to an ``.h5ad`` file or an AnnData zarr directory, or an AnnData.
    name
        Its label in ``obs["source"]``.
    layer
        Read this layer instead of ``X``.

    Raises
    ------
    SourceError
        If it is missing, not AnnData, corrupt or empty.
    """
    import anndata as ad

    if isinstance(obj, ad.AnnData):
        if obj.isbacked and obj.filename is not None:
            src: Source = _open_h5ad(Path(obj.filename), name, layer)
        else:
            src = AnnDataSource(obj, name, layer=layer)
    elif isinstance(obj, str | os.PathLike):
        path = Path(obj)
        if not path.exists():
            msg = f"{path}: no such file or directory; check the path"
            raise SourceError(msg)
        src = _open_zarr(path, name, layer) if path.is_dir() else _open_h5ad(path, name, layer)
    else:
        msg = f"source {name!r} is a {type(obj).__name__}; pass .h5ad paths, AnnData zarr paths or AnnData objects"
        raise SourceError(msg)
    if src.n_obs == 0:
        src.close()
        msg = f"{src.label}: has 0 rows (cells); remove it from the sources"
        raise SourceError(msg)
    if src.n_vars == 0:
        src.close()
        msg = f"{src.label}: has 0 genes (var is empty); remove it from the sources"
        raise SourceError(msg)
    return src


def source_names(sources: Any) -> list[tuple[str, Any]]:
    """Pair each source with a unique label: the file name, the path when names collide, ``adata-<i>`` otherwise."""
    if isinstance(sources, dict):
        return [(str(k), v) for k, v in sources.items()]
    if isinstance(sources, str | os.PathLike) or not hasattr(sources, "__iter__"):
        sources = [sources]
    items = list(sources)
    names = []
    for i, obj in enumerate(items):
        if isinstance(obj, str | os.PathLike):
            names.append(Path(obj).name)
        else:
            fn = getattr(obj, "filename", None)
            names.append(Path(fn).name if fn else f"adata-{i}")
    counts = pd.Series(names).value_counts()
    out = []
    for i, (obj, n) in enumerate(zip(items, names, strict=True)):
        if counts[n] > 1:
            n = str(Path(obj)) if isinstance(obj, str | os.PathLike) else f"{n}-{i}"
        out.append((n, obj))
    if len({n for n, _ in out}) != len(out):
        msg = "sources have colliding names; pass a dict {name: source} to name them"
        raise SourceError(msg)
    return out


def open_sources(sources: Any, *, layer: str | None = None) -> list[Source]:
    """Open all sources, closing those already opened if one fails."""
    opened: list[Source] = []
    try:
        for name, obj in source_names(sources):
            opened.append(open_source(obj, name, layer=layer))
    except BaseException:
        for s in opened:
            s.close()
        raise
    if not opened:
        msg = "no sources given; pass at least one .h5ad path, AnnData zarr path or AnnData"
        raise SourceError(msg)
    return opened
