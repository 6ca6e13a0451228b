"""Stage B's copies split between threads: the same batches, helper threads named and joined."""

from __future__ import annotations

import threading

import numpy as np
import pytest

import annshard
from annshard._load._assemble import gather_threads


def _batches(path, read_threads, **kw):
    loader = annshard.Loader(path, batch_size=300, chunk_size=16, preload_nchunks=8, read_threads=read_threads, **kw)
    return [(np.asarray(b.index).copy(), b.X.copy()) for epoch in range(2) for b in loader]


@pytest.mark.parametrize("fixture", ["coll", "counts_coll"])
def test_batches_identical_for_one_and_many_gather_threads(fixture, request):
    path = request.getfixturevalue(fixture).path
    assert gather_threads(1) == 1 and gather_threads(10) == 4
    one, many = _batches(path, 1), _batches(path, 10)
    assert len(one) == len(many) >= 6
    for (i1, x1), (i2, x2) in zip(one, many, strict=True):
        assert np.array_equal(i1, i2)
        assert x1.dtype == x2.dtype and x1.indices.dtype == x2.indices.dtype
        assert np.array_equal(x1.indptr, x2.indptr)
        assert np.array_equal(x1.indices, x2.indices) and np.array_equal(x1.data, x2.data)


def test_gather_helpers_are_named_and_joined(coll):
    loader = annshard.Loader(coll.path, batch_size=300, chunk_size=16, preload_nchunks=8, read_threads=10)
    it = iter(loader)
    next(it)
    next(it)
    names = {t.name for t in threading.enumerate()}
    it.close()
    assert any(n.startswith("annshard-gather_") for n in names), names
    assert not [t for t in threading.enumerate() if t.name.startswith("annshard-")]


@pytest.mark.parametrize("fixture", ["coll", "counts_coll"])
def test_batches_identical_on_every_gather_path(fixture, request, monkeypatch):
    """The fused numba kernel, scipy's copy and the numpy fallback (``ANNSHARD_GATHER``) give the same batches."""
    pytest.importorskip("numba")
    path = request.getfixturevalue(fixture).path
    got = {}
    for mode in ("numba", "scipy", "numpy"):
        monkeypatch.setenv("ANNSHARD_GATHER", mode)
        got[mode] = _batches(path, 3)
    for mode in ("scipy", "numpy"):
        assert len(got[mode]) == len(got["numba"]) >= 6
        for (i1, x1), (i2, x2) in zip(got["numba"], got[mode], strict=True):
            assert np.array_equal(i1, i2) and x1.dtype == x2.dtype and x1.indices.dtype == x2.indices.dtype
            assert np.array_equal(x1.indptr, x2.indptr) and np.array_equal(x1.indices, x2.indices)
            assert np.array_equal(x1.data, x2.data)
