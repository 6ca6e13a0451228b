"""Loading a registered collection back: exactly one version's shards, checked against storage.

:func:`open_registered` turns an ``ln.Collection`` into an
:class:`annshard.Collection` restricted to that version's shards, read from the
manifest snapshot (:mod:`~annshard.lamin._snapshot`) or, for a collection
annshard did not register, from the directory the shards lie in. Missing or
changed shard files raise :class:`~annshard.CorruptShardError`; artifacts that
are not the shards of one collection raise
:class:`~annshard.lamin.NotAnnshardCollectionError`. :func:`load_collection`
builds an :class:`annshard.Loader` on it and records the use on the active run
(:mod:`~annshard.lamin._usage`); ``ln.Collection.loader()`` calls it.

Shards on a bucket storage (:mod:`~annshard.lamin._bucket`) are read with annshard's obstore store from the
artifact's URL (the endpoint from the storage root's query string, credentials from the ``AWS_*`` environment
variables), never through lamindb's file system layer; the loader's shard cache defaults to
``<ln.settings.cache_dir>/annshard`` for them.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from annshard._errors import CollectionFormatError, CorruptShardError
from annshard._store._collection import Collection, open_collection
from annshard._store._location import Location, location
from annshard._store._manifest import Manifest

from ._bucket import artifact_url
from ._errors import NotAnnshardCollectionError
from ._instance import require_instance
from ._storage import _local_path
from ._usage import record_use

if TYPE_CHECKING:
    from annshard._load._loader import Loader

__all__ = ["load_collection", "open_registered"]


def _where(artifact: Any) -> tuple[Location, str]:
    """Return the location of the folder holding an artifact's files, and the artifact's name in it."""
    url = artifact_url(artifact)
    if url is None:
        path = _local_path(artifact)
        return location(path.parent), path.name
    loc = location(url)
    assert loc.url is not None
    parent, _, name = loc.url.rpartition("/")
    return location(parent, loc.options), name


def _meta_manifest(record: Any) -> Manifest | None:
    meta = record.meta_artifact
    if meta is None:
        return None
    try:
        parent, name = _where(meta)
        raw = parent.get(name)
        doc = json.loads(raw.decode()) if raw is not None else None
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    raw = doc.get("annshard") if isinstance(doc, dict) else None
    if raw is None:
        return None
    return Manifest.from_dict(raw, where=f"lamindb collection {record.key!r} (meta artifact {meta.uid})")


def _shard_rows(parent: Location, name: str) -> int | None:
    """Rows of a shard's ``X`` from its metadata alone (``None`` if unreadable)."""
    try:
        meta = parent.read_json(f"{name}/X/zarr.json") or {}
    except (OSError, ValueError):
        return None
    shape = meta.get("attributes", {}).get("shape") or meta.get("shape")
    return int(shape[0]) if shape else None


