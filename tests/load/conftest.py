"""Small collections on disk, written once per session."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import zarr

from annshard._store._atomic import commit_manifest
from annshard._store._manifest import Manifest, ObsColumn, ShardInfo, SourceInfo, StorageSpec, shard_name
from annshard._store._shard import write_shard
from annshard.testing import make_adata

if TYPE_CHECKING:
    from pathlib import Path


@dataclass
class Built:
    path: Path
    adata: ad.AnnData  # rows in collection order

    @property
    def X(self):
        return self.adata.X


def build_collection(
    path: Path,
    *,
    n_obs: int = 3000,
    n_vars: int = 300,
    n_shards: int = 3,
    seed: int = 0,
    dense: bool = False,
    nnz_per_cell: int = 40,
    layers: bool = False,
    counts_dtype: str | None = None,
    indices_codec: str | None = None,
) -> Built:
    """Write a small collection by hand (shuffled rows split into shards), as write_collection would."""
    a = make_adata(n_obs, n_vars, nnz_per_cell=nnz_per_cell, seed=seed)
    perm = np.random.default_rng(seed).permutation(n_obs)
    obs = a.obs.iloc[perm].copy()
    a = ad.AnnData(X=a.X[perm], obs=obs, var=a.var)
    a.obs["source"] = pd.Categorical(["src-0"] * n_obs)
    a.obs["source_row"] = perm.astype(np.int64)
    spec = StorageSpec(
        x_format="dense" if dense else "csr",
        chunk_elems=512,
        shard_elems=4096,
        dense_chunk_rows=8,
        dense_shard_rows=64,
        counts_dtype=counts_dtype,
        indices_codec=indices_codec,
    )
    root = zarr.open_group(path, mode="w")
    bounds = np.linspace(0, n_obs, n_shards + 1).astype(int)
    shards = []
    for i in range(n_shards):
        lo, hi = bounds[i], bounds[i + 1]
        x = a.X[lo:hi]
        nnz = write_shard(
            root, shard_name(i), X=x.toarray() if dense else x, obs=a.obs.iloc[lo:hi], var=a.var, spec=spec
        )
        if layers:
            ad.io.write_elem(root[shard_name(i)]["layers"], "counts", x * 2)
        shards.append(ShardInfo(shard_name(i), int(hi - lo), nnz))
    cols = []
    for c in a.obs.columns:
        v = a.obs[c]
        if isinstance(v.dtype, pd.CategoricalDtype):
            cols.append(ObsColumn(c, "categorical", "int8", tuple(v.cat.categories)))
        else:
            cols.append(ObsColumn(c, "numeric", str(v.dtype)))
    manifest = Manifest(
        n_obs=n_obs,
        n_vars=n_vars,
        seed=seed,
        join="inner",
        storage=spec,
        shards=tuple(shards),
        sources=(SourceInfo("src-0", n_obs),),
        obs_columns=tuple(cols),
    )
    commit_manifest(path, manifest)
    return Built(path, a)


@pytest.fixture(scope="session")
def coll(tmp_path_factory) -> Built:
    return build_collection(tmp_path_factory.mktemp("coll") / "c.zarr", layers=True)


@pytest.fixture(scope="session")
def counts_coll(tmp_path_factory) -> Built:
    """Whole-number values stored as uint16 counts (the writer's default for raw counts)."""
    return build_collection(tmp_path_factory.mktemp("counts") / "k.zarr", n_obs=900, seed=5, counts_dtype="uint16")


@pytest.fixture(scope="session")
def coll2(tmp_path_factory) -> Built:
    return build_collection(tmp_path_factory.mktemp("coll2") / "c2.zarr", n_obs=1100, n_shards=2, seed=7)


@pytest.fixture(scope="session")
def dense_coll(tmp_path_factory) -> Built:
    return build_collection(
        tmp_path_factory.mktemp("dense") / "d.zarr", n_obs=700, n_vars=50, n_shards=2, dense=True, seed=3
    )
