"""Registered collections on a bucket: storage locations whose root is a URL, artifacts at object paths.

A team shares collections through an instance with a storage location on a bucket, e.g.
``ln.Storage(root="s3://cells/team?endpoint_url=http://127.0.0.1:9000").save()`` (the query string is how
lamindb stores an S3-compatible server's endpoint). :func:`annshard.lamin.register` with ``storage=`` that root
(or with such a default storage) puts a local collection on the bucket with annshard's own uploader
(:mod:`annshard._store._upload`: create-only puts of the shards it does not hold yet, the manifest last, at
``<root>/annshard/<key>/<fingerprint>.zarr``), so lamindb never uploads (its upload asks LaminHub). A collection
already at a URL inside a storage location is registered in place. Each shard becomes an in-place
``ln.Artifact`` at its object path (with the root's query string, so lamindb finds the storage location).

Reading back never goes through lamindb's file system layer: :func:`artifact_url` builds an artifact's URL from
its storage root and storage key, and annshard reads it with obstore (the endpoint from the root's query string,
credentials from the ``AWS_*`` environment variables), so zarrs' pipeline reads the shards.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from annshard._compat import artifact_storage_key
from annshard._errors import AnnshardError
from annshard._store._collection import open_collection
from annshard._store._location import Location, is_url, location
from annshard._store._upload import commit_remote_manifest, upload_shards

if TYPE_CHECKING:
    from annshard._store._collection import Collection

    from ._undo import _Undo

__all__ = [
    "artifact_url",
    "place_on_bucket",
    "put_snapshot",
    "split_root",
    "storage_root",
    "storage_root_of",
    "with_query",
]


def split_root(root: str) -> tuple[str, str]:
    """Split a storage root ``s3://bucket/prefix?endpoint_url=...`` into the URL and its query string."""
    base, _, query = root.partition("?")
    return base.rstrip("/"), query


def with_query(url: str, query: str) -> str:
    """``url`` with the query string ``query`` (lamindb's way of naming an S3-compatible endpoint)."""
    return f"{url}?{query}" if query else url


def root_location(root: str, *parts: str) -> Location:
    """Return the :class:`Location` of ``parts`` under the storage root ``root`` (its query string as storage options)."""
    base, query = split_root(root)
    return location("/".join([base, *parts]), dict(parse_qsl(query)))


def _remote_roots() -> list[str]:
    import lamindb as ln

    return [r for r in ln.Storage.filter().values_list("root", flat=True) if is_url(r)]


def storage_root_of(url: str) -> str | None:
    """Return the root of the storage location (a URL) that holds ``url`` (the longest), or ``None``."""
    base = split_root(url)[0]
    found = [r for r in _remote_roots() if base.startswith(split_root(r)[0] + "/")]
    return max(found, key=len) if found else None


def storage_root(storage: Any) -> str | None:
    """Return the root string of ``storage`` (an ``ln.Storage``, a root, or ``None``: the default storage when remote).

    Raises
    ------
    AnnshardError
        If a root is given that is not a storage location of the instance.
    """
    import lamindb as ln

    if storage is None:
        root = ln.settings.storage.root_as_str
        return root if is_url(root) else None
    if isinstance(storage, ln.Storage):
        return str(storage.root)
    text = str(storage)
    if not is_url(text):
        return text
    roots = _remote_roots()
    for root in roots:
        if root == text or split_root(root)[0] == split_root(text)[0]:
            return root
    msg = (
        f"storage={text!r} is not a storage location of the lamindb instance (it has {roots or 'no'} remote ones); "
        f"create it first: ln.Storage(root={text!r}).save()"
    )
    raise AnnshardError(msg)


def artifact_url(artifact: Any) -> str | None:
    """Return the URL of an artifact on a bucket (with its storage root's query string), or ``None`` for local storage."""
    root = str(artifact.storage.root)
    if not is_url(root):
        return None
    base, query = split_root(root)
    return with_query(f"{base}/{artifact_storage_key(artifact)}", query)


def _held(dest: Location, local: Path, name: str, keys: set[str]) -> bool:
    """Whether every file of the local shard ``name`` is already an object under ``dest``."""
    files = [f.relative_to(local).as_posix() for f in (local / name).rglob("*") if f.is_file()]
    return bool(files) and all(k in keys for k in files)


def place_on_bucket(coll: Collection, key: str, root: str, undo: _Undo, *, name: str) -> Collection:
    """Return ``coll`` on the bucket storage ``root``: in place when it is there, else uploaded.

    A local collection goes to ``<root>/annshard/<key>/<name>`` (``name``: the fingerprint's): the shards the bucket does not hold
    yet (create-only puts; shards are immutable, so an earlier version's objects are never touched), then the
    manifest (conditional on the one it replaces). What it put is recorded in ``undo``.

    Raises
    ------
    AnnshardError
        If ``coll`` is at a URL outside ``root``.
    CollectionLockedError
        If another writer uploads to the same place at the same time.
    """
    base = split_root(root)[0]
    if coll.remote:
        if str(coll.path).startswith(base + "/"):
            return coll
        msg = (
            f"{coll.path}: the collection is at a URL outside the storage location {root}; annshard does not copy "
            "between buckets. Register it with storage= a storage location that holds it, or from a local copy"
        )
        raise AnnshardError(msg)
    dest = root_location(root, "annshard", *key.split("/"), name)
    local = Path(coll.path)
    got = dest.get_with_etag("zarr.json")
    keys = set(dest.list())
    new = [s.name for s in coll.shards if not _held(dest, local, s.name, keys)]
    put = upload_shards(local, dest, new, create=True)
    undo.on_undo(lambda: dest.delete(put))
    commit_remote_manifest(local, dest, if_match=None if got is None else got[1], create=got is None, uploaded=put)
    if got is None:
        undo.on_undo(lambda: dest.delete(["zarr.json"]))
    else:
        undo.on_undo(lambda: dest.put("zarr.json", got[0]))
    return open_collection(dest)


def put_snapshot(root: str, name: str, text: str, undo: _Undo) -> str:
    """Put a manifest snapshot at ``<root>/annshard/manifests/<name>`` (unless there); return its URL with the query."""
    dest = root_location(root, "annshard", "manifests")
    if dest.get(name) is None:
        dest.put(name, text.encode())
        undo.on_undo(lambda: dest.delete([name]))
    return with_query(f"{dest.url}/{name}", split_root(root)[1])
