"""The loader's two pipeline stages run in threads named after them (the benchmark tells their CPU apart by name)."""

from __future__ import annotations

import threading

import annshard


def test_stage_threads_are_named(coll2):
    loader = annshard.Loader(coll2.path, batch_size=10, chunk_size=5, preload_nchunks=2)
    it = iter(loader)
    next(it)
    names = {t.name for t in threading.enumerate()}
    it.close()
    assert {"annshard-read", "annshard-gather"} <= names
    assert not [t for t in threading.enumerate() if t.name.startswith("annshard-")]