def open_registered(record: Any) -> Collection:
    """Open the annshard collection behind a lamindb collection, restricted to exactly this version's shards.

    Parameters
    ----------
    record
        An ``ln.Collection`` registered by :func:`register` or made by hand from
        the shard artifacts of one annshard (or annbatch) collection.

    Raises
    ------
    CorruptShardError
        If a shard artifact's files are missing from storage or changed since registration.
    NotAnnshardCollectionError
        If the artifacts are not the shards of one annshard or annbatch collection.
    """
    label = f"lamindb collection {record.key!r} (version {record.version}, uid {record.uid})"
    artifacts = list(record.ordered_artifacts.all())
    if not artifacts:
        msg = f"{label} has no artifacts"
        raise NotAnnshardCollectionError(msg)
    places = []
    for art in artifacts:
        parent, name = _where(art)
        exists = (Path(parent.path) / name).exists() if parent.path is not None else parent.get(f"{name}/zarr.json")
        if not exists:
            msg = (
                f"{label}: the files of shard artifact {art.uid} ({art.key}) are missing from storage at "
                f"{parent}/{name}; restore them, or register the collection again from an intact copy"
            )
            raise CorruptShardError(msg)
        places.append((parent, name))
    parents = {str(p) for p, _ in places}
    manifest = _meta_manifest(record)
    if len(parents) != 1:
        msg = (
            f"{label}: its artifacts are not the shards of one collection (they lie in {len(parents)} directories); "
            "annshard loads collections registered with annshard.lamin.register, or plain collections of the shards "
            "of one annshard/annbatch collection. Use collection.mapped() for other AnnData collections, or write "
            "them into one with annshard.write_collection([a.cache() for a in collection.ordered_artifacts], ...)"
        )
        raise NotAnnshardCollectionError(msg)
    parent = places[0][0]
    if manifest is None:
        try:
            manifest = open_collection(parent).manifest
        except CollectionFormatError as e:
            msg = (
                f"{label} was not written by annshard and its directory {parent} is not an annshard or annbatch "
                f"collection ({e}); use collection.mapped(), or write the artifacts into a collection with "
                "annshard.write_collection([a.cache() for a in collection.ordered_artifacts], ...)"
            )
            raise NotAnnshardCollectionError(msg) from e
    by_name = {s.name: s for s in manifest.shards}
    shards = []
    for art, (_, name) in zip(artifacts, places, strict=True):
        info = by_name.get(name)
        if info is None:
            msg = f"{label}: artifact {art.uid} ({parent}/{name}) is not a shard of the collection in {parent}"
            raise NotAnnshardCollectionError(msg)
        rows = _shard_rows(parent, name)
        if rows is not None and rows != info.n_obs:
            msg = (
                f"{label}: shard {parent}/{name} has {rows} rows on disk but {info.n_obs} when it was registered; its files "
                "were changed after registration. Register the collection again (a new version)"
            )
            raise CorruptShardError(msg)
        shards.append(info)
    generations = {s.generation for s in shards}
    manifest = replace(
        manifest,
        shards=tuple(shards),
        n_obs=sum(s.n_obs for s in shards),
        sources=tuple(s for s in manifest.sources if s.generation in generations),
    )
    return Collection(parent, manifest)


def load_collection(record: Any, *, version: str | None = None, **loader_kwargs: Any) -> Loader:
    """Build an :class:`annshard.Loader` over a registered collection; record the use on the active run.

    Parameters
    ----------
    record
        An ``ln.Collection`` or its key.
    version
        A version of the collection's family (``"1"``, ``"2"``, ...); default: the record itself
        (for a key: the latest version).
    **loader_kwargs
        Passed to :class:`annshard.Loader`. For shards on a bucket storage, ``cache`` defaults to
        ``<ln.settings.cache_dir>/annshard`` (pass ``cache=None`` to read every epoch from the bucket).

    Returns
    -------
    The loader.

    Examples
    --------
    >>> import annshard
    >>> loader = annshard.lamin.load_collection("pbmc/train", version="1", batch_size=1024)  # doctest: +SKIP
    """
    require_instance()
    import lamindb as ln

    from annshard import Loader

    if isinstance(record, str):
        query = ln.Collection.filter(key=record)
        query = query.filter(version_tag=version) if version is not None else query.filter(is_latest=True)
        found = query.order_by("-created_at").first()
        if found is None:
            versions = sorted(ln.Collection.filter(key=record).values_list("version_tag", flat=True), key=str)
            what = f"version {version!r} of " if version is not None else ""
            msg = f"no {what}lamindb collection with key {record!r} (versions: {versions or 'none'})"
            raise KeyError(msg)
        record = found
    elif version is not None and record.version != version:
        found = record.versions.filter(version_tag=version).first()
        if found is None:
            versions = sorted(record.versions.values_list("version_tag", flat=True), key=str)
            msg = f"collection {record.key!r} has no version {version!r} (versions: {versions})"
            raise KeyError(msg)
        record = found
    coll = open_registered(record)
    if coll.remote and "cache" not in loader_kwargs:
        loader_kwargs["cache"] = Path(ln.settings.cache_dir) / "annshard"
    loader = Loader(coll, **loader_kwargs)
    record_use(record, loader.settings())
    return loader
