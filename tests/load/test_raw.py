"""Uncompressed arrays read by ``os.preadv`` straight into the block (``annshard._store._raw.RawRuns``)."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import zarr

import annshard
from annshard._load._fetch import BlockReader, DirectRuns
from annshard._load._pool import BufferPool
from annshard._load._union import ShardRef
from annshard._store._raw import RawRuns, read_raw_runs

from .conftest import build_collection

pytestmark = pytest.mark.timeout(120)


def _reader(path) -> BlockReader:
    coll = annshard.open_collection(path)
    refs, offset = [], 0
    for i, info in enumerate(coll.shards):
        refs.append(ShardRef(collection=coll, shard=i, offset=offset))
        offset += info.n_obs
    return BlockReader(refs, threads=1)


@pytest.fixture(scope="module")
def raw_counts(tmp_path_factory):
    """Counts values (uint16 through fixedscaleoffset) and uncompressed gene indices, as the writer's defaults."""
    path = tmp_path_factory.mktemp("raw") / "r.zarr"
    return build_collection(path, n_obs=800, n_shards=2, seed=9, counts_dtype="uint16", indices_codec="none")


def test_uncompressed_indices_read_in_place(raw_counts, monkeypatch):
    reader = _reader(raw_counts.path)
    reader.arrays(0)
    values, indices = reader._direct[(0, "X")]
    assert isinstance(indices, RawRuns), "uncompressed gene indices are read without zarrs"
    assert isinstance(values, DirectRuns) and values.dtype == np.uint16
    rng = np.random.default_rng(2)
    chunks = []
    for _ in range(60):
        s = int(rng.integers(2))
        n = reader.shards[s].collection.shards[s].n_obs
        a = int(rng.integers(n))
        chunks.append((s, a, min(n, a + int(rng.integers(1, 40)))))
    chunks = np.array(chunks, dtype=np.int64)
    block = reader.read(chunks, BufferPool(6))
    monkeypatch.setattr(DirectRuns, "create", classmethod(lambda cls, array: None))
    via_zarr = _reader(raw_counts.path)
    want = via_zarr.read(chunks)
    assert via_zarr._direct[(0, "X")] == (None, None)
    for name in ("index", "indptr", "indices", "data"):
        np.testing.assert_array_equal(getattr(block, name), getattr(want, name))
    np.testing.assert_array_equal(block.data, raw_counts.X[block.index].data)
    np.testing.assert_array_equal(block.indices, raw_counts.X[block.index].indices)


def test_missing_inner_chunk_reads_the_fill_value(tmp_path):
    # an inner chunk that is all fill value is never written: the shard index marks it missing
    a = zarr.create_array(tmp_path / "a.zarr", shape=(100,), chunks=(10,), shards=(50,), dtype="uint16", compressors=())
    values = np.arange(100, dtype=np.uint16) + 1
    values[20:30] = 0
    a[:] = values
    raw = RawRuns.create(zarr.open_array(tmp_path / "a.zarr", mode="r"))
    assert raw is not None
    runs = np.array([[15, 35], [48, 52], [99, 100]], dtype=np.int64)
    out = np.full(25, 7, dtype=np.uint16)
    raw.read(runs, out)
    np.testing.assert_array_equal(out, np.concatenate([values[15:35], values[48:52], values[99:]]))


def test_only_uncompressed_sharded_1d_arrays(tmp_path):
    kw = {"chunks": (10,), "shards": (50,), "dtype": "uint16"}
    assert RawRuns.create(zarr.create_array(tmp_path / "c.zarr", shape=(100,), **kw)) is None  # compressed
    flat = zarr.create_array(tmp_path / "f.zarr", shape=(100,), chunks=(10,), dtype="uint16", compressors=())
    assert RawRuns.create(flat) is None  # not sharded
    two_d = zarr.create_array(tmp_path / "d.zarr", shape=(10, 10), chunks=(5, 10), shards=(10, 10), dtype="uint16")
    assert RawRuns.create(two_d) is None


def test_damaged_shard_index_is_caught_by_its_checksum(tmp_path):
    # a damaged index would point the reads at the wrong bytes of an uncompressed file: its CRC32C is checked
    a = zarr.create_array(tmp_path / "a.zarr", shape=(100,), chunks=(10,), shards=(50,), dtype="uint16", compressors=())
    a[:] = np.arange(100, dtype=np.uint16)
    f = tmp_path / "a.zarr" / "c" / "0"
    buf = bytearray(f.read_bytes())
    buf[-12] ^= 0x01  # inside the index (5 entries of 16 bytes, then the 4-byte checksum)
    f.write_bytes(bytes(buf))
    raw = RawRuns.create(zarr.open_array(tmp_path / "a.zarr", mode="r"))
    assert raw is not None
    with pytest.raises(OSError, match=r"c/0: its shard index fails its CRC32C check"):
        raw.read(np.array([[0, 20]], dtype=np.int64), np.empty(20, dtype=np.uint16))


def test_a_large_read_is_cut_over_threads_with_the_same_result(tmp_path):
    # the read thread alone would cap the loader on many cores: a block's raw reads are cut into parts, one per thread
    n = 3_000_000
    a = zarr.create_array(
        tmp_path / "a.zarr", shape=(n,), chunks=(50_000,), shards=(1_000_000,), dtype="uint16", compressors=()
    )
    values = (np.arange(n) % 60_000).astype(np.uint16)
    a[:] = values
    names: set[str] = set()

    class Watched(RawRuns):
        def read(self, runs, out, pool=None):
            names.add(threading.current_thread().name)
            super().read(runs, out, pool)

    raw = RawRuns.create(zarr.open_array(tmp_path / "a.zarr", mode="r"))
    assert raw is not None
    raw.__class__ = Watched
    rng = np.random.default_rng(0)
    starts = np.sort(rng.choice(n - 5000, size=800, replace=False))
    runs = np.stack([starts, starts + rng.integers(1, 5000, size=800)], axis=1)
    runs = runs[np.concatenate([[True], runs[1:, 0] >= runs[:-1, 1]])]  # no overlaps
    want = np.concatenate([values[s:e] for s, e in runs.tolist()])
    for threads in (1, 4):
        names.clear()
        out = np.zeros(want.shape[0], dtype=np.uint16)
        read_raw_runs([(raw, runs, out)], threads)
        np.testing.assert_array_equal(out, want)
        if threads == 1:
            assert names == {"MainThread"}
        else:  # several parts of >= 1 MiB, read in pool threads (an idle one may be reused)
            assert out.nbytes >= 2 << 20
            assert names and all(name.startswith("annshard-raw") for name in names)
