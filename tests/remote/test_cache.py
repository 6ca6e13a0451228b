"""The local shard cache of remote collections: hit, miss, LRU eviction, damaged entries, reads with no GETs."""

from __future__ import annotations

import copy
import shutil

import numpy as np
import pytest

import annshard
from annshard._store._cache import ShardCache, parse_size
from annshard._store._location import location

pytest.importorskip("obstore")

LKW = {"batch_size": 100, "chunk_size": 10, "preload_nchunks": 6, "obs_columns": ["cell_type"], "seed": 9}


def _epoch(loader):
    return [(np.asarray(b.index), b.X.toarray(), list(b.obs["cell_type"])) for b in loader]


def _same(a, b):
    assert len(a) == len(b)
    for (ia, xa, ca), (ib, xb, cb) in zip(a, b, strict=True):
        np.testing.assert_array_equal(ia, ib)
        np.testing.assert_array_equal(xa, xb)
        assert ca == cb


@pytest.fixture
def copy_url(s3_server, uploaded, request):
    """A private copy of the uploaded collection (tests delete objects from it)."""
    src = location(uploaded.url, uploaded.options)
    url = s3_server.url(f"cache/{request.node.name}.zarr")
    dest = location(url, uploaded.options)
    for key in src.list():
        dest.put(key, src.get(key))
    return url


def test_cached_epochs_read_no_shard_data_from_the_bucket(copy_url, uploaded, tmp_path):
    opts = uploaded.options
    local = annshard.Loader(uploaded.local, **LKW)
    want, want2 = _epoch(local), _epoch(local)
    first = annshard.Loader(copy_url, storage_options=opts, cache=tmp_path / "c", cache_size="1GB", **LKW)
    _same(_epoch(first), want)
    cache = first.collections[0].cache
    assert (cache.misses, cache.hits) == (3, 0) and len(cache.entries()) == 3
    # the bucket loses every chunk of X: only the cache can still serve the rows
    dest = location(copy_url, opts)
    chunks = [k for k in dest.list() if "/X/" in k and "/c/" in k]
    assert chunks
    dest.delete(chunks)
    second = annshard.Loader(copy_url, storage_options=opts, cache=tmp_path / "c", cache_size="1GB", **LKW)
    _same(_epoch(second), want)  # another loader (a new process's view: checksums verified again)
    assert (second.collections[0].cache.misses, second.collections[0].cache.hits) == (0, 3)
    _same(_epoch(second), want2)  # epoch 2 of the same loader: the arrays stay open on the cache
    assert first.collections[0].cache is not second.collections[0].cache
    assert annshard.open_collection(copy_url, storage_options=opts).cache is None  # the loader's copy only


def test_damaged_entry_is_refetched(copy_url, uploaded, tmp_path):
    opts = uploaded.options
    coll = copy.copy(annshard.open_collection(copy_url, storage_options=opts))
    local = annshard.open_collection(uploaded.local).shard_group(0)["X/data"][...]
    coll.cache = ShardCache(tmp_path, "1GB")
    coll.element_group(0, "X")
    entry = coll.cache.entry(coll, 0, "X")
    chunk = next(p for p in entry.rglob("*") if p.is_file() and "/data/c" in str(p))
    raw = bytearray(chunk.read_bytes())
    raw[len(raw) // 2] ^= 0xFF  # same size, other bytes: caught by the checksum of a new process's first open
    chunk.write_bytes(bytes(raw))
    coll.cache = fresh = ShardCache(tmp_path, "1GB")
    np.testing.assert_array_equal(coll.element_group(0, "X")["X/data"][...], local)
    assert (fresh.misses, fresh.hits) == (1, 0)
    chunk.write_bytes(chunk.read_bytes()[:10])  # truncated: caught by the size check on every open
    np.testing.assert_array_equal(coll.element_group(0, "X")["X/data"][...], local)
    assert fresh.misses == 2


def test_lru_eviction_skips_entries_in_use(copy_url, uploaded, tmp_path):
    coll = copy.copy(annshard.open_collection(copy_url, storage_options=uploaded.options))
    coll.cache = probe = ShardCache(tmp_path / "probe", "1GB")
    for i in range(3):
        coll.element_group(i, "X")
    sizes = [n for _, n, _ in probe.entries()]
    bound = max(sizes) + min(sizes) // 2  # room for one entry only
    coll.cache = held = ShardCache(tmp_path / "lru", bound)
    for i in range(3):
        coll.element_group(i, "X")
    assert len(held.entries()) == 3  # all in use by this process: nothing evicted, over the bound
    held.close()
    coll.cache = lru = ShardCache(tmp_path / "lru", bound)
    victim = lru.entry(coll, 2, "X")
    shutil.rmtree(victim)  # the next open of shard 2 is a miss, which makes the cache evict
    coll.element_group(0, "X")  # a hit, held by this process while it stays open
    coll.element_group(2, "X")
    assert [e for e, _, _ in lru.entries()] == [lru.entry(coll, 0, "X"), victim]  # entry 1 (unused) evicted
    lru.close()
    coll.cache = last = ShardCache(tmp_path / "lru", bound)
    shutil.rmtree(victim)
    coll.element_group(2, "X")  # nothing held now: the least recently used entry 0 goes too
    assert [e for e, _, _ in last.entries()] == [victim]
    last.close()


def test_parse_size():
    assert parse_size("50GB") == 50 * 10**9 and parse_size("1 GiB") == 2**30 and parse_size(123) == 123
    with pytest.raises(ValueError, match="cache_size"):
        parse_size("lots")
    with pytest.raises(ValueError, match="cache_size"):
        parse_size(0)


_WORKER = """
import hashlib, sys, copy
import annshard
from annshard._store._cache import ShardCache
coll = copy.copy(annshard.open_collection(sys.argv[1], storage_options={"endpoint_url": sys.argv[2]}))
coll.cache = ShardCache(sys.argv[3], "1GB")
data = coll.element_group(0, "X")["X/data"][...]
print(hashlib.sha256(data.tobytes()).hexdigest(), coll.cache.misses, coll.cache.hits)
"""


def test_processes_share_one_cache(copy_url, uploaded, s3_server, tmp_path):
    import hashlib
    import subprocess
    import sys

    cmd = [sys.executable, "-c", _WORKER, copy_url, s3_server.endpoint, str(tmp_path / "shared")]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(3)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [e[-2000:] for _, e in outs]
    local = annshard.open_collection(uploaded.local).shard_group(0)["X/data"][...]
    want = hashlib.sha256(local.tobytes()).hexdigest()
    lines = [o.split() for o, _ in outs]
    assert all(line[0] == want for line in lines)
    assert sum(int(line[1]) for line in lines) == 1  # one process downloaded the entry, the others waited and hit
    assert len(ShardCache(tmp_path / "shared").entries()) == 1
    assert not [p for p in (tmp_path / "shared").iterdir() if "tmp" in p.name]  # no half-written entry left
