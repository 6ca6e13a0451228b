"""Uncompressed arrays read by ``os.preadv`` straight into the block (``annshard._store._raw.RawRuns``)."""

from __future__ import annotations

import threading

import anndata as ad
import numpy as np
import pytest
import zarr
from zarr.codecs.numcodecs import FixedScaleOffset

import annshard
from annshard._load._fetch import BlockReader, DirectRuns
from annshard._load._pool import BufferPool
from annshard._load._union import ShardRef
from annshard._store._raw import RawRuns, read_raw_runs
from annshard.testing import make_adata

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
        def read_part(self, part):  # what each part's thread runs (planned for the whole block beforehand)
            names.add(threading.current_thread().name)
            return super().read_part(part)

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
        read_raw_runs([(raw, runs, out, False, False)], threads)
        np.testing.assert_array_equal(out, want)
        if threads == 1:
            assert names == {"MainThread"}
        else:  # several parts of >= 1 MiB, read in pool threads (an idle one may be reused)
            assert out.nbytes >= 2 << 20
            assert names and all(name.startswith("annshard-raw") for name in names)


_SMALL = {"chunk_elems": 512, "shard_elems": 4096}  # several shard files and inner chunks per shard


@pytest.fixture(scope="module")
def counts_layouts(tmp_path_factory):
    """The same counts written twice by the writer: its default (uncompressed uint16) and lz4 on request."""
    d = tmp_path_factory.mktemp("counts-layouts")
    a = make_adata(600, 120, nnz_per_cell=25, seed=3)
    kw = {"seed": 5, "n_obs_per_shard": 250}
    plain = annshard.write_collection({"a": a}, d / "plain.zarr", storage=_SMALL, **kw)
    packed = annshard.write_collection({"a": a}, d / "lz4.zarr", storage={**_SMALL, "counts_codec": None}, **kw)
    return a, plain, packed


def _inner_codecs(coll, i: int = 0) -> list[str]:
    meta = zarr.open_array(coll.shard_path(i) / "X" / "data").metadata.to_dict()
    return [c["name"] for c in meta["codecs"][0]["configuration"]["codecs"]]


def _random_chunks(reader: BlockReader, seed: int, n: int = 50) -> np.ndarray:
    rng = np.random.default_rng(seed)
    chunks = []
    for _ in range(n):
        s = int(rng.integers(len(reader.shards)))
        rows = reader.shards[s].collection.shards[s].n_obs
        a = int(rng.integers(rows))
        chunks.append((s, a, min(rows, a + int(rng.integers(1, 30)))))
    return np.array(chunks, dtype=np.int64)


def test_counts_stored_uncompressed_by_default_and_read_in_place(counts_layouts, monkeypatch):
    adata, coll, _ = counts_layouts
    spec = coll.manifest.storage
    assert (spec.counts_dtype, spec.counts_codec) == ("uint16", "none")
    assert _inner_codecs(coll) == ["numcodecs.fixedscaleoffset", "bytes"]  # no compressor
    for i in range(len(coll.shards)):  # every shard stays an AnnData store with the input's values and dtype
        shard = ad.read_zarr(coll.shard_path(i))
        want = adata.X[shard.obs["source_row"].to_numpy()]
        assert shard.X.dtype == adata.X.dtype == np.float32
        np.testing.assert_array_equal(shard.X.toarray(), want.toarray())
    reader = _reader(coll.path)
    reader.arrays(0)
    values, indices = reader._direct[(0, "X")]
    assert isinstance(values, RawRuns) and values.dtype == np.uint16 and isinstance(indices, RawRuns)
    chunks = _random_chunks(reader, 4)
    block = reader.read(chunks, BufferPool(6))
    assert block.data.dtype == np.float32
    monkeypatch.setattr(DirectRuns, "create", classmethod(lambda cls, array: None))
    want = _reader(coll.path).read(chunks)  # zarr-python's own decode of the same chunks
    for name in ("index", "indptr", "indices", "data"):
        np.testing.assert_array_equal(getattr(block, name), getattr(want, name))


def test_compressed_counts_one_option_away_load_the_same(counts_layouts):
    _, plain, packed = counts_layouts
    assert packed.manifest.storage.counts_codec is None
    assert _inner_codecs(packed) == ["numcodecs.fixedscaleoffset", "bytes", "blosc"]
    reader = _reader(packed.path)
    reader.arrays(0)
    assert isinstance(reader._direct[(0, "X")][0], DirectRuns)  # decoded by zarrs, as before
    kw = {"batch_size": 64, "chunk_size": 8, "preload_nchunks": 6, "seed": 2}
    got = [(b.X.toarray(), np.asarray(b.index)) for b in annshard.Loader(packed, **kw)]
    want = [(b.X.toarray(), np.asarray(b.index)) for b in annshard.Loader(plain, **kw)]
    assert len(got) == len(want) > 5
    for (xa, ia), (xb, ib) in zip(got, want, strict=True):
        np.testing.assert_array_equal(ia, ib)
        np.testing.assert_array_equal(xa, xb)


def test_bad_counts_codec_is_refused(tmp_path):
    with pytest.raises(ValueError, match="counts_codec must be 'none'"):
        annshard.write_collection(
            {"a": make_adata(20, 10, nnz_per_cell=3)}, tmp_path / "c.zarr", storage={"counts_codec": "lz4"}
        )


@pytest.mark.parametrize("stored", ["uint16", "uint8"])
def test_stored_counts_widened_as_they_are_read(tmp_path, stored):
    # runs over many inner chunks: read and widened a few chunks at a time (RawRuns.read), one missing chunk
    n = 400
    filters = [FixedScaleOffset(offset=0, scale=1, dtype="<f4", astype=np.dtype(stored).str.lstrip("|"))]
    a = zarr.create_array(
        tmp_path / "a.zarr", shape=(n,), chunks=(10,), shards=(50,), dtype="float32", filters=filters, compressors=()
    )
    values = (np.arange(n) % 200 + 1).astype(np.float32)
    values[120:130] = 0  # an inner chunk never written
    a[:] = values
    raw = RawRuns.create(zarr.open_array(tmp_path / "a.zarr", mode="r"))
    assert raw is not None and raw.dtype == np.dtype(stored)
    runs = np.array([[3, 97], [115, 240], [241, 242], [250, 400]], dtype=np.int64)
    want = np.concatenate([values[s:e] for s, e in runs.tolist()])
    for threads in (1, 3):
        out = np.full(want.shape[0], -1, dtype=np.float32)
        read_raw_runs([(raw, runs, out, False, False)], threads)
        np.testing.assert_array_equal(out, want)


def test_only_exact_counts_filters_are_read_raw(tmp_path):
    kw = {"shape": (100,), "chunks": (10,), "shards": (50,), "dtype": "float32", "compressors": ()}
    for i, (scale, offset) in enumerate([(2, 0), (1, 3)]):
        f = [FixedScaleOffset(offset=offset, scale=scale, dtype="<f4", astype="<u2")]
        assert RawRuns.create(zarr.create_array(tmp_path / f"{i}.zarr", filters=f, **kw)) is None
