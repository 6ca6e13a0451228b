"""``write_collection``: plan, scatter, gather, commit (``append_collection`` is in :mod:`._append`).

Atomicity
    A collection is built in a hidden sibling directory
    ``.<name>.annshard-tmp-<pid>-<token>``; its manifest is written last, and
    the directory is renamed into place only when complete. An existing path
    is refused unless ``overwrite=True``, and even then replaced only when it is
    a collection (or an empty directory) and holds no source; it is swapped out
    by two renames under its writer lock and deleted. Leftovers of interrupted
    attempts (whose process is gone) are removed by the next write to the same
    path; a collection hidden by a kill between the renames is restored by
    ``open_collection``.

    An append writes its new shards in ``<collection>/.annshard-append-<pid>-<token>``,
    moves them next to the existing shards, then commits the extended manifest
    atomically; readers only ever see shards that the manifest lists. The whole
    append holds the collection's writer lock (:mod:`annshard._store._lock`), from
    before it reads the manifest until after the commit, so appends are
    serialised. Shard directories that the committed manifest does not list (an
    append interrupted between the two steps) are removed by the next append,
    under the lock.
"""

from __future__ import annotations

import functools
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from annshard._config import zarr_config
from annshard._errors import CollectionExistsError, OverwriteRefusedError
from annshard._store._atomic import (
    check_replaceable,
    cleanup_stale,
    commit_manifest,
    install,
    scatter_workdir,
    temp_sibling,
)
from annshard._store._collection import Collection, open_collection
from annshard._store._location import is_url
from annshard._store._lock import LOCK_NAME

from ._dask import resolve_client
from ._layout import plan_layout
from ._manifest import check_source_uids, new_manifest
from ._matrices import plan_matrices
from ._memory import parse_bytes
from ._passes import run_passes
from ._plan import plan_genes, plan_obs
from ._remote import write_to_url
from ._sources import open_sources
from ._spec import auto_spec

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from annshard._store._spec import StorageSpec

__all__ = ["write_collection"]

LOCK_TIMEOUT = 600.0
"""Default seconds a writer waits for another writer of the same collection."""


# -- helpers --------------------------------------------------------------------------------------------------------
def _as_list(sources: Any) -> Any:
    """Materialise an iterator of sources once (the paths are checked before the sources are opened)."""
    if isinstance(sources, dict | str | os.PathLike) or not hasattr(sources, "__iter__"):
        return sources
    return list(sources)


def _source_paths(sources: Any) -> list[Path]:
    """Return the on-disk paths among ``sources`` (paths, and backed AnnData's files), resolved through symlinks."""
    if isinstance(sources, dict):
        items = list(sources.values())
    elif isinstance(sources, str | os.PathLike) or not hasattr(sources, "__iter__"):
        items = [sources]
    else:
        items = list(sources)
    out = []
    for obj in items:
        p = obj if isinstance(obj, str | os.PathLike) else getattr(obj, "filename", None)
        if isinstance(p, str | os.PathLike):
            out.append(Path(p).resolve())
    return out


def _check_not_source(path: Path, sources: Any, *, verb: str) -> None:
    """Refuse an output that is a source, holds one, or lies inside one (checked before any source is read)."""
    target = path.resolve()
    for src in _source_paths(sources):
        if src == target or target in src.parents or src in target.parents:
            relation = (
                "is one of the sources"
                if src == target
                else "holds the source"
                if target in src.parents
                else "lies inside the source"
            )
            msg = (
                f"{path}: {relation} {src}; {verb} it would destroy its own input. Nothing was changed: "
                "choose an output path outside every source"
            )
            raise OverwriteRefusedError(msg)


def _check_seed(seed: Any) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        msg = f"seed must be a non-negative int, not {seed!r}"
        raise ValueError(msg)
    return int(seed)


