"""Layers and obsm arrays in every batch, row for row with ``X`` (sources: ``layer_sources`` in tests/conftest.py)."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

import annshard

LAYERS = ["counts", "dense_l"]
OBSM = ["X_pca", "X_umap"]


@pytest.fixture(scope="module")
def coll(layer_sources, tmp_path_factory):
    """A collection of a.h5ad and b.zarr (outer join) with two layers and two obsm arrays, in 3 shards."""
    path = tmp_path_factory.mktemp("layers") / "c.zarr"
    return annshard.write_collection(
        {k: layer_sources[k][0] for k in ("a.h5ad", "b.zarr")},
        path,
        join="outer",
        layers=LAYERS,
        obsm=OBSM,
        n_obs_per_shard=140,
    )


def _dense(x) -> np.ndarray:
    if hasattr(x, "to_dense"):  # torch
        x = x.to_dense().cpu().numpy()
    return x.toarray() if sp.issparse(x) else np.asarray(x)


def _expected(adata, element: str, rows: np.ndarray, var_names: pd.Index) -> np.ndarray:
    if element.startswith("obsm/"):
        return np.asarray(adata.obsm[element[5:]])[rows]
    m = adata.X if element == "X" else adata.layers[element[7:]]
    values = m[rows].toarray() if sp.issparse(m) else np.asarray(m)[rows]
    cols = pd.Index(adata.var_names).get_indexer(var_names)
    out = np.zeros((len(rows), len(var_names)), dtype=values.dtype)
    out[:, cols >= 0] = values[:, cols[cols >= 0]]
    return out


def check_batch(batch, loader, coll, layer_sources) -> None:
    """Every row of X, each layer and each obsm array equals its cell's source row."""
    labels = np.asarray(loader.categories["source"], dtype=object)[_dense(batch.obs["source"])]
    rows = _dense(batch.obs["source_row"])
    assert set(batch.layers) == set(loader.layers) and set(batch.obsm) == set(loader.obsm)
    for label in set(labels):
        mask = labels == label
        src = layer_sources[label][1]
        for element in ["X", *(f"layers/{k}" for k in loader.layers), *(f"obsm/{k}" for k in loader.obsm)]:
            group, _, name = element.partition("/")
            got = _dense(batch.X if element == "X" else getattr(batch, group)[name])[mask]
            want = _expected(src, element, rows[mask], coll.var.index)
            np.testing.assert_array_equal(got, want.astype(got.dtype), err_msg=element)


@pytest.mark.parametrize(
    ("output", "dense"),
    [("scipy", False), ("numpy", False), ("torch", False), ("torch", True)],
    ids=["scipy", "numpy", "torch-sparse", "torch-dense"],
)
def test_every_batch_carries_its_rows_layers_and_obsm(coll, layer_sources, output, dense):
    if output == "torch":
        pytest.importorskip("torch")
    loader = annshard.Loader(
        coll,
        batch_size=37,
        chunk_size=8,
        preload_nchunks=5,
        obs_columns=["source", "source_row"],
        layers=LAYERS,
        obsm=OBSM,
        output=output,
        dense=dense,
        read_threads=1,
    )
    seen = []
    for batch in loader:
        check_batch(batch, loader, coll, layer_sources)
        x, layer, emb = batch.X, batch.layers["counts"], batch.obsm["X_pca"]
        assert layer.shape == x.shape and emb.shape == (x.shape[0], 6)
        if output == "scipy":
            assert isinstance(x, sp.csr_matrix) and isinstance(layer, sp.csr_matrix)
            assert isinstance(emb, np.ndarray)
        elif output == "numpy":
            assert all(isinstance(v, np.ndarray) for v in (x, layer, emb))
        else:
            import torch

            assert all(isinstance(v, torch.Tensor) for v in (x, layer, emb))
            assert layer.layout == x.layout == (torch.strided if dense else torch.sparse_csr)
            assert emb.layout == torch.strided
        assert batch["layers"] is batch.layers and "obsm" in set(batch.keys())
        seen.append(_dense(batch.index))
    seen = np.concatenate(seen)
    assert np.array_equal(np.sort(seen), np.arange(coll.n_obs))  # every row exactly once


def test_dense_stored_layer_in_scipy_output_is_csr_like_x(coll):
    loader = annshard.Loader(coll, batch_size=50, layers=["dense_l"], read_threads=1)
    batch = next(iter(loader))
    assert isinstance(batch.layers["dense_l"], sp.csr_matrix)
    assert batch.layers["dense_l"].dtype == np.float64


