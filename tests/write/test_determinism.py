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


def _files(directory):
    return {p.relative_to(directory).as_posix(): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


@pytest.mark.parametrize(
    ("n", "chunk", "shard", "kind"),
    [
        (70_001, 1000, 16_000, "counts"),  # partial last chunk and shard file
        (64_000, 1000, 16_000, "counts"),  # whole chunks, whole shards
        (5_000, 5_000, 5_000, "float"),  # one chunk: not sharded
        (33_333, 2048, 2**16, "indices"),  # one partial shard file
        (10_000, 512, 4096, "int64"),  # codec "none"
    ],
    ids=["counts-partial", "counts-whole", "unsharded", "indices-one-shard", "indptr"],
)
def test_plain_writer_matches_zarrs_byte_for_byte(tmp_path, n, chunk, shard, kind):
    from annshard._config import zarr_config
    from annshard._store import _order, _shard
    from annshard._store._spec import StorageSpec

    rng = np.random.default_rng(n)
    values = {
        "counts": rng.integers(1, 3000, n).astype(np.float32),
        "float": rng.random(n, dtype=np.float32) + np.float32(0.01),
        "indices": rng.integers(1, 20_000, n).astype(np.uint16),
        "int64": np.cumsum(rng.integers(1, 9, n)).astype(np.int64),
    }[kind]
    spec = StorageSpec(
        counts_dtype="uint16" if kind == "counts" else None,
        codec="none" if kind == "int64" else "lz4",
        indices_codec="none",
        values_codec="none",
        counts_codec="none",
    )
    counts = kind in ("counts", "float")
    with zarr_config():
        for name in ("zarrs", "plain"):
            group = zarr.open_group(tmp_path / name, mode="w", zarr_format=3)
            chunks, shards = _shard._chunking(n, chunk, shard)
            arr = group.create_array(
                "a",
                shape=values.shape,
                dtype=values.dtype,
                chunks=chunks,
                shards=shards,
                filters=spec.counts_filters() if counts else (),
                compressors=spec.compressors(counts=counts, indices=kind == "indices"),
                fill_value=0,
            )
            if name == "plain":
                assert _order.write_plain_1d(arr, tmp_path / name / "a", values)
            else:  # through zarr(s), then put in chunk order: what the writer did before
                arr[...] = values
                _order.order_array_chunks(arr, tmp_path / name / "a")
    assert _files(tmp_path / "plain") == _files(tmp_path / "zarrs")
    np.testing.assert_array_equal(zarr.open_array(tmp_path / "plain" / "a", mode="r")[...], values)


def test_plain_writer_declines_what_zarr_skips(tmp_path):
    """An inner chunk of zeros is not stored by zarr: the direct writer leaves such an array to zarr."""
    from annshard._store._order import write_plain_1d

    values = np.arange(1, 4001, dtype=np.uint16)
    values[1000:2000] = 0
    arr = zarr.create_array(
        tmp_path / "a", shape=values.shape, dtype=values.dtype, chunks=(1000,), shards=(4000,), fill_value=0
    )
    assert not write_plain_1d(arr, tmp_path / "a", values)
    assert not (tmp_path / "a" / "c").exists()
    compressed = zarr.create_array(
        tmp_path / "b", shape=(4000,), dtype=np.uint16, chunks=(1000,), shards=(4000,), fill_value=0
    )
    assert compressed.metadata.to_dict()["codecs"][0]["configuration"]["codecs"][-1]["name"] == "zstd"
    assert not write_plain_1d(compressed, tmp_path / "b", values + 1)


def test_plain_writer_declines_other_chunk_keys(tmp_path):
    """Chunk files named other than zarr's default ``c/<i>`` (here the v2-style ``0``) are left to zarr."""
    from annshard._store._order import write_plain_1d

    values = np.arange(1, 4001, dtype=np.uint16)
    arr = zarr.create_array(
        tmp_path / "a",
        shape=values.shape,
        dtype=values.dtype,
        chunks=(1000,),
        shards=(4000,),
        fill_value=0,
        compressors=None,
        chunk_key_encoding={"name": "v2", "separator": "."},
    )
    assert not write_plain_1d(arr, tmp_path / "a", values)
    arr[...] = values
    np.testing.assert_array_equal(zarr.open_array(tmp_path / "a", mode="r")[...], values)
