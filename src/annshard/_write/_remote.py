"""Writing and appending to a collection at a URL: stage on local disk, upload shards, put the manifest last.

The writer itself only writes local directories. For a URL, :func:`write_to_url` writes the whole collection into
a temporary directory (under ``tmp_dir``, or the system's temporary directory) and uploads it
(:mod:`annshard._store._upload`): shards first, the manifest last with ``If-None-Match: *``. :func:`append_to_url`
reads the remote manifest and its e-tag, rebuilds the part of the collection an append reads (the manifest and
the first shard's ``var``) in a temporary directory, appends there, uploads only the new shards and puts the new
manifest with ``If-Match: <e-tag>``. The local staging directory needs the disk space of what is written (the whole
collection for a write, the new shards for an append); it is removed afterwards, also on failure.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from annshard._errors import CollectionExistsError, CollectionFormatError
from annshard._store._collection import Collection, open_collection
from annshard._store._location import Location, location
from annshard._store._upload import commit_remote_manifest, upload_collection, upload_shards

if TYPE_CHECKING:
    import os
    from collections.abc import Callable, Mapping

__all__ = ["append_to_url", "write_to_url"]


def _staging(tmp_dir: str | os.PathLike[str] | None) -> tempfile.TemporaryDirectory[str]:
    return tempfile.TemporaryDirectory(prefix="annshard-stage-", dir=tmp_dir)


def write_to_url(
    write: Callable[..., Collection],
    url: str | Location,
    storage_options: Mapping[str, Any] | None,
    *,
    overwrite: bool,
    tmp_dir: str | os.PathLike[str] | None,
) -> Collection:
    """Write with ``write(path, overwrite=False)`` into a local staging directory, then upload to ``url``.

    Raises
    ------
    CollectionExistsError
        If objects are already stored under ``url`` and ``overwrite`` is false (checked before writing).
    CollectionLockedError
        If another writer created a collection there while this one was uploading (nothing of this one is kept).
    """
    dest = location(url, storage_options)
    if not overwrite and dest.exists():
        msg = f"{dest}: already holds objects (a collection?); pass overwrite=True to replace it, or choose another prefix"
        raise CollectionExistsError(msg)
    with _staging(tmp_dir) as d:
        local = write(Path(d) / "collection.zarr", overwrite=False)
        upload_collection(Path(local.path), dest, [s.name for s in local.shards], overwrite=overwrite)
    return open_collection(dest)


def _skeleton(dest: Location, raw: bytes, root: Path) -> Collection:
    """Rebuild in ``root`` what an append reads of the remote collection: its manifest and shard 0's ``var``."""
    root.mkdir()
    (root / "zarr.json").write_bytes(raw)
    coll = open_collection(root)
    if coll.origin != "annshard":
        msg = f"{dest}: was written by {coll.origin}; annshard appends only to its own collections"
        raise CollectionFormatError(msg)
    if coll.shards:
        first = coll.shards[0].name
        keys = [f"{first}/zarr.json", *dest.list(f"{first}/var/")]
        for key in keys:
            data = dest.get(key)
            if data is None:
                msg = f"{dest}: {key} is missing; the collection is damaged, rewrite it"
                raise CollectionFormatError(msg)
            target = root.joinpath(*key.split("/"))
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
    return coll


def append_to_url(
    append: Callable[..., Collection],
    url: str | Location,
    storage_options: Mapping[str, Any] | None,
    *,
    tmp_dir: str | os.PathLike[str] | None,
) -> Collection:
    """Append with ``append(local_collection)`` on a local rebuild of the collection at ``url``, then upload.

    Raises
    ------
    FileNotFoundError
        If there is no collection at ``url``.
    CollectionLockedError
        If another writer appended first (the manifest's e-tag changed) or is uploading the same new shards;
        this append's uploaded shards are deleted and the collection is as the other writer left it.
    """
    dest = location(url, storage_options)
    got = dest.get_with_etag("zarr.json")
    if got is None:
        msg = f"{dest}: no such collection (no zarr.json under this prefix); write one first with annshard.write_collection"
        raise FileNotFoundError(msg)
    raw, etag = got
    with _staging(tmp_dir) as d:
        root = Path(d) / "collection.zarr"
        old = _skeleton(dest, raw, root)
        new = append(root)
        listed = {s.name for s in old.shards}
        names = [s.name for s in new.shards if s.name not in listed]
        keys = upload_shards(root, dest, names, create=True)
        commit_remote_manifest(root, dest, if_match=etag, uploaded=keys)
    return open_collection(dest)
