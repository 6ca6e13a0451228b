from __future__ import annotations

import os

import anndata as ad
import numpy as np
import pandas as pd
import pytest

import annshard
from annshard import SourceError, VarJoinError
from annshard._lock import LOCK_NAME
from annshard._synthetic import make_adata
from annshard._write import _writer


def _shard_mtimes(coll):
    return {s.name: os.stat(coll.path / s.name / "X" / "data" / "zarr.json").st_mtime_ns for s in coll.shards}


@pytest.fixture
def base(tmp_path):
    a = make_adata(120, 40, nnz_per_cell=8, seed=1, obs_prefix="a")
    b = make_adata(80, 40, nnz_per_cell=8, seed=2, obs_prefix="b", donor_prefix="bd")
    coll = annshard.write_collection({"a": a, "b": b}, tmp_path / "c.zarr", n_obs_per_shard=70, seed=3)
    return coll, {"a": a, "b": b}


def test_append_adds_shards_and_keeps_earlier_rows(base, tmp_path, roundtrip):
    coll, srcs = base
    before = _shard_mtimes(coll)
    old_manifest = coll.manifest
    c = make_adata(90, 40, nnz_per_cell=8, seed=5, obs_prefix="c", donor_prefix="cd")
    c.write_h5ad(tmp_path / "c.h5ad")
    out = coll.append([tmp_path / "c.h5ad"], n_obs_per_shard=50)
    assert out is coll
    assert coll.n_obs == 290
    assert len(coll.shards) == len(old_manifest.shards) + 2
    assert coll.shards[: len(old_manifest.shards)] == old_manifest.shards
    assert [s.generation for s in coll.shards[-2:]] == [1, 1]
    assert _shard_mtimes(annshard.open_collection(coll.path)) | before == _shard_mtimes(coll)
    assert {k: v for k, v in _shard_mtimes(coll).items() if k in before} == before
    # categories grow by appending: old codes keep their meaning
    donors = coll.obs_columns["donor"].categories
    assert donors[: len(old_manifest.obs_column("donor").categories)] == old_manifest.obs_column("donor").categories
    assert any(d.startswith("cd-") for d in donors)
    assert coll.obs_columns["source"].categories == ("a", "b", "c.h5ad")
    assert coll.manifest.appends[0]["generation"] == 1
    roundtrip(annshard.open_collection(coll.path), {**srcs, "c.h5ad": c})
    # new shards are shuffled among themselves
    rows = ad.read_zarr(coll.shard_path(len(coll.shards) - 1)).obs["source_row"].to_numpy()
    assert not np.all(np.diff(rows) > 0)


def test_append_reindexes_genes(base):
    coll, _ = base
    genes = list(coll.var.index)
    c = make_adata(30, 40, nnz_per_cell=8, seed=9, obs_prefix="c")
    c = ad.AnnData(X=c.X[:, ::-1].tocsr(), obs=c.obs, var=c.var.iloc[::-1])  # same genes, reversed order
    coll.append({"rev": c})
    X = ad.read_zarr(coll.shard_path(len(coll.shards) - 1))
    assert list(X.var_names) == genes
    rows = X.obs["source_row"].to_numpy()
    pos = c.var_names.get_indexer(genes)
    np.testing.assert_array_equal(X.X.toarray(), c.X.toarray()[:, pos][rows])


def test_append_inner_requires_all_genes(base):
    coll, _ = base
    c = make_adata(30, 30, nnz_per_cell=5, obs_prefix="c")
    with pytest.raises(VarJoinError, match=r"lacks 10 of the collection's genes.*join='inner'"):
        coll.append({"c": c})
    assert coll.n_obs == 200


def test_append_outer_drops_new_genes_with_warning(tmp_path):
    a = make_adata(40, 20, nnz_per_cell=5, obs_prefix="a")
    coll = annshard.write_collection({"a": a}, tmp_path / "c.zarr", join="outer")
    b = make_adata(30, 20, nnz_per_cell=5, obs_prefix="b", gene_offset=5)
    with pytest.warns(UserWarning, match="5 genes are not in the collection and are dropped"):
        coll.append({"b": b})
    assert coll.n_vars == 20
    X = ad.read_zarr(coll.shard_path(len(coll.shards) - 1))
    rows = X.obs["source_row"].to_numpy()
    expected = np.zeros((30, 20), dtype=np.float32)
    expected[:, 5:] = b.X.toarray()[:, :15]
    np.testing.assert_array_equal(X.X.toarray(), expected[rows])


def test_append_obs_type_conflict(base):
    coll, _ = base
    c = make_adata(10, 40, nnz_per_cell=5, obs_prefix="c")
    c.obs["n_genes"] = ["many"] * 10
    with pytest.raises(SourceError, match="obs column 'n_genes' has conflicting types"):
        coll.append({"c": c})


def test_append_name_collision_and_same_seed_reproducible(base, tmp_path):
    coll, srcs = base
    coll.append({"a": make_adata(20, 40, nnz_per_cell=5, obs_prefix="z")})
    assert coll.obs_columns["source"].categories == ("a", "b", "a#1")


def test_interrupted_append_is_invisible_and_cleaned_up(base, monkeypatch):
    coll, _ = base
    n_before = len(coll.shards)
    real = _writer.commit_manifest

    def crash(path, manifest):
        raise RuntimeError("simulated crash before the manifest")

    monkeypatch.setattr(_writer, "commit_manifest", crash)
    with pytest.raises(RuntimeError, match="simulated"):
        coll.append({"c": make_adata(30, 40, nnz_per_cell=5, obs_prefix="c")})
    again = annshard.open_collection(coll.path)
    assert len(again.shards) == n_before and again.n_obs == 200
    assert sorted(p.name for p in coll.path.iterdir() if p.name.startswith("shard-")) == [s.name for s in again.shards]
    # a stale orphan shard (as a killed process would leave) is removed by the next append
    orphan = coll.path / "shard-09999.zarr"
    orphan.mkdir()
    monkeypatch.setattr(_writer, "commit_manifest", real)
    coll.append({"c": make_adata(30, 40, nnz_per_cell=5, obs_prefix="c")})
    assert not orphan.exists()
    assert coll.n_obs == 230
    # only the writer lock file stays (empty: its holder is gone)
    assert [p.name for p in coll.path.iterdir() if p.name.startswith(".annshard")] == [LOCK_NAME]
    assert (coll.path / LOCK_NAME).read_text() == ""


def test_append_dense_collection(tmp_path, roundtrip):
    a = make_adata(30, 10, nnz_per_cell=4, dense=True, obs_prefix="a")
    b = make_adata(20, 10, nnz_per_cell=4, dense=True, obs_prefix="b", seed=3)
    coll = annshard.write_collection({"a": a}, tmp_path / "d.zarr")
    assert coll.manifest.storage.x_format == "dense"
    coll.append({"b": b})
    roundtrip(coll, {"a": a, "b": b})
    assert pd.Series([s.generation for s in coll.sources]).tolist() == [0, 1]
