"""Fixtures for the writer tests: small sources on disk and a round-trip checker."""

from __future__ import annotations

import warnings
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from annshard.testing import make_adata


def read_all(coll) -> tuple[np.ndarray, pd.DataFrame, list[ad.AnnData]]:
    """Every shard through anndata.read_zarr, concatenated in global row order."""
    shards = []
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Observation names are not unique", UserWarning)
        warnings.filterwarnings("ignore", "obs_names", UserWarning)
        for i in range(len(coll.shards)):
            shards.append(ad.read_zarr(coll.shard_path(i)))
    X = [s.X.toarray() if sp.issparse(s.X) else np.asarray(s.X) for s in shards]
    obs = pd.concat([s.obs for s in shards])
    return np.concatenate(X), obs, shards


def check_roundtrip(coll, sources: dict[str, ad.AnnData], *, layer: str | None = None) -> None:
    """Every source row appears exactly once, bit-identical after gene reindexing; absent genes are 0."""
    X, obs, shards = read_all(coll)
    assert X.shape == (coll.n_obs, coll.n_vars)
    assert coll.n_obs == sum(a.n_obs for a in sources.values())
    var_names = coll.var.index
    for s in shards:
        assert list(s.var_names) == list(var_names)
        if sp.issparse(s.X):
            assert s.X.has_canonical_format or np.all(np.diff(s.X.indices.astype(np.int64)) != 0)
    keys = list(zip(obs["source"].astype(str), obs["source_row"].to_numpy(), strict=True))
    assert len(set(keys)) == len(keys), "a source row appears twice"
    for name, a in sources.items():
        sel = (obs["source"] == name).to_numpy()
        rows = obs["source_row"].to_numpy()[sel]
        assert sorted(rows.tolist()) == list(range(a.n_obs))
        M = a.X if layer is None else a.layers[layer]
        M = M.toarray() if sp.issparse(M) else np.asarray(M)
        pos = var_names.get_indexer(a.var_names)
        expected = np.zeros((a.n_obs, len(var_names)), dtype=X.dtype)
        keep = pos >= 0
        expected[:, pos[keep]] = M[:, keep]
        got = X[sel]
        np.testing.assert_array_equal(got, expected[rows])
        assert got.dtype == X.dtype
        # obs names are kept as they are
        assert list(obs.index[sel]) == list(np.asarray(a.obs_names)[rows])
        for col in a.obs.columns:
            if col in obs.columns:
                left = obs[col].to_numpy()[sel]
                right = a.obs[col].to_numpy()[rows]
                assert [str(v) for v in left] == [str(v) for v in right], col


@pytest.fixture(scope="session")
def small_sources(tmp_path_factory) -> dict[str, object]:
    """Three sources with partly overlapping genes and distinct obs names: h5ad, zarr and in-memory."""
    d = tmp_path_factory.mktemp("sources")
    a0 = make_adata(230, 60, nnz_per_cell=12, seed=1, obs_prefix="a")
    a1 = make_adata(170, 60, nnz_per_cell=15, seed=2, gene_offset=10, obs_prefix="b", donor_prefix="x")
    a2 = make_adata(120, 50, nnz_per_cell=10, seed=3, gene_offset=5, obs_prefix="c")
    a1.X = a1.X.astype(np.float32)
    a0.write_h5ad(d / "a0.h5ad")
    a1.write_zarr(d / "a1.zarr")
    return {"paths": [d / "a0.h5ad", d / "a1.zarr"], "adatas": [a0, a1, a2], "dir": d}


@pytest.fixture
def roundtrip():
    return check_roundtrip


@pytest.fixture
def read_collection():
    return read_all


def write_h5ad(path: Path, adata: ad.AnnData) -> Path:
    adata.write_h5ad(path)
    return path


# -- legacy .h5ad layouts, written with h5py as anndata < 0.7 and anndata 0.7 wrote them --------------------------
LEGACY_CELL_TYPES = ["B", "T", "NK", "unused"]  # "unused" is never used by a row


