"""The :class:`Collection` handle: a read-only view of a collection on disk.

Opening a collection reads only its manifest; ``var`` and per-shard arrays are
read lazily. The manifest is the whole in-memory model of a collection: a
collection written by annbatch is opened by synthesising a manifest from its
AnnData children (see :mod:`annshard._store._annbatch`; :mod:`annshard._store._read`
picks the reader). A collection at a URL (``s3://...``, :mod:`annshard._store._location`) reads its manifest
and shards through zarr's ``ObjectStore``; its :attr:`Collection.path` is then the URL string. A collection is changed only by the writer
(:func:`annshard.write_collection`, :func:`annshard.append_collection`), never
through this handle.
"""

from __future__ import annotations

import os
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import zarr

from annshard._config import zarr_config

from ._atomic import recover_overwrite
from ._location import Location, location
from ._read import read_manifest, read_remote_manifest

if TYPE_CHECKING:
    from collections.abc import Mapping

    import pandas as pd

    from ._cache import ShardCache
    from ._manifest import Manifest, ObsColumn, ShardInfo, SourceInfo

__all__ = ["Collection", "open_collection"]


class Collection:
    """A sharded, globally shuffled AnnData collection on disk.

    Use :func:`annshard.open_collection` or :func:`annshard.write_collection` to get one. The handle is
    read-only: :func:`annshard.append_collection` adds sources and returns the updated collection.

    Parameters
    ----------
    path
        The collection's root directory, or its :class:`~annshard._store._location.Location` (a URL and its
        storage options).
    manifest
        Its manifest.

    Attributes
    ----------
    path
        The root directory (a :class:`~pathlib.Path`), or the URL (a ``str``) of a remote collection.
    location
        Where it is: the path, or the URL with its storage options.
    """

    def __init__(self, path: str | os.PathLike[str] | Location, manifest: Manifest) -> None:
        self.location = location(path)
        self.path: Path | str = self.location.url if self.location.remote else Path(self.location.path)  # type: ignore[arg-type]
        self.manifest = manifest
        self.cache: ShardCache | None = None  # set on a loader's copy of a remote collection (Loader(cache=...))

    # -- what the manifest says -------------------------------------------------
    @property
    def n_obs(self) -> int:
        """Total number of rows (cells)."""
        return self.manifest.n_obs

    @property
    def n_vars(self) -> int:
        """Number of genes."""
        return self.manifest.n_vars

    @property
    def shape(self) -> tuple[int, int]:
        """``(n_obs, n_vars)``."""
        return (self.n_obs, self.n_vars)

    @property
    def seed(self) -> int:
        """The shuffle seed of the first write."""
        return self.manifest.seed

    @property
    def join(self) -> str:
        """How the sources' gene spaces were joined."""
        return self.manifest.join

    @property
    def shards(self) -> tuple[ShardInfo, ...]:
        """The shards, in global row order."""
        return self.manifest.shards

    @property
    def sources(self) -> tuple[SourceInfo, ...]:
        """The inputs, in the order they were given."""
        return self.manifest.sources

    @property
    def format_version(self) -> int:
        """The on-disk format version."""
        return self.manifest.format_version

    @property
    def obs_columns(self) -> dict[str, ObsColumn]:
        """The stored obs columns by name; categorical ones carry their shared categories."""
        return {c.name: c for c in self.manifest.obs_columns}

    @property
    def origin(self) -> str:
        """``"annshard"``, or ``"annbatch"`` for a collection written by annbatch."""
        return str(self.manifest.extra.get("origin", "annshard"))

    @cached_property
    def var(self) -> pd.DataFrame:
        """Gene annotations (identical in every shard), in the collection's gene order."""
        import anndata as ad

        with zarr_config():
            return ad.io.read_elem(self.shard_group(0)["var"])

    @property
    def var_names(self) -> pd.Index:
        """Gene names in the collection's order."""
        return self.var.index

    # -- access to shards ---------------------------------------------------------
    @property
    def remote(self) -> bool:
        """Whether the collection is at a URL (read through an object store)."""
        return self.location.remote

    def shard_path(self, i: int) -> Path:
        """Directory of shard ``i`` (a local collection only)."""
        if self.location.remote:
            msg = f"{self.path}: a remote collection has no local shard directories; use shard_group({i})"
            raise TypeError(msg)
        return Path(self.path) / self.manifest.shards[i].name

    def shard_exists(self, i: int) -> bool:
        """Whether shard ``i`` is stored (its directory, or its ``zarr.json`` object)."""
        if not self.location.remote:
            return self.shard_path(i).is_dir()
        return self.location.get(f"{self.manifest.shards[i].name}/zarr.json") is not None

    def shard_group(self, i: int) -> zarr.Group:
        """Open the zarr group of shard ``i`` (read-only)."""
        if not self.location.remote:
            return zarr.open_group(self.shard_path(i), mode="r")
        store = self.__dict__.get("_zarr_store")
        if store is None:
            store = self.__dict__["_zarr_store"] = self.location.zarr_store()
        return zarr.open_group(store, path=self.manifest.shards[i].name, mode="r")

    def element_group(self, i: int, element: str = "X") -> zarr.Group:
        """Open shard ``i`` for reading ``element``'s arrays: from the local cache when one is set, else :meth:`shard_group`."""
        if self.cache is not None and self.location.remote:
            return self.cache.group(self, i, element)
        return self.shard_group(i)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.pop("_zarr_store", None)
        return state

    def __repr__(self) -> str:
        cats = ", ".join(self.obs_columns)
        return (
            f"Collection({str(self.path)!r}, n_obs={self.n_obs}, n_vars={self.n_vars}, "
            f"shards={len(self.shards)}, seed={self.seed}, join={self.join!r}, obs=[{cats}])"
        )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Collection) and self.path == other.path and self.manifest == other.manifest

    def __hash__(self) -> int:
        return hash(str(self.path))


