"""zarr settings that annshard applies around its own reads and writes.

annshard turns on the zarrs (Rust) codec pipeline for everything it reads
and writes, so users never have to remember ``zarr.config.set(...)``. The
setting is applied in a context manager and restored afterwards, so annshard
does not change zarr's behaviour for the rest of the user's program.

**One setting for all of annshard's threads.** ``zarr.config`` (donfig) is one
process-global dict, and ``zarr.config.set`` as a context manager restores, on
exit, whatever it saw on entry. Entered per block by several threads at once
(two loaders prefetching, a loader beside a write), the blocks interleave: the
second saves the first one's settings as "the user's" and puts them back last,
so zarr's config stayed changed after annshard was done. :func:`zarr_config`
therefore counts the blocks that are open in the process, under one lock: the
first to enter saves the user's values and applies annshard's, the last to leave
restores them; blocks entered meanwhile change nothing. A block that sets zarrs'
thread count (opening a loader's arrays; zarrs fixes the count when an array
opens) holds the lock for its duration, so no other block sees or undoes its
count. While any annshard block is open, zarr reads annshard's settings in every
thread of the process (as before).

**After a fork, no zarrs.** zarrs decodes in a process-wide Rust thread pool
that is started on first use and cannot be rebuilt: a forked child inherits the
pool's state but none of its threads, so its first zarrs read waits forever
(measured: a ``DataLoader(num_workers=2)`` with the default start method, after
one epoch in the main process, never yields a batch). A process forked from
one that had loaded zarrs therefore reads and writes through zarr-python's own
``BatchedCodecPipeline`` (see :func:`zarrs_usable`); a process started with
``spawn``/``forkserver``, or forked before zarrs was loaded, keeps zarrs.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import threading
from typing import TYPE_CHECKING

import zarr

from ._compat import reset_zarr_config_lock, zarr_fallback_pipeline_path, zarrs_loaded

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["FALLBACK_PIPELINE", "ZARRS_PIPELINE", "has_zarrs", "zarr_config", "zarrs_usable"]

ZARRS_PIPELINE = "zarrs.ZarrsCodecPipeline"
FALLBACK_PIPELINE = zarr_fallback_pipeline_path()

_zarrs_lost = False
"""Set in a child forked from a process that had loaded zarrs (its thread pool did not survive the fork)."""


class _Blocks:
    """The annshard blocks open in this process, by thread, and how to restore the user's zarr config."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.open: dict[int, int] = {}
        """Open blocks by thread id."""
        self.restore: contextlib.ExitStack | None = None
        """Undoes annshard's settings (exits the ``zarr.config.set`` of the first block); ``None`` when none is open."""


_blocks = _Blocks()


def _after_fork_in_child() -> None:
    global _zarrs_lost, _blocks
    if zarrs_loaded():
        _zarrs_lost = True
    # zarr's config lock (donfig) is held for a moment by every ``zarr.config.set``; held by a thread of the
    # parent at the fork, it would stay locked forever here (no thread of the parent runs in the child)
    reset_zarr_config_lock()
    # so could annshard's own lock; and only the forking thread's blocks are still open here
    inherited = _blocks
    _blocks = _Blocks()
    mine = inherited.open.get(threading.get_ident(), 0)
    if mine:
        _blocks.open[threading.get_ident()] = mine
        _blocks.restore = inherited.restore
        zarr.config.set(_settings())  # this process's settings (zarr-python's pipeline if zarrs was lost)
    elif inherited.restore is not None:
        inherited.restore.close()  # the blocks of the parent's other threads will never close here


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def has_zarrs() -> bool:
    """Whether the zarrs codec pipeline is importable."""
    return importlib.util.find_spec("zarrs") is not None


def zarrs_usable() -> bool:
    """Whether annshard reads and writes through zarrs in this process.

    ``False`` when zarrs is not installed, and in a process forked from one
    that had loaded zarrs: zarrs' Rust thread pool does not survive a fork, and
    a read through it would wait forever.
    """
    return not _zarrs_lost and has_zarrs()


@contextlib.contextmanager
def zarr_config(*, threads: int | None = None) -> Iterator[None]:
    """Run a block with annshard's zarr settings (zarrs codec pipeline, no write-empty-chunks).

    In a process where zarrs cannot be used after a fork (:func:`zarrs_usable`),
    zarr-python's own pipeline is selected explicitly, even when the user's
    global zarr config names zarrs.

    Safe to enter from several threads at once: zarr's config is changed by
    the first open block in the process and restored by the last to close
    (see the module docstring).

    Parameters
    ----------
    threads
        Number of threads for zarrs' codec pipeline; ``None`` keeps zarrs' default (all cores).
    """
    with _blocks.lock:
        _open(_blocks)
    try:
        if threads is not None and zarrs_usable():
            with _blocks.lock, zarr.config.set({"threading.max_workers": threads}):
                yield
        else:
            yield
    finally:
        with _blocks.lock:  # the module's current one: a child forked inside this block has its own
            _close(_blocks)


def _settings() -> dict[str, object]:
    settings: dict[str, object] = {"array.write_empty_chunks": False}
    if zarrs_usable():
        settings["codec_pipeline.path"] = ZARRS_PIPELINE
    elif _zarrs_lost:
        settings["codec_pipeline.path"] = FALLBACK_PIPELINE
    return settings


def _open(blocks: _Blocks) -> None:
    """Open one block of the calling thread (with ``blocks.lock`` held); the first one applies annshard's settings."""
    me = threading.get_ident()
    blocks.open[me] = blocks.open.get(me, 0) + 1
    if blocks.restore is None:
        try:
            stack = contextlib.ExitStack()
            stack.enter_context(zarr.config.set(_settings()))
        except BaseException:
            _close(blocks)
            raise
        blocks.restore = stack


def _close(blocks: _Blocks) -> None:
    """Close one block of the calling thread (with ``blocks.lock`` held); the last one restores the user's config."""
    me = threading.get_ident()
    n = blocks.open.get(me, 0) - 1
    if n > 0:
        blocks.open[me] = n
    else:
        blocks.open.pop(me, None)
    if not blocks.open and blocks.restore is not None:
        restore, blocks.restore = blocks.restore, None
        restore.close()
