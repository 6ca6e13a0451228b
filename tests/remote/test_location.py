"""Parsing collection locations and mapping fsspec/s3fs storage options to obstore's configuration."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from annshard._store._location import is_url, location, obstore_options


def test_fsspec_spelling_maps_to_obstore(monkeypatch):
    for k in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_REGION", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(k, raising=False)
    got = obstore_options(
        "s3://b/p",
        {
            "endpoint_url": "http://127.0.0.1:9000",
            "key": "AK",
            "secret": "SK",
            "token": "T",
            "anon": "false",
            "region_name": "eu-west-1",
            "use_ssl": False,
        },
    )
    assert got == {
        "config": {
            "endpoint": "http://127.0.0.1:9000",
            "access_key_id": "AK",
            "secret_access_key": "SK",
            "session_token": "T",
            "region": "eu-west-1",
        },
        "client_options": {"allow_http": True},
    }
    assert obstore_options("s3://b/p", {"anon": True, "client_kwargs": {"region_name": "us-west-2"}})["config"] == {
        "skip_signature": True,
        "region": "us-west-2",
    }
    # an https endpoint needs no allow_http; an endpoint alone defaults the region (S3-compatible servers ignore it)
    assert obstore_options("s3://b/p", {"endpoint_url": "https://minio.local"}) == {
        "config": {"endpoint": "https://minio.local", "region": "us-east-1"},
        "client_options": {},
    }


def test_query_string_and_environment(monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:1")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "ap-south-1")
    assert obstore_options("s3://b/p")["config"] == {"endpoint": "http://127.0.0.1:1", "region": "ap-south-1"}
    got = obstore_options("s3://b/p?endpoint_url=http://127.0.0.1:2&anon=true")
    assert got["config"] == {"endpoint": "http://127.0.0.1:2", "skip_signature": True, "region": "ap-south-1"}
    # given options win over the query string
    assert (
        obstore_options("s3://b/p?endpoint_url=http://127.0.0.1:2", {"endpoint_url": "http://127.0.0.1:3"})["config"][
            "endpoint"
        ]
        == "http://127.0.0.1:3"
    )
    with pytest.raises(ValueError, match="client_kwargs"):
        obstore_options("s3://b/p", {"client_kwargs": "x"})


def test_location_parsing(tmp_path):
    assert is_url("s3://b/c.zarr") and is_url("gs://b/c") and not is_url(str(tmp_path)) and not is_url("file:///x")
    loc = location("s3://b/pre/c.zarr/?endpoint_url=http://127.0.0.1:9", {"anon": True})
    assert (
        loc.remote
        and loc.url == "s3://b/pre/c.zarr"
        and loc.options == {"endpoint_url": "http://127.0.0.1:9", "anon": True}
    )
    assert str(loc.child("shard-00000.zarr")) == "s3://b/pre/c.zarr/shard-00000.zarr"
    assert pickle.loads(pickle.dumps(loc)) == loc
    local = location(f"file://{tmp_path}")
    assert not local.remote and local.path == Path(tmp_path)
    with pytest.raises(ValueError, match=r"storage_options were given for the local path .*URLs"):
        location(tmp_path, {"anon": True})
