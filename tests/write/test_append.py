from __future__ import annotations

import os
import warnings

import anndata as ad
import numpy as np
import pandas as pd
import pytest

import annshard
from annshard import SourceError, VarJoinError
from annshard._store._lock import LOCK_NAME
from annshard._write import _append
from annshard.testing import make_adata


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
    coll = annshard.append_collection(coll, [tmp_path / "c.h5ad"], n_obs_per_shard=50)
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
    coll = annshard.append_collection(coll, {"rev": c})
    X = ad.read_zarr(coll.shard_path(len(coll.shards) - 1))
    assert list(X.var_names) == genes
    rows = X.obs["source_row"].to_numpy()
    pos = c.var_names.get_indexer(genes)
    np.testing.assert_array_equal(X.X.toarray(), c.X.toarray()[:, pos][rows])


def test_append_inner_requires_all_genes(base):
    coll, _ = base
    c = make_adata(30, 30, nnz_per_cell=5, obs_prefix="c")
    with pytest.raises(VarJoinError, match=r"lacks 10 of the collection's genes.*join='inner'"):
        annshard.append_collection(coll, {"c": c})
    assert coll.n_obs == 200


def test_append_outer_drops_new_genes_with_warning(tmp_path):
    a = make_adata(40, 20, nnz_per_cell=5, obs_prefix="a")
    coll = annshard.write_collection({"a": a}, tmp_path / "c.zarr", join="outer")
    b = make_adata(30, 20, nnz_per_cell=5, obs_prefix="b", gene_offset=5)
    with pytest.warns(UserWarning, match="5 genes are not in the collection and are dropped"):
        coll = annshard.append_collection(coll, {"b": b})
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
        annshard.append_collection(coll, {"c": c})


def test_append_name_collision_and_same_seed_reproducible(base, tmp_path):
    coll, srcs = base
    coll = annshard.append_collection(coll, {"a": make_adata(20, 40, nnz_per_cell=5, obs_prefix="z")})
    assert coll.obs_columns["source"].categories == ("a", "b", "a#1")


def test_interrupted_append_is_invisible_and_cleaned_up(base, monkeypatch):
    coll, _ = base
    n_before = len(coll.shards)
    real = _append.commit_manifest

    def crash(path, manifest):
        raise RuntimeError("simulated crash before the manifest")

    monkeypatch.setattr(_append, "commit_manifest", crash)
    with pytest.raises(RuntimeError, match="simulated"):
        annshard.append_collection(coll, {"c": make_adata(30, 40, nnz_per_cell=5, obs_prefix="c")})
    again = annshard.open_collection(coll.path)
    assert len(again.shards) == n_before and again.n_obs == 200
    assert sorted(p.name for p in coll.path.iterdir() if p.name.startswith("shard-")) == [s.name for s in again.shards]
    # a stale orphan shard (as a killed process would leave) is removed by the next append
    orphan = coll.path / "shard-09999.zarr"
    orphan.mkdir()
    monkeypatch.setattr(_append, "commit_manifest", real)
    coll = annshard.append_collection(coll, {"c": make_adata(30, 40, nnz_per_cell=5, obs_prefix="c")})
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
    coll = annshard.append_collection(coll, {"b": b})
    roundtrip(coll, {"a": a, "b": b})
    assert pd.Series([s.generation for s in coll.sources]).tolist() == [0, 1]


# -- an append whose values the stored dtype would change is refused before the cast, the collection unchanged ------
def _tree(path):
    """Every file under ``path`` with its bytes (the manifest included)."""
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def _with_x(a, X):
    b = a.copy()
    b.X = X
    b.obs_names = [f"new-{i}" for i in range(b.n_obs)]
    return b


@pytest.mark.parametrize(
    ("stored", "new", "match"),
    [
        (np.int64, np.array([21.5, 9.5]), r"values that are not whole numbers \(e\.g\. 21\.5, 9\.5\)"),
        (np.int16, np.array([70000, 3]), r"values outside the range of int16 \[-32768, 32767\] \(e\.g\. 70000\)"),
        (np.uint16, np.array([-1, 3]), r"values outside the range of uint16"),
        (np.int32, np.array([np.nan, 3.0]), r"NaN or infinite values"),
        (np.float32, np.array([1e300, 3.0]), r"values beyond the range of float32"),
        (np.float32, np.array([2**24 + 1, 3], dtype=np.int64), r"integers that float32 cannot hold exactly"),
    ],
    ids=[
        "fractions-into-int64",
        "out-of-range-int16",
        "negative-into-uint16",
        "nan-into-int32",
        "overflow-float32",
        "int64-into-float32",
    ],
)
@pytest.mark.parametrize("fmt", ["csr", "dense"])
def test_append_refuses_values_the_cast_would_change(tmp_path, stored, new, match, fmt):
    import scipy.sparse as sp

    a = make_adata(60, 10, nnz_per_cell=3, seed=1)
    base = a.X.astype(stored)
    a.X = base if fmt == "csr" else base.toarray()
    coll = annshard.write_collection({"a": a}, tmp_path / "c.zarr", seed=2)
    assert coll.manifest.storage.data_dtype == np.dtype(stored).name
    X = np.zeros((a.n_obs, a.n_vars), dtype=new.dtype)
    X[5, 2], X[40, 7] = new
    X[7, 1] = 1
    before = _tree(coll.path)
    src = tmp_path / "new.h5ad"
    _with_x(a, sp.csr_matrix(X) if fmt == "csr" else X).write_h5ad(src)
    with (
        pytest.raises(SourceError, match=rf"new\.h5ad: X has {match}.*would change; nothing was written"),
        warnings.catch_warnings(),
    ):
        warnings.filterwarnings("ignore", ".*values are rounded from float64", UserWarning)
        annshard.append_collection(coll, [src])
    assert _tree(coll.path) == before, "the collection is byte-for-byte unchanged"
    assert annshard.open_collection(coll.path).n_obs == 60


def test_append_whole_floats_into_int_counts_is_exact(tmp_path, read_collection):
    a = make_adata(60, 10, nnz_per_cell=3, seed=1)
    a.X = a.X.astype(np.int64)
    coll = annshard.write_collection({"a": a}, tmp_path / "c.zarr", seed=2)
    b = _with_x(a, a.X.astype(np.float64) * 2)
    coll = annshard.append_collection(coll, {"b": b})
    X, obs, _ = read_collection(coll)
    assert X.dtype == np.int64
    sel = (obs["source"] == "b").to_numpy()
    np.testing.assert_array_equal(X[sel], (a.X.toarray() * 2)[obs["source_row"].to_numpy()[sel]])
