"""Registering annshard collections in lamindb: the run, the shard artifacts, the versioned collection.

A collection on disk becomes

- one ``ln.Artifact`` per shard, in place or copied into the default storage
  root (:mod:`~annshard.lamin._storage`);
- a *meta artifact*, the manifest snapshot with the queryable features
  (:mod:`~annshard.lamin._snapshot`);
- an ``ln.Collection(key=...)`` of the shard artifacts in global row order,
  with that meta artifact. A key that already has a collection with other
  shards gets a new version (``revises``, ``version="2"``, ...); the same shards
  return the existing version.

Everything is created by a run of the transform ``annshard.lamin.register``
whose inputs are the source artifacts, so ``collection.view_lineage()`` shows
sources -> run -> collection; it is started by the active run, if any. A
registration that fails is taken back (:mod:`~annshard.lamin._undo`); its run
stays, marked as failed.

Loading back is :mod:`~annshard.lamin._open`; querying is
:mod:`~annshard.lamin._find`.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from annshard._compat import set_run_status
from annshard._errors import AnnshardError
from annshard._store._collection import open_collection
from annshard._version import __version__

from ._bucket import split_root, storage_root, with_query
from ._errors import check_key
from ._instance import default_storage_root, require_instance
from ._snapshot import _meta_artifact
from ._storage import _local_path, _place_in_storage
from ._undo import _roll_back, _save_new, _Undo

if TYPE_CHECKING:
    from collections.abc import Sequence

    from annshard._store._collection import Collection

__all__ = ["TRANSFORM_KEY", "register", "write_and_register"]

TRANSFORM_KEY = "annshard.lamin.register"


def _source_artifacts(coll: Collection, sources: Sequence[Any] | None) -> list[Any]:
    import lamindb as ln

    found: dict[str, Any] = {}
    uids = [s.uid for s in coll.sources if s.uid]
    for item in sources or ():
        if isinstance(item, ln.Artifact):
            found[item.uid] = item
        elif isinstance(item, str) and not Path(item).exists():
            uids.append(item)
    missing = [u for u in uids if u not in found]
    if missing:
        for art in ln.Artifact.filter(uid__in=missing):
            found[art.uid] = art
        unknown = sorted(set(missing) - set(found))
        if unknown:
            msg = f"source artifact uids {unknown} are not in the lamindb instance; register them or pass paths"
            raise AnnshardError(msg)
    return list(found.values())


def _transform() -> Any:
    import lamindb as ln

    transform = ln.Transform.filter(key=TRANSFORM_KEY, version_tag=__version__).first()
    if transform is None:
        transform = ln.Transform(
            key=TRANSFORM_KEY,
            kind="function",
            version=__version__,
            description="annshard: register a sharded, shuffled AnnData collection",
        ).save()
    return transform


def _next_version(latest: Any) -> str:
    if latest is None:
        return "1"
    try:
        return str(int(latest.version_tag) + 1)
    except (TypeError, ValueError):
        return str(latest.versions.count() + 1)


def _shard_data(coll: Collection, i: int, root: str | None) -> Any:
    """Return what ``ln.Artifact`` registers in place for shard ``i``: its directory, or its URL with the root's query."""
    if root is None:
        return coll.shard_path(i)
    return with_query(f"{coll.path}/{coll.shards[i].name}", split_root(root)[1])


def _finish(run: Any, *, ok: bool) -> None:
    run.finished_at = datetime.now(UTC)
    set_run_status(run, ok=ok)
    run.save()


