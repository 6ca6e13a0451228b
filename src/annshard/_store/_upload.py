"""Putting a collection written on local disk into an object store: shards first, the manifest last.

An object store has no rename, so the commit point of a remote collection is its root ``zarr.json`` (the
manifest): every shard's objects are uploaded before it, and a reader that opens the URL sees either the former
manifest (whose shards are all still there: a write never changes a shard already listed) or the new one, never a
half-written version. A new collection's manifest is put with ``If-None-Match: *`` (it must not exist yet, unless
overwriting); an append's with ``If-Match: <e-tag of the manifest it read>``, so of two concurrent appends exactly
one wins and the other gets :class:`~annshard.CollectionLockedError` after its shards are deleted again.

Two writers starting from one manifest choose the same new shard names, so shard objects are put with
``If-None-Match: *`` too (unless overwriting): the writer that finds an object already there stops at once and
deletes only the objects it created, never the other writer's. Objects left by a writer killed mid-upload are not
in any manifest; they make the next append stop with a message naming them (delete them, then retry).
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from annshard._errors import CollectionExistsError, CollectionLockedError

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

    from ._location import Location

__all__ = ["commit_remote_manifest", "upload_collection", "upload_shards"]

_UPLOAD_THREADS = 8


def _files(root: Path, names: Sequence[str]) -> list[tuple[str, Path]]:
    out = []
    for name in names:
        for f in sorted((root / name).rglob("*")):
            if f.is_file():
                out.append((f.relative_to(root).as_posix(), f))
    return out


def upload_shards(local: Path, dest: Location, names: Sequence[str], *, create: bool = True) -> list[str]:
    """Upload the shard directories ``names`` of the local collection ``local`` to ``dest``; return the keys put.

    With ``create`` every object must be new. On failure, the objects this call created are deleted again.

    Raises
    ------
    CollectionLockedError
        If an object already exists (another writer is uploading the same shards, or a killed one left them).
    """
    import obstore

    files = _files(local, names)
    done: list[str] = []
    lock = threading.Lock()

    def put(item: tuple[str, Path]) -> None:
        dest.upload(item[0], item[1], create=create)
        with lock:
            done.append(item[0])

    try:
        with ThreadPoolExecutor(_UPLOAD_THREADS, thread_name_prefix="annshard-upload") as pool:
            list(pool.map(put, files))
    except obstore.exceptions.AlreadyExistsError as e:
        dest.delete(done)
        shard = str(e).split("Object at location ", 1)[-1].split(" ", 1)[0]
        msg = (
            f"{dest}: {shard} already exists but is not in the collection's manifest: another writer is uploading "
            f"the same new shards, or one was killed mid-upload. Nothing of this write was kept; if no other writer "
            f"is running, delete the objects under {dest}/{shard.split('/', 1)[0]}/ that the manifest does not "
            "list, then retry"
        )
        raise CollectionLockedError(msg) from e
    except BaseException:
        dest.delete(done)
        raise
    return done


def commit_remote_manifest(
    local: Path, dest: Location, *, if_match: str | None = None, create: bool = False, uploaded: Sequence[str] = ()
) -> None:
    """Put the local collection's root ``zarr.json`` at ``dest`` (the commit point), conditionally.

    Parameters
    ----------
    local
        The staged collection.
    dest
        The collection's URL.
    if_match
        The e-tag of the manifest the new one replaces (an append): the put fails if another writer changed it.
    create
        The manifest must not exist yet (a new collection).
    uploaded
        Keys already uploaded for this version: deleted when the put loses.

    Raises
    ------
    CollectionLockedError
        If another writer committed first; the uploaded shards are deleted, the collection is as that writer left it.
    """
    import obstore

    data = (local / "zarr.json").read_bytes()
    try:
        dest.put("zarr.json", data, if_match=if_match, create=create)
    except (obstore.exceptions.PreconditionError, obstore.exceptions.AlreadyExistsError) as e:
        dest.delete(uploaded)
        what = "another writer appended to it" if if_match is not None else "a collection already exists there"
        msg = (
            f"{dest}: {what} while this write was uploading (its manifest changed); nothing of this write was kept. "
            "Open the collection again and retry (or pass overwrite=True for a new collection)"
        )
        raise CollectionLockedError(msg) from e


def upload_collection(local: Path, dest: Location, names: Sequence[str], *, overwrite: bool = False) -> None:
    """Upload a whole local collection to ``dest``: its shards, then its manifest.

    With ``overwrite``, objects of a former collection at ``dest`` that the new one does not have are deleted
    after the new manifest is in place (an overwrite is not safe against readers or writers of the former one:
    shard objects of the same name are replaced in place).

    Raises
    ------
    CollectionExistsError
        If ``dest`` already holds objects and ``overwrite`` is false.
    CollectionLockedError
        If a collection appeared at ``dest`` while uploading.
    """
    before = dest.list()
    if before and not overwrite:
        msg = f"{dest}: already holds {len(before)} objects; pass overwrite=True to replace them, or choose another prefix"
        raise CollectionExistsError(msg)
    keys = upload_shards(local, dest, names, create=not overwrite)
    commit_remote_manifest(local, dest, create=not overwrite, uploaded=keys)
    stale = sorted(set(before) - set(keys) - {"zarr.json"})
    if stale:
        dest.delete(stale)
