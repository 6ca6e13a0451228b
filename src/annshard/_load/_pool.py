"""Recycling the loader's large arrays instead of asking the kernel for fresh pages.

Every preload block and every batch needs arrays of tens of megabytes. A fresh
allocation that size is a fresh ``mmap`` from the C allocator, and the kernel
zeroes each page on first touch: profiled on the benchmark collection, that
page clearing was ~10 % of the loader's CPU time, spent before a single value
was written. A :class:`BufferPool` hands out views of byte buffers it keeps,
and reuses a buffer only when *nothing* else refers to it any more: every view
of a buffer (and every array, matrix or tensor built on such a view without a
copy) holds a reference to it, so its reference count tells whether anyone, the
user included, still has the data. A batch you keep is never overwritten; the
pool then just allocates another buffer.

The pool holds at most ``max_buffers`` buffers; past that, allocations are
plain (and freed as usual), so the memory a pool can hold on to is bounded.

Large buffers are anonymous memory maps of ordinary pages, not ``numpy.empty``:
numpy asks Linux for transparent huge pages on every array of 4 MiB or more
(``madvise(MADV_HUGEPAGE)``), and where the kernel then compacts memory to find
them at fault time (``transparent_hugepage/defrag = madvise``, a common
default) the first touch of each fresh buffer costs kernel time: measured on
the 100k-cell lognorm collection, 1.3-2.0 s of system CPU in the first epoch
against 0.5 s without, which made the first epoch ~1.7x the CPU of later ones.
The maps are private (``MAP_PRIVATE``: ``mmap.mmap(-1, n)``'s default is a
*shared* anonymous map, backed by shmem, whose page faults cost more) and, on
Linux, the requested bytes are faulted in with one ``madvise(MADV_POPULATE_WRITE)``
(Linux 5.14) instead of one page fault per 4 KiB page: measured, 0.8 s of kernel
CPU per GB against 1.5-1.7 s (``docs/performance.md``, issue 15 round 4). That
is the first epoch's extra cost: later epochs reuse the buffers.
"""

from __future__ import annotations

import functools
import mmap
import sys
import threading
from typing import Any

import numpy as np

__all__ = ["BufferPool", "populate"]

_SLACK = 8  # 1/8 more room for the next request of about the same size (batches differ in non-zeros)
_MAPPED = 1 << 22  # from this size on (numpy's huge-page threshold), buffers are memory maps of ordinary pages


_MADV_POPULATE_WRITE = 23  # Linux >= 5.14 (Python's mmap names it from 3.13 on)


def _allocate(n: int, dtype: np.dtype, populate: int = 0) -> np.ndarray:
    """Return an uninitialised 1-D array of ``n`` elements; large ones in their own private anonymous map.

    No huge-page request; its first ``populate`` elements are faulted in at once where Linux can.
    """
    nbytes = n * dtype.itemsize
    if nbytes < _MAPPED:
        return np.empty(n, dtype=dtype)
    if hasattr(mmap, "MAP_PRIVATE") and hasattr(mmap, "MAP_ANONYMOUS"):
        buf = mmap.mmap(-1, nbytes, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    else:  # Windows: no flags
        buf = mmap.mmap(-1, nbytes)
    if populate > 0 and sys.platform == "linux":
        try:
            buf.madvise(_MADV_POPULATE_WRITE, 0, min(nbytes, populate * dtype.itemsize))
        except OSError:  # an older kernel: the pages fault in one by one when written, as before
            pass
    # the array keeps the map alive (its base); the map is unmapped when the last view goes
    return np.frombuffer(buf, dtype=dtype, count=n)


def populate(arr: np.ndarray) -> None:
    """Fault in the pages under ``arr`` (C-contiguous) with one ``madvise(MADV_POPULATE_WRITE)``, without the GIL.

    What :func:`_allocate` does for a whole fresh buffer, for a part of one, so that the threads filling its parts
    share the kernel's work (a few ms per 10 MB on the benchmark machine). The values are not changed; the pages
    at both ends that the range shares with its neighbours are faulted in too (harmless: faulting in a private
    anonymous page writes nothing). Where Linux cannot (another system, a kernel before 5.14), nothing is done
    and the first write faults the pages in, one at a time, as without it.
    """
    if arr.nbytes == 0 or sys.platform != "linux":
        return
    start = arr.ctypes.data
    begin = start - start % mmap.PAGESIZE
    _madvise()(begin, start + arr.nbytes - begin, _MADV_POPULATE_WRITE)  # ctypes releases the GIL for the call


@functools.cache
def _madvise() -> Any:
    import ctypes

    fn = ctypes.CDLL(None, use_errno=True).madvise
    fn.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
    fn.restype = ctypes.c_int
    return fn


class BufferPool:
    """Reusable buffers, handed out as 1-D arrays of the requested dtype.

    A buffer is reused for a request of the same dtype that needs more than
    half of it: the arrays handed out are views of a buffer at most twice their
    size, so consumers that copy small views of large buffers to free memory
    (scipy's sparse constructors do) never copy ours.

    Parameters
    ----------
    max_buffers
        Most buffers kept for reuse.
    """

    def __init__(self, max_buffers: int) -> None:
        self.max_buffers = max_buffers
        self._buffers: list[np.ndarray] = []
        self._lock = threading.Lock()
        self.reused = 0
        self.allocated = 0

    def _free(self, i: int) -> bool:
        # 2 references: the list's and getrefcount's argument; more means a view is alive somewhere
        return sys.getrefcount(self._buffers[i]) == 2

    def empty(self, n: int, dtype: np.typing.DTypeLike) -> np.ndarray:
        """Return an uninitialised array of ``n`` elements of ``dtype`` (like :func:`numpy.empty`)."""
        return self.take(n, dtype)[0]

    def take(self, n: int, dtype: np.typing.DTypeLike, *, populate: bool = True) -> tuple[np.ndarray, bool]:
        """Return an uninitialised array of ``n`` elements of ``dtype``, and whether it is a fresh buffer.

        With ``populate=False`` a fresh buffer's pages are not faulted in here: the caller does it where the work
        is spread over threads (:func:`populate`, or its first write), e.g. in the threads that fill it.
        """
        dtype = np.dtype(dtype)
        with self._lock:
            best, best_size = -1, 0
            for i in range(len(self._buffers)):
                # no local name may hold a buffer while its reference count is read
                size = self._buffers[i].shape[0]
                fits = self._buffers[i].dtype == dtype and n <= size < 2 * n
                if fits and (best < 0 or size < best_size) and self._free(i):
                    best, best_size = i, size
            if best >= 0:
                self.reused += 1
                return self._buffers[best][:n], False
            buf = _allocate(max(1, n + n // _SLACK), dtype, populate=n if populate else 0)  # the caller writes all n
            self.allocated += 1
            if len(self._buffers) >= self.max_buffers:
                # full: forget a buffer nobody uses (it is freed), or do not keep this one
                free = [i for i in range(len(self._buffers)) if self._free(i)]
                if not free:
                    return buf[:n], True
                del self._buffers[free[0]]
            self._buffers.append(buf)
            return buf[:n], True

    def __len__(self) -> int:
        return len(self._buffers)
