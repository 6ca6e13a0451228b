"""Block reads: straight through zarrs' Rust pipeline, identical to reading through zarr."""

from __future__ import annotations

import numpy as np
import pytest

import annshard
from annshard._load._fetch import BlockReader, DirectRuns
from annshard._load._pool import BufferPool
from annshard._load._union import ShardRef

from .conftest import build_collection


def _reader(built) -> BlockReader:
    coll = annshard.open_collection(built.path)
    refs, offset = [], 0
    for i, info in enumerate(coll.shards):
        refs.append(ShardRef(collection=coll, shard=i, offset=offset))
        offset += info.n_obs
    return BlockReader(refs, threads=1)


def _random_chunks(reader: BlockReader, rng: np.random.Generator, n: int, size: int) -> np.ndarray:
    out = []
    for _ in range(n):
        s = int(rng.integers(len(reader.shards)))
        rows = reader.shards[s].collection.shards[s].n_obs
        start = int(rng.integers(rows))
        out.append((s, start, min(rows, start + int(rng.integers(1, size + 1)))))
    return np.array(out, dtype=np.int64)


@pytest.mark.parametrize("which", ["coll", "counts_coll", "dense_coll"])
def test_direct_reads_equal_zarr_reads(which, request, monkeypatch):
    built = request.getfixturevalue(which)
    direct = _reader(built)
    direct.arrays(0)
    assert direct._direct[(0, "X")][0] is not None, "zarrs reads this collection directly"
    chunks = _random_chunks(direct, np.random.default_rng(0), 40, 50)
    a = direct.read(chunks, BufferPool(4))
    monkeypatch.setattr(DirectRuns, "create", classmethod(lambda cls, array: None))
    via_zarr = _reader(built)
    b = via_zarr.read(chunks)
    assert via_zarr._direct[(0, "X")] == (None, None)
    np.testing.assert_array_equal(a.index, b.index)
    np.testing.assert_array_equal(a.data, b.data)
    if a.indptr is not None:
        np.testing.assert_array_equal(a.indptr, b.indptr)
        np.testing.assert_array_equal(a.indices, b.indices)
    # and both agree with the source rows
    want = built.X[a.index]
    got = a.data if a.indptr is None else None
    if got is None:
        import scipy.sparse as sp

        got = sp.csr_matrix((a.data, a.indices, a.indptr), shape=want.shape).toarray()
    np.testing.assert_array_equal(got, want.toarray() if hasattr(want, "toarray") else want)


def test_runs_across_zarr_chunk_boundaries(coll):
    # the test collection's CSR arrays are sharded every 4096 values: long runs cross several
    reader = _reader(coll)
    n0 = reader.shards[0].collection.shards[0].n_obs
    block = reader.read(np.array([[0, 0, n0], [1, 3, 400]], dtype=np.int64))
    assert block.n_rows == n0 + 397
    np.testing.assert_array_equal(block.data, coll.X[block.index].data)


def test_one_read_order_for_the_reader_and_the_assembler(coll):
    """The reader lays a block out in ``read_order``; ``block_order`` maps the plan's rows onto that layout."""
    from annshard._load._assemble import block_order
    from annshard._load._fetch import read_order

    reader = _reader(coll)
    chunks = _random_chunks(reader, np.random.default_rng(3), 30, 20)  # plan order: neither by shard nor by start
    block = reader.read(chunks)
    offsets = [ref.offset for ref in reader.shards]

    def rows(cs: np.ndarray) -> np.ndarray:
        return np.concatenate([np.arange(offsets[s] + a, offsets[s] + b) for s, a, b in cs.tolist()])

    np.testing.assert_array_equal(block.index, rows(chunks[read_order(chunks)]))
    plan = block_order(chunks, shuffle=False, seed=0, epoch=0, part=0, block=0)
    np.testing.assert_array_equal(block.index[plan], rows(chunks))
    shuffled = block_order(chunks, shuffle=True, seed=0, epoch=0, part=0, block=0)
    np.testing.assert_array_equal(np.sort(block.index[shuffled]), np.sort(rows(chunks)))


def test_counts_decoded_as_stored_integers_and_widened(counts_coll, coll):
    """Counts stored as uint16 through fixedscaleoffset: zarrs decodes the integers, the block holds exact float32."""
    reader = _reader(counts_coll)
    arrs = reader.arrays(0)
    data_reader = reader._direct[(0, "X")][0]
    assert arrs.data.dtype == np.float32
    assert data_reader is not None and data_reader.dtype == np.uint16, "the filter is skipped, not run per element"
    chunks = _random_chunks(reader, np.random.default_rng(11), 40, 50)
    for pool in (None, BufferPool(4)):
        block = reader.read(chunks, pool)
        assert block.data.dtype == np.float32
        np.testing.assert_array_equal(block.data, counts_coll.X[block.index].data)
    # values not stored as counts are read as they are
    plain = _reader(coll)
    plain.arrays(0)
    assert plain._direct[(0, "X")][0].dtype == plain.arrays(0).data.dtype


def test_a_block_over_collections_storing_counts_in_different_dtypes(tmp_path):
    """A block may span collections whose counts are stored as uint8 and uint16: each is widened exactly."""
    import scipy.sparse as sp

    built = [
        build_collection(tmp_path / f"{dt}.zarr", n_obs=600, n_shards=2, seed=s, counts_dtype=dt)
        for s, dt in ((3, "uint8"), (4, "uint16"))
    ]
    assert max(float(b.X.max()) for b in built) <= 255  # both dtypes hold the values exactly
    refs, offset = [], 0
    for b in built:
        coll = annshard.open_collection(b.path)
        for i, info in enumerate(coll.shards):
            refs.append(ShardRef(collection=coll, shard=i, offset=offset))
            offset += info.n_obs
    reader = BlockReader(refs, threads=1)
    stored = {reader._direct[(s, "X")][0].dtype for s in range(len(refs)) if reader.arrays(s) is not None}
    assert stored == {np.dtype(np.uint8), np.dtype(np.uint16)}
    rows = [(s, 0, refs[s].collection.shards[refs[s].shard].n_obs) for s in range(len(refs))]
    for pool in (None, BufferPool(4)):
        block = reader.read(np.array(rows, dtype=np.int64), pool)
        assert block.data.dtype == np.float32
        want = sp.vstack([b.X for b in built]).tocsr()[block.index]
        got = sp.csr_matrix((block.data, block.indices, block.indptr), shape=want.shape)
        np.testing.assert_array_equal(got.toarray(), want.toarray())
