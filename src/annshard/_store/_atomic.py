"""Every rename in annshard: write under a temporary name, then rename into place.

A reader must never see half of anything: a file, a shard, a manifest or a whole collection appears complete
under its name or not at all. Everything that changes the store does it here, by building the new thing under a
hidden temporary sibling name and renaming it into place (``os.replace`` / ``os.rename`` are atomic within one
file system):

- :func:`write_atomic`: one file (the manifest commit, :func:`commit_manifest`, is one);
- :func:`install`: a collection built in a hidden sibling takes its path, or replaces the collection there by two
  renames under that collection's writer lock (old aside, new into place); :func:`recover_overwrite` puts the
  old one back when a kill came between them;
- :func:`move_into_place`: a shard written in an append's directory joins the collection;
- :func:`copy_collection`: a collection copied shard by shard, its ``zarr.json`` last.

Temporary names are ``.<name>.annshard-<kind>-<pid>-<token>`` beside the thing they become (:func:`temp_sibling`):
hidden, on the same file system, and carrying the writing process's id, so :func:`cleanup_stale` removes exactly
the leftovers whose process is gone and nothing else (not a live writer's, not a file of another name).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shlex
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from annshard._errors import CollectionExistsError, OverwriteRefusedError

from ._lock import collection_lock, pid_alive
from ._manifest import MANIFEST_KEY
from ._read import is_collection

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from ._collection import Collection
    from ._manifest import Manifest

__all__ = [
    "append_dir",
    "check_replaceable",
    "cleanup_append",
    "cleanup_stale",
    "commit_manifest",
    "copy_collection",
    "install",
    "move_into_place",
    "recover_overwrite",
    "replace_file",
    "scatter_workdir",
    "temp_sibling",
    "token",
    "write_atomic",
]

_STALE = re.compile(r"\.annshard-(tmp|old|append)-(\d+)-[0-9a-f]+$")
_OLD = re.compile(r"\.annshard-old-(\d+)-[0-9a-f]+$")


# -- temporary names --------------------------------------------------------------------------------------------------
def token() -> str:
    """Return ``<pid>-<random hex>``: unique per call, and naming the process that made it."""
    return f"{os.getpid()}-{secrets.token_hex(4)}"


def temp_sibling(path: Path, kind: Literal["tmp", "old"] = "tmp") -> Path:
    """Return a fresh hidden name beside ``path``: ``.<name>.annshard-<kind>-<pid>-<token>``.

    ``"tmp"`` names something being built that will be renamed to ``path``; ``"old"`` names what an overwrite
    moved aside.
    """
    return path.parent / f".{path.name}.annshard-{kind}-{token()}"


def append_dir(path: Path) -> Path:
    """Return a fresh hidden directory name inside the collection ``path`` for an append's new shards."""
    return path / f".annshard-append-{token()}"


def scatter_workdir(base: Path, tmp_dir: str | os.PathLike[str] | None) -> Path:
    """Return the directory for a write's temporary bucket files: inside ``base``, or a fresh one in ``tmp_dir``."""
    if tmp_dir is None:
        return base / ".scatter"
    return Path(tmp_dir) / f"annshard-scatter-{token()}"


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def cleanup_stale(path: Path) -> None:
    """Remove leftovers of interrupted writes to ``path`` whose process is gone.

    Only hidden siblings named by :func:`temp_sibling` (or an append's directory name) for this ``path`` are
    considered, and only those whose process id is no longer alive. An ``old`` copy is moved back to ``path``
    when ``path`` is missing (an overwrite died between its two renames) and removed otherwise.
    """
    if not path.parent.is_dir():
        return
    for p in path.parent.glob(f".{path.name}.annshard-*"):
        m = _STALE.search(p.name)
        if m is None or pid_alive(int(m.group(2))):
            continue
        if m.group(1) == "old" and not path.exists():
            os.rename(p, path)  # an overwrite died between its two renames: the old collection comes back
        else:
            _remove(p)


