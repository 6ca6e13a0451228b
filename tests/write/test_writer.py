from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import anndata as ad
import numpy as np
import pytest
import scipy.sparse as sp

import annshard
from annshard import CollectionExistsError, CollectionFormatError
from annshard._write import _gather
from annshard.testing import make_adata


def _sources(kind: str, adatas, tmp_path, *, dense: bool):
    """The same AnnData objects given as h5ad paths, zarr paths or in memory."""
    out = {}
    for i, a in enumerate(adatas):
        a = a.copy()
        if dense:
            a.X = a.X.toarray()
        name = f"s{i}"
        if kind == "h5ad":
            p = tmp_path / f"{name}.h5ad"
            a.write_h5ad(p)
            out[name] = p
        elif kind == "zarr":
            p = tmp_path / f"{name}.zarr"
            a.write_zarr(p)
            out[name] = p
        else:
            out[name] = a
    return out


@pytest.mark.parametrize("kind", ["h5ad", "zarr", "memory"])
@pytest.mark.parametrize("join", ["inner", "outer"])
@pytest.mark.parametrize("dense", [False, True], ids=["sparse", "dense"])
def test_every_row_exactly_once_bit_identical(tmp_path, small_sources, roundtrip, kind, join, dense):
    adatas = small_sources["adatas"]
    srcs = _sources(kind, adatas, tmp_path, dense=dense)
    coll = annshard.write_collection(srcs, tmp_path / "out.zarr", join=join, n_obs_per_shard=90, memory_budget="64KB")
    assert len(coll.shards) == 6
    assert coll.join == join
    assert coll.manifest.storage.x_format == ("dense" if dense else "csr")
    expected = {f"s{i}": a for i, a in enumerate(adatas)}
    roundtrip(coll, expected)
    if join == "inner":
        common = set(adatas[0].var_names) & set(adatas[1].var_names) & set(adatas[2].var_names)
        assert list(coll.var.index) == [g for g in adatas[0].var_names if g in common]
    else:
        order = list(adatas[0].var_names)
        for a in adatas[1:]:
            order += [g for g in a.var_names if g not in order]
        assert list(coll.var.index) == order
        assert "gene_symbol" in coll.var.columns
        assert not coll.var["gene_symbol"].isna().any()


def test_mixed_sources_and_layer(tmp_path, small_sources, roundtrip):
    a0, a1, _ = small_sources["adatas"]
    b0, b1 = a0.copy(), a1.copy()
    b0.layers["counts"] = (b0.X * 2).astype(np.int32)
    b1.layers["counts"] = (b1.X * 3).astype(np.int32)
    b0.write_h5ad(tmp_path / "b0.h5ad")
    coll = annshard.write_collection({"b0": tmp_path / "b0.h5ad", "b1": b1}, tmp_path / "o.zarr", layer="counts")
    assert coll.manifest.layer == "counts"
    assert coll.manifest.storage.data_dtype == "int32"
    roundtrip(coll, {"b0": b0, "b1": b1}, layer="counts")


def test_csc_and_integer_values_are_kept(tmp_path, roundtrip):
    a = make_adata(80, 40, nnz_per_cell=8, dtype="int64", obs_prefix="q")
    b = a.copy()
    b.X = sp.csc_matrix(b.X)
    b.write_h5ad(tmp_path / "csc.h5ad")
    coll = annshard.write_collection({"csc": tmp_path / "csc.h5ad", "mem": _renamed(b, "m")}, tmp_path / "o.zarr")
    assert coll.manifest.storage.data_dtype == "int64"
    assert coll.manifest.storage.x_format == "csr"
    roundtrip(coll, {"csc": a, "mem": _renamed(a, "m")})


def _renamed(a, prefix):
    a = a.copy()
    a.obs_names = [f"{prefix}{i}" for i in range(a.n_obs)]
    return a


