"""``write_collection`` and ``append_collection``: plan, scatter, gather, commit.

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
    append holds the collection's writer lock (:mod:`annshard._lock`), from
    before it reads the manifest until after the commit, so appends are
    serialised. Shard directories that the committed manifest does not list (an
    append interrupted between the two steps) are removed by the next append,
    under the lock.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import warnings
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from annshard._collection import Collection, commit_manifest, is_collection, open_collection
from annshard._config import zarr_config
from annshard._errors import CollectionExistsError, CollectionFormatError, OverwriteRefusedError
from annshard._format import Manifest, ObsColumn, ShardInfo, SourceInfo, StorageSpec, shard_name
from annshard._lock import LOCK_NAME, collection_lock, pid_alive

from ._counts import AUTO, check_counts_dtype, resolve_counts
from ._gather import gather_bucket
from ._layout import GATHER_FACTOR, SCATTER_FACTOR, Layout, parse_bytes, row_bytes, shard_sizes
from ._matrices import MatrixPlan, plan_matrices, plan_matrices_into, resolve_matrices
from ._memory import pin_mmap_threshold
from ._plan import ColumnPlan, plan_genes, plan_genes_into, plan_obs
from ._scatter import scatter
from ._sources import Source, open_sources

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from ._plan import GenePlan

__all__ = ["append_collection", "write_collection"]

_STALE = re.compile(r"\.annshard-(tmp|old|append)-(\d+)-[0-9a-f]+$")
_PAUSE_ENV = "ANNSHARD_TEST_PAUSE_APPEND"
"""Test hook: seconds an append sleeps between reading the manifest and writing (to race two appends)."""
LOCK_TIMEOUT = 600.0
"""Default seconds a writer waits for another writer of the same collection."""

_pid_alive = pid_alive


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


def _check_replaceable(path: Path) -> None:
    """Refuse ``overwrite=True`` of anything but a collection (or an empty directory); nothing is deleted."""
    if not (path.exists() or path.is_symlink()):
        return
    if path.is_dir() and not path.is_symlink() and (is_collection(path) or not any(path.iterdir())):
        return
    what = (
        "a symbolic link"
        if path.is_symlink()
        else "a file"
        if not path.is_dir()
        else "a non-empty directory that is not an annshard or annbatch collection"
    )
    msg = (
        f"{path}: is {what}; overwrite=True (--overwrite) replaces only a collection (or an empty directory), "
        "so nothing was deleted. Choose another output path, or remove it yourself if it is really meant to go"
    )
    raise OverwriteRefusedError(msg)


def _cleanup_stale(path: Path) -> None:
    """Remove leftovers of interrupted writes to ``path`` whose process is gone."""
    if not path.parent.is_dir():
        return
    for p in path.parent.glob(f".{path.name}.annshard-*"):
        m = _STALE.search(p.name)
        if m is None or _pid_alive(int(m.group(2))):
            continue
        if m.group(1) == "old" and not path.exists():
            os.rename(p, path)  # an overwrite died between its two renames: the old collection comes back
        else:
            shutil.rmtree(p, ignore_errors=True)


def _token() -> str:
    return f"{os.getpid()}-{secrets.token_hex(4)}"


def _progress(show: bool, total: int, desc: str) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="cells", unit_scale=True, disable=not show, leave=show)


def _check_seed(seed: Any) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        msg = f"seed must be a non-negative int, not {seed!r}"
        raise ValueError(msg)
    return int(seed)


def _auto_spec(
    sources: list[Source], n_vars: int, dense: bool | None, storage: StorageSpec | Mapping[str, Any] | None
) -> StorageSpec:
    if isinstance(storage, StorageSpec):
        spec = storage
    else:
        if dense is None:
            dense = all(s.x_format == "dense" for s in sources)
        dtypes = {s.x_dtype for s in sources}
        data_dtype = next(iter(dtypes)) if len(dtypes) == 1 else np.result_type(*dtypes)
        if np.dtype(data_dtype) == np.float16:
            data_dtype = np.float32  # scipy.sparse has no float16; float32 holds every float16 value exactly
        spec = StorageSpec(
            x_format="dense" if dense else "csr",
            data_dtype=str(np.dtype(data_dtype)),
            indices_dtype="uint16" if n_vars < 65536 else "int32",
            counts_dtype=AUTO,
            indices_codec="none",
        )
        if storage:
            unknown = set(storage) - set(spec.to_dict())
            if unknown:
                msg = f"storage has unknown keys {sorted(unknown)}; valid keys: {sorted(spec.to_dict())}"
                raise ValueError(msg)
            spec = replace(spec, **dict(storage))
    if np.dtype(spec.data_dtype) == np.float16:
        msg = "storage data_dtype float16 is not supported (scipy.sparse has no float16); use 'float32'"
        raise ValueError(msg)
    spec = replace(spec, counts_dtype=check_counts_dtype(spec.counts_dtype, spec.data_dtype, spec.x_format))
    if spec.indices_codec not in (None, "none"):
        msg = f"storage indices_codec must be 'none' (uncompressed) or None (compressed like the values), not {spec.indices_codec!r}"
        raise ValueError(msg)
    idx = np.dtype(spec.indices_dtype)
    if spec.x_format == "csr" and (idx.kind not in "iu" or np.iinfo(idx).max < n_vars - 1):
        msg = f"storage indices_dtype {idx} cannot index {n_vars} genes; use 'int32' (or 'uint16' below 65536 genes)"
        raise ValueError(msg)
    return spec


def _layout(
    sources: list[Source],
    genes: GenePlan,
    columns: list[ColumnPlan],
    spec: StorageSpec,
    *,
    budget: int,
    n_obs_per_shard: int | None,
    max_shard_rows: int | None,
    seed: int,
    generation: int,
    source_names: list[str],
    workdir: Path,
    matrices: list[MatrixPlan],
) -> Layout:
    n_total = sum(s.n_obs for s in sources)
    nnz_row = sum(s.nnz for s in sources) / n_total
    n_str = sum(c.kind == "string" for c in columns)
    dense_vars = genes.n_vars if spec.x_format == "dense" else None
    rb = row_bytes(
        nnz_per_row=nnz_row,
        value_itemsize=np.dtype(spec.data_dtype).itemsize,
        index_itemsize=np.dtype(spec.indices_dtype).itemsize,
        dense_vars=dense_vars,
        n_strings=n_str,
        n_cols=len(columns),
        extra=sum(_matrix_row_bytes(m, sources) for m in matrices),
    )
    if n_obs_per_shard is not None:
        if n_obs_per_shard < 1:
            msg = f"n_obs_per_shard must be >= 1, not {n_obs_per_shard}"
            raise ValueError(msg)
        rows = int(n_obs_per_shard)
    else:
        rows = max(1, int(budget / GATHER_FACTOR / rb))
        if max_shard_rows is not None:
            rows = min(rows, max_shard_rows)
    block_rows = []
    for s in sources:
        # a source block is read in the source's dtypes, then reindexed (int32 indices) and permuted
        src_rb = row_bytes(
            nnz_per_row=max(s.nnz / s.n_obs, nnz_row),
            value_itemsize=max(s.x_dtype.itemsize, np.dtype(spec.data_dtype).itemsize),
            index_itemsize=8,
            dense_vars=max(s.n_vars, genes.n_vars) if (s.x_format == "dense" or dense_vars) else None,
            n_strings=n_str,
            n_cols=len(columns),
            extra=sum(_matrix_row_bytes(m, [s], source=True) for m in matrices),
        )
        block_rows.append(max(1, int(budget / SCATTER_FACTOR / src_rb)))
    n_prev = len(source_names) - len(sources)
    return Layout(
        sources=sources,
        genes=genes,
        columns=columns,
        spec=spec,
        shard_rows=shard_sizes(n_total, rows),
        block_rows=block_rows,
        seed=seed,
        generation=generation,
        source_codes=list(range(n_prev, len(source_names))),
        source_names=source_names,
        workdir=workdir,
        matrices=matrices,
    )


def _matrix_row_bytes(m: MatrixPlan, sources: list[Source], *, source: bool = False) -> float:
    """Raw bytes per row of one layer or obsm array (in a scatter block with ``source``: as read, int64 indices)."""
    storage = m.spec.storage
    infos = [s.matrix_info(m.element) for s in sources]
    itemsize = max(np.dtype(storage.data_dtype).itemsize, *(np.dtype(i.dtype).itemsize for i in infos))
    if storage.x_format == "dense":
        cols = max(m.spec.n_cols, *(i.shape[1] for i in infos)) if source else m.spec.n_cols
        return float(cols * itemsize)
    nnz_row = sum(i.nnz for i in infos) / sum(s.n_obs for s in sources)
    index = 8 if source else np.dtype(storage.indices_dtype).itemsize
    return nnz_row * (itemsize + index) + 8


def _run(layout: Layout, root_path: Path, first_shard: int, show_progress: bool) -> list[ShardInfo]:
    """Scatter, settle how values are stored (``layout.spec`` is final afterwards), gather the shards."""
    import zarr

    layout.workdir.mkdir(parents=True, exist_ok=True)
    if os.environ.get("ANNSHARD_NO_PIN") is None:
        pin_mmap_threshold()
    n = sum(layout.shard_rows)
    with _progress(show_progress, n, "shuffling") as bar:
        scatter(layout, progress=bar.update)
    layout.spec = resolve_counts(layout.spec, layout.sources, layout.value_stats)
    resolve_matrices(layout.matrices, layout.sources)
    root = zarr.open_group(root_path, mode="a", zarr_format=3)
    shards = []
    with _progress(show_progress, n, "writing shards") as bar:
        for k, rows in enumerate(layout.shard_rows):
            name = shard_name(first_shard + k)
            nnz = gather_bucket(layout, k, root, name, var_from=shards[0].name if shards else None)
            shards.append(ShardInfo(name=name, n_obs=rows, nnz=nnz, generation=layout.generation))
            bar.update(rows)
    shutil.rmtree(layout.workdir, ignore_errors=True)
    return shards


def _source_infos(sources: list[Source], names: list[str], generation: int) -> list[SourceInfo]:
    return [
        SourceInfo(
            name=n,
            n_obs=s.n_obs,
            path=str(s.path.resolve()) if s.path is not None else None,
            hash=s.fingerprint(),
            kind=s.kind,
            generation=generation,
        )
        for s, n in zip(sources, names, strict=True)
    ]


def _source_columns(names: list[str]) -> list[ObsColumn]:
    return [
        ColumnPlan("source", "categorical", np.dtype(np.int32), list(names)).obs_column(),
        ObsColumn("source_row", "numeric", "int64"),
    ]


def _version() -> str:
    from annshard import __version__

    return f"annshard {__version__}"


def _workdir(base: Path, tmp_dir: str | os.PathLike[str] | None) -> Path:
    if tmp_dir is None:
        return base / ".scatter"
    return Path(tmp_dir) / f"annshard-scatter-{_token()}"


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
        The collection directory to create.
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
    path = Path(path)
    seed = _check_seed(seed)
    budget = parse_bytes(memory_budget)
    if obs_conflicts not in ("raise", "string"):
        msg = f"obs_conflicts must be 'raise' or 'string', not {obs_conflicts!r}"
        raise ValueError(msg)
    sources = _as_list(sources)
    _check_not_source(path, sources, verb="writing")
    _cleanup_stale(path)
    if overwrite:
        _check_replaceable(path)
    if (path.exists() or path.is_symlink()) and not overwrite:
        msg = (
            f"{path}: already exists; pass overwrite=True (CLI: --overwrite) to replace it, choose another path, "
            "or add sources to an existing collection with Collection.append(...)"
        )
        raise CollectionExistsError(msg)
    with zarr_config():
        srcs = open_sources(sources, layer=layer)
        try:
            genes = plan_genes(srcs, join)
            columns = plan_obs(
                srcs,
                None if obs_columns is None else list(obs_columns),
                max_categories=max_categories,
                obs_conflicts=obs_conflicts,
            )
            spec = _auto_spec(srcs, genes.n_vars, dense, storage)
            matrices = plan_matrices(srcs, layers=layers, obsm=obsm, n_vars=genes.n_vars, x_spec=spec)
            names = [s.name for s in srcs]
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.parent / f".{path.name}.annshard-tmp-{_token()}"
            tmp.mkdir()
            workdir = _workdir(tmp, tmp_dir)
            try:
                layout = _layout(
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
                shards = _run(layout, tmp, 0, show_progress)
                manifest = Manifest(
                    n_obs=sum(s.n_obs for s in shards),
                    n_vars=genes.n_vars,
                    seed=seed,
                    join=join,
                    storage=layout.spec,
                    shards=tuple(shards),
                    sources=tuple(_source_infos(srcs, names, 0)),
                    obs_columns=tuple([c.obs_column() for c in columns] + _source_columns(names)),
                    layer=layer,
                    matrices=tuple(p.spec for p in layout.matrices),
                    created_by=_version(),
                    extra={"memory_budget": budget, "n_obs_per_shard": max(layout.shard_rows), **_notes(srcs)},
                )
                (tmp / LOCK_NAME).touch()  # part of the collection from the start: a later append adds no file
                commit_manifest(tmp, manifest)
                _install(tmp, path, overwrite=overwrite, lock_timeout=lock_timeout)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                shutil.rmtree(workdir, ignore_errors=True)
                raise
        finally:
            for s in srcs:
                s.close()
    return open_collection(path)


def _notes(sources: list[Source]) -> dict[str, Any]:
    """Manifest notes on how values were converted (float16 sources are stored as float32)."""
    f16 = [s.name for s in sources if s.x_dtype == np.float16]
    if not f16:
        return {}
    return {"notes": [f"float16 X of {f16} stored as float32 (exact; scipy.sparse has no float16)"]}


def _install(tmp: Path, path: Path, *, overwrite: bool, lock_timeout: float = LOCK_TIMEOUT) -> None:
    if path.exists() or path.is_symlink():
        if not overwrite:
            msg = f"{path}: was created while this collection was being written; it is left untouched"
            raise CollectionExistsError(msg)
        _check_replaceable(path)  # again: it may have changed while the new collection was written
        old = path.parent / f".{path.name}.annshard-old-{_token()}"
        if path.is_dir() and (path / "zarr.json").is_file():
            # a collection: wait for its writer (an append), so its commit is not lost in the old copy
            with collection_lock(path, timeout=lock_timeout, what="overwrite"):
                os.rename(path, old)
                os.rename(tmp, path)
        else:  # an empty directory
            os.rename(path, old)
            os.rename(tmp, path)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(tmp, path)


# -- append ---------------------------------------------------------------------------------------------------------
def _cleanup_append(coll: Collection) -> None:
    """Remove what interrupted appends left (run under the collection's lock, so no other append is live).

    Only directories that the committed manifest (read under the same lock) does not list are removed.
    """
    for p in coll.path.glob(".annshard-append-*"):
        shutil.rmtree(p, ignore_errors=True)
    listed = {s.name for s in coll.manifest.shards}
    for p in coll.path.glob("shard-*.zarr"):
        if p.name not in listed:
            shutil.rmtree(p, ignore_errors=True)


def _next_shard(m: Manifest) -> int:
    """Return the number of the first new shard: after every listed one (names need not be consecutive)."""
    return 1 + max((int(s.name[len("shard-") : -len(".zarr")]) for s in m.shards), default=-1)


def _unique_names(new: list[str], existing: list[str], generation: int) -> list[str]:
    taken = set(existing)
    out = []
    for n in new:
        m = n if n not in taken else f"{n}#{generation}"
        i = 2
        while m in taken:
            m, i = f"{n}#{generation}.{i}", i + 1
        taken.add(m)
        out.append(m)
    return out


def _extend_column(old: ObsColumn, plan: ColumnPlan) -> ObsColumn:
    if old.kind != "categorical":
        return old
    new = plan.obs_column()
    widest = max(np.dtype(old.dtype), np.dtype(new.dtype), key=lambda d: d.itemsize)
    return replace(old, categories=new.categories, dtype=str(widest))


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

    Returns
    -------
    The updated collection.

    Raises
    ------
    CollectionLockedError
        If another writer still holds the lock after ``lock_timeout`` seconds (naming its pid, host and start).
    OverwriteRefusedError
        If a source lies inside the collection.

    Examples
    --------
    >>> import annshard
    >>> coll = annshard.open_collection("cells.zarr")  # doctest: +SKIP
    >>> coll.append(["more.h5ad"])  # doctest: +SKIP
    """
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
    _cleanup_append(coll)
    if os.environ.get(_PAUSE_ENV):
        import time

        time.sleep(float(os.environ[_PAUSE_ENV]))
    old_names = [s.name for s in m.sources]
    with zarr_config():
        var = coll.var
        srcs = open_sources(sources, layer=m.layer)
        try:
            genes = plan_genes_into(srcs, var, m.join)
            columns = plan_obs(srcs, None, obs_conflicts=obs_conflicts, existing=m.obs_columns)
            matrices = plan_matrices_into(srcs, m.matrices)
            for s in srcs:  # other unsafe casts are checked value by value before the cast (refused if lossy)
                stored = np.dtype(m.storage.data_dtype)
                if s.x_dtype.kind == "f" and stored.kind == "f" and not np.can_cast(s.x_dtype, stored, "safe"):
                    msg = f"{s.label}: values are rounded from {s.x_dtype} to the collection's {stored}"
                    warnings.warn(msg, UserWarning, stacklevel=2)
            new_names = _unique_names([s.name for s in srcs], old_names, generation)
            names = old_names + new_names
            tmp = coll.path / f".annshard-append-{_token()}"
            tmp.mkdir()
            workdir = _workdir(tmp, tmp_dir)
            moved: list[Path] = []
            try:
                layout = _layout(
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
                shards = _run(layout, tmp, _next_shard(m), show_progress)
                for sh in shards:
                    os.rename(tmp / sh.name, coll.path / sh.name)
                    moved.append(coll.path / sh.name)
                by_name = {c.name: c for c in columns}
                obs_cols = [
                    _extend_column(c, by_name[c.name]) if c.name in by_name else c
                    for c in m.obs_columns
                    if c.name != "source"
                ]
                src_col = _source_columns(names)[0]
                obs_cols.insert([c.name for c in m.obs_columns].index("source"), src_col)
                new = replace(
                    m,
                    n_obs=m.n_obs + sum(s.n_obs for s in shards),
                    shards=(*m.shards, *shards),
                    sources=(*m.sources, *_source_infos(srcs, new_names, generation)),
                    obs_columns=tuple(obs_cols),
                    appends=(
                        *m.appends,
                        {
                            "generation": generation,
                            "seed": seed,
                            "n_shards": len(shards),
                            "n_obs": sum(s.n_obs for s in shards),
                            "sources": new_names,
                            "created_by": _version(),
                        },
                    ),
                )
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
