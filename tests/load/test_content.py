"""Batches carry the right rows: X, obs and index agree with the collection's source rows."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import annshard
from annshard._load._batch import Batch


def _check_batch(batch: Batch, built, loader, dense: bool = False) -> None:
    idx = np.asarray(batch.index)
    want = built.X[idx]
    x = batch.X
    if sp.issparse(x):
        assert x.indices.dtype == np.int32
        assert (x != want).nnz == 0
    else:
        np.testing.assert_array_equal(np.asarray(x), want.toarray() if sp.issparse(want) else want)
    cats = loader.categories
    for name, values in batch.obs.items():
        values = np.asarray(values)
        expected = built.adata.obs[name].to_numpy()[idx]
        if name in cats:
            np.testing.assert_array_equal(np.asarray(cats[name], dtype=object)[values], expected.astype(object))
        else:
            np.testing.assert_array_equal(values, expected)


@pytest.mark.parametrize("output", ["scipy", "numpy"])
def test_batches_match_source_rows(coll, output):
    loader = annshard.Loader(
        coll.path,
        batch_size=256,
        chunk_size=16,
        preload_nchunks=10,
        obs_columns=["cell_type", "n_genes", "source_row"],
        output=output,
    )
    seen = []
    for batch in loader:
        _check_batch(batch, coll, loader)
        assert batch["X"] is batch.X and set(batch.keys()) == {"X", "obs", "index"}
        seen.append(batch.index)
    idx = np.concatenate(seen)
    assert np.array_equal(np.sort(idx), np.arange(coll.adata.n_obs))


@pytest.mark.parametrize("chunk_size", [1, 7, 64])
def test_counts_storage_is_read_as_the_source_dtype(counts_coll, chunk_size):
    loader = annshard.Loader(counts_coll.path, batch_size=100, chunk_size=chunk_size, preload_nchunks=5)
    n = 0
    for batch in loader:
        assert batch.X.dtype == counts_coll.X.dtype == np.float32
        _check_batch(batch, counts_coll, loader)
        n += batch.n_obs
    assert n == counts_coll.adata.n_obs


def test_torch_sparse_and_dense(coll):
    torch = pytest.importorskip("torch")
    loader = annshard.Loader(coll.path, batch_size=300, output="torch", obs_columns=["cell_type"])
    batch = next(iter(loader))
    assert batch.X.layout == torch.sparse_csr
    # one index dtype for both arrays (torch's invariant), and no widening to int64 for small batches
    assert batch.X.crow_indices().dtype == batch.X.col_indices().dtype == torch.int32
    torch._validate_sparse_csr_tensor_args(
        batch.X.crow_indices(), batch.X.col_indices(), batch.X.values(), batch.X.shape
    )
    assert isinstance(batch.obs["cell_type"], torch.Tensor) and isinstance(batch.index, torch.Tensor)
    idx = batch.index.numpy()
    np.testing.assert_array_equal(batch.X.to_dense().numpy(), coll.X[idx].toarray())
    dense = next(iter(annshard.Loader(coll.path, batch_size=300, output="torch", dense=True)))
    assert dense.X.layout == torch.strided
    np.testing.assert_array_equal(dense.X.numpy(), coll.X[dense.index.numpy()].toarray())


def test_layer(coll):
    loader = annshard.Loader(coll.path, batch_size=500, layer="counts")
    batch = next(iter(loader))
    assert (batch.X != coll.X[batch.index] * 2).nnz == 0


def test_dense_collection(dense_coll):
    for output in ("numpy", "scipy"):
        loader = annshard.Loader(dense_coll.path, batch_size=100, chunk_size=8, preload_nchunks=5, output=output)
        idx = []
        for batch in loader:
            x = batch.X.toarray() if sp.issparse(batch.X) else batch.X
            np.testing.assert_array_equal(x, dense_coll.X[batch.index].toarray())
            idx.append(batch.index)
        assert np.array_equal(np.sort(np.concatenate(idx)), np.arange(700))


def test_several_collections(coll, coll2):
    loader = annshard.Loader([coll.path, coll2.path], batch_size=512, obs_columns=["donor"])
    n1 = coll.adata.n_obs
    assert loader.n_obs == n1 + coll2.adata.n_obs
    cats = np.asarray(loader.categories["donor"], dtype=object)
    seen = []
    for batch in loader:
        for pos, g in enumerate(batch.index):
            src, row = (coll, g) if g < n1 else (coll2, g - n1)
            assert (batch.X[pos] != src.X[row]).nnz == 0
            assert cats[batch.obs["donor"][pos]] == src.adata.obs["donor"].iloc[row]
        seen.append(batch.index)
    assert np.array_equal(np.sort(np.concatenate(seen)), np.arange(loader.n_obs))


def test_sequential_yields_collection_order(coll):
    loader = annshard.Loader(coll.path, batch_size=700, chunk_size=50, preload_nchunks=3, sampler="sequential")
    idx = np.concatenate([b.index for b in loader])
    assert np.array_equal(idx, np.arange(coll.adata.n_obs))


def test_epochs_differ_and_seed_repeats(coll):
    a = annshard.Loader(coll.path, batch_size=1000, seed=3)
    e0 = np.concatenate([b.index for b in a])
    e1 = np.concatenate([b.index for b in a])
    assert a.epoch == 2
    assert not np.array_equal(e0, e1)
    b = annshard.Loader(coll.path, batch_size=1000, seed=3)
    assert np.array_equal(np.concatenate([x.index for x in b]), e0)
    b.set_epoch(1)
    assert np.array_equal(np.concatenate([x.index for x in b]), e1)
    c = annshard.Loader(coll.path, batch_size=1000, seed=4)
    assert not np.array_equal(np.concatenate([x.index for x in c]), e0)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    batch_size=st.integers(1, 1200),
    chunk_size=st.integers(1, 400),
    preload=st.integers(1, 40),
    drop_last=st.booleans(),
)
def test_any_sizes_cover_every_row_once(coll2, batch_size, chunk_size, preload, drop_last):
    loader = annshard.Loader(
        coll2.path, batch_size=batch_size, chunk_size=chunk_size, preload_nchunks=preload, drop_last=drop_last
    )
    sizes, seen = [], []
    for batch in loader:
        sizes.append(batch.n_obs)
        seen.append(batch.index)
    n = coll2.adata.n_obs
    assert all(s == batch_size for s in sizes[:-1])
    if drop_last:
        assert sizes[-1:] in ([], [batch_size]) and len(sizes) == n // batch_size
        idx = np.concatenate(seen) if seen else np.zeros(0, int)
        assert len(np.unique(idx)) == len(idx) == (n // batch_size) * batch_size
    else:
        assert len(sizes) == -(-n // batch_size) == len(loader)
        assert np.array_equal(np.sort(np.concatenate(seen)), np.arange(n))


def test_settings_and_repr(coll):
    loader = annshard.Loader(coll.path, batch_size=64, obs_columns=["cell_type"], seed=5)
    s = loader.settings()
    assert s["batch_size"] == 64 and s["sampler"] == "random" and s["seed"] == 5 and s["obs_columns"] == ["cell_type"]
    assert "Loader(" in repr(loader)