def test_resume_is_exact_with_layers(coll):
    kw = {"batch_size": 29, "chunk_size": 4, "preload_nchunks": 3, "layers": ["counts"], "obsm": ["X_pca"], "seed": 3}
    full = list(annshard.Loader(coll, **kw, read_threads=1))
    first = annshard.Loader(coll, **kw, read_threads=1)
    it = iter(first)
    for _ in range(4):
        next(it)
    state = first.state_dict()
    it.close()
    resumed = annshard.Loader(coll, **kw, read_threads=1)
    resumed.load_state_dict(state)
    rest = list(resumed)
    assert len(rest) == len(full) - 4
    for a, b in zip(full[4:], rest, strict=True):
        np.testing.assert_array_equal(a.index, b.index)
        np.testing.assert_array_equal(a.X.toarray(), b.X.toarray())
        np.testing.assert_array_equal(a.layers["counts"].toarray(), b.layers["counts"].toarray())
        np.testing.assert_array_equal(a.obsm["X_pca"], b.obsm["X_pca"])


def test_pickled_loader_still_reads_layers(coll, layer_sources):
    loader = annshard.Loader(
        coll, batch_size=64, obs_columns=["source", "source_row"], layers=["counts"], obsm=["X_umap"], read_threads=1
    )
    again = pickle.loads(pickle.dumps(loader))  # as DataLoader workers get it
    batches = list(again)
    assert sum(b.n_obs for b in batches) == coll.n_obs
    check_batch(batches[0], again, coll, layer_sources)


def test_settings_record_layers_and_obsm(coll):
    loader = annshard.Loader(coll, layers=["counts"], obsm=["X_pca"], read_threads=1)
    s = loader.settings()
    assert s["layers"] == ["counts"] and s["obsm"] == ["X_pca"]
    plain = annshard.Loader(coll, read_threads=1)
    assert plain.settings()["layers"] == [] and next(iter(plain)).layers == {}


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (
            {"layers": ["spliced"]},
            KeyError,
            r"layers 'spliced' is not in collection .*available layers: \['counts', 'dense_l'\]",
        ),
        ({"obsm": ["X_tsne"]}, KeyError, r"obsm 'X_tsne' is not in collection .*available obsm: \['X_pca', 'X_umap'\]"),
        ({"layers": "counts"}, TypeError, r"did you mean layers=\['counts'\]"),
    ],
    ids=["layer", "obsm", "string"],
)
def test_unknown_names_are_refused(coll, kwargs, error, match):
    with pytest.raises(error, match=match):
        annshard.Loader(coll, **kwargs)


def _cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


@pytest.mark.gpu
@pytest.mark.skipif(not _cuda(), reason="needs a CUDA device (torch.cuda.is_available() is False)")
@pytest.mark.filterwarnings("ignore:Sparse CSR tensor support is in beta state")
@pytest.mark.parametrize("dense", [False, True], ids=["sparse", "dense"])
def test_cuda_batches_carry_layers_and_obsm(coll, layer_sources, dense):
    loader = annshard.Loader(
        coll,
        batch_size=64,
        obs_columns=["source", "source_row"],
        layers=["counts"],
        obsm=["X_pca"],
        output="torch",
        device="cuda",
        dense=dense,
    )
    n = 0
    for batch in loader:
        assert batch.layers["counts"].device.type == "cuda" and batch.obsm["X_pca"].device.type == "cuda"
        check_batch(batch, loader, coll, layer_sources)
        n += batch.n_obs
    assert n == coll.n_obs


def test_dense_x_with_a_csr_layer(layer_sources, tmp_path):
    """X stored dense, the counts layer CSR: each element keeps its own layout in the same block read."""
    srcs = {k: layer_sources[k] for k in ("a.h5ad", "d.zarr")}
    coll = annshard.write_collection(
        {k: p for k, (p, _) in srcs.items()}, tmp_path / "c.zarr", dense=True, layers=["counts"], obsm=["X_pca"]
    )
    assert coll.manifest.storage.x_format == "dense" and coll.manifest.matrices[0].storage.x_format == "csr"
    loader = annshard.Loader(
        coll, batch_size=41, obs_columns=["source", "source_row"], layers=["counts"], obsm=["X_pca"], output="numpy"
    )
    n = 0
    for batch in loader:
        check_batch(batch, loader, coll, layer_sources)
        n += batch.n_obs
    assert n == coll.n_obs
