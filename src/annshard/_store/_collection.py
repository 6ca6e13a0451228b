"""The :class:`Collection` handle: a read-only view of a collection on disk.

Opening a collection reads only its manifest; ``var`` and per-shard arrays are
read lazily. The manifest is the whole in-memory model of a collection: a
collection written by annbatch is opened by synthesising a manifest from its
AnnData children (see :mod:`annshard._annbatch`).
"""

from __future__ import annotations

import json
import os
import re
import shlex
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import zarr

from annshard._config import zarr_config
from annshard._errors import CollectionFormatError

from ._manifest import FORMAT_NAME, MANIFEST_KEY, Manifest
from ._validate import check_shard_paths, read_json_file

if TYPE_CHECKING:
    from collections.abc import Sequence

    import pandas as pd

    from ._manifest import ObsColumn, ShardInfo, SourceInfo

__all__ = ["Collection", "commit_manifest", "is_collection", "open_collection"]

_OLD = re.compile(r"\.annshard-old-(\d+)-[0-9a-f]+$")


class Collection:
    """A sharded, globally shuffled AnnData collection on disk.

    Use :func:`annshard.open_collection` or :func:`annshard.write_collection` to get one.

    Parameters
    ----------
    path
        The collection's root directory.
    manifest
        Its manifest.
    """

    def __init__(self, path: str | os.PathLike[str], manifest: Manifest) -> None:
        self.path = Path(path)
        self.manifest = manifest

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
    def shard_path(self, i: int) -> Path:
        """Directory of shard ``i``."""
        return self.path / self.manifest.shards[i].name

    def shard_group(self, i: int) -> zarr.Group:
        """Open the zarr group of shard ``i`` (read-only)."""
        return zarr.open_group(self.shard_path(i), mode="r")

    def append(self, sources: Sequence[Any], **kwargs: Any) -> Collection:
        """Add new sources as new shards, shuffled among themselves; existing shards are not rewritten.

        Parameters
        ----------
        sources
            As for :func:`annshard.write_collection`.
        **kwargs
            ``seed``, ``memory_budget``, ``show_progress``, ... as for :func:`annshard.write_collection`.

        Returns
        -------
        The updated collection (this object is updated too).
        """
        from annshard._write import append_collection

        new = append_collection(self, sources, **kwargs)
        self.manifest = new.manifest
        self.__dict__.pop("var", None)
        return self

    def __repr__(self) -> str:
        cats = ", ".join(self.obs_columns)
        return (
            f"Collection({str(self.path)!r}, n_obs={self.n_obs}, n_vars={self.n_vars}, "
            f"shards={len(self.shards)}, seed={self.seed}, join={self.join!r}, obs=[{cats}])"
        )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Collection) and self.path == other.path and self.manifest == other.manifest

    def __hash__(self) -> int:
        return hash(self.path)


def _read_manifest_attr(path: Path) -> Any:
    meta = path / "zarr.json"
    if not meta.is_file():
        return None
    attrs = read_json_file(meta).get("attributes", {})
    if not isinstance(attrs, dict):
        msg = f"{meta}: its 'attributes' is a {type(attrs).__name__}, not an object; the collection is damaged, rewrite it"
        raise CollectionFormatError(msg)
    return attrs.get(MANIFEST_KEY)


def _hidden_old(path: Path) -> list[Path]:
    """Return the collections an overwrite of ``path`` moved aside (``.<name>.annshard-old-<pid>-<token>``), newest first."""
    if not path.parent.is_dir():
        return []
    found = [p for p in path.parent.glob(f".{path.name}.annshard-old-*") if _OLD.search(p.name)]
    return sorted(found, key=lambda p: p.stat().st_mtime if p.exists() else 0.0, reverse=True)


