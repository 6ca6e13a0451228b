"""Byte-identical output run to run: inner chunks of zarr shard files in chunk order."""

from __future__ import annotations

import numpy as np
import pytest
import zarr

import annshard
from annshard._store._order import order_array_chunks, order_inner_chunks
from annshard.testing import assert_identical_collections, make_adata, write_h5ads

# many inner chunks per zarr shard file: zarrs encodes them in parallel and appends them as they complete
STORAGE = {"chunk_elems": 2048, "shard_elems": 2**20}


@pytest.fixture(scope="module")
def h5ads(tmp_path_factory):
    return write_h5ads(tmp_path_factory.mktemp("det"), [1500, 1100], 3000, nnz_per_cell=300, seed=4)


def _index(path, n):
    raw = path.read_bytes()
    return np.frombuffer(raw[-(16 * n + 4) : -4], dtype="<u8").reshape(n, 2)


def test_two_runs_give_identical_collections(h5ads, tmp_path):
    a = annshard.write_collection(h5ads, tmp_path / "a.zarr", seed=3, storage=STORAGE)
    b = annshard.write_collection(h5ads, tmp_path / "b.zarr", seed=3, storage=STORAGE)
    assert_identical_collections(a.path, b.path)
    # and every shard file's inner chunks are in chunk order, contiguous from 0
    arr = zarr.open_array(a.path / "shard-00000.zarr" / "X" / "data", mode="r")
    n = arr.shards[0] // arr.chunks[0]
    for f in (a.path / "shard-00000.zarr" / "X" / "data" / "c").iterdir():
        idx = _index(f, n)
        used = idx[idx[:, 0] != 2**64 - 1]
        assert np.array_equal(used[:, 0], np.concatenate([[0], np.cumsum(used[:, 1])[:-1]]).astype(np.uint64))


def test_order_inner_chunks_reorders_a_scrambled_shard_file(tmp_path):
    values = np.arange(40_000, dtype=np.int32) % 977
    arr = zarr.create_array(
        tmp_path / "a", shape=values.shape, dtype=values.dtype, chunks=(1000,), shards=(40_000,), fill_value=0
    )
    arr[...] = values
    order_array_chunks(arr, tmp_path / "a")
    f = tmp_path / "a" / "c" / "0"
    ordered = f.read_bytes()
    # scramble: write the chunks in reverse order, with a correct index and checksum
    import google_crc32c

    idx = _index(f, 40).copy()
    body, new = b"", idx.copy()
    for j in reversed(range(40)):
        new[j, 0] = len(body)
        body += ordered[int(idx[j, 0]) : int(idx[j, 0] + idx[j, 1])]
    ib = new.astype("<u8").tobytes()
    f.write_bytes(body + ib + google_crc32c.value(ib).to_bytes(4, "little"))
    assert f.read_bytes() != ordered
    np.testing.assert_array_equal(zarr.open_array(tmp_path / "a", mode="r")[...], values)
    assert order_inner_chunks(f, 40)
    assert f.read_bytes() == ordered
    assert not order_inner_chunks(f, 40)  # already in order: unchanged
    np.testing.assert_array_equal(zarr.open_array(tmp_path / "a", mode="r")[...], values)


def test_assert_identical_collections_names_the_difference(tmp_path):
    src = [make_adata(300, 80, nnz_per_cell=20, seed=1)]
    a = annshard.write_collection(src, tmp_path / "a.zarr", seed=0)
    b = annshard.write_collection(src, tmp_path / "b.zarr", seed=1)
    assert_identical_collections(a.path, a.path)
    with pytest.raises(AssertionError, match="differ in"):
        assert_identical_collections(a.path, b.path)
