"""Buffers reused from block to block and bucket to bucket: same values, same memory, byte-identical shards."""

from __future__ import annotations

import anndata as ad
import h5py
import numpy as np
import scipy.sparse as sp

import annshard
from annshard._write._gather import take_rows
from annshard._write._memory import Buffers
from annshard._write._sources._elements import CSRRows
from annshard.testing import write_h5ads


def test_buffers_reuse_one_buffer_per_key_and_grow():
    b = Buffers()
    a = b.array("v", 1000, np.float32)
    a[:] = 1.5
    c = b.array("v", 900, np.float32)  # smaller: the same memory
    assert c.shape == (900,) and c.dtype == np.float32 and np.shares_memory(a, c)
    assert not np.shares_memory(b.array("w", 10, np.float32), c)  # keys do not share
    d = b.array("v", 1030, np.float32)  # within the headroom: still the same buffer
    assert np.shares_memory(a, d)
    e = b.array("v", 10_000, np.float32)  # too large: a new one
    assert e.shape == (10_000,) and not np.shares_memory(a, e)
    f = b.array("v", 100, np.uint16)  # another dtype: a buffer of that dtype
    assert f.dtype == np.uint16 and f.base.dtype == np.uint16
    assert b.array("z", 0, np.float32).shape == (0,)
    # scipy keeps (does not copy) an array of a buffer it was handed out of
    g = b.array("g", 100, np.float32)
    m = sp.csr_matrix((g, np.zeros(100, np.int32), np.array([0, 100])), shape=(1, 5))
    assert np.shares_memory(m.data, g)


def test_take_rows_into_buffers_matches_fresh_arrays():
    rng = np.random.default_rng(0)
    bufs = Buffers()
    prev = None
    for seed in range(3):  # three "buckets" of different sizes through the same buffers
        X = sp.random(200 + 30 * seed, 50, density=0.2, format="csr", random_state=seed, dtype=np.float32)
        rows = rng.permutation(X.shape[0])
        want = take_rows(X.data, X.indices.astype(np.uint16), X.indptr, rows, 50)
        got = take_rows(X.data, X.indices.astype(np.uint16), X.indptr, rows, 50, buffers=bufs, key="out")
        np.testing.assert_array_equal(got.data, want.data)
        np.testing.assert_array_equal(got.indices, want.indices)
        np.testing.assert_array_equal(got.indptr, want.indptr)
        assert got.indices.dtype == np.uint16
        if prev is not None and got.data.nbytes <= prev:
            assert np.shares_memory(got.data, bufs.array("out.data", 1, np.float32))
        prev = got.data.nbytes


def test_csr_rows_of_h5ad_reuse_buffers_and_read_the_same_rows(tmp_path):
    (path,) = write_h5ads(tmp_path, [600], 120, nnz_per_cell=30, seed=3)
    want = ad.read_h5ad(path).X
    with h5py.File(path, "r") as f:
        rows = CSRRows(f["X"], (600, 120))
        first = rows[0:300]
        np.testing.assert_array_equal(first.toarray(), want[0:300].toarray())
        second = rows[300:600]  # the next block lands in the same memory (valid until the next read)
        assert np.shares_memory(first.data, second.data) and np.shares_memory(first.indices, second.indices)
        np.testing.assert_array_equal(second.toarray(), want[300:600].toarray())
        assert rows[600:600].shape == (0, 120)


def test_blocks_and_buckets_through_reused_buffers_round_trip(tmp_path, roundtrip):
    """Several blocks per source and several buckets through the same buffers: every row once, bit-identical."""
    paths = write_h5ads(tmp_path / "in", [700, 500], 150, nnz_per_cell=40, seed=5)
    coll = annshard.write_collection(paths, tmp_path / "c.zarr", seed=2, n_obs_per_shard=300, memory_budget="256KB")
    assert len(coll.shards) == 4
    roundtrip(coll, {p.name: ad.read_h5ad(p) for p in paths})