def _recover_overwrite(path: Path) -> None:
    """Put back a collection that an overwrite moved aside and never replaced (it crashed between its renames).

    Raises
    ------
    FileNotFoundError
        If the moved-aside collection cannot be put back (its writer is still running, or the rename fails);
        the message says where it is and the command that restores it.
    """
    from ._lock import pid_alive

    for old in _hidden_old(path):
        m = _OLD.search(old.name)
        assert m is not None
        if pid_alive(int(m.group(1))):
            msg = (
                f"{path}: no such collection right now: an overwrite (pid {m.group(1)}) is replacing it, and the "
                f"previous collection is at {old}. Retry in a moment; if that process is stuck, restore the old "
                f"collection with: mv {shlex.quote(str(old))} {shlex.quote(str(path))}"
            )
            raise FileNotFoundError(msg)
        try:
            os.rename(old, path)
        except FileNotFoundError:
            if path.exists():  # another process restored it first
                return
            continue
        except OSError as e:
            msg = (
                f"{path}: no such collection, but an interrupted overwrite left the previous collection at {old} "
                f"and it cannot be moved back ({e}); restore it with: mv {shlex.quote(str(old))} {shlex.quote(str(path))}"
            )
            raise FileNotFoundError(msg) from e
        return


def is_collection(path: Path) -> bool:
    """Whether ``path`` is a directory marked as an annshard or annbatch collection (its manifest is not checked)."""
    from ._annbatch import ANNBATCH_ENCODING

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


def open_collection(path: str | os.PathLike[str] | Collection) -> Collection:
    """Open a collection written by annshard (or by annbatch's ``DatasetCollection``).

    The manifest is checked as a schema before it is used (types, ranges, allowed values; shard names plain,
    unique and resolving inside the collection). If ``path`` is missing because an overwrite was killed between
    its two renames, the previous collection is moved back first.

    Parameters
    ----------
    path
        The collection's root directory.

    Returns
    -------
    The collection.

    Raises
    ------
    FileNotFoundError
        If nothing exists at ``path`` (and no interrupted overwrite left a collection to restore).
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
    path = Path(path)
    if not path.exists():
        _recover_overwrite(path)
    if not path.exists():
        msg = f"{path}: no such collection (the path does not exist)"
        raise FileNotFoundError(msg)
    raw = _read_manifest_attr(path)
    if raw is not None:
        manifest = Manifest.from_dict(raw, where=str(path))
        check_shard_paths(path, [s.name for s in manifest.shards])
        return Collection(path, manifest)
    from ._annbatch import manifest_from_annbatch

    try:
        manifest = manifest_from_annbatch(path)
    except (KeyError, TypeError, ValueError, IndexError) as e:
        if isinstance(e, CollectionFormatError):
            raise
        msg = f"{path}: an annbatch collection with malformed metadata ({type(e).__name__}: {e}); it is damaged, rewrite it"
        raise CollectionFormatError(msg) from e
    if manifest is not None:
        check_shard_paths(path, [s.name for s in manifest.shards], annbatch=True)
        return Collection(path, manifest)
    msg = (
        f"{path}: not an annshard collection (no {MANIFEST_KEY!r} manifest in its zarr.json) and not an "
        "annbatch collection; write one with annshard.write_collection(...) or `annshard convert`"
    )
    raise CollectionFormatError(msg)


def commit_manifest(path: str | os.PathLike[str], manifest: Manifest) -> None:
    """Write ``manifest`` into the root group's attributes, atomically.

    The root ``zarr.json`` is replaced with ``os.replace`` so readers see either
    the old manifest or the new one, never a partial file.
    """
    path = Path(path)
    meta = path / "zarr.json"
    doc = json.loads(meta.read_text()) if meta.is_file() else {"zarr_format": 3, "node_type": "group"}
    doc.setdefault("attributes", {})[MANIFEST_KEY] = manifest.to_dict()
    tmp = path / f".zarr.json.tmp-{os.getpid()}"
    tmp.write_text(json.dumps(doc, indent=2))
    os.replace(tmp, meta)
