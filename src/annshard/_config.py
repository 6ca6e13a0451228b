"""zarr settings that annshard applies around its own reads and writes.

annshard turns on the zarrs (Rust) codec pipeline for everything it reads
and writes, so users never have to remember ``zarr.config.set(...)``. The
setting is applied in a context manager and restored afterwards, so annshard
does not change zarr's behaviour for the rest of the user's program.

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
import sys
import threading
from typing import TYPE_CHECKING

import zarr

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["FALLBACK_PIPELINE", "ZARRS_PIPELINE", "has_zarrs", "zarr_config", "zarrs_usable"]

ZARRS_PIPELINE = "zarrs.ZarrsCodecPipeline"
FALLBACK_PIPELINE = "zarr.core.codec_pipeline.BatchedCodecPipeline"

_zarrs_lost = False
"""Set in a child forked from a process that had loaded zarrs (its thread pool did not survive the fork)."""


def _after_fork_in_child() -> None:
    global _zarrs_lost
    if "zarrs._internal" in sys.modules:
        _zarrs_lost = True
    # zarr's config lock (donfig) is held for a moment by every ``zarr.config.set``; held by a thread of the
    # parent at the fork, it would stay locked forever here (no thread of the parent runs in the child)
    lock = getattr(getattr(zarr.config, "config_lock", None), "lock", None)
    if lock is not None and hasattr(lock, "locked") and lock.locked():
        zarr.config.config_lock.lock = threading.Lock()


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

    Parameters
    ----------
    threads
        Number of threads for zarrs' codec pipeline; ``None`` keeps zarrs' default (all cores).
    """
    settings: dict[str, object] = {"array.write_empty_chunks": False}
    if zarrs_usable():
        settings["codec_pipeline.path"] = ZARRS_PIPELINE
        if threads is not None:
            settings["threading.max_workers"] = threads
    elif _zarrs_lost:
        settings["codec_pipeline.path"] = FALLBACK_PIPELINE
    with zarr.config.set(settings):
        yield