def open_collection(
    path: str | os.PathLike[str] | Collection, *, storage_options: Mapping[str, Any] | None = None
) -> Collection:
    """Open a collection written by annshard (or by annbatch's ``DatasetCollection``), on disk or at a URL.

    The manifest is checked as a schema before it is used (types, ranges, allowed values; shard names plain,
    unique and resolving inside the collection). If ``path`` is missing because an overwrite was killed between
    its two renames, the previous collection is moved back first.

    Parameters
    ----------
    path
        The collection's root directory, or its URL (``s3://bucket/prefix/cells.zarr``; any URL obstore reads).
    storage_options
        For a URL: fsspec/s3fs-style options (``endpoint_url``, ``key``, ``secret``, ``token``, ``anon``,
        ``region``); what is not given comes from the URL's query string and the ``AWS_*`` environment variables.

    Returns
    -------
    The collection.

    Raises
    ------
    FileNotFoundError
        If nothing exists at ``path`` (and no interrupted overwrite left a collection to restore); for a URL,
        if its bucket or prefix holds no manifest.
    OSError
        If a URL cannot be read (no such bucket, wrong endpoint or credentials); the message names the URL.
    CollectionFormatError
        If ``path`` is not a collection, an incomplete one (an interrupted write), or its manifest is invalid;
        the message names the field and the fix.

    Examples
    --------
    >>> import annshard
    >>> coll = annshard.open_collection("cells.zarr")  # doctest: +SKIP
    >>> coll.n_obs, coll.n_vars  # doctest: +SKIP
    (200000, 20000)
    """
    if isinstance(path, Collection):
        return path
    loc = location(path, storage_options)
    if loc.remote:
        return Collection(loc, read_remote_manifest(loc))
    path = Path(loc.path)  # type: ignore[arg-type]
    if not path.exists():
        recover_overwrite(path)
    if not path.exists():
        msg = f"{path}: no such collection (the path does not exist)"
        raise FileNotFoundError(msg)
    return Collection(path, read_manifest(path))
