"""The local S3 server fixture itself: it answers on loopback and honours the conditional puts appends rely on."""

from __future__ import annotations

import pytest

obstore = pytest.importorskip("obstore")


def _store(s3_server):
    from obstore.store import S3Store

    return S3Store(s3_server.bucket, endpoint=s3_server.endpoint, client_options={"allow_http": True})


def test_server_is_loopback_and_conditional_put_conflicts(s3_server, network_violations):
    assert s3_server.endpoint.startswith("http://127.0.0.1:")
    store = _store(s3_server)
    first = obstore.put(store, "fixture/m", b"1")
    obstore.put(store, "fixture/m", b"2", mode={"e_tag": first["e_tag"]})
    with pytest.raises(obstore.exceptions.PreconditionError):
        obstore.put(store, "fixture/m", b"3", mode={"e_tag": first["e_tag"]})  # If-Match on a stale e-tag
    with pytest.raises(obstore.exceptions.AlreadyExistsError):
        obstore.put(store, "fixture/m", b"3", mode="create")  # If-None-Match: *
    assert bytes(obstore.get(store, "fixture/m").bytes()) == b"2"
    assert network_violations == []