def _data(n_obs: int, n_vars: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = (rng.random((n_obs, n_vars)) < 0.3) * rng.integers(1, 50, size=(n_obs, n_vars))
    codes = rng.integers(-1, 3, size=n_obs).astype(np.int8)  # -1: missing
    n_genes = rng.integers(0, 1000, size=n_obs).astype(np.int64)
    return X.astype(np.float32), codes, n_genes


def write_compound_h5ad(path: Path, n_obs: int = 60, n_vars: int = 20, *, seed: int = 0) -> Path:
    """anndata < 0.7: obs and var are compound datasets, categories in ``uns['<col>_categories']``, dense X."""
    import h5py

    X, codes, n_genes = _data(n_obs, n_vars, seed)
    codes = np.where(codes < 0, 0, codes).astype(np.int8)  # this layout has no missing code
    obs = np.zeros(n_obs, dtype=[("index", h5py.string_dtype()), ("cell_type", np.int8), ("n_genes", np.int64)])
    obs["index"] = [f"old-{i}" for i in range(n_obs)]
    obs["cell_type"] = codes
    obs["n_genes"] = n_genes
    var = np.zeros(n_vars, dtype=[("index", h5py.string_dtype()), ("gene_ids", h5py.string_dtype())])
    var["index"] = [f"G{i}" for i in range(n_vars)]
    var["gene_ids"] = [f"ENSG{i:05d}" for i in range(n_vars)]
    with h5py.File(path, "w") as f:
        f.create_dataset("X", data=X)
        f.create_dataset("obs", data=obs)
        f.create_dataset("var", data=var)
        f.create_dataset("uns/cell_type_categories", data=np.array(LEGACY_CELL_TYPES[:3], dtype=h5py.string_dtype()))
    return path


def write_07_h5ad(path: Path, n_obs: int = 60, n_vars: int = 20, *, seed: int = 1) -> Path:
    """anndata 0.7: obs/var groups (dataframe 0.1.0), categoricals as codes referencing ``__categories``, CSR X."""
    import h5py
    import scipy.sparse as sp

    X, codes, n_genes = _data(n_obs, n_vars, seed)
    csr = sp.csr_matrix(X)
    with h5py.File(path, "w") as f:
        x = f.create_group("X")
        x.attrs.update({"encoding-type": "csr_matrix", "encoding-version": "0.1.0", "shape": np.array(X.shape)})
        x["data"], x["indices"], x["indptr"] = csr.data, csr.indices, csr.indptr
        obs = f.create_group("obs")
        obs.attrs.update(
            {
                "_index": "_index",
                "column-order": np.array(["cell_type", "n_genes"], dtype=object),
                "encoding-type": "dataframe",
                "encoding-version": "0.1.0",
            }
        )
        obs.create_dataset("_index", data=np.array([f"s07-{i}" for i in range(n_obs)], dtype=object))
        cats = obs.create_dataset("__categories/cell_type", data=np.array(LEGACY_CELL_TYPES, dtype=object))
        cats.attrs["ordered"] = False
        col = obs.create_dataset("cell_type", data=codes)
        col.attrs["categories"] = cats.ref
        obs.create_dataset("n_genes", data=n_genes)
        var = f.create_group("var")
        var.attrs.update(
            {
                "_index": "_index",
                "column-order": np.array(["gene_ids"], dtype=object),
                "encoding-type": "dataframe",
                "encoding-version": "0.1.0",
            }
        )
        var.create_dataset("_index", data=np.array([f"G{i}" for i in range(n_vars)], dtype=object))
        var.create_dataset("gene_ids", data=np.array([f"ENSG{i:05d}" for i in range(n_vars)], dtype=object))
    return path


@pytest.fixture(scope="session")
def legacy_writers():
    """Writers of the legacy layouts, by name (each takes the path and returns it)."""
    return {"legacy-compound-obs": write_compound_h5ad, "legacy-0.7-categorical-refs": write_07_h5ad}
