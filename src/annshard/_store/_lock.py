"""One writer at a time per collection: an advisory ``flock`` on a file inside it.

Every write that changes a collection in place (an append, the swap of an overwrite) holds an exclusive
``fcntl.flock`` on ``<collection>/.annshard.lock`` from before it reads the manifest until after it commits.
The holder writes its pid, host and start time into the file, so a waiting writer that gives up can say who
holds it. The lock belongs to the open file description: the operating system drops it when the holder exits,
however it dies (``SIGKILL`` included), so a crashed writer never leaves a collection locked. The file itself
stays (an empty or stale description is harmless: only the ``flock`` counts).

Readers never take the lock: they read the manifest they opened, and a writer never deletes or rewrites a
shard that a committed manifest lists.

``flock`` is advisory and local: on NFS it is emulated with byte-range locks (Linux NFSv4 forwards them to
the server, so writers on different hosts do exclude each other when the server supports locking); on file
systems without lock support (some FUSE mounts, object-store mounts) ``flock`` fails and the write is refused
with a :class:`~annshard.CollectionLockedError` that says so, rather than run unserialised.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import socket
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from annshard._errors import CollectionLockedError

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

__all__ = ["LOCK_NAME", "collection_lock", "pid_alive"]

LOCK_NAME = ".annshard.lock"
_POLL = 0.05


def pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists on this host (this process counts as alive)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _holder(path: Path) -> str:
    try:
        text = path.read_text(errors="replace").strip()
    except OSError:
        text = ""
    return text[:300] or "unknown (the holder has not written its description yet)"


@contextlib.contextmanager
def collection_lock(root: Path, *, timeout: float, what: str) -> Iterator[None]:
    """Hold the exclusive writer lock of the collection at ``root``.

    Parameters
    ----------
    root
        The collection directory.
    timeout
        Seconds to wait for another writer to finish; ``0`` fails at once.
    what
        What the lock is for, for the description written into the lock file.

    Raises
    ------
    CollectionLockedError
        If another writer still holds it after ``timeout`` seconds (the message names its pid, host and start
        time), or if the file system does not support locks.
    """
    if timeout < 0:
        msg = f"lock_timeout must be >= 0 seconds, not {timeout!r}"
        raise ValueError(msg)
    path = root / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as e:
                if e.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                    msg = (
                        f"{root}: cannot lock {path} ({e}); the file system does not support file locks "
                        "(flock), so annshard cannot make sure it is the only writer: write on a local or "
                        "lock-capable file system"
                    )
                    raise CollectionLockedError(msg) from e
                if time.monotonic() >= deadline:
                    msg = (
                        f"{root}: another writer holds the collection's lock ({path}): {_holder(path)}; "
                        f"waited {timeout:g} s. Wait for it to finish and retry, or pass a longer lock_timeout"
                    )
                    raise CollectionLockedError(msg) from None
                time.sleep(_POLL)
        started = datetime.now(UTC).isoformat(timespec="seconds")
        desc = f"pid {os.getpid()} on host {socket.gethostname()}, {what} since {started}\n"
        os.ftruncate(fd, 0)
        os.pwrite(fd, desc.encode(), 0)
        try:
            yield
        finally:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
