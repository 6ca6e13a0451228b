"""Writing and appending collections at s3:// URLs: staged locally, shards uploaded, the manifest put last."""

from __future__ import annotations

import threading

import numpy as np
import pytest

import annshard
from annshard._errors import CollectionExistsError, CollectionLockedError
from annshard._store._location import location
from annshard.testing import write_h5ads

pytest.importorskip("obstore")


@pytest.fixture(scope="module")
def h5ads(tmp_path_factory):
    d = tmp_path_factory.mktemp("remote-write")
    return write_h5ads(d, [300, 200, 150, 120], n_vars=80, nnz_per_cell=15, seed=7)


def _epoch(loader):
    return [(np.asarray(b.index), b.X.toarray(), list(b.obs["cell_type"])) for b in loader]


def _same(a, b):
    assert len(a) == len(b)
    for (ia, xa, ca), (ib, xb, cb) in zip(a, b, strict=True):
        np.testing.assert_array_equal(ia, ib)
        np.testing.assert_array_equal(xa, xb)
        assert ca == cb


def test_write_and_append_on_s3_match_local(s3_server, h5ads, tmp_path):
    url = s3_server.url("w/coll.zarr")
    opts = s3_server.options
    kw = {"seed": 2, "n_obs_per_shard": 200}
    remote = annshard.write_collection(h5ads[:2], url, storage_options=opts, tmp_dir=tmp_path, **kw)
    local = annshard.write_collection(h5ads[:2], tmp_path / "local.zarr", **kw)
    assert remote.remote and remote.manifest == local.manifest
    assert list(tmp_path.iterdir()) == [tmp_path / "local.zarr"]  # the staging directory is gone
    keys = location(url, opts).list()
    assert "zarr.json" in keys and not any(k.startswith(".annshard") for k in keys)
    lkw = {"batch_size": 64, "chunk_size": 8, "preload_nchunks": 4, "obs_columns": ["cell_type"], "seed": 4}
    _same(_epoch(annshard.Loader(url, storage_options=opts, **lkw)), _epoch(annshard.Loader(local.path, **lkw)))

    remote = annshard.append_collection(remote, h5ads[2:3], storage_options=opts, tmp_dir=tmp_path)
    local = annshard.append_collection(local, h5ads[2:3])
    assert remote.manifest == local.manifest and remote.n_obs == 650
    _same(_epoch(annshard.Loader(url, storage_options=opts, **lkw)), _epoch(annshard.Loader(local.path, **lkw)))
    stored = {k.split("/", 1)[0] for k in location(url, opts).list()} - {"zarr.json"}
    assert stored == {s.name for s in remote.shards}

    with pytest.raises(CollectionExistsError, match=r"s3://cells/w/coll.zarr: already holds objects.*overwrite=True"):
        annshard.write_collection(h5ads[:1], url, storage_options=opts)
    again = annshard.write_collection(h5ads[:1], url, storage_options=opts, overwrite=True, n_obs_per_shard=200)
    assert again.n_obs == 300
    stored = {k.split("/", 1)[0] for k in location(url, opts).list()} - {"zarr.json"}
    assert stored == {s.name for s in again.shards}  # the former collection's extra shards are deleted


def test_concurrent_appends_one_wins(s3_server, h5ads, tmp_path, monkeypatch):
    url = s3_server.url("race/coll.zarr")
    opts = s3_server.options
    base = annshard.write_collection(h5ads[:1], url, storage_options=opts, n_obs_per_shard=200)
    monkeypatch.setenv("ANNSHARD_TEST_PAUSE_APPEND", "1.5")  # both read the same manifest before either commits
    results: dict[int, object] = {}

    def run(i: int) -> None:
        try:
            results[i] = annshard.append_collection(url, h5ads[1 + i : 2 + i], storage_options=opts, tmp_dir=tmp_path)
        except Exception as e:  # noqa: BLE001 - the outcome is checked below
            results[i] = e

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    errors = [r for r in results.values() if isinstance(r, Exception)]
    wins = [r for r in results.values() if not isinstance(r, Exception)]
    assert len(wins) == 1 and len(errors) == 1, results
    assert isinstance(errors[0], CollectionLockedError)
    assert "s3://cells/race/coll.zarr" in str(errors[0]) and "nothing of this write was kept" in str(errors[0]).lower()
    final = annshard.open_collection(url, storage_options=opts)
    assert final.manifest == wins[0].manifest and final.n_obs > base.n_obs
    stored = {k.split("/", 1)[0] for k in location(url, opts).list()} - {"zarr.json"}
    assert stored == {s.name for s in final.shards}  # the loser left nothing behind, the winner's shards are intact
    n = sum(b.n_obs for b in annshard.Loader(url, storage_options=opts, batch_size=100))
    assert n == final.n_obs


def test_stale_etag_loses_and_removes_its_shards(s3_server, h5ads, tmp_path):
    """The commit itself: a manifest changed after it was read makes the append fail, its shards deleted."""
    from annshard._write._remote import append_to_url

    url = s3_server.url("stale/coll.zarr")
    opts = s3_server.options
    annshard.write_collection(h5ads[:1], url, storage_options=opts, n_obs_per_shard=200)
    dest = location(url, opts)

    def append_then_someone_commits(root):
        coll = annshard.append_collection(root, h5ads[1:2])
        raw = dest.get("zarr.json")
        dest.put("zarr.json", raw + b"\n")  # another writer commits a new version meanwhile
        return coll

    before = set(dest.list())
    with pytest.raises(CollectionLockedError, match=r"s3://cells/stale/coll.zarr: another writer appended"):
        append_to_url(append_then_someone_commits, url, opts, tmp_dir=tmp_path)
    assert set(dest.list()) == before  # its uploaded shards are deleted
    assert annshard.open_collection(url, storage_options=opts).n_obs == 300
