"""Write an annshard-layout collection directly (in memory, no external shuffle) with a chosen StorageSpec.

Used by the storage sweep (``storage.py``) to compare codecs, chunk and shard
sizes and index dtypes on identical rows, independently of the writer's
pipeline: the rows of the input files are concatenated, permuted with a fixed
seed and cut into shards with :func:`annshard._store._shard.write_shard`, then a
manifest is committed, so :class:`annshard.Loader` opens the result as any
collection.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp
import zarr

from annshard._config import zarr_config
from annshard._store._atomic import commit_manifest
from annshard._store._manifest import Manifest, ObsColumn, ShardInfo, SourceInfo, shard_name
from annshard._store._shard import write_shard

if TYPE_CHECKING:
    from annshard._store._manifest import StorageSpec


def load_rows(paths: list[Path], n_obs: int | None = None, *, seed: int = 0) -> ad.AnnData:
    """Concatenate (the first ``n_obs`` rows of) ``paths`` and permute the rows with ``seed``."""
    parts, taken = [], 0
    for p in paths:
        a = ad.read_h5ad(p)
        if n_obs is not None:
            a = a[: n_obs - taken].copy()
        a.obs = a.obs[["cell_type", "donor", "assay"]].copy()
        a.obs["source"] = Path(p).name
        a.obs["source_row"] = np.arange(a.n_obs, dtype=np.int64)
        parts.append(a)
        taken += a.n_obs
        if n_obs is not None and taken >= n_obs:
            break
    adata = ad.concat(parts, merge="first")
    perm = np.random.default_rng(seed).permutation(adata.n_obs)
    adata = adata[perm].copy()
    for c in ("cell_type", "donor", "assay", "source"):
        adata.obs[c] = pd.Categorical(adata.obs[c].astype(str))
    return adata


def write_layout(adata: ad.AnnData, out: str | Path, spec: StorageSpec, *, shard_rows: int = 50_000) -> Path:
    """Write ``adata`` (already permuted) as an annshard collection at ``out`` with storage ``spec``."""
    out = Path(out)
    if out.exists():
        shutil.rmtree(out)
    X = adata.X if sp.issparse(adata.X) else sp.csr_matrix(adata.X)
    X = X.tocsr()
    shards = []
    with zarr_config():
        root = zarr.open_group(out, mode="w")
        for i, start in enumerate(range(0, adata.n_obs, shard_rows)):
            stop = min(start + shard_rows, adata.n_obs)
            name = shard_name(i)
            nnz = write_shard(root, name, X=X[start:stop], obs=adata.obs.iloc[start:stop], var=adata.var, spec=spec)
            shards.append(ShardInfo(name=name, n_obs=stop - start, nnz=nnz))
    cols = []
    for c in adata.obs.columns:
        s = adata.obs[c]
        if isinstance(s.dtype, pd.CategoricalDtype):
            cols.append(
                ObsColumn(name=c, kind="categorical", dtype=str(s.cat.codes.dtype), categories=tuple(s.cat.categories))
            )
        else:
            cols.append(ObsColumn(name=c, kind="numeric", dtype=str(s.dtype)))
    sources = tuple(
        SourceInfo(name=str(n), n_obs=int((adata.obs["source"] == n).sum())) for n in adata.obs["source"].cat.categories
    )
    manifest = Manifest(
        n_obs=adata.n_obs,
        n_vars=adata.n_vars,
        seed=0,
        join="inner",
        storage=spec,
        shards=tuple(shards),
        sources=sources,
        obs_columns=tuple(cols),
        created_by="benchmarks/layout.py",
    )
    commit_manifest(out, manifest)
    return out
