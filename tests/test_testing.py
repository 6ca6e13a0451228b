"""The conformance helpers catch broken samplers and loaders (they are tests that can fail)."""

from __future__ import annotations

import numpy as np
import pytest

from annshard.samplers import RandomSampler, Sampler, chunk_grid
from annshard.testing import check_resume, check_sampler


class _Drops(Sampler):
    def plan(self, n_obs, *, chunk_size, seed, epoch):
        return chunk_grid(n_obs, chunk_size)[1:]


class _TooLong(Sampler):
    def plan(self, n_obs, *, chunk_size, seed, epoch):
        return chunk_grid(n_obs, chunk_size * 2)


class _Unseeded(Sampler):
    def plan(self, n_obs, *, chunk_size, seed, epoch):
        g = chunk_grid(n_obs, chunk_size)
        return g[np.random.default_rng().permutation(len(g))]


class _SameEveryEpoch(Sampler):
    def plan(self, n_obs, *, chunk_size, seed, epoch):
        g = chunk_grid(n_obs, chunk_size)
        return g[np.random.default_rng(seed).permutation(len(g))]


class _Float(Sampler):
    def plan(self, n_obs, *, chunk_size, seed, epoch):
        return chunk_grid(n_obs, chunk_size).astype(float)


@pytest.mark.parametrize(
    ("sampler", "match"),
    [
        (_Drops(), "exactly once"),
        (_TooLong(), "longer than chunk_size"),
        (_Unseeded(), "deterministic"),
        (_SameEveryEpoch(), "same order"),
        (_Float(), "int64"),
    ],
    ids=["drops-rows", "too-long", "unseeded", "same-every-epoch", "float"],
)
def test_check_sampler_catches(sampler, match):
    with pytest.raises(AssertionError, match=match):
        check_sampler(sampler)


def test_check_sampler_passes_builtin():
    check_sampler(RandomSampler())


class _FakeLoader:
    """A loader whose resume forgets the position: check_resume must notice."""

    def __init__(self):
        self.epoch, self.pos = 0, 0

    def set_epoch(self, e):
        self.epoch, self.pos = e, 0

    def state_dict(self):
        return {"epoch": self.epoch, "rows_consumed": self.pos}

    def load_state_dict(self, s):
        self.epoch = s["epoch"]  # bug: ignores rows_consumed

    def __iter__(self):
        class B:
            def __init__(self, i):
                self.index = np.array([i])

        for i in range(self.epoch * 10, self.epoch * 10 + 5):
            self.pos += 1
            yield B(i)
        self.epoch += 1


def test_check_resume_catches_a_broken_loader():
    with pytest.raises(AssertionError, match="remaining batches"):
        check_resume(_FakeLoader, stops=[2])
