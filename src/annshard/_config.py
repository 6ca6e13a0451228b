"""zarr settings that annshard applies around its own reads and writes.

annshard turns on the zarrs (Rust) codec pipeline for everything it reads
and writes, so users never have to remember ``zarr.config.set(...)``. The
setting is applied in a context manager and restored afterwards, so annshard
does not change zarr's behaviour for the rest of the user's program.
"""

from __future__ import annotations

import contextlib
import importlib.util
from typing import TYPE_CHECKING

import zarr

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["ZARRS_PIPELINE", "has_zarrs", "zarr_config"]

ZARRS_PIPELINE = "zarrs.ZarrsCodecPipeline"


def has_zarrs() -> bool:
    """Whether the zarrs codec pipeline is importable."""
    return importlib.util.find_spec("zarrs") is not None


@contextlib.contextmanager
def zarr_config(*, threads: int | None = None) -> Iterator[None]:
    """Run a block with annshard's zarr settings (zarrs codec pipeline, no write-empty-chunks).

    Parameters
    ----------
    threads
        Number of threads for zarrs' codec pipeline; ``None`` keeps zarrs' default (all cores).
    """
    settings: dict[str, object] = {"array.write_empty_chunks": False}
    if has_zarrs():
        settings["codec_pipeline.path"] = ZARRS_PIPELINE
        if threads is not None:
            settings["threading.max_workers"] = threads
    with zarr.config.set(settings):
        yield
