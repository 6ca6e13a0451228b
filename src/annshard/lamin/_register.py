"""Registering annshard collections in lamindb, and loading them back.

A collection on disk becomes

- one ``ln.Artifact`` per shard (an AnnData zarr store), registered **in place**
  when the collection lies inside a local storage root of the instance. A
  collection elsewhere is first copied into the default storage root, under
  ``annshard/<key>/<fingerprint>.zarr``, by annshard itself (so lamindb never
  uploads, which would ask LaminHub over the network). Shards are immutable, so
  a re-registration after :meth:`annshard.Collection.append` copies only the
  new shards and never touches an earlier version's files;
- a *meta artifact*: a JSON snapshot of the collection's manifest at this
  version (written under ``annshard/manifests/`` in the default storage root),
  carrying the queryable features ``annshard_seed``, ``annshard_format_version``,
  ``annshard_join``, ``annshard_layout``, ``annshard_n_obs``, ``annshard_n_vars``
  and ``annshard_sources`` (lamindb 2.12 has no features on collections);
- an ``ln.Collection(key=...)`` of the shard artifacts in global row order,
  with that meta artifact. A key that already has a collection with other
  shards gets a new version (``revises``, ``version="2"``, ...); the same shards
  return the existing version.

Everything is created by a run of the transform ``annshard.lamin.register``
whose inputs are the source artifacts, so ``collection.view_lineage()`` shows
sources -> run -> collection; it is started by the active run, if any.

Finding every collection made with seed 0 from a given artifact is one query,
wrapped by :func:`find_collections`::

    ln.Collection.filter(meta_artifact__in=ln.Artifact.filter(annshard_seed=0), run__input_artifacts=artifact)
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from annshard._collection import Collection, commit_manifest, open_collection
from annshard._errors import AnnshardError, CollectionFormatError, CorruptShardError
from annshard._format import Manifest

from ._instance import default_storage_root, require_instance
from ._usage import ensure_features, record_use

if TYPE_CHECKING:
    from collections.abc import Sequence

    from annshard._load import Loader

__all__ = [
    "META_FEATURES",
    "InvalidKeyError",
    "NotAnnshardCollectionError",
    "TRANSFORM_KEY",
    "find_collections",
    "load_collection",
    "open_registered",
    "register",
    "write_and_register",
]

TRANSFORM_KEY = "annshard.lamin.register"
META_FEATURES: dict[str, type] = {
    "annshard_seed": int,
    "annshard_format_version": int,
    "annshard_join": str,
    "annshard_layout": str,
    "annshard_n_obs": int,
    "annshard_n_vars": int,
    "annshard_sources": dict,
}


class NotAnnshardCollectionError(AnnshardError, ValueError):
    """A lamindb collection whose artifacts are not the shards of one annshard (or annbatch) collection."""


class InvalidKeyError(AnnshardError, ValueError):
    """A lamindb key that is not a plain relative key (it would become a path outside the storage root)."""


def check_key(key: object) -> str:
    """Validate a lamindb key before it is used for anything, a path in particular.

    A key is a relative, ``/``-separated name such as ``"pbmc/train"``: not
    empty, not absolute, no empty, ``.`` or ``..`` segments, no backslashes or
    NUL characters, no Windows drive; then lamindb's own rules
    (``lamindb.models.sqlrecord.check_key``, where this lamindb has it).

    Returns
    -------
    The key.

    Raises
    ------
    InvalidKeyError
        Naming the key and the rule it breaks.
    """
    rule = None
    if not isinstance(key, str):
        rule = f"a key is a string, got {type(key).__name__}"
    elif not key.strip():
        rule = "the key is empty"
    elif "\x00" in key:
        rule = "it contains a NUL character"
    elif "\\" in key:
        rule = "it contains a backslash (keys are separated by '/')"
    elif key.startswith("/"):
        rule = "it is an absolute path (a key is relative, e.g. 'pbmc/train')"
    elif key.startswith("~"):
        rule = "it starts with '~', a home directory (a key is relative, e.g. 'pbmc/train')"
    elif len(key) >= 2 and key[1] == ":" and key[0].isalpha():
        rule = "it starts with a drive letter (a key is relative, e.g. 'pbmc/train')"
    elif any(seg in {".", ".."} for seg in key.split("/")):
        rule = "it has a '.' or '..' segment (a key may not point outside its folder)"
    elif any(seg == "" for seg in key.split("/")):
        rule = "it has an empty segment ('//' or a trailing '/')"
    if rule is None:
        try:
            from lamindb.models.sqlrecord import check_key as lamindb_check_key
        except ImportError:  # pragma: no cover - a lamindb without it: our rules above only
            lamindb_check_key = None
        if lamindb_check_key is not None:
            try:
                lamindb_check_key(key)
            except ValueError as e:
                rule = f"lamindb rejects it: {e}"
    if rule is not None:
        msg = f"invalid lamindb key {key!r}: {rule}; use a relative key of plain names separated by '/', e.g. 'pbmc/train'"
        raise InvalidKeyError(msg)
    assert isinstance(key, str)
    return key


class _Undo:
    """What a registration created or overwrote on disk, to remove or restore if it fails."""

    def __init__(self) -> None:
        self.created: list[Path] = []
        self.overwritten: dict[Path, bytes] = {}
        self.records: list[Any] = []

    def mkdir(self, path: Path) -> None:
        missing = [p for p in (path, *path.parents) if not p.exists()]
        path.mkdir(parents=True, exist_ok=True)
        self.created.extend(reversed(missing))  # outermost first

    def will_write(self, path: Path) -> None:
        if path.exists():
            if path not in self.overwritten and path not in self.created:
                self.overwritten[path] = path.read_bytes()
        else:
            self.created.append(path)

    def undo(self) -> None:
        for path, content in self.overwritten.items():
            tmp = path.with_name(f".{path.name}.restoring-{os.getpid()}")
            tmp.write_bytes(content)
            os.replace(tmp, path)
        for path in reversed(self.created):  # innermost first
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)


# -- helpers ---------------------------------------------------------------------------------------
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
    for info in coll.shards:
        target = dest / info.name
        if target.exists():
            continue
        tmp = dest / f".{info.name}.copying-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        undo.will_write(tmp)
        shutil.copytree(coll.path / info.name, tmp)
        undo.will_write(target)
        os.replace(tmp, target)
    for entry in coll.path.iterdir():
        if entry.is_file() and entry.name != "zarr.json" and not entry.name.startswith("."):
            undo.will_write(dest / entry.name)
            shutil.copy2(entry, dest / entry.name)
    tmp = dest / f".zarr.json.copying-{os.getpid()}"
    undo.will_write(tmp)
    shutil.copy2(coll.path / "zarr.json", tmp)
    undo.will_write(dest / "zarr.json")
    os.replace(tmp, dest / "zarr.json")
    return open_collection(dest)


def _place_in_storage(coll: Collection, key: str, undo: _Undo) -> Collection:
    path = coll.path.resolve()
    for root in _storage_roots():
        if path.is_relative_to(root):
            return coll
    root = default_storage_root()
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

    from annshard import __version__

    transform = ln.Transform.filter(key=TRANSFORM_KEY, version_tag=__version__).first()
    if transform is None:
        transform = ln.Transform(
            key=TRANSFORM_KEY,
            kind="function",
            version=__version__,
            description="annshard: register a sharded, shuffled AnnData collection",
        ).save()
    return transform


def _layout(manifest: Manifest) -> str:
    s = manifest.storage
    parts = [s.x_format, s.data_dtype] + ([s.indices_dtype] if s.x_format == "csr" else []) + [s.codec]
    return "/".join(parts)


def _meta_artifact(coll: Collection, key: str, shards: list[Any], sources: list[Any], run: Any, undo: _Undo) -> Any:
    import lamindb as ln

    from annshard import __version__

    m = coll.manifest
    source_doc = {
        "artifacts": [a.uid for a in sources],
        "files": [{"name": s.name, "path": s.path, "uid": s.uid, "hash": s.hash, "n_obs": s.n_obs} for s in m.sources],
    }
    doc = {
        "annshard": m.to_dict(),
        "key": key,
        "shard_artifacts": [a.uid for a in shards],
        "sources": source_doc,
        "written_by": f"annshard {__version__}",
    }
    text = json.dumps(doc, indent=1, sort_keys=True)
    digest = hashlib.sha256(text.encode()).hexdigest()[:20]
    root = default_storage_root()
    if root is None:  # pragma: no cover - cloud default storage
        msg = "the default storage of the lamindb instance is not local; annshard needs a local storage root"
        raise AnnshardError(msg)
    path = root / "annshard" / "manifests" / f"{digest}.json"
    if not path.exists():
        undo.mkdir(path.parent)
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        undo.will_write(tmp)
        tmp.write_text(text)
        undo.will_write(path)
        os.replace(tmp, path)
    meta = _save_new(ln.Artifact(path, description=f"annshard manifest of {key}", run=run), run, undo)
    ensure_features(META_FEATURES)
    meta.features.add_values(
        {
            "annshard_seed": int(m.seed),
            "annshard_format_version": int(m.format_version),
            "annshard_join": str(m.join),
            "annshard_layout": _layout(m),
            "annshard_n_obs": int(m.n_obs),
            "annshard_n_vars": int(m.n_vars),
            "annshard_sources": source_doc,
        }
    )
    return meta


def _save_new(record: Any, run: Any, undo: _Undo) -> Any:
    """Save an artifact; one this registration's run created is deleted again if the registration fails.

    (For content it already has, lamindb returns the existing artifact, made by an earlier run.)
    """
    record = record.save()
    if record.run_id == run.id:
        undo.records.append(record)
    return record


def _next_version(latest: Any) -> str:
    if latest is None:
        return "1"
    try:
        return str(int(latest.version_tag) + 1)
    except (TypeError, ValueError):
        return str(latest.versions.count() + 1)


def _finish(run: Any, *, ok: bool) -> None:
    run.finished_at = datetime.now(UTC)
    run._status_code = 0 if ok else 1
    run.save()


# -- public API ------------------------------------------------------------------------------------
def register(
    collection: Collection | str | os.PathLike[str],
    *,
    key: str,
    description: str | None = None,
    sources: Sequence[Any] | None = None,
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
        coll = _place_in_storage(coll, key, undo)
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
                    coll.shard_path(i),
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
        meta = _meta_artifact(coll, key, shards, source_artifacts, run, undo)
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


def _roll_back(undo: _Undo) -> None:
    """Delete the records a failed registration created (newest first), then its files."""
    import lamindb as ln

    verbosity = ln.settings.verbosity
    ln.settings.verbosity = "error"  # lamindb says "a file/folder remains here" of each: annshard removes it next
    try:
        _delete_records(undo.records)
    finally:
        ln.settings.verbosity = verbosity
    undo.undo()


def _delete_records(records: list[Any]) -> None:
    for record in reversed(records):
        try:
            record.delete(permanent=True, storage=False)
        except Exception as e:  # noqa: BLE001 - the first error is the one to report; say what is left
            import warnings

            warnings.warn(
                f"annshard: could not delete lamindb record {record.uid} after a failed registration ({e})",
                stacklevel=4,
            )


def write_and_register(
    sources: Sequence[Any],
    path: str | os.PathLike[str] | None = None,
    *,
    key: str,
    description: str | None = None,
    **write_kwargs: Any,
) -> Any:
    """Write a collection from lamindb artifacts (and paths), then :func:`register` it.

    Parameters
    ----------
    sources
        ``ln.Artifact`` objects of ``.h5ad`` / AnnData zarr files, paths, or AnnData.
    path
        Where to write the collection; default ``<default storage root>/annshard/<key>.zarr``
        so that it is registered in place.
    key
        The lamindb key.
    description
        A description.
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
    if path is None:
        root = default_storage_root()
        if root is None:  # pragma: no cover - cloud default storage
            msg = "the default storage is not local: pass `path`"
            raise AnnshardError(msg)
        path = root / "annshard" / f"{key}.zarr"
    coll = write_collection(inputs, path, **write_kwargs)
    # the manifest records which sources were lamindb artifacts (SourceInfo.uid)
    tagged = tuple(
        replace(s, uid=artifacts[s.name].uid) if s.name in artifacts and s.uid is None else s for s in coll.sources
    )
    if tagged != coll.sources:
        commit_manifest(coll.path, replace(coll.manifest, sources=tagged))
        coll = open_collection(coll.path)
    return register(coll, key=key, description=description, sources=list(artifacts.values()))


