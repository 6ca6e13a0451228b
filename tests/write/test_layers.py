"""Layers and obsm arrays travel with the cells through the writer (sources: ``layer_sources`` in tests/conftest.py)."""

from __future__ import annotations

import warnings

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

import annshard
from annshard._errors import CollectionFormatError, SourceError
from annshard._store._manifest import Manifest, MatrixSpec, StorageSpec


def _dense(m) -> np.ndarray:
    return m.toarray() if sp.issparse(m) else np.asarray(m)


def expected_rows(adata: ad.AnnData, element: str, rows: np.ndarray, var_names: pd.Index) -> np.ndarray:
    """Rows ``rows`` of a source's ``X`` / layer (reindexed to ``var_names``, absent genes 0) or obsm array."""
    if element.startswith("obsm/"):
        return _dense(adata.obsm[element[5:]])[rows]
    m = adata.X if element == "X" else adata.layers[element[7:]]
    values = _dense(m[rows])
    cols = pd.Index(adata.var_names).get_indexer(var_names)
    out = np.zeros((len(rows), len(var_names)), dtype=values.dtype)
    out[:, cols >= 0] = values[:, cols[cols >= 0]]
    return out


def read_shards(coll) -> list[ad.AnnData]:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Observation names are not unique", UserWarning)
        return [ad.read_zarr(coll.shard_path(i)) for i in range(len(coll.shards))]


def check_shards(coll, sources: dict, elements: list[str]) -> None:
    """Every shard, read by anndata, holds each element row for row with its cells' source rows."""
    seen = 0
    for shard in read_shards(coll):
        assert list(shard.var_names) == list(coll.var.index)
        for label in shard.obs["source"].unique():
            mask = (shard.obs["source"] == label).to_numpy()
            rows = shard.obs["source_row"].to_numpy()[mask]
            src = sources[label][1]
            assert list(shard.obs_names[mask]) == list(src.obs_names[rows])
            for element in ["X", *elements]:
                if element == "X":
                    got = shard.X
                elif element.startswith("layers/"):
                    got = shard.layers[element[7:]]
                else:
                    got = shard.obsm[element[5:]]
                want = expected_rows(src, element, rows, coll.var.index)
                np.testing.assert_array_equal(_dense(got)[mask], want.astype(_dense(got).dtype), err_msg=element)
            seen += int(mask.sum())
    assert seen == coll.n_obs


def test_shards_hold_layers_and_obsm_for_the_same_cells(layer_sources, tmp_path):
    srcs = {k: layer_sources[k] for k in ("a.h5ad", "b.zarr")}
    coll = annshard.write_collection(
        {k: p for k, (p, _) in srcs.items()},
        tmp_path / "c.zarr",
        layers=["counts", "dense_l"],
        obsm=["X_pca", "X_umap"],
        n_obs_per_shard=150,
    )
    assert len(coll.shards) == 3
    check_shards(coll, srcs, ["layers/counts", "layers/dense_l", "obsm/X_pca", "obsm/X_umap"])
    specs = {m.element: m for m in coll.manifest.matrices}
    assert list(specs) == ["layers/counts", "layers/dense_l", "obsm/X_pca", "obsm/X_umap"]
    # each matrix keeps its own storage decision
    counts, dense_l = specs["layers/counts"].storage, specs["layers/dense_l"].storage
    assert (counts.x_format, counts.data_dtype, counts.counts_dtype) == ("csr", "float32", "uint16")  # b's is dense
    assert (dense_l.x_format, dense_l.data_dtype, dense_l.counts_dtype) == ("dense", "float64", None)
    assert coll.manifest.storage.counts_dtype is None  # X is normalised
    assert specs["obsm/X_pca"].n_cols == 6 and specs["obsm/X_umap"].storage.data_dtype == "float64"
    assert specs["layers/counts"].n_cols == coll.n_vars == 36
    # the counts layer goes through the counts codec, and anndata reads float32 back
    shard = read_shards(coll)[0]
    assert shard.layers["counts"].dtype == np.float32 and sp.issparse(shard.layers["counts"])
    assert isinstance(shard.obsm["X_pca"], np.ndarray) and shard.obsm["X_pca"].dtype == np.float32
    # the manifest survives a reopen
    again = annshard.open_collection(coll.path)
    assert again.manifest.matrices == coll.manifest.matrices


def test_outer_join_layer_has_zeros_for_missing_genes(layer_sources, tmp_path):
    srcs = {k: layer_sources[k] for k in ("a.h5ad", "b.zarr")}
    coll = annshard.write_collection(
        {k: p for k, (p, _) in srcs.items()}, tmp_path / "c.zarr", join="outer", layers=["counts"], obsm=["X_pca"]
    )
    assert coll.n_vars == 44
    check_shards(coll, srcs, ["layers/counts", "obsm/X_pca"])
    shard = read_shards(coll)[0]
    h = [coll.var.index.get_loc(f"h{i}") for i in range(4)]
    from_a = (shard.obs["source"] == "a.h5ad").to_numpy()
    assert from_a.any() and _dense(shard.layers["counts"])[from_a][:, h].sum() == 0


