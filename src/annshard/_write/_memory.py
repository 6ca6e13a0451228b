"""Keeping the process's resident memory close to what is live.

glibc's allocator raises its mmap threshold after large blocks are freed
(up to 32 MiB), so the next blocks of a few MiB come from the heap and freed
heap pages are not returned to the system: without care the writer's RSS
creeps up shard after shard although the live data stays constant. The
writer therefore fixes the threshold at glibc's default (128 KiB), which turns
off that adaptation, so every large array is its own mapping and goes back
to the system when freed, and asks glibc to trim free memory after each
block and shard. Both are no-ops on other C libraries.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools

__all__ = ["pin_mmap_threshold", "trim"]

_M_MMAP_THRESHOLD = -3
_THRESHOLD = 128 * 1024


@functools.cache
def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
    except OSError:
        return None
    if not hasattr(libc, "malloc_trim") or not hasattr(libc, "mallopt"):
        return None
    return libc


@functools.cache
def pin_mmap_threshold() -> bool:
    """Fix glibc's mmap threshold at 128 KiB (once per process); return whether it applied."""
    libc = _libc()
    return bool(libc is not None and libc.mallopt(_M_MMAP_THRESHOLD, _THRESHOLD))


def trim() -> None:
    """Return free heap memory to the system (glibc ``malloc_trim``)."""
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)
