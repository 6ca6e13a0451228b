"""Manifest construction: the settled storage and the manifest, built from the plan and what the passes returned.

The data flow of a write goes one way: the frozen plan (:class:`~._layout.Layout`)
goes into the scatter pass, which returns the value statistics it saw
(:class:`~._scatter.Scattered`); :func:`settle_storage` turns those into the
storage the shards are written with (:class:`Stored`: the counts decisions of
``X`` and of each layer); the gather pass returns the shards it wrote
(:class:`~annshard.ShardInfo`). :func:`new_manifest` (a first write) and
:func:`appended_manifest` (an append) build the manifest from these, here alone.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from annshard._store._manifest import Manifest, MatrixSpec, ObsColumn, ShardInfo, SourceInfo, StorageSpec
from annshard._version import __version__

from ._counts import resolve_counts
from ._matrices import resolve_matrices
from ._plan import ColumnPlan

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from ._layout import Layout
    from ._scatter import Scattered
    from ._sources import Source

__all__ = [
    "Stored",
    "appended_manifest",
    "check_source_uids",
    "new_manifest",
    "settle_storage",
    "unique_names",
]


@dataclass(frozen=True)
class Stored:
    """How the shards of one write are stored, settled after the scatter pass.

    Attributes
    ----------
    storage
        How ``X`` is stored (``counts_dtype`` decided).
    matrices
        Each layer's and obsm array's manifest entry (``counts_dtype`` decided), in the layout's order.
    """

    storage: StorageSpec
    matrices: tuple[MatrixSpec, ...]


def settle_storage(layout: Layout, scattered: Scattered) -> Stored:
    """Decide (``"auto"``) or check each counts dtype against the values the scatter pass saw.

    Raises
    ------
    SourceError
        If an explicit counts dtype (an existing collection's) cannot hold a source's values exactly.
    """
    storage = resolve_counts(layout.spec, layout.sources, scattered.x)
    matrices = resolve_matrices(layout.matrices, layout.sources, scattered.matrices)
    return Stored(storage, matrices)


def check_source_uids(source_uids: Mapping[str, str] | None, names: Sequence[str]) -> dict[str, str]:
    """Return ``source_uids`` as a dict after checking that each key names a source and each value is a uid.

    Raises
    ------
    ValueError
        If a key is not among the sources' names, or a uid is not a non-empty string.
    """
    if source_uids is None:
        return {}
    uids = dict(source_uids)
    unknown = [n for n in uids if n not in names]
    if unknown:
        msg = (
            f"source_uids names {unknown}, which are not among the sources {list(names)}; key source_uids by the "
            "sources' names (a dict's keys, or the file names), nothing was written"
        )
        raise ValueError(msg)
    bad = {n: u for n, u in uids.items() if not isinstance(u, str) or not u}
    if bad:
        msg = f"source_uids values must be non-empty strings (lamindb artifact uids), not {bad}; nothing was written"
        raise ValueError(msg)
    return uids


def created_by() -> str:
    """Return the writer, as recorded in the manifest."""
    return f"annshard {__version__}"


def source_infos(
    sources: Sequence[Source], names: Sequence[str], generation: int, uids: Mapping[str, str] | None = None
) -> list[SourceInfo]:
    """Return the manifest entries of ``sources`` (recorded as ``names``); ``uids`` is keyed by the sources' own names."""
    uids = uids or {}
    return [
        SourceInfo(
            name=n,
            n_obs=s.n_obs,
            path=str(s.path.resolve()) if s.path is not None else None,
            uid=uids.get(s.name),
            hash=s.fingerprint(),
            kind=s.kind,
            generation=generation,
        )
        for s, n in zip(sources, names, strict=True)
    ]


def source_columns(names: Sequence[str]) -> list[ObsColumn]:
    """Return the ``source`` categorical and the ``source_row`` column every collection has."""
    return [
        ColumnPlan("source", "categorical", np.dtype(np.int32), list(names)).obs_column(),
        ObsColumn("source_row", "numeric", "int64"),
    ]


def notes(sources: Sequence[Source]) -> dict[str, Any]:
    """Manifest notes on how values were converted (float16 sources are stored as float32)."""
    f16 = [s.name for s in sources if s.x_dtype == np.float16]
    if not f16:
        return {}
    return {"notes": [f"float16 X of {f16} stored as float32 (exact; scipy.sparse has no float16)"]}


def new_manifest(
    layout: Layout,
    stored: Stored,
    shards: Sequence[ShardInfo],
    *,
    join: str,
    layer: str | None,
    budget: int,
    uids: Mapping[str, str] | None = None,
) -> Manifest:
    """Return the manifest of a new collection: its plan, its settled storage and the shards the gather pass wrote."""
    names = list(layout.source_names)
    return Manifest(
        n_obs=sum(s.n_obs for s in shards),
        n_vars=layout.genes.n_vars,
        seed=layout.seed,
        join=join,
        storage=stored.storage,
        shards=tuple(shards),
        sources=tuple(source_infos(layout.sources, names, 0, uids)),
        obs_columns=tuple([c.obs_column() for c in layout.columns] + source_columns(names)),
        layer=layer,
        matrices=stored.matrices,
        created_by=created_by(),
        extra={"memory_budget": budget, "n_obs_per_shard": max(layout.shard_rows), **notes(layout.sources)},
    )


def unique_names(new: list[str], existing: list[str], generation: int) -> list[str]:
    """Names for appended sources that differ from every existing one (``<name>#<generation>``, then ``.2``, ...)."""
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


def appended_manifest(
    m: Manifest,
    layout: Layout,
    shards: Sequence[ShardInfo],
    *,
    new_names: list[str],
    uids: Mapping[str, str] | None = None,
) -> Manifest:
    """Return the manifest ``m`` extended by an append: its new shards, sources, categories and an ``appends`` entry.

    The storage and matrices stay the collection's (the append's counts dtypes were checked, not decided).
    """
    by_name = {c.name: c for c in layout.columns}
    obs_cols = [
        _extend_column(c, by_name[c.name]) if c.name in by_name else c for c in m.obs_columns if c.name != "source"
    ]
    src_col = source_columns(layout.source_names)[0]
    obs_cols.insert([c.name for c in m.obs_columns].index("source"), src_col)
    return replace(
        m,
        n_obs=m.n_obs + sum(s.n_obs for s in shards),
        shards=(*m.shards, *shards),
        sources=(*m.sources, *source_infos(layout.sources, new_names, layout.generation, uids)),
        obs_columns=tuple(obs_cols),
        appends=(
            *m.appends,
            {
                "generation": layout.generation,
                "seed": layout.seed,
                "n_shards": len(shards),
                "n_obs": sum(s.n_obs for s in shards),
                "sources": new_names,
                "created_by": created_by(),
            },
        ),
    )