# -- write ----------------------------------------------------------------------------------------------------------
def write_collection(
    sources: Iterable[Any] | Mapping[str, Any] | Any,
    path: str | os.PathLike[str],
    *,
    seed: int = 0,
    join: Literal["inner", "outer"] = "inner",
    obs_columns: Iterable[str] | None = None,
    layer: str | None = None,
    layers: Iterable[str] | Literal["all"] | None = None,
    obsm: Iterable[str] | Literal["all"] | None = None,
    memory_budget: int | str = "1GB",
    n_obs_per_shard: int | None = None,
    storage: StorageSpec | Mapping[str, Any] | None = None,
    dense: bool | None = None,
    overwrite: bool = False,
    show_progress: bool = False,
    obs_conflicts: Literal["raise", "string"] = "raise",
    max_categories: int = 10_000,
    tmp_dir: str | os.PathLike[str] | None = None,
    lock_timeout: float = LOCK_TIMEOUT,
    source_uids: Mapping[str, str] | None = None,
    client: Any = None,
    scheduler: Literal["distributed"] | None = None,
    storage_options: Mapping[str, Any] | None = None,
) -> Collection:
    """Write sources into one globally shuffled, sharded collection, out of core.

    Rows are shuffled by a two-pass external bucket shuffle: each source is read
    once, sequentially, in row blocks, and each shard is written once; peak memory
    is bounded by ``memory_budget`` (plus a fixed overhead), never by the input size.

    Parameters
    ----------
    sources
        ``.h5ad`` paths, AnnData zarr directories, in-memory AnnData objects, or a mix;
        or a dict ``{name: source}`` to choose the labels of ``obs["source"]`` (by default
        the file name, or ``adata-<i>`` for in-memory AnnData).
    path
        The collection directory to create, or a URL (``s3://bucket/prefix/cells.zarr``): the collection is
        then written to a temporary directory under ``tmp_dir`` (it needs the collection's disk space) and
        uploaded, shards first and the manifest last (a reader never sees a half-written collection).
    seed
        Shuffle seed: the same seed and settings give byte-identical shards.
    join
        ``"inner"``: genes present in every source; ``"outer"``: their union (absent genes are
        structural zeros, or 0 in dense ``X``). Order: the first source's, then new genes in
        order of appearance.
    obs_columns
        obs columns to keep (default: all). ``source`` and ``source_row`` are always added.
    layer
        Take this layer of every source instead of ``X``.
    layers
        Layers to keep beside ``X`` in every shard (``"all"``: those every source has), for the same
        rows: ``Loader(..., layers=[...])`` yields them with each batch. Each is reindexed into the
        collection's genes like ``X`` (zeros for a source's missing genes under ``join="outer"``) and
        stored in its own format and dtype (CSR unless every source's is dense; whole numbers as
        counts). A source lacking a requested layer is refused by name.
    obsm
        obsm arrays (embeddings such as ``"X_pca"``) to keep in every shard, dense and chunked along
        rows (``"all"``: those every source has). Their width must be the same in every source.
    memory_budget
        Peak working memory, in bytes or as ``"512MB"``, ``"4GiB"``, ...
    n_obs_per_shard
        Rows per shard; by default the most that fit the memory budget.
    storage
        A full :class:`~annshard.StorageSpec`, or a dict overriding fields of the automatic
        one: CSR, values in the sources' dtype compressed with lz4, and stored as ``uint16`` counts when
        every value is a whole number in ``[0, 65535]`` (``{"counts_dtype": None}`` opts out; readers see
        the sources' dtype either way); gene indices ``uint16`` when there are fewer than 65536 genes,
        uncompressed (``{"indices_codec": None}`` compresses them, for network storage or a tight disk).
    dense
        Store ``X`` dense (``True``) or CSR (``False``); default: dense only when every source is dense.
    overwrite
        Replace an existing collection at ``path`` (an annshard or annbatch collection, or an empty directory;
        anything else is refused and nothing is deleted). The old collection is swapped out only when the new
        one is complete, under the old one's writer lock.
    show_progress
        Show progress bars.
    obs_conflicts
        An obs column holding numbers in one source and strings in another: ``"raise"`` refuses,
        ``"string"`` stores it as strings (with a warning).
    max_categories
        A string column with at most this many distinct values is stored as categorical.
    tmp_dir
        Where the temporary bucket files go (default: inside the collection's temporary directory).
    lock_timeout
        With ``overwrite``: seconds to wait for a writer (an append) of the collection being replaced.
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
        For a URL: fsspec/s3fs-style options (see :func:`annshard.open_collection`).

    Returns
    -------
    The new collection.

    Raises
    ------
    CollectionExistsError
        If ``path`` exists and ``overwrite`` is false.
    OverwriteRefusedError
        If ``path`` is a source, holds or lies inside one, or ``overwrite`` would replace something that is
        not a collection (a file, a non-empty directory); nothing is deleted.
    CollectionLockedError
        If another writer holds the replaced collection's lock for more than ``lock_timeout`` seconds.
    SourceError
        If a source is missing, not AnnData, corrupt, empty, or obs types conflict; if a requested
        layer or obsm array is missing from a source, or obsm widths differ between sources.
    VarJoinError
        If a source has duplicated var names, or ``join="inner"`` leaves no gene.
    ValueError
        If ``source_uids`` names a source that is not among ``sources`` (or a uid is not a non-empty string).

    Examples
    --------
    >>> import annshard
    >>> from annshard.testing import make_adata
    >>> coll = annshard.write_collection(
    ...     [make_adata(300, 100), make_adata(200, 100, seed=1)], "cells.zarr"
    ... )  # doctest: +SKIP
    >>> coll.n_obs, coll.n_vars  # doctest: +SKIP
    (500, 100)
    """
    if is_url(path):  # stage locally, then upload (annshard._write._remote)
        kwargs = {k: v for k, v in locals().items() if k not in ("sources", "path", "storage_options", "overwrite")}
        write = functools.partial(write_collection, _as_list(sources), **kwargs)
        return write_to_url(write, str(path), storage_options, overwrite=overwrite, tmp_dir=tmp_dir)
    path = Path(path)
    seed = _check_seed(seed)
    budget = parse_bytes(memory_budget)
    client = resolve_client(client, scheduler)
    if obs_conflicts not in ("raise", "string"):
        msg = f"obs_conflicts must be 'raise' or 'string', not {obs_conflicts!r}"
        raise ValueError(msg)
    sources = _as_list(sources)
    _check_not_source(path, sources, verb="writing")
    cleanup_stale(path)
    if overwrite:
        check_replaceable(path)
    if (path.exists() or path.is_symlink()) and not overwrite:
        msg = (
            f"{path}: already exists; pass overwrite=True (CLI: --overwrite) to replace it, choose another path, "
            "or add sources to an existing collection with annshard.append_collection(...)"
        )
        raise CollectionExistsError(msg)
    with zarr_config():
        srcs = open_sources(sources, layer=layer)
        try:
            names = [s.name for s in srcs]
            uids = check_source_uids(source_uids, names)
            genes = plan_genes(srcs, join)
            columns = plan_obs(
                srcs,
                None if obs_columns is None else list(obs_columns),
                max_categories=max_categories,
                obs_conflicts=obs_conflicts,
            )
            spec = auto_spec(srcs, genes.n_vars, dense, storage)
            matrices = plan_matrices(srcs, layers=layers, obsm=obsm, n_vars=genes.n_vars, x_spec=spec)
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = temp_sibling(path)
            tmp.mkdir()
            workdir = scatter_workdir(tmp, tmp_dir)
            try:
                layout = plan_layout(
                    srcs,
                    genes,
                    columns,
                    spec,
                    budget=budget,
                    n_obs_per_shard=n_obs_per_shard,
                    max_shard_rows=None,
                    seed=seed,
                    generation=0,
                    source_names=names,
                    workdir=workdir,
                    matrices=matrices,
                )
                written = run_passes(
                    layout, tmp, first_shard=0, show_progress=show_progress, client=client, budget=budget
                )
                manifest = new_manifest(
                    layout, written.stored, written.shards, join=join, layer=layer, budget=budget, uids=uids
                )
                (tmp / LOCK_NAME).touch()  # part of the collection from the start: a later append adds no file
                commit_manifest(tmp, manifest)
                install(tmp, path, overwrite=overwrite, lock_timeout=lock_timeout)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                shutil.rmtree(workdir, ignore_errors=True)
                raise
        finally:
            for s in srcs:
                s.close()
    return open_collection(path)
