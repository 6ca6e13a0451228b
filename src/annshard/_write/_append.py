"""``append_collection``: new sources as new shards of an existing collection, under its writer lock.

An append writes its new shards in ``<collection>/.annshard-append-<pid>-<token>``,
moves them next to the existing shards, then commits the extended manifest
atomically; readers only ever see shards that the manifest lists. The whole
append holds the collection's writer lock (:mod:`annshard._store._lock`), from before
it reads the manifest until after the commit, so appends are serialised. Shard
directories that the committed manifest does not list (an append interrupted
between the two steps) are removed by the next append, under the lock.
"""

from __future__ import annotations

import functools
import os
import shutil
import warnings
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from annshard._config import zarr_config
from annshard._errors import CollectionFormatError, OverwriteRefusedError
from annshard._store._atomic import append_dir, cleanup_append, commit_manifest, move_into_place, scatter_workdir
from annshard._store._collection import Collection, open_collection
from annshard._store._location import is_url
from annshard._store._lock import collection_lock

from ._dask import resolve_client
from ._layout import plan_layout
from ._manifest import appended_manifest, check_source_uids, unique_names
from ._matrices import plan_matrices_into
from ._memory import parse_bytes
from ._passes import run_passes
from ._plan import plan_genes_into, plan_obs
from ._remote import append_to_url
from ._sources import open_sources
from ._writer import LOCK_TIMEOUT, _as_list, _check_seed, _source_paths

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping
    from pathlib import Path

    from annshard._store._manifest import Manifest

__all__ = ["append_collection"]

_PAUSE_ENV = "ANNSHARD_TEST_PAUSE_APPEND"
"""Test hook: seconds an append sleeps between reading the manifest and writing (to race two appends)."""


def _next_shard(m: Manifest) -> int:
    """Return the number of the first new shard: after every listed one (names need not be consecutive)."""
    return 1 + max((int(s.name[len("shard-") : -len(".zarr")]) for s in m.shards), default=-1)


def append_collection(
    collection: Collection | str | os.PathLike[str],
    sources: Iterable[Any] | Mapping[str, Any] | Any,
    *,
    seed: int | None = None,
    memory_budget: int | str = "1GB",
    n_obs_per_shard: int | None = None,
    show_progress: bool = False,
    obs_conflicts: Literal["raise", "string"] = "raise",
    tmp_dir: str | os.PathLike[str] | None = None,
    lock_timeout: float = LOCK_TIMEOUT,
    source_uids: Mapping[str, str] | None = None,
    client: Any = None,
    scheduler: Literal["distributed"] | None = None,
    storage_options: Mapping[str, Any] | None = None,
) -> Collection:
    """Add sources to a collection as new shards, shuffled among themselves; existing shards are never rewritten.

    The new sources are reindexed into the collection's gene space. Genes they have that the
    collection lacks are dropped (with a warning under ``join="outer"``: an append cannot add
    genes). Under ``join="inner"`` each new source must have every gene of the collection;
    under ``"outer"`` its missing genes are structural zeros. Every new source must have each
    layer and obsm array the collection stores (same obsm widths). Categorical obs columns may gain
    categories (appended to the shared list, so existing codes keep their meaning); obs columns
    the collection does not have are not stored.

    Parameters
    ----------
    collection
        The collection (or its path).
    sources
        As for :func:`write_collection`.
    seed
        Shuffle seed of the new shards (default: the collection's seed; the generation number
        makes each append's stream distinct).
    memory_budget
        As for :func:`write_collection`.
    n_obs_per_shard
        Rows per new shard; default: as many as fit the budget, at most the largest existing shard.
    show_progress
        Show progress bars.
    obs_conflicts
        As for :func:`write_collection` (only ``"raise"`` is possible against a numeric column).
    tmp_dir
        Where the temporary bucket files go.
    lock_timeout
        Seconds to wait while another writer (an append, an overwrite) holds the collection's lock;
        ``0`` fails at once.
    source_uids
        lamindb artifact uid per source name, recorded as the sources' ``uid`` in the manifest.
    client
        A ``dask.distributed.Client``: the scatter and gather passes run as tasks on its workers
        (``pip install 'annshard[dask]'``); the collection is byte-identical to the one written without
        it. Sources must be paths every worker can read, and the output's parent a directory every worker
        can write (the staging directory is the output's hidden sibling). ``memory_budget`` is then the
        peak of one task; it must fit a worker's memory limit per thread.
    scheduler
        ``"distributed"``: use the current client (``distributed.get_client()``).
    storage_options
        For a collection at a URL (see :func:`annshard.open_collection`). A remote append stages its new shards
        locally, uploads them, then replaces the manifest only if it is still the one it read (a conditional
        put on its e-tag): of two concurrent appends one wins, the other raises :class:`CollectionLockedError`.

    Returns
    -------
    The updated collection.

    Raises
    ------
    CollectionLockedError
        If another writer still holds the lock after ``lock_timeout`` seconds (naming its pid, host and start).
    OverwriteRefusedError
        If a source lies inside the collection.
    ValueError
        If ``source_uids`` names a source that is not among ``sources`` (or a uid is not a non-empty string).

    Examples
    --------
    >>> import annshard
    >>> coll = annshard.open_collection("cells.zarr")  # doctest: +SKIP
    >>> coll = annshard.append_collection(coll, ["more.h5ad"])  # doctest: +SKIP
    """
    if is_url(collection) or (isinstance(collection, Collection) and collection.remote):
        kwargs = {k: v for k, v in locals().items() if k not in ("collection", "storage_options")}
        target = collection.location if isinstance(collection, Collection) else str(collection)
        return append_to_url(functools.partial(_append_local, **kwargs), target, storage_options, tmp_dir=tmp_dir)
    opened = open_collection(collection if not isinstance(collection, Collection) else collection.path)
    if opened.origin != "annshard":
        msg = f"{opened.path}: was written by {opened.origin}; annshard appends only to its own collections"
        raise CollectionFormatError(msg)
    path = opened.path
    sources = _as_list(sources)
    for src in _source_paths(sources):
        if path.resolve() == src or path.resolve() in src.parents:
            msg = f"{path}: the source {src} lies inside the collection; copy it out first (nothing was changed)"
            raise OverwriteRefusedError(msg)
    with collection_lock(path, timeout=lock_timeout, what="append"):
        return _append_locked(
            path,
            sources,
            seed=seed,
            memory_budget=memory_budget,
            n_obs_per_shard=n_obs_per_shard,
            show_progress=show_progress,
            obs_conflicts=obs_conflicts,
            tmp_dir=tmp_dir,
            source_uids=source_uids,
            client=resolve_client(client, scheduler),
        )


