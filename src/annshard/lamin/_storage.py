"""Where a registered collection's shards are stored: in place, or copied into the default storage root.

A collection that lies inside a local storage root of the instance is registered
**in place**: each shard (an AnnData zarr store) becomes an ``ln.Artifact`` of
its own files. A collection elsewhere is first copied into the default storage
root, under ``annshard/<key>/<fingerprint>.zarr``, by annshard itself (so
lamindb never uploads, which would ask LaminHub over the network). The
fingerprint (seed, genes, first-generation shards) stays the same across
appends, and shards are immutable, so a re-registration after
:func:`annshard.append_collection` copies only the new shards and never touches
an earlier version's files. The copy's destination must resolve inside
``<storage root>/annshard/`` (a symlink cannot lead it out).

``register(..., storage=...)`` chooses the storage location (an ``ln.Storage`` or its root); without it, a
collection at a URL is registered in the storage location that holds it, and a local one in place or in the
default storage. A storage location on a bucket is :mod:`~annshard.lamin._bucket`'s.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from annshard._errors import AnnshardError
from annshard._store._atomic import copy_collection
from annshard._store._collection import open_collection
from annshard._store._location import is_url

from ._bucket import place_on_bucket, storage_root, storage_root_of
from ._errors import InvalidKeyError
from ._instance import default_storage_root

if TYPE_CHECKING:
    from annshard._store._collection import Collection

    from ._undo import _Undo

__all__ = ["_local_path", "_place_in_storage"]


def _local_path(artifact: Any) -> Path:
    path = artifact.path
    if getattr(path, "protocol", "file") in {"file", "local", ""}:
        return Path(os.fspath(path))
    return Path(os.fspath(artifact.cache()))  # pragma: no cover - cloud storage


def _storage_roots() -> list[Path]:
    import lamindb as ln

    roots = []
    for root in ln.Storage.filter().values_list("root", flat=True):
        if "://" not in root or root.startswith("file://"):
            roots.append(Path(root.removeprefix("file://")).resolve())
    return roots


def _fingerprint(coll: Collection) -> str:
    """Identify a collection across appends: seed, genes and its first-generation shards."""
    m = coll.manifest
    first = [s.to_dict() for s in m.shards if s.generation == 0]
    doc = {"seed": m.seed, "n_vars": m.n_vars, "join": m.join, "storage": m.storage.to_dict(), "shards": first}
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:12]


def _copy_into(coll: Collection, dest: Path, undo: _Undo) -> Collection:
    """Copy ``coll`` into ``dest``: missing shards only (shards are immutable), then the manifest last.

    Everything created or overwritten is recorded in ``undo``.
    """
    undo.mkdir(dest)
    copy_collection(coll.path, dest, [info.name for info in coll.shards], before_write=undo.will_write)
    return open_collection(dest)


def _place_in_storage(coll: Collection, key: str, undo: _Undo, storage: Any = None) -> tuple[Collection, str | None]:
    """Return the collection where it is registered, and the root of its storage location when that is a bucket."""
    remote = storage_root_of(str(coll.path)) if storage is None and coll.remote else storage_root(storage)
    if remote is None and coll.remote:
        msg = (
            f"{coll.path}: no storage location of the lamindb instance holds this URL; create one that does, "
            "e.g. ln.Storage(root='s3://bucket/prefix?endpoint_url=...').save(), then register again"
        )
        raise AnnshardError(msg)
    if remote is not None and is_url(remote):
        return place_on_bucket(coll, key, remote, undo, name=f"{_fingerprint(coll)}.zarr"), remote
    root = None if remote is None else Path(remote.removeprefix("file://")).resolve()
    if root is not None and root not in _storage_roots():
        msg = f"storage={remote!r} is not a storage location of the lamindb instance; create it first: ln.Storage(root={remote!r}).save()"
        raise AnnshardError(msg)
    return _place_local(coll, key, undo, root), None


def _place_local(coll: Collection, key: str, undo: _Undo, root: Path | None) -> Collection:
    path = Path(coll.path).resolve()
    for known in [root] if root is not None else _storage_roots():
        if path.is_relative_to(known):
            return coll
    root = root or default_storage_root()
    if root is None:
        msg = (
            f"{coll.path}: the collection is outside every local storage root of the lamindb instance and the default "
            "storage is not local; write the collection inside a storage root (e.g. "
            "annshard.write_collection(..., ln.settings.storage.root / 'my.zarr')) and register it there"
        )
        raise AnnshardError(msg)
    dest = root / "annshard" / key / f"{_fingerprint(coll)}.zarr"
    # the key was checked (check_key); a symlink inside the storage root may still lead elsewhere
    if not dest.resolve().is_relative_to((root / "annshard").resolve()):
        msg = f"lamindb key {key!r}: the copy would go to {dest.resolve()}, outside {root / 'annshard'} (a symlink?); use another key"
        raise InvalidKeyError(msg)
    return _copy_into(coll, dest, undo)