# -- public API ------------------------------------------------------------------------------------
def register(
    collection: Collection | str | os.PathLike[str],
    *,
    key: str,
    description: str | None = None,
    sources: Sequence[Any] | None = None,
    storage: Any = None,
) -> Any:
    """Register a collection in the current lamindb instance as a versioned ``ln.Collection``.

    Parameters
    ----------
    collection
        An annshard collection (or its path).
    key
        The lamindb key, e.g. ``"pbmc/train"``. A key with a collection of other
        shards gets a new version; the same shards return the existing version.
    description
        A description of the collection.
    sources
        The source ``ln.Artifact`` objects (or their uids) the collection was
        written from; they become the inputs of the registration run. Sources the
        manifest already knows by uid are added automatically.
    storage
        The storage location to register in: an ``ln.Storage`` or its root, e.g. a bucket
        ``"s3://cells/team?endpoint_url=http://127.0.0.1:9000"`` (created before with
        ``ln.Storage(root=...).save()``). Default: for a collection at a URL, the storage location that holds
        it; for a local one, in place inside a local storage location, else the default storage. A local
        collection is uploaded to a bucket storage by annshard (``<root>/annshard/<key>/<fingerprint>.zarr``:
        only the shards the bucket does not hold yet, the manifest last; lamindb uploads nothing), and the
        manifest snapshot goes to ``<root>/annshard/manifests/``. Credentials come from the ``AWS_*``
        environment variables.

    Returns
    -------
    The ``ln.Collection``.

    Raises
    ------
    InvalidKeyError
        If ``key`` is not a plain relative key (checked before anything is copied or registered).
    CollectionFormatError
        If ``collection`` is not a collection.
    NoInstanceError
        If no lamindb instance is configured.

    Notes
    -----
    A registration that fails removes what it copied into the storage root and
    the lamindb records it created (its run stays, marked as failed).

    Examples
    --------
    >>> import annshard, lamindb as ln
    >>> record = annshard.lamin.register("train.zarr", key="pbmc/train")  # doctest: +SKIP
    >>> loader = ln.Collection.get(key="pbmc/train").loader(batch_size=4096)  # doctest: +SKIP
    """
    check_key(key)
    coll = open_collection(collection)
    require_instance()
    import lamindb as ln

    from ._usage import active_run

    source_artifacts = _source_artifacts(coll, sources)
    undo = _Undo()
    try:
        coll, remote_root = _place_in_storage(coll, key, undo, storage)
    except BaseException:
        undo.undo()
        raise
    run = ln.Run(
        _transform(),
        initiated_by_run=active_run(),
        status="started",
        params={"key": key, "path": str(coll.path), "n_obs": coll.n_obs, "shards": len(coll.shards)},
    ).save()
    ok = False
    try:
        if source_artifacts:
            run.input_artifacts.add(*source_artifacts)
        shards = []
        verbosity = ln.settings.verbosity
        ln.settings.verbosity = "error"  # re-registering logs "returning artifact with same hash" per shard
        try:
            for i, info in enumerate(coll.shards):
                art = ln.Artifact(
                    _shard_data(coll, i, remote_root),
                    description=f"annshard shard {info.name} ({info.n_obs} rows) of {key}",
                    run=run,
                )
                shards.append(_save_new(art, run, undo))
        finally:
            ln.settings.verbosity = verbosity
        latest = ln.Collection.filter(key=key, is_latest=True).order_by("-created_at").first()
        if latest is not None and [a.uid for a in latest.ordered_artifacts.all()] == [a.uid for a in shards]:
            ok = True
            return latest
        meta = _meta_artifact(coll, key, shards, source_artifacts, run, undo, remote_root)
        record = ln.Collection(
            shards,
            key=key,
            description=description,
            meta_artifact=meta,
            run=run,
            revises=latest,
            version=_next_version(latest),
            skip_hash_lookup=True,
        ).save()
        ok = True
        return record
    finally:
        if not ok:
            _roll_back(undo)
        _finish(run, ok=ok)


def write_and_register(
    sources: Sequence[Any],
    path: str | os.PathLike[str] | None = None,
    *,
    key: str,
    description: str | None = None,
    storage: Any = None,
    **write_kwargs: Any,
) -> Any:
    """Write a collection from lamindb artifacts (and paths), then :func:`register` it.

    Parameters
    ----------
    sources
        ``ln.Artifact`` objects of ``.h5ad`` / AnnData zarr files, paths, or AnnData.
    path
        Where to write the collection; default ``<storage root>/annshard/<key>.zarr`` so that it is
        registered in place (on a bucket storage: written there, staged locally and uploaded, see
        :func:`annshard.write_collection`).
    key
        The lamindb key.
    description
        A description.
    storage
        The storage location (an ``ln.Storage`` or its root), as in :func:`register`; default: the default storage.
    **write_kwargs
        Passed to :func:`annshard.write_collection` (``seed``, ``join``, ...).

    Returns
    -------
    The ``ln.Collection``.

    Examples
    --------
    >>> import annshard, lamindb as ln
    >>> arts = ln.Artifact.filter(key__startswith="pbmc/raw/").to_list()  # doctest: +SKIP
    >>> record = annshard.lamin.write_and_register(arts, key="pbmc/train", seed=0)  # doctest: +SKIP
    """
    check_key(key)
    require_instance()
    import lamindb as ln

    from annshard import write_collection

    artifacts: dict[str, Any] = {}  # source name -> artifact
    inputs: dict[str, Any] = {}
    for i, item in enumerate(sources):
        if isinstance(item, ln.Artifact):
            name = Path(item.key).name if item.key else item.uid
            if name in inputs:
                name = f"{name}-{item.uid}"
            artifacts[name] = item
            inputs[name] = _local_path(item)
        else:
            name = Path(os.fspath(item)).name if isinstance(item, str | os.PathLike) else f"adata-{i}"
            inputs[name if name not in inputs else f"{name}-{i}"] = item
    remote = storage_root(storage)
    if path is None and remote is not None and "://" in remote:
        base, query = split_root(remote)
        path = with_query(f"{base}/annshard/{key}.zarr", query)  # write_collection takes the query as storage options
    elif path is None:
        root = default_storage_root() if remote is None else Path(remote).resolve()
        if root is None:  # pragma: no cover - a default storage that is neither local nor a URL
            msg = "the default storage is not local: pass `path`"
            raise AnnshardError(msg)
        path = root / "annshard" / f"{key}.zarr"
    # the manifest records which sources were lamindb artifacts (SourceInfo.uid)
    uids = {name: art.uid for name, art in artifacts.items()}
    coll = write_collection(inputs, path, source_uids=uids, **write_kwargs)
    return register(coll, key=key, description=description, sources=list(artifacts.values()), storage=storage)