def _append_locked(
    path: Path,
    sources: Any,
    *,
    seed: int | None,
    memory_budget: int | str,
    n_obs_per_shard: int | None,
    show_progress: bool,
    obs_conflicts: Literal["raise", "string"],
    tmp_dir: str | os.PathLike[str] | None,
    source_uids: Mapping[str, str] | None,
    client: Any,
) -> Collection:
    """Append, under the collection's lock: the manifest read here is the committed one."""
    coll = open_collection(path)
    if coll.origin != "annshard":
        msg = f"{coll.path}: was written by {coll.origin}; annshard appends only to its own collections"
        raise CollectionFormatError(msg)
    m = coll.manifest
    seed = m.seed if seed is None else _check_seed(seed)
    budget = parse_bytes(memory_budget)
    generation = 1 + max((s.generation for s in m.shards), default=0)
    generation = max(generation, len(m.appends) + 1)
    cleanup_append(coll)
    if os.environ.get(_PAUSE_ENV):
        import time

        time.sleep(float(os.environ[_PAUSE_ENV]))
    old_names = [s.name for s in m.sources]
    with zarr_config():
        var = coll.var
        srcs = open_sources(sources, layer=m.layer)
        try:
            uids = check_source_uids(source_uids, [s.name for s in srcs])
            genes = plan_genes_into(srcs, var, m.join)
            columns = plan_obs(srcs, None, obs_conflicts=obs_conflicts, existing=m.obs_columns)
            matrices = plan_matrices_into(srcs, m.matrices)
            for s in srcs:  # other unsafe casts are checked value by value before the cast (refused if lossy)
                stored = np.dtype(m.storage.data_dtype)
                if s.x_dtype.kind == "f" and stored.kind == "f" and not np.can_cast(s.x_dtype, stored, "safe"):
                    msg = f"{s.label}: values are rounded from {s.x_dtype} to the collection's {stored}"
                    warnings.warn(msg, UserWarning, stacklevel=2)
            new_names = unique_names([s.name for s in srcs], old_names, generation)
            names = old_names + new_names
            tmp = append_dir(coll.path)
            tmp.mkdir()
            workdir = scatter_workdir(tmp, tmp_dir)
            moved: list[Path] = []
            try:
                layout = plan_layout(
                    srcs,
                    genes,
                    columns,
                    m.storage,
                    budget=budget,
                    n_obs_per_shard=n_obs_per_shard,
                    max_shard_rows=max((s.n_obs for s in m.shards), default=None),
                    seed=seed,
                    generation=generation,
                    source_names=names,
                    workdir=workdir,
                    matrices=matrices,
                )
                shards = run_passes(
                    layout, tmp, first_shard=_next_shard(m), show_progress=show_progress, client=client, budget=budget
                ).shards
                for sh in shards:
                    move_into_place(tmp / sh.name, coll.path / sh.name)
                    moved.append(coll.path / sh.name)
                new = appended_manifest(m, layout, shards, new_names=new_names, uids=uids)
                commit_manifest(coll.path, new)
            except BaseException:
                for p in moved:
                    shutil.rmtree(p, ignore_errors=True)
                raise
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
                shutil.rmtree(workdir, ignore_errors=True)
        finally:
            for s in srcs:
                s.close()
    return Collection(coll.path, new)


def _append_local(collection: Path, **kwargs: Any) -> Collection:
    return append_collection(collection, **kwargs)