# -- files ------------------------------------------------------------------------------------------------------------
def write_atomic(path: Path, data: bytes | str) -> None:
    """Write ``data`` to ``path`` so that readers see the old content or the new, never a partial file.

    The data goes to a hidden temporary sibling first, which then replaces ``path`` with ``os.replace``; if the
    write fails, the temporary file is removed and ``path`` is untouched. Temporary files that killed writers
    left beside ``path`` are removed first (:func:`cleanup_stale`).
    """
    cleanup_stale(path)
    tmp = temp_sibling(path)
    try:
        tmp.write_bytes(data.encode() if isinstance(data, str) else data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def commit_manifest(path: str | os.PathLike[str], manifest: Manifest) -> None:
    """Write ``manifest`` into the root group's attributes, atomically.

    The root ``zarr.json`` is replaced with ``os.replace`` (:func:`write_atomic`), so readers see either the old
    manifest or the new one, never a partial file.
    """
    path = Path(path)
    meta = path / "zarr.json"
    doc = json.loads(meta.read_text()) if meta.is_file() else {"zarr_format": 3, "node_type": "group"}
    doc.setdefault("attributes", {})[MANIFEST_KEY] = manifest.to_dict()
    write_atomic(meta, json.dumps(doc, indent=2))


# -- installing a built collection ------------------------------------------------------------------------------------
def check_replaceable(path: Path) -> None:
    """Refuse ``overwrite=True`` of anything but a collection (or an empty directory); nothing is deleted.

    Raises
    ------
    OverwriteRefusedError
        If ``path`` is a symbolic link, a file or a non-empty directory that is not a collection.
    """
    if not (path.exists() or path.is_symlink()):
        return
    if path.is_dir() and not path.is_symlink() and (is_collection(path) or not any(path.iterdir())):
        return
    what = (
        "a symbolic link"
        if path.is_symlink()
        else "a file"
        if not path.is_dir()
        else "a non-empty directory that is not an annshard or annbatch collection"
    )
    msg = (
        f"{path}: is {what}; overwrite=True (--overwrite) replaces only a collection (or an empty directory), "
        "so nothing was deleted. Choose another output path, or remove it yourself if it is really meant to go"
    )
    raise OverwriteRefusedError(msg)


def install(tmp: Path, path: Path, *, overwrite: bool, lock_timeout: float) -> None:
    """Rename the complete collection built at ``tmp`` to ``path``, replacing what is there if ``overwrite``.

    A collection at ``path`` is swapped out under its writer lock (so an append's commit is not lost in the old
    copy): renamed aside to a hidden ``old`` sibling, then ``tmp`` renamed into place, then the old copy deleted.

    Raises
    ------
    CollectionExistsError
        If ``path`` appeared while the collection was built and ``overwrite`` is false.
    OverwriteRefusedError
        If ``path`` is no longer replaceable (:func:`check_replaceable`).
    CollectionLockedError
        If another writer holds the replaced collection's lock for more than ``lock_timeout`` seconds.
    """
    if path.exists() or path.is_symlink():
        if not overwrite:
            msg = f"{path}: was created while this collection was being written; it is left untouched"
            raise CollectionExistsError(msg)
        check_replaceable(path)  # again: it may have changed while the new collection was written
        old = temp_sibling(path, "old")
        if path.is_dir() and (path / "zarr.json").is_file():
            # a collection: wait for its writer (an append), so its commit is not lost in the old copy
            with collection_lock(path, timeout=lock_timeout, what="overwrite"):
                os.rename(path, old)
                os.rename(tmp, path)
        else:  # an empty directory
            os.rename(path, old)
            os.rename(tmp, path)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(tmp, path)


def _hidden_old(path: Path) -> list[Path]:
    """Return the collections an overwrite of ``path`` moved aside (``.<name>.annshard-old-<pid>-<token>``), newest first."""
    if not path.parent.is_dir():
        return []
    found = [p for p in path.parent.glob(f".{path.name}.annshard-old-*") if _OLD.search(p.name)]
    return sorted(found, key=lambda p: p.stat().st_mtime if p.exists() else 0.0, reverse=True)


def recover_overwrite(path: Path) -> None:
    """Put back a collection that an overwrite moved aside and never replaced (it crashed between its renames).

    Raises
    ------
    FileNotFoundError
        If the moved-aside collection cannot be put back (its writer is still running, or the rename fails);
        the message says where it is and the command that restores it.
    """
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


def replace_file(src: Path, dst: Path) -> None:
    """Put the finished file ``src`` at ``dst`` in one rename (same file system; readers see the old file or the new one).

    Used for files outside any collection too (the fused gather kernel built into the user's cache,
    :mod:`annshard._kernel_aot`), so that every rename of the package stays in this module.
    """
    os.replace(src, dst)


# -- appends ----------------------------------------------------------------------------------------------------------
def move_into_place(src: Path, dst: Path) -> None:
    """Rename ``src`` (a shard written in an append's directory) to ``dst`` (its place in the collection)."""
    os.rename(src, dst)


def cleanup_append(coll: Collection) -> None:
    """Remove what interrupted appends left (run under the collection's lock, so no other append is live).

    Only directories that the committed manifest (read under the same lock) does not list are removed.
    """
    for p in coll.path.glob(".annshard-append-*"):
        shutil.rmtree(p, ignore_errors=True)
    listed = {s.name for s in coll.manifest.shards}
    for p in coll.path.glob("shard-*.zarr"):
        if p.name not in listed:
            shutil.rmtree(p, ignore_errors=True)


# -- copying a collection ---------------------------------------------------------------------------------------------
def _ignore(path: Path) -> None:
    return None


def copy_collection(
    src: Path, dest: Path, shards: Iterable[str], *, before_write: Callable[[Path], None] = _ignore
) -> None:
    """Copy the collection at ``src`` into the existing directory ``dest``, its ``zarr.json`` last.

    Only the listed shards that ``dest`` lacks are copied (shards are immutable, so one already there is the
    same); each is copied under a hidden temporary name and renamed into place. Then the root's other plain
    files that are not hidden, and last the ``zarr.json``, atomically: ``dest`` opens as the new collection only
    once everything it lists is there.

    Parameters
    ----------
    src
        The collection's root.
    dest
        Where the copy goes (created by the caller).
    shards
        The names of the shards to copy.
    before_write
        Called with each path before it is created or overwritten (to undo a failed copy).
    """
    for name in shards:
        target = dest / name
        if target.exists():
            continue
        cleanup_stale(target)
        tmp = temp_sibling(target)
        before_write(tmp)
        shutil.copytree(src / name, tmp)
        before_write(target)
        os.replace(tmp, target)
    for entry in src.iterdir():
        if entry.is_file() and entry.name != "zarr.json" and not entry.name.startswith("."):
            before_write(dest / entry.name)
            shutil.copy2(entry, dest / entry.name)
    tmp = temp_sibling(dest / "zarr.json")
    before_write(tmp)
    shutil.copy2(src / "zarr.json", tmp)
    before_write(dest / "zarr.json")
    os.replace(tmp, dest / "zarr.json")
