"""Exact resume from a mid-epoch state, and the epoch bookkeeping around it."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import annshard
from annshard.samplers import WeightedSampler
from annshard.testing import check_resume


@pytest.mark.parametrize(
    ("batch_size", "chunk_size", "preload"),
    [(128, 16, 4), (333, 7, 13), (1000, 250, 1), (5000, 32, 8)],
    ids=["small", "odd", "one-chunk-blocks", "batch>epoch"],
)
def test_check_resume(coll2, batch_size, chunk_size, preload):
    check_resume(
        lambda: annshard.Loader(
            coll2.path, batch_size=batch_size, chunk_size=chunk_size, preload_nchunks=preload, seed=11
        ),
        epoch=2,
    )


def test_check_resume_weighted(coll2):
    check_resume(lambda: annshard.Loader(coll2.path, batch_size=100, sampler=WeightedSampler("cell_type")), stops=[3])


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(stop=st.integers(0, 12), epoch=st.integers(0, 3), drop_last=st.booleans())
def test_resume_anywhere(coll2, stop, epoch, drop_last):
    def make():
        return annshard.Loader(coll2.path, batch_size=90, chunk_size=11, preload_nchunks=5, drop_last=drop_last)

    check_resume(make, epoch=epoch, stops=[stop])


def test_state_dict_semantics(coll2):
    loader = annshard.Loader(coll2.path, batch_size=100, seed=2)
    assert loader.state_dict() == {"seed": 2, "epoch": 0, "rows_consumed": 0}
    it = iter(loader)
    next(it)
    next(it)
    assert loader.state_dict() == {"seed": 2, "epoch": 0, "rows_consumed": 200}
    del it
    # a new iter() after an interrupted epoch starts the next epoch
    first = next(iter(loader))
    assert loader.state_dict()["epoch"] == 1
    fresh = annshard.Loader(coll2.path, batch_size=100, seed=2)
    fresh.set_epoch(1)
    assert np.array_equal(next(iter(fresh)).index, first.index)
    loader.set_epoch(7)
    list(loader)
    assert loader.state_dict() == {"seed": 2, "epoch": 8, "rows_consumed": 0}
    with pytest.raises(ValueError, match="seed=2"):
        annshard.Loader(coll2.path, seed=3).load_state_dict(loader.state_dict())