def _meta_manifest(record: Any) -> Manifest | None:
    meta = record.meta_artifact
    if meta is None:
        return None
    try:
        doc = json.loads(_local_path(meta).read_text())
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    raw = doc.get("annshard") if isinstance(doc, dict) else None
    if raw is None:
        return None
    return Manifest.from_dict(raw, where=f"lamindb collection {record.key!r} (meta artifact {meta.uid})")


def _shard_rows(path: Path) -> int | None:
    """Rows of a shard's ``X`` from its metadata alone (``None`` if unreadable)."""
    try:
        meta = json.loads((path / "X" / "zarr.json").read_text())
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
    paths = []
    for art in artifacts:
        path = _local_path(art)
        if not path.exists():
            msg = (
                f"{label}: the files of shard artifact {art.uid} ({art.key}) are missing from storage at {path}; "
                "restore them, or register the collection again from an intact copy"
            )
            raise CorruptShardError(msg)
        paths.append(path)
    parents = {p.parent for p in paths}
    manifest = _meta_manifest(record)
    if len(parents) != 1:
        msg = (
            f"{label}: its artifacts are not the shards of one collection (they lie in {len(parents)} directories); "
            "annshard loads collections registered with annshard.lamin.register, or plain collections of the shards "
            "of one annshard/annbatch collection. Use collection.mapped() for other AnnData collections, or write "
            "them into one with annshard.write_collection([a.cache() for a in collection.ordered_artifacts], ...)"
        )
        raise NotAnnshardCollectionError(msg)
    parent = parents.pop()
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
    for art, path in zip(artifacts, paths, strict=True):
        info = by_name.get(path.name)
        if info is None:
            msg = f"{label}: artifact {art.uid} ({path}) is not a shard of the collection in {parent}"
            raise NotAnnshardCollectionError(msg)
        rows = _shard_rows(path)
        if rows is not None and rows != info.n_obs:
            msg = (
                f"{label}: shard {path} has {rows} rows on disk but {info.n_obs} when it was registered; its files "
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
        Passed to :class:`annshard.Loader`.

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
    loader = Loader(open_registered(record), **loader_kwargs)
    record_use(record, loader.settings())
    return loader


def find_collections(
    *,
    seed: int | None = None,
    source: Any = None,
    key: str | None = None,
    join: str | None = None,
    format_version: int | None = None,
) -> Any:
    """Query registered annshard collections matching all given criteria, as a lamindb ``QuerySet``.

    Parameters
    ----------
    seed
        The shuffle seed.
    source
        An ``ln.Artifact`` (or its uid) the collection was written from.
    key
        The collection key.
    join
        ``"inner"`` or ``"outer"``.
    format_version
        The on-disk format version.

    Examples
    --------
    >>> import annshard, lamindb as ln
    >>> raw = ln.Artifact.get(key="pbmc/raw/donor1.h5ad")  # doctest: +SKIP
    >>> annshard.lamin.find_collections(seed=0, source=raw).to_list()  # doctest: +SKIP
    """
    require_instance()
    import lamindb as ln

    ensure_features(META_FEATURES)
    features = {"annshard_seed": seed, "annshard_join": join, "annshard_format_version": format_version}
    metas = ln.Artifact.filter(**{k: v for k, v in features.items() if v is not None})
    query = ln.Collection.filter(meta_artifact__in=metas)
    if source is not None:
        query = query.filter(**{"run__input_artifacts__uid": source if isinstance(source, str) else source.uid})
    if key is not None:
        query = query.filter(key=key)
    return query.distinct().order_by("key", "created_at")