def test_all_takes_what_every_source_has(layer_sources, tmp_path):
    srcs = {k: layer_sources[k] for k in ("a.h5ad", "b.zarr")}
    with pytest.warns(UserWarning, match=r"layers='all': \['spliced'\] are not in every source"):
        coll = annshard.write_collection(
            {k: p for k, (p, _) in srcs.items()}, tmp_path / "c.zarr", layers="all", obsm="all"
        )
    assert [m.element for m in coll.manifest.matrices] == [
        "layers/counts",
        "layers/dense_l",
        "obsm/X_pca",
        "obsm/X_umap",
    ]


def test_default_keeps_no_layers(layer_sources, tmp_path):
    coll = annshard.write_collection([layer_sources["a.h5ad"][0]], tmp_path / "c.zarr")
    assert coll.manifest.matrices == ()
    shard = read_shards(coll)[0]
    assert list(shard.layers) in ([], [None]) and list(shard.obsm) == []


@pytest.mark.parametrize(
    ("kwargs", "names", "match"),
    [
        ({"layers": ["spliced"]}, ("a.h5ad", "b.zarr"), r"b\.zarr: layers/spliced: not found .*add it to this source"),
        ({"obsm": ["X_tsne"]}, ("a.h5ad", "b.zarr"), r"a\.h5ad: obsm/X_tsne: not found"),
        ({"obsm": ["X_pca"]}, ("a.h5ad", "c.h5ad"), r"obsm/X_pca: has different widths .*a\.h5ad: 6; .*c\.h5ad: 5"),
    ],
    ids=["layer-missing", "obsm-missing", "obsm-width"],
)
def test_refused_with_a_clear_error(layer_sources, tmp_path, kwargs, names, match):
    with pytest.raises(SourceError, match=match):
        annshard.write_collection([layer_sources[n][0] for n in names], tmp_path / "c.zarr", **kwargs)
    assert not (tmp_path / "c.zarr").exists()
    assert not list(tmp_path.glob(".c.zarr*"))  # no leftovers


def test_a_string_is_not_a_list(layer_sources, tmp_path):
    with pytest.raises(ValueError, match=r"did you mean layers=\['counts'\]"):
        annshard.write_collection([layer_sources["a.h5ad"][0]], tmp_path / "c.zarr", layers="counts")


def test_append_supplies_every_layer_and_obsm(layer_sources, tmp_path):
    srcs = {k: layer_sources[k] for k in ("a.h5ad", "d.zarr")}
    coll = annshard.write_collection(
        [layer_sources["a.h5ad"][0]], tmp_path / "c.zarr", layers=["counts", "spliced"], obsm=["X_pca"]
    )
    before = coll.manifest
    coll = annshard.append_collection(coll, [layer_sources["d.zarr"][0]])
    assert coll.manifest.matrices == before.matrices
    assert len(coll.shards) > len(before.shards)
    check_shards(coll, srcs, ["layers/counts", "layers/spliced", "obsm/X_pca"])


def _narrow_pca(layer_sources):
    a = layer_sources["d.zarr"][1].copy()
    a.obsm["X_pca"] = a.obsm["X_pca"][:, :5]
    return a


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda s: s["c.h5ad"][0], r"c\.h5ad: layers/spliced: not found .*an append must supply every layer and obsm"),
        (_narrow_pca, r"'adata-0'.*: obsm/X_pca: has 5 columns, the collection's has 6"),
    ],
    ids=["layer-missing", "obsm-width"],
)
def test_append_refused_leaves_collection_unchanged(layer_sources, tmp_path, make, match):
    coll = annshard.write_collection(
        [layer_sources["a.h5ad"][0]], tmp_path / "c.zarr", layers=["counts", "spliced"], obsm=["X_pca"]
    )
    before = coll.manifest.to_dict()
    files = sorted(p.name for p in coll.path.iterdir())
    with pytest.raises(SourceError, match=match):
        annshard.append_collection(coll, [make(layer_sources)])
    assert annshard.open_collection(coll.path).manifest.to_dict() == before
    assert sorted(p.name for p in coll.path.iterdir()) == files


def test_append_refuses_fractions_into_a_counts_layer(layer_sources, tmp_path):
    coll = annshard.write_collection([layer_sources["a.h5ad"][0]], tmp_path / "c.zarr", layers=["counts"])
    assert coll.manifest.matrices[0].storage.counts_dtype == "uint16"
    before = coll.manifest.to_dict()
    a = layer_sources["d.zarr"][1].copy()
    a.layers["counts"] = a.layers["counts"] * 0.5
    with pytest.raises(SourceError, match=r"layers/counts has values that are not whole numbers"):
        annshard.append_collection(coll, [a])
    assert annshard.open_collection(coll.path).manifest.to_dict() == before


