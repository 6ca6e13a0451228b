"""Pass orchestration: run the scatter pass, settle the storage, run the gather pass, in this order.

Each step takes what the previous one returned and changes nothing it was given:
the frozen :class:`~._layout.Layout` goes into :func:`~._scatter.scatter`, whose
value statistics :func:`~._manifest.settle_storage` turns into the storage the
shards are written with, and :func:`~._gather.gather` writes the shards and
returns their infos. The caller builds the manifest from :class:`Written`.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ._gather import gather
from ._manifest import Stored, settle_storage
from ._memory import pin_mmap_threshold
from ._scatter import scatter

if TYPE_CHECKING:
    from pathlib import Path

    from annshard._store._manifest import ShardInfo

    from ._layout import Layout

__all__ = ["SCATTER_THREADS_MIN_BUDGET", "Written", "run_passes"]

SCATTER_THREADS_MIN_BUDGET = 256 * 2**20
"""Below this memory budget the scatter pass reads one source at a time."""


@dataclass(frozen=True)
class Written:
    """What the two passes produced.

    Attributes
    ----------
    stored
        How the new shards are stored (the counts decisions settled from the scatter pass).
    shards
        The new shards, in order.
    """

    stored: Stored
    shards: tuple[ShardInfo, ...]


def _progress(show: bool, total: int, desc: str) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="cells", unit_scale=True, disable=not show, leave=show)


def run_passes(
    layout: Layout, root_path: Path, *, first_shard: int, show_progress: bool, client: Any = None, budget: int = 0
) -> Written:
    """Scatter, settle how values are stored, gather the shards into ``root_path``; remove the bucket files.

    With a ``dask.distributed`` ``client``, both passes run as tasks on its workers (:mod:`._dask`,
    ``budget``: the write's memory budget); the output is the same.
    """
    import zarr

    layout.workdir.mkdir(parents=True, exist_ok=True)
    if client is not None:
        from ._dask import run_passes_dask

        try:
            stored, shards = run_passes_dask(layout, root_path, first_shard=first_shard, client=client, budget=budget)
            return Written(stored, shards)
        finally:
            shutil.rmtree(layout.workdir, ignore_errors=True)
    if os.environ.get("ANNSHARD_NO_PIN") is None:
        pin_mmap_threshold()
    n = sum(layout.shard_rows)
    with _progress(show_progress, n, "shuffling") as bar:
        # each further source thread costs ~20 MiB beyond the budget (its file's caches, its allocator arena;
        # tests/write/test_memory.py): small budgets scatter one source at a time
        scattered = scatter(layout, progress=bar.update, threads=1 if 0 < budget < SCATTER_THREADS_MIN_BUDGET else None)
    stored = settle_storage(layout, scattered)
    root = zarr.open_group(root_path, mode="a", zarr_format=3)
    with _progress(show_progress, n, "writing shards") as bar:
        shards = gather(layout, stored, root, first_shard=first_shard, progress=bar.update)
    shutil.rmtree(layout.workdir, ignore_errors=True)
    return Written(stored, tuple(shards))
