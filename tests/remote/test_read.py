"""Reading a collection at an s3:// URL through zarr's ObjectStore and zarrs, against the local S3 server."""

from __future__ import annotations

import numpy as np
import pytest

import annshard
from annshard._compat import zarrs_pipeline_impl
from annshard._errors import CorruptShardError
from annshard._load._fetch import DirectRuns

pytest.importorskip("obstore")


def _batches(loader):
    return [(b.X.toarray(), list(b.obs["cell_type"]), np.asarray(b.index)) for b in loader]


def test_remote_collection_yields_the_local_batches(uploaded):
    local = annshard.Loader(
        uploaded.local, batch_size=128, chunk_size=16, preload_nchunks=8, obs_columns=["cell_type"], seed=11
    )
    remote = annshard.Loader(
        uploaded.url,
        storage_options=uploaded.options,
        batch_size=128,
        chunk_size=16,
        preload_nchunks=8,
        obs_columns=["cell_type"],
        seed=11,
    )
    a, b = _batches(local), _batches(remote)
    assert len(a) == len(b) == -(-1200 // 128)
    for (xa, ca, ia), (xb, cb, ib) in zip(a, b, strict=True):
        np.testing.assert_array_equal(ia, ib)
        np.testing.assert_array_equal(xa, xb)
        assert ca == cb
    assert sorted(np.concatenate([i for _, _, i in b]).tolist()) == list(range(1200))
    assert remote.collections[0].remote and remote.collections[0].path == uploaded.url


def test_remote_shards_are_read_by_zarrs_through_object_store(uploaded):
    import zarr.storage

    coll = annshard.open_collection(uploaded.url, storage_options=uploaded.options)
    assert coll.n_obs == 1200 and len(coll.shards) == 3
    assert coll.manifest == annshard.open_collection(uploaded.local).manifest
    group = coll.shard_group(1)
    assert isinstance(group.store, zarr.storage.ObjectStore)
    from annshard._config import zarr_config

    with zarr_config():
        data = group["X/data"]
        assert type(data._async_array.codec_pipeline).__name__ == "ZarrsCodecPipeline"
        assert zarrs_pipeline_impl(data) is not None  # zarrs' Rust pipeline, not zarr-python's fallback
        direct = DirectRuns.create(data)
        assert direct is not None  # the loader's direct-runs path reads remote arrays too
        local = annshard.open_collection(uploaded.local).shard_group(1)["X/data"][...]
        out = np.empty(50, dtype=data.dtype)
        direct.read(np.array([[10, 30], [100, 130]], dtype=np.int64), out)
        np.testing.assert_array_equal(out, np.concatenate([local[10:30], local[100:130]]))
    assert list(coll.var_names) == list(annshard.open_collection(uploaded.local).var_names)


def test_missing_prefix_names_the_url(s3_server):
    url = s3_server.url("nothing/here.zarr")
    with pytest.raises(FileNotFoundError, match=r"s3://cells/nothing/here.zarr: no such collection.*bucket and prefix"):
        annshard.open_collection(url, storage_options=s3_server.options)


def test_missing_bucket_names_the_url(s3_server):
    with pytest.raises(
        OSError,
        match=r"s3://no-such-bucket/c.zarr: cannot read .zarr.json. \(the bucket does not exist\).*bucket exists",
    ):
        annshard.Loader("s3://no-such-bucket/c.zarr", storage_options=s3_server.options)


def test_missing_shard_is_reported(s3_server, uploaded):
    from annshard._store._location import location

    src = location(uploaded.url, uploaded.options)
    dest = location(s3_server.url("broken/coll.zarr"), s3_server.options)
    for key in src.list():
        if not key.startswith("shard-00001.zarr/"):
            dest.put(key, src.get(key))
    with pytest.raises(
        CorruptShardError, match=r"s3://cells/broken/coll.zarr: shard shard-00001.zarr .* missing from the bucket"
    ):
        annshard.Loader(dest.url, storage_options=s3_server.options)


def test_storage_options_for_a_local_path_are_refused(uploaded):
    with pytest.raises(ValueError, match="apply to URLs"):
        annshard.open_collection(uploaded.local, storage_options={"anon": True})


def test_credentials_and_endpoint_from_the_environment(uploaded, s3_server, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server.endpoint)
    coll = annshard.open_collection(uploaded.url)  # endpoint, keys and region from AWS_* only
    assert coll.n_obs == 1200
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong")
    # moto accepts any credentials; the key still reaches obstore's config from the environment
    assert annshard.open_collection(uploaded.url).n_obs == 1200


def test_url_query_string_carries_the_endpoint(uploaded, s3_server):
    coll = annshard.open_collection(f"{uploaded.url}?endpoint_url={s3_server.endpoint}")  # lamindb's form
    assert coll.n_obs == 1200 and coll.path == uploaded.url
