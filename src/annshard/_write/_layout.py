"""The plan of one write: what the scatter and gather passes are told, frozen before either runs.

A :class:`Layout` is built once, from the sources, the planned gene space, obs
columns, storage and matrices, and the memory budget (which sizes shards and
blocks, :mod:`._memory`). Neither pass changes it: the scatter pass returns the
value statistics it saw (:class:`._scatter.Scattered`), the storage is settled
from those (:func:`._manifest.settle_storage`), and the gather pass returns the
shards it wrote; the manifest is built from what the passes returned.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ._memory import size_passes

if TYPE_CHECKING:
    from pathlib import Path

    from annshard._store._manifest import StorageSpec

    from ._matrices import MatrixPlan
    from ._plan import ColumnPlan, GenePlan
    from ._sources import Source

__all__ = ["Layout", "plan_layout"]


@dataclass(frozen=True)
class Layout:
    """Everything the scatter and gather passes are told (frozen: the passes return what they learn).

    Attributes
    ----------
    sources
        The (new) sources, in order.
    genes
        Their joint gene space.
    columns
        The kept obs columns.
    spec
        How ``X`` is planned to be stored (``counts_dtype`` may still be ``"auto"``, settled from the
        scatter pass's value statistics).
    shard_rows
        Rows of each bucket / new shard.
    block_rows
        Rows per scatter block, per source.
    seed
        Shuffle seed.
    generation
        0 for a first write, ``k`` for the ``k``-th append.
    source_codes
        Per source, its code in the ``source`` categorical.
    source_names
        All categories of ``source`` (earlier generations' too).
    workdir
        Where the bucket files live.
    matrices
        The layers and obsm arrays moved with the rows (same permutation as ``X``).
    """

    sources: tuple[Source, ...]
    genes: GenePlan
    columns: tuple[ColumnPlan, ...]
    spec: StorageSpec
    shard_rows: tuple[int, ...]
    block_rows: tuple[int, ...]
    seed: int
    generation: int
    source_codes: tuple[int, ...]
    source_names: tuple[str, ...]
    workdir: Path
    matrices: tuple[MatrixPlan, ...] = ()

    @property
    def n_buckets(self) -> int:
        """Buckets (= new shards)."""
        return len(self.shard_rows)

    @property
    def value_dtype(self) -> np.dtype:
        """Dtype of stored values."""
        return np.dtype(self.spec.data_dtype)

    @property
    def index_dtype(self) -> np.dtype:
        """Dtype of stored gene indices."""
        return np.dtype(self.spec.indices_dtype)

    def file(self, k: int, key: str) -> Path:
        """Bucket ``k``'s file for ``key``."""
        return self.workdir / f"{k:05d}.{key}"

    def bucket_files(self, k: int, key: str) -> list[Path]:
        """Bucket ``k``'s files for ``key`` in every scatter part (:func:`~._scatter.part_dir`), in part order."""
        return sorted(p / f"{k:05d}.{key}" for p in self.workdir.iterdir() if (p / f"{k:05d}.{key}").exists())

    def rng(self, *stream: int) -> np.random.Generator:
        """Return an independent generator for ``stream`` under this write's seed and generation."""
        return np.random.default_rng([self.seed, self.generation, *stream])

    def describe(self) -> dict[str, Any]:
        """Summarise the layout for logs."""
        return {"shards": self.n_buckets, "rows": sum(self.shard_rows), "block_rows": list(self.block_rows)}


def plan_layout(
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
    """Size shards and blocks for the budget and freeze the plan of one write (or append).

    Raises
    ------
    ValueError
        If ``n_obs_per_shard`` is below 1.
    """
    shard_rows, block_rows = size_passes(
        sources,
        genes,
        columns,
        spec,
        matrices,
        budget=budget,
        n_obs_per_shard=n_obs_per_shard,
        max_shard_rows=max_shard_rows,
    )
    n_prev = len(source_names) - len(sources)
    return Layout(
        sources=tuple(sources),
        genes=genes,
        columns=tuple(columns),
        spec=spec,
        shard_rows=tuple(shard_rows),
        block_rows=tuple(block_rows),
        seed=seed,
        generation=generation,
        source_codes=tuple(range(n_prev, len(source_names))),
        source_names=tuple(source_names),
        workdir=workdir,
        matrices=tuple(matrices),
    )
