"""The raw reads' planning, done by numpy per block (``annshard._store._raw``): pieces, reads, checks, first touch."""

from __future__ import annotations

import os
import platform
import threading

import numpy as np
import pytest
import zarr
from hypothesis import given, settings
from hypothesis import strategies as st
from zarr.codecs.numcodecs import FixedScaleOffset

import annshard
from annshard._errors import CorruptShardError
from annshard._load._pool import BufferPool, populate
from annshard._store._raw import RawRuns, read_raw_runs, run_pieces, split_runs

from .test_pool import _smaps_entry

pytestmark = pytest.mark.timeout(120)


def _pieces_by_loop(runs: np.ndarray, chunk: int) -> list[tuple[int, int, int, int]]:
    """The per-piece Python loop run_pieces replaced (the reference)."""
    got, out = [], 0
    for start, stop in runs.tolist():
        pos = start
        while pos < stop:
            ci = pos // chunk
            end = min(stop, ci * chunk + chunk)
            got.append((ci, pos - ci * chunk, end - ci * chunk, out))
            out += end - pos
            pos = end
    return got


@settings(max_examples=300, deadline=None)
@given(
    chunk=st.integers(1, 50),
    runs=st.lists(st.tuples(st.integers(0, 400), st.integers(0, 120)), max_size=30),
)
def test_pieces_are_the_loops_pieces(chunk, runs):
    arr = np.array([(a, a + n) for a, n in runs], dtype=np.int64).reshape(-1, 2)
    want = _pieces_by_loop(arr, chunk)
    got = run_pieces(arr, chunk)
    assert got.dtype == np.int64 and got.shape == (len(want), 4)
    assert [tuple(p) for p in got.tolist()] == want
    assert list(split_runs(arr, chunk)) == want


def _array(tmp_path, values, *, chunks=10, shards=50, stored=None):
    kw = {"chunks": (chunks,), "shards": (shards,), "compressors": ()}
    if stored is not None:
        kw["filters"] = [FixedScaleOffset(offset=0, scale=1, dtype="<f4", astype=np.dtype(stored).str.lstrip("|"))]
    a = zarr.create_array(tmp_path / "a.zarr", shape=values.shape, dtype=values.dtype, **kw)
    a[:] = values
    raw = RawRuns.create(zarr.open_array(tmp_path / "a.zarr", mode="r"))
    assert raw is not None
    return raw


def _random_runs(rng, n, count, longest):
    starts = np.sort(rng.choice(n - 1, size=min(count, n - 1), replace=False))
    stops = np.minimum(n, starts + rng.integers(1, longest, size=starts.shape[0]))
    stops[:-1] = np.minimum(stops[:-1], starts[1:])  # no overlaps; a run may touch the next
    return np.stack([starts, stops], axis=1)


@pytest.mark.parametrize("stored", [None, "uint8", "uint16"], ids=["uint16-as-is", "counts-u1", "counts-u2"])
def test_random_runs_read_what_zarr_reads(tmp_path, stored):
    # several shard files, one never written (all fill value), one inner chunk never written, runs over many chunks
    n = 2_000
    values = (np.arange(n) % 250 + 1).astype(np.float32 if stored else np.uint16)
    values[600:800] = 0  # shard file c/3 (200 elements a file): never written
    values[1_030:1_040] = 0  # an inner chunk of c/5: never written
    raw = _array(tmp_path, values, chunks=10, shards=200, stored=stored)
    assert not (tmp_path / "a.zarr" / "c" / "3").exists()
    rng = np.random.default_rng(5)
    for trial in range(20):
        runs = _random_runs(rng, n, int(rng.integers(1, 60)), int(rng.integers(2, 300)))
        want = np.concatenate([values[a:b] for a, b in runs.tolist()])
        for threads in (1, 3):
            out = np.full(want.shape[0], 77, dtype=values.dtype)
            read_raw_runs([(raw, runs, out, False, False)], threads)
            np.testing.assert_array_equal(out, want, err_msg=f"trial {trial}, {threads} threads")


def test_a_run_over_consecutive_chunks_is_one_read(tmp_path, monkeypatch):
    values = np.arange(1_000, dtype=np.uint16)
    raw = _array(tmp_path, values, chunks=10, shards=500)
    calls = []
    real = os.preadv
    monkeypatch.setattr(os, "preadv", lambda fd, bufs, at: calls.append(at) or real(fd, bufs, at))
    runs = np.array([[3, 97], [120, 121], [130, 480], [480, 620]], dtype=np.int64)  # the last crosses into c/1
    out = np.empty(int((runs[:, 1] - runs[:, 0]).sum()), dtype=np.uint16)
    raw.read(runs, out)
    np.testing.assert_array_equal(out, np.concatenate([values[a:b] for a, b in runs.tolist()]))
    # [130, 480) and [480, 500) continue each other in c/0: one read; [500, 620) is in c/1
    assert len(calls) == 4, calls


def test_extremes_are_found_as_the_indices_are_read(tmp_path):
    values = np.random.default_rng(1).integers(0, 3_000, size=5_000).astype(np.uint16)
    raw = _array(tmp_path, values, chunks=100, shards=1_000)
    runs = np.array([[10, 900], [1_500, 4_990]], dtype=np.int64)
    want = np.concatenate([values[a:b] for a, b in runs.tolist()])
    for threads in (1, 4):
        out = np.empty_like(want)
        got = read_raw_runs([(raw, runs, out, True, False)], threads)
        assert got == (0, int(want.max())), got
        assert read_raw_runs([(raw, runs, out, False, False)], threads) is None  # not asked for
    signed = np.array([5, -3, 9, 2] * 50, dtype=np.int32)
    (tmp_path / "s").mkdir()
    raw = _array(tmp_path / "s", signed, chunks=10, shards=100)
    out = np.empty(150, dtype=np.int32)
    assert read_raw_runs([(raw, np.array([[20, 170]]), out, True, False)], 2) == (-3, 9)


