"""annshard's zarr settings never outlive its blocks, however many threads enter them at once.

``zarr.config`` is one process-global dict; ``zarr.config.set`` as a context manager restores what it saw on entry,
so two blocks interleaved by two threads used to leave annshard's settings behind (see ``annshard._config``).
"""

from __future__ import annotations

import copy
import threading

import numpy as np
import pytest
import zarr

import annshard
from annshard._config import ZARRS_PIPELINE, zarr_config, zarrs_usable

from .conftest import build_collection


def _snapshot() -> dict:
    return copy.deepcopy(zarr.config.config)


def test_interleaved_blocks_of_two_threads_restore_the_users_config():
    before = _snapshot()
    a_in, b_in, a_out = threading.Event(), threading.Event(), threading.Event()
    seen = {}

    def first():
        with zarr_config():
            a_in.set()
            b_in.wait(10)
        a_out.set()

    def second():
        a_in.wait(10)
        with zarr_config():
            b_in.set()
            a_out.wait(10)  # the first block closes while this one is open
            seen["inside"] = zarr.config.get("array.write_empty_chunks")

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert seen["inside"] is False  # annshard's setting holds while any block is open
    assert _snapshot() == before


def test_a_thread_count_block_is_undone_by_itself():
    before = _snapshot()
    with zarr_config():
        with zarr_config(threads=3):
            if zarrs_usable():
                assert zarr.config.get("threading.max_workers") == 3
        assert zarr.config.get("threading.max_workers") == before["threading"]["max_workers"]
    assert _snapshot() == before


@pytest.fixture(scope="module")
def many_shards(tmp_path_factory):
    # many shards: each loader's read thread enters annshard's zarr settings once per shard it opens
    return build_collection(tmp_path_factory.mktemp("many") / "c.zarr", n_obs=960, n_vars=40, n_shards=24, seed=3)


def test_two_loaders_prefetching_at_once_leave_zarrs_config_as_it_was(many_shards):
    before = _snapshot()
    loaders = [
        annshard.Loader(many_shards.path, batch_size=50, chunk_size=4, preload_nchunks=8, read_threads=t, seed=s)
        for s, t in ((0, 1), (1, 2))
    ]
    rows: dict[int, list[int]] = {0: [], 1: []}
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def consume(i: int) -> None:
        try:
            start.wait(10)
            for _ in range(2):
                for batch in loaders[i]:
                    rows[i].extend(np.asarray(batch.index).tolist())
        except BaseException as e:  # noqa: BLE001 - re-raised on the test's thread
            errors.append(e)

    threads = [threading.Thread(target=consume, args=(i,)) for i in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert not errors, errors
    n = many_shards.adata.n_obs
    for i in (0, 1):
        assert sorted(rows[i]) == sorted(list(range(n)) * 2)  # every row once per epoch, in both loaders
    assert _snapshot() == before, "zarr's global config changed"
    if zarrs_usable():
        # and the reads went through zarrs, straight through its Rust pipeline, as before
        for loader in loaders:
            reader = loader._reader.get()
            for key, arrays in reader._arrays.items():
                pipeline = type(arrays.data._async_array.codec_pipeline)
                assert f"{pipeline.__module__}.{pipeline.__name__}".startswith(ZARRS_PIPELINE.split(".")[0]), key
                assert reader._direct[key][0] is not None, key
