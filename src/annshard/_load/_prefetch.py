"""A background pipeline stage: a thread produces results ahead of the consumer, a bounded number at a time.

The loader stacks two of them: one reads preload blocks, one gathers batches
from them. Memory bound: the thread may only start a result when one of its
*slots* is free, and the consumer frees a slot when it moves past a result
(with two slots: the block being consumed and the one being read or waiting).
An exception in the thread is handed to the consumer and
re-raised there; the consumer never waits forever on a thread that died.

A forked child inherits a prefetcher but not its thread, and maybe locks that
thread held at the fork: there it raises at once, touching none of them (a new
``iter(loader)`` in the child builds new prefetchers).
"""

from __future__ import annotations

import atexit
import os
import queue
import threading
import weakref
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator

__all__ = ["Prefetcher"]

_DONE = object()
_LIVE: weakref.WeakSet[Prefetcher] = weakref.WeakSet()


@atexit.register
def _stop_all() -> None:
    """Stop every prefetch thread before the interpreter finalises.

    A loop left early keeps its epoch's threads alive until the generator is
    collected; at exit, Python kills daemon threads when they next take the GIL,
    and one killed while inside zarrs' Rust code aborts the process ("FATAL:
    exception not rethrown"). All threads are told to stop first (a consumer
    stage may be waiting on a producer stage), then each is joined.
    """
    live = [p for p in _LIVE if p._pid == os.getpid()]  # a forked child's copies have no thread to stop
    for p in live:
        p._stop.set()
    for p in live:
        p.close()


class Prefetcher:
    """Run ``produce(item)`` for each item in a background thread, at most ``slots`` results alive.

    Without ``produce`` the items themselves are the results: iterating
    ``items`` (a generator doing the work) is then what runs in the thread.
    Iterate it to get the results in order; call :meth:`release` when done with
    one (or let the next ``next()`` do it), and :meth:`close` to stop early.
    ``name`` names the thread (``benchmarks/jobs.py`` tells the stages' CPU apart by it).
    """

    def __init__(
        self,
        items: Iterable[Any],
        produce: Callable[[Any], Any] | None = None,
        *,
        slots: int = 2,
        name: str = "annshard-prefetch",
    ) -> None:
        self._items = items
        self._produce = produce
        self._slots = threading.Semaphore(slots)
        self._queue: queue.Queue[Any] = queue.Queue()
        self._stop = threading.Event()
        self._held = False
        self._pid = os.getpid()
        self._thread = threading.Thread(target=self._run, name="annshard-prefetch", daemon=True)
        _LIVE.add(self)
        self._thread.name = name
        self._thread.start()

    def _run(self) -> None:
        try:
            for item in self._items:
                while not self._slots.acquire(timeout=0.05):
                    if self._stop.is_set():
                        return
                if self._stop.is_set():
                    return
                self._queue.put(("ok", item if self._produce is None else self._produce(item)))
            self._queue.put(("done", _DONE))
        except BaseException as e:  # noqa: BLE001 - handed over to the consumer, re-raised there
            self._queue.put(("error", e))

    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        if self._pid != os.getpid():
            msg = (
                f"this annshard iteration was started in process {self._pid} and cannot continue in process "
                f"{os.getpid()}, a fork of it (its reading thread did not survive the fork); start a new "
                "iteration in this process: `for batch in loader: ...`"
            )
            raise RuntimeError(msg)
        self.release()
        while True:
            try:
                kind, value = self._queue.get(timeout=0.5)
                break
            except queue.Empty:
                if not self._thread.is_alive() and self._queue.empty():
                    msg = "annshard's prefetch thread stopped without a result"
                    raise RuntimeError(msg) from None
        if kind == "error":
            self.close()
            raise value
        if kind == "done":
            self.close()
            raise StopIteration
        self._held = True
        return value

    def release(self) -> None:
        """Free the slot of the last result handed out."""
        if self._held and self._pid == os.getpid():
            self._held = False
            self._slots.release()

    def close(self) -> None:
        """Stop the thread (it finishes at most the read in progress); nothing to do in a forked child."""
        if self._pid != os.getpid():
            return
        self._stop.set()
        self.release()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout=30)
