"""Fixtures for the writer tests: small sources on disk and a round-trip checker."""

from __future__ import annotations

import warnings
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from annshard._synthetic import make_adata


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


# anndata 0.13 sets pandas' deprecated "future.infer_string" option when it writes string arrays to .h5ad;
# pandas 3 warns about the option itself, outside our control
H5AD_STRING_WARNING = "ignore:The 'future.infer_string' option is deprecated:DeprecationWarning"


def pytest_collection_modifyitems(config, items):
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.fspath).parents:
            item.add_marker(pytest.mark.filterwarnings(H5AD_STRING_WARNING))
