"""A local disk cache of remote shard data: whole elements (``shard-00003.zarr/X``) kept as files, LRU-bounded.

``Loader(url, cache=PATH, cache_size="50GB")`` reads a remote shard's element (``X``, a layer, an obsm array)
through :meth:`ShardCache.group`: the first use downloads every object under ``<shard>/<element>/`` into an
*entry* directory and the loader reads it from there (zarrs on a local store), so later epochs and other processes
on the node read locally and issue no GETs. obs columns and metadata are read from the bucket, not cached.

- **Entries are atomic.** An entry is downloaded into a temporary sibling and renamed into place
  (:func:`~._atomic.move_into_place`) with its ``.annshard-cache.json`` listing every file's size and SHA-256;
  a process fetching an entry holds an exclusive ``flock`` on ``<entry>.fetch``, so two processes never fetch the
  same entry at once (the second waits, then reads the first's).
- **A damaged entry is refetched.** Each file's size is checked whenever an entry is opened, and its checksum the
  first time a process opens it; a mismatch (or a missing file) removes the entry and downloads it again.
- **Bounded, least recently used.** Opening an entry touches its ``.annshard-cache.json``; after a download the
  cache evicts the least recently used entries until it is within ``cache_size``. A process holds a shared
  ``flock`` on ``<entry>.use`` while it has the entry open, and eviction skips entries it cannot lock
  exclusively, so an entry is never removed under a reader (the cache may exceed its bound while every entry is
  in use).
- **Keys.** An entry's directory is named by a hash of the collection's URL, the shard's name, rows, stored values
  and generation: an append adds entries, never changes one. Overwriting a remote collection in place with shards
  of the same names and sizes is not detected; clear the cache (delete ``PATH``) after such an overwrite.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._atomic import move_into_place, temp_sibling

if TYPE_CHECKING:
    import zarr

    from ._collection import Collection

__all__ = ["ShardCache", "parse_size"]

_META = ".annshard-cache.json"
_UNITS = {
    "": 1,
    "B": 1,
    "KB": 10**3,
    "MB": 10**6,
    "GB": 10**9,
    "TB": 10**12,
    "KIB": 2**10,
    "MIB": 2**20,
    "GIB": 2**30,
    "TIB": 2**40,
}


def parse_size(size: int | str) -> int:
    """Parse ``cache_size`` (``50_000_000_000``, ``"50GB"``, ``"10 GiB"``) to bytes.

    Raises
    ------
    ValueError
        If it is not a positive size.
    """
    if isinstance(size, int) and not isinstance(size, bool):
        n = size
    else:
        text = str(size).strip().upper().replace(" ", "")
        num = text.rstrip("KMGTIB")
        unit = text[len(num) :]
        try:
            n = int(float(num) * _UNITS[unit])
        except (KeyError, ValueError):
            n = -1
    if n <= 0:
        msg = f"cache_size={size!r}: expected a positive number of bytes or a size like '50GB'"
        raise ValueError(msg)
    return n


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 22):
            h.update(chunk)
    return h.hexdigest()


class ShardCache:
    """Shard elements of remote collections kept on local disk (see the module docstring).

    Parameters
    ----------
    path
        The cache directory (created if missing); several processes may share it.
    size
        Its bound in bytes, or a size such as ``"50GB"``.
    """

    def __init__(self, path: str | os.PathLike[str], size: int | str = "50GB") -> None:
        self.path = Path(path)
        self.size = parse_size(size)
        self._held: dict[Path, int] = {}  # entry -> fd of its shared lock, in this process
        self._checked: set[Path] = set()
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path, "size": self.size}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["path"], state["size"])  # type: ignore[misc]

    def __repr__(self) -> str:
        return f"ShardCache({str(self.path)!r}, size={self.size})"

    # -- entries -------------------------------------------------------------------------------------
    def entry(self, coll: Collection, i: int, element: str) -> Path:
        """Return the entry directory of element ``element`` of shard ``i`` (it may not exist yet)."""
        info = coll.manifest.shards[i]
        key = json.dumps([str(coll.path), info.name, info.n_obs, info.nnz, info.generation, element])
        return self.path / hashlib.sha256(key.encode()).hexdigest()[:32]

    def group(self, coll: Collection, i: int, element: str) -> zarr.Group:
        """Open shard ``i`` of the remote ``coll`` from the cache for reading ``element``, downloading it if needed."""
        import zarr

        with self._lock:
            if self._pid != os.getpid():  # a forked child holds none of its parent's locks
                self._held, self._checked, self._pid = {}, set(), os.getpid()
            entry = self.entry(coll, i, element)
            self.path.mkdir(parents=True, exist_ok=True)
            if not self._valid(entry) and self._fetch(coll, i, element, entry):
                self.misses += 1
            else:  # valid, or fetched by another process while this one waited for the fetch lock
                self.hits += 1
            self._hold(entry)
            os.utime(entry / _META)  # least recently used: by the manifest's mtime
        return zarr.open_group(zarr.storage.LocalStore(entry, read_only=True), mode="r")

    def _valid(self, entry: Path) -> bool:
        meta = entry / _META
        if not meta.is_file():
            return False
        try:
            files = json.loads(meta.read_text())["files"]
            for key, (size, digest) in files.items():
                f = entry / key
                if f.stat().st_size != size or (entry not in self._checked and _sha256(f) != digest):
                    raise ValueError(key)
        except (OSError, ValueError, KeyError, TypeError):
            self._drop(entry)  # damaged: refetched by the caller
            return False
        self._checked.add(entry)
        return True

    def _fetch(self, coll: Collection, i: int, element: str, entry: Path) -> bool:
        """Download the entry under an exclusive lock; ``False`` if another process did it while we waited."""
        fd = os.open(f"{entry}.fetch", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            if self._valid(entry):
                return False
            name = coll.manifest.shards[i].name
            loc = coll.location
            parts = element.split("/")
            keys = [f"{name}/zarr.json"] + [f"{name}/{'/'.join(parts[:k])}/zarr.json" for k in range(1, len(parts))]
            keys += loc.list(f"{name}/{element}/")
            tmp = temp_sibling(entry)
            files: dict[str, list[Any]] = {}
            try:
                for key in keys:
                    data = loc.get(key)
                    if data is None:
                        msg = f"{loc}/{key}: missing while caching shard {name}; the collection is damaged, rewrite it"
                        raise FileNotFoundError(msg)
                    rel = key[len(name) + 1 :]
                    target = tmp.joinpath(*rel.split("/"))
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(data)
                    files[rel] = [len(data), hashlib.sha256(data).hexdigest()]
                (tmp / _META).write_text(
                    json.dumps({"url": str(coll.path), "shard": name, "element": element, "files": files})
                )
                move_into_place(tmp, entry)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
            self._checked.add(entry)
        finally:
            os.close(fd)
        self._evict(keep=entry)
        return True

    def _hold(self, entry: Path) -> None:
        if entry in self._held:
            return
        fd = os.open(f"{entry}.use", os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(fd, fcntl.LOCK_SH)
        self._held[entry] = fd

    def _drop(self, entry: Path) -> None:
        shutil.rmtree(entry, ignore_errors=True)
        self._checked.discard(entry)

    def entries(self) -> list[tuple[Path, int, float]]:
        """Return ``(entry, bytes, last use)`` for every complete entry, least recently used first."""
        out = []
        for meta in self.path.glob(f"*/{_META}"):
            try:
                files = json.loads(meta.read_text())["files"]
                out.append((meta.parent, sum(int(s) for s, _ in files.values()), meta.stat().st_mtime))
            except (OSError, ValueError, KeyError, TypeError):
                continue
        return sorted(out, key=lambda e: e[2])

    def _evict(self, keep: Path) -> None:
        """Remove least recently used entries not in use by any process until the cache fits its bound."""
        entries = self.entries()
        total = sum(n for _, n, _ in entries)
        for entry, n, _ in entries:
            if total <= self.size:
                break
            if entry == keep or entry in self._held:
                continue
            fd = os.open(f"{entry}.use", os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                continue  # another process reads it
            try:
                self._drop(entry)
                total -= n
            finally:
                os.close(fd)

    def close(self) -> None:
        """Release this process's shared locks (entries become evictable by others)."""
        with self._lock:
            for fd in self._held.values():
                os.close(fd)
            self._held.clear()
