"""The two passes as ``dask.distributed`` tasks: plan centrally, scatter and gather on the workers.

The driver plans everything that decides the output (:func:`~._scatter.plan_scatter`:
every bucket count, from the layout alone), so the collection is byte-identical to
the single-process writer's, whatever the number of workers or how the rows are cut
into tasks:

- **scatter**: one task per source row range (whole planned blocks), each writing its
  own part directory of bucket files in the staging directory (the output's hidden
  sibling, which every worker must reach: a shared file system). A retried task
  (its worker died) starts its part over.
- the driver merges the tasks' value statistics and settles the storage;
- **gather**: one task per group of consecutive shards, each writing its shards into
  the staging collection; the driver builds and commits the manifest last.

The graph has ``O(sources x ranges + shards / group)`` tasks, never one per row or
chunk. Memory: a scatter task reads ``piece_rows`` rows at a time, sized by the
per-task budget ``min(memory_budget, worker memory limit / threads per worker)``;
a gather task holds one bucket, which the layout sized to ``memory_budget`` in
every engine (the shard size is part of the collection, so it cannot depend on
the cluster): ``memory_budget`` larger than a worker's share is refused.

Tasks are not retried on an exception (a source's bad values fail the same way again: the
error, e.g. a :class:`~annshard.SourceError` naming the file, reaches the caller at once); a task
whose worker dies is rescheduled by Dask (``distributed.scheduler.allowed-failures``).

``dask.distributed`` is imported only here, and only when a client is given.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import shutil
from typing import TYPE_CHECKING, Any

from annshard._config import zarr_config
from annshard._store._manifest import ShardInfo, shard_name

from ._gather import gather_bucket
from ._manifest import settle_storage
from ._memory import pin_mmap_threshold
from ._scatter import merge_stats, plan_scatter, scatter_task

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from ._layout import Layout
    from ._manifest import Stored
    from ._scatter import ScatterTask, TaskStats

__all__ = ["TaskCounts", "local_client", "resolve_client", "run_passes_dask", "task_budget"]

TASKS_PER_THREAD = 2
"""Scatter and gather tasks aimed at per worker thread (more tasks: better balance, more part files)."""


@dataclasses.dataclass(frozen=True)
class TaskCounts:
    """How many tasks a distributed write submitted (the graph's size), and the bytes of the plan each carries."""

    scatter: int
    gather: int
    plan_bytes: int = 0


last_counts: TaskCounts | None = None
"""The task counts of this process's last distributed write (read by tests and the benchmark)."""


def resolve_client(client: Any, scheduler: str | None) -> Any:
    """Return the ``dask.distributed.Client`` to run on, or ``None`` for the single-process writer.

    Raises
    ------
    ValueError
        If ``scheduler`` is neither ``None`` nor ``"distributed"``, or both are given.
    ImportError
        If ``scheduler="distributed"`` and dask.distributed is not installed (``pip install annshard[dask]``).
    """
    if scheduler is None:
        return client
    if scheduler != "distributed":
        msg = f"scheduler must be None or 'distributed', not {scheduler!r}; or pass client=Client(...)"
        raise ValueError(msg)
    if client is not None:
        msg = "pass client= or scheduler='distributed', not both"
        raise ValueError(msg)
    try:
        from distributed import get_client
    except ImportError as e:
        msg = "scheduler='distributed' needs dask.distributed: pip install 'annshard[dask]'"
        raise ImportError(msg) from e
    try:
        return get_client()
    except ValueError as e:
        msg = "scheduler='distributed': no dask.distributed Client is running; start one (Client(...)) first"
        raise ValueError(msg) from e


def _workers(client: Any) -> list[dict[str, Any]]:
    info = client.scheduler_info(n_workers=-1) if _takes_n_workers(client) else client.scheduler_info()
    workers = list(info.get("workers", {}).values())
    if not workers:
        msg = "the dask cluster has no workers; start some (or wait for them: client.wait_for_workers(n))"
        raise RuntimeError(msg)
    return workers


def _takes_n_workers(client: Any) -> bool:
    import inspect

    return "n_workers" in inspect.signature(client.scheduler_info).parameters


def task_budget(budget: int, workers: list[dict[str, Any]]) -> int:
    """Per-task budget: ``memory_budget``, or less where a worker's memory limit per thread is smaller.

    Raises
    ------
    ValueError
        If ``budget`` exceeds the smallest worker's memory limit per thread (a gather task holds one
        bucket sized to ``budget``).
    """
    shares = [w["memory_limit"] // max(1, w.get("nthreads", 1)) for w in workers if w.get("memory_limit")]
    share = min(shares) if shares else budget
    if budget > share:
        msg = (
            f"memory_budget={budget:,} bytes exceeds a dask worker's memory share ({share:,} bytes: its memory "
            "limit / threads): a gather task holds one shard's bucket, sized to memory_budget. Pass a smaller "
            "memory_budget (the same one on every engine gives the same collection), or give the workers more "
            "memory or fewer threads"
        )
        raise ValueError(msg)
    return budget


def _scatter_remote(layout: Layout, task: ScatterTask) -> TaskStats:
    pin_mmap_threshold()
    with zarr_config():
        return scatter_task(layout, task)


def _gather_remote(layout: Layout, stored: Stored, root_path: Path, ks: list[int], first_shard: int) -> list[int]:
    import zarr

    pin_mmap_threshold()
    out = []
    with zarr_config():
        root = zarr.open_group(root_path, mode="r+", zarr_format=3)  # never recreated by a task outliving its write
        for n, k in enumerate(ks):
            name = shard_name(first_shard + k)
            if (root_path / name).exists():  # a retried task (its worker died): write the shard again
                shutil.rmtree(root_path / name)
            var_from = shard_name(first_shard + ks[0]) if n else None
            out.append(gather_bucket(layout, stored, k, root, name, var_from=var_from, keep_files=True))
    return out


def _check_sources(layout: Layout) -> None:
    from ._sources._store import StoreSource

    for src in layout.sources:
        if not isinstance(src, StoreSource):
            msg = (
                f"source {src.name!r}: is an in-memory AnnData; a distributed write reads every source on the "
                "workers, so pass it as an .h5ad or AnnData zarr path that every worker can read (write it "
                "with adata.write_h5ad(...)), or write without client="
            )
            raise ValueError(msg)


def _groups(n: int, n_groups: int) -> list[list[int]]:
    per = math.ceil(n / max(1, n_groups))
    return [list(range(a, min(n, a + per))) for a in range(0, n, per)]


def run_passes_dask(
    layout: Layout, root_path: Path, *, first_shard: int, client: Any, budget: int
) -> tuple[Stored, tuple[ShardInfo, ...]]:
    """Run both passes as tasks on ``client``'s workers; return the settled storage and the shards they wrote."""
    global last_counts
    _check_sources(layout)
    workers = _workers(client)
    threads = sum(max(1, w.get("nthreads", 1)) for w in workers)
    per_task = task_budget(budget, workers)
    n_blocks = sum(math.ceil(s.n_obs / b) for s, b in zip(layout.sources, layout.block_rows, strict=True))
    blocks_per_task = max(1, math.ceil(n_blocks / (TASKS_PER_THREAD * threads)))
    piece_rows = [max(1, b * per_task // budget) for b in layout.block_rows]
    tasks = plan_scatter(layout, blocks_per_task=blocks_per_task, piece_rows=piece_rows)
    for src in layout.sources:
        src.close()  # shipped closed: each task opens its source on its worker
    layout.workdir.mkdir(parents=True, exist_ok=True)
    futures = [client.submit(_scatter_remote, layout, t, pure=False) for t in tasks]
    stats = client.gather(futures)
    stored = settle_storage(layout, merge_stats(layout, stats))
    import zarr

    zarr.open_group(root_path, mode="a", zarr_format=3)  # the staging root, created by the driver alone
    groups = _groups(layout.n_buckets, TASKS_PER_THREAD * threads)
    futures = [client.submit(_gather_remote, layout, stored, root_path, ks, first_shard, pure=False) for ks in groups]
    nnzs = [nnz for part in client.gather(futures) for nnz in part]
    import cloudpickle

    last_counts = TaskCounts(scatter=len(tasks), gather=len(groups), plan_bytes=len(cloudpickle.dumps(layout)))
    shards = tuple(
        ShardInfo(name=shard_name(first_shard + k), n_obs=rows, nnz=nnz, generation=layout.generation)
        for k, (rows, nnz) in enumerate(zip(layout.shard_rows, nnzs, strict=True))
    )
    return stored, shards


@contextlib.contextmanager
def local_client(n_workers: int) -> Iterator[Any]:
    """Yield a client of a loopback ``LocalCluster`` of ``n_workers`` processes, one thread each (closed afterwards).

    Everything binds 127.0.0.1 (the dashboard a free port): nothing listens beyond this machine.
    """
    import distributed

    with (
        distributed.LocalCluster(
            n_workers=n_workers, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address="127.0.0.1:0"
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        yield client