def test_a_truncated_file_is_named(tmp_path):
    values = np.arange(100, dtype=np.uint16)
    raw = _array(tmp_path, values)
    f = tmp_path / "a.zarr" / "c" / "1"
    data = f.read_bytes()
    index = data[-(5 * 16 + 4) :]
    f.write_bytes(data[:10] + index)  # 94 bytes: the last inner chunk (bytes 80-100) points past its end now
    with pytest.raises(OSError, match=r"c/1: inner chunk 4 is 20 bytes at 80, not 20 bytes inside the file"):
        raw.read(np.array([[40, 100]], dtype=np.int64), np.empty(60, dtype=np.uint16))


def test_fresh_buffers_are_faulted_in_by_the_threads_that_fill_them(tmp_path):
    values = (np.arange(3_000_000) % 60_000).astype(np.uint16)
    raw = _array(tmp_path, values, chunks=50_000, shards=1_000_000)
    pool = BufferPool(4)
    out, fresh = pool.take(3_000_000, np.uint16, populate=False)
    assert fresh
    if tuple(int(x) for x in platform.release().split(".")[:2] if x.isdigit()) >= (5, 14):
        assert int(_smaps_entry(out.ctypes.data)["Rss"]) * 1024 < out.nbytes // 8  # left to the readers
    names = set()

    def watched(part):
        names.add(threading.current_thread().name)
        populate(part)

    runs = np.array([[0, 1_000_000], [1_200_000, 3_000_000]], dtype=np.int64)
    out = out[:2_800_000]
    read_raw_runs([(raw, runs, out, False, True)], 3, populate=watched)
    np.testing.assert_array_equal(out, np.concatenate([values[:1_000_000], values[1_200_000:]]))
    assert names and all(n.startswith("annshard-raw") for n in names), names
    del out
    again, fresh = pool.take(2_900_000, np.uint16, populate=False)
    assert not fresh  # reused: its pages are in
    populate(again[:0])  # nothing to do


def test_loader_checks_gene_indices_read_raw(tmp_path):
    # a gene index past n_vars in an uncompressed X/indices is refused, found by the raw threads
    from annshard.testing import make_adata

    adata = make_adata(n_obs=300, n_vars=40, seed=3)
    coll = annshard.write_collection([adata], tmp_path / "c.zarr", seed=0)
    for f in sorted((tmp_path / "c.zarr").glob("shard-*.zarr/X/indices/c/*"))[:1]:
        data = bytearray(f.read_bytes())
        data[0:2] = (999).to_bytes(2, "little")  # the first stored gene index of the shard (uint16)
        f.write_bytes(bytes(data))
    with pytest.raises(CorruptShardError, match="a stored gene index is 999, outside the collection's 40 genes"):
        for _ in annshard.Loader(coll.path, batch_size=64, chunk_size=10, read_threads=2):
            pass


def test_a_blocks_jobs_planned_together_read_what_each_alone_reads(tmp_path, monkeypatch):
    # several arrays of other dtypes and chunkings in one call, cut into many small parts (touching runs at part
    # borders), widening and extremes among them: the same bytes as reading each job by itself
    import annshard._store._raw_plan as plan

    monkeypatch.setattr(plan, "PART_BYTES", 64)
    rng = np.random.default_rng(11)
    specs = [
        (np.uint16, 10, 200, None),
        (np.float32, 7, 70, "uint8"),
        (np.int32, 16, 64, None),
        (np.uint8, 5, 50, None),
    ]
    arrays = []
    for i, (dtype, chunks, shards, stored) in enumerate(specs):
        n = 1_500
        values = (rng.integers(0, 200, size=n) + (1 if stored else 0)).astype(dtype)
        (tmp_path / str(i)).mkdir()
        arrays.append((_array(tmp_path / str(i), values, chunks=chunks, shards=shards, stored=stored), values))
    for trial in range(10):
        jobs, wants = [], []
        for raw, values in arrays:
            runs = _random_runs(rng, values.shape[0], int(rng.integers(1, 40)), int(rng.integers(2, 200)))
            if trial == 0:
                runs = np.concatenate([runs, runs[-1:] * 0 + values.shape[0]])  # an empty run at the end
            want = np.concatenate([values[a:b] for a, b in runs.tolist()])
            jobs.append((raw, runs, np.full(want.shape[0], 99, dtype=values.dtype), raw.dtype.kind != "f", False))
            wants.append(want)
        for threads in (1, 4):
            got = read_raw_runs(jobs, threads)
            for (_, _, out, _, _), want in zip(jobs, wants, strict=True):
                np.testing.assert_array_equal(out, want, err_msg=f"trial {trial}, {threads} threads")
            flagged = np.concatenate([w.astype(np.int64) for (_, _, _, e, _), w in zip(jobs, wants, strict=True) if e])
            lo = min(
                0 if w.dtype.kind == "u" else int(w.min()) for (_, _, _, e, _), w in zip(jobs, wants, strict=True) if e
            )
            assert got == (lo, int(flagged.max()))