def test_memory_budget_counts_the_extra_matrices(layer_sources, tmp_path):
    path = layer_sources["a.h5ad"][0]
    plain = annshard.write_collection([path], tmp_path / "plain.zarr", memory_budget="200KB")
    extra = annshard.write_collection(
        [path], tmp_path / "extra.zarr", memory_budget="200KB", layers=["counts", "dense_l"], obsm=["X_pca"]
    )
    assert extra.manifest.extra["n_obs_per_shard"] < plain.manifest.extra["n_obs_per_shard"]
    assert len(extra.shards) > len(plain.shards)


def test_manifest_field_is_optional_and_validated():
    spec = MatrixSpec("layers/counts", 10, StorageSpec(counts_dtype="uint16"))
    assert MatrixSpec.from_dict(spec.to_dict()) == spec
    base = Manifest(
        n_obs=0, n_vars=10, seed=0, join="inner", storage=StorageSpec(), shards=(), sources=(), obs_columns=()
    )
    d = base.to_dict()
    assert Manifest.from_dict(d).matrices == ()
    del d["matrices"]  # a collection written before the field existed
    assert Manifest.from_dict(d).matrices == ()
    with pytest.raises(CollectionFormatError, match="is not 'layers/<name>' or 'obsm/<name>'"):
        MatrixSpec.from_dict({"element": "uns/x", "n_cols": 1, "storage": StorageSpec().to_dict()})
    with pytest.raises(CollectionFormatError, match="obsm arrays are stored dense"):
        MatrixSpec("obsm/X_pca", 2, StorageSpec(x_format="csr"))


def test_cli_convert_keeps_layers_and_info_lists_them(layer_sources, tmp_path, capsys):
    from annshard._cli import main

    out = tmp_path / "c.zarr"
    paths = [str(layer_sources[k][0]) for k in ("a.h5ad", "b.zarr")]
    assert main(["convert", *paths, "-o", str(out), "--layers", "counts", "--obsm", "X_pca,X_umap", "--quiet"]) == 0
    coll = annshard.open_collection(out)
    assert [m.element for m in coll.manifest.matrices] == ["layers/counts", "obsm/X_pca", "obsm/X_umap"]
    capsys.readouterr()
    assert main(["info", str(out)]) == 0
    text = capsys.readouterr().out
    assert "layers     counts: csr, 36 columns, float32 values (whole numbers, stored as uint16)" in text
    assert "obsm       X_pca: dense, 6 columns, float32 values" in text
    assert main(["convert", *paths, "-o", str(tmp_path / "e.zarr"), "--layers", "spliced", "--quiet"]) == 2
    assert "layers/spliced: not found" in capsys.readouterr().err


def test_float16_matrices_are_stored_as_float32(layer_sources, tmp_path):
    a = layer_sources["d.zarr"][1].copy()
    a.layers["half"] = a.layers["dense_l"].astype(np.float16)
    a.obsm["half"] = a.obsm["X_pca"].astype(np.float16)
    coll = annshard.write_collection([a], tmp_path / "c.zarr", layers=["half"], obsm=["half"])
    assert [m.storage.data_dtype for m in coll.manifest.matrices] == ["float32", "float32"]
    batch = next(iter(annshard.Loader(coll, batch_size=90, layers=["half"], obsm=["half"], read_threads=1)))
    assert batch.layers["half"].dtype == np.float32  # scipy CSR: float16 would not work
    assert batch.obsm["half"].dtype == np.float32 and batch.obsm["half"].shape == (90, 6)
    shard = read_shards(coll)[0]
    rows = shard.obs["source_row"].to_numpy()
    np.testing.assert_array_equal(shard.obsm["half"], a.obsm["half"][rows].astype(np.float32))


def test_append_refuses_values_an_integer_obsm_would_change(layer_sources, tmp_path):
    a = layer_sources["a.h5ad"][1].copy()
    a.obsm["ids"] = np.arange(2 * a.n_obs, dtype=np.int64).reshape(-1, 2)
    coll = annshard.write_collection([a], tmp_path / "c.zarr", obsm=["ids"])
    assert coll.manifest.matrices[0].storage.data_dtype == "int64"
    before = coll.manifest.to_dict()
    d = layer_sources["d.zarr"][1].copy()
    d.obsm["ids"] = np.full((d.n_obs, 2), 0.5)
    with pytest.raises(SourceError, match=r"'adata-0'.*obsm/ids"):
        annshard.append_collection(coll, [d])
    assert annshard.open_collection(coll.path).manifest.to_dict() == before
    d.obsm["ids"] = np.full((d.n_obs, 2), 7.0)  # whole numbers cast exactly
    coll = annshard.append_collection(coll, [d])
    assert coll.n_obs == a.n_obs + d.n_obs