def test_same_seed_identical_different_seed_differs(tmp_path, small_sources):
    paths = small_sources["paths"]

    def shard_bytes(p):
        out = {}
        for root, _, files in os.walk(p):
            for f in files:
                full = os.path.join(root, f)
                if f != "zarr.json" or root != str(p):
                    out[os.path.relpath(full, p)] = Path(full).read_bytes()
        return out

    c1 = annshard.write_collection(paths, tmp_path / "a.zarr", seed=7, n_obs_per_shard=100)
    c2 = annshard.write_collection(paths, tmp_path / "b.zarr", seed=7, n_obs_per_shard=100)
    c3 = annshard.write_collection(paths, tmp_path / "c.zarr", seed=8, n_obs_per_shard=100)
    assert shard_bytes(c1.path) == shard_bytes(c2.path)
    order = lambda c: [tuple(r) for r in ad.read_zarr(c.shard_path(0)).obs[["source", "source_row"]].astype(str).values]  # noqa: E731
    assert order(c1) == order(c2)
    assert order(c1) != order(c3)


def test_rows_spread_evenly_over_shards(tmp_path):
    from scipy.stats import chisquare

    a = make_adata(3000, 20, nnz_per_cell=3, obs_prefix="a")
    b = make_adata(1000, 20, nnz_per_cell=3, obs_prefix="b", seed=4)
    coll = annshard.write_collection({"a": a, "b": b}, tmp_path / "o.zarr", n_obs_per_shard=400, seed=3)
    assert len(coll.shards) == 10
    counts = {"a": [], "b": []}
    for i in range(len(coll.shards)):
        src = ad.read_zarr(coll.shard_path(i)).obs["source"].astype(str)
        for k in counts:
            counts[k].append(int((src == k).sum()))
    for k, c in counts.items():
        total = sum(c)
        expected = [total * s.n_obs / coll.n_obs for s in coll.shards]
        assert chisquare(c, expected).pvalue > 1e-3, (k, c)
    # rows within a shard are not in source order
    rows = ad.read_zarr(coll.shard_path(0)).obs["source_row"].to_numpy()
    assert not np.all(np.diff(rows) > 0)


def test_manifest_records_what_was_written(tmp_path, small_sources):
    coll = annshard.write_collection(small_sources["paths"], tmp_path / "o.zarr", seed=5, memory_budget="1MB")
    m = coll.manifest
    assert m.seed == 5 and m.n_obs == 400
    assert [s.name for s in m.sources] == ["a0.h5ad", "a1.zarr"]
    assert [s.kind for s in m.sources] == ["h5ad", "zarr"]
    assert all(s.hash for s in m.sources[:1])
    assert m.storage.indices_dtype == "uint16" and m.storage.codec == "lz4"
    assert coll.obs_columns["source"].categories == ("a0.h5ad", "a1.zarr")
    assert coll.obs_columns["source_row"].dtype == "int64"
    donors = coll.obs_columns["donor"].categories
    assert donors[:6] == tuple(sorted(ad.read_h5ad(small_sources["paths"][0]).obs["donor"].cat.categories))
    assert any(d.startswith("x-") for d in donors)
    # every shard shares the one category list, so codes are stable
    for i in range(len(coll.shards)):
        obs = ad.read_zarr(coll.shard_path(i)).obs
        assert tuple(obs["donor"].cat.categories) == donors
    # the manifest is in the root zarr.json and survives a reopen
    again = annshard.open_collection(coll.path)
    assert again.manifest == m
    assert sum(s.nnz for s in m.shards) > 0


def test_existing_path_is_refused_then_overwritten(tmp_path, small_sources):
    p = tmp_path / "o.zarr"
    p.mkdir()
    with pytest.raises(CollectionExistsError, match=r"o\.zarr.*overwrite=True"):
        annshard.write_collection(small_sources["paths"], p)
    coll = annshard.write_collection(small_sources["paths"], p, overwrite=True)
    assert coll.n_obs == 400
    coll2 = annshard.write_collection(small_sources["paths"][:1], p, overwrite=True)
    assert coll2.n_obs == 230
    assert not [x for x in tmp_path.iterdir() if x.name.startswith(".")]


