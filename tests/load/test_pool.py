"""Recycled buffers: reused only when nothing refers to them, never overwriting data someone holds."""

from __future__ import annotations

import gc
import mmap
import platform
import sys

import numpy as np
import pytest
import scipy.sparse as sp

import annshard
from annshard._load._pool import BufferPool


def test_reuses_a_released_buffer():
    pool = BufferPool(max_buffers=4)
    a = pool.empty(1000, np.float32)
    addr = a.__array_interface__["data"][0]
    del a
    b = pool.empty(990, np.float32)
    assert b.__array_interface__["data"][0] == addr
    assert (pool.allocated, pool.reused) == (1, 1)


def test_held_views_and_derived_objects_keep_a_buffer():
    pool = BufferPool(max_buffers=4)
    data = pool.empty(10, np.float32)
    data[:] = 1
    idx = pool.empty(10, np.int32)
    idx[:] = np.arange(10)
    m = sp.csr_matrix((data, idx, np.array([0, 5, 10], dtype=np.int32)), shape=(2, 10), copy=False)
    assert np.shares_memory(m.data, data) and np.shares_memory(m.indices, idx)  # scipy did not copy
    del data, idx
    for _ in range(3):
        other = pool.empty(10, np.float32)
        other[:] = 7
        other2 = pool.empty(10, np.int32)
        other2[:] = -1
        del other, other2
    assert m.data.tolist() == [1.0] * 10 and m.indices.tolist() == list(range(10))


def _mapped(a: np.ndarray) -> bool:
    owner = a.base.base  # the view's buffer, then what holds its memory
    return isinstance(getattr(owner, "obj", owner), mmap.mmap)


def test_large_buffers_are_plain_page_maps_and_are_reused():
    # numpy asks for huge pages on arrays of 4 MiB or more; faulting those in cost the first epoch ~1 s of kernel time
    pool = BufferPool(max_buffers=4)
    small = pool.empty(1000, np.float32)
    big = pool.empty(2_000_000, np.float32)  # 8 MB
    assert not _mapped(small)
    assert _mapped(big) and big.flags.writeable and big.shape == (2_000_000,)
    big[:] = 3
    keep = big[:10]
    addr = big.__array_interface__["data"][0]
    del big
    assert pool.empty(2_000_000, np.float32).__array_interface__["data"][0] != addr  # a view still holds it
    assert keep.tolist() == [3.0] * 10
    del keep
    gc.collect()
    assert pool.empty(1_900_000, np.float32).__array_interface__["data"][0] == addr


def test_dtype_and_size_rules():
    pool = BufferPool(max_buffers=8)
    a = pool.empty(100, np.float32)
    del a
    b = pool.empty(100, np.int32)  # same bytes, other dtype: a new buffer
    c = pool.empty(40, np.float32)  # less than half of the free float32 buffer: a new one
    assert pool.reused == 0 and pool.allocated == 3
    assert b.dtype == np.int32 and c.shape == (40,)


def test_bounded():
    pool = BufferPool(max_buffers=2)
    held = [pool.empty(100, np.float64) for _ in range(5)]
    assert len(pool) == 2 and pool.allocated == 5
    del held
    gc.collect()
    pool.empty(100, np.float64)
    assert len(pool) == 2 and pool.reused == 1


def test_batches_kept_by_the_user_are_never_overwritten(coll):
    def run(keep: bool) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        loader = annshard.Loader(coll.path, batch_size=128, chunk_size=8, preload_nchunks=6, seed=3)
        out = []
        for batch in loader:
            x = batch.X
            out.append((x.data, x.indices, x.indptr) if keep else (x.data.copy(), x.indices.copy(), x.indptr.copy()))
        return out

    kept, copied = run(keep=True), run(keep=False)
    assert len(kept) == len(copied) > 10
    for (d, i, p), (d2, i2, p2) in zip(kept, copied, strict=True):
        np.testing.assert_array_equal(d, d2)
        np.testing.assert_array_equal(i, i2)
        np.testing.assert_array_equal(p, p2)


def test_pools_are_kept_from_one_epoch_to_the_next(coll):
    import pickle

    loader = annshard.Loader(coll.path, batch_size=128, chunk_size=8, preload_nchunks=6, seed=3, read_threads=1)
    first = [b.X.copy() for b in loader]
    blocks, batches = loader._reader._pools
    allocated = blocks.allocated + batches.allocated
    second_run = []
    for b in loader:  # the next epoch: the same pools, their buffers reused
        second_run.append(b.X.copy())
    assert loader._reader._pools == (blocks, batches)
    # buffers left from the first epoch serve the second: it allocates fewer than the first did
    assert blocks.allocated + batches.allocated - allocated < allocated
    assert len(first) == len(second_run)
    assert pickle.loads(pickle.dumps(loader))._reader._pools is None  # never pickled


def _smaps_entry(addr: int) -> dict[str, str]:
    """The ``/proc/self/smaps`` entry of the mapping holding ``addr``: its path (if any) and its fields."""
    out: dict[str, str] = {}
    inside = False
    with open("/proc/self/smaps") as f:
        for line in f:
            head = line.split()
            if "-" in head[0] and not head[0].endswith(":"):
                lo, hi = (int(x, 16) for x in head[0].split("-"))
                inside = lo <= addr < hi
                if inside:
                    out["path"] = head[5] if len(head) > 5 else ""
            elif inside:
                out[head[0].rstrip(":")] = head[1]
    return out


@pytest.mark.skipif(sys.platform != "linux", reason="/proc/self/smaps and MADV_POPULATE_WRITE are Linux's")
def test_large_buffers_are_private_and_faulted_in_at_once():
    # a shared anonymous map (mmap's default) is shmem, whose faults cost more; one madvise faults the
    # requested pages in instead of a fault per page (the first epoch's page cost)
    pool = BufferPool(max_buffers=4)
    n = 4_000_000  # 16 MB of float32
    big = pool.empty(n, np.float32)
    entry = _smaps_entry(big.__array_interface__["data"][0])
    assert entry["path"] == "", entry  # not "/dev/zero (deleted)": a private anonymous map
    if tuple(int(x) for x in platform.release().split(".")[:2] if x.isdigit()) >= (5, 14):
        assert int(entry["Rss"]) * 1024 >= n * 4, entry  # faulted in before anything was written
        assert int(entry["Rss"]) * 1024 < n * 4 * 9 // 8, entry  # the slack left for a later, larger request is not
