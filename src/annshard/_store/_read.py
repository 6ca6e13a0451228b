"""Which reader a directory goes to: the dispatch from what its root ``zarr.json`` says it is.

A directory is read by the reader of the format it declares, never by guessing from its contents:

- an ``"annshard"`` attribute (the manifest) goes to :meth:`Manifest.from_dict
  <annshard.Manifest.from_dict>`, which dispatches again on the manifest's ``format`` and
  ``format_version`` (an unknown format or a version this annshard cannot read is refused there);
- ``encoding-type: annbatch-preshuffled`` goes to annbatch's reader (:mod:`annshard._store._annbatch`);
- anything else is not a collection.

Each reader's shard names are then checked against the disk (plain, and resolving inside the collection).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from annshard._errors import CollectionFormatError

from ._annbatch import ANNBATCH_ENCODING, manifest_from_annbatch
from ._manifest import FORMAT_NAME, MANIFEST_KEY, Manifest
from ._validate import check_shard_names, check_shard_paths, read_json_file

if TYPE_CHECKING:
    from pathlib import Path

    from ._location import Location

__all__ = ["is_collection", "read_manifest", "read_remote_manifest"]


def _read_manifest_attr(path: Path) -> Any:
    meta = path / "zarr.json"
    if not meta.is_file():
        return None
    attrs = read_json_file(meta).get("attributes", {})
    if not isinstance(attrs, dict):
        msg = f"{meta}: its 'attributes' is a {type(attrs).__name__}, not an object; the collection is damaged, rewrite it"
        raise CollectionFormatError(msg)
    return attrs.get(MANIFEST_KEY)


def is_collection(path: Path) -> bool:
    """Whether ``path`` is a directory marked as an annshard or annbatch collection (its manifest is not checked)."""
    meta = path / "zarr.json"
    if path.is_symlink() or not meta.is_file():
        return False
    try:
        attrs = read_json_file(meta).get("attributes")
    except CollectionFormatError:
        return False
    if not isinstance(attrs, dict):
        return False
    manifest = attrs.get(MANIFEST_KEY)
    return (isinstance(manifest, dict) and manifest.get("format") == FORMAT_NAME) or attrs.get(
        "encoding-type"
    ) == ANNBATCH_ENCODING


def read_manifest(path: Path) -> Manifest:
    """Read the manifest of the collection at ``path`` with the reader its ``zarr.json`` names.

    Parameters
    ----------
    path
        An existing directory.

    Returns
    -------
    The manifest (synthesised for an annbatch collection), its shard paths checked.

    Raises
    ------
    CollectionFormatError
        If ``path`` is not a collection, an incomplete one, its format or version is unknown, or its manifest
        (or annbatch metadata) is invalid; the message names the field and the fix.
    """
    raw = _read_manifest_attr(path)
    if raw is not None:
        manifest = Manifest.from_dict(raw, where=str(path))
        check_shard_paths(path, [s.name for s in manifest.shards])
        return manifest
    try:
        annbatch = manifest_from_annbatch(path)
    except (KeyError, TypeError, ValueError, IndexError) as e:
        if isinstance(e, CollectionFormatError):
            raise
        msg = f"{path}: an annbatch collection with malformed metadata ({type(e).__name__}: {e}); it is damaged, rewrite it"
        raise CollectionFormatError(msg) from e
    if annbatch is not None:
        check_shard_paths(path, [s.name for s in annbatch.shards], annbatch=True)
        return annbatch
    msg = (
        f"{path}: not an annshard collection (no {MANIFEST_KEY!r} manifest in its zarr.json) and not an "
        "annbatch collection; write one with annshard.write_collection(...) or `annshard convert`"
    )
    raise CollectionFormatError(msg)


def read_remote_manifest(loc: Location) -> Manifest:
    """Read the manifest of the collection at the URL ``loc`` (its root ``zarr.json`` object).

    Shard names must be plain child names (a URL has no links to resolve). An annbatch collection is read from
    local disk only.

    Raises
    ------
    FileNotFoundError
        If there is no ``zarr.json`` at the URL (wrong bucket/prefix, or nothing written there yet).
    OSError
        If the URL cannot be read at all (no such bucket, wrong endpoint or credentials).
    CollectionFormatError
        If the object is not an annshard manifest, or an invalid one.
    """
    doc = loc.read_json("zarr.json")
    if doc is None:
        msg = (
            f"{loc}: no such collection (no zarr.json under this prefix); check the bucket and prefix, or write one "
            "there with annshard.write_collection(..., path=URL)"
        )
        raise FileNotFoundError(msg)
    attrs = doc.get("attributes", {})
    raw = attrs.get(MANIFEST_KEY) if isinstance(attrs, dict) else None
    if raw is None:
        what = (
            "an annbatch collection (read annbatch collections from local disk)"
            if isinstance(attrs, dict) and attrs.get("encoding-type") == ANNBATCH_ENCODING
            else "not an annshard collection"
        )
        msg = f"{loc}: {what}: no {MANIFEST_KEY!r} manifest in its zarr.json; write one with annshard.write_collection(...)"
        raise CollectionFormatError(msg)
    manifest = Manifest.from_dict(raw, where=str(loc))
    check_shard_names(str(loc), [s.name for s in manifest.shards])
    return manifest