def test_interrupted_write_leaves_nothing(tmp_path, small_sources, monkeypatch):
    p = tmp_path / "o.zarr"
    calls = []
    real = _gather.gather_bucket

    def failing(layout, stored, k, root, name, var_from=None, **kw):
        calls.append(k)
        if k == 2:
            raise RuntimeError("simulated crash")
        return real(layout, stored, k, root, name, var_from, **kw)

    monkeypatch.setattr(_gather, "gather_bucket", failing)
    with pytest.raises(RuntimeError, match="simulated"):
        annshard.write_collection(small_sources["paths"], p, n_obs_per_shard=50)
    assert calls == [0, 1, 2]
    assert not p.exists()
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(FileNotFoundError):
        annshard.open_collection(p)


def test_killed_write_is_cleaned_up_by_the_next(tmp_path, small_sources):
    """A process killed mid-gather (no Python cleanup) leaves a temp dir that is not a collection; a rerun removes it."""
    p = tmp_path / "o.zarr"
    code = f"""
import os, annshard
from annshard._write import _gather
real = _gather.gather_bucket
def dying(layout, stored, k, root, name, var_from=None, **kw):
    if k == 1:
        os._exit(9)
    return real(layout, stored, k, root, name, var_from, **kw)
_gather.gather_bucket = dying
annshard.write_collection({[str(x) for x in small_sources["paths"]]!r}, {str(p)!r}, n_obs_per_shard=50)
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert r.returncode == 9, r.stderr
    leftovers = list(tmp_path.iterdir())
    assert len(leftovers) == 1 and leftovers[0].name.startswith(".o.zarr.annshard-tmp-")
    assert not p.exists()
    with pytest.raises(CollectionFormatError):
        annshard.open_collection(leftovers[0])
    coll = annshard.write_collection(small_sources["paths"], p, n_obs_per_shard=50)
    assert coll.n_obs == 400
    assert [x.name for x in tmp_path.iterdir()] == ["o.zarr"]


def test_duplicated_obs_names_are_kept(tmp_path):
    a = make_adata(30, 10, nnz_per_cell=3)
    b = make_adata(20, 10, nnz_per_cell=3, seed=1)
    coll = annshard.write_collection({"a": a, "b": b}, tmp_path / "o.zarr")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        obs = ad.read_zarr(coll.shard_path(0)).obs
    assert sorted(obs.index) == sorted([*a.obs_names, *b.obs_names])


def test_obs_column_subset_and_string_columns(tmp_path):
    a = make_adata(40, 10, nnz_per_cell=3, obs_prefix="a")
    a.obs["batch"] = ["p", "q"] * 20  # low cardinality strings -> categorical
    a.obs["barcode"] = [f"bc{i}" for i in range(40)]  # high cardinality -> string
    coll = annshard.write_collection(
        {"a": a}, tmp_path / "o.zarr", obs_columns=["batch", "barcode", "n_genes"], max_categories=5
    )
    assert list(coll.obs_columns) == ["batch", "barcode", "n_genes", "source", "source_row"]
    assert coll.obs_columns["batch"].kind == "categorical"
    assert coll.obs_columns["batch"].categories == ("p", "q")
    assert coll.obs_columns["barcode"].kind == "string"
    obs = ad.read_zarr(coll.shard_path(0)).obs
    assert sorted(obs["barcode"]) == sorted(a.obs["barcode"])
    assert obs["n_genes"].dtype == np.int64


def test_write_collection_manifest_is_json(tmp_path, small_sources):
    coll = annshard.write_collection(small_sources["paths"], tmp_path / "o.zarr")
    doc = json.loads((coll.path / "zarr.json").read_text())
    assert doc["attributes"]["annshard"]["format"] == "annshard-collection"
