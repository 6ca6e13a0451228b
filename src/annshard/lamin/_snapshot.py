"""The manifest snapshot: one JSON artifact per registered version, carrying the queryable features.

lamindb 2.12 has no features on collections, so each registered version gets a
*meta artifact*: a JSON snapshot of the collection's manifest at this version
(written under ``annshard/manifests/`` in the default storage root, or in the
bucket storage the collection is registered in, named by its content hash), carrying the features ``annshard_seed``,
``annshard_format_version``, ``annshard_join``, ``annshard_layout``,
``annshard_n_obs``, ``annshard_n_vars`` and ``annshard_sources``
(:data:`META_FEATURES`). :func:`annshard.lamin.find_collections` queries them;
:mod:`~annshard.lamin._open` reads the snapshot back, so an old version loads
exactly the shards it had.
"""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any

from annshard._errors import AnnshardError
from annshard._store._atomic import write_atomic
from annshard._version import __version__

from ._bucket import put_snapshot
from ._instance import default_storage_root
from ._undo import _save_new
from ._usage import ensure_features

if TYPE_CHECKING:
    from annshard._store._collection import Collection
    from annshard._store._manifest import Manifest

    from ._undo import _Undo

__all__ = ["META_FEATURES", "_meta_artifact"]

META_FEATURES: dict[str, type] = {
    "annshard_seed": int,
    "annshard_format_version": int,
    "annshard_join": str,
    "annshard_layout": str,
    "annshard_n_obs": int,
    "annshard_n_vars": int,
    "annshard_sources": dict,
}


def _layout(manifest: Manifest) -> str:
    s = manifest.storage
    parts = [s.x_format, s.data_dtype] + ([s.indices_dtype] if s.x_format == "csr" else []) + [s.codec]
    return "/".join(parts)


def _meta_artifact(
    coll: Collection, key: str, shards: list[Any], sources: list[Any], run: Any, undo: _Undo, remote: str | None = None
) -> Any:
    """Save the manifest snapshot of ``coll`` as a JSON artifact (on the bucket storage ``remote`` if given)."""
    import lamindb as ln

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
    if remote is not None:
        data: Any = put_snapshot(remote, f"{digest}.json", text, undo)
    else:
        root = default_storage_root()
        if root is None:
            msg = (
                "the default storage of the lamindb instance is not local: register with storage= a bucket storage "
                "location (ln.Storage(root='s3://...').save()) or a local one"
            )
            raise AnnshardError(msg)
        data = root / "annshard" / "manifests" / f"{digest}.json"
        if not data.exists():
            undo.mkdir(data.parent)
            undo.will_write(data)
            write_atomic(data, text)
    meta = _save_new(ln.Artifact(data, description=f"annshard manifest of {key}", run=run), run, undo)
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
